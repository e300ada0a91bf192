"""Benchmark engine behind ``python -m fastjoblib bench`` (and benchmarks/charts.py's input).

fastjoblib, joblib and pickle (those installed) run the same workloads in one process,
interleaved (each repeat times every implementation once, in a rotating order), on files in a
temporary directory. Times are wall-clock; the ratio tables use the fastest repeat, the JSON also
keeps the median. Peak memory is measured separately, one forked child per (case, implementation,
operation): the child resets its RSS high-water mark (/proc/self/clear_refs), runs the operation
once, and reports VmHWM minus the RSS it started with, i.e. the extra memory the operation needed
on top of the object it was given (dump) or including the object it built (load). Where that is
unavailable (not Linux), tracemalloc's peak is used instead and ``meta.memory_method`` says so.

When run from a source checkout, ``bench()`` hands over to ``benchmarks/ratios.py`` instead (its
workloads, contenders, timing and memory method, and its report; ``run_ratios`` only converts its
results to the JSON schema below), so the benchmark logic lives in one place; the built-in set
here is the fallback for an installed package.

JSON schema ``fastjoblib-bench/1``::

    {"schema": "fastjoblib-bench/1",
     "meta": {"size": "tiny|quick|full", "python": str, "platform": str, "cpus": int,
              "versions": {"fastjoblib": str, "numpy": str, "joblib": str|None, ...},
              "memory_method": "rss-fork|tracemalloc|none", "workloads_from": str,
              "directory": where the files were written,
              "filesystem": its type ("ext4", "tmpfs", ...; "?" when unknown),
              "date": ISO-8601 str},
     "results": [{"workload": str, "description": str, "compress": "none"|"NAME[:LEVEL]",
                  "variant": null|"mmap_mode=r" (optional: a load variant of the case),
                  "impl": "fastjoblib"|"joblib"|"pickle", "op": "dump"|"load",
                  "seconds_min": float|null (null: only the median is known),
                  "seconds_median": float, "repeats": int,
                  "peak_bytes": int|null, "file_bytes": int, "data_bytes": int|null}, ...]}
"""
from __future__ import annotations

import datetime
import gc
import importlib.util
import os
import pickle
import platform
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

SCHEMA = "fastjoblib-bench/1"
IMPLS = ("fastjoblib", "joblib", "pickle")


class Workload(NamedTuple):
    name: str
    description: str
    build: Callable[[str], Any]        # size ('tiny' / 'quick' / 'full') -> the object
    compress: tuple[str, ...] = ("none",)  # cases beyond 'none' use these compressors
    needs: tuple[str, ...] = ()        # modules that must be importable


def _scale(size: str, tiny: int, quick: int, full: int) -> int:
    return {"tiny": tiny, "quick": quick}.get(size, full)


def _large_array(size: str) -> Any:
    import numpy as np

    n = _scale(size, 1 << 13, 4 << 20, 32 << 20)  # float64 items: 64 KiB / 32 MiB / 256 MiB
    return np.random.default_rng(0).random(n)


def _compressible_array(size: str) -> Any:
    import numpy as np

    n = _scale(size, 1 << 14, 4 << 20, 32 << 20)  # int32 items: 64 KiB / 16 MiB / 128 MiB
    rng = np.random.default_rng(1)
    return (np.cumsum(rng.integers(-2, 3, n, dtype=np.int32)) % 1000).astype(np.int32)


def _many_arrays(size: str) -> Any:
    import numpy as np

    n = _scale(size, 50, 2000, 10000)
    rng = np.random.default_rng(2)
    return {f"w{i}": rng.random(64 + i % 100) for i in range(n)}


def _python_objects(size: str) -> Any:
    n = _scale(size, 500, 100_000, 500_000)
    return [{"id": i, "name": f"item-{i}", "score": i * 0.5, "tags": ["a", "b", str(i % 7)],
             "valid": i % 3 == 0, "parent": None if i % 5 else i - 1} for i in range(n)]


