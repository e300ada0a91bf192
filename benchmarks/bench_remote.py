"""Object-store dumps and loads: fastjoblib through a URL vs joblib through s3fs file objects.

    python benchmarks/bench_remote.py            # 256 MiB array, 3 interleaved rounds
    python benchmarks/bench_remote.py --size-mib 64 --rounds 5 --routes loopback

Starts moto's S3 server (``moto[server]``) on 127.0.0.1 in its own process and, for the "proxy"
route, tests/s3server.py's SlowProxy in another process in front of it (20 ms before each
response, each connection paced to 50 MB/s: a simulated far-away store). Per route and round,
interleaved in this one process: joblib.dump / joblib.load through ``fs.open`` (s3fs file
objects, the route users take today), fastjoblib through the same file objects, and fastjoblib
through the URL. Prints medians, ratios, and the peak extra RSS of the URL dump (sampled every
2 ms). Also BytesIO loads (joblib vs fastjoblib). Objects live in moto's memory / its spill
files under $TMPDIR (the filesystem is printed).
"""
import argparse
import gc
import io
import os
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "python"))

import numpy as np  # noqa: E402
import joblib  # noqa: E402
import psutil  # noqa: E402
import s3fs  # noqa: E402

import fastjoblib  # noqa: E402
from s3server import MotoServer  # noqa: E402


def fstype(path):
    try:
        from fastjoblib._bench import _fstype
        return _fstype(path)
    except Exception:
        return "?"


class PeakRSS:
    def __init__(self):
        self.proc = psutil.Process()

    def __enter__(self):
        gc.collect()
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self.stop = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()
        return self

    def _run(self):
        while not self.stop:
            rss = self.proc.memory_info().rss
            if rss > self.peak:
                self.peak = rss
            time.sleep(0.002)

    def __exit__(self, *exc):
        self.stop = True
        self.t.join()

    @property
    def extra_mib(self):
        return (self.peak - self.base) / 2**20


def start_proxy(target_port, delay, rate):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    p = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "s3server.py"), "proxy",
                          str(target_port), str(delay), str(rate)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
    port = int(p.stdout.readline())
    return p, "http://127.0.0.1:%d" % port


