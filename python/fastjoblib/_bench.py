"""The benchmark: one definition behind ``python -m fastjoblib bench`` and ``benchmarks/ratios.py``.

Workloads (the README's names), contenders, timing, memory method, report and JSON all live here;
``benchmarks/ratios.py`` is a thin script calling :func:`main`, and ``benchmarks/workloads.py``
re-exports the workload builders for the other benchmark scripts.

Method (what the numbers mean):

* Every contender dumps the workload to a real file in ``--dir`` (default: the system temporary
  directory; ``/dev/shm`` takes the filesystem out of the numbers) and loads it back from that
  file. Each contender keeps its file from round to round, so every dump after the first
  overwrites the previous round's file, as a training script overwrites its checkpoint (an
  untimed first round creates the files). No fsync, no cache dropping.
* Timing: ``--runs`` rounds; in each round every contender runs once (dump, then load), and the
  contender order rotates from round to round. A cell is the ratio of the medians over the rounds
  (wall clock, ``time.perf_counter``).
* Peak memory: measured in a fresh interpreter per workload. Before each operation the child runs
  ``gc.collect()`` and ``malloc_trim(0)`` and resets the kernel's RSS high-water mark (writing 5
  to ``/proc/self/clear_refs``); the figure is VmHWM - VmRSS(before). Linux only ("n/a" elsewhere).
* The raw floor (big_array, torch_tensor): ``os.write`` of the array's (tensor's) own memory
  (dump) and ``np.empty`` + ``readinto`` (load; ``torch.from_numpy`` of it for the tensor).
* PyTorch workloads (torch_tensor, torch_state_dict) add ``torch.save`` / ``torch.load`` and
  ``torch.load(mmap=True)`` as contenders and get a table of their own (vs torch.save/load in
  place of pickle-4); the load mmap row sets fastjoblib's and joblib's ``mmap_mode='r'`` (each
  loading its own file: joblib's holds torch's storage bytes, so it maps nothing) against
  ``torch.load(mmap=True)``. Loads are timed as returned (a mapped load has read nothing yet).
* Contenders whose package is missing (joblib, scikit-learn, pandas, lz4, zstandard, torch) are
  skipped with a one-line note naming the ``pip install`` command; nothing is invented.

JSON schema ``fastjoblib-bench/1`` (the input of benchmarks/charts.py)::

    {"schema": "fastjoblib-bench/1",
     "meta": {"size", "python", "platform", "machine", "cpus", "memory_total", "versions": {...},
              "memory_method", "workloads_from", "directory", "filesystem", "date", "command",
              "notes": [...], "scale", "runs", "codecs"},
     "results": [{"workload", "description", "compress": "none"|NAME, "variant": null|"mmap_mode=r"|"mmap=True",
                  "impl": "fastjoblib"|"joblib"|"pickle-4"|"pickle-5"|"raw floor"|
                          "torch.save/torch.load"|...,
                  "op": "dump"|"load", "seconds_min": null, "seconds_median": float,
                  "repeats": int, "peak_bytes": int|null, "file_bytes": int,
                  "data_bytes": null}, ...]}
"""
from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import importlib.util
import json
import os
import pickle
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

SCHEMA = "fastjoblib-bench/1"
MiB = 1 << 20

# ------------------------------------------------------------------------------------------------
# workloads (full sizes; --quick is 1/64 of them). Deterministic (fixed seeds).


