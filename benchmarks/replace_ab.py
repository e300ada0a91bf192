"""A/B of the atomic replace alone: fastjoblib.dump over an existing file with the exchange (the
default) and with the plain rename (the exchange disabled, as before it existed), interleaved.

    python benchmarks/replace_ab.py --dir /dev/shm              # full-size ratios.py workloads
    python benchmarks/replace_ab.py --dir /tmp --runs 15 --workloads big_array

Prints, per workload and compression, the medians (ms) and rename / exchange (> 1: the exchange
is faster), of the medians and of the fastest rounds (on a shared machine the fastest round is the
steadier estimate of a difference this small). No sync, no fsync: what dump itself waits for.
"""
import argparse
import gc
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import workloads as W  # noqa: E402


def _no_exchange(a, b):
    raise OSError(22, "exchange disabled by replace_ab.py")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dir", default=None, help="where the files go (default: temp dir)")
    p.add_argument("--runs", type=int, default=11)
    p.add_argument("--workloads", default="big_array,dict_of_arrays,random_forest,small_dicts,"
                                          "dataframe,str_int_dict")
    p.add_argument("--codecs", default="none,lz4")
    args = p.parse_args(argv)
    import fastjoblib
    from fastjoblib import _target

    real = _target._exchange
    print("| workload | compress | rename ms | exchange ms | rename / exchange | same, fastest "
          "rounds |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="fastjoblib-ab-", dir=args.dir) as d:
        for wl in [w for w in args.workloads.split(",") if w]:
            obj = W.WORKLOADS[wl](1.0)
            for codec in [c for c in args.codecs.split(",") if c]:
                compress = 0 if codec == "none" else codec
                times = {"exchange": [], "rename": []}
                paths = {k: os.path.join(d, k) for k in times}
                for k in times:
                    fastjoblib.dump(obj, paths[k], compress=compress)
                try:
                    for r in range(args.runs):
                        for k in (("exchange", "rename") if r % 2 == 0 else ("rename", "exchange")):
                            _target._exchange = real if k == "exchange" else _no_exchange
                            gc.collect()
                            t0 = time.perf_counter()
                            fastjoblib.dump(obj, paths[k], compress=compress)
                            times[k].append(time.perf_counter() - t0)
                finally:
                    _target._exchange = real
                me, mr = (statistics.median(times[k]) for k in ("exchange", "rename"))
                fe, fr = (min(times[k]) for k in ("exchange", "rename"))
                print("| %s | %s | %.1f | %.1f | %.2f | %.2f |" % (
                    wl, codec, mr * 1e3, me * 1e3, mr / me, fr / fe), flush=True)
                for path in paths.values():
                    os.unlink(path)
            del obj
    return 0


if __name__ == "__main__":
    sys.exit(main())
