"""Issue 12's own method: a 256 MiB float64 array dumped over the same file again and again (as a
training script overwrites its checkpoint), no sync() in between, in the default temp directory's
filesystem (or --dir). Contenders interleaved per round: joblib.dump, pickle protocol 5,
fastjoblib.dump as shipped ("fj", the old file freed by the releaser thread) and with the old file
freed inside the call ("fj-sync-free", the behaviour before the releaser). The releaser queue is
drained after each fastjoblib dump, outside the timing. Medians in ms.

    PYTHONPATH=python python benchmarks/overwrite_loop.py [--dir /var/tmp] [--runs 9] [--mib 256]
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--sync", action="store_true",
                    help="sync() (untimed) before each timed dump, as minutes of training would")
    args = ap.parse_args()
    d = tempfile.mkdtemp(dir=args.dir, prefix="fj-overwrite-")
    a = np.random.default_rng(0).random(args.mib << 17)
    hold = _target._hold
    res = {"joblib": [], "pickle-5": [], "fj": [], "fj-sync-free": []}
    try:
        for _ in range(args.runs):
            for k in res:
                p = os.path.join(d, k + ".pkl")
                if args.sync:
                    os.sync()
                t = time.perf_counter()
                if k == "joblib":
                    joblib.dump(a, p)
                elif k == "pickle-5":
                    with open(p, "wb") as f:
                        pickle.dump(a, f, protocol=5)
                else:
                    _target._hold = hold if k == "fj" else (lambda path: -1)
                    try:
                        fastjoblib.dump(a, p)
                    finally:
                        _target._hold = hold
                res[k].append(time.perf_counter() - t)
                if _target._releaser is not None:
                    _target._releaser.drain()
    finally:
        shutil.rmtree(d, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in res.items()}
    print(f"# {args.mib} MiB array dumped over its file {args.runs} times in {args.dir}"
          f"{', sync() before each' if args.sync else ''}, ms")
    for k, v in res.items():
        print(f"{k:13} median {med[k] * 1e3:7.1f}  rounds " + " ".join(f"{x * 1e3:.0f}" for x in v))
    print("x joblib: fj %.2f, fj-sync-free %.2f; x pickle-5: fj %.2f, fj-sync-free %.2f" % (
        med["joblib"] / med["fj"], med["joblib"] / med["fj-sync-free"],
        med["pickle-5"] / med["fj"], med["pickle-5"] / med["fj-sync-free"]))


if __name__ == "__main__":
    main()
