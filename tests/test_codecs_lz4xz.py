"""lz4 (liblz4 in C, our own frame reader) and lzma/xz (multithreaded decoder, memory limits).

Real lz4.frame / lzma / joblib everywhere: frames written by lz4.frame with every option decode
identically, our files are read by the stock tools and joblib, joblib's files are read by us, bad
input raises (never crashes or hangs), hostile headers hit the decoder memory limit.
"""
import itertools
import lzma
import os
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fastjoblib
from fastjoblib import _core

lz4_frame = pytest.importorskip("lz4.frame")
joblib = pytest.importorskip("joblib")

KIB, MIB = 1024, 1024 * 1024
LZ4_ERRORS = (EOFError, RuntimeError, ValueError)
BLOCK_SIZES = [lz4_frame.BLOCKSIZE_MAX64KB, lz4_frame.BLOCKSIZE_MAX256KB,
               lz4_frame.BLOCKSIZE_MAX1MB, lz4_frame.BLOCKSIZE_MAX4MB]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mixed_bytes(n, seed=0):
    """Compressible and incompressible stretches (stored and compressed lz4 blocks)."""
    rng = np.random.default_rng(seed)
    smooth = np.round(np.sin(np.arange(n // 16) / 50.0) * 100, 1).tobytes()
    noise = rng.bytes(n // 4)
    text = (b"fastjoblib " * (n // 22 + 1))[: n // 4]
    out = (smooth + noise + text)[:n]
    return out + rng.bytes(n - len(out))


DATA = mixed_bytes(1536 * KIB)


def frame(data, block_size=0, block_linked=True, content_checksum=False, block_checksum=False,
          store_size=True, level=0):
    return lz4_frame.compress(data, compression_level=level, block_size=block_size,
                              block_linked=block_linked, content_checksum=content_checksum,
                              block_checksum=block_checksum, store_size=store_size)


# ----- lz4: frames written by lz4.frame ---------------------------------------------------------

@pytest.mark.parametrize("block_size", BLOCK_SIZES)
def test_lz4_frame_every_option(block_size):
    for linked, cc, bc, ss in itertools.product([True, False], repeat=4):
        comp = frame(DATA, block_size, linked, cc, bc, ss)
        assert _core._decompress("lz4", comp) == DATA, (linked, cc, bc, ss)
    # reads smaller than a block (scratch path), odd sizes, and a starved input side
    for linked in (True, False):
        comp = frame(DATA, block_size, linked, True, True)
        for chunk, inner in [(1000, 0), (70001, 0), (300 * KIB, 4097), (0, 65536 + 3)]:
            assert _core._decompress("lz4", comp, chunk=chunk, inner_chunk=inner) == DATA


def test_lz4_short_blocks_mid_frame_and_levels():
    # auto_flush: every compress() call emits its blocks at once, so blocks shorter than the
    # maximum sit in the middle of the frame (our parallel reader must move later blocks down)
    for linked in (True, False):
        c = lz4_frame.LZ4FrameCompressor(block_size=lz4_frame.BLOCKSIZE_MAX256KB,
                                         block_linked=linked, content_checksum=True,
                                         auto_flush=True)
        parts = [c.begin()]
        for i in range(0, len(DATA), 100 * KIB + 7):
            parts.append(c.compress(DATA[i:i + 100 * KIB + 7]))
        parts.append(c.flush())
        comp = b"".join(parts)
        for chunk in (0, 100 * KIB, 600 * KIB + 1):
            assert _core._decompress("lz4", comp, chunk=chunk) == DATA
    for level in (0, 3, 9, 16):
        for linked in (True, False):
            comp = frame(DATA, lz4_frame.BLOCKSIZE_MAX64KB, linked, level=level)
            assert _core._decompress("lz4", comp, chunk=50000) == DATA


def test_lz4_concatenated_and_skippable_frames():
    a, b = DATA[:400 * KIB], DATA[400 * KIB:]
    skip = (0x184D2A53).to_bytes(4, "little") + (9).to_bytes(4, "little") + b"ninebytes"
    empty_skip = (0x184D2A5F).to_bytes(4, "little") + bytes(4)
    ours = _core._compress("lz4", b)
    comp = (skip + frame(a, block_linked=True, content_checksum=True) + empty_skip + ours + skip
            + frame(b"", store_size=False) + frame(b, block_linked=False))
    assert _core._decompress("lz4", comp) == a + b + b
    assert _core._decompress("lz4", comp, chunk=12345, inner_chunk=777) == a + b + b
    # after a complete frame anything that is not a frame is ignored (as before)
    assert _core._decompress("lz4", ours + b"\x00\x01garbage") == b
    assert _core._decompress("lz4", ours + b"\x04\x22") == b
    # but a frame that starts and is cut is truncated
    with pytest.raises(EOFError):
        _core._decompress("lz4", ours + frame(a)[:20])
    with pytest.raises(EOFError):
        _core._decompress("lz4", ours + skip[:12])
    assert _core._decompress("lz4", skip) == b""
    with pytest.raises(EOFError):
        _core._decompress("lz4", b"")
    with pytest.raises(RuntimeError):
        _core._decompress("lz4", b"not an lz4 frame at all")


def xxh32(data, seed=0):
    """xxHash32 from its specification (for hand-made frame headers)."""
    p1, p2, p3, p4, p5, m = 2654435761, 2246822519, 3266489917, 668265263, 374761393, 0xFFFFFFFF

    def rotl(x, r):
        return ((x << r) | (x >> (32 - r))) & m

    def rnd(acc, lane):
        return rotl((acc + lane * p2) & m, 13) * p1 & m

    n, i = len(data), 0
    if n >= 16:
        v = [(seed + p1 + p2) & m, (seed + p2) & m, seed, (seed - p1) & m]
        while i + 16 <= n:
            v = [rnd(v[k], int.from_bytes(data[i + 4 * k:i + 4 * k + 4], "little"))
                 for k in range(4)]
            i += 16
        h = (rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18)) & m
    else:
        h = (seed + p5) & m
    h = (h + n) & m
    while i + 4 <= n:
        h = rotl((h + int.from_bytes(data[i:i + 4], "little") * p3) & m, 17) * p4 & m
        i += 4
    while i < n:
        h = rotl((h + data[i] * p5) & m, 11) * p1 & m
        i += 1
    h ^= h >> 15
    h = h * p2 & m
    h ^= h >> 13
    h = h * p3 & m
    return h ^ (h >> 16)


def with_header(comp, flg=None, bd=None, size=None):
    """Rewrite the header of a frame that has a content size, with a valid header checksum."""
    b = bytearray(comp)
    if flg is not None:
        b[4] = flg
    if bd is not None:
        b[5] = bd
    if size is not None:
        b[6:14] = size.to_bytes(8, "little")
    b[14] = (xxh32(bytes(b[4:14])) >> 8) & 0xFF
    return bytes(b)


def test_lz4_header_checks():
    data = DATA[:5000]
    comp = frame(data, block_linked=False, store_size=True)
    assert comp[4] & 0x08 and with_header(comp) == comp  # our xxh32 agrees with liblz4's
    for i, mask in [(4, 0x02), (5, 0x80), (5, 0x01), (4, 0x80), (14, 0x10)]:
        bad = bytearray(comp)
        bad[i] ^= mask
        with pytest.raises(RuntimeError):  # reserved bits, version, header checksum
            _core._decompress("lz4", bytes(bad))
    with pytest.raises(RuntimeError, match="reserved bits"):
        _core._decompress("lz4", with_header(comp, flg=comp[4] | 0x02))
    with pytest.raises(RuntimeError, match="maximum block size"):
        _core._decompress("lz4", with_header(comp, bd=0x30))
    with pytest.raises(RuntimeError, match="content size"):
        _core._decompress("lz4", with_header(comp, size=len(data) + 1))
    with pytest.raises(RuntimeError, match="content size"):
        _core._decompress("lz4", with_header(comp, size=len(data) - 1))
    # a block longer than the frame's maximum block size (64 KiB here)
    big = frame(DATA[:300 * KIB], lz4_frame.BLOCKSIZE_MAX256KB, False, store_size=True)
    with pytest.raises(RuntimeError, match="maximum block size"):
        _core._decompress("lz4", with_header(big, bd=0x40))


# ----- lz4: our writer ------------------------------------------------------------------------

def test_lz4_our_frames_for_standard_readers():
    for level in (0, 2, 3, 9, 12, 16):
        comp = _core._compress("lz4", DATA, level=level)
        assert lz4_frame.decompress(comp) == DATA
        assert _core._decompress("lz4", comp) == DATA
    assert lz4_frame.decompress(_core._compress("lz4", b"")) == b""
    assert _core._decompress("lz4", _core._compress("lz4", b"")) == b""
    # stored blocks (incompressible) and compressed ones in one frame, read in odd pieces
    comp = _core._compress("lz4", DATA, chunk=333 * KIB + 1)
    assert _core._decompress("lz4", comp, chunk=100 * KIB + 3, inner_chunk=50 * KIB + 1) == DATA


def run_py(code, env_extra=None, cpus=None):
    env = dict(os.environ)
    # the fastjoblib this test process imported (the source tree in a dev build, the venv in CI)
    pkg_dir = os.path.dirname(os.path.dirname(os.path.abspath(fastjoblib.__file__)))
    env["PYTHONPATH"] = pkg_dir + os.pathsep + env.get("PYTHONPATH", "")
    env.update(env_extra or {})
    pre = "import os\n"
    if cpus is not None:
        pre += "os.sched_setaffinity(0, set(list(os.sched_getaffinity(0))[:%d]))\n" % cpus
    out = subprocess.run([sys.executable, "-c", pre + code], env=env, capture_output=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout


LZ4_PATHS_CODE = r"""
import hashlib, itertools, sys, lz4.frame as F
sys.path.insert(0, %r)
from test_codecs_lz4xz import DATA, frame
from fastjoblib import _core
h = hashlib.sha256()
for level in (0, 3, 9):
    c = _core._compress("lz4", DATA, level=level)
    assert F.decompress(c) == DATA and _core._decompress("lz4", c, chunk=77777) == DATA
    h.update(c)
for linked, cc in itertools.product([True, False], repeat=2):
    c = frame(DATA, F.BLOCKSIZE_MAX256KB, linked, cc, True)
    assert _core._decompress("lz4", c, chunk=100000) == DATA
    assert _core._decompress("lz4", c + c) == DATA + DATA
print(h.hexdigest())
""" % os.path.dirname(os.path.abspath(__file__))


def test_lz4_c_path_and_python_fallback_agree():
    """The liblz4 path and the lz4-package fallback write the same bytes and read the same."""
    c_path = run_py(LZ4_PATHS_CODE)
    py_path = run_py(LZ4_PATHS_CODE, {"FASTJOBLIB_LZ4_PYTHON": "1"})
    one_cpu = run_py(LZ4_PATHS_CODE, cpus=1)
    assert c_path == py_path == one_cpu and len(c_path.strip()) == 64


# ----- joblib interoperability ----------------------------------------------------------------

def test_joblib_reads_ours_and_we_read_joblibs(tmp_path):
    obj = {"a": np.round(np.sin(np.arange(300000) / 30.0), 3), "b": list(range(1000)),
           "r": np.random.default_rng(1).random(50000), "s": "x" * 10000}
    for codec in ("lz4", "xz", "lzma"):
        ours, theirs = tmp_path / ("ours." + codec), tmp_path / ("theirs." + codec)
        level = 0 if codec in ("xz", "lzma") else 3
        fastjoblib.dump(obj, ours, compress=(codec, level))
        joblib.dump(obj, theirs, compress=(codec, level))
        for loader, path in [(joblib.load, ours), (fastjoblib.load, ours),
                             (fastjoblib.load, theirs)]:
            got = loader(path)
            assert got.keys() == obj.keys()
            assert all(np.array_equal(got[k], obj[k]) for k in ("a", "r"))
            assert got["b"] == obj["b"] and got["s"] == obj["s"]
    # joblib's default lz4 level and default xz preset (6)
    arr = np.round(np.sin(np.arange(200000) / 10.0), 2)
    for codec in ("lz4", "xz"):
        p = tmp_path / ("default." + codec)
        joblib.dump(arr, p, compress=codec)
        assert np.array_equal(fastjoblib.load(p), arr)
        fastjoblib.dump(arr, p, compress=codec)
        assert np.array_equal(joblib.load(p), arr)


# ----- damage: truncation and bit flips ---------------------------------------------------------

SMALL = mixed_bytes(300 * KIB, seed=3)


def damaged_cases():
    return {
        "lz4-ours": ("lz4", _core._compress("lz4", SMALL), LZ4_ERRORS),
        "lz4-joblib-style": ("lz4", frame(SMALL), LZ4_ERRORS),
        "lz4-checksums": ("lz4", frame(SMALL, lz4_frame.BLOCKSIZE_MAX64KB, False, True, True),
                          LZ4_ERRORS),
        "xz-ours": ("xz", _core._compress("xz", SMALL, level=0), (EOFError, lzma.LZMAError)),
        "lzma-ours": ("lzma", _core._compress("lzma", SMALL, level=0),
                      (EOFError, lzma.LZMAError)),
    }


@pytest.mark.parametrize("case", sorted(damaged_cases()))
def test_truncation_raises(case):
    name, comp, errors = damaged_cases()[case]
    rnd = random.Random(case)
    cuts = sorted(set(list(range(0, 64)) + rnd.sample(range(len(comp)), 80)
                      + list(range(len(comp) - 24, len(comp)))))
    for cut in cuts:
        with pytest.raises(errors):
            _core._decompress(name, comp[:cut], chunk=rnd.choice([0, 4096, 100000]))


@pytest.mark.parametrize("case", sorted(damaged_cases()))
def test_bit_flips_raise_or_differ(case):
    name, comp, errors = damaged_cases()[case]
    rnd = random.Random(case)
    checked = name != "lzma" and case != "lz4-joblib-style"
    raised = 0
    for _ in range(150):
        bad = bytearray(comp)
        pos = rnd.randrange(len(bad))
        bad[pos] ^= 1 << rnd.randrange(8)
        try:
            out = _core._decompress(name, bytes(bad))
        except errors:
            raised += 1
            continue
        if checked:
            # with checksums a flip is caught, or is the stored bit of a block size (lz4), or
            # lands after the end of the data
            assert out != SMALL or pos >= len(comp) - 4 or name == "lz4"
    if checked:
        assert raised >= 130


# ----- lzma / xz --------------------------------------------------------------------------------

def test_hostile_lzma_header_hits_the_memory_limit(tmp_path):
    # 13-byte .lzma header: properties 0x5d, a 4 GiB - 256 dictionary, unknown size; 5 more bytes
    hostile = b"\x5d\x00\xff\xff\xff" + b"\xff" * 8 + b"\x00" * 5
    with pytest.raises(lzma.LZMAError, match=r"1600 MiB"):
        _core._decompress("lzma", hostile)
    p = tmp_path / "hostile.pkl"
    p.write_bytes(hostile)
    with pytest.raises(lzma.LZMAError, match=r"limit of 1600 MiB"):
        fastjoblib.load(p)
    # a 1 GiB dictionary (xz -9 is 64 MiB; --lzma2=dict=1GiB is legal) is still accepted
    big_dict = lzma.compress(b"hello" * 1000, format=lzma.FORMAT_ALONE,
                             filters=[{"id": lzma.FILTER_LZMA1, "dict_size": 1 << 30}])
    assert _core._decompress("lzma", big_dict) == b"hello" * 1000


XZ_THREADS_CODE = r"""
import hashlib, sys, lzma, numpy as np
from fastjoblib import _core
data = np.round(np.sin(np.arange(3 << 19) / 40.0) * 100, 1).tobytes()
c = _core._compress("xz", data, level=0)
assert lzma.decompress(c) == data
for chunk in (0, 100000, 3 * 1024 * 1024 + 1):
    assert _core._decompress("xz", c, chunk=chunk) == data
assert _core._decompress("xz", c + c, inner_chunk=50000) == data + data
print(hashlib.sha256(c).hexdigest(), len(c))
"""


def test_xz_multiblock_with_one_and_many_threads(tmp_path):
    many = run_py(XZ_THREADS_CODE)
    one = run_py(XZ_THREADS_CODE, cpus=1)
    assert one.split()[1] == many.split()[1]
    # the stream has several blocks, each header carrying both sizes ("cu"): the multithreaded
    # decoder can split the work
    data = np.round(np.sin(np.arange(3 << 19) / 40.0) * 100, 1).tobytes()
    p = tmp_path / "x.xz"
    p.write_bytes(_core._compress("xz", data, level=0))
    if shutil.which("xz"):
        listing = subprocess.run(["xz", "-lvv", str(p)], capture_output=True, text=True).stdout
        rows = [ln.split() for ln in listing.splitlines() if "--lzma2" in ln]
        assert len(rows) >= 10
        assert all("cu" in r for r in rows)


def test_xz_standard_streams_and_concatenation():
    data = SMALL * 4
    for kw in [{}, {"check": lzma.CHECK_SHA256}, {"check": lzma.CHECK_NONE}, {"preset": 9}]:
        comp = lzma.compress(data, format=lzma.FORMAT_XZ, **kw)
        assert _core._decompress("xz", comp, chunk=70000) == data
    comp = lzma.compress(data)
    assert _core._decompress("xz", comp + _core._compress("xz", data, level=1)) == data * 2
    with pytest.raises(EOFError):
        _core._decompress("xz", comp[:-1])


def test_lz4_streams_larger_than_the_input_buffer():
    """Several input batches (the reader reads ahead into a second buffer while blocks decode)."""
    rng = np.random.default_rng(5)
    big = rng.bytes(20 * MIB) + mixed_bytes(6 * MIB, seed=9)
    ours = _core._compress("lz4", big)
    linked = frame(big, lz4_frame.BLOCKSIZE_MAX64KB, True, content_checksum=True)
    indep = frame(big, lz4_frame.BLOCKSIZE_MAX4MB, False, block_checksum=True)
    for comp in (ours, linked, indep):
        for chunk, inner in [(0, 0), (3 * MIB + 1, 0), (0, 1 * MIB + 3), (777 * KIB, 5 * MIB)]:
            assert _core._decompress("lz4", comp, chunk=chunk, inner_chunk=inner) == big
    # damage deep inside the stream, after several batches
    for comp in (ours, indep):
        bad = bytearray(comp)
        bad[len(bad) * 3 // 4] ^= 0x40
        with pytest.raises(RuntimeError):
            _core._decompress("lz4", bytes(bad))
        with pytest.raises(EOFError):
            _core._decompress("lz4", comp[:len(comp) * 2 // 3])
