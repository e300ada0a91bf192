"""_core.load on files written by stock joblib (every corpus object, protocols 2-5; plain pickle
files 0-5), from an fd, a file object and bytes; mmap_mode; byte order; old formats generated at
test time (0.10-1.1 unaligned, vendored sklearn module names, 0.9 multi-file, ZF); error texts."""
import io
import os
import pickle
import warnings

import joblib
import numpy as np
import pytest

import oldformats
from corpus import CORPUS_NAMES, assert_deep_equal, corpus
from fastjoblib import _core, _legacy

_CORPUS = corpus()
SOURCES = ["fd", "file", "bytes"]


def _load(path, source, **kw):
    if source == "fd":
        fd = os.open(path, os.O_RDONLY)
        try:
            return _core.load(fd, **kw)
        finally:
            os.close(fd)
    if source == "file":
        with open(path, "rb") as f:
            return _core.load(f, **kw)
    with open(path, "rb") as f:
        return _core.load(f.read(), **kw)


def _iter_arrays(obj, seen=None):
    """Every ndarray reachable through containers / __dict__ (for the mmap checks)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _iter_arrays(v, seen)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _iter_arrays(v, seen)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        yield from _iter_arrays(vars(obj), seen)


@pytest.fixture(scope="module")
def joblib_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("jl")
    files = {}
    for name in CORPUS_NAMES:
        for proto in (2, 3, 4, 5):
            p = d / f"{name}.p{proto}.pkl"
            joblib.dump(_CORPUS[name], p, protocol=proto)
            files[name, proto] = str(p)
    return files


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("proto", (2, 3, 4, 5))
@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_joblib_dump_then_core_load(joblib_files, name, proto, source):
    path = joblib_files[name, proto]
    got = _load(path, source, ensure_native=True)
    # native_ok: joblib's default load converts foreign byte order (ensure_native)
    assert_deep_equal(_CORPUS[name], got, native_ok=True)
    # without ensure_native, foreign-order arrays keep their dtype exactly
    got_raw = _load(path, source)
    assert_deep_equal(_CORPUS[name], got_raw)


@pytest.mark.parametrize("proto", (2, 3, 4, 5))
@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_mmap_mode_r(joblib_files, name, proto):
    path = joblib_files[name, proto]
    fd = os.open(path, os.O_RDONLY)
    try:
        got = _core.load(fd, mmap_mode="r", filename=path)
    finally:
        os.close(fd)
    # memmaps compare by value (the corpus holds ndarrays); pandas checks classes, so compare values
    if hasattr(got, "to_numpy") and not isinstance(got, np.ndarray):
        import pandas as pd

        if isinstance(got, pd.DataFrame):
            assert list(got.columns) == list(_CORPUS[name].columns)
            for col in got.columns:
                np.testing.assert_array_equal(np.asarray(got[col]), np.asarray(_CORPUS[name][col]))
        else:
            np.testing.assert_array_equal(np.asarray(got), np.asarray(_CORPUS[name]))
        return
    assert_deep_equal(_CORPUS[name], got, check_type=False)
    for arr in _iter_arrays(got):
        if isinstance(arr, np.memmap):
            assert arr.ctypes.data % 16 == 0
            assert not arr.flags.writeable
    if name.startswith("array_") and not _CORPUS[name].dtype.hasobject and type(_CORPUS[name]) in (
            np.ndarray, np.matrix):
        if name == "array_matrix":  # a matrix view of the memmap
            assert isinstance(got, np.matrix) and isinstance(got.base, np.memmap)
        else:
            assert isinstance(got, np.memmap)
        assert got.ctypes.data % 16 == 0


def test_mmap_modes_and_offsets(tmp_path):
    a = np.arange(10000, dtype=np.float64)
    b = np.arange(7, dtype=np.int16)
    p = tmp_path / "m.pkl"
    joblib.dump({"a": a, "b": b, "o": np.array([None, 1], dtype=object)}, p)
    with open(p, "rb") as f:
        r = _core.load(f, mmap_mode="r", filename=str(p))
    assert isinstance(r["a"], np.memmap) and not r["a"].flags.writeable
    assert not isinstance(r["o"], np.memmap)
    np.testing.assert_array_equal(r["a"], a)
    np.testing.assert_array_equal(r["b"], b)
    del r
    with open(p, "rb") as f:
        c = _core.load(f, mmap_mode="c", filename=str(p))
    c["a"][0] = -1.0
    del c
    fd = os.open(p, os.O_RDONLY)
    try:
        rp = _core.load(fd, mmap_mode="r+", filename=str(p))
    finally:
        os.close(fd)
    assert rp["a"][0] == 0.0  # copy-on-write did not touch the file
    rp["a"][0] = 42.0
    rp["a"].flush()
    del rp
    assert joblib.load(p)["a"][0] == 42.0


def test_file_position_after_joblib_load(tmp_path):
    p = tmp_path / "two.pkl"
    with open(p, "wb") as f:
        joblib.dump([np.arange(100.0), "x"], f)
        first_end = f.tell()
        joblib.dump({"second": np.arange(3)}, f)
    with open(p, "rb") as f:
        assert _core.load(f)[1] == "x"
        assert f.tell() == first_end
        np.testing.assert_array_equal(_core.load(f)["second"], np.arange(3))
    fd = os.open(p, os.O_RDONLY)
    try:
        _core.load(fd)
        assert os.lseek(fd, 0, os.SEEK_CUR) == first_end
    finally:
        os.close(fd)


@pytest.mark.parametrize("proto", range(0, 6))
@pytest.mark.parametrize("name", ["dict", "tuple", "shared", "recursive_dict", "str", "array_float64",
                                  "array_object", "dataclass", "ordered_dict", "random_forest"])
def test_plain_pickle_files(tmp_path, name, proto):
    obj = _CORPUS.get(name)
    if obj is None:
        pytest.skip("not in corpus")
    p = tmp_path / "plain.pkl"
    try:
        with open(p, "wb") as f:
            pickle.dump(obj, f, protocol=proto)
    except Exception as exc:
        pytest.skip(repr(exc))
    for source in SOURCES:
        assert_deep_equal(pickle.load(open(p, "rb")), _load(str(p), source))


@pytest.mark.parametrize("proto", (2, 3, 4, 5))
def test_byte_order(tmp_path, proto):
    objs = {"f": np.arange(10, dtype=">f8"), "i": np.arange(5, dtype=">i4"),
            "s": np.array([(1, 2.0)], dtype=[("a", ">i4"), ("b", ">f8")]),
            "mixed": np.array([(1, 2.0)], dtype=[("a", ">i4"), ("b", "<f8")]),
            "n": np.arange(3, dtype="<i2")}
    p = tmp_path / "bo.pkl"
    joblib.dump(objs, p, protocol=proto)
    nat = _core.load(open(p, "rb").read(), ensure_native=True)
    ref = joblib.load(p)  # joblib's default: ensure native when not memmapping
    for k in objs:
        assert nat[k].dtype == ref[k].dtype, k
        np.testing.assert_array_equal(nat[k], objs[k])
    assert nat["f"].dtype.byteorder in "=<" and nat["mixed"].dtype == objs["mixed"].dtype
    raw = _core.load(open(p, "rb").read())
    for k in objs:
        assert raw[k].dtype == objs[k].dtype
    mm = _core.load(open(p, "rb"), mmap_mode="r", filename=str(p), ensure_native=True)
    assert isinstance(mm["f"], np.memmap) and mm["f"].dtype == np.dtype(">f8")  # memmaps never swapped


# --- old formats ------------------------------------------------------------------------------

OLD_OBJ = lambda: [np.arange(5, dtype="<i8"), np.arange(5, dtype="<f8"),  # noqa: E731
                   np.array([1, "abc", {"a": 1, "b": 2}], dtype=object), bytes(range(256)),
                   np.matrix([0, 1, 2], "<i8"), "C'est l'été !", np.asfortranarray(np.ones((3, 4))),
                   np.array(2.5), np.zeros((0, 3))]


def _check_old(got, exp_types=True):
    exp = OLD_OBJ()
    assert len(got) == len(exp)
    for a, b in zip(exp, got):
        if isinstance(a, np.ndarray):
            assert isinstance(b, np.ndarray)
            assert a.shape == b.shape and a.dtype == b.dtype
            if a.dtype.hasobject:
                assert list(a) == list(b)
            else:
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        else:
            assert a == b


@pytest.mark.parametrize("proto", (2, 3, 4, 5))
def test_joblib_010_unaligned_layout(tmp_path, proto):
    p = tmp_path / "old010.pkl"
    oldformats.dump_joblib_010(OLD_OBJ(), p, protocol=proto)
    assert b"numpy_array_alignment_bytes" not in p.read_bytes()
    _check_old(joblib.load(p))  # the fixture is valid for stock joblib
    for source in SOURCES:
        got = _load(str(p), source)
        _check_old(got)
        assert isinstance(got[4], np.matrix)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        got = _load(str(p), "file", mmap_mode="r", filename=str(p))
    _check_old(got)
    assert isinstance(got[0], np.memmap)
    assert any("is not byte aligned" in str(x.message) for x in w)


@pytest.mark.parametrize("module", ["sklearn.externals.joblib.numpy_pickle",
                                    "sklearn.externals._joblib.numpy_pickle"])
@pytest.mark.parametrize("proto", (2, 3))
def test_vendored_sklearn_joblib(tmp_path, module, proto):
    p = tmp_path / "vendored.pkl"
    oldformats.dump_vendored(OLD_OBJ(), p, module=module, protocol=proto, aligned=False)
    assert module.encode() in p.read_bytes()
    with pytest.raises(Exception):
        joblib.load(p)  # stock joblib cannot
    for source in SOURCES:
        _check_old(_load(str(p), source))


@pytest.mark.parametrize("aligned", (True, False))
@pytest.mark.parametrize("module", ["sklearn.externals.joblib.numpy_pickle",
                                    "sklearn.externals._joblib.numpy_pickle"])
@pytest.mark.parametrize("proto", (2, 3, 4, 5))
def test_vendored_sklearn_joblib_any_protocol(tmp_path, module, proto, aligned):
    p = tmp_path / "vendored.pkl"
    oldformats.dump_vendored_any(OLD_OBJ(), p, module=module, protocol=proto, aligned=aligned)
    raw = p.read_bytes()
    assert module.encode() in raw and b"joblib.numpy_pickle\x94" not in raw.replace(module.encode(), b"")
    assert (b"numpy_array_alignment_bytes" in raw) == aligned
    for source in SOURCES:
        _check_old(_load(str(p), source))
    got = _load(str(p), "fd", mmap_mode="r", filename=str(p))
    assert isinstance(got[0], np.memmap)
    if aligned:
        assert got[0].ctypes.data % 16 == 0


@pytest.mark.parametrize("proto", (2, 3))
def test_joblib_09_multifile(tmp_path, proto):
    p = tmp_path / "old09.pkl"
    oldformats.dump_joblib_09(OLD_OBJ(), str(p), protocol=proto)
    assert (tmp_path / "old09.pkl_01.npy").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _check_old(joblib.load(p))
    with pytest.warns(DeprecationWarning, match="less than 0.10"):
        got = _load(str(p), "file", filename=str(p))
    _check_old(got)
    assert isinstance(got[4], np.matrix)
    with pytest.warns(DeprecationWarning):
        got = _load(str(p), "fd", filename=str(p), mmap_mode="r")
    assert isinstance(got[0], np.memmap)
    assert not isinstance(got[2], np.memmap)


@pytest.mark.parametrize("proto", (2, 3))
def test_joblib_09_zfile(tmp_path, proto):
    p = tmp_path / "old09z.pkl"
    oldformats.dump_joblib_09_compressed(OLD_OBJ(), str(p), protocol=proto)
    assert p.read_bytes()[:2] == b"ZF"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = joblib.load(p)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        got = _legacy.load_compatibility(str(p))
    assert sum("less than 0.10" in str(x.message) for x in w) == 1
    assert len(got) == len(ref)
    for a, b in zip(ref, got):
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape
            if not a.dtype.hasobject:
                np.testing.assert_array_equal(a, b)
        else:
            assert a == b


def test_zfile_py2_wider_header(tmp_path):
    payload = pickle.dumps({"x": 1}, 2)
    buf = io.BytesIO()
    oldformats.write_zfile(buf, payload)
    data = buf.getvalue()
    p = tmp_path / "py2.z"
    p.write_bytes(data[:21] + b" " + data[21:])
    with pytest.warns(DeprecationWarning):
        assert _legacy.load_compatibility(str(p)) == {"x": 1}


# --- find_class policy, codec hook, errors ----------------------------------------------------

def test_find_class_policy_reaches_nested_object_arrays(tmp_path):
    p = tmp_path / "obj.pkl"
    joblib.dump({"o": np.array([1, {"k": 2}, None], dtype=object), "f": np.arange(3.0)}, p)
    seen = []

    def policy(module, name):
        seen.append((module, name))
        return getattr(__import__(module, fromlist=[name]), name)

    got = _core.load(open(p, "rb").read(), find_class=policy)
    assert got["o"][1] == {"k": 2}
    assert ("joblib.numpy_pickle", "NumpyArrayWrapper") in seen
    assert any(m.startswith("numpy") and n == "_reconstruct" for m, n in seen)  # nested stream

    def refuse(module, name):
        if name == "_reconstruct":
            raise pickle.UnpicklingError("refused " + name)
        return getattr(__import__(module, fromlist=[name]), name)

    with pytest.raises(pickle.UnpicklingError, match="refused"):
        _core.load(open(p, "rb").read(), find_class=refuse)


def test_codec_argument_propagates(tmp_path):
    p = tmp_path / "c.pkl"
    joblib.dump([1, 2], p)
    try:
        got = _core.load(open(p, "rb").read(), codec="no-such-codec")
    except (NotImplementedError, ValueError, LookupError):
        return
    pytest.fail(f"an unknown codec loaded: {got!r}")


def test_empty_file_is_eof(tmp_path):
    p = tmp_path / "empty.pkl"
    p.write_bytes(b"")
    for source in SOURCES:
        with pytest.raises(EOFError):
            _load(str(p), source)


@pytest.mark.parametrize("source", SOURCES)
def test_truncated_array_data(tmp_path, source):
    p = tmp_path / "t.pkl"
    joblib.dump(np.arange(1000.0), p)
    data = p.read_bytes()
    q = tmp_path / "tt.pkl"
    q.write_bytes(data[:-500])
    with pytest.raises(ValueError, match=r"EOF: reading array data, expected 8000 bytes got \d+"):
        _load(str(q), source)


def test_terabyte_claim_fails_before_allocating(tmp_path):
    # a wrapper whose shape claims 2**40 float64 elements in a small file: ValueError, no MemoryError
    p = tmp_path / "big.pkl"
    joblib.dump(np.arange(4.0), p, protocol=2)
    data = p.read_bytes()
    data = data.replace(b"K\x04\x85", b"\x8a\x06\x00\x00\x00\x00\x00\x01\x85")  # shape (2**40,)
    q = tmp_path / "bigclaim.pkl"
    q.write_bytes(data)
    for source in SOURCES:
        with pytest.raises(ValueError, match="EOF: reading array data"):
            _load(str(q), source)

    class Stream:  # no size known: bounded growth, then the EOF error
        def __init__(self, b):
            self._b = io.BytesIO(b)

        def read(self, n=-1):
            return self._b.read(n)

    with pytest.raises(ValueError, match="EOF: reading array data"):
        _core.load(Stream(data))


@pytest.mark.parametrize("codec", ["zlib", "gzip", "lz4", "zstd", "xz"])
def test_compressed_big_claim_costs_no_memory(tmp_path, codec):
    # A compressed stream has no known length: a small file whose array claims 2 GiB must end in
    # the EOF error without its resident memory growing by anything near the claim.
    import resource
    import subprocess
    import sys

    phys = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    claim = min(2 << 30, phys // 4) // 8
    p = tmp_path / "small.pkl"
    joblib.dump(np.arange(4.0), p, protocol=2)
    raw = p.read_bytes()
    shape = b"\x8a\x04" + claim.to_bytes(4, "little") + b"\x85"
    assert raw.count(b"K\x04\x85") == 1
    raw = raw.replace(b"K\x04\x85", shape)
    q = tmp_path / ("claim." + codec)
    q.write_bytes(_core._compress(codec, raw, level=1))
    code = (
        "import resource, sys, fastjoblib\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    fastjoblib.load(sys.argv[1])\n"
        "except ValueError as e:\n"
        "    assert 'EOF: reading array data' in str(e), e\n"
        "else:\n"
        "    raise SystemExit('no error')\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(_core.__file__)))
    out = subprocess.run([sys.executable, "-c", code, str(q)], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    grown_kib = int(out.stdout.split()[-1])
    assert grown_kib < 64 * 1024, (grown_kib, claim * 8)


def test_text_and_npy_files_raise(tmp_path):
    t = tmp_path / "t.txt"
    t.write_text("hello world\nthis is not a pickle\n")
    with pytest.raises(Exception):
        _load(str(t), "file")
    n = tmp_path / "a.npy"
    np.save(n, np.arange(10))
    for source in SOURCES:
        with pytest.raises((pickle.UnpicklingError, ValueError, EOFError)):
            _load(str(n), source)


def test_fd_pipe_source_joblib(tmp_path):
    """A stream of unknown length (a pipe): arrays are read with bounded allocation."""
    import threading
    obj = {"a": np.arange(300_000.0), "o": np.array([1, "x"], dtype=object), "f": np.ones((30, 20), order="F")}
    b = io.BytesIO()
    joblib.dump(obj, b)
    data = b.getvalue()
    r, w = os.pipe()

    def writer():
        with os.fdopen(w, "wb") as f:
            f.write(data)

    th = threading.Thread(target=writer)
    th.start()
    try:
        assert_deep_equal(obj, _core.load(r))
    finally:
        th.join()
        os.close(r)


def test_alignment_none_stream(tmp_path):
    """joblib.dump to a target whose tell() is unsupported writes alignment None and no padding."""
    class NoTell(io.RawIOBase):
        def __init__(self):
            self.buf = io.BytesIO()

        def writable(self):
            return True

        def write(self, b):
            return self.buf.write(b)

        def tell(self):
            raise io.UnsupportedOperation("tell")

    t = NoTell()
    obj = [np.arange(7, dtype=np.int16), np.arange(5.0), "s"]
    joblib.dump(obj, t)
    data = t.buf.getvalue()
    assert b"numpy_array_alignment_bytes" in data
    assert_deep_equal(obj, _core.load(data))
    p = tmp_path / "none.pkl"
    p.write_bytes(data)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        got = _core.load(open(p, "rb"), mmap_mode="r", filename=str(p))
    assert_deep_equal(obj, got, check_type=False)


def test_parallel_loads_from_threads(tmp_path):
    import threading
    p = tmp_path / "thr.pkl"
    obj = {"a": np.arange(500_000.0), "o": np.array([1, "x", None], dtype=object), "l": list(range(1000))}
    joblib.dump(obj, p)
    errors = []

    def work():
        for _ in range(5):
            try:
                fd = os.open(p, os.O_RDONLY)
                try:
                    assert_deep_equal(obj, _core.load(fd))
                finally:
                    os.close(fd)
                with open(p, "rb") as f:
                    r = _core.load(f, mmap_mode="r", filename=str(p))
                np.testing.assert_array_equal(r["a"], obj["a"])
            except Exception as exc:  # collected, re-raised below
                errors.append(exc)

    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[:3]


# --- progress reporting -------------------------------------------------------------------------

STEP = 4 << 20


@pytest.fixture(scope="module")
def progress_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("progress") / "p.pkl"
    obj = {"big": np.arange(3 << 20, dtype="f8"), "list": list(range(50_000)), "s": "x" * 100}
    joblib.dump(obj, p)
    return p, obj


def _check_calls(calls, total):
    dones = [d for d, _ in calls]
    assert all(t == total for _, t in calls)
    assert dones == sorted(dones) and dones[-1] == total
    for a, b in zip(dones[:-2], dones[1:-1]):
        assert b - a >= STEP


@pytest.mark.parametrize("source", SOURCES + ["bytesio"])
def test_load_progress(progress_file, source):
    path, obj = progress_file
    size = os.path.getsize(path)
    calls = []
    cb = lambda done, total: calls.append((done, total))  # noqa: E731
    if source == "bytesio":
        got = _core.load(io.BytesIO(path.read_bytes()), progress=cb)
    else:
        got = _load(str(path), source, progress=cb)
    assert_deep_equal(obj, got)
    _check_calls(calls, size)
    if source != "bytes":  # streams report during the 24 MiB payload too
        assert len(calls) >= size // STEP


def test_load_progress_from_an_offset_and_mmap(progress_file, tmp_path):
    path, obj = progress_file
    data = path.read_bytes()
    p = tmp_path / "prefixed.pkl"
    p.write_bytes(b"HEADER--" + data + b"trailing")
    calls = []
    with open(p, "rb") as f:
        f.seek(8)
        got = _core.load(f, progress=lambda d, t: calls.append((d, t)))
    assert_deep_equal(obj, got)
    total = len(data) + len(b"trailing")  # the rest of the file as stored
    assert all(t == total for _, t in calls)
    assert calls[-1][0] == len(data)  # what the loader consumed: the stream, not the trailer
    calls = []
    with open(path, "rb") as f:
        got = _core.load(f, mmap_mode="r", filename=str(path), progress=lambda d, t: calls.append((d, t)))
    assert isinstance(got["big"], np.memmap)
    _check_calls(calls, os.path.getsize(path))


def test_load_progress_exception_aborts(progress_file):
    path, _ = progress_file

    class Stop(Exception):
        pass

    def cb(done, total):
        raise Stop(done, total)

    for source in SOURCES:
        with pytest.raises(Stop):
            _load(str(path), source, progress=cb)
    with pytest.raises(Stop):  # the final call of a small load
        _core.load(pickle.dumps([1, 2]), progress=cb)
    with pytest.raises(TypeError):
        _core.load(pickle.dumps(1), progress="no")


def test_load_progress_counts_compressed_bytes(tmp_path):
    p = tmp_path / "c.pkl.z"
    joblib.dump(np.arange(3 << 20, dtype="f8"), p, compress=("zlib", 1))
    calls = []
    raw = p.read_bytes()
    # joblib's zlib container: the codec reads the stream after the magic-free zlib header
    try:
        with open(p, "rb") as f:
            got = _core.load(f, codec="zlib", progress=lambda d, t: calls.append((d, t)))
    except NotImplementedError:
        pytest.skip("codecs are not built into this checkout")
    np.testing.assert_array_equal(got, np.arange(3 << 20, dtype="f8"))
    _check_calls(calls, len(raw))


def test_joblib_09_without_filename_warns_with_none(tmp_path, monkeypatch):
    # companions resolve against the working directory when no filename is given; the
    # deprecation text then names None (it used to format None with %U)
    p = tmp_path / "old09.pkl"
    oldformats.dump_joblib_09(OLD_OBJ(), str(p), protocol=2)
    monkeypatch.chdir(tmp_path)
    with open(p, "rb") as f, pytest.warns(DeprecationWarning, match="The file 'None' has been generated"):
        got = _core.load(f)
    _check_old(got)
