"""The compressed-dump table: fastjoblib.dump/load against joblib.dump/load, codec by codec.

    python benchmarks/codec_table.py --dir /dev/shm                      # full sizes (512 MiB arrays)
    python benchmarks/codec_table.py --dir /dev/shm --scale 0.25 --runs 3 --codecs zlib,lz4,zstd

What it measures, per workload (big_array: 512 MiB random float64; smooth_array: 512 MiB smooth
signal rounded to 2 decimals; random_forest: 200 trees) and codec, at joblib's setting for it:

  zlib -> compress=('zlib', 3)     gzip -> ('gzip', 3)     lz4 -> 'lz4' (joblib's default level)
  bz2  -> 'bz2' (level 9)          xz   -> 'xz' (preset 6)  zstd -> ('zstd', 3)

* joblib.dump / joblib.load and fastjoblib.dump / fastjoblib.load (threads=None: all cores) on a
  real file in --dir, interleaved (the order alternates from round to round), median of --runs
  rounds (--slow-runs for bz2 and xz on workloads above 64 MiB uncompressed, which joblib
  compresses at 2-20 MB/s; smaller workloads get --runs for every codec). Throughput is the
  UNCOMPRESSED joblib stream (the size of an uncompressed fastjoblib.dump) per second.
* joblib has no zstd: the zstd row compares fastjoblib zstd-3 with joblib zlib-3 (the issue's
  target: at least 10x the throughput with a smaller file), reusing that workload's joblib zlib-3
  timings when zlib is in --codecs and timing joblib zlib-3 otherwise.
* Peak memory (unless --no-memory): a child process per workload builds the workload, then for
  each codec resets the kernel's RSS high-water mark, runs fastjoblib.dump, and reports VmHWM minus
  the RSS before (MiB): what the compressed dump needed above the live objects; divided by the
  thread count for the per-thread figure. Same for the load (that figure includes the result).
* --cross (the load table of files written by joblib): for zlib, gzip, lz4, bz2 and xz, joblib
  writes the file (joblib.dump at the setting above) and joblib.load, fastjoblib.load and, for
  zlib/gzip, fastjoblib.load decoding joblib's serial stream on one core
  (FASTJOBLIB_INFLATE_SPEC=0) read it, interleaved. For zstd, fastjoblib writes the file and joblib with the zstandard recipe
  (fastjoblib.register_zstd_with_joblib()) reads it against fastjoblib.load (libzstd engine) and
  fastjoblib.load on zstandard's Python API (FASTJOBLIB_ZSTD=python). --dirs runs the table once
  per directory (e.g. /dev/shm,/var/tmp: tmpfs and ext4), naming each filesystem. One line:

    python benchmarks/codec_table.py --cross --dirs /dev/shm,/var/tmp

Nothing is asserted: this prints what it measured (markdown, and --json).
"""
import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import workloads as W  # noqa: E402
from ratios import _reset_peak, _settle, _status_kib, measure_memory  # noqa: E402

SETTINGS = {"zlib": ("zlib", 3), "gzip": ("gzip", 3), "lz4": "lz4", "bz2": "bz2", "xz": "xz",
            "zstd": ("zstd", 3)}
SLOW = {"bz2", "xz"}
DEFAULT_WORKLOADS = "big_array,smooth_array,random_forest"
MB = 1e6


