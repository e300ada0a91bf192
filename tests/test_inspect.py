"""fastjoblib._inspect.inspect: static description of joblib files and pickles, checked against
real joblib / pickle output (globals counted at run time, payload bytes at the reported offsets)."""
import _compat_pickle
import bz2
import collections
import io
import lzma
import os
import pickle
import random
import struct
import sys
import zlib

import numpy as np
import pytest

import joblib
import joblib.numpy_pickle as jnp

from fastjoblib._inspect import inspect
from fastjoblib._trust import DEFAULT_TRUSTED

sys.path.insert(0, os.path.dirname(__file__))
import malicious  # noqa: E402
from corpus import corpus  # noqa: E402

COMPRESSORS = ["raw", "zlib", "gzip", "bz2", "lzma", "xz", "lz4", "zstd"]


def _arrays():
    rng = np.random.default_rng(3)
    return [
        np.arange(10.0),
        np.arange(12, dtype=">i4").reshape(3, 4),
        np.asfortranarray(rng.random((5, 3))),
        np.array(2.5),
        np.zeros((0, 4), dtype="int16"),
        np.array([1, "x", None, {"k": np.arange(3)}], dtype=object),
        np.array(["abc", "de"]),
        np.array([(1, 2.0)], dtype=[("a", "<i4"), ("b", ">f8")]),
        np.arange("2020-01", "2020-03", dtype="datetime64[D]"),
        np.arange(1000, dtype=np.uint8)[::3],
        np.matrix([[1.0, 2.0]]),
    ]


def _dump(obj, compress, protocol):
    """joblib.dump to bytes; zstd: joblib on 3.11 has none, so the raw stream through zstandard
    (the whole-stream container fastjoblib writes)."""
    buf = io.BytesIO()
    if compress == "zstd":
        import zstandard
        joblib.dump(obj, buf, protocol=protocol)
        return zstandard.ZstdCompressor(level=3).compress(buf.getvalue())
    joblib.dump(obj, buf, compress=0 if compress == "raw" else (compress, 3), protocol=protocol)
    return buf.getvalue()


def _decompress(data, container):
    if container == "raw":
        return data
    if container == "zlib":
        return zlib.decompress(data)
    if container == "gzip":
        return zlib.decompress(data, 16 + zlib.MAX_WBITS)
    if container == "bz2":
        return bz2.decompress(data)
    if container in ("lzma", "xz"):
        return lzma.decompress(data)
    if container == "lz4":
        import lz4.frame
        return lz4.frame.decompress(data)
    import zstandard
    return zstandard.ZstdDecompressor().decompressobj().decompress(data)


class _Recorder(jnp.NumpyUnpickler):
    """joblib's real loader, counting every find_class call (nested object streams included)."""

    def __init__(self, fh):
        super().__init__("", fh, ensure_native_byte_order=False)
        self.counts = collections.Counter()

    def find_class(self, module, name):
        self.counts[_mapped(module, name)] += 1
        return super().find_class(module, name)


class _PlainRecorder(pickle.Unpickler):
    def find_class(self, module, name):
        self.counts[_mapped(module, name)] += 1
        return super().find_class(module, name)


def _mapped(module, name):
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    return f"{module}.{name}"


def _runtime_globals_joblib(stream):
    r = _Recorder(io.BytesIO(stream))
    r.load()
    return r.counts


# ------------------------------------------------------------------------------------------------
# joblib files: containers x protocols.

