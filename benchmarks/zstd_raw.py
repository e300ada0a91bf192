"""zstd loads at raw speed (issue 15): fastjoblib.load of zstd files against the other readers.

    python benchmarks/zstd_raw.py --dir /dev/shm                 # 512 MiB incompressible array
    python benchmarks/zstd_raw.py --dir /dev/shm --workloads incompressible,big_array,smooth_array

fastjoblib.dump(obj, path, compress=('zstd', 3)) writes each workload once (incompressible: a
512 MiB uint8 array of random bytes, which zstd stores as raw blocks; big_array / smooth_array:
codec_table.py's), then these readers load it, interleaved (the order alternates per round),
median of --runs:

  fastjoblib           fastjoblib.load (libzstd engine)
  fastjoblib-noprefault  the same with FASTJOBLIB_PREFAULT=0 (no helper thread backing the array's
                       next pages with memory on another core while the decoder fills the
                       current ones)
  fastjoblib-python-api  the same with FASTJOBLIB_ZSTD=python (zstandard's Python API)
  joblib+zstandard     joblib.load with fastjoblib.register_zstd_with_joblib() (the recipe)
  zstandard-readinto   zstandard's stream_reader().readinto() straight into np.empty memory,
                       64 MiB per call (zstandard's own reader into NumPy memory, no unpickling)

Throughput is the uncompressed array size per second (MB = 1e6 bytes); cpu = the process's CPU
time (all threads, time.process_time), less sensitive than wall time to other jobs on a shared
machine. Nothing is asserted.
"""
import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

MiB = 1 << 20


def incompressible(scale=1.0):
    import numpy as np

    n = max(int(512 * MiB * scale), 1)
    return np.frombuffer(np.random.default_rng(0).bytes(n), dtype=np.uint8).copy()


def workload(name, scale):
    if name == "incompressible":
        return incompressible(scale)
    import workloads as W

    return W.WORKLOADS[name](scale)


def readers(path, nbytes):
    import joblib
    import numpy as np
    import zstandard

    import fastjoblib

    fastjoblib.register_zstd_with_joblib()

    def noprefault():
        os.environ["FASTJOBLIB_PREFAULT"] = "0"
        try:
            return fastjoblib.load(path)
        finally:
            del os.environ["FASTJOBLIB_PREFAULT"]

    def python_api():
        os.environ["FASTJOBLIB_ZSTD"] = "python"
        try:
            return fastjoblib.load(path)
        finally:
            del os.environ["FASTJOBLIB_ZSTD"]

    def zstandard_readinto():
        with open(path, "rb") as f:
            r = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True,
                                                            read_size=1 << 20)
            out = np.empty(nbytes + MiB, np.uint8)  # + the pickle around the array
            mv = memoryview(out)
            pos = 0
            while True:
                n = r.readinto(mv[pos:pos + (64 << 20)])
                if n == 0:
                    break
                pos += n
            del mv
        return out

    return {"fastjoblib": lambda: fastjoblib.load(path), "fastjoblib-noprefault": noprefault,
            "fastjoblib-python-api": python_api,
            "joblib+zstandard": lambda: joblib.load(path),
            "zstandard-readinto": zstandard_readinto}


def main(argv=None):
    from fastjoblib._bench import _fstype

    import fastjoblib

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--workloads", default="incompressible")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--scale", type=float, default=1.0)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    fs = _fstype(args.dir)
    print("## zstd loads on %s (%s), medians of %d interleaved runs, %d cores, load average %s"
          % (args.dir, fs, args.runs, os.cpu_count() or 1,
             " ".join("%.1f" % x for x in os.getloadavg())))
    print()
    print("| workload | file MiB | reader | time s | MB/s | x (joblib+zstandard / this) | cpu s |")
    print("|---|---|---|---|---|---|---|")
    for name in [w for w in args.workloads.split(",") if w]:
        obj = workload(name, args.scale)
        nbytes = obj.nbytes
        with tempfile.TemporaryDirectory(dir=args.dir, prefix="fastjoblib-zstdraw-") as d:
            path = os.path.join(d, name + ".zst")
            fastjoblib.dump(obj, path, compress=("zstd", 3))
            size = os.path.getsize(path)
            del obj
            gc.collect()
            rs = readers(path, nbytes)
            times = {k: [] for k in rs}
            cpu = {k: [] for k in rs}
            names = list(rs)
            for rnd in range(args.runs):
                for k in (names if rnd % 2 == 0 else names[::-1]):
                    gc.collect()
                    c0, t0 = time.process_time(), time.perf_counter()
                    value = rs[k]()
                    times[k].append(time.perf_counter() - t0)
                    cpu[k].append(time.process_time() - c0)
                    del value
            med = {k: statistics.median(v) for k, v in times.items()}
            for k in names:
                print("| %s | %.1f | %s | %.3f | %.0f | %.2fx | %.3f |" % (
                    name, size / MiB, k, med[k], nbytes / 1e6 / med[k],
                    med["joblib+zstandard"] / med[k], statistics.median(cpu[k])), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
