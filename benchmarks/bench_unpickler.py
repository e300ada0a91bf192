"""Quick unpickler measurements (not a test): interleaved medians, ratios.

    PYTHONPATH=python python benchmarks/bench_unpickler.py [--big]

1. _core.loads vs pickle.loads on a list of 300,000 small dicts (protocol 5);
2. with --big: _core.load of a 512 MiB float64 joblib file (fd and file object) vs joblib.load vs
   np.empty + readinto, and mmap_mode='r'.
"""
import os
import pickle
import statistics
import sys
import tempfile
import time

import numpy as np

from fastjoblib import _core


def interleaved(fns, reps):
    ts = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            t = time.perf_counter()
            r = f()
            ts[k].append(time.perf_counter() - t)
            del r
    return {k: statistics.median(v) for k, v in ts.items()}


def small_dicts():
    data = [{"a": i, "b": float(i), "c": "x%d" % (i % 100), "d": (i, None)} for i in range(300_000)]
    d = pickle.dumps(data, 5)
    assert _core.loads(d) == data
    m = interleaved({"pickle.loads": lambda: pickle.loads(d), "_core.loads": lambda: _core.loads(d)}, 11)
    for k, v in m.items():
        print("%-14s %8.1f ms" % (k, v * 1e3))
    print("ratio pickle/_core: %.2f" % (m["pickle.loads"] / m["_core.loads"]))


def big_array():
    import joblib

    n = 64 * 2**20
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "big.pkl")
        joblib.dump(np.random.default_rng(0).random(n), p)

        def fj_fd():
            fd = os.open(p, os.O_RDONLY)
            try:
                return _core.load(fd)
            finally:
                os.close(fd)

        def fj_file():
            with open(p, "rb") as f:
                return _core.load(f)

        def raw():
            a = np.empty(n)
            with open(p, "rb", buffering=0) as f:
                f.readinto(memoryview(a).cast("B"))
            return a

        def fj_mmap():
            fd = os.open(p, os.O_RDONLY)
            try:
                return _core.load(fd, mmap_mode="r", filename=p)
            finally:
                os.close(fd)

        m = interleaved({"_core.load fd": fj_fd, "_core.load file": fj_file, "joblib.load": lambda: joblib.load(p),
                         "np.empty+readinto": raw, "_core.load mmap": fj_mmap,
                         "joblib mmap": lambda: joblib.load(p, mmap_mode="r")}, 5)
        for k, v in m.items():
            print("%-18s %8.1f ms" % (k, v * 1e3))


if __name__ == "__main__":
    small_dicts()
    if "--big" in sys.argv:
        big_array()