@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("compress", COMPRESSORS)
def test_joblib_file_records(compress, protocol):
    arrays = _arrays()
    data = _dump(arrays, compress, protocol)
    rep = inspect(data)
    assert rep["container"] == compress
    assert rep["compressed"] == (compress != "raw")
    assert rep["protocol"] == protocol
    assert rep["format"] == "joblib>=1.2"
    assert rep["trailing_data"] is False
    stream = _decompress(data, compress)
    assert rep["stream_size"] == len(stream)
    recs = rep["arrays"]
    assert len(recs) == len(arrays)  # only top-level arrays are records; object items are not
    for a, rec in zip(arrays, recs):
        assert rec["shape"] == a.shape
        order = "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C"
        assert rec["order"] == order
        assert rec["object"] == a.dtype.hasobject
        if a.dtype.fields:
            assert rec["dtype"] == repr(a.dtype.descr)
        else:
            assert rec["dtype"] == a.dtype.str
        assert rec["subclass"] == ("numpy.matrix" if type(a) is np.matrix else "numpy.ndarray")
        assert rec["alignment"] == 16
        off = rec["offset"]
        if a.dtype.hasobject:
            nested = stream[off:off + rec["nbytes"]]
            assert nested[:1] == b"\x80" and nested[-1:] == b"."
            got = pickle.loads(nested)
            assert got.shape == a.shape and got[1] == "x"
            assert rec["mmap"] is False
        else:
            assert off % 16 == 0
            assert rec["nbytes"] == a.nbytes
            assert stream[off:off + rec["nbytes"]] == a.tobytes(order=order)
            assert stream[off - rec["padding"] - 1] == rec["padding"]
            assert rec["mmap"] is (compress == "raw")
    assert rep["globals"] == dict(sorted(_runtime_globals_joblib(stream).items()))


def test_inputs_path_fileobj_bytes(tmp_path):
    arr = np.arange(100.0)
    p = tmp_path / "a.joblib"
    joblib.dump({"a": arr}, p)
    by_path = inspect(p)
    by_str = inspect(str(p))
    with open(p, "rb") as f:
        by_file = inspect(f)
    by_bytes = inspect(p.read_bytes())
    by_view = inspect(memoryview(bytearray(p.read_bytes())))
    assert by_path == by_str == by_file == by_bytes == by_view
    # the offset is the file offset: np.memmap at it gives the array
    rec = by_path["arrays"][0]
    mm = np.memmap(p, dtype=rec["dtype"], mode="r", offset=rec["offset"], shape=rec["shape"])
    np.testing.assert_array_equal(mm, arr)
    with pytest.raises(TypeError):
        inspect(12)
    with pytest.raises(FileNotFoundError):
        inspect(tmp_path / "missing.joblib")


def test_unaligned_stream_from_socket_like_target():
    """alignment None (tell() unsupported at dump time): no padding; offsets still exact."""
    class NoTell(io.RawIOBase):
        def __init__(self):
            self.buf = bytearray()

        def writable(self):
            return True

        def write(self, b):
            self.buf += b
            return len(b)

        def tell(self):
            raise io.UnsupportedOperation("tell")

    t = NoTell()
    arr = np.arange(7, dtype="<i2")
    joblib.dump(arr, t)
    rep = inspect(bytes(t.buf))
    rec = rep["arrays"][0]
    assert rec["alignment"] is None and "padding" not in rec
    assert bytes(t.buf)[rec["offset"]:rec["offset"] + rec["nbytes"]] == arr.tobytes()


def test_joblib_0_10_to_1_1_layout(monkeypatch):
    """Files without numpy_array_alignment_bytes (joblib 0.10-1.1): no padding byte."""
    orig = jnp.NumpyArrayWrapper.__init__

    def old_init(self, *a, **kw):
        orig(self, *a, **kw)
        del self.numpy_array_alignment_bytes

    monkeypatch.setattr(jnp.NumpyArrayWrapper, "__init__", old_init)
    arrays = [np.arange(5.0), np.array([None, 1], dtype=object), np.arange(3, dtype="u1")]
    buf = io.BytesIO()
    joblib.dump(arrays, buf, protocol=3)
    monkeypatch.undo()
    data = buf.getvalue()
    got = joblib.load(io.BytesIO(data))  # joblib itself reads it as the old layout
    np.testing.assert_array_equal(got[2], arrays[2])
    rep = inspect(data)
    assert rep["format"] == "joblib 0.10-1.1"
    for a, rec in zip(arrays, rep["arrays"]):
        assert rec["alignment"] == "absent"
        if not rec["object"]:
            assert data[rec["offset"]:rec["offset"] + rec["nbytes"]] == a.tobytes()


