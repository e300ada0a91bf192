"""Pickler part: _core.dumps vs pickle.dumps on 300k small dicts; _core.dump of a 512 MiB array
vs joblib.dump vs raw os.write. Interleaved medians. Run: PYTHONPATH=python python benchmarks/bench_pickler.py"""
import os, tempfile, time, statistics, pickle, joblib, gc
import numpy as np
from fastjoblib import _core

def med(xs): return statistics.median(xs)

# 1. object-heavy
data = [{'id': i, 'name': f'n{i}', 'score': i * 0.5} for i in range(300_000)]
gc.disable()
a, b = [], []
for _ in range(9):
    t = time.perf_counter(); _core.dumps(data, 5); a.append(time.perf_counter() - t)
    t = time.perf_counter(); pickle.dumps(data, 5); b.append(time.perf_counter() - t)
gc.enable()
print(f"300k dicts p5: _core.dumps {med(a)*1e3:.1f} ms, pickle.dumps {med(b)*1e3:.1f} ms, speedup {med(b)/med(a):.2f}x")
a, b = [], []
for _ in range(9):
    t = time.perf_counter(); _core.dumps(data, 4); a.append(time.perf_counter() - t)
    t = time.perf_counter(); pickle.dumps(data, 4); b.append(time.perf_counter() - t)
print(f"300k dicts p4 (gc on): _core.dumps {med(a)*1e3:.1f} ms, pickle.dumps {med(b)*1e3:.1f} ms, speedup {med(b)/med(a):.2f}x")
del data

# 2. big array
arr = np.random.default_rng(0).random(512 * 1024 * 1024 // 8)
path = os.path.join(tempfile.gettempdir(), "fj_bench_a.pkl")
def core():
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try: _core.dump(arr, fd, 4)
    finally: os.close(fd)
def jl():
    joblib.dump(arr, path)
def raw():
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        mv = memoryview(arr).cast('B'); off = 0
        while off < len(mv):
            off += os.write(fd, mv[off:off + 0x7ffff000])
    finally: os.close(fd)
res = {'core': [], 'joblib': [], 'raw': []}
for _ in range(5):
    for name, f in (('core', core), ('joblib', jl), ('raw', raw)):
        os.path.exists(path) and os.unlink(path)
        t = time.perf_counter(); f(); res[name].append(time.perf_counter() - t)
for k, v in res.items():
    print(f"512 MiB float64 -> file: {k:7s} median {med(v)*1e3:.0f} ms  ({512/1024/med(v):.2f} GiB/s)  runs {[round(x*1e3) for x in v]}")
os.unlink(path)
