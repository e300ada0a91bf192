"""Ctrl-C latency of dump and load (issue 18's table): fastjoblib against joblib.

    PYTHONPATH=python python benchmarks/sigint_table.py      # /dev/shm (tmpfs), 256 MiB, 5 each
    PYTHONPATH=python python benchmarks/sigint_table.py --dir /var/tmp --mib 64 --rows dump-gzip-3

Method. Each delivery is a fresh child process (`python this_script --child ...`) that builds a
random float64 array of --mib MiB (seed 0), prints "ready" and starts the call. The parent sends
SIGINT a random 0.5-1.0 s later (time.monotonic() noted just before os.kill) and the child prints
time.monotonic() in its `except KeyboardInterrupt` (CLOCK_MONOTONIC is system-wide on Linux): the
difference is the latency. A load is repeated in a loop until the interrupt arrives (a fast load
can finish within 0.5 s); a dump is one call. A child that does not answer within --guard seconds
is killed and reported as "> guard".

Dumps overwrite an existing target (a small joblib pickle). After each delivery the parent checks
that the target still holds the old bytes ("old file intact") and that no other file is left in the
directory ("no temporary": fastjoblib's `.NAME.*.fjtmp`). joblib writes straight into the target,
so its old file is gone after an interrupt: the column says so.

Cells: median latency over --reps deliveries, the worst one in brackets. Load inputs are written
once into --dir (kept between runs under names with the size; --fresh rewrites them).
"""
import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import time


ROWS = [
    # (row id, kind, compress, file written by)
    ("dump-xz-6", "dump", ("xz", 6), None),
    ("dump-bz2-3", "dump", ("bz2", 3), None),
    ("dump-gzip-3", "dump", ("gzip", 3), None),
    ("load-xz-1", "load", ("xz", 1), ("fastjoblib", "joblib")),
    ("load-bz2-3", "load", ("bz2", 3), ("fastjoblib", "joblib")),
    ("load-gzip-3", "load", ("gzip", 3), ("fastjoblib", "joblib")),
]
EXT = {"xz": ".xz", "bz2": ".bz2", "gzip": ".gz", "zlib": ".z", "lzma": ".lzma", "lz4": ".lz4",
       "zstd": ".zst"}


def _lib(name):
    if name == "fastjoblib":
        import fastjoblib as lib
    else:
        import joblib as lib
    return lib


