"""Worst-case time of ``load(path, trusted=True)`` on compressed files of at most 1 MiB.

For each codec, writes a file of just under 1 MiB that expands as far as the default budget of a
compressed file allows (64 MiB + 100 x its size, bz2 8 MiB + 24 x: an array of zeros with a
sprinkle of random bytes, sized so the file is ~1 MiB; for bz2 also its slowest data, random
blocks repeated), and one that expands far beyond it (refused), then times
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
from fastjoblib._guard import default_max_bytes

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
        except Exception as exc:  # a flood the unpickler rejects as stdlib pickle would
            outcome = type(exc).__name__[:8]
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
                        elif default_max_bytes(size, codec) < n + (1 << 20):
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
    # bz2's slowest data (45-90 MB/s): random blocks repeated, as many 1 MiB arrays of them
    # as a file of at most 1 MiB holds (session 12's red team: 2 s under the 64 MiB + 100 x rule)
    rng = np.random.default_rng(1)
    for k, alpha in ((2048, 256), (12288, 16), (16384, 16), (16384, 256)):
        blk = rng.integers(0, alpha, k, dtype=np.uint8).tobytes()
        one = np.frombuffer((blk * ((1 << 20) // k + 1))[:1 << 20], np.uint8)
        path = os.path.join(d, f"periodic{k}.bz2")
        n, best = 1, None
        while n <= 400:
            fastjoblib.dump([one.copy() for _ in range(n)], path, compress=("bz2", 9))
            if os.path.getsize(path) > 1 << 20:
                break
            best, n = n, int(n * 1.15) + 1
        fastjoblib.dump([one.copy() for _ in range(best)], path, compress=("bz2", 9))
        size = os.path.getsize(path)
        t, outcome = timed(path)
        ti, iout = timed(path, inspect=True)
        worst, worst_i = max(worst, t), max(worst_i, ti)
        print(f"{'bz2':6} {size:>9} {best:>8} MiB {outcome:>8} {t:>7.3f}s {iout:>8} {ti:>7.3f}s"
              f"  (random {k}-byte blocks of {alpha} values, repeated)")
        os.unlink(path)
    print(f"# worst median: load(trusted=True) {worst:.3f} s, inspect {worst_i:.3f} s")
    # uncompressed 1 MiB files of one repeated opcode pattern each (the walk's and the
    # restricted load's per-opcode cost), and the same patterns zlib-compressed (the opcode cap)
    print("\n# 1 MiB opcode floods, median of 5 (raw, and zlib-9 of the same bytes)")
    print(f"{'pattern':10} {'load':>8} {'time':>8} {'inspect':>8} {'time':>8}"
          f" {'zlib file':>9} {'load':>8} {'time':>8} {'inspect':>8} {'time':>8}")
    worst_f = 0.0
    for name, data in floods().items():
        row = f"{name:10}"
        for packed in (False, True):
            path = os.path.join(d, f"flood-{name}.pkl" + (".z" if packed else ""))
            with open(path, "wb") as f:
                if packed:
                    f.write(joblib_zlib(data))
                else:
                    f.write(data)
            if packed:
                row += f" {os.path.getsize(path):>9}"
            t, outcome = timed(path)
            ti, iout = timed(path, inspect=True)
            worst_f = max(worst_f, t, ti)
            row += f" {outcome:>8} {t:>7.3f}s {iout:>8} {ti:>7.3f}s"
            os.unlink(path)
        print(row)
    # a compressed file of ~1 MiB (an incompressible bytes object pads it) whose stream then
    # holds more opcodes of the slowest kind than inspect's bound for its size
    rng = np.random.default_rng(1)
    pad = rng.integers(0, 256, 1_000_000, dtype=np.uint8).tobytes()
    body = (b"\x80\x05B" + len(pad).to_bytes(4, "little") + pad + b"0N"
            + b"\x85" * 3_000_000 + b".")
    path = os.path.join(d, "padded-flood.pkl.z")
    with open(path, "wb") as f:
        f.write(joblib_zlib(body))
    t, outcome = timed(path)
    ti, iout = timed(path, inspect=True)
    worst_f = max(worst_f, t, ti)
    print(f"tuple1, 3M opcodes behind a 1 MB pad, zlib file of {os.path.getsize(path)} bytes:"
          f" load {outcome} {t:.3f}s, inspect {iout} {ti:.3f}s")
    os.unlink(path)
    print(f"# worst median over the floods: {worst_f:.3f} s")
    shutil.rmtree(d, ignore_errors=True)
    return 0


def floods(n=1 << 20):
    def rep(unit, head=b"\x80\x05", tail=b"."):
        return head + unit * ((n - len(head) - len(tail)) // len(unit)) + tail
    return {
        "readonly": rep(b"\x98", b"\x80\x05N"), "binpersid": rep(b"Q", b"\x80\x05N"),
        "emptydict": rep(b"}0", tail=b"N."), "tuple1": rep(b"\x85", b"\x80\x05N"),
        "marktuple": rep(b"(t0", tail=b"N."), "memoize": rep(b"\x94", b"\x80\x05N"),
        "binget": rep(b"h\x000", b"\x80\x05N\x94"), "nextbuf": rep(b"\x970", tail=b"N."),
        "newobj": rep(b"NN\x81", b"\x80\x05N"), "reduce": rep(b")R", b"\x80\x05N"),
        "build": rep(b"Nb", b"\x80\x05N"), "setitem": rep(b"NNs", b"\x80\x05}"),
        "shortstr": rep(b"\x8c\x00", b"\x80\x05(", b"l."),
        "global": rep(b"cos\nsystem\n0", tail=b"N."),
    }


def joblib_zlib(data):
    """A joblib zlib file of these bytes (joblib.dump(compress=('zlib', 9)) writes one zlib
    stream, header 0x78)."""
    import zlib
    return zlib.compress(data, 9)


if __name__ == "__main__":
    sys.exit(main())
