"""Worst-case time of ``load(path, trusted=True)`` on compressed files of at most 1 MiB.

For each codec, writes a file of just under 1 MiB that expands as far as the default budget of a
compressed file allows (64 MiB + 100 x its size: an array of zeros with a sprinkle of random bytes,
sized so the file is ~1 MiB), and one that expands far beyond it (refused), then times
``fastjoblib.load(path, trusted=True)`` and ``fastjoblib.inspect(path)`` (median of 5) in
/dev/shm (tmpfs).

    PYTHONPATH=python python benchmarks/trusted_worst.py
"""
import os
import shutil
import statistics
import sys
import tempfile
import time

import warnings

import numpy as np

import fastjoblib

CODECS = ["zlib", "gzip", "bz2", "lzma", "xz", "lz4", "zstd"]


def timed(path, inspect=False):
    ts, outcome = [], None
    for _ in range(5):
        t = time.perf_counter()
        try:
            if inspect:
                fastjoblib.inspect(path)
            else:
                fastjoblib.load(path, trusted=True)
            outcome = "loaded" if not inspect else "ok"
        except fastjoblib.BudgetExceededError:
            outcome = "refused"
        except ValueError:  # inspect's expansion bound
            outcome = "bounded"
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), outcome


def sprinkled(nbytes, density, seed=0):
    rng = np.random.default_rng(seed)
    a = np.zeros(nbytes, np.uint8)
    idx = rng.integers(0, nbytes, int(nbytes * density))
    a[idx] = rng.integers(1, 256, idx.size, dtype=np.uint8)
    return a


def main():
    warnings.simplefilter("ignore")  # the zstd dump's note about stock joblib
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    d = tempfile.mkdtemp(dir=base)
    print(f"# restricted loads of compressed files <= 1 MiB, median of 5, in {d}")
    print(f"{'codec':6} {'file':>9} {'expands to':>11} {'load':>8} {'time':>8}"
          f" {'inspect':>8} {'time':>8}")
    worst = worst_i = 0.0
    for codec in CODECS:
        try:
            for label, arr in (("fits", None), ("bomb", np.zeros(256 << 20, np.uint8))):
                path = os.path.join(d, f"{label}.{codec}")
                if arr is None:
                    # find a density whose file is just under 1 MiB, with the array at ~160 MiB
                    n = 160 << 20
                    lo, hi = 1e-5, 0.05
                    for _ in range(12):
                        dens = (lo * hi) ** 0.5
                        fastjoblib.dump(sprinkled(n, dens), path, compress=(codec, 3))
                        size = os.path.getsize(path)
                        if size > 1 << 20:
                            hi = dens
                        elif (64 << 20) + 100 * size < n + (1 << 20):
                            lo = dens
                        else:
                            break
                    arr_n = n
                else:
                    fastjoblib.dump(arr, path, compress=(codec, 9))
                    arr_n = arr.nbytes
                size = os.path.getsize(path)
                if size > 1 << 20:
                    print(f"{codec:6} {size:>9} (over 1 MiB, skipped)")
                    os.unlink(path)
                    continue
                t, outcome = timed(path)
                ti, iout = timed(path, inspect=True)
                worst = max(worst, t)
                worst_i = max(worst_i, ti)
                print(f"{codec:6} {size:>9} {arr_n >> 20:>8} MiB {outcome:>8} {t:>7.3f}s"
                      f" {iout:>8} {ti:>7.3f}s")
                os.unlink(path)
        except ImportError as exc:
            print(f"{codec:6} skipped: {exc}")
    print(f"# worst median: load(trusted=True) {worst:.3f} s, inspect {worst_i:.3f} s")
    shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