def big_array(scale: float = 1.0) -> Any:
    """one float64 array of 512 MiB (random)"""
    import numpy as np

    n = max(int(512 * MiB * scale) // 8, 1)
    return np.random.default_rng(0).random(n)


def smooth_array(scale: float = 1.0) -> Any:
    """a compressible 512 MiB float64 array: a smooth signal rounded to 2 decimals"""
    import numpy as np

    n = max(int(512 * MiB * scale) // 8, 1)
    t = np.linspace(0.0, 1.0, n)
    return np.round(np.sin(t * (800 * np.pi)) * 100.0 + t * 50.0, 2)


def dict_of_arrays(scale: float = 1.0) -> Any:
    """2,000 float32 arrays of 4-256 KiB each"""
    import numpy as np

    rng = np.random.default_rng(1)
    count = max(int(2000 * scale), 10)
    out = {}
    for i in range(count):
        nbytes = int(rng.integers(4 * 1024, 256 * 1024 + 1))
        out["layer_%04d" % i] = rng.random(nbytes // 4, dtype=np.float32)
    return out


def random_forest(scale: float = 1.0) -> Any:
    """RandomForestClassifier, 200 trees (scikit-learn)"""
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(2)
    n_trees = max(int(200 * scale), 5)
    n_samples = max(int(10_000 * min(1.0, scale * 4)), 500)
    X = rng.random((n_samples, 20))
    y = (X[:, 0] + 0.3 * rng.random(n_samples) > 0.6).astype(int) + (X[:, 1] > 0.5)
    return RandomForestClassifier(n_estimators=n_trees, random_state=0, n_jobs=2).fit(X, y)


def small_dicts(scale: float = 1.0) -> Any:
    """a list of 300,000 small dicts"""
    n = max(int(300_000 * scale), 100)
    return [{"id": i, "name": "user%d" % i, "score": i * 0.5, "active": bool(i & 1),
             "tags": ["a", "b"] if i % 3 else []} for i in range(n)]


def f_order_array(scale: float = 1.0) -> Any:
    """a 128 MiB Fortran-ordered float64 array"""
    import numpy as np

    n = max(int(128 * MiB * scale) // 8, 64)
    cols = 256
    rows = max(n // cols, 1)
    return np.asfortranarray(np.random.default_rng(3).random((rows, cols)))


def strided_array(scale: float = 1.0) -> Any:
    """a 128 MiB strided view (every other column of a 256 MiB array)"""
    import numpy as np

    n = max(int(256 * MiB * scale) // 8, 128)
    cols = 512
    rows = max(n // cols, 1)
    return np.random.default_rng(4).random((rows, cols))[:, ::2]


def dataframe(scale: float = 1.0) -> Any:
    """a pandas DataFrame, 2,000,000 rows, numeric and string columns"""
    import numpy as np
    import pandas as pd

    n = max(int(2_000_000 * scale), 100)
    rng = np.random.default_rng(5)
    cities = np.array(["Paris", "Lyon", "Berlin", "Madrid", "Roma", "Oslo", "Lisboa", "Wien"])
    return pd.DataFrame({
        "id": np.arange(n, dtype=np.int64),
        "x": rng.random(n),
        "y": rng.random(n).astype(np.float32),
        "city": cities[rng.integers(0, len(cities), n)].astype(object),
        "label": ["item-%d" % i for i in range(n)],
    })


def str_int_dict(scale: float = 1.0) -> Any:
    """a dict of 1,000,000 short str keys to ints"""
    n = max(int(1_000_000 * scale), 100)
    return {"k%d" % i: i for i in range(n)}


def torch_tensor(scale: float = 1.0) -> Any:
    """one float32 CPU tensor of 256 MiB (PyTorch)"""
    import torch

    n = max(int(256 * MiB * scale) // 4, 1)
    return torch.randn(n, generator=torch.Generator().manual_seed(6))


def torch_state_dict(scale: float = 1.0) -> Any:
    """the state dict of 50 Linear(1024, 1024) layers: 100 float32 tensors, 200 MiB (PyTorch)"""
    import torch

    # 100 tensors at every size; the layer width follows the square root of the scale
    width = max(int(1024 * scale ** 0.5), 8)
    torch.manual_seed(7)
    model = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(50)])
    return model.state_dict()  # an OrderedDict of 100 tensors, with _metadata


WORKLOADS: dict[str, Callable[[float], Any]] = {
    "big_array": big_array,
    "smooth_array": smooth_array,
    "dict_of_arrays": dict_of_arrays,
    "random_forest": random_forest,
    "small_dicts": small_dicts,
    "f_order_array": f_order_array,
    "strided_array": strided_array,
    "dataframe": dataframe,
    "str_int_dict": str_int_dict,
    "torch_tensor": torch_tensor,
    "torch_state_dict": torch_state_dict,
}
# the pip package a workload needs beyond the required ones
WORKLOAD_PACKAGES = {"random_forest": ("sklearn", "scikit-learn"), "dataframe": ("pandas", "pandas"),
                     "torch_tensor": ("torch", "torch"), "torch_state_dict": ("torch", "torch")}
# PyTorch workloads: also compared with torch.save / torch.load, in a table of their own.
TORCH_WORKLOADS = {"torch_tensor", "torch_state_dict"}
# Workloads made of arrays (mmap loads are measured on these).
ARRAY_WORKLOADS = {"big_array", "smooth_array", "dict_of_arrays", "f_order_array",
                   "strided_array"} | TORCH_WORKLOADS
# The default set (smooth_array is for the compressed table: benchmarks/codec_table.py).
DEFAULT_WORKLOADS = [w for w in WORKLOADS if w != "smooth_array"]
DEFAULT_CODECS = ("zlib", "lz4", "zstd")
SIZES = {"tiny": 1 / 8192, "quick": 1 / 64, "full": 1.0}
RUNS = {"tiny": 1, "quick": 3, "full": 5}
# --tiny is a smoke test of the plumbing: no sklearn / pandas / torch fitting and imports (unless
# named in --workloads).
_TINY_SKIP = {"random_forest", "dataframe"} | TORCH_WORKLOADS
RAW = "raw os.write / np.empty+readinto"
TORCH = "torch.save/torch.load"
TORCH_MMAP = "torch.save/torch.load mmap=True"


def _have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_package_note(pip_name: str) -> str:
    from ._compressors import missing_package_message

    return str(missing_package_message(pip_name))


# ------------------------------------------------------------------------------------------------
# contenders: name -> (dump(obj, path), load(path)); availability checked when resolved


class Skip(Exception):
    """A contender that cannot run here; the message is the one-line note."""


def _pickle_contender(protocol: int) -> tuple[Callable, Callable]:
    def dump(obj: Any, path: str) -> None:
        with open(path, "wb") as f:
            pickle.dump(obj, f, protocol=protocol)

    def load(path: str) -> Any:
        with open(path, "rb") as f:
            return pickle.load(f)
    return dump, load


def _joblib_contender(compress: Any = 0, mmap_mode: str | None = None) -> tuple[Callable, Callable]:
    if not _have("joblib"):
        raise Skip("joblib is not installed: the 'vs joblib' columns are n/a (pip install joblib)")
    import joblib

    if compress == "zstd":
        # stock joblib has no zstd: it gets fastjoblib's recipe (the zstandard package, in Python)
        import fastjoblib

        fastjoblib.register_zstd_with_joblib()

    def dump(obj: Any, path: str) -> None:
        joblib.dump(obj, path, compress=compress)

    def load(path: str) -> Any:
        return joblib.load(path, mmap_mode=mmap_mode)
    return dump, load


def _fastjoblib_contender(compress: Any = 0, mmap_mode: str | None = None) -> tuple[Callable, Callable]:
    import fastjoblib

    def dump(obj: Any, path: str) -> None:
        fastjoblib.dump(obj, path, compress=compress)

    def load(path: str) -> Any:
        return fastjoblib.load(path, mmap_mode=mmap_mode)  # type: ignore[arg-type]
    return dump, load


def _fastjoblib_pickle_contender(protocol: int) -> tuple[Callable, Callable]:
    import fastjoblib

    def dump(obj: Any, path: str) -> None:
        with open(path, "wb") as f:
            fastjoblib.dump_pickle(obj, f, protocol=protocol)

    def load(path: str) -> Any:
        with open(path, "rb") as f:
            return fastjoblib.load_pickle(f)
    return dump, load


def _raw_contender(holder: dict[str, Any]) -> tuple[Callable, Callable]:
    import numpy as np

    def dump(obj: Any, path: str) -> None:
        tensor = not isinstance(obj, np.ndarray)  # a torch tensor: its memory through .numpy()
        if tensor:
            obj = obj.detach().numpy()
        view = memoryview(obj).cast("B")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            done = 0
            while done < len(view):
                done += os.write(fd, view[done:done + (16 << 20)])
        finally:
            os.close(fd)
        holder["meta"] = (obj.shape, obj.dtype, tensor)

    def load(path: str) -> Any:
        shape, dtype, tensor = holder["meta"]
        out = np.empty(shape, dtype)
        with open(path, "rb", buffering=0) as f:
            view = memoryview(out).cast("B")  # type: ignore[arg-type, unused-ignore]
            done = 0
            while done < len(view):
                # bounded reads: one 512 MiB read(2) into fresh memory was erratically slow
                n = f.readinto(view[done:done + (16 << 20)])
                if not n:
                    raise EOFError(path)
                done += n
        if tensor:
            import torch

            return torch.from_numpy(out)
        return out
    return dump, load


def _torch_contender(mmap: bool = False) -> tuple[Callable, Callable]:
    """torch.save / torch.load (its zip format; weights_only=True, torch's default since 2.6)."""
    import torch

    def dump(obj: Any, path: str) -> None:
        torch.save(obj, path)

    def load(path: str) -> Any:
        return torch.load(path, mmap=True) if mmap else torch.load(path)
    return dump, load


def codec_note(codec: str) -> str | None:
    """None if fastjoblib can write `codec` here, else the one-line note saying why not."""
    from . import _compressors

    spec = _compressors.COMPRESSORS.get(codec)
    if spec is None:
        return f"unknown codec {codec!r}"
    if spec.package and not _have(spec.package):
        return f"{codec}: skipped, {_compressors.missing_package_message(spec.pip_name)}"
    return None


def contenders_for(workload: str, codecs: Sequence[str]) -> list[tuple[str, Callable]]:
    """[(name, factory)] in display order."""
    out: list[tuple[str, Callable]] = [
        ("pickle-4", lambda: _pickle_contender(4)),
        ("pickle-5", lambda: _pickle_contender(5)),
        ("joblib", lambda: _joblib_contender()),
        ("fastjoblib", lambda: _fastjoblib_contender()),
        ("fastjoblib.dump_pickle-5", lambda: _fastjoblib_pickle_contender(5)),
    ]
    if workload in ARRAY_WORKLOADS:
        out += [
            ("joblib mmap_mode=r", lambda: _joblib_contender(mmap_mode="r")),
            ("fastjoblib mmap_mode=r", lambda: _fastjoblib_contender(mmap_mode="r")),
        ]
    if workload in TORCH_WORKLOADS:
        out += [(TORCH, lambda: _torch_contender()),
                (TORCH_MMAP, lambda: _torch_contender(mmap=True))]
    if workload in ("big_array", "torch_tensor"):
        holder: dict[str, Any] = {}
        out += [(RAW, lambda: _raw_contender(holder))]
    for codec in codecs:
        out += [
            ("joblib %s" % codec if codec != "zstd" else "joblib zstd (fastjoblib recipe)",
             lambda c=codec: _joblib_contender(compress=c)),
            ("fastjoblib %s" % codec, lambda c=codec: _fastjoblib_contender(compress=c)),
        ]
    return out


def resolve(workload: str, codecs: Sequence[str], notes: list[str]) -> list[tuple]:
    """The runnable contenders [(name, dump, load)]; a skipped one adds its note once."""
    ready = []
    for name, factory in contenders_for(workload, codecs):
        try:
            ready.append((name,) + tuple(factory()))
        except Skip as exc:
            if str(exc) not in notes:
                notes.append(str(exc))
    return ready


def usable_codecs(codecs: Sequence[str], notes: list[str]) -> list[str]:
    """The codecs whose package is installed; one note per codec left out."""
    out = []
    for c in codecs:
        note = codec_note(c)
        if note is None:
            out.append(c)
        elif note not in notes:
            notes.append(note)
    return out


# ------------------------------------------------------------------------------------------------
# timing (this process)


def time_workload(workload: str, obj: Any, contenders: Sequence[tuple], runs: int,
                  directory: str) -> dict[str, dict[str, Any]]:
    times: dict[str, dict[str, Any]] = {name: {"dump": [], "load": [], "size": None}
                                        for name, _, _ in contenders}
    paths = {name: os.path.join(directory, "bench-%d.bin" % i)
             for i, (name, _, _) in enumerate(contenders)}
    for name, dump, _ in contenders:  # untimed: the files that every round overwrites
        dump(obj, paths[name])
    for rnd in range(runs):
        k = rnd % len(contenders)
        order = list(contenders[k:]) + list(contenders[:k])
        for name, dump, load in order:
            path = paths[name]
            gc.collect()
            t0 = time.perf_counter()
            dump(obj, path)
            t1 = time.perf_counter()
            times[name]["size"] = os.path.getsize(path)
            gc.collect()
            t2 = time.perf_counter()
            result = load(path)
            t3 = time.perf_counter()
            del result
            times[name]["dump"].append(t1 - t0)
            times[name]["load"].append(t3 - t2)
    for path in paths.values():
        os.unlink(path)
    return {name: {"dump": statistics.median(v["dump"]), "load": statistics.median(v["load"]),
                   "size": v["size"]} for name, v in times.items()}


# ------------------------------------------------------------------------------------------------
# peak memory (a fresh interpreter per workload)


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def _settle() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def memory_child(workload: str, scale: float, codecs: Sequence[str], directory: str) -> None:
    obj = WORKLOADS[workload](scale)
    out = {}
    for name, dump, load in resolve(workload, codecs, []):
        path = os.path.join(directory, "mem-%d.bin" % os.getpid())
        _settle()
        _reset_peak()
        base = _status_kib("VmRSS")
        dump(obj, path)
        dump_peak = _status_kib("VmHWM") - base
        _settle()
        _reset_peak()
        base = _status_kib("VmRSS")
        result = load(path)  # (an mmap load is measured as returned: mapped, untouched)
        load_peak = _status_kib("VmHWM") - base
        del result
        os.unlink(path)
        out[name] = {"dump": dump_peak / 1024.0, "load": load_peak / 1024.0}
    print(json.dumps(out))


def measure_memory(workload: str, scale: float, codecs: Sequence[str], directory: str,
                   script: str | None = None) -> dict[str, Any] | None:
    """Run the memory child (``python -m fastjoblib._bench --memory-child ...``, or `script`
    with the same options) and return the JSON it prints last; None where the method is
    unavailable or the child failed."""
    if not os.path.exists("/proc/self/clear_refs"):
        return None
    args = ["--memory-child", workload, "--scale", repr(scale), "--codecs", ",".join(codecs),
            "--dir", directory]
    env = dict(os.environ)
    if script is None:
        # the child imports this very fastjoblib (a source checkout's python/ included)
        import fastjoblib

        root = os.path.dirname(os.path.dirname(os.path.abspath(fastjoblib.__file__)))
        env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
        cmd = [sys.executable, "-m", "fastjoblib._bench"] + args
    else:
        cmd = [sys.executable, os.path.abspath(script)] + args
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        sys.stderr.write(res.stderr)
        return None
    result: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return result


# ------------------------------------------------------------------------------------------------
# machine, filesystem, versions


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


fstype = _fstype

_VERSION_OF = (("fastjoblib", "fastjoblib"), ("numpy", "numpy"), ("joblib", "joblib"),
               ("scikit-learn", "sklearn"), ("pandas", "pandas"), ("lz4", "lz4"),
               ("zstandard", "zstandard"), ("torch", "torch"))


def versions() -> dict[str, str | None]:
    """Installed versions (None: not installed), read from the distributions' metadata (no
    imports), fastjoblib's from the package itself."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for dist, module in _VERSION_OF:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
            if module == "fastjoblib":
                import fastjoblib

                out[dist] = getattr(fastjoblib, "__version__", "?")
    return out


def _memory_total() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine_lines(directory: str) -> list[str]:
    mem = _memory_total()
    v = versions()
    return [
        "Machine: %s, %s, %d CPUs%s; Python %s (%s)." % (
            platform.platform(), platform.machine() or "?", os.cpu_count() or 0,
            ", %.1f GiB RAM" % (mem / (1 << 30)) if mem else "", platform.python_version(),
            platform.python_implementation()),
        "Versions: " + ", ".join("%s %s" % (k, val if val else "not installed")
                                 for k, val in v.items()) + ".",
        "Files in %s (%s); each round overwrites the previous round's file." % (
            directory, _fstype(directory)),
    ]


# ------------------------------------------------------------------------------------------------
# report


def _fmt_t(t: float) -> str:
    return "%.3f" % t if t < 10 else "%.1f" % t


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "n/a"
    return "%.2fx" % (a / b)


def _mem_ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "n/a"
    if a < 1 or b < 1:  # a ratio of near-zero peaks means nothing: show both
        return "%.1f vs %.1f MiB" % (a, b)
    return "%.2fx" % (a / b)


def _torch_rows(lines: list[str], wl: str, times: dict[str, Any], mem: dict[str, Any] | None,
                codecs: Sequence[str]) -> None:
    """The rows of one PyTorch workload (TORCH_TABLE_COLUMNS)."""
    def t(name: str, op: str) -> float | None:
        return times[name][op] if name in times else None

    def m(name: str, op: str) -> float | None:
        return mem[name][op] if mem and name in mem else None

    def row(label: str, ours: str, op: str, joblib_name: str, torch_name: str | None,
            others: bool) -> None:
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            wl, label, _ratio(t(joblib_name, op), t(ours, op)),
            _ratio(t(torch_name, op), t(ours, op)) if torch_name else "",
            _ratio(t("pickle-5", op), t(ours, op)) if others else "",
            _ratio(t(RAW, op), t(ours, op)) if others and RAW in times else "",
            _mem_ratio(m(joblib_name, op), m(ours, op)) if mem else "n/a",
            (_mem_ratio(m(torch_name, op), m(ours, op)) if mem else "n/a") if torch_name
            else ""))

    if "fastjoblib" not in times:
        return
    row("dump", "fastjoblib", "dump", "joblib", TORCH, True)
    row("load", "fastjoblib", "load", "joblib", TORCH, True)
    if "fastjoblib mmap_mode=r" in times:
        row("load mmap", "fastjoblib mmap_mode=r", "load", "joblib mmap_mode=r", TORCH_MMAP,
            False)
    for codec in codecs:  # torch.save does not compress: joblib's codec only
        ours = "fastjoblib %s" % codec
        if ours in times:
            jname = "joblib %s" % codec
            if jname not in times:
                jname = "joblib zstd (fastjoblib recipe)"
            for op in ("dump", "load"):
                row("%s %s" % (op, codec), ours, op, jname, None, False)


TABLE_COLUMNS = ("workload", "op", "vs joblib", "vs pickle-4", "vs pickle-5", "vs raw floor",
                 "mem vs joblib", "mem vs pickle-5")
# The PyTorch workloads' table: torch.save / torch.load in place of pickle-4.
TORCH_TABLE_COLUMNS = ("workload", "op", "vs joblib", "vs torch.save/load", "vs pickle-5",
                       "vs raw floor", "mem vs joblib", "mem vs torch.save/load")


def report(results: dict[str, Any], notes: Sequence[str], args: Any) -> str:
    """The Markdown report: header (sizes, method, machine, filesystem, versions), the ratio
    table (the README's columns), raw numbers, notes, and the command that reproduces it."""
    lines = []
    scale = args.scale_used
    size = "full sizes" if scale == 1.0 else "sizes x %.4g" % scale
    codecs = ", codecs: %s with threads=None (all cores)" % ",".join(args.codec_list) \
        if args.codec_list else ""
    lines.append("## fastjoblib benchmark (%s, %d runs, medians%s)" % (size, args.runs, codecs))
    lines.append("")
    where = getattr(args, "dir", None) or tempfile.gettempdir()
    lines += machine_lines(where)
    lines.append("Times: medians of interleaved rounds; memory: peak extra RSS in MiB.")
    lines.append("")
    torch_rows: list[str] = []
    if not results or any(wl not in TORCH_WORKLOADS for wl in results):
        lines.append("### Ratios: other time (or peak memory) / fastjoblib's; "
                     ">1 = fastjoblib wins")
        lines.append("")
        lines.append("| " + " | ".join(TABLE_COLUMNS) + " |")
        lines.append("|" + "---|" * len(TABLE_COLUMNS))
    for wl, (times, mem) in results.items():
        if wl in TORCH_WORKLOADS:
            _torch_rows(torch_rows, wl, times, mem, args.codec_list)
            continue

        def t(name: str, op: str) -> float | None:
            return times[name][op] if name in times else None

        def m(name: str, op: str) -> float | None:
            return mem[name][op] if mem and name in mem else None

        def row(op_label: str, ours: str, op: str, joblib_name: str = "joblib",
                pickles: bool = True, floor: bool = True) -> None:
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                wl, op_label, _ratio(t(joblib_name, op), t(ours, op)),
                _ratio(t("pickle-4", op), t(ours, op)) if pickles else "",
                _ratio(t("pickle-5", op), t(ours, op)) if pickles else "",
                _ratio(t(RAW, op), t(ours, op)) if floor and RAW in times else "",
                _mem_ratio(m(joblib_name, op), m(ours, op)) if mem else "n/a",
                (_mem_ratio(m("pickle-5", op), m(ours, op)) if mem else "n/a") if pickles
                else ""))

        if "fastjoblib" not in times:
            continue
        row("dump", "fastjoblib", "dump")
        row("load", "fastjoblib", "load")
        if "fastjoblib mmap_mode=r" in times:
            row("load mmap_mode=r", "fastjoblib mmap_mode=r", "load",
                joblib_name="joblib mmap_mode=r", pickles=False, floor=False)
        for codec in args.codec_list:
            ours = "fastjoblib %s" % codec
            if ours in times:
                for op in ("dump", "load"):
                    jname = "joblib %s" % codec
                    if jname not in times:
                        jname = "joblib zstd (fastjoblib recipe)"
                    row("%s %s" % (op, codec), ours, op, joblib_name=jname,
                        pickles=False, floor=False)
    if torch_rows:
        lines.append("")
        lines.append("### PyTorch: other time (or peak memory) / fastjoblib's; >1 = fastjoblib wins")
        lines.append("")
        lines.append("The load mmap row: fastjoblib and joblib with mmap_mode='r' (each reading "
                     "its own file; joblib's file holds torch's bytes, nothing to map), "
                     "torch.load(mmap=True).")
        lines.append("")
        lines.append("| " + " | ".join(TORCH_TABLE_COLUMNS) + " |")
        lines.append("|" + "---|" * len(TORCH_TABLE_COLUMNS))
        lines += torch_rows
    lines.append("")
    lines.append("### Raw numbers")
    lines.append("")
    lines.append("| workload | contender | dump s | load s | file MiB | dump peak MiB | "
                 "load peak MiB |")
    lines.append("|---|---|---|---|---|---|---|")
    for wl, (times, mem) in results.items():
        for name, v in times.items():
            mm = mem.get(name) if mem else None
            lines.append("| %s | %s | %s | %s | %.1f | %s | %s |" % (
                wl, name, _fmt_t(v["dump"]), _fmt_t(v["load"]), v["size"] / MiB,
                "%.0f" % mm["dump"] if mm else "n/a", "%.0f" % mm["load"] if mm else "n/a"))
    if notes:
        lines.append("")
        lines.append("Notes:")
        for n in notes:
            lines.append("* " + n)
    command = getattr(args, "command_line", None)
    if command:
        lines.append("")
        lines.append("Command: " + command)
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# JSON (fastjoblib-bench/1)


def split_contender(name: str, codecs: Sequence[str]) -> tuple[str, str, str | None]:
    """contender name -> (impl, compress, variant): 'joblib zlib' -> ('joblib', 'zlib', None),
    'fastjoblib mmap_mode=r' -> ('fastjoblib', 'none', 'mmap_mode=r')."""
    head, _, rest = name.partition(" ")
    if rest.endswith(" (fastjoblib recipe)"):  # stock joblib given fastjoblib's zstd recipe
        rest = rest[: -len(" (fastjoblib recipe)")]
    if rest in codecs:
        return head, rest, None
    if rest.startswith("mmap_mode="):
        return head, "none", rest
    if head == TORCH and rest == "mmap=True":
        return TORCH, "none", rest
    if head == "raw":
        return "raw floor", "none", None
    return name, "none", None


def to_json(raw: dict[str, Any], notes: Sequence[str], args: Any, size: str) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for wl, (times, mem) in raw.items():
        builder = WORKLOADS.get(wl)
        desc = (builder.__doc__ or wl).strip() if builder else wl
        for name, v in times.items():
            impl, compress, variant = split_contender(name, args.codec_list)
            for op in ("dump", "load"):
                peak = mem.get(name, {}).get(op) if mem else None
                rows.append({
                    "workload": wl, "description": desc, "compress": compress,
                    "variant": variant, "impl": impl, "op": op, "seconds_min": None,
                    "seconds_median": v[op], "repeats": args.runs,
                    "peak_bytes": None if peak is None else int(peak * MiB),
                    "file_bytes": v["size"], "data_bytes": None,
                })
    where = getattr(args, "dir", None) or tempfile.gettempdir()
    mem_total = _memory_total()
    meta = {
        "size": size, "python": platform.python_version(), "platform": platform.platform(),
        "machine": platform.machine(), "cpus": os.cpu_count() or 1, "memory_total": mem_total,
        "versions": versions(),
        "memory_method": "rss-subprocess" if any(m for _, m in raw.values()) else "none",
        "workloads_from": "fastjoblib._bench", "directory": where, "filesystem": _fstype(where),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": getattr(args, "command_line", None), "notes": list(notes),
        "scale": args.scale_used, "runs": args.runs, "codecs": list(args.codec_list),
    }
    return {"schema": SCHEMA, "meta": meta, "results": rows}


# ------------------------------------------------------------------------------------------------
# the run (shared by the CLI and benchmarks/ratios.py)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options, identical for ``python -m fastjoblib bench`` and benchmarks/ratios.py."""
    p.add_argument("--quick", action="store_true", help="1/64 of the full sizes, 3 runs")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--scale", type=float, default=None,
                   help="size factor of the full sizes (overrides --quick)")
    p.add_argument("--runs", type=int, metavar="N",
                   help="interleaved rounds per workload (default 5, --quick 3); cells are medians")
    p.add_argument("--workloads", metavar="LIST", default=None,
                   help="comma-separated, among: %s (default: all but smooth_array)"
                        % ", ".join(WORKLOADS))
    p.add_argument("--codecs", metavar="LIST", default=None,
                   help="compressors compared too (default %s; those whose package is missing "
                        "are skipped with a note); 'none' for no compressed rows"
                        % ",".join(DEFAULT_CODECS))
    p.add_argument("--dir", metavar="DIR",
                   help="where to write the files (default: the system temporary directory; "
                        "each round overwrites the previous round's file; a tmpfs such as "
                        "/dev/shm takes the filesystem out of the numbers)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory pass")
    p.add_argument("--json", metavar="FILE",
                   help="also write the results as JSON (input of benchmarks/charts.py)")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)


class BenchError(Exception):
    """A refused option: the message says which and why."""


def check_args(args: argparse.Namespace) -> None:
    """Refuse what cannot be honoured (raises BenchError); fills args.codec_list, scale_used,
    runs, names."""
    from ._compressors import COMPRESSORS

    if args.dir is not None and not os.path.isdir(args.dir):
        raise BenchError(f"--dir {args.dir}: not a directory")
    if args.runs is not None and args.runs < 1:
        raise BenchError("--runs must be >= 1")
    if args.scale is not None and not (0 < args.scale <= 4):
        raise BenchError("--scale must be > 0 and <= 4")
    if args.tiny and args.quick:
        raise BenchError("--tiny and --quick: choose one")
    if args.codecs is None:
        codecs = list(DEFAULT_CODECS)
    elif args.codecs.strip() in ("", "none"):
        codecs = []
    else:
        codecs = [c for c in args.codecs.split(",") if c]
        unknown = [c for c in codecs if c not in COMPRESSORS]
        if unknown:
            raise BenchError(f"--codecs: unknown {', '.join(unknown)}; choose among "
                             f"{', '.join(COMPRESSORS)}")
    args.codec_list = codecs
    size = "tiny" if args.tiny else "quick" if args.quick else "full"
    args.size = size
    args.scale_used = args.scale if args.scale is not None else SIZES[size]
    args.runs = args.runs or RUNS[size]
    if args.workloads is None:
        names = [w for w in DEFAULT_WORKLOADS if not (size == "tiny" and w in _TINY_SKIP)]
    else:
        names = [w for w in args.workloads.split(",") if w]
        unknown = [w for w in names if w not in WORKLOADS]
        if unknown or not names:
            raise BenchError("--workloads: unknown %s (known: %s)"
                             % (", ".join(unknown) or "(empty)", ", ".join(WORKLOADS)))
    args.names = names


def run(args: argparse.Namespace, log: Callable[[str], None] | None = None
        ) -> tuple[dict[str, Any], list[str], dict[str, Any]]:
    """Run the checked `args`: (raw results {workload: (times, mem)}, notes, JSON)."""
    say = log or (lambda s: None)
    notes: list[str] = []
    args.codec_list = usable_codecs(args.codec_list, notes)
    raw: dict[str, Any] = {}
    # Whatever the process already holds (modules: a test runner may hold many) out of the
    # collector's way, so that the gc.collect() between operations stays cheap.
    gc.collect()
    gc.freeze()
    try:
        with tempfile.TemporaryDirectory(dir=args.dir, prefix="fastjoblib-bench-") as d:
            for wl in args.names:
                pkg = WORKLOAD_PACKAGES.get(wl)
                if pkg is not None and not _have(pkg[0]):
                    notes.append("%s: skipped, %s" % (wl, missing_package_note(pkg[1])))
                    say("skip " + notes[-1])
                    continue
                t0 = time.perf_counter()
                obj = WORKLOADS[wl](args.scale_used)
                contenders = resolve(wl, args.codec_list, notes)
                say("%s: %s" % (wl, ", ".join(c[0] for c in contenders)))
                times = time_workload(wl, obj, contenders, args.runs, d)
                del obj
                gc.collect()
                mem = None
                if not args.no_memory and args.size != "tiny":
                    mem = measure_memory(wl, args.scale_used, args.codec_list, d)
                    if mem is None:
                        note = "peak memory not measured (needs Linux /proc/self/clear_refs)"
                        if note not in notes:
                            notes.append(note)
                raw[wl] = (times, mem)
                say("# %s done in %.0f s" % (wl, time.perf_counter() - t0))
    finally:
        gc.unfreeze()
    return raw, notes, to_json(raw, notes, args, args.size)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None,
         prog: str = "python -m fastjoblib bench") -> int:
    """benchmarks/ratios.py's entry point (the CLI's bench subcommand calls run_command)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_command(args, out or sys.stdout, prog, argv)
    except BenchError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1


def run_command(args: argparse.Namespace, out: TextIO, prog: str,
                argv: Sequence[str] | None = None) -> int:
    if args.memory_child:  # (internal: measure_memory's child process)
        memory_child(args.memory_child, args.scale if args.scale is not None else 1.0,
                     [c for c in (args.codecs or "").split(",") if c], args.dir)
        return 0
    check_args(args)
    shown = list(sys.argv[1:] if argv is None else argv)
    args.command_line = prog + "".join(" " + shlex.quote(a) for a in shown)
    raw, notes, data = run(args, log=lambda s: print(s, file=sys.stderr, flush=True))
    out.write(report(raw, notes, args) + "\n")
    if args.json:
        try:
            with open(args.json, "w") as f:
                json.dump(data, f, indent=1)
                f.write("\n")
        except OSError as exc:
            raise BenchError(f"cannot write {args.json}: {exc.strerror or exc}") from None
        print(f"results written to {args.json} (charts: python benchmarks/charts.py {args.json})",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
