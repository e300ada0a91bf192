"""Ratio tables: fastjoblib against pickle (protocols 4 and 5) and joblib, same process, interleaved.

    python benchmarks/ratios.py            # full sizes (needs ~6 GiB RAM, a few GiB of disk)
    python benchmarks/ratios.py --quick    # small sizes, a minute or so
    python benchmarks/ratios.py --workloads big_array,small_dicts --runs 7 --codecs zlib,lz4

Method (what the numbers mean):
* Every contender dumps the workload to a real file in --dir (default: the system temp dir, a
  real filesystem on most systems; /dev/shm takes the filesystem out of the numbers) and loads it
  back from that file. Each contender keeps its file from round to round, so every dump after
  the first overwrites the file of the previous round, as a training script overwrites its
  checkpoint (an untimed first round creates the files). No fsync, no cache dropping: what a
  filesystem costs on top is what joblib.dump / pickle.dump / fastjoblib.dump wait for when they
  replace or truncate a file; the kernel writes the data back later.
* Timing: --runs rounds; in each round every contender runs once (dump, then load), and the
  contender order rotates from round to round, so the machine's drift is spread over all of them.
  A table cell is the median of the rounds (wall clock, time.perf_counter).
* Peak memory: measured in a separate child process per workload (fresh interpreter, workload
  built there), because Python-level tracers (tracemalloc) do not see numpy's or the C core's
  allocations. Before each operation the child runs gc.collect() and malloc_trim(0) and resets the
  kernel's RSS high-water mark (writing 5 to /proc/self/clear_refs); after it, it reads VmHWM from
  /proc/self/status. The figure is VmHWM - VmRSS(before): the extra resident memory the operation
  needed at its peak, the loaded object included for loads. Linux only (otherwise: "n/a").
* Baselines for the big array: `os.write` of the array's own memory (the floor for a dump) and
  `np.empty` + `readinto` (the floor for a load).
* Contenders absent from this build (e.g. a fastjoblib part not merged yet) are skipped with a
  note; nothing is invented.
"""
import argparse
import ctypes
import gc
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import workloads as W  # noqa: E402

MiB = 1 << 20


def fstype(path):
    """The filesystem type of the mount holding `path` (fastjoblib's bench has the one reader)."""
    from fastjoblib._bench import _fstype
    return _fstype(path)


# ---------------------------------------------------------------------------------------------
# contenders: name -> (dump(obj, path), load(path)); availability checked at run time


def _pickle_contender(protocol):
    def dump(obj, path):
        with open(path, "wb") as f:
            pickle.dump(obj, f, protocol=protocol)

    def load(path):
        with open(path, "rb") as f:
            return pickle.load(f)

    return dump, load


def _joblib_contender(compress=0, mmap_mode=None):
    import joblib

    if compress == "zstd":
        # stock joblib has no zstd: it gets fastjoblib's recipe (the zstandard package, in Python)
        import fastjoblib

        fastjoblib.register_zstd_with_joblib()

    def dump(obj, path):
        joblib.dump(obj, path, compress=compress)

    def load(path):
        return joblib.load(path, mmap_mode=mmap_mode)

    return dump, load


def _fastjoblib_contender(compress=0, mmap_mode=None):
    import fastjoblib
    from fastjoblib import _core

    if not (hasattr(_core, "dump") and hasattr(_core, "load")):
        raise ImportError("fastjoblib._core has no dump/load in this build")

    def dump(obj, path):
        fastjoblib.dump(obj, path, compress=compress)

    def load(path):
        return fastjoblib.load(path, mmap_mode=mmap_mode)

    return dump, load


def _fastjoblib_pickle_contender(protocol):
    import fastjoblib

    dump_pickle, load_pickle = fastjoblib.dump_pickle, fastjoblib.load_pickle

    def dump(obj, path):
        with open(path, "wb") as f:
            dump_pickle(obj, f, protocol=protocol)

    def load(path):
        with open(path, "rb") as f:
            return load_pickle(f)

    return dump, load