def threads_used():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _run(fn):
    gc.collect()
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def time_pair(obj, setting_joblib, setting_ours, runs, directory):
    """Interleaved joblib / fastjoblib dump+load; medians and sizes. setting_joblib may be None."""
    import joblib

    import fastjoblib

    contenders = [("fastjoblib", fastjoblib.dump, fastjoblib.load, setting_ours)]
    if setting_joblib is not None:
        contenders.append(("joblib", joblib.dump, joblib.load, setting_joblib))
    res = {name: {"dump": [], "load": [], "size": None} for name, _, _, _ in contenders}
    for rnd in range(runs):
        order = contenders if rnd % 2 == 0 else contenders[::-1]
        for name, dump, load, setting in order:
            path = os.path.join(directory, "codec-table-%s" % name)
            t, _ = _run(lambda: dump(obj, path, compress=setting))
            res[name]["dump"].append(t)
            res[name]["size"] = os.path.getsize(path)
            t, value = _run(lambda: load(path))
            res[name]["load"].append(t)
            del value
            os.unlink(path)
    return {name: {"dump": statistics.median(v["dump"]), "load": statistics.median(v["load"]),
                   "size": v["size"]} for name, v in res.items()}


SLOW_ABOVE = 64 << 20  # --slow-runs applies to bz2/xz only above this uncompressed size


def raw_size(obj, directory):
    import fastjoblib

    path = os.path.join(directory, "codec-table-raw")
    fastjoblib.dump(obj, path)
    n = os.path.getsize(path)
    os.unlink(path)
    return n


def memory_child(workload, scale, codecs, directory):
    import fastjoblib

    obj = W.WORKLOADS[workload](scale)
    out = {}
    for codec in codecs:
        path = os.path.join(directory, "codec-mem-%d" % os.getpid())
        _settle()
        _reset_peak()
        base = _status_kib("VmRSS")
        fastjoblib.dump(obj, path, compress=SETTINGS[codec])
        dump_peak = (_status_kib("VmHWM") - base) / 1024.0
        _settle()
        _reset_peak()
        base = _status_kib("VmRSS")
        value = fastjoblib.load(path)
        load_peak = (_status_kib("VmHWM") - base) / 1024.0
        del value
        os.unlink(path)
        out[codec] = {"dump": dump_peak, "load": load_peak}
    print(json.dumps(out))


def fmt_t(t):
    return "%.3f" % t if t < 10 else "%.1f" % t


