"""One serial zlib/gzip stream (the files joblib writes) inflated on several cores.

The reader (csrc/codec_ispec.c) lets workers decode regions further on from guessed block
starts and takes a region only when the in-order decode stands exactly where the worker started.
Its output and errors must be those of the plain serial reader (FASTJOBLIB_INFLATE_SPEC=0) for
every input: each test decodes the same bytes both ways and compares the outcomes (bytes, or
exception type and text), on both inflate engines, and checks with the reader's counters
(_core._ispec_stats) that regions really were taken where the data allows it, so a speculative
path that silently never ran would fail here. The decode never waits for a worker: it decodes on,
and takes the rest of a region once the worker is done (joins it) if it stood on the worker's
start. Test switches make this independent of the machine's speed: FASTJOBLIB_ISPEC_WAIT=1 waits
for each worker at its region (regions taken whole), =2 waits for the worker's start, decodes on,
and waits at the next block (regions joined half-way); the tests run all three ways. FASTJOBLIB_ISPEC_REGION makes regions small (but
larger than the ~300 KB a worker may need before the window it does not know stops mattering)
so that small inputs cross many region boundaries.
"""
import gzip
import os
import zlib

import numpy as np
import pytest

import fastjoblib
from fastjoblib import _core

joblib = pytest.importorskip("joblib")

ENGINES = ("zlib", "zlib-ng")
# The CI's sanitizer pass runs the truncation and corruption sweeps at every SWEEP-th point
# (the first and last points always): the same paths, a quarter of the ~70 s they take there.
SWEEP = max(1, int(os.environ.get("FASTJOBLIB_TEST_SWEEP", "1")))


def _thin(points):
    if SWEEP == 1 or len(points) <= 8:
        return points
    return points[:2] + points[2:-2][::SWEEP] + points[-2:]
try:
    import zlib_ng  # noqa: F401
except ImportError:  # the fallback engine alone
    ENGINES = ("zlib",)


def datasets():
    rng = np.random.default_rng(7)
    return {
        # mostly literals, short copies: regions are taken
        "random": rng.random(600_000).tobytes(),
        # long repeats that keep reaching back: regions are given up, serial decode
        "walk": np.round(np.cumsum(rng.standard_normal(400_000)), 2).tobytes(),
        "text": " ".join(str(i * 7919 % 100_003) for i in range(200_000)).encode(),
        # stored blocks only: no start is ever guessed
        "noise": rng.bytes(1_500_000),
        "zeros": bytes(6_000_000),
        "mixed": rng.random(300_000).tobytes() + bytes(300_000) + rng.bytes(200_000)
        + rng.random(300_000).tobytes(),
    }


DATA = datasets()


def compress(codec, data, level=3):
    if codec == "gzip":
        return gzip.compress(data, compresslevel=level, mtime=0)
    return zlib.compress(data, level)


def outcome(fn):
    try:
        return ("ok", fn())
    except Exception as exc:  # noqa: BLE001 - the outcome is what is compared
        return ("error", type(exc).__qualname__, str(exc))


def spec_and_serial(monkeypatch, fn, engine="zlib-ng", region=None):
    """(speculative outcome, serial outcome, regions used). The speculative reader runs three
    times: regions taken whole (FASTJOBLIB_ISPEC_WAIT=1), joined half-way (=2), and as in use;
    the outcomes must be the same. Regions used: the fewer of those taken whole in the first run
    and joined in the second."""
    monkeypatch.setenv("FASTJOBLIB_INFLATE", engine)
    if region is not None:
        monkeypatch.setenv("FASTJOBLIB_ISPEC_REGION", str(region))
    monkeypatch.delenv("FASTJOBLIB_INFLATE_SPEC", raising=False)
    monkeypatch.setenv("FASTJOBLIB_ISPEC_WAIT", "1")
    before = _core._ispec_stats()["taken"]
    spec = outcome(fn)
    taken = _core._ispec_stats()["taken"] - before
    monkeypatch.setenv("FASTJOBLIB_ISPEC_WAIT", "2")
    before = _core._ispec_stats()["joined"]
    assert outcome(fn) == spec
    joined = _core._ispec_stats()["joined"] - before
    monkeypatch.delenv("FASTJOBLIB_ISPEC_WAIT")
    free = outcome(fn)
    assert free == spec
    monkeypatch.setenv("FASTJOBLIB_INFLATE_SPEC", "0")
    serial = outcome(fn)
    monkeypatch.delenv("FASTJOBLIB_INFLATE_SPEC")
    return spec, serial, min(taken, joined)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("codec", ["zlib", "gzip"])