def _array(mib):
    import numpy as np

    return np.random.default_rng(0).random(mib * (1 << 20) // 8)


def child(args):
    # Ctrl-C raises KeyboardInterrupt even when this was started with SIGINT ignored (a
    # background job of a non-interactive shell)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    lib = _lib(args.lib)
    import numpy  # noqa: F401 - imported before "ready", like the library
    if args.kind == "dump":
        obj = _array(args.mib)
        name, level = args.compress.split("-")
        print("ready", flush=True)
        try:
            lib.dump(obj, args.path, compress=(name, int(level)))
        except KeyboardInterrupt:
            t = time.monotonic()
            print("interrupted %.6f" % t, flush=True)
            return
        print("finished", flush=True)
    else:
        print("ready", flush=True)
        try:
            while True:
                lib.load(args.path)
        except KeyboardInterrupt:
            t = time.monotonic()
            print("interrupted %.6f" % t, flush=True)


def deliver(lib, kind, compress, path, mib, guard, rng):
    """One SIGINT delivery: (latency in s or None, finished_early)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--lib", lib, "--kind", kind,
           "--compress", "%s-%d" % compress, "--path", path, "--mib", str(mib)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError("child failed to start: %r" % line)
        time.sleep(rng.uniform(0.5, 1.0))
        t0 = time.monotonic()
        os.kill(p.pid, signal.SIGINT)
        try:
            out, _ = p.communicate(timeout=guard)
        except subprocess.TimeoutExpired:
            return None, False
        for ln in out.splitlines():
            if ln.startswith("interrupted "):
                return float(ln.split()[1]) - t0, False
            if ln.startswith("finished"):
                return None, True
        raise RuntimeError("child ended without an answer (rc %s)" % p.returncode)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def prepare_loads(directory, mib, fresh, log, wanted, libs):
    import joblib

    import fastjoblib

    arr = None
    paths = {}
    for rid, kind, comp, writers in ROWS:
        if kind != "load" or rid not in wanted:
            continue
        for w in writers:
            path = os.path.join(directory, "sigint-%s-%dMiB-%s-%d.pkl%s" % (w, mib, comp[0], comp[1],
                                                                           EXT[comp[0]]))
            paths[rid, w] = path
            if os.path.exists(path) and not fresh:
                continue
            if arr is None:
                arr = _array(mib)
            log("writing %s" % path)
            (fastjoblib if w == "fastjoblib" else joblib).dump(arr, path + ".part", compress=comp)
            os.replace(path + ".part", path)
    return paths


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default="/dev/shm")
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--reps", type=int, default=5)  # 0: only write the load inputs
    ap.add_argument("--guard", type=float, default=60.0)
    ap.add_argument("--rows", default=",".join(r[0] for r in ROWS))
    ap.add_argument("--libs", default="fastjoblib,joblib")
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    # child mode
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--lib", help=argparse.SUPPRESS)
    ap.add_argument("--kind", help=argparse.SUPPRESS)
    ap.add_argument("--compress", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)

    import joblib

    from fastjoblib._bench import _fstype

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    rng = random.Random(args.seed)
    work = os.path.join(args.dir, "sigint-table")
    os.makedirs(work, exist_ok=True)
    wanted = set(args.rows.split(","))
    libs = args.libs.split(",")
    paths = prepare_loads(args.dir, args.mib, args.fresh, log, wanted, libs)
    if args.reps <= 0:
        return
    print("# SIGINT latency, %d MiB random float64, %s (%s), %d deliveries per cell, "
          "signal 0.5-1.0 s into the call; %d usable CPUs; load average %.1f"
          % (args.mib, args.dir, _fstype(args.dir), args.reps, len(os.sched_getaffinity(0)),
             os.getloadavg()[0]))
    print("| | %s |" % " | ".join(libs))
    print("|---|" + "---|" * len(libs))
    for rid, kind, comp, writers in ROWS:
        if rid not in wanted:
            continue
        cells = []
        for lib in libs:
            if kind == "dump":
                lats, intact, notmp, early = [], 0, 0, 0
                for _ in range(args.reps):
                    target = os.path.join(work, "target.pkl")
                    for f in os.listdir(work):
                        os.unlink(os.path.join(work, f))
                    joblib.dump({"old": list(range(100))}, target)
                    with open(target, "rb") as f:
                        old = f.read()
                    lat, fin = deliver(lib, kind, comp, target, args.mib, args.guard, rng)
                    early += fin
                    if lat is not None:
                        lats.append(lat)
                    with open(target, "rb") as f:
                        intact += f.read() == old
                    notmp += os.listdir(work) == ["target.pkl"]
                    log("%s %s: %s" % (rid, lib, "finished first" if fin else
                                       "%.3f s" % lat if lat is not None else "no answer"))
                cells.append(_cell(lats, args) + "; old file intact %d/%d, no temporary %d/%d%s"
                             % (intact, args.reps, notmp, args.reps,
                                ", finished before the signal %d" % early if early else ""))
            else:
                parts = []
                for w in writers:
                    lats = []
                    for _ in range(args.reps):
                        lat, fin = deliver(lib, kind, comp, paths[rid, w], args.mib, args.guard,
                                           rng)
                        if lat is not None:
                            lats.append(lat)
                        log("%s %s file by %s: %s" % (rid, lib, w, "%.3f s" % lat
                                                      if lat is not None else "no answer"))
                    parts.append(_cell(lats, args))
                cells.append(" / ".join(parts))
        label = ("%s, %s-%d" % (kind, comp[0], comp[1])
                 + (" file written by %s" % " / by ".join(writers) if writers else ""))
        print("| %s | %s |" % (label, " | ".join(cells)), flush=True)


def _cell(lats, args):
    missing = args.reps - len(lats)
    if not lats:
        return "no answer in %.0f s" % args.guard
    s = "%.2f s (max %.2f)" % (statistics.median(lats), max(lats))
    if missing:
        s += " + %d without answer in %.0f s" % (missing, args.guard)
    return s


if __name__ == "__main__":
    main()
