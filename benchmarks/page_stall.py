"""Does this machine stall on first-touched memory? Writes a 256 MiB file (8 x 32 MiB write(2)
calls into a new file, then replaces the previous one) --rounds times in --dir and prints each
round's ms; with --warm-ram GIB, first touches that much fresh memory once (workloads.warm_ram).

    python benchmarks/page_stall.py --rounds 20                  # cold: a few 300-800 ms rounds?
    python benchmarks/page_stall.py --rounds 20 --warm-ram 12    # warmed: none?

On a host that backs a VM's memory lazily, the page cache's first use of a guest page costs a
host page fault (~10 us a 4 KiB page: 32 MiB writes at 80 ms instead of 8); on bare metal and
ordinary VMs every round takes the same time.
"""
import argparse
import os
import tempfile
import time

import numpy as np

from workloads import warm_ram


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--warm-ram", type=float, default=0, metavar="GIB")
    args = ap.parse_args()
    warm_ram(args.warm_ram)
    buf = np.random.default_rng(0).random(32 << 17).tobytes()
    d = tempfile.mkdtemp(dir=args.dir, prefix="fj-stall-")
    target, new = os.path.join(d, "f.bin"), os.path.join(d, "f.new")
    res = []
    try:
        for _ in range(args.rounds):
            t = time.perf_counter()
            fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                for _ in range(8):
                    os.write(fd, buf)
            finally:
                os.close(fd)
            res.append((time.perf_counter() - t) * 1e3)
            os.replace(new, target)
            time.sleep(0.2)
    finally:
        for p in (target, new):
            if os.path.exists(p):
                os.unlink(p)
        os.rmdir(d)
    med = sorted(res)[len(res) // 2]
    print("256 MiB new-file writes in %s, ms: %s" % (args.dir, " ".join("%.0f" % x for x in res)))
    print("median %.0f ms; rounds over 2 x median: %d of %d" % (
        med, sum(x > 2 * med for x in res), len(res)))


if __name__ == "__main__":
    main()