@pytest.mark.parametrize("name", sorted(DATA))
def test_same_bytes(monkeypatch, engine, codec, name):
    data = DATA[name]
    comp = compress(codec, data)
    for region in (300_000, 600_000) if name in ("random", "mixed") else (300_000,):
        for chunk, inner in ((0, 0), (100_000, 70_001), (262_144, 4096)):
            spec, serial, taken = spec_and_serial(
                monkeypatch, lambda: _core._decompress(codec, comp, chunk, inner, 2), engine,
                region)
            assert spec == serial == ("ok", data), (region, chunk, inner)
            if name in ("random", "mixed"):
                assert taken > 0, (region, chunk, inner)
            if name == "noise":
                assert taken == 0


@pytest.mark.parametrize("codec", ["zlib", "gzip"])
def test_more_threads_and_levels(monkeypatch, codec):
    data = DATA["random"] + DATA["text"]
    for level in (1, 6, 9):
        comp = compress(codec, data, level)
        for threads in (2, 3, 5):
            spec, serial, taken = spec_and_serial(
                monkeypatch, lambda: _core._decompress(codec, comp, 0, 0, threads),
                region=300_000)
            assert spec == serial == ("ok", data), (level, threads)
            assert taken > 0, (level, threads)


def test_gzip_members_and_trailing_bytes(monkeypatch):
    a, b = DATA["random"], DATA["mixed"]
    cases = [
        compress("gzip", a) + compress("gzip", b),
        compress("gzip", a) + compress("gzip", b) + b"garbage after the end",
        compress("gzip", a) + b"\x1f",
        compress("gzip", a) + compress("gzip", b)[:-3],
    ]
    for comp in cases:
        spec, serial, taken = spec_and_serial(
            monkeypatch, lambda: _core._decompress("gzip", comp, 0, 0, 2), region=300_000)
        assert spec == serial
        assert taken > 0
    assert spec_and_serial(monkeypatch, lambda: _core._decompress("gzip", cases[0], 0, 0, 2),
                           region=300_000)[0] == ("ok", a + b)
    z = compress("zlib", a) + b"more bytes after a zlib stream"
    spec, serial, _ = spec_and_serial(monkeypatch, lambda: _core._decompress("zlib", z, 0, 0, 2),
                                      region=300_000)
    assert spec == serial == ("ok", a)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("codec", ["zlib", "gzip"])
