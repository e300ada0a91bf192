"""Codec writers/readers (csrc/codec*.c) through the _core._compress / _core._decompress entry points.

Every stream we write must be read by the standard tools (zlib/gzip/bz2/lzma, lz4.frame,
zstandard) and by joblib's own reader classes; every standard stream must be read by us; bad input
must raise (or be ignored where documented) and never hang.
"""
import bz2
import gzip
import io
import lzma
import os
import subprocess
import sys
import threading
import zlib

import numpy as np
import pytest

from fastjoblib import _core

lz4_frame = pytest.importorskip("lz4.frame")
zstandard = pytest.importorskip("zstandard")

CODECS = ["zlib", "gzip", "bz2", "lzma", "xz", "lz4", "zstd"]
MAGIC = {
    "zlib": b"\x78", "gzip": b"\x1f\x8b", "bz2": b"BZ", "lzma": b"\x5d\x00",
    "xz": b"\xfd\x37\x7a\x58\x5a", "lz4": b"\x04\x22\x4d\x18", "zstd": b"\x28\xb5\x2f\xfd",
}
KIB, MIB = 1024, 1024 * 1024


def zstd_decompress(data):
    # decompressobj handles frames without a content size; read_across_frames for several frames
    out = io.BytesIO()
    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True) as r:
        while True:
            chunk = r.read(1 << 20)
            if not chunk:
                break
            out.write(chunk)
    return out.getvalue()


STD_DECOMPRESS = {
    "zlib": zlib.decompress,
    "gzip": gzip.decompress,
    "bz2": bz2.decompress,
    "lzma": lambda b: lzma.decompress(b, format=lzma.FORMAT_ALONE),
    "xz": lambda b: lzma.decompress(b, format=lzma.FORMAT_XZ),
    "lz4": lz4_frame.decompress,
    "zstd": zstd_decompress,
}

STD_COMPRESS = {
    "zlib": lambda b: zlib.compress(b, 3),
    "gzip": lambda b: gzip.compress(b, 3, mtime=0),
    "bz2": lambda b: bz2.compress(b, 9),
    "lzma": lambda b: lzma.compress(b, format=lzma.FORMAT_ALONE),
    "xz": lambda b: lzma.compress(b, format=lzma.FORMAT_XZ),
    "lz4": lambda b: lz4_frame.compress(b),
    "zstd": lambda b: zstandard.ZstdCompressor(level=3).compress(b),
}