def report(rows, args, nthreads):
    lines = []
    size = "full sizes" if args.scale == 1.0 else "scale %g" % args.scale
    lines.append("## Compressed dump/load: fastjoblib vs joblib (%s, medians of %d runs, %d for "
                 "bz2/xz on the workloads above 64 MiB; fastjoblib threads=None = %d threads)" % (size, args.runs,
                                                                    args.slow_runs, nthreads))
    lines.append("")
    lines.append("Times in s; throughput = uncompressed MB/s; x = joblib time / fastjoblib time "
                 "(>1: fastjoblib faster); sizes in MiB; peak = fastjoblib's extra RSS during the "
                 "dump, total and per thread.")
    lines.append("")
    lines.append("| workload | codec | joblib dump | fastjoblib dump | dump x | joblib load | "
                 "fastjoblib load | load x | joblib MiB | fastjoblib MiB | dump peak MiB "
                 "(per thread) |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        j, f, raw = r["joblib"], r["fastjoblib"], r["raw"]
        peak = r.get("peak")
        peak_s = "n/a" if peak is None else "%.1f (%.1f)" % (peak["dump"], peak["dump"] / nthreads)
        lines.append(
            "| %s | %s | %s (%.0f MB/s) | %s (%.0f MB/s) | %.2fx | %s (%.0f MB/s) | %s (%.0f MB/s) "
            "| %.2fx | %.1f | %.1f | %s |" % (
                r["workload"], r["label"],
                fmt_t(j["dump"]), raw / MB / j["dump"], fmt_t(f["dump"]), raw / MB / f["dump"],
                j["dump"] / f["dump"],
                fmt_t(j["load"]), raw / MB / j["load"], fmt_t(f["load"]), raw / MB / f["load"],
                j["load"] / f["load"], j["size"] / 2**20, f["size"] / 2**20, peak_s))
    lines.append("")
    lines.append("Uncompressed sizes: " + ", ".join(
        "%s %.1f MiB" % (w, s / 2**20) for w, s in args.raw_sizes.items()))
    return "\n".join(lines)


# ----- --cross: files written by joblib (zstd: by fastjoblib), loaded by each reader ------------
FALLBACK = {"zlib": ("FASTJOBLIB_INFLATE_SPEC", "0"), "gzip": ("FASTJOBLIB_INFLATE_SPEC", "0"),
            "zstd": ("FASTJOBLIB_ZSTD", "python")}


def time_cross(obj, codec, runs, directory):
    """Medians of interleaved loads of one file; its size; who wrote it."""
    import joblib

    import fastjoblib

    path = os.path.join(directory, "codec-cross-%s" % codec)
    if codec == "zstd":
        fastjoblib.register_zstd_with_joblib()
        fastjoblib.dump(obj, path, compress=SETTINGS[codec])
        contenders = [("other", joblib.load, None), ("fastjoblib", fastjoblib.load, None)]
    else:
        joblib.dump(obj, path, compress=SETTINGS[codec])
        contenders = [("other", joblib.load, None), ("fastjoblib", fastjoblib.load, None)]
    if codec in FALLBACK:
        contenders.append(("fallback", fastjoblib.load, FALLBACK[codec]))
    times = {name: [] for name, _, _ in contenders}
    try:
        for rnd in range(runs):
            order = contenders if rnd % 2 == 0 else contenders[::-1]
            for name, load, env in order:
                old = None
                if env is not None:
                    old = os.environ.get(env[0])
                    os.environ[env[0]] = env[1]
                try:
                    t, value = _run(lambda: load(path))
                finally:
                    if env is not None:
                        if old is None:
                            os.environ.pop(env[0], None)
                        else:
                            os.environ[env[0]] = old
                times[name].append(t)
                del value
        size = os.path.getsize(path)
    finally:
        os.unlink(path)
    return {"size": size, **{k: statistics.median(v) for k, v in times.items()}}


def report_cross(rows, args, directory, fs):
    size = "full sizes" if args.scale == 1.0 else "scale %g" % args.scale
    lines = ["## Loads of files written by joblib (zstd: written by fastjoblib, joblib reads it with "
             "the zstandard recipe): %s on %s (%s), medians of %d runs (%d for bz2/xz above 64 MiB)"
             % (size, directory, fs, args.runs, args.slow_runs), "",
             "Times in s (uncompressed MB/s); x = other reader's time / fastjoblib's (>1: fastjoblib "
             "faster); fallback = fastjoblib decoding joblib's stream on one core "
             "(FASTJOBLIB_INFLATE_SPEC=0; zlib/gzip) or on zstandard's Python API (zstd).",
             "",
             "| workload | codec | file MiB | joblib load | fastjoblib load | x | fastjoblib fallback | "
             "x (fallback) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        other, ours, raw = r["other"], r["fastjoblib"], r["raw"]
        fb = r.get("fallback")
        fb_s = "%s (%.0f MB/s)" % (fmt_t(fb), raw / MB / fb) if fb else "n/a"
        fbx = "%.2fx" % (other / fb) if fb else "n/a"
        label = r["label"] + (" (joblib + zstandard recipe)" if r["codec"] == "zstd" else "")
        lines.append("| %s | %s | %.1f | %s (%.0f MB/s) | %s (%.0f MB/s) | %.2fx | %s | %s |" % (
            r["workload"], label, r["size"] / 2**20, fmt_t(other), raw / MB / other, fmt_t(ours),
            raw / MB / ours, other / ours, fb_s, fbx))
    return "\n".join(lines)


def main_cross(args, codecs):
    from fastjoblib._bench import _fstype

    labels = {"zlib": "zlib-3", "gzip": "gzip-3", "lz4": "lz4", "bz2": "bz2 (9)", "xz": "xz (6)",
              "zstd": "zstd-3"}
    out, texts = [], []
    for directory in [d for d in (args.dirs or args.dir or tempfile.gettempdir()).split(",") if d]:
        fs = _fstype(directory)
        rows = []
        with tempfile.TemporaryDirectory(dir=directory, prefix="fastjoblib-cross-") as d:
            for wl in [w for w in args.workloads.split(",") if w]:
                obj = W.WORKLOADS[wl](args.scale)
                raw = raw_size(obj, d)
                for codec in codecs:
                    t0 = time.perf_counter()
                    runs = args.slow_runs if codec in SLOW and raw > SLOW_ABOVE else args.runs
                    got = time_cross(obj, codec, runs, d)
                    rows.append({"workload": wl, "codec": codec, "label": labels[codec],
                                 "raw": raw, **got})
                    print("# cross %s %s %s done in %.0f s" % (directory, wl, codec,
                                                               time.perf_counter() - t0),
                          file=sys.stderr, flush=True)
                del obj
                gc.collect()
        texts.append(report_cross(rows, args, directory, fs))
        out.append({"directory": directory, "filesystem": fs, "rows": rows})
    text = "\n\n".join(texts)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"scale": args.scale, "runs": args.runs, "slow_runs": args.slow_runs,
                       "tables": out}, f, indent=1)
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workloads", default=DEFAULT_WORKLOADS)
    ap.add_argument("--codecs", default="zlib,gzip,lz4,bz2,xz,zstd")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--slow-runs", type=int, default=1, help="runs for bz2 and xz on workloads above 64 MiB")
    ap.add_argument("--dir", default=None)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--json", default=None, help="also write the rows here")
    ap.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--cross", action="store_true",
                    help="the load table of files written by joblib (see the docstring)")
    ap.add_argument("--dirs", default=None, help="--cross: comma-separated directories")
    args = ap.parse_args(argv)
    codecs = [c for c in args.codecs.split(",") if c]
    for c in codecs:
        if c not in SETTINGS:
            ap.error("unknown codec %r (known: %s)" % (c, ", ".join(SETTINGS)))
    if args.memory_child:
        memory_child(args.memory_child, args.scale, codecs, args.dir)
        return 0
    if args.cross:
        return main_cross(args, codecs)
    nthreads = threads_used()
    rows = []
    args.raw_sizes = {}
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="fastjoblib-codecs-") as d:
        for wl in [w for w in args.workloads.split(",") if w]:
            obj = W.WORKLOADS[wl](args.scale)
            raw = args.raw_sizes[wl] = raw_size(obj, d)
            zlib_joblib = None
            for codec in codecs:
                t0 = time.perf_counter()
                runs = args.slow_runs if codec in SLOW and raw > SLOW_ABOVE else args.runs
                if codec == "zstd":
                    if zlib_joblib is None:
                        zlib_joblib = time_pair(obj, ("zlib", 3), ("zlib", 3), runs, d)["joblib"]
                    got = time_pair(obj, None, SETTINGS[codec], runs, d)
                    got["joblib"] = zlib_joblib
                    label = "zstd-3 (joblib: zlib-3)"
                else:
                    got = time_pair(obj, SETTINGS[codec], SETTINGS[codec], runs, d)
                    if codec == "zlib":
                        zlib_joblib = got["joblib"]
                    label = {"zlib": "zlib-3", "gzip": "gzip-3", "lz4": "lz4",
                             "bz2": "bz2 (9)", "xz": "xz (6)"}[codec]
                rows.append({"workload": wl, "codec": codec, "label": label, "raw": raw, **got})
                print("# %s %s done in %.0f s" % (wl, codec, time.perf_counter() - t0),
                      file=sys.stderr, flush=True)
            del obj
            gc.collect()
            if not args.no_memory:
                mem = measure_memory(wl, args.scale, codecs, d, script=__file__)
                for r in rows:
                    if r["workload"] == wl and mem is not None:
                        r["peak"] = mem[r["codec"]]
    text = report(rows, args, nthreads)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": nthreads, "scale": args.scale, "runs": args.runs,
                       "slow_runs": args.slow_runs, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