def test_truncated(monkeypatch, engine, codec):
    comp = compress(codec, DATA["mixed"])
    cuts = _thin(sorted(set(list(range(0, 40)) + list(range(0, len(comp), len(comp) // 97))
                            + list(range(len(comp) - 12, len(comp))))))
    errors = 0
    for cut in cuts:
        part = comp[:cut]
        spec, serial, _ = spec_and_serial(
            monkeypatch, lambda: _core._decompress(codec, part, 0, 0, 2), engine, 300_000)
        assert spec == serial, cut
        errors += spec[0] == "error"
    assert errors == len([c for c in cuts if c < len(comp)])


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("codec", ["zlib", "gzip"])
def test_corrupt(monkeypatch, engine, codec):
    comp = bytearray(compress(codec, DATA["random"] + DATA["text"]))
    rng = np.random.default_rng(3)
    positions = _thin(list(range(0, len(comp), len(comp) // 61))
                      + list(range(len(comp) - 10, len(comp))))
    seen_error = seen_taken = 0
    for pos in positions:
        bad = bytearray(comp)
        bad[pos] ^= 1 << int(rng.integers(0, 8))
        bad = bytes(bad)
        spec, serial, taken = spec_and_serial(
            monkeypatch, lambda: _core._decompress(codec, bad, 0, 0, 2), engine, 300_000)
        assert spec == serial, pos
        seen_error += spec[0] == "error"
        seen_taken += taken > 0
    assert seen_error > len(positions) // 2
    assert seen_taken > len(positions) // 2


def test_window_before_stream_start(monkeypatch):
    """A copy reaching before the stream's start is an error, also when a worker decoded it."""
    data = DATA["random"]
    raw = zlib.compressobj(3, zlib.DEFLATED, -15)
    body = raw.compress(data) + raw.flush()
    spec, serial, _ = spec_and_serial(
        monkeypatch, lambda: _core._decompress("zlib", b"\x78\x5e" + body[:5] + body[5:], 0, 0, 2),
        region=300_000)
    assert spec[0] == serial[0]
    # a preset-dictionary stream (zlib.compressobj(zdict=...)) needs a dictionary: same error
    co = zlib.compressobj(3, zdict=data[:30000])
    dstream = co.compress(data) + co.flush()
    spec, serial, _ = spec_and_serial(
        monkeypatch, lambda: _core._decompress("zlib", dstream, 0, 0, 2), region=300_000)
    assert spec == serial and spec[0] == "error"


@pytest.mark.parametrize("codec", ["zlib", "gzip"])
def test_joblib_files(monkeypatch, tmp_path, codec):
    rng = np.random.default_rng(11)
    obj = {"a": rng.random(1_500_000), "b": np.arange(300_000), "c": "text " * 1000,
           "d": [rng.random(200_000), rng.random(10)]}
    path = tmp_path / f"model.{codec}"
    joblib.dump(obj, path, compress=(codec, 3))
    monkeypatch.setenv("FASTJOBLIB_ISPEC_REGION", "400000")
    monkeypatch.setenv("FASTJOBLIB_ISPEC_WAIT", "1")
    before = _core._ispec_stats()["taken"]
    got = fastjoblib.load(path)
    assert _core._ispec_stats()["taken"] > before
    ref = joblib.load(path)
    assert sorted(got) == sorted(ref)
    np.testing.assert_array_equal(got["a"], ref["a"])
    np.testing.assert_array_equal(got["b"], ref["b"])
    assert got["c"] == ref["c"]
    np.testing.assert_array_equal(got["d"][0], ref["d"][0])
    np.testing.assert_array_equal(got["d"][1], ref["d"][1])
    monkeypatch.delenv("FASTJOBLIB_ISPEC_WAIT")
    got = fastjoblib.load(path)
    np.testing.assert_array_equal(got["a"], ref["a"])
    # the switch back to the serial reader
    monkeypatch.setenv("FASTJOBLIB_INFLATE_SPEC", "0")
    before = _core._ispec_stats()["taken"]
    np.testing.assert_array_equal(fastjoblib.load(path)["a"], ref["a"])
    assert _core._ispec_stats()["taken"] == before


@pytest.mark.parametrize("codec", ["zlib", "gzip"])
def test_false_starts(monkeypatch, codec):
    """Stored blocks full of copies of a real deflate stream: every copy is a start that decodes
    for a while (the workers try them and must fail or be passed), none is the real one."""
    rng = np.random.default_rng(5)
    co = zlib.compressobj(3, zlib.DEFLATED, -15)
    inner = co.compress(rng.random(2048).tobytes()) + co.flush(zlib.Z_FULL_FLUSH)
    payload = inner * (3_000_000 // len(inner)) + rng.random(300_000).tobytes()
    comp = compress(codec, payload, 0)  # stored blocks around the copies
    spec, serial, _ = spec_and_serial(
        monkeypatch, lambda: _core._decompress(codec, comp, 0, 0, 2), region=300_000)
    assert spec == serial == ("ok", payload)
    before = _core._ispec_stats()
    # and the same copies inside a compressed stream
    comp = compress(codec, payload + rng.random(400_000).tobytes(), 1)
    spec, serial, _ = spec_and_serial(
        monkeypatch, lambda: _core._decompress(codec, comp, 0, 0, 2), region=300_000)
    assert spec == serial and spec[0] == "ok"
    after = _core._ispec_stats()
    assert sum(after.values()) > sum(before.values())  # the workers were at work


def test_last_block_across_a_region_end(monkeypatch):
    """A worker whose region's end falls inside the stream's last block decodes to the stream's
    end (its region is final: the trailer follows), never restarts the decode after it."""
    rng = np.random.default_rng(9)
    data = rng.random(300_000).tobytes()
    for codec in ("zlib", "gzip"):
        comp = compress(codec, data)
        for back in (2_000, 5_000, 9_000):
            # (workers start after two regions: the fourth region, a worker's, ends `back` bytes
            # before the end)
            region = (len(comp) - back) // 4
            spec, serial, taken = spec_and_serial(
                monkeypatch, lambda: _core._decompress(codec, comp, 0, 0, 2), region=region)
            assert spec == serial == ("ok", data), (codec, back)
            assert taken > 0


class _Bits:
    """Deflate bit writer: fields LSB first, Huffman codes MSB first."""

    def __init__(self):
        self.acc, self.n, self.out = 0, 0, bytearray()

    def put(self, value, nbits):
        self.acc |= value << self.n
        self.n += nbits
        while self.n >= 8:
            self.out.append(self.acc & 255)
            self.acc >>= 8
            self.n -= 8

    def code(self, code, nbits):
        self.put(int(format(code, "0%db" % nbits)[::-1], 2), nbits)

    def done(self):
        if self.n:
            self.out.append(self.acc & 255)
        return bytes(self.out)


def _empty_blocks_stream(nblocks, codec):
    """A valid stream of `nblocks` empty dynamic-code blocks (no output at all), then "ok"."""
    w = _Bits()
    order = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1]
    cl = {18: 1, 0: 2, 1: 2}  # code-length code: 18 -> 0, 0 -> 10, 1 -> 11
    for _ in range(nblocks):
        w.put(0, 1)
        w.put(2, 2)                 # dynamic codes
        w.put(0, 5)                 # 257 literal/length codes
        w.put(0, 5)                 # 1 distance code
        w.put(len(order) - 4, 4)
        for sym in order:
            w.put(cl.get(sym, 0), 3)
        w.code(0, 1)
        w.put(127, 7)               # 138 zeros
        w.code(0, 1)
        w.put(107, 7)               # 118 zeros: symbols 0-255 unused
        w.code(3, 2)                # end of block: length 1
        w.code(2, 2)                # no distance code
        w.code(0, 1)                # the end-of-block symbol
    w.put(1, 1)
    w.put(1, 2)                     # final block, fixed codes
    for ch in b"ok":
        w.code(0x30 + ch, 8)
    w.code(0, 7)
    raw = w.done()
    assert zlib.decompressobj(-15).decompress(raw) == b"ok"
    if codec == "zlib":
        return b"\x78\x9c" + raw + zlib.adler32(b"ok").to_bytes(4, "big")
    return (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + raw + zlib.crc32(b"ok").to_bytes(4, "little")
            + (2).to_bytes(4, "little"))


@pytest.mark.parametrize("codec", ["zlib", "gzip"])
def test_blocks_without_output(monkeypatch, codec):
    """Every bit of these regions is a valid start that decodes nothing for a long time: the
    workers' effort per region is bounded and the outcome is the serial one."""
    comp = _empty_blocks_stream(200_000, codec)
    assert len(comp) > 2_000_000
    monkeypatch.setenv("FASTJOBLIB_ISPEC_REGION", "300000")
    for threads in (2, 4):
        monkeypatch.delenv("FASTJOBLIB_INFLATE_SPEC", raising=False)
        spec = outcome(lambda: _core._decompress(codec, comp, 0, 0, threads))
        monkeypatch.setenv("FASTJOBLIB_INFLATE_SPEC", "0")
        assert spec == outcome(lambda: _core._decompress(codec, comp, 0, 0, threads)) \
            == ("ok", b"ok")


FORK_CHILD = r"""
import io, os, sys, zlib
from fastjoblib import _core
codec, path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])

class ForkingFile(io.RawIOBase):
    # its fourth read forks: parent and child both decode the rest
    def __init__(self, data):
        self.b, self.calls, self.child = io.BytesIO(data), 0, None
    def readable(self):
        return True
    def readinto(self, buf):
        self.calls += 1
        if self.calls == 4 and self.child is None:
            self.child = os.fork() == 0
        return self.b.readinto(buf)

f = ForkingFile(open(path, "rb").read())
r = _core._codec_open(codec, f, threads)
n = crc = 0
while True:
    b = _core._codec_read(r, 1 << 20)
    if not b:
        break
    n, crc = n + len(b), zlib.crc32(b, crc)
if f.child:
    os._exit(0 if (n, crc) == (int(sys.argv[4]), int(sys.argv[5])) else 3)
_, status = os.wait()
print("OK" if status == 0 and (n, crc) == (int(sys.argv[4]), int(sys.argv[5])) else "BAD %d" % status)
"""


@pytest.mark.parametrize("own_format", [False, True])
def test_fork_during_a_read(tmp_path, own_format):
    """A child forked by the file object during a decode (the workers stay in the parent) decodes
    the rest serially instead of waiting for ever; the parent is not disturbed."""
    import subprocess
    import sys

    data = np.random.default_rng(2).random(1_000_000).tobytes()
    path = tmp_path / "f.z"
    path.write_bytes(_core._compress("zlib", data, 3, 2) if own_format else zlib.compress(data, 3))
    env = dict(os.environ, FASTJOBLIB_ISPEC_REGION="300000")
    for threads in (2, 4):
        proc = subprocess.run(
            [sys.executable, "-c", FORK_CHILD, "zlib", str(path), str(threads), str(len(data)),
             str(zlib.crc32(data))], capture_output=True, text=True, timeout=120, env=env)
        assert proc.stdout.strip() == "OK", (threads, proc.stdout, proc.stderr[-2000:])