def _raw_contender(obj_holder):
    import numpy as np

    def dump(obj, path):
        view = memoryview(obj).cast("B")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            done = 0
            while done < len(view):
                done += os.write(fd, view[done:done + (16 << 20)])
        finally:
            os.close(fd)
        obj_holder["meta"] = (obj.shape, obj.dtype)

    def load(path):
        shape, dtype = obj_holder["meta"]
        out = np.empty(shape, dtype)
        with open(path, "rb", buffering=0) as f:
            view = memoryview(out).cast("B")
            done = 0
            while done < len(view):
                # bounded reads: one 512 MiB read(2) into fresh memory was erratically slow
                # (seconds) on the reference machine, which would flatter everyone else
                n = f.readinto(view[done:done + (16 << 20)])
                if not n:
                    raise EOFError(path)
                done += n
        return out

    return dump, load


def contenders_for(workload, codecs):
    """[(name, factory)] in display order."""
    out = [
        ("pickle-4", lambda: _pickle_contender(4)),
        ("pickle-5", lambda: _pickle_contender(5)),
        ("joblib", lambda: _joblib_contender()),
        ("fastjoblib", lambda: _fastjoblib_contender()),
        ("fastjoblib.dump_pickle-5", lambda: _fastjoblib_pickle_contender(5)),
    ]
    if workload in W.ARRAY_WORKLOADS:
        out += [
            ("joblib mmap_mode=r", lambda: _joblib_contender(mmap_mode="r")),
            ("fastjoblib mmap_mode=r", lambda: _fastjoblib_contender(mmap_mode="r")),
        ]
    if workload == "big_array":
        holder = {}
        out += [("raw os.write / np.empty+readinto", lambda: _raw_contender(holder))]
    for codec in codecs:
        out += [
            ("joblib %s" % codec if codec != "zstd" else "joblib zstd (fastjoblib recipe)",
             lambda c=codec: _joblib_contender(compress=c)),
            ("fastjoblib %s" % codec, lambda c=codec: _fastjoblib_contender(compress=c)),
        ]
    return out


def resolve(workload, codecs, notes):
    ready = []
    for name, factory in contenders_for(workload, codecs):
        try:
            ready.append((name,) + tuple(factory()))
        except (ImportError, AttributeError) as exc:
            notes.append("%s: %s skipped (%s)" % (workload, name, exc))
    return ready


# ---------------------------------------------------------------------------------------------
# timing (parent process)


def time_workload(workload, obj, contenders, runs, directory):
    times = {name: {"dump": [], "load": [], "size": None} for name, _, _ in contenders}
    paths = {name: os.path.join(directory, "bench-%d.bin" % i)
             for i, (name, _, _) in enumerate(contenders)}
    for name, dump, _ in contenders:  # untimed: the files that every round overwrites
        dump(obj, paths[name])
    for rnd in range(runs):
        k = rnd % len(contenders)
        order = contenders[k:] + contenders[:k]
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


# ---------------------------------------------------------------------------------------------
# peak memory (child process per workload)


def _status_kib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def _settle():
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def memory_child(workload, scale, codecs, directory):
    obj = W.WORKLOADS[workload](scale)
    notes = []
    out = {}
    for name, dump, load in resolve(workload, codecs, notes):
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


def measure_memory(workload, scale, codecs, directory, script=__file__):
    """Run `script --memory-child workload ...` (this file's or codec_table.py's) and return the
    JSON it prints last; None where the method is unavailable or the child failed."""
    if not os.path.exists("/proc/self/clear_refs"):
        return None
    cmd = [sys.executable, os.path.abspath(script), "--memory-child", workload,
           "--scale", repr(scale), "--codecs", ",".join(codecs), "--dir", directory]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.stderr.write(res.stderr)
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# report


def _fmt_t(t):
    return "%.3f" % t if t < 10 else "%.1f" % t


def _ratio(a, b):
    if a is None or b is None or b == 0:
        return "n/a"
    return "%.2fx" % (a / b)