def _sklearn_forest(size: str) -> Any:
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier

    rows, trees = _scale(size, 100, 2000, 10000), _scale(size, 3, 30, 100)
    rng = np.random.default_rng(3)
    x = rng.random((rows, 20))
    y = (x[:, 0] + x[:, 1] * rng.random(rows) > 0.8).astype(int)
    return RandomForestClassifier(n_estimators=trees, random_state=0, n_jobs=1).fit(x, y)


def _pandas_frame(size: str) -> Any:
    import numpy as np
    import pandas as pd

    n = _scale(size, 1000, 500_000, 2_000_000)
    rng = np.random.default_rng(4)
    return pd.DataFrame({
        "x": rng.random(n), "k": rng.integers(0, 1 << 30, n),
        "cat": pd.Categorical(rng.choice(["red", "green", "blue"], n)),
        "label": [f"row{i % 1000}" for i in range(n)],
    })


WORKLOADS: list[Workload] = [
    Workload("large-array", "one float64 array (random)", _large_array),
    Workload("compressible-array", "one int32 array (random walk)", _compressible_array,
             compress=("zlib:3", "lz4", "zstd:3")),
    Workload("many-arrays", "dict of small float64 arrays", _many_arrays),
    Workload("python-objects", "list of small dicts (str, int, float, list)", _python_objects),
    Workload("sklearn-forest", "fitted RandomForestClassifier", _sklearn_forest,
             compress=("zlib:3",), needs=("sklearn",)),
    Workload("pandas-frame", "DataFrame: float, int, categorical, str columns", _pandas_frame,
             compress=("lz4",), needs=("pandas",)),
]


def _have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# ------------------------------------------------------------------------------------------------
# the implementations


def _compress_arg(compress: str) -> Any:
    if compress == "none":
        return 0
    name, _, level = compress.partition(":")
    return (name, int(level)) if level else name


def _joblib_supports(compress: str) -> bool:
    if compress == "none":
        return True
    try:
        from joblib.compressor import _COMPRESSORS
    except ImportError:
        return False
    name = compress.partition(":")[0]
    if name == "zstd" and name not in _COMPRESSORS:
        # stock joblib has no zstd: compare with the compressor fastjoblib registers for it
        # (python-zstandard's streaming API), as a user of .zst files with joblib would.
        try:
            import fastjoblib

            fastjoblib.register_zstd_with_joblib()
        except Exception:
            return False
    return name in _COMPRESSORS


def _ops(impl: str, compress: str) -> tuple[Callable[[Any, str], None], Callable[[str], Any]] | None:
    """(dump(obj, path), load(path)) for an implementation, None if it cannot run this case."""
    if impl == "fastjoblib":
        import fastjoblib

        arg = _compress_arg(compress)
        if compress.startswith("lz4") and not _have("lz4"):
            return None

        def fj_dump(obj: Any, path: str) -> None:
            fastjoblib.dump(obj, path, compress=arg)
        return fj_dump, fastjoblib.load
    if impl == "joblib":
        if not _have("joblib") or not _joblib_supports(compress):
            return None
        if compress.startswith("lz4") and not _have("lz4"):
            return None
        import joblib

        arg = _compress_arg(compress)

        def jl_dump(obj: Any, path: str) -> None:
            joblib.dump(obj, path, compress=arg)

        def jl_load(path: str) -> Any:
            return joblib.load(path)
        return jl_dump, jl_load
    if impl == "pickle":
        if compress != "none":
            return None

        def pk_dump(obj: Any, path: str) -> None:
            with open(path, "wb") as f:
                pickle.dump(obj, f, protocol=pickle.DEFAULT_PROTOCOL)

        def pk_load(path: str) -> Any:
            with open(path, "rb") as f:
                return pickle.load(f)
        return pk_dump, pk_load
    raise ValueError(f"unknown implementation {impl!r}")