def timed(fn):
    gc.collect()
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def cpu_seconds(procs):
    """CPU time (user + system) used so far by these processes and their children."""
    total = 0.0
    for p in procs:
        try:
            ps = psutil.Process(p.pid)
            for q in [ps] + ps.children(recursive=True):
                t = q.cpu_times()
                total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--routes", default="loopback,proxy",
                    help="comma-separated: loopback, proxy (empty: no server)")
    ap.add_argument("--sections", default="memory,bytesio",
                    help="also run: memory (joblib.Memory backends), bytesio")
    ap.add_argument("--memory-dir", default=None,
                    help="directory of the Memory caches (default: a temporary one in $TMPDIR)")
    ap.add_argument("--delay", type=float, default=0.020)
    ap.add_argument("--rate", type=float, default=50e6)
    args = ap.parse_args()

    import tempfile
    tmp = tempfile.gettempdir()
    print("bench_remote: %d MiB float64 array, %d rounds; moto spill files in %s (%s); "
          "cpus %d, load avg %s" % (args.size_mib, args.rounds, tmp, fstype(tmp),
                                    os.cpu_count(), os.getloadavg()))
    arr = np.random.default_rng(0).random(args.size_mib * 2**20 // 8)
    obj = {"weights": arr, "meta": {"name": "model", "n": 3}}

    routes = [r for r in args.routes.split(",") if r]
    if routes:
        bench_s3(args, obj, routes)
    if "bytesio" in args.sections:
        bench_bytesio(args, obj)
    del arr, obj
    gc.collect()
    if "memory" in args.sections:
        bench_memory(args)


def bench_bytesio(args, obj):
    """Loads from an io.BytesIO (a plain file object): joblib vs fastjoblib."""
    bio = io.BytesIO()
    joblib.dump(obj, bio)
    data = bio.getvalue()
    jl, fj = [], []
    for _ in range(max(args.rounds, 5)):
        jl.append(timed(lambda: joblib.load(io.BytesIO(data))))
        fj.append(timed(lambda: fastjoblib.load(io.BytesIO(data))))
    print("\n[BytesIO] load joblib %.3f s, fastjoblib %.3f s: %.2fx" % (
        statistics.median(jl), statistics.median(fj),
        statistics.median(jl) / statistics.median(fj)))


def bench_s3(args, obj, routes):
    server = MotoServer()
    proxy = None
    results = {}
    try:
        bucket = server.new_bucket()
        endpoints = {"loopback": server.endpoint}
        if "proxy" in routes:
            proxy, endpoints["proxy"] = start_proxy(server.port, args.delay, args.rate)
        for route in routes:
            so = server.storage_options(endpoint=endpoints[route])
            fs = s3fs.S3FileSystem(**so)
            url = "s3://%s/%s-fj.pkl" % (bucket, route)
            key = "%s/%s-jl.pkl" % (bucket, route)
            rows = {k: [] for k in ("joblib dump (s3fs file)", "joblib load (s3fs file)",
                                    "fastjoblib dump (s3fs file)",
                                    "fastjoblib load (s3fs file)", "fastjoblib dump (URL)",
                                    "fastjoblib load (URL)", "raw put (s3fs pipe_file)",
                                    "raw get (s3fs cat_file)")}
            mem = []
            store_cpu = {k: [] for k in rows}  # CPU seconds of moto (+ the proxy) per operation
            store = [server.proc] + ([proxy] if route == "proxy" and proxy is not None else [])
            # the floor: the same bytes as fastjoblib's file, moved by s3fs's own parallel
            # multipart upload and concurrent ranged download (no serializer at all)
            raw = io.BytesIO()
            fastjoblib.dump(obj, raw)
            raw = raw.getvalue()
            rawkey = "%s/%s-raw.bin" % (bucket, route)

            def jl_dump():
                with fs.open(key, "wb") as f:
                    joblib.dump(obj, f)

            def jl_load():
                with fs.open(key, "rb") as f:
                    joblib.load(f)

            def fj_file_dump():
                with fs.open(key + ".fj", "wb") as f:
                    fastjoblib.dump(obj, f)

            def fj_file_load():
                with fs.open(key, "rb") as f:
                    fastjoblib.load(f)

            def fj_url_dump():
                with PeakRSS() as m:
                    fastjoblib.dump(obj, url, storage_options=so)
                mem.append(m.extra_mib)

            def fj_url_load():
                fastjoblib.load(url, storage_options=so)

            def raw_put():
                fs.pipe_file(rawkey, raw)

            def raw_get():
                fs.cat_file(rawkey)

            for r in range(args.rounds):
                for name, fn in zip(rows, (jl_dump, jl_load, fj_file_dump, fj_file_load,
                                           fj_url_dump, fj_url_load, raw_put, raw_get)):
                    c0 = cpu_seconds(store)
                    rows[name].append(timed(fn))
                    store_cpu[name].append(cpu_seconds(store) - c0)
                print("  %s round %d: %s" % (route, r + 1, ", ".join(
                    "%s %.2f" % (k.split(" (")[0].replace("fastjoblib", "fj").replace(
                        "joblib", "jl") + (" url" if "URL" in k else ""), v[-1])
                    for k, v in rows.items())), flush=True)
            med = {k: statistics.median(v) for k, v in rows.items()}
            results[route] = (med, max(mem))
            print("\n[%s] medians of %d rounds (%s)" % (route, args.rounds, endpoints[route]))
            ncpu = os.cpu_count() or 1
            for k, v in med.items():
                c = statistics.median(store_cpu[k])
                print("  %-30s %6.2f s   (store CPU %5.2f s: on %d cores, at least %.2f s)"
                      % (k, v, c, ncpu, c / ncpu))
            print("  dump: URL vs joblib s3fs file   %.2fx" % (
                med["joblib dump (s3fs file)"] / med["fastjoblib dump (URL)"]))
            print("  load: URL vs joblib s3fs file   %.2fx" % (
                med["joblib load (s3fs file)"] / med["fastjoblib load (URL)"]))
            print("  load: fastjoblib vs joblib, both s3fs file  %.2fx" % (
                med["joblib load (s3fs file)"] / med["fastjoblib load (s3fs file)"]))
            print("  dump through URL: peak extra RSS %.0f MiB (max of rounds)" % max(mem))
            print("  raw floor vs joblib: put %.2fx, get %.2fx (the most any dump / load "
                  "through this store can reach)" % (
                      med["joblib dump (s3fs file)"] / med["raw put (s3fs pipe_file)"],
                      med["joblib load (s3fs file)"] / med["raw get (s3fs cat_file)"]))
    finally:
        if proxy is not None:
            proxy.stdin.close()
            proxy.wait(10)
        server.stop()



def forest():
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    X, y = make_classification(n_samples=2000, n_features=20, random_state=0)
    return RandomForestClassifier(n_estimators=100, random_state=0).fit(X, y)


def big_array(mib):
    return np.random.default_rng(0).random(mib * 2**20 // 8)


def bench_memory(args):
    """joblib.Memory: fastjoblib's backend vs joblib's local backend; each cached result is
    loaded through a cache hit (the cached function called again with the same argument)."""
    import shutil
    import tempfile

    from joblib import Memory

    fastjoblib.register_memory_backend()
    base = tempfile.mkdtemp(prefix="fj-bench-memory-", dir=args.memory_dir)
    try:
        print("\n[joblib.Memory] caches in %s (%s), %d rounds" % (base, fstype(base), args.rounds))
        mems = {"joblib local": Memory(os.path.join(base, "jl"), verbose=0),
                "fastjoblib": Memory(os.path.join(base, "fj"), backend="fastjoblib", verbose=0)}
        cases = [("RandomForest 100 trees", forest, ()),
                 ("%d MiB array" % args.size_mib, big_array, (args.size_mib,))]
        for label, func, fargs in cases:
            cached = {k: m.cache(func) for k, m in mems.items()}
            for c in cached.values():
                c(*fargs)  # computes and stores
            times = {k: [] for k in cached}
            for _ in range(max(args.rounds, 5)):
                for k, c in cached.items():
                    times[k].append(timed(lambda: c(*fargs)))
            med = {k: statistics.median(v) for k, v in times.items()}
            print("  %-24s joblib local %.3f s, fastjoblib backend %.3f s: %.2fx" % (
                label + " (hit)", med["joblib local"], med["fastjoblib"],
                med["joblib local"] / med["fastjoblib"]))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