def _mem_ratio(a, b):
    if a is None or b is None:
        return "n/a"
    if a < 1 or b < 1:  # a ratio of near-zero peaks means nothing: show both
        return "%.1f vs %.1f MiB" % (a, b)
    return "%.2fx" % (a / b)


def report(results, notes, args):
    lines = []
    size = "full sizes" if args.scale_used == 1.0 else "sizes x %.4g" % args.scale_used
    codecs = ", codecs: %s with threads=None (all cores)" % ",".join(args.codec_list) \
        if args.codec_list else ""
    lines.append("## fastjoblib benchmark (%s, %d runs, median%s)" % (size, args.runs, codecs))
    lines.append("")
    lines.append("Python %s, %s, %d CPUs. Times in seconds; memory = peak extra RSS in MiB." %
                 (sys.version.split()[0], sys.platform, os.cpu_count() or 0))
    where = getattr(args, "dir", None) or tempfile.gettempdir()
    lines.append("")
    lines.append("Files in %s (%s); each round overwrites the previous round's file." %
                 (where, fstype(where)))
    lines.append("")
    lines.append("### Ratios: other time (or peak memory) / fastjoblib's; >1 = fastjoblib wins")
    lines.append("")
    lines.append("| workload | op | vs joblib | vs pickle-4 | vs pickle-5 | vs raw floor | "
                 "mem vs joblib | mem vs pickle-5 |")
    lines.append("|---|---|---|---|---|---|---|---|")
    raw = "raw os.write / np.empty+readinto"
    for wl, (times, mem) in results.items():
        def t(name, op):
            return times[name][op] if name in times else None

        def m(name, op):
            return mem[name][op] if mem and name in mem else None

        def row(op_label, ours, op, joblib_name="joblib", pickles=True, floor=True):
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                wl, op_label, _ratio(t(joblib_name, op), t(ours, op)),
                _ratio(t("pickle-4", op), t(ours, op)) if pickles else "",
                _ratio(t("pickle-5", op), t(ours, op)) if pickles else "",
                _ratio(t(raw, op), t(ours, op)) if floor and raw in times else "",
                _mem_ratio(m(joblib_name, op), m(ours, op)),
                _mem_ratio(m("pickle-5", op), m(ours, op)) if pickles else ""))

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
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (about 1/64)")
    parser.add_argument("--scale", type=float, default=None, help="size factor (overrides --quick)")
    parser.add_argument("--runs", type=int, default=None, help="rounds (default 5, quick 3)")
    parser.add_argument("--workloads", default=",".join(W.DEFAULT_WORKLOADS))
    parser.add_argument("--codecs", default="", help="also compare compressed: e.g. zlib,lz4,zstd")
    parser.add_argument("--dir", default=None, help="where the files go (default: temp dir)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory pass")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    scale = args.scale if args.scale is not None else (1 / 64 if args.quick else 1.0)
    args.codec_list = [c for c in args.codecs.split(",") if c]
    args.scale_used = scale
    if args.memory_child:
        memory_child(args.memory_child, scale, args.codec_list, args.dir)
        return 0
    args.runs = args.runs or (3 if args.quick else 5)
    names = [w for w in args.workloads.split(",") if w]
    for w in names:
        if w not in W.WORKLOADS:
            parser.error("unknown workload %r (known: %s)" % (w, ", ".join(W.WORKLOADS)))
    notes = []
    results = {}
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="fastjoblib-bench-") as d:
        for wl in names:
            t0 = time.perf_counter()
            obj = W.WORKLOADS[wl](scale)
            contenders = resolve(wl, args.codec_list, notes)
            times = time_workload(wl, obj, contenders, args.runs, d)
            del obj
            gc.collect()
            mem = None if args.no_memory else measure_memory(wl, scale, args.codec_list, d)
            if mem is None and not args.no_memory:
                notes.append("%s: peak memory not measured (needs Linux /proc/self/clear_refs)"
                             % wl)
            results[wl] = (times, mem)
            print("# %s done in %.0f s" % (wl, time.perf_counter() - t0), file=sys.stderr,
                  flush=True)
    print(report(results, notes, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
