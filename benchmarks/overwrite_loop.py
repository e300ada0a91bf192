"""Issue 12's own method: a 256 MiB float64 array dumped over the same file again and again (as a
training script overwrites its checkpoint), no sync() in between, in the default temp directory's
filesystem (or --dir). Contenders interleaved per round: joblib.dump, pickle protocol 5,
fastjoblib.dump as shipped ("fj": the old file's clean cached pages dropped before the write, the
old file freed by the releaser thread after the swap), without the drop ("fj-keep-cache"), and
with the old file freed inside the call ("fj-sync-free", the behaviour before the releaser). The
releaser queue is drained after each fastjoblib dump, outside the timing. Medians in ms.

--sync: sync() (untimed) before each timed dump, as minutes of training would have written the
previous file back. --pause S: then sleep S seconds (untimed), as a training script does between
checkpoints: on a VM whose host takes back free guest memory (free page reporting), memory freed
a moment ago is gone from the guest after that, and a new file's pages cost host page faults.

    PYTHONPATH=python python benchmarks/overwrite_loop.py [--dir /var/tmp] [--runs 9] [--mib 256]
        [--sync] [--pause S] [--warm-ram GIB]
"""
import argparse
import os
import pickle
import shutil
import statistics
import tempfile
import time

import joblib
import numpy as np

import fastjoblib
from fastjoblib import _target
from workloads import warm_ram


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--sync", action="store_true",
                    help="sync() (untimed) before each timed dump, as minutes of training would")
    ap.add_argument("--pause", type=float, default=0,
                    help="sleep this long (untimed) before each timed dump")
    ap.add_argument("--warm-ram", type=float, default=0, metavar="GIB",
                    help="touch this much fresh memory once first (see workloads.warm_ram)")
    args = ap.parse_args()
    warm_ram(args.warm_ram)
    d = tempfile.mkdtemp(dir=args.dir, prefix="fj-overwrite-")
    a = np.random.default_rng(0).random(args.mib << 17)
    hold = _target._hold
    drop = _target._drop_clean_pages
    res = {"joblib": [], "pickle-5": [], "fj": [], "fj-keep-cache": [], "fj-sync-free": []}
    try:
        for _ in range(args.runs):
            for k in res:
                p = os.path.join(d, k + ".pkl")
                if args.sync:
                    os.sync()
                if args.pause:
                    time.sleep(args.pause)
                t = time.perf_counter()
                if k == "joblib":
                    joblib.dump(a, p)
                elif k == "pickle-5":
                    with open(p, "wb") as f:
                        pickle.dump(a, f, protocol=5)
                else:
                    if k == "fj-sync-free":
                        _target._hold = lambda path: -1
                    if k == "fj-keep-cache":
                        _target._drop_clean_pages = lambda target, st: False
                    try:
                        fastjoblib.dump(a, p)
                    finally:
                        _target._hold = hold
                        _target._drop_clean_pages = drop
                res[k].append(time.perf_counter() - t)
                if _target._releaser is not None:
                    _target._releaser.drain()
    finally:
        shutil.rmtree(d, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in res.items()}
    print(f"# {args.mib} MiB array dumped over its file {args.runs} times in {args.dir}"
          f"{', sync() before each' if args.sync else ''}"
          f"{', %g s pause before each' % args.pause if args.pause else ''}, ms")
    for k, v in res.items():
        print(f"{k:13} median {med[k] * 1e3:7.1f}  rounds " + " ".join(f"{x * 1e3:.0f}" for x in v))
    fj = [k for k in res if k.startswith("fj")]
    for base in ("joblib", "pickle-5"):
        print(f"x {base}: " + ", ".join(f"{k} {med[base] / med[k]:.2f}" for k in fj))


if __name__ == "__main__":
    main()