def test_fixture_formats_from_oldformats(tmp_path):
    import oldformats
    arrays = [np.arange(6.0), np.array([None, "x"], dtype=object), np.arange(4, dtype=">i2")]
    p = tmp_path / "old010.pkl"
    oldformats.dump_joblib_010(arrays, p)
    rep = inspect(p)
    assert rep["format"] == "joblib 0.10-1.1" and len(rep["arrays"]) == 3
    raw = p.read_bytes()
    for a, rec in zip(arrays, rep["arrays"]):
        if not a.dtype.hasobject:
            assert raw[rec["offset"]:rec["offset"] + rec["nbytes"]] == a.tobytes()
    p = tmp_path / "vendored.pkl"
    oldformats.dump_vendored(arrays, p, aligned=False)
    rep = inspect(p)
    assert "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper" in rep["globals"]
    assert rep["needs_trusted"] == [] and len(rep["arrays"]) == 3
    p = tmp_path / "old09.pkl"
    oldformats.dump_joblib_09(arrays, p)
    rep = inspect(p)
    assert rep["format"] == "joblib<0.10" and rep["arrays"] == []
    assert rep["companion_files"] == ["old09.pkl_01.npy", "old09.pkl_02.npy", "old09.pkl_03.npy"]
    assert "joblib.numpy_pickle.NDArrayWrapper" in rep["dangerous"]
    p = tmp_path / "old09z.pkl"
    oldformats.dump_joblib_09_compressed(arrays, p)
    rep = inspect(p)
    assert rep["container"] == "zfile" and rep["format"] == "joblib<0.10 (zfile)"
    assert "joblib.numpy_pickle.ZNDArrayWrapper" in rep["dangerous"]


