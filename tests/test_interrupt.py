"""SIGINT during dumps and loads (issue 18): every codec, threads=1 and 2, in a subprocess.

Each case runs one child process that first dumps and loads an array uninterrupted (the duration
D of each, the bytes one call writes / reads: /proc/self/io's wchar / rchar, a reference file),
then has SIGINT delivered to itself (`sh -c "sleep T; kill -INT pid"`) at a random point 0.05-0.5
of the way into a loop of dumps over an existing file, and into a loop of loads, each loop
lasting at least a second. The parent
checks, for every delivery:

* KeyboardInterrupt arrives (when a call finished first, the child meets it in a sleep
  afterwards and records so);
* a dump interrupted: the old file is intact, or (an interrupt after the swap) the target is the
  complete new file;
* no temporary is left in the directory and no thread remains (the OS threads of the process,
  /proc/self/task, are back to their count before the deliveries);
* a dump and a load in the same process still work afterwards (buffers and pools returned);
* at least one delivery per operation stopped the call before it had written (read) all its
  bytes: the interrupt was answered while the workers compressed or decompressed, not when the
  call returned (exempt: dumps shorter than 0.25 s, written in too few slices to be caught inside one, and loads of files
  under 16 MiB, which a decoder's read-ahead may read whole at the start).

No timing is asserted; the subprocess timeout only guards against a hang.
"""
import io
import json
import os
import subprocess
import sys

import pytest

CHILD = r"""
import json, math, os, random, signal, subprocess, sys, time
import numpy as np
import fastjoblib

# KeyboardInterrupt on SIGINT even when pytest was started with SIGINT ignored (a background job)
signal.signal(signal.SIGINT, signal.default_int_handler)
a = json.loads(sys.argv[1])
codec, level, threads, mib, attempts, seed, d = (a["codec"], a["level"], a["threads"], a["mib"],
                                                 a["attempts"], a["seed"], a["dir"])
rng = random.Random(seed)
data = np.random.default_rng(seed).random(mib << 17)
compress = (codec, level) if codec else 0
target = os.path.join(d, "target.pkl")
ref = os.path.join(d, "ref.pkl")

def ntasks(settle_to=None):
    # (a joined thread can stay listed for a moment: the kernel wakes pthread_join before the
    # task is released. A thread still listed after 5 s is one the call left behind: a pool
    # thread that was not joined waits on its condition variable for ever)
    deadline = time.monotonic() + 5.0
    while True:
        n = len(os.listdir("/proc/self/task"))
        if settle_to is None or n <= settle_to or time.monotonic() > deadline:
            return n
        time.sleep(0.01)

def leftovers():
    return sorted(f for f in os.listdir(d) if f not in ("target.pkl", "ref.pkl"))

def io(key):  # bytes this process moved through read(2) / write(2), any thread
    with open("/proc/self/io") as f:
        return int(dict(ln.split(": ") for ln in f.read().splitlines())[key])

# uninterrupted (twice: the second, warm, run counts): durations, bytes one call writes / reads
dur, full = {}, {}
for _ in range(2):
    io0, t0 = io("wchar"), time.perf_counter()
    fastjoblib.dump(data, ref, compress=compress, threads=threads)
    dur["dump"], full["dump"] = time.perf_counter() - t0, io("wchar") - io0
    io0, t0 = io("rchar"), time.perf_counter()
    assert np.array_equal(fastjoblib.load(ref), data)
    dur["load"], full["load"] = time.perf_counter() - t0, io("rchar") - io0
# >= 1 s of calls in a row for each operation: a machine slower or faster than during the
# measurement still meets the signal inside a call, not after the last one
nrep = {op: max(1, math.ceil(1.0 / dur[op])) for op in ("dump", "load")}
baseline = ntasks()
old = b"the old file " * 1000

report = {"dur": dur, "full": full, "baseline": baseline, "dump": [], "load": []}
for op in ("dump", "load"):
    key = "wchar" if op == "dump" else "rchar"
    for i in range(attempts):
        with open(target, "wb") as f:
            f.write(old)
        delay = rng.uniform(0.05, 0.5) * dur[op] * nrep[op]
        state = {"done": False, "io": 0}
        # (the SIGINT comes from a shell: no helper thread in this process to count)
        where, killer = None, None
        try:
            killer = subprocess.Popen(["/bin/sh", "-c", "sleep %.3f; kill -INT %d"
                                       % (delay, os.getpid())])
            # (the calls go on past the planned ones: a run faster than the measured one still
            # meets the signal inside a call; each dump after the first replaces the previous
            # dump's complete file, so the file the interrupted dump must leave intact is the
            # old one or a complete new one)
            for _ in range(50 * nrep[op]):
                state["io"] = io(key)
                if op == "dump":
                    fastjoblib.dump(data, target, compress=compress, threads=threads)
                else:
                    fastjoblib.load(ref)
            state["done"] = True
            killer.wait()
            time.sleep(60)  # the interrupt lands here when the calls finished first
        except KeyboardInterrupt:
            where = "after" if state["done"] else "inside"
        moved = io(key) - state["io"]  # by the interrupted call
        killer.wait()
        with open(target, "rb") as f:
            content = f.read()
        rec = {"delay": delay, "where": where, "moved": moved,
               "old_intact": content == old, "leftovers": leftovers(), "threads": ntasks(baseline)}
        if content != old:
            try:
                rec["new_complete"] = bool(np.array_equal(fastjoblib.load(target), data))
            except Exception as exc:
                rec["new_complete"] = repr(exc)
        report[op].append(rec)

fastjoblib.dump(data, target, compress=compress, threads=threads)
report["second_ok"] = bool(np.array_equal(fastjoblib.load(target), data))
report["threads_end"] = ntasks(baseline)
print("REPORT " + json.dumps(report))
"""

