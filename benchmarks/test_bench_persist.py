"""pytest-benchmark suites: dump and load of each workload (small sizes) by pickle-5, joblib and
fastjoblib. Not collected by the default test run (testpaths = tests). Run with:

    python -m pytest benchmarks/ --benchmark-group-by=group --benchmark-columns=min,median,rounds

Set FASTJOBLIB_BENCH_SCALE (default 1/64 of the full sizes of benchmarks/workloads.py).
For ratio tables with peak memory at full size, use benchmarks/ratios.py instead.
"""
import os
import pickle

import joblib
import pytest

import workloads as W

SCALE = float(os.environ.get("FASTJOBLIB_BENCH_SCALE", 1 / 64))


def _fastjoblib():
    import fastjoblib
    from fastjoblib import _core

    if not (hasattr(_core, "dump") and hasattr(_core, "load")):
        pytest.skip("fastjoblib._core has no dump/load in this build")
    return fastjoblib


def _pickle_dump(obj, path):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=5)


def _pickle_load(path):
    with open(path, "rb") as f:
        return pickle.load(f)


LIBS = {
    "pickle5": lambda: (_pickle_dump, _pickle_load),
    "joblib": lambda: (joblib.dump, joblib.load),
    "fastjoblib": lambda: (_fastjoblib().dump, _fastjoblib().load),
}

_CACHE = {}


def _workload(name):
    if name not in _CACHE:
        _CACHE[name] = W.WORKLOADS[name](SCALE)
    return _CACHE[name]


@pytest.mark.parametrize("lib", list(LIBS))
@pytest.mark.parametrize("workload", list(W.WORKLOADS))
def test_dump(benchmark, workload, lib, tmp_path):
    dump, _ = LIBS[lib]()
    obj = _workload(workload)
    path = str(tmp_path / "f.bin")
    benchmark.group = "dump " + workload
    benchmark(dump, obj, path)


@pytest.mark.parametrize("lib", list(LIBS))
@pytest.mark.parametrize("workload", list(W.WORKLOADS))
def test_load(benchmark, workload, lib, tmp_path):
    dump, load = LIBS[lib]()
    path = str(tmp_path / "f.bin")
    dump(_workload(workload), path)
    benchmark.group = "load " + workload
    benchmark(load, path)


@pytest.mark.parametrize("codec", ["zlib", "lz4", "zstd"])
@pytest.mark.parametrize("lib", ["joblib", "fastjoblib"])
def test_dump_compressed_big_array(benchmark, codec, lib, tmp_path):
    if lib == "joblib" and codec not in joblib.numpy_pickle._COMPRESSORS:
        pytest.skip("stock joblib has no %s" % codec)
    dump = joblib.dump if lib == "joblib" else _fastjoblib().dump
    obj = _workload("big_array")
    path = str(tmp_path / "f.bin")
    benchmark.group = "dump big_array " + codec
    benchmark(dump, obj, path, compress=codec)