# ------------------------------------------------------------------------------------------------
# measurement


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _rss_fork_available() -> bool:
    if not hasattr(os, "fork") or _status_kib("VmHWM") is None:
        return False
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _malloc_trim() -> None:
    """Return the C heap's free memory to the system (glibc), so that the child's starting RSS
    does not include freed blocks that the operation would then reuse without raising the peak."""
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _peak_fork(fn: Callable[[], Any]) -> int | None:
    """Extra peak RSS (bytes) of fn() run once in a forked child."""
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child: never returns
        code = 1
        try:
            os.close(r)
            _malloc_trim()
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            base = _status_kib("VmRSS")
            result = fn()
            peak = _status_kib("VmHWM")
            del result
            if base is not None and peak is not None:
                os.write(w, str(max(0, peak - base) * 1024).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while True:
        data = os.read(r, 64)
        if not data:
            break
        chunks.append(data)
    os.close(r)
    os.waitpid(pid, 0)
    text = b"".join(chunks).decode()
    return int(text) if text else None


def _peak_tracemalloc(fn: Callable[[], Any]) -> int | None:
    gc.collect()
    tracemalloc.start()
    try:
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
        del result
    finally:
        tracemalloc.stop()
    return peak


def _data_bytes(obj: Any) -> int:
    """Rough payload size: the plain pickle's length (protocol 5, arrays out of band)."""
    total = 0

    def count(buf: pickle.PickleBuffer) -> bool:
        nonlocal total
        total += memoryview(buf).nbytes
        return False
    total += len(pickle.dumps(obj, protocol=5, buffer_callback=count))
    return total


def run(size: str = "quick", log: Callable[[str], None] | None = None,
        workloads: Sequence[Workload] | None = None,
        impls: Sequence[str] = IMPLS, repeats: int | None = None,
        memory: bool = True, directory: str | None = None) -> dict[str, Any]:
    """Run the benchmark and return the results (schema ``fastjoblib-bench/1``)."""
    if size not in ("tiny", "quick", "full"):
        raise ValueError(f"size must be 'tiny', 'quick' or 'full', not {size!r}")
    say = log or (lambda s: None)
    source = "built-in" if workloads is None else "argument"
    if workloads is None:
        workloads = WORKLOADS
    if repeats is None:
        repeats = {"tiny": 1, "quick": 3, "full": 5}[size]
    mem_method = "none"
    if memory:
        mem_method = "rss-fork" if _rss_fork_available() else "tracemalloc"
    peak_of = {"rss-fork": _peak_fork, "tracemalloc": _peak_tracemalloc}.get(mem_method)

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fastjoblib-bench-", dir=directory) as tmp:
        for wl in workloads:
            missing = [m for m in wl.needs if not _have(m)]
            if missing:
                say(f"skip {wl.name}: {', '.join(missing)} not installed")
                continue
            obj = wl.build(size)
            nbytes = _data_bytes(obj)
            # Long-lived objects (modules, the workload) out of the collector's way: collections
            # during the timed calls cost what they cost the caller, and forked children do
            # not copy pages just to traverse them.
            gc.collect()
            gc.freeze()
            for compress in ("none",) + tuple(c for c in wl.compress if c != "none"):
                ops = {impl: _ops(impl, compress) for impl in impls}
                runnable = [i for i in impls if ops[i] is not None]
                if "fastjoblib" not in runnable:
                    continue
                say(f"{wl.name} [{compress}]: {', '.join(runnable)}")
                paths = {i: os.path.join(tmp, f"{wl.name}.{i}.{compress.replace(':', '-')}")
                         for i in runnable}
                times: dict[tuple[str, str], list[float]] = {
                    (i, op): [] for i in runnable for op in ("dump", "load")}
                # one untimed round first: imports, first-call caches, page cache
                for impl in runnable:
                    dump, load = ops[impl]  # type: ignore[misc]
                    dump(obj, paths[impl])
                    warm = load(paths[impl])
                    del warm
                for rep in range(repeats):
                    gc.collect()
                    order = runnable[rep % len(runnable):] + runnable[:rep % len(runnable)]
                    for op in ("dump", "load"):
                        for impl in order:
                            dump, load = ops[impl]  # type: ignore[misc]
                            t0 = time.perf_counter()
                            if op == "dump":
                                dump(obj, paths[impl])
                            else:
                                loaded = load(paths[impl])
                            times[(impl, op)].append(time.perf_counter() - t0)
                            if op == "load":
                                del loaded
                for impl in runnable:
                    dump, load = ops[impl]  # type: ignore[misc]
                    path = paths[impl]
                    for op in ("dump", "load"):
                        peak = None
                        if peak_of is not None:
                            if op == "dump":
                                scratch = path + ".mem"
                                peak = peak_of(lambda: dump(obj, scratch))
                                if os.path.exists(scratch):
                                    os.unlink(scratch)
                            else:
                                peak = peak_of(lambda: load(path))
                        ts = times[(impl, op)]
                        results.append({
                            "workload": wl.name, "description": wl.description,
                            "compress": compress, "impl": impl, "op": op,
                            "seconds_min": min(ts), "seconds_median": statistics.median(ts),
                            "repeats": len(ts), "peak_bytes": peak,
                            "file_bytes": os.path.getsize(path), "data_bytes": nbytes,
                        })
                    os.unlink(path)
            gc.unfreeze()
            del obj
    meta = _meta(size, mem_method, source)
    meta["directory"] = directory or tempfile.gettempdir()
    meta["filesystem"] = _fstype(meta["directory"])
    return {"schema": SCHEMA, "meta": meta, "results": results}


def _fstype(path: str) -> str:
    """The filesystem type of the mount holding `path` ('?' where /proc/self/mounts is absent)."""
    path = os.path.realpath(path)
    best, kind = "", "?"
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                mnt = parts[1].replace("\\040", " ")
                inside = path == mnt or path.startswith(mnt.rstrip("/") + "/")
                if inside and len(mnt) >= len(best):
                    best, kind = mnt, parts[2]
    except (OSError, IndexError):
        pass
    return kind


def _version(module: str) -> str | None:
    if not _have(module):
        return None
    try:
        mod = __import__(module)
    except Exception:
        return None
    return str(getattr(mod, "__version__", "?"))


def _meta(size: str, mem_method: str, source: str) -> dict[str, Any]:
    return {
        "size": size, "python": platform.python_version(), "platform": platform.platform(),
        "cpus": os.cpu_count() or 1,
        "versions": {m: _version(m) for m in
                     ("fastjoblib", "numpy", "joblib", "sklearn", "pandas", "lz4", "zstandard")},
        "memory_method": mem_method, "workloads_from": source,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


# ------------------------------------------------------------------------------------------------
# benchmarks/ratios.py (source checkout): its workloads, contenders, timing and memory method


_RATIOS_SCALES = {"tiny": 1 / 8192, "quick": 1 / 64, "full": 1.0}
_RATIOS_RUNS = {"tiny": 1, "quick": 3, "full": 5}
_RATIOS_API = ("W", "resolve", "time_workload", "measure_memory", "report")
# --tiny is a smoke test of the plumbing: the workloads that import sklearn / pandas (seconds
# of imports and model fitting) are left out.
_TINY_SKIP = {"random_forest", "dataframe"}


def ratios_module(path: Path | None = None) -> Any | None:
    """benchmarks/ratios.py of the source checkout this package runs from (never the current
    directory's: that would run whatever file sits there), if it has the functions used here."""
    if path is None:
        path = Path(__file__).resolve().parents[2] / "benchmarks" / "ratios.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("_fastjoblib_bench_ratios", path)
    if spec is None or spec.loader is None:
        return None
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except Exception:
        return None
    if not all(hasattr(mod, name) for name in _RATIOS_API):
        return None
    setattr(mod, "__fastjoblib_path__", str(path))
    return mod


def split_contender(name: str, codecs: Sequence[str]) -> tuple[str, str, str | None]:
    """ratios.py contender name -> (impl, compress, variant): 'joblib zlib' -> ('joblib', 'zlib',
    None), 'fastjoblib mmap_mode=r' -> ('fastjoblib', 'none', 'mmap_mode=r')."""
    head, _, rest = name.partition(" ")
    if rest.endswith(" (fastjoblib recipe)"):  # stock joblib given fastjoblib's zstd recipe
        rest = rest[: -len(" (fastjoblib recipe)")]
    if rest in codecs:
        return head, rest, None
    if rest.startswith("mmap_mode="):
        return head, "none", rest
    if head == "raw":
        return "raw floor", "none", None
    return name, "none", None


def _ratios_loop(mod: Any, size: str, scale: float, runs: int, codecs: list[str],
                 notes: list[str], raw: dict[str, Any], say: Callable[[str], None],
                 directory: str | None, memory: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="fastjoblib-bench-", dir=directory) as tmp:
        for wl, build in mod.W.WORKLOADS.items():
            if size == "tiny" and wl in _TINY_SKIP:
                continue
            try:
                obj = build(scale)
            except ImportError as exc:
                notes.append(f"{wl}: skipped ({exc})")
                say(f"skip {wl}: {exc}")
                continue
            contenders = mod.resolve(wl, codecs, notes)
            say(f"{wl}: {', '.join(c[0] for c in contenders)}")
            times = mod.time_workload(wl, obj, contenders, runs, tmp)
            del obj
            gc.collect()
            # ratios.py measures memory in a fresh interpreter per workload (seconds each):
            # not for the --tiny smoke run.
            mem = mod.measure_memory(wl, scale, codecs, tmp) if memory and size != "tiny" else None
            raw[wl] = (times, mem)


def run_ratios(mod: Any, size: str, log: Callable[[str], None] | None = None,
               directory: str | None = None, memory: bool = True,
               codecs: Sequence[str] | None = None,
               runs: int | None = None) -> tuple[dict[str, Any], str]:
    """Run benchmarks/ratios.py's workloads with its own functions; (results in this module's
    schema, ratios.py's report text). codecs: compressed contenders (default zlib, plus lz4
    when installed, except for --tiny)."""
    import argparse

    say = log or (lambda s: None)
    scale = _RATIOS_SCALES[size]
    runs = runs or _RATIOS_RUNS[size]
    if codecs is None:
        codecs = ["zlib"] + (["lz4"] if size != "tiny" and _have("lz4") else [])
    codecs = list(codecs)
    if "zstd" in codecs:
        _joblib_supports("zstd")  # stock joblib has no zstd: register fastjoblib's
    notes: list[str] = []
    raw: dict[str, Any] = {}
    # Whatever the process already holds (modules: a test runner may hold many) out of the
    # collector's way, so that ratios.py's gc.collect() between operations stays cheap.
    gc.collect()
    gc.freeze()
    try:
        _ratios_loop(mod, size, scale, runs, codecs, notes, raw, say, directory, memory)
    finally:
        gc.unfreeze()
    text = mod.report(raw, notes, argparse.Namespace(quick=size != "full", runs=runs,
                                                      codec_list=codecs,
                                                      scale_used=scale, dir=directory))
    rows: list[dict[str, Any]] = []
    for wl, (times, mem) in raw.items():
        for name, v in times.items():
            impl, compress, variant = split_contender(name, codecs)
            for op in ("dump", "load"):
                peak = mem.get(name, {}).get(op) if mem else None
                rows.append({
                    "workload": wl, "description": wl, "compress": compress, "variant": variant,
                    "impl": impl, "op": op, "seconds_min": None, "seconds_median": v[op],
                    "repeats": runs, "peak_bytes": None if peak is None else int(peak * (1 << 20)),
                    "file_bytes": v["size"], "data_bytes": None,
                })
    meta = _meta(size, "rss-subprocess" if any(m for _, m in raw.values()) else "none",
                 getattr(mod, "__fastjoblib_path__", "ratios.py"))
    meta.update(directory=directory or tempfile.gettempdir(), scale=scale, notes=notes)
    meta["filesystem"] = _fstype(meta["directory"])
    return {"schema": SCHEMA, "meta": meta, "results": rows}, text


def bench(size: str = "quick", log: Callable[[str], None] | None = None,
          directory: str | None = None, memory: bool = True, ratios: Any | None = None,
          codecs: Sequence[str] | None = None,
          runs: int | None = None) -> tuple[dict[str, Any], str]:
    """What ``python -m fastjoblib bench`` runs: benchmarks/ratios.py (workloads, method, report)
    when running from a source checkout, else the built-in set. (results, text table).
    `codecs` applies to ratios.py's engine only (the built-in set has its compressed cases)."""
    mod = ratios if ratios is not None else ratios_module()
    if mod is not None:
        return run_ratios(mod, size, log, directory, memory, codecs, runs)
    results = run(size, log, directory=directory, memory=memory, repeats=runs)
    return results, format_table(results)


# ------------------------------------------------------------------------------------------------
# ratio table


def _fmt_time(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def _fmt_mib(n: int | None) -> str:
    return "-" if n is None else f"{n / (1 << 20):.1f}"


def _secs(row: dict[str, Any]) -> float | None:
    value = row.get("seconds_min")
    if value is None:
        value = row.get("seconds_median")
    return None if value is None else float(value)


def format_table(results: dict[str, Any]) -> str:
    """Ratios: how many times longer joblib / pickle take than fastjoblib (> 1: fastjoblib is
    faster), on the fastest repeat; peak memory in MiB (fastjoblib / joblib)."""
    rows = results.get("results", [])
    index = {(r["workload"], r["compress"], r["impl"], r["op"]): r for r in rows}
    cases: list[tuple[str, str]] = []
    for r in rows:
        key = (r["workload"], r["compress"])
        if key not in cases:
            cases.append(key)
    header = ["workload", "compress", "file MiB"]
    for op in ("dump", "load"):
        header += [f"{op} fj", "x joblib", "x pickle"]
    header += ["peak MiB dump fj/jl", "load fj/jl"]
    table = [header]

    def ratio(wl: str, c: str, impl: str, op: str) -> str:
        fj, other = index.get((wl, c, "fastjoblib", op)), index.get((wl, c, impl, op))
        a = _secs(other) if other is not None else None
        b = _secs(fj) if fj is not None else None
        if a is None or not b:
            return "-"
        return f"{a / b:.2f}"

    for wl, c in cases:
        fjd = index.get((wl, c, "fastjoblib", "dump"))
        line = [wl, c, _fmt_mib(fjd["file_bytes"]) if fjd else "-"]
        for op in ("dump", "load"):
            fj = index.get((wl, c, "fastjoblib", op))
            line += [_fmt_time(_secs(fj) if fj else None),
                     ratio(wl, c, "joblib", op), ratio(wl, c, "pickle", op)]
        for op in ("dump", "load"):
            fj, jl = index.get((wl, c, "fastjoblib", op)), index.get((wl, c, "joblib", op))
            line.append(f"{_fmt_mib(fj['peak_bytes'] if fj else None)}/"
                        f"{_fmt_mib(jl['peak_bytes'] if jl else None)}")
        table.append(line)
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    out = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w)
                     for i, (cell, w) in enumerate(zip(row, widths))).rstrip() for row in table]
    meta = results.get("meta", {})
    out.append("")
    out.append("x joblib / x pickle: their time divided by fastjoblib's (fastest of "
               f"{rows[0]['repeats'] if rows else '?'} interleaved repeats; > 1 = fastjoblib "
               f"faster). Peak: extra memory ({meta.get('memory_method', '?')}). Files in "
               f"{meta.get('directory', '?')} ({meta.get('filesystem', '?')}), overwritten "
               "round after round. "
               f"Workloads: {meta.get('workloads_from', '?')}; size {meta.get('size', '?')}.")
    return "\n".join(out)