# codec, level, MiB of data (slow codecs get less)
CODECS = [
    (None, 0, 64),
    ("zlib", 3, 32),
    ("gzip", 3, 32),
    ("bz2", 1, 6),
    ("lzma", 1, 3),
    ("xz", 1, 3),
    ("lz4", 3, 64),
    ("zstd", 3, 64),
]


def _available(codec):
    if codec == "lz4":
        pytest.importorskip("lz4")
    if codec == "zstd":
        pytest.importorskip("zstandard")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("codec,level,mib", CODECS, ids=[c[0] or "raw" for c in CODECS])
def test_sigint_dump_and_load(tmp_path, codec, level, mib, threads):
    _available(codec)
    seed = int.from_bytes(os.urandom(4), "little")
    # (raw dumps and loads are short: more of the random SIGINTs land between two calls or after
    # the call (a raw load of 64 MiB reads in 16 MiB slices in ~30 ms), so they get more attempts
    # to show one answered inside it: 5 once missed under ASan; codecs get 6: 3 once missed
    # (lz4-1 under ASan, its one SIGINT inside a load counted after most of its reads))
    args = {"codec": codec, "level": level, "threads": threads, "mib": mib,
            "attempts": 10 if codec is None else 6, "seed": seed, "dir": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True,
                          text=True, timeout=600)  # a hang guard only
    assert proc.returncode == 0, (seed, proc.stdout[-2000:], proc.stderr[-4000:])
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT ")][-1]
    rep = json.loads(line[len("REPORT "):])
    for op in ("dump", "load"):
        early = 0
        for rec in rep[op]:
            ctx = (seed, op, rec)
            assert rec["where"] in ("inside", "after"), ctx
            assert rec["leftovers"] == [], ctx
            assert rec["threads"] == rep["baseline"], ctx
            if op == "dump" and rec["where"] == "inside":
                # the old file, or (an interrupt after the swap) the complete new one
                assert rec["old_intact"] or rec.get("new_complete") is True, ctx
            # stopped before the call had written (read) everything: answered during the work
            # (loads: also past the start, not caught between two calls of the loop)
            floor = -1 if op == "dump" else 64 << 10
            early += rec["where"] == "inside" and floor < rec["moved"] < 0.98 * rep["full"][op]
        # (dumps shorter than 0.25 s are written in a few slices only; a compressed file under 16 MiB may be
        # read whole by the decoder's read-ahead at the start: bytes read say nothing there)
        if (op == "dump" and rep["dur"]["dump"] >= 0.25) or \
                (op == "load" and rep["full"]["load"] >= 16 << 20):
            assert early >= 1, (seed, op, rep)
    assert rep["second_ok"] is True, (seed, rep)
    assert rep["threads_end"] == rep["baseline"], (seed, rep)