def test_compressed_payload_is_streamed_in_bounded_memory():
    import tracemalloc
    data = _dump([np.zeros(8 * 2**20 // 8 * 8)], "zlib", 4)  # 64 MiB of float64 zeros
    assert len(data) < 2**20
    tracemalloc.start()
    try:
        rep = inspect(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rep["arrays"][0]["nbytes"] == 64 * 2**20
    assert peak < 16 * 2**20, peak


def test_pre_0_10_formats():
    from joblib.numpy_pickle_compat import NDArrayWrapper
    data = pickle.dumps({"w": NDArrayWrapper("model.pkl_01.npy", np.ndarray, allow_mmap=True)},
                        protocol=2)
    rep = inspect(data)
    assert rep["format"] == "joblib<0.10"
    assert rep["companion_files"] == ["model.pkl_01.npy"]
    assert any("NDArrayWrapper" in n for n in rep["dangerous"])
    # ZF z-file container: "ZF" + hex length padded to 19 characters + one zlib stream
    inner = pickle.dumps([1, 2, 3], protocol=2)
    zf = b"ZF" + hex(len(inner)).encode().ljust(19) + zlib.compress(inner)
    rep = inspect(zf)
    assert rep["container"] == "zfile" and rep["format"] == "joblib<0.10 (zfile)"
    assert rep["stream_size"] == len(inner)


# ------------------------------------------------------------------------------------------------
# Plain pickles: globals equal what find_class sees at run time, every protocol.

CORPUS = corpus()


@pytest.mark.parametrize("protocol", range(6))
def test_plain_pickle_globals_match_runtime(protocol):
    for name, obj in CORPUS.items():
        try:
            data = pickle.dumps(obj, protocol=protocol)
        except (TypeError, pickle.PicklingError):
            continue
        rec = _PlainRecorder(io.BytesIO(data))
        rec.counts = collections.Counter()
        rec.load()
        rep = inspect(data)
        assert rep["format"] == "pickle", name
        assert rep["arrays"] == [], name
        assert rep["protocol"] == (protocol if protocol >= 2 else None), name
        assert rep["globals"] == dict(sorted(rec.counts.items())), name
        assert rep["stream_size"] == len(data)
        expected_needs = sorted(n for n in rec.counts if n not in DEFAULT_TRUSTED
                                and n not in ("builtins.type",))
        assert rep["needs_trusted"] == expected_needs, name


def test_sklearn_versions_and_needs():
    pytest.importorskip("sklearn")
    import sklearn
    buf = io.BytesIO()
    joblib.dump(CORPUS["pipeline"], buf, compress=3)
    rep = inspect(buf.getvalue())
    assert rep["versions"]["_sklearn_version"] == [sklearn.__version__]
    assert "sklearn.pipeline.Pipeline" in rep["needs_trusted"]
    assert rep["dangerous"] == []


# ------------------------------------------------------------------------------------------------
# Hostile files: reported, never executed.

@pytest.mark.parametrize("case", sorted(malicious.HOSTILE))
def test_hostile_reported_not_executed(case, tmp_path):
    marker = tmp_path / "PWNED"
    gen, refused, kind = malicious.HOSTILE[case]
    rep = inspect(gen(marker))
    assert not marker.exists()
    assert refused in rep["globals"]
    if kind in ("build", "shim"):
        assert refused in DEFAULT_TRUSTED  # the gadget is the BUILD / the call, not the name
        if kind == "build":
            assert rep["dangerous"] == [f"<BUILD on {refused}>"]
    else:
        assert refused in rep["dangerous"]
        assert refused not in rep["needs_trusted"]


def test_memo_confusion_resolved_like_the_unpickler(tmp_path):
    rep = inspect(malicious.memo_confusion(tmp_path / "m"))
    assert rep["globals"] == {"os.system": 1}
    assert rep["dangerous"] == ["os.system"]


def test_nested_object_stream_globals_reported(tmp_path):
    rep = inspect(malicious.joblib_nested_object_array(tmp_path / "m"))
    assert rep["format"] == "joblib>=1.2"
    assert rep["arrays"][0]["object"] is True
    assert "os.system" in rep["dangerous"]


# ------------------------------------------------------------------------------------------------
# Damaged input: ValueError, quickly.

@pytest.mark.parametrize("compress", COMPRESSORS)
def test_truncated_input_raises_value_error(compress):
    data = _dump([np.arange(50.0), np.array([1, "a"], dtype=object), {"k": "v" * 300}],
                 compress, 4)
    rng = random.Random(compress)
    cuts = sorted({rng.randrange(1, len(data)) for _ in range(25)} | {1, 2, len(data) - 1})
    for cut in cuts:
        with pytest.raises(ValueError):
            inspect(data[:cut])


@pytest.mark.parametrize("data", [
    b"",
    b"\x80\x05",
    b"\x80\x09N.",                                    # unknown protocol
    b"\xff\xfe\xfd",                                  # not an opcode
    b"N",                                             # no STOP
    b".",                                             # STOP on empty stack
    b"(N.",                                           # STOP inside a MARK
    b"\x80\x04h\x05.",                                # GET of a missing memo key
    b"\x80\x04t.",                                    # TUPLE without MARK
    b"\x80\x04\x8d" + struct.pack("<Q", 2**63) + b"xx.",  # huge BINUNICODE8 length
    b"\x80\x04X\xff\xff\xff\xff.",                    # BINUNICODE past the end
    b"\x80\x04\x8c\x02\xff\xfe.",                     # invalid UTF-8
    b"x\x9c garbage not zlib",
    b"\x1f\x8b\x08\x00 garbage",
    b"BZh9 garbage",
    b"\xfd7zXZ\x00 garbage",
    b"\x04\x22\x4d\x18 garbage",
    b"\x28\xb5\x2f\xfd garbage",
    b"ZF0x10  garbage",
])
def test_garbage_raises_value_error(data):
    with pytest.raises(ValueError):
        inspect(data)


def _wrapper_stream(state_items, payload=b""):
    """A hand-made joblib array record: wrapper NEWOBJ + state dict + BUILD + payload + STOP."""
    def s(x):
        b = x.encode()
        return b"\x8c" + bytes([len(b)]) + b
    body = s("joblib.numpy_pickle") + s("NumpyArrayWrapper") + b"\x93)\x81}("
    for k, v in state_items:
        body += s(k) + v
    body += b"ub"
    return b"\x80\x04" + body + payload + b"."


_DTYPE_F8 = (b"\x8c\x05numpy\x8c\x05dtype\x93\x8c\x02f8\x89\x88\x87R"
             b"(K\x03\x8c\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")


def test_hostile_wrapper_states():
    ok = [("shape", b"K\x02\x85"), ("order", b"\x8c\x01C"), ("dtype", _DTYPE_F8),
          ("allow_mmap", b"\x88"), ("numpy_array_alignment_bytes", b"N")]
    good = _wrapper_stream(ok, bytes(16))
    rep = inspect(good)
    assert rep["arrays"][0]["nbytes"] == 16 and rep["arrays"][0]["offset"] == len(good) - 17
    # a shape claiming an exabyte in a small uncompressed file: refused at once, not read
    huge = [("shape", b"\x8a\x08" + (10**17).to_bytes(8, "little") + b"\x85")] + ok[1:]
    with pytest.raises(ValueError, match="past the end"):
        inspect(_wrapper_stream(huge, bytes(16)))
    # ... and in a compressed file: read until the data ends, then ValueError
    with pytest.raises(ValueError):
        inspect(zlib.compress(_wrapper_stream(huge, bytes(16))))
    for bad in ([("shape", b"J\xff\xff\xff\xff\x85")] + ok[1:],       # negative dimension
                [ok[0], ("order", b"\x8c\x01Z")] + ok[2:],            # bad order
                [ok[0], ok[1], ("dtype", b"N")] + ok[3:],             # dtype not a dtype
                [ok[0], ok[1], ("dtype", _DTYPE_F8.replace(b"f8", b"$!"))] + ok[3:],
                ok[:2]):                                              # missing dtype
        with pytest.raises(ValueError):
            inspect(_wrapper_stream(bad, bytes(16)))


def test_deep_nesting_does_not_crash():
    # a million nested 1-tuples used as a dict key, then many MARKs: no recursion, no crash
    data = b"\x80\x04}N" + b"\x85" * 1_000_000 + b"Ns" + b"(" * 100_000 + b"1" * 100_000 + b"."
    rep = inspect(data)
    assert rep["globals"] == {}


def test_random_garbage_never_crashes():
    rng = random.Random(0)
    for i in range(300):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        try:
            inspect(data)
        except ValueError:
            pass


@pytest.mark.parametrize("compress", ["raw", "gzip", "lz4"])
def test_mutated_files_raise_only_value_error(compress):
    """Seeded mutation fuzz: flipped, deleted and inserted bytes give a report or ValueError."""
    seeds = [_dump(obj, compress, p) for p in (2, 5) for obj in (
        [np.arange(20.0), np.array([1, "a", None], dtype=object),
         np.zeros(2, dtype=[("a", "<i4"), ("b", "S3")]), {"_x_version": "1.0"}],
        CORPUS["dataframe"])]
    rng = random.Random(compress)
    for _ in range(400):
        d = bytearray(rng.choice(seeds))
        for _ in range(rng.randrange(1, 4)):
            pos = rng.randrange(len(d))
            kind = rng.randrange(3)
            if kind == 0:
                d[pos] = rng.randrange(256)
            elif kind == 1:
                del d[pos:pos + rng.randrange(1, 8)]
            else:
                d[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
            if not d:
                d = bytearray(b"?")
        try:
            rep = inspect(bytes(d))
        except ValueError:
            continue
        assert isinstance(rep["globals"], dict)


def test_walk_dispatch_table_covers_every_opcode():
    """The walk loop finds an opcode's branch through _OP_GROUP: every opcode of pickle
    protocols 0-5 has a group, nothing else has one, and each is answered by its branch (a
    one-opcode stream never reports it as an invalid opcode)."""
    import pickletools

    from fastjoblib._inspect import _OP_GROUP

    known = {ord(op.code) for op in pickletools.opcodes}
    assert {c for c in range(256) if _OP_GROUP[c]} == known
    for c in sorted(known):
        try:
            inspect(io.BytesIO(bytes([c])))
        except ValueError as exc:
            assert "invalid pickle opcode" not in str(exc), (hex(c), exc)
    with pytest.raises(ValueError, match="invalid pickle opcode"):
        inspect(io.BytesIO(b"\x80\x04\xff."))


def test_walk_pauses_the_gc_and_restores_it():
    """inspect pauses the cyclic GC during its walk and leaves it as it found it, after a
    success and after hostile input alike."""
    import gc

    ok = pickle.dumps([1, (2, 3)], protocol=5)
    assert gc.isenabled()
    try:
        inspect(io.BytesIO(ok))
        assert gc.isenabled()
        with pytest.raises(ValueError):
            inspect(io.BytesIO(b"\x80\x05N\x85\x85\xff"))
        assert gc.isenabled()
        gc.disable()
        inspect(io.BytesIO(ok))
        assert not gc.isenabled()
    finally:
        gc.enable()


# --- red-team round 6: work per opcode bounded (no timing asserted: the work is counted) --------

def _U(s):
    b = s.encode()
    return (b"\x8c" + bytes([len(b)]) + b) if len(b) < 256 else (b"X" + struct.pack("<I", len(b)) + b)


def _G(i):
    return b"h" + bytes([i])


def _SG(mod, name):
    return _U(mod) + _U(name) + b"\x93"


_BIG = b"\x8b" + struct.pack("<i", 4096) + b"\xff" * 4095 + b"\x7f"  # LONG4, a 4096-byte int
_WRAPPER = _SG("joblib.numpy_pickle", "NumpyArrayWrapper") + b")\x81q\x00"


def test_version_key_regex_only_on_short_keys(monkeypatch):
    """dict_item's version-key regex backtracks quadratically on long keys: a memoised 4096-char
    key set 1000 times is never matched (version keys are short), a short one still is."""
    import fastjoblib._inspect as I

    calls = []
    real = I._VERSION_KEY

    class Counting:
        def match(self, k):
            calls.append(len(k))
            return real.match(k)
    monkeypatch.setattr(I, "_VERSION_KEY", Counting())
    head = b"\x80\x04}\x94" + _U("_" * 4096) + b"\x94" + b"0" + _U("v") + b"\x94" + b"0("
    r = inspect(io.BytesIO(head + (_G(1) + _G(2)) * 1000 + b"u."))
    assert calls == []
    r = inspect(io.BytesIO(pickle.dumps({"__version__": "1.2"}, protocol=4)))
    assert calls and max(calls) <= 64


def test_huge_dimensions_are_refused_not_multiplied():
    """A shape of memoised 4096-byte ints (math.prod of them would take seconds per record) is
    refused before any multiplication, and a tensor size of such ints counts as unknown."""
    body = b"\x80\x04" + _WRAPPER + _BIG + b"q\x05" + b"0"
    body += _SG("numpy", "dtype") + _U("i1") + b"\x89\x88\x87Rq\x04" + b"0"
    shape = b"(" + _G(5) * 63 + b"K\x00" + b"t"
    body += b"}(" + _U("shape") + shape + _U("order") + _U("C") + _U("dtype") + _G(4) + b"uq\x01"
    body += b"0" + (_G(0) + _G(1) + b"b0") * 3 + b"N."
    with pytest.raises(ValueError, match="below 2\\*\\*63"):
        inspect(io.BytesIO(body))
    t = b"\x80\x04" + _SG("torch._utils", "_rebuild_tensor_v3") + b"\x94" + _BIG + b"\x94"
    t += b"(NK\x00(" + _G(1) * 64 + b"t)\x89N" + _SG("torch", "float32") + b"t\x94"
    t += (_G(0) + _G(2) + b"R0") * 3 + b"N."
    r = inspect(io.BytesIO(t))
    assert r["torch"]["tensors"] == 3 and r["torch"]["nbytes_unknown"] == 3, r["torch"]


def test_short_nested_streams_count_toward_the_opcode_bound():
    """Object-array records whose nested streams hold fewer than 4096 opcodes each still count:
    a compressed file of 400 of them (1.6M opcodes in all) hits the 1M bound."""
    b = b"\x80\x04" + _WRAPPER
    b += _SG("numpy", "dtype") + _U("O8") + b"\x89\x88\x87Rq\x04" + b"0"
    b += b"}(" + _U("shape") + b"K\x00\x85" + _U("order") + _U("C") + _U("dtype") + _G(4)
    b += b"uq\x01" + b"0"
    b += (_G(0) + _G(1) + b"b" + b"N" * 4094 + b"." + b"0") * 400 + b"N."
    with pytest.raises(ValueError, match="opcodes in a compressed stream"):
        inspect(io.BytesIO(zlib.compress(b, 9)))
    r = inspect(io.BytesIO(zlib.compress(b, 9)), max_bytes=1 << 30)  # max_bytes= lifts it
    assert len(r["arrays"]) == 400


def test_a_memo_shared_array_state_is_validated_once(monkeypatch):
    """Records that reuse one memoised wrapper state (6 bytes a record) are validated once and
    share one dtype text (a structured dtype's text was rebuilt and copied per record: 2.6 GB for
    a 1 MiB file); a state changed in between is validated again."""
    import fastjoblib._inspect as I

    calls = []
    real = I._array_record
    monkeypatch.setattr(I, "_array_record", lambda st, rd: calls.append(1) or real(st, rd))
    names = [f"f{i}" for i in range(50)]
    b = b"\x80\x04" + _WRAPPER
    b += _SG("numpy", "dtype") + b"q\x02" + b"0"
    b += _G(2) + _U("i1") + b"\x89\x88\x87Rq\x03" + b"0"  # int8
    b += _G(2) + _U("V50") + b"\x89\x88\x87R"  # a structured dtype of 50 int8 fields:
    b += b"(K\x03" + _U("|") + b"N(" + b"".join(_U(n) for n in names) + b"t"
    b += b"}(" + b"".join(_U(n) + _G(3) + b"K" + bytes([i]) + b"\x86" for i, n in enumerate(names))
    b += b"uK\x32J\xff\xff\xff\xffK\x00tbq\x04" + b"0"
    b += b"}(" + _U("shape") + b"K\x00\x85" + _U("order") + _U("C") + _U("dtype") + _G(4)
    b += _U("allow_mmap") + b"\x89" + b"uq\x01" + b"0"
    b += (_G(0) + _G(1) + b"b0") * 500
    b += _G(1) + _U("order") + _U("F") + b"s0"  # the shared state changes: validated again
    b += (_G(0) + _G(1) + b"b0") * 2 + b"N."
    r = inspect(io.BytesIO(b))
    assert len(r["arrays"]) == 502 and len(calls) == 2
    texts = {id(a["dtype"]) for a in r["arrays"]}
    assert len(texts) == 1 and r["arrays"][0]["dtype"].startswith("[('f0'")
    assert r["arrays"][-1]["order"] == "F" and r["arrays"][0]["order"] == "C"


def test_versions_keep_short_values_only(tmp_path):
    """A version value is short: a 4096-char one compared with 64 kept ones at every SETITEM
    (a 1 MiB file: 1.3 s of inspect) is not recorded."""
    import pickle

    from fastjoblib import inspect

    p = tmp_path / "v.pkl"
    p.write_bytes(pickle.dumps([{"_sklearn_version": "1.5.2"}, {"_sklearn_version": "x" * 200}]))
    versions = inspect(str(p))["versions"]
    assert "1.5.2" in str(versions) and "x" * 200 not in str(versions)
