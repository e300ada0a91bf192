"""Throughput of fastjoblib's codec writers/readers against joblib's compressor file objects.

    PYTHONPATH=python python benchmarks/bench_codecs.py [--size-mib 256] [--slow-size-mib 32]
        [--repeat 3] [--codecs zlib,gzip,...]

For each codec at its joblib default level, and two 256 MiB float64 arrays (random; a smooth
signal rounded to 2 decimals), it times in one process, interleaved:
  ours t1 / t2   _core._compress / _core._decompress with threads=1 and threads=2
  joblib         the file object joblib.dump/load opens for that codec (BinaryZlibFile,
                 BinaryGzipFile, BZ2File, LZMAFile, LZ4FrameFile; for zstd, which joblib lacks,
                 zstandard's stream_writer/stream_reader), inside io.BufferedWriter/Reader(1 MiB)
                 exactly as joblib wraps them, writing 16 MiB chunks as joblib does.
Throughput is uncompressed MB/s (median of --repeat). bz2/lzma/xz use --slow-size-mib (they run at
1-10 MB/s). Not a test: nothing is asserted.
"""
import argparse
import gc
import io
import statistics
import time

import numpy as np

from fastjoblib import _core

DEFAULT_LEVEL = {"zlib": 3, "gzip": 3, "bz2": 9, "lzma": 6, "xz": 6, "lz4": 0, "zstd": 3}
SLOW = {"bz2", "lzma", "xz"}
CHUNK = 16 * 1024 * 1024
IO_BUFFER = 1024 * 1024


def make_arrays(nbytes):
    n = nbytes // 8
    rng = np.random.default_rng(42)
    random = rng.random(n)
    x = np.linspace(0.0, 2000.0, n)
    smooth = np.round(np.sin(x) * 50 + np.sin(x * 0.013) * 20 + 100, 2)
    return {"random": random, "smooth": smooth}


def joblib_compress(name, data, level):
    buf = io.BytesIO()
    if name == "zstd":
        import zstandard

        w = zstandard.ZstdCompressor(level=level).stream_writer(buf, closefd=False)
        for i in range(0, len(data), CHUNK):
            w.write(data[i:i + CHUNK])
        w.flush(zstandard.FLUSH_FRAME)
        return buf.getvalue()
    from joblib.compressor import _COMPRESSORS

    f = io.BufferedWriter(_COMPRESSORS[name].compressor_file(buf, compresslevel=level), IO_BUFFER)
    for i in range(0, len(data), CHUNK):
        f.write(data[i:i + CHUNK])
    f.close()  # writes the trailer; a caller's file object stays open
    return buf.getvalue()


def joblib_decompress(name, comp, nbytes):
    out = bytearray(nbytes)
    view = memoryview(out)
    if name == "zstd":
        import zstandard

        f = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(comp))
    else:
        from joblib.compressor import _COMPRESSORS

        f = io.BufferedReader(_COMPRESSORS[name].decompressor_file(io.BytesIO(comp)), IO_BUFFER)
    got = 0
    while got < nbytes:  # joblib reads arrays in pieces; one big readinto is the kind case
        n = f.readinto(view[got:])
        if not n:
            break
        got += n
    assert got == nbytes
    return out


def timed(fn):
    """(wall seconds, cpu seconds of the whole process: worker threads included, value)"""
    gc.collect()
    c0 = time.process_time()
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, time.process_time() - c0, value


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--slow-size-mib", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--codecs", default="zlib,gzip,bz2,lzma,xz,lz4,zstd")
    args = ap.parse_args()

    big = make_arrays(args.size_mib << 20)
    rows = []
    for name in args.codecs.split(","):
        level = DEFAULT_LEVEL[name]
        for kind, arr in big.items():
            if name in SLOW:
                arr = arr[: (args.slow_size_mib << 20) // 8]
            data = memoryview(arr).cast("B")
            nbytes = data.nbytes
            times = {k: [] for k in ("c1", "c2", "cj", "d1", "d2", "dj")}
            cpu = {k: [] for k in times}
            sizes = {}
            for _ in range(args.repeat):
                for key, fn in (("c1", lambda: _core._compress(name, data, level, 1)),
                                ("c2", lambda: _core._compress(name, data, level, 2)),
                                ("cj", lambda: joblib_compress(name, data, level))):
                    t, c, comp = timed(fn)
                    times[key].append(t)
                    cpu[key].append(c)
                    sizes[key] = comp
                for key, fn in (("d1", lambda: _core._decompress(name, sizes["c2"])),
                                ("dj", lambda: joblib_decompress(name, sizes["cj"], nbytes))):
                    t, c, out = timed(fn)
                    times[key].append(t)
                    cpu[key].append(c)
                    assert bytes(out[:64]) == bytes(data[:64]) and len(out) == nbytes
                    del out
            mbs = {k: nbytes / 1e6 / statistics.median(v) for k, v in times.items() if v}
            cmbs = {k: nbytes / 1e6 / max(statistics.median(v), 1e-9) for k, v in cpu.items() if v}
            row = (name, kind, nbytes >> 20, len(sizes["c2"]) / nbytes, len(sizes["cj"]) / nbytes,
                   mbs["c1"], mbs["c2"], mbs["cj"], mbs["d1"], mbs["dj"],
                   cmbs["c1"], cmbs["c2"], cmbs["cj"], cmbs["d1"], cmbs["dj"])
            rows.append(row)
            print("  done %-5s %-6s" % (name, kind), flush=True)
            del sizes

    print()
    print("throughput in uncompressed MB/s, median of %d, default levels. wall = elapsed time;"
          % args.repeat)
    print("cpu = per CPU-second of the whole process (worker threads included): the work done,")
    print("insensitive to other load on the machine. ratio = compressed/original size.")
    hdr = ("codec", "data", "MiB", "ratio", "ratio_jl", "ours t1", "ours t2", "joblib",
           "t1/jl", "t2/jl", "dec ours", "dec jl", "dec x")
    for label, off in (("wall", 5), ("cpu", 10)):
        print()
        print("[%s]" % label)
        print("%-5s %-6s %4s %6s %8s %8s %8s %8s %6s %6s %8s %8s %6s" % hdr)
        for row in rows:
            name, kind, mib, r, rj = row[:5]
            c1, c2, cj, d1, dj = row[off:off + 5]
            print("%-5s %-6s %4d %6.3f %8.3f %8.1f %8.1f %8.1f %6.2f %6.2f %8.1f %8.1f %6.2f"
                  % (name, kind, mib, r, rj, c1, c2, cj, c1 / cj, c2 / cj, d1, dj, d1 / dj))


if __name__ == "__main__":
    main()