def test_progress_raise_stops_dump(tmp_path):
    """A progress callback that raises stops the dump the same way (temporary removed, old file
    intact, workers gone)."""
    code = r"""
import os, sys, time, numpy as np, fastjoblib
d = sys.argv[1]
target = os.path.join(d, "t.pkl")
with open(target, "wb") as f:
    f.write(b"old")
def cb(done, total):
    if done > (4 << 20):
        raise ValueError("stop here")
data = np.random.default_rng(0).random(8 << 20)
base = len(os.listdir("/proc/self/task"))
for codec in ("gzip", "bz2", "xz", "lz4", "zstd"):
    try:
        fastjoblib.dump(data, target, compress=(codec, 1), threads=2, progress=cb)
    except ValueError as exc:
        assert str(exc) == "stop here", exc
    else:
        raise AssertionError("no error from " + codec)
    assert open(target, "rb").read() == b"old", codec
    assert os.listdir(d) == ["t.pkl"], os.listdir(d)
end = len(os.listdir("/proc/self/task"))
deadline = time.monotonic() + 5.0  # (a joined thread can stay listed for a moment)
while end > base and time.monotonic() < deadline:
    time.sleep(0.01)
    end = len(os.listdir("/proc/self/task"))
print("OK", base, end)
"""
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.split()[0] == "OK"
    base, end = proc.stdout.split()[1:3]
    assert end == base  # no worker thread is left


def test_sigint_leaves_other_threads_working(tmp_path):
    """Signals are handled in the main thread only: a dump and a load running in another thread
    complete while the main thread gets the KeyboardInterrupt."""
    code = r"""
import os, signal, sys, threading, numpy as np, fastjoblib
signal.signal(signal.SIGINT, signal.default_int_handler)
d = sys.argv[1]
data = np.random.default_rng(0).random(4 << 17)
path = os.path.join(d, "t.pkl")
res = {}
started = threading.Event()
def work():
    started.set()
    fastjoblib.dump(data, path, compress=("bz2", 1), threads=2)
    res["ok"] = bool(np.array_equal(fastjoblib.load(path), data))
t = threading.Thread(target=work)
t.start()
started.wait()
got = "none"
try:
    os.kill(os.getpid(), signal.SIGINT)
    while t.is_alive():
        t.join(0.05)
except KeyboardInterrupt:
    got = "main"
t.join()
print(got, res.get("ok"), sorted(os.listdir(d)))
"""
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.strip() == "main True ['t.pkl']", proc.stdout


class _InterruptingFile(io.RawIOBase):
    """A file whose reads come in small pieces and whose first read starting at or after byte
    `at` raises KeyboardInterrupt (as Python's own signal handler does in a file's read())."""

    def __init__(self, data, at, tail=256, piece=64):
        # (big reads up to the last `tail` bytes, then small ones: the decoders' reads near the
        # end of the stream start at many different positions)
        self.data, self.at, self.tail, self.piece, self.pos, self.raised = \
            data, at, tail, piece, 0, False

    def readable(self):
        return True

    def readinto(self, b):
        if not self.raised and self.pos >= self.at:
            self.raised = True
            raise KeyboardInterrupt("from read at %d" % self.pos)
        left = len(self.data) - self.pos
        n = min(len(b), left - self.tail if left > self.tail else self.piece, left)
        b[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("codec", ["zlib", "gzip", "bz2", "lzma", "xz", "lz4", "zstd"])
def test_interrupt_in_a_read_past_the_pickle_is_not_lost(tmp_path, codec, threads):
    """The decoders hand over the bytes they made before an error and raise it at the next read;
    after the last bytes of the pickle there is no next read. A KeyboardInterrupt raised by the
    file while a decoder reads its stream's trailer (or looks for a next stream) must still reach
    the caller, not vanish with a load that returns as if nothing happened (the lost SIGINT seen in
    a threaded xz load)."""
    _available(codec)
    import numpy as np

    import fastjoblib

    data = {"a": np.arange(20000, dtype=np.int64), "s": "x" * 1000}
    # (threads=2 dumps write the multi-block / multi-segment layouts the parallel readers take)
    path = tmp_path / "f.pkl"
    fastjoblib.dump(data, path, compress=(codec, 1), threads=threads)
    raw = path.read_bytes()
    assert fastjoblib.load(_InterruptingFile(raw, len(raw) + 1))["s"] == data["s"]
    raised = 0
    for at in range(max(0, len(raw) - 160), len(raw) + 1):
        f = _InterruptingFile(raw, at)
        try:
            out = fastjoblib.load(f)
        except KeyboardInterrupt:
            assert f.raised, at
            raised += 1
            continue
        # no interrupt came out: then the file never raised one
        assert not f.raised, (codec, threads, at, len(raw))
        assert np.array_equal(out["a"], data["a"])
    assert raised > 0  # the positions tried do reach reads of the load