def make_data(size, seed=0):
    """Half compressible (rounded random walk), half random: every codec has work to do."""
    rng = np.random.default_rng(seed + size)
    walk = np.round(np.cumsum(rng.standard_normal(size // 16 + 1)), 2).tobytes()
    noise = rng.integers(0, 256, size - size // 2, dtype=np.uint8).tobytes()
    return (walk[: size // 2] + noise)[:size]


def smooth_data(size):
    x = np.linspace(0, 400, size // 8 + 1)
    return np.round(np.sin(x) * 100 + np.cos(x * 0.37) * 30, 2).tobytes()[:size]


def run_with_timeout(fn, timeout=60):
    """Run fn() in a thread; fail (instead of hanging the suite) if it does not finish."""
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - reported to the caller
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "operation hung"
    return box


def level_for(name, size):
    # lzma/xz at preset 6 take seconds per MiB; preset 0 still gives several xz blocks (MT)
    return 0 if name in ("lzma", "xz") and size >= MIB else -1


# ---------------------------------------------------------------------------------------------
# round trips + standard decoders


@pytest.mark.parametrize("threads", [1, 4])
@pytest.mark.parametrize("size", [0, 1, 100 * KIB, 5 * MIB])
@pytest.mark.parametrize("name", CODECS)
def test_round_trip_and_standard_decoder(name, size, threads):
    data = make_data(size)
    comp = _core._compress(name, data, level=level_for(name, size), threads=threads)
    assert comp.startswith(MAGIC[name])
    assert _core._decompress(name, comp) == data
    assert STD_DECOMPRESS[name](comp) == data


@pytest.mark.parametrize("name", CODECS)
def test_threads_do_not_change_content(name):
    data = make_data(3 * MIB + 12345)
    lvl = level_for(name, len(data))
    outs = [_core._compress(name, data, level=lvl, threads=t) for t in (1, 2, 4)]
    for comp in outs:
        assert STD_DECOMPRESS[name](comp) == data
    if name in ("zlib", "gzip", "bz2", "lz4", "lzma"):
        # block codecs: the bytes do not depend on the thread count
        assert outs[0] == outs[1] == outs[2]


@pytest.mark.parametrize("name", CODECS)
def test_chunked_writes_and_reads(name):
    data = make_data(2 * MIB + 777, seed=3)
    lvl = level_for(name, len(data))
    ref = _core._compress(name, data, level=lvl, threads=2)
    for chunk in (1000, 64 * KIB, MIB + 1, 5 * MIB):
        comp = _core._compress(name, data, level=lvl, threads=2, chunk=chunk)
        assert STD_DECOMPRESS[name](comp) == data
        if name != "zstd":  # zstd MT output depends on the feeding pattern (still standard)
            assert comp == ref
    # small reads from the codec and tiny reads from its input
    assert _core._decompress(name, ref, chunk=7) == data
    assert _core._decompress(name, ref, inner_chunk=1) == data


@pytest.mark.parametrize("name,levels", [
    ("zlib", [0, 1, 2, 5, 6, 7, 9]), ("gzip", [1, 6, 9]), ("bz2", [1, 5, 9]),
    ("lzma", [0, 9]), ("xz", [0, 9]), ("lz4", [0, 3, 9, 12, 16]), ("zstd", [1, 10, 19]),
])
def test_levels(name, levels):
    data = make_data(300 * KIB, seed=5)
    for level in levels:
        for threads in (1, 3):
            comp = _core._compress(name, data, level=level, threads=threads)
            assert STD_DECOMPRESS[name](comp) == data
            assert _core._decompress(name, comp) == data


def test_zlib_and_gzip_headers_match_zlib():
    data = make_data(10 * KIB)
    for level in range(0, 10):
        ours = _core._compress("zlib", data, level=level)
        assert ours[:2] == zlib.compress(data, level)[:2]
        gz = _core._compress("gzip", data, level=level)
        co = zlib.compressobj(level, zlib.DEFLATED, 31)
        ref = co.compress(data) + co.flush()
        assert gz[:10] == ref[:9] + b"\x03"  # OS byte: unix, as joblib's files on Linux


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_gzip_is_one_member(threads):
    data = make_data(3 * MIB)
    comp = _core._compress("gzip", data, threads=threads)
    d = zlib.decompressobj(31)
    assert d.decompress(comp) == data
    assert d.eof and d.unused_data == b""  # one member, nothing after it
    d = zlib.decompressobj(15)
    comp = _core._compress("zlib", data, threads=threads)
    assert d.decompress(comp) == data
    assert d.eof and d.unused_data == b""


@pytest.mark.parametrize("threads", [1, 4])
@pytest.mark.parametrize("name", ["zlib", "gzip"])
def test_deflate_ratio_matches_single_threaded_zlib(name, threads):
    data = smooth_data(6 * MIB)
    ref = len(zlib.compress(data, 3))
    ours = len(_core._compress(name, data, level=3, threads=threads))
    assert ours <= ref * 1.01, (ours, ref)


def test_bz2_is_multi_stream_and_joblib_reads_it(tmp_path):
    import joblib

    data = make_data(4 * MIB, seed=12)
    comp = _core._compress("bz2", data, threads=2)
    d = bz2.BZ2Decompressor()
    first = d.decompress(comp)
    assert d.eof and d.unused_data and len(first) < len(data)  # several streams
    assert bz2.BZ2File(io.BytesIO(comp)).read() == data
    arr = np.frombuffer(data, dtype=np.uint8)
    joblib.dump(arr, tmp_path / "plain.pkl")
    (tmp_path / "x.bz2").write_bytes(_core._compress("bz2", (tmp_path / "plain.pkl").read_bytes()))
    np.testing.assert_array_equal(joblib.load(tmp_path / "x.bz2"), arr)


def test_gzip_isize_wraps_and_crc_combines():
    # many blocks of distinct content: a wrong combine or ISIZE would fail gzip.decompress
    data = b"".join(make_data(512 * KIB + i, seed=i) for i in range(7))
    assert gzip.decompress(_core._compress("gzip", data, threads=4)) == data


# ---------------------------------------------------------------------------------------------
# the other direction: standard encoders -> our readers


@pytest.mark.parametrize("size", [0, 1, 100 * KIB, 3 * MIB])
@pytest.mark.parametrize("name", CODECS)
def test_decompress_standard_streams(name, size):
    data = make_data(size, seed=11)
    comp = STD_COMPRESS[name](data)
    assert _core._decompress(name, comp) == data
    assert _core._decompress(name, comp, chunk=4099, inner_chunk=333) == data


def test_decompress_joblib_style_lz4_and_other_variants():
    data = make_data(700 * KIB, seed=2)
    for kw in ({}, {"block_linked": False}, {"content_checksum": True},
               {"block_size": lz4_frame.BLOCKSIZE_MAX4MB, "compression_level": 9},
               {"store_size": True}):
        assert _core._decompress("lz4", lz4_frame.compress(data, **kw)) == data
    for kw in ({"write_checksum": True}, {"write_content_size": False}, {"threads": 2}):
        comp = zstandard.ZstdCompressor(**kw).compress(data)
        assert _core._decompress("zstd", comp) == data
    # an xz stream with several blocks and a different check
    comp = lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_SHA256)
    assert _core._decompress("xz", comp) == data


# ---------------------------------------------------------------------------------------------
# joblib's own reader classes and joblib.load


def test_joblib_reader_classes_read_our_output():
    from joblib import compressor as jc
    from joblib.compressor import BinaryGzipFile, BinaryZlibFile

    data = make_data(2 * MIB + 5, seed=9)
    for name in ["zlib", "gzip", "bz2", "lzma", "xz", "lz4"]:
        comp = _core._compress(name, data, level=level_for(name, len(data)), threads=4)
        # the exact file object joblib.load opens for this codec, wrapped as joblib does
        wrapper = jc._COMPRESSORS[name]
        box = run_with_timeout(
            lambda: io.BufferedReader(wrapper.decompressor_file(io.BytesIO(comp))).read(),
            timeout=60)
        assert "error" not in box, (name, box.get("error"))
        assert box["value"] == data, name
    for cls, name in ((BinaryZlibFile, "zlib"), (BinaryGzipFile, "gzip")):
        comp = _core._compress(name, data, threads=4)
        box = run_with_timeout(lambda: cls(io.BytesIO(comp), "rb").read(), timeout=60)
        assert box.get("value") == data, (name, box.get("error"))


def test_joblib_load_reads_our_streams(tmp_path):
    import joblib

    from fastjoblib._zstd_joblib import register_zstd_with_joblib

    register_zstd_with_joblib()
    obj = {"a": np.arange(300_000, dtype=np.float64), "b": [1, "two", 3.0],
           "c": np.ones((40, 30), dtype=np.float32, order="F")}
    joblib.dump(obj, tmp_path / "plain.pkl")
    raw = (tmp_path / "plain.pkl").read_bytes()
    exts = {"zlib": "z", "gzip": "gz", "bz2": "bz2", "lzma": "lzma", "xz": "xz", "lz4": "lz4",
            "zstd": "zst"}
    for name, ext in exts.items():
        for threads in (1, 4):
            path = tmp_path / f"f{threads}.{ext}"
            path.write_bytes(_core._compress(name, raw, level=level_for(name, MIB), threads=threads))
            got = run_with_timeout(lambda: joblib.load(path), timeout=60)
            assert "error" not in got, (name, got.get("error"))
            got = got["value"]
            assert got["b"] == obj["b"], name
            np.testing.assert_array_equal(got["a"], obj["a"])
            np.testing.assert_array_equal(got["c"], obj["c"])
        # joblib-written compressed files decompress (with us) to the plain stream
        joblib.dump(obj, tmp_path / f"j.{ext}", compress=(name, 1))
        assert _core._decompress(name, (tmp_path / f"j.{ext}").read_bytes()) == raw, name


def test_register_zstd_with_joblib_round_trip(tmp_path):
    import joblib
    from joblib import compressor as jc

    from fastjoblib._zstd_joblib import ZstdFile, register_zstd_with_joblib

    register_zstd_with_joblib()
    assert register_zstd_with_joblib() is False  # idempotent
    assert jc._COMPRESSORS["zstd"].prefix == b"\x28\xb5\x2f\xfd"
    assert jc._COMPRESSORS["zstd"].extension == ".zst"
    assert jc._COMPRESSORS["zstd"].fileobj_factory is ZstdFile
    obj = [np.arange(10_000), {"k": "v"}]
    joblib.dump(obj, tmp_path / "x.zst")
    raw = (tmp_path / "x.zst").read_bytes()
    assert raw.startswith(b"\x28\xb5\x2f\xfd")
    back = joblib.load(tmp_path / "x.zst")
    np.testing.assert_array_equal(back[0], obj[0])
    assert back[1] == obj[1]
    # joblib's zstd stream is the plain joblib stream (offsets on uncompressed bytes)
    joblib.dump(obj, tmp_path / "x.pkl")
    assert _core._decompress("zstd", raw) == (tmp_path / "x.pkl").read_bytes()


# ---------------------------------------------------------------------------------------------
# hostile input: raise (or ignore trailing bytes), never hang


def _outcome(name, blob):
    box = run_with_timeout(lambda: _core._decompress(name, blob), timeout=60)
    return box.get("value"), box.get("error")


@pytest.mark.parametrize("name", CODECS)
def test_truncated_raises(name):
    data = make_data(600 * KIB, seed=4)
    comp = _core._compress(name, data, threads=2)
    for cut in (0, 1, 3, len(comp) // 3, len(comp) // 2, len(comp) - 9, len(comp) - 1):
        value, error = _outcome(name, comp[:cut])
        assert error is not None, (name, cut)
        assert isinstance(error, (EOFError, ValueError, OSError, RuntimeError)) or \
            type(error).__name__ in ("error", "LZMAError", "ZstdError"), repr(error)


@pytest.mark.parametrize("name", CODECS)
def test_corrupt_raises_or_differs(name):
    data = make_data(600 * KIB, seed=6)
    comp = bytearray(_core._compress(name, data, threads=2))
    rng = np.random.default_rng(1)
    for trial in range(6):
        bad = bytearray(comp)
        pos = int(rng.integers(len(bad) // 4, len(bad) - 8))
        bad[pos] ^= 0x55
        value, error = _outcome(name, bytes(bad))
        if name == "lzma":  # FORMAT_ALONE has no checksum: corruption may go unnoticed
            assert error is not None or value != data
        else:
            assert error is not None, (name, pos)


@pytest.mark.parametrize("name", CODECS)
def test_trailing_garbage_never_hangs(name):
    data = make_data(200 * KIB, seed=8)
    comp = _core._compress(name, data, threads=2)
    for tail in (b"\x00", b"garbage!" * 100, os.urandom(5000)):
        value, error = _outcome(name, comp + tail)
        if error is None:
            assert value == data  # ignored
    # documented: gzip/bz2/xz/lzma/lz4/zstd read concatenated streams, zlib stops after one
    value, error = _outcome(name, comp + comp)
    assert error is None
    assert value == (data if name == "zlib" else data + data)


def test_concatenated_stdlib_gzip_members():
    a, b = make_data(50 * KIB, seed=1), make_data(70 * KIB, seed=2)
    blob = gzip.compress(a) + gzip.compress(b)
    assert _core._decompress("gzip", blob) == a + b


# ---------------------------------------------------------------------------------------------
# arguments and missing packages


def test_bad_arguments():
    with pytest.raises(ValueError):
        _core._compress("snappy", b"x")
    with pytest.raises(ValueError):
        _core._decompress("snappy", b"x")
    with pytest.raises(ValueError):
        _core._compress("zlib", b"x", level=10)
    with pytest.raises(ValueError):
        _core._compress("bz2", b"x", level=10)
    with pytest.raises(ValueError):
        _core._compress("xz", b"x", level=10)
    with pytest.raises(ValueError):
        _core._compress("lz4", b"x", level=17)
    with pytest.raises(Exception):
        _core._compress("zstd", b"x", level=99)


def test_missing_packages_raise_import_error():
    code = (
        "import sys; sys.modules['lz4'] = None; sys.modules['lz4.block'] = None;"
        "sys.modules['lz4.frame'] = None; sys.modules['zstandard'] = None\n"
        "from fastjoblib import _core\n"
        "for fn, args in [(_core._compress, ('lz4', b'x')), (_core._decompress, ('lz4', b'x')),\n"
        "                 (_core._compress, ('zstd', b'x')), (_core._decompress, ('zstd', b'x'))]:\n"
        "    try:\n"
        "        fn(*args)\n"
        "    except ImportError as e:\n"
        "        print(repr(str(e)))\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 4, out.stdout + out.stderr
    lz4_text = "LZ4 is not installed. Install it with pip: https://python-lz4.readthedocs.io/"
    assert lines[0] == lines[1] == repr(lz4_text)
    assert "zstandard" in lines[2] and "pip install" in lines[2] and lines[2] == lines[3]


def test_compress_accepts_buffers_and_threads_default():
    arr = np.arange(300_000, dtype=np.int64)
    comp = _core._compress("zlib", arr)  # buffer protocol, threads=0 -> all CPUs
    assert zlib.decompress(comp) == arr.tobytes()
    comp = _core._compress("gzip", memoryview(arr.tobytes()), threads=-3)
    assert gzip.decompress(comp) == arr.tobytes()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", CODECS)
def test_write_error_in_compressed_dump_propagates(name, threads):
    # the compressed bytes reach the file through each codec's own output path (for zstd frames of
    # 16 MiB from the block writer, or a sink that zstandard's stream_writer calls back): a
    # failing write must surface as the same exception, with nothing swallowed and no crash, also
    # when it happens at close/flush
    import fastjoblib

    class Failing:
        def __init__(self, fail_after):
            self.n = 0
            self.fail_after = fail_after

        def write(self, b):
            self.n += 1
            if self.n > self.fail_after:
                raise OSError("disk full")
            return len(b)

        def tell(self):
            return 0

    # incompressible, so output flows early: 4 MiB, and for zstd 56 MiB (4 frames of 16 MiB)
    data = np.random.default_rng(1).random(7 << 20 if name == "zstd" else 1 << 19)
    for fail_after in (0, 1, 3):
        with pytest.raises(OSError, match="disk full"):
            fastjoblib.dump(data, Failing(fail_after), compress=(name, 1), threads=threads)
    small = {"a": 1}  # all output appears at close
    with pytest.raises(OSError, match="disk full"):
        fastjoblib.dump(small, Failing(0), compress=(name, 1), threads=threads)


@pytest.mark.parametrize("prefault", ["1", "0"])
@pytest.mark.parametrize("name", ["zstd", "zlib"])
def test_big_array_in_compressed_stream(tmp_path, monkeypatch, name, prefault):
    # A compressed stream has no known length, so an array above 64 MiB takes the grow path of
    # ndarray_load.c (a reserved mapping filled in 16 MiB steps; with FASTJOBLIB_PREFAULT=1 a
    # helper thread backs the next step's pages): the values, the flags and the EOF error of a
    # truncated file are those of any other load.
    import fastjoblib

    monkeypatch.setenv("FASTJOBLIB_PREFAULT", prefault)

    a = np.arange((80 << 20) // 8, dtype=np.float64) % 1000.0
    p = tmp_path / ("big." + name)
    fastjoblib.dump({"a": a, "tail": [1, 2]}, p, compress=(name, 1))
    got = fastjoblib.load(p)
    assert got["tail"] == [1, 2]
    b = got["a"]
    assert b.dtype == a.dtype and b.shape == a.shape and b.flags.c_contiguous
    assert b.flags.writeable and b.flags.aligned
    assert np.array_equal(a, b)
    b[:] = 1.0  # the memory is ours to write
    del got, b
    data = p.read_bytes()
    q = tmp_path / ("trunc." + name)
    q.write_bytes(data[: len(data) // 2])
    with pytest.raises((ValueError, EOFError)):
        fastjoblib.load(q)


# Both child scripts read through this: the bytes of `data`, unseekable (a stream of unknown
# length: the grow path of ndarray_load.c), calling `hook` once, just before the read that passes
# `at` bytes.
_ONCE_AT_STREAM = r"""
import io


class OnceAt(io.RawIOBase):
    def __init__(self, data, at, hook):
        self.b = io.BytesIO(data)
        self.at, self.hook, self.done = at, hook, False

    def readable(self):
        return True

    def readinto(self, buf):
        if not self.done and self.b.tell() >= self.at:
            self.done = True
            self.hook()
        return self.b.readinto(memoryview(buf)[: 1 << 20])
"""

_CLAIM_CHILD = _ONCE_AT_STREAM + r"""
import gzip, io, os, sys, time
import numpy as np
import fastjoblib

raw = io.BytesIO()
n = 10 << 20  # 80 MiB of float64 really in the file
fastjoblib.dump(np.ones(n), raw)
data = raw.getvalue()
old = b"J" + n.to_bytes(4, "little")  # BININT of the shape in the array record
assert data.count(old) == 1
data = data.replace(old, b"J" + (2**31 - 1).to_bytes(4, "little"))  # claims 16 GiB
comp = gzip.compress(data, 1)


def hwm():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) * 1024

base = hwm()
try:
    # a pause half-way (a slow network: the decoder waits, the prefault helper does not)
    fastjoblib.load(OnceAt(comp, len(comp) // 2, lambda: time.sleep(1.0)))
    print("loaded")
except ValueError as exc:
    print("EOF" if "EOF" in str(exc) else repr(exc), (hwm() - base) >> 20)
"""


_FORK_CHILD = _ONCE_AT_STREAM + r"""
import io, os, sys, time
import numpy as np
import fastjoblib

raw = io.BytesIO()
fastjoblib.dump(np.ones((100 << 20) // 8), raw)  # 100 MiB: the grow path of a stream
data = raw.getvalue()


child = []


def fork():
    time.sleep(0.2)  # the prefault helper has caught up and waits
    child.append(os.fork())


a = fastjoblib.load(OnceAt(data, 80 << 20, fork))  # the loading thread forks, 80 MiB in
ok = a.shape == ((100 << 20) // 8,) and bool((a == 1).all())
if child[0] == 0:
    os._exit(0 if ok else 3)
for _ in range(300):
    pid, status = os.waitpid(child[0], os.WNOHANG)
    if pid:
        print("parent", ok, "child", os.waitstatus_to_exitcode(status))
        break
    time.sleep(0.1)
else:
    os.kill(child[0], 9)
    print("parent", ok, "child hung")
"""


@pytest.mark.parametrize("prefault", ["1", "0"])
def test_fork_inside_a_grow_load_finishes_in_the_child(prefault):
    # A file object that forks in its readinto (the loading thread itself forks mid-array): the
    # child goes on with the load without the parent's prefault helper thread (it once waited for
    # ever on the helper's condition variable).
    env = dict(os.environ, FASTJOBLIB_PREFAULT=prefault)
    out = subprocess.run([sys.executable, "-c", _FORK_CHILD], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["parent", "True", "child", "0"], out.stdout


@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                    reason="peak RSS is not the program's under ASan (shadow memory, quarantine)")
@pytest.mark.parametrize("prefault", ["1", "0"])
def test_big_claim_in_compressed_stream_costs_what_arrived(prefault):
    # The array memory of a stream of unknown length is backed only as bytes arrive; the prefault
    # helper backs at most 32 MiB ahead of them, even while the decoder waits for more: a 16 GiB
    # claim over 80 MiB of data peaks near 80 MiB.
    env = dict(os.environ, FASTJOBLIB_PREFAULT=prefault)
    out = subprocess.run([sys.executable, "-c", _CLAIM_CHILD],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    what, peak_mib = out.stdout.split()
    assert what == "EOF"
    assert int(peak_mib) < 200, out.stdout
