"""PyTorch rows of the benchmark tables (issue 13): fastjoblib vs joblib vs torch.save / torch.load.

    python benchmarks/bench_torch.py --dir /dev/shm --runs 5          # tmpfs
    python benchmarks/bench_torch.py --dir /tmp --runs 5              # the disk's filesystem
    python benchmarks/bench_torch.py --quick                           # small sizes, seconds

Workloads: ``tensor``: one float32 tensor of 256 MiB; ``state_dict``: the state dict of a
Sequential of 50 Linear(1024, 1024) layers (100 parameter tensors, 200 MiB).

Method: every contender dumps to a file in --dir and loads it back; in each round every contender
runs once, the order rotating from round to round (interleaved), then the floor of a dump (os.write
of the tensors' memory into a new file) runs; a cell is the median over the
rounds (time.perf_counter). Files are deleted after each round, so every dump creates a new file
(replacing an existing file costs more on ext4, which starts writeback when a file is renamed or
truncated over another). Pages stay in the page cache (no fsync, no cache dropping). Loads are
followed by touching every tensor's first byte only (a mapped load reads nothing more). Peak extra
memory of a dump: in a forked child, the RSS high-water mark is reset (/proc/self/clear_refs), the
dump runs once, and VmHWM minus the RSS before it is reported (Linux only).
The machine is shared and noisy: compare ratios, and ratios within ~5% of 1 are ties.
"""
import argparse
import gc
import os
import statistics
import sys
import time

import joblib
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))

import fastjoblib  # noqa: E402
from fastjoblib._bench import _reset_peak, _settle, _status_kib  # noqa: E402

MiB = 1 << 20


def _peak_fork(fn):
    """Peak extra RSS (bytes) of fn() in a forked child: the RSS high-water mark is reset
    (/proc/self/clear_refs), fn runs once, VmHWM minus the RSS before it is sent back. None where
    fork or /proc/self/clear_refs is missing."""
    if not hasattr(os, "fork") or not os.path.exists("/proc/self/clear_refs"):
        return None
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: measure, write, exit without running the parent's cleanup
        code = 1
        try:
            os.close(r)
            _settle()
            _reset_peak()
            base = _status_kib("VmRSS")
            fn()
            os.write(w, str((_status_kib("VmHWM") - base) * 1024).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r) as f:
        text = f.read()
    _, status = os.waitpid(pid, 0)
    return int(text) if status == 0 and text else None


def workloads(quick):
    n = (16 if quick else 256) * MiB // 4
    width, layers = (256, 10) if quick else (1024, 50)
    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(layers)])
    return {
        "tensor": torch.randn(n),
        "state_dict": model.state_dict(),
    }


def _touch(obj):
    ts = obj.values() if isinstance(obj, dict) else [obj]
    for t in ts:
        if t.numel():
            t.view(-1)[0].item()


def _raw_dump(obj, path):
    """The floor of a dump: os.write of every tensor's memory into a new file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for t in (obj.values() if isinstance(obj, dict) else [obj]):
            mv = memoryview(t.detach().numpy()).cast("B")
            while mv:
                mv = mv[os.write(fd, mv):]
    finally:
        os.close(fd)


def contenders():
    return {
        "fastjoblib": (lambda o, p: fastjoblib.dump(o, p), lambda p: fastjoblib.load(p)),
        "joblib": (lambda o, p: joblib.dump(o, p), lambda p: joblib.load(p)),
        "torch": (lambda o, p: torch.save(o, p), lambda p: torch.load(p)),
    }


def mapped_loads():
    return {
        "fastjoblib mmap_mode=r": ("fastjoblib", lambda p: fastjoblib.load(p, mmap_mode="r")),
        "joblib mmap_mode=r": ("joblib", lambda p: joblib.load(p, mmap_mode="r")),
        "torch mmap=True": ("torch", lambda p: torch.load(p, mmap=True)),
    }


def run(directory, runs, quick, memory):
    results = {}
    for wname, obj in workloads(quick).items():
        names = list(contenders())
        times = {(c, op): [] for c in names for op in ("dump", "load")}
        times.update({(m, "load"): [] for m in mapped_loads()})
        paths = {c: os.path.join(directory, f"fj_bench_torch_{wname}_{c}.bin") for c in names}
        for r in range(runs):
            order = names[r % len(names):] + names[:r % len(names)]
            for c in order:
                dump, load = contenders()[c]
                gc.collect()
                t0 = time.perf_counter()
                dump(obj, paths[c])
                times[(c, "dump")].append(time.perf_counter() - t0)
                gc.collect()
                t0 = time.perf_counter()
                out = load(paths[c])
                _touch(out)
                times[(c, "load")].append(time.perf_counter() - t0)
                del out
            for m, (c, load) in mapped_loads().items():
                gc.collect()
                t0 = time.perf_counter()
                out = load(paths[c])
                _touch(out)
                times[(m, "load")].append(time.perf_counter() - t0)
                del out
            raw = paths["fastjoblib"] + ".raw"
            gc.collect()
            t0 = time.perf_counter()
            _raw_dump(obj, raw)
            times.setdefault(("raw", "dump"), []).append(time.perf_counter() - t0)
            os.unlink(raw)
            for p in paths.values():  # every dump writes a new file (as benchmarks/ratios.py)
                os.unlink(p)
        peaks = {}
        if memory:
            for c in names:
                dump = contenders()[c][0]
                peaks[c] = _peak_fork(lambda: dump(obj, paths[c] + ".mem"))
                try:
                    os.unlink(paths[c] + ".mem")
                except OSError:
                    pass
        results[wname] = ({k: statistics.median(v) for k, v in times.items()}, peaks)
    return results


def fmt(results, directory):
    lines = [f"files in {directory}; medians; ratio = other / fastjoblib (>1: fastjoblib faster)",
             "", "| workload | op | fastjoblib | joblib | torch.save / torch.load | vs joblib | "
             "vs torch |", "|---|---|---|---|---|---|---|"]
    for w, (t, peaks) in results.items():
        for op in ("dump", "load"):
            fj, jl, th = t[("fastjoblib", op)], t[("joblib", op)], t[("torch", op)]
            floor = (f" (os.write floor {t[('raw', op)]:.3f} s)" if ("raw", op) in t else "")
            lines.append(f"| {w} | {op} | {fj:.3f} s{floor} | {jl:.3f} s | {th:.3f} s | "
                         f"{jl / fj:.2f}x | {th / fj:.2f}x |")
        fm = t[("fastjoblib mmap_mode=r", "load")]
        jm = t[("joblib mmap_mode=r", "load")]
        tm = t[("torch mmap=True", "load")]
        lines.append(f"| {w} | load mmap | {fm * 1e3:.2f} ms (mmap_mode='r') | {jm * 1e3:.2f} ms "
                     f"(mmap_mode='r') | {tm * 1e3:.2f} ms (mmap=True) | {jm / fm:.2f}x | "
                     f"{tm / fm:.2f}x |")
        if peaks:
            def mib(v):
                return "n/a" if v is None else f"{v / MiB:.1f} MiB"
            lines.append(f"| {w} | dump peak extra RSS | {mib(peaks['fastjoblib'])} | "
                         f"{mib(peaks['joblib'])} | {mib(peaks['torch'])} | | |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default="/dev/shm")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-memory", action="store_true")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    res = run(a.dir, a.runs, a.quick, not a.no_memory)
    print(f"torch {torch.__version__}, joblib {joblib.__version__}, fastjoblib "
          f"{fastjoblib.__version__}, Python {sys.version.split()[0]}")
    print(fmt(res, a.dir))


if __name__ == "__main__":
    main()
