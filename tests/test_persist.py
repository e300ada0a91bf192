"""fastjoblib.dump / load argument handling, checked against what real joblib does for the same call.

Every expectation here comes from running joblib itself (same arguments, same file names), never
from a hard-coded copy of its behaviour: containers are compared by their magic (and the header
bytes that reveal the level), errors by type and exact text, warnings by category, text and count.
"""
import fractions
import gzip
import io
import os
import pathlib
import pickle
import re
import subprocess
import sys
import warnings

import joblib
import numpy as np
import pytest
from joblib.numpy_pickle_compat import write_zfile

import fastjoblib
from fastjoblib import _compressors, _persist
from fj_support import container

VALUE = {"a": np.arange(10.0), "b": [1, "two", 3.0], "c": np.arange(6, dtype="<i4").reshape(2, 3)}

# (compress, file name). The section 2.2 table of the format reference, then more corners.
RESOLUTION_ROWS = [
    (0, "x.pkl"), (False, "x.pkl"),
    (0, "x.gz"), (False, "x.gz"),
    (True, "x.pkl"), (3, "x.pkl"), (None, "x.pkl"),
    (5, "x.bz2"),
    ("gzip", "x.bz2"),
    (("zlib", 0), "x.gz"),
    (("lzma", 3), "x.pkl"),
    (("zlib", True), "x.pkl"),
    (True, "X.GZ"),
    (1, "x.z.gz"), (1, "x.gz.z"),
    (0, "x.z"), (0, "x.bz2"), (0, "x.lzma"), (0, "x.xz"), (0, "x.lz4"), (0, "x"),
    (None, "x.gz"), (1, "x"), (9, "x.pkl"), (2, "x.gz"), (9, "x.gz"), (1, "x.gz"),
    (7, "x.bz2"), (1, "x.lzma"), (9, "x.lzma"),
    (("zlib", None), "x.pkl"), (("zlib", False), "x.pkl"), (("xz", 0), "x.xz"),
    (("bz2", True), "x.pkl"), (("lzma", True), "x.pkl"), (("lz4", True), "x.pkl"),
    (("lz4", 3), "x.pkl"), (("gzip", 9), "x"), (("bz2", 1), "x.gz"), (("zlib", 6), "x.gz"),
    ("lzma", "x.gz"), ("zlib", "x.gz"), ("xz", "x"), ("lz4", "x.pkl"), ("bz2", "x.z"),
    (np.int64(0), "x.pkl"), (0.0, "x.pkl"), (np.int64(0), "x.gz"), (("bz2", np.int64(4)), "x"),
    (("lz4", np.int64(2)), "x"),
]

ERROR_ROWS = [
    (3.0, "x.pkl"), (3.0, "x.bz2"), (3.0, "x.xz"), (3.0, "x.lzma"), (3.0, "x.lz4"),
    (np.int64(3), "x.pkl"), (np.float64(3.0), "x.pkl"), (np.True_, "x"),
    (("gzip", 3.0), "x"), (3 + 0j, "x"), (("bz2", 3 + 0j), "x"), (("bz2", 3.0), "x"),
    (("lzma", np.int64(3)), "x"), (("xz", fractions.Fraction(3)), "x"), (("lz4", 3.0), "x"),
    (("bz2", np.True_), "x"), (("lz4", 3 + 0j), "x"),
    (b"zlib", "x"), (["zlib", 3], "x"), (3.5, "x"), (-1, "x"), (10, "x"), ({}, "x"),
    ((), "x"), (("zlib", 3, 4), "x"), (("zlib", "wrong"), "x"), (("gzip", -1), "x.gz"),
    (("zlib", 10), "x"), (15, "x.gz"),
]


@pytest.fixture(autouse=True)
def stock_joblib_registry():
    """Compare against joblib's stock registry even if another test module registered zstd
    with joblib (fastjoblib.register_zstd_with_joblib) and left it there."""
    from joblib.compressor import _COMPRESSORS

    saved = dict(_COMPRESSORS)
    _COMPRESSORS.pop("zstd", None)
    yield
    _COMPRESSORS.clear()
    _COMPRESSORS.update(saved)


def _joblib_outcome(call):
    try:
        return "ok", call()
    except Exception as exc:  # noqa: BLE001 - the outcome is compared, whatever it is
        return "error", (type(exc), str(exc))


# ---------------------------------------------------------------------------------------------
# compress resolution


@pytest.mark.parametrize("compress,name", RESOLUTION_ROWS, ids=repr)
def test_resolution_matches_joblib_internal(compress, name, tmp_path):
    """The (method, level) we hand to the C core is the container joblib writes (runs without
    the C core: checks _persist's resolution against joblib's real file)."""
    jl = tmp_path / name
    joblib.dump(VALUE, str(jl), compress=compress)
    kind, _ = container(jl)
    codec, level = _persist._resolve_compress(compress, str(jl), True, False)
    assert (codec or "not-compressed") == kind
    if codec is not None and level != -1:
        # an explicit level: joblib's stream was written at that level (visible for some codecs)
        assert isinstance(level, int) and 1 <= level <= 9
        if kind == "bz2":
            assert container(jl)[1] == b"BZh%d" % level


@pytest.mark.parametrize("compress,name", RESOLUTION_ROWS, ids=repr)
def test_resolution_matches_joblib(compress, name, tmp_path):
    (tmp_path / "jl").mkdir()
    (tmp_path / "fj").mkdir()
    jl, fj = tmp_path / "jl" / name, tmp_path / "fj" / name
    r_jl = joblib.dump(VALUE, str(jl), compress=compress)
    r_fj = fastjoblib.dump(VALUE, str(fj), compress=compress)
    assert r_jl == [str(jl)] and r_fj == [str(fj)]
    assert container(fj) == container(jl)
    loaded = joblib.load(str(fj))
    np.testing.assert_array_equal(loaded["a"], VALUE["a"])
    assert loaded["b"] == VALUE["b"]


@pytest.mark.parametrize("compress", [0, False, True, None, 3, 1, 9, "gzip", "bz2", ("bz2", 2),
                                      ("zlib", 0), ("lzma", 4), "xz", "lz4"], ids=repr)
def test_resolution_file_object_matches_joblib(compress):
    b_jl, b_fj = io.BytesIO(), io.BytesIO()
    assert joblib.dump(VALUE, b_jl, compress=compress) is None
    assert fastjoblib.dump(VALUE, b_fj, compress=compress) is None
    assert not b_fj.closed
    assert container(b_fj.getvalue()) == container(b_jl.getvalue())
    b_fj.seek(0)
    assert joblib.load(b_fj)["b"] == VALUE["b"]


@pytest.mark.parametrize("compress,name", ERROR_ROWS, ids=repr)
def test_bad_compress_same_error_as_joblib(compress, name, tmp_path):
    status, outcome = _joblib_outcome(
        lambda: joblib.dump(VALUE, str(tmp_path / ("jl_" + name)), compress=compress))
    if status == "ok":
        # accepted by this interpreter's stdlib (3.14's lzma takes np.int64 presets): so by us
        assert sys.version_info >= (3, 14) and compress == ("lzma", 3), compress
        fastjoblib.dump(VALUE, str(tmp_path / ("fj_" + name)), compress=compress)
        got = joblib.load(str(tmp_path / ("fj_" + name)))
        np.testing.assert_array_equal(got["a"], VALUE["a"])
        assert got["b"] == VALUE["b"]
        return
    etype, text = outcome
    target = tmp_path / ("fj_" + name)
    with pytest.raises(etype, match="^" + re.escape(text) + "$"):
        fastjoblib.dump(VALUE, str(target), compress=compress)
    assert not target.exists()  # (joblib sometimes leaves a file behind; we never touch it)
    assert os.listdir(tmp_path) == [p for p in os.listdir(tmp_path) if p.startswith("jl_")]


@pytest.mark.parametrize("compress", [("wrong", 3), (None, 3), ("ZLIB", 1), (3, 3), "a"], ids=repr)
def test_bad_method_same_error_as_joblib(compress, tmp_path):
    status, (etype, text) = _joblib_outcome(
        lambda: joblib.dump(VALUE, str(tmp_path / "j"), compress=compress))
    assert status == "error" and etype is ValueError
    # The text ends with the repr of the registry dict, whose values differ (joblib's wrapper
    # objects with addresses vs our records); everything up to it is identical.
    head = text[: text.index("{")]
    with pytest.raises(ValueError) as info:
        fastjoblib.dump(VALUE, str(tmp_path / "f"), compress=compress)
    ours = str(info.value)
    assert ours.startswith(head)
    assert ours == head + repr(_compressors.COMPRESSORS) + "."
    assert list(_compressors.COMPRESSORS)[:6] == list(joblib.numpy_pickle._COMPRESSORS)[:6]


class BytesPath:
    def __fspath__(self):
        return b"some.pkl"


@pytest.mark.parametrize("target", [dict(), b"x.pkl", 3, None, ("a",), 2.5, BytesPath()],
                         ids=lambda t: type(t).__name__)
@pytest.mark.parametrize("compress", [0, 3])
def test_bad_target_same_error_as_joblib(target, compress, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, (etype, text) = _joblib_outcome(lambda: joblib.dump("foo", target, compress=compress))
    assert status == "error"
    with pytest.raises(etype, match="^" + re.escape(text) + "$"):
        fastjoblib.dump("foo", target, compress=compress)
    assert os.listdir(tmp_path) == []


def test_checks_run_in_joblib_order(tmp_path):
    # the level is checked before the method, and both before the target
    for compress, target in [(10, {}), (("nope", 10), "x"), (("nope", 1), {}), (("lz4", 11), {})]:
        _, (etype, text) = _joblib_outcome(lambda: joblib.dump(1, target, compress=compress))
        with pytest.raises(etype) as info:
            fastjoblib.dump(1, target, compress=compress)
        assert str(info.value).split("{")[0] == text.split("{")[0]


@pytest.mark.parametrize("protocol", [6, 99, "4"])
def test_bad_protocol_same_error_as_joblib_target_untouched(protocol, tmp_path):
    jl, fj = tmp_path / "j.pkl", tmp_path / "f.pkl"
    fj.write_bytes(b"previous")
    _, (etype, text) = _joblib_outcome(lambda: joblib.dump(1, str(jl), protocol=protocol))
    with pytest.raises(etype, match="^" + re.escape(text) + "$"):
        fastjoblib.dump(1, str(fj), protocol=protocol)
    assert fj.read_bytes() == b"previous"


def test_cache_size_keyword_rejected_like_joblib(tmp_path):
    with pytest.raises(TypeError, match="unexpected keyword argument 'cache_size'"):
        joblib.dump(1, str(tmp_path / "j"), cache_size=10)
    with pytest.raises(TypeError, match="unexpected keyword argument 'cache_size'"):
        fastjoblib.dump(1, str(tmp_path / "f"), cache_size=10)


@pytest.mark.parametrize("threads", [0, -1, 1.5, "2", True])
def test_bad_threads(threads, tmp_path):
    with pytest.raises((TypeError, ValueError), match="threads must be a positive int or None"):
        fastjoblib.dump(1, str(tmp_path / "f.gz"), threads=threads)
    assert os.listdir(tmp_path) == []


def test_lz4_missing_text():
    """With python-lz4 hidden, joblib and fastjoblib give the same error (unless our C core
    carries its own lz4, in which case fastjoblib must still write a stream joblib-with-lz4
    reads, checked elsewhere)."""
    code = r"""
import sys, re
sys.modules['lz4'] = None
sys.modules['lz4.frame'] = None
import joblib, fastjoblib
from fastjoblib import _compressors
out = []
for compress, name in [('lz4', 'a'), (('lz4', 3), 'b'), (0, 'c.lz4'), (3, 'd.lz4')]:
    try:
        joblib.dump(1, name, compress=compress)
        jl = None
    except ValueError as e:
        jl = str(e)
    try:
        fastjoblib.dump(1, 'fj_' + name, compress=compress)
        fj = None
    except ValueError as e:
        fj = str(e)
    out.append((jl, fj))
print(repr((_compressors.codec_available('lz4'), out)))
"""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        res = subprocess.run([sys.executable, "-c", code], cwd=d, capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert res.returncode == 0, res.stderr
    available, out = eval(res.stdout)  # noqa: S307 - our own repr
    for jl, fj in out:
        assert jl == _compressors.JOBLIB_LZ4_NOT_INSTALLED_ERROR
        if available:  # the C core has its own lz4: no error
            assert fj is None
        else:  # same type (ValueError) as joblib, fastjoblib's one missing-package wording
            assert fj == _compressors.LZ4_NOT_INSTALLED_ERROR


# ---------------------------------------------------------------------------------------------
# dump: return values, targets


def test_return_values_and_pathlike(tmp_path):
    class MyPath:
        def __init__(self, p):
            self.p = p

        def __fspath__(self):
            return self.p

    p = tmp_path / "a.pkl"
    assert fastjoblib.dump(VALUE, p) == [str(p)]
    assert fastjoblib.dump(VALUE, MyPath(str(tmp_path / "b.gz"))) == [str(tmp_path / "b.gz")]
    assert container(tmp_path / "b.gz")[0] == "gzip"
    with open(tmp_path / "c.pkl", "wb") as f:
        assert fastjoblib.dump(VALUE, f) is None
        assert not f.closed
    rel = os.path.relpath(tmp_path / "d.pkl")
    assert fastjoblib.dump(VALUE, rel) == [rel]  # not made absolute
    for name in ["a.pkl", "b.gz", "c.pkl", "d.pkl"]:
        assert joblib.load(tmp_path / name)["b"] == VALUE["b"]


def test_dump_into_user_compressor_objects(tmp_path):
    # joblib's test_file_handle_persistence, dump side: the user's object compresses
    import bz2
    import lzma

    for opener in (gzip.GzipFile, bz2.BZ2File, lzma.LZMAFile):
        p = tmp_path / ("u." + opener.__name__)
        with opener(p, "wb") as f:
            fastjoblib.dump(VALUE, f)
        with opener(p, "rb") as f:
            assert joblib.load(f)["b"] == VALUE["b"]
        assert joblib.load(str(p))["b"] == VALUE["b"]  # auto-detected by magic


def test_dump_target_errors_like_open(tmp_path):
    for target in ["", str(tmp_path / "nodir" / "x.pkl"), str(tmp_path)]:
        _, (etype, text) = _joblib_outcome(lambda: joblib.dump(1, target))
        with pytest.raises(etype, match="^" + re.escape(text) + "$"):
            fastjoblib.dump(1, target)
    assert os.listdir(tmp_path) == []


def test_dump_follows_symlink(tmp_path):
    real = tmp_path / "real.pkl"
    link = tmp_path / "link.pkl"
    real.write_bytes(b"old")
    link.symlink_to(real)
    fastjoblib.dump(VALUE, str(link))
    assert link.is_symlink()
    assert joblib.load(str(real))["b"] == VALUE["b"]


def test_dump_permissions_like_open(tmp_path):
    old = os.umask(0o027)
    try:
        p = tmp_path / "new.pkl"
        fastjoblib.dump(1, str(p))
        with open(tmp_path / "ref", "wb"):
            pass
        assert (p.stat().st_mode & 0o7777) == ((tmp_path / "ref").stat().st_mode & 0o7777) == 0o640
        q = tmp_path / "existing.pkl"
        q.write_bytes(b"x")
        q.chmod(0o604)
        fastjoblib.dump(1, str(q), compress=3)
        assert (q.stat().st_mode & 0o7777) == 0o604
    finally:
        os.umask(old)


# ---------------------------------------------------------------------------------------------
# load: argument checks, errors


@pytest.mark.parametrize("ensure", [True, 1])
@pytest.mark.parametrize("mode", ["r+", "r", "c", "w+", "bogus"])
def test_load_ensure_native_with_mmap_error_before_touching_file(ensure, mode, tmp_path):
    missing = str(tmp_path / "does-not-exist.pkl")
    _, (etype, text) = _joblib_outcome(
        lambda: joblib.load(missing, mmap_mode=mode, ensure_native_byte_order=ensure))
    assert etype is ValueError
    with pytest.raises(ValueError, match="^" + re.escape(text) + "$"):
        fastjoblib.load(missing, mmap_mode=mode, ensure_native_byte_order=ensure)


@pytest.mark.parametrize("mode", ["x", "w", "R", 3, "rw", [], b"r"], ids=repr)
def test_load_invalid_mmap_mode_numpy_error(mode, tmp_path):
    p = str(tmp_path / "a.pkl")
    joblib.dump(VALUE, p)
    _, (etype, text) = _joblib_outcome(lambda: joblib.load(p, mmap_mode=mode))
    with pytest.raises(etype, match="^" + re.escape(text) + "$"):
        fastjoblib.load(p, mmap_mode=mode)


def test_load_path_errors_like_joblib(tmp_path):
    for target in [str(tmp_path / "missing.pkl"), str(tmp_path), b"/nonexistent/x"]:
        _, (etype, text) = _joblib_outcome(lambda: joblib.load(target))
        with pytest.raises(etype, match="^" + re.escape(text) + "$"):
            fastjoblib.load(target)


def test_mmap_mode_normalisation():
    norm = _persist._core_mmap_mode
    assert [norm(m) for m in ["r", "readonly", "r+", "readwrite", "c", "copyonwrite", "w+",
                              "write"]] == ["r", "r", "r+", "r+", "c", "c", "r+", "r+"]


# ---------------------------------------------------------------------------------------------
# load: end to end (joblib files)


def _warnings_of(call):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        result = call()
    return result, [(x.category, str(x.message)) for x in w]


@pytest.mark.parametrize("mode", ["r", "r+", "c", "w+", "readonly", "bogus"])
@pytest.mark.parametrize("ext", [".gz", ".z", ".bz2", ".xz", ".lzma", ".lz4"])
def test_compressed_mmap_warning_like_joblib(mode, ext, tmp_path):
    p = str(tmp_path / ("a.pkl" + ext))
    joblib.dump(VALUE, p)
    r_jl, w_jl = _warnings_of(lambda: joblib.load(p, mmap_mode=mode))
    r_fj, w_fj = _warnings_of(lambda: fastjoblib.load(p, mmap_mode=mode))
    assert len(w_jl) == 1 and w_fj == w_jl
    assert type(r_fj["a"]) is np.ndarray
    np.testing.assert_array_equal(r_fj["a"], r_jl["a"])


def test_bytesio_mmap_warning_like_joblib():
    bio = io.BytesIO()
    joblib.dump(VALUE, bio)
    bio.seek(0)
    r_jl, w_jl = _warnings_of(lambda: joblib.load(bio, mmap_mode="r"))
    bio.seek(0)
    r_fj, w_fj = _warnings_of(lambda: fastjoblib.load(bio, mmap_mode="r"))
    assert len(w_jl) == 1 and w_fj == w_jl
    assert type(r_fj["a"]) is np.ndarray
    # a compressed BytesIO gives the compressed-file text instead (joblib's order of checks)
    bio = io.BytesIO()
    joblib.dump(VALUE, bio, compress=3)
    bio.seek(0)
    _, w_jl = _warnings_of(lambda: joblib.load(bio, mmap_mode="r+"))
    bio.seek(0)
    _, w_fj = _warnings_of(lambda: fastjoblib.load(bio, mmap_mode="r+"))
    assert len(w_jl) == 1 and w_fj == w_jl


def test_non_raw_file_mmap_warning_like_joblib(tmp_path):
    p = tmp_path / "a.pkl.gz"
    with gzip.GzipFile(p, "wb") as f:
        joblib.dump(VALUE, f)
    with gzip.GzipFile(p, "rb") as f:
        r_jl, w_jl = _warnings_of(lambda: joblib.load(f, mmap_mode="r"))
        f.seek(0)
        r_fj, w_fj = _warnings_of(lambda: fastjoblib.load(f, mmap_mode="r"))
        assert len(w_jl) == 1 and w_fj == w_jl and repr(f) in w_fj[0][1]
    np.testing.assert_array_equal(r_fj["c"], VALUE["c"])


def test_raw_file_object_never_mmapped_like_joblib(tmp_path):
    p = tmp_path / "a.pkl"
    joblib.dump(VALUE, p)
    with open(p, "rb") as f:
        r_jl, w_jl = _warnings_of(lambda: joblib.load(f, mmap_mode="r+"))
    with open(p, "rb") as f:
        r_fj, w_fj = _warnings_of(lambda: fastjoblib.load(f, mmap_mode="r+"))
    assert w_jl == w_fj == []
    assert type(r_jl["a"]) is type(r_fj["a"]) is np.ndarray
    np.testing.assert_array_equal(r_fj["a"], VALUE["a"])


@pytest.mark.parametrize("mode,writeable", [("r", False), ("readonly", False), ("r+", True),
                                            ("w+", True), ("write", True), ("c", True)])
def test_path_mmap_modes(mode, writeable, tmp_path):
    p = tmp_path / "a.pkl"
    joblib.dump(VALUE, p)
    size = p.stat().st_size
    r = fastjoblib.load(p, mmap_mode=mode)
    assert isinstance(r["a"], np.memmap)
    assert r["a"].flags.writeable is writeable
    np.testing.assert_array_equal(r["a"], VALUE["a"])
    del r
    assert p.stat().st_size == size  # 'w+' / 'write' never truncate
    np.testing.assert_array_equal(joblib.load(p)["a"], VALUE["a"])


def test_bytes_path_and_pathlike_load(tmp_path):
    p = tmp_path / "a.pkl"
    joblib.dump(VALUE, p)
    for target in [p, str(p), os.fsencode(str(p))]:
        assert fastjoblib.load(target)["b"] == VALUE["b"]


def test_load_empty_file_eoferror(tmp_path):
    p = tmp_path / "empty"
    p.write_bytes(b"")
    with pytest.raises(EOFError):
        joblib.load(p)
    with pytest.raises(EOFError):
        fastjoblib.load(p)


def test_python2_str_error_like_joblib():
    data = b"\x80\x02U\x02\xc3\xa9q\x00."  # py2 str with non-ASCII bytes
    _, (etype, text) = _joblib_outcome(lambda: joblib.load(io.BytesIO(data)))
    with pytest.raises(etype, match="^" + re.escape(text) + "$") as info:
        fastjoblib.load(io.BytesIO(data))
    assert isinstance(info.value.__cause__, UnicodeDecodeError)


def test_zfile_compat(tmp_path):
    p = str(tmp_path / "old.pkl")
    with open(p, "wb") as f:
        write_zfile(f, pickle.dumps({"a": 1, "b": [2, 3]}, 2))
    r_jl, w_jl = _warnings_of(lambda: joblib.load(p))
    r_fj, w_fj = _warnings_of(lambda: fastjoblib.load(p))
    assert r_fj == r_jl and w_fj == w_jl and len(w_jl) == 1


# ---------------------------------------------------------------------------------------------
# in-memory persistence


def test_in_memory_persistence_without_rewind():
    # joblib's test_in_memory_persistence: load right after dump, no seek(0)
    for compress in [0, 3, "lz4"]:
        bio = io.BytesIO()
        fastjoblib.dump(VALUE, bio, compress=compress)
        r = fastjoblib.load(bio)
        np.testing.assert_array_equal(r["a"], VALUE["a"])
    bio = io.BytesIO()
    joblib.dump(VALUE, bio)
    np.testing.assert_array_equal(fastjoblib.load(bio)["c"], VALUE["c"])


def test_two_dumps_in_one_bytesio():
    # joblib rewinds to 0 and loads the first object twice (joblib/joblib#1167); we do not
    bio = io.BytesIO()
    fastjoblib.dump({"n": 1}, bio)
    fastjoblib.dump({"n": 2}, bio)
    bio.seek(0)
    assert fastjoblib.load(bio) == {"n": 1}
    assert fastjoblib.load(bio) == {"n": 2}


def test_non_seekable_stream_loads():
    class Stream:  # no peek, no seek, no tell (like a socket or HTTP response)
        def __init__(self, data):
            self._b = io.BytesIO(data)

        def read(self, n=-1):
            return self._b.read(n)

    for compress in [0, 3]:
        bio = io.BytesIO()
        joblib.dump(VALUE, bio, compress=compress)
        r = fastjoblib.load(Stream(bio.getvalue()))
        np.testing.assert_array_equal(r["a"], VALUE["a"])


# ---------------------------------------------------------------------------------------------
# the package itself


def test_import_is_cheap():
    code = ("import sys, fastjoblib; "
            "heavy = [m for m in ('numpy', 'joblib', 'lz4', 'zstandard', 'fastjoblib._core') "
            "if m in sys.modules]; print(heavy)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_public_names():
    assert fastjoblib.PicklingError is pickle.PicklingError
    assert fastjoblib.UnpicklingError is pickle.UnpicklingError
    assert isinstance(fastjoblib.__version__, str)
    assert callable(fastjoblib.dump) and callable(fastjoblib.load)
    with pytest.raises(AttributeError):
        fastjoblib.no_such_name  # noqa: B018
    from fastjoblib import _api, _core, _zstd_joblib

    for name in ["dumps", "Pickler", "dump_pickle"]:
        assert getattr(fastjoblib, name) is getattr(_core, name)
        assert name in dir(fastjoblib)
    for name in ["loads", "Unpickler", "load_pickle"]:  # the C core's, plus trusted=
        assert getattr(fastjoblib, name) is getattr(_api, name)
        assert name in dir(fastjoblib)
    assert issubclass(fastjoblib.Unpickler, _core.Unpickler)
    assert fastjoblib.register_zstd_with_joblib is _zstd_joblib.register_zstd_with_joblib
    from fastjoblib import dumps, loads  # noqa: F401 - from-imports go through __getattr__


def test_registry_matches_joblib():
    jl = joblib.numpy_pickle._COMPRESSORS
    ours = _compressors.COMPRESSORS
    assert list(ours) == list(jl) + ["zstd"]
    for name, c in jl.items():
        assert (ours[name].prefix, ours[name].extension) == (c.prefix, c.extension)
    from joblib.numpy_pickle_utils import _get_prefixes_max_len

    assert _compressors.MAX_PREFIX_LEN == _get_prefixes_max_len()
    # detection agrees with joblib's on joblib's own files, and on the ZF prefix
    for head in [b"ZF0x12", b"\x78\x9c", b"\x1f\x8b\x08", b"BZh9", b"\x5d\x00\x00",
                 b"\xfd7zXZ\x00", b"\x04\x22\x4d\x18", b"\x80\x04\x95", b""]:
        bio = io.BytesIO(head)
        assert _compressors.detect(head) == joblib.numpy_pickle_utils._detect_compressor(bio)
    assert _compressors.detect(b"\x28\xb5\x2f\xfd") == "zstd"


def test_default_levels_match_joblib_streams(tmp_path):
    # what a level of None becomes, read back from joblib's own streams where visible
    for name, ext in [("bz2", ".bz2"), ("lzma", ".lzma"), ("zlib", ".z")]:
        p = str(tmp_path / ("a" + ext))
        joblib.dump(1, p)
        ref = str(tmp_path / ("ref" + ext))
        joblib.dump(1, ref, compress=(name, _compressors.COMPRESSORS[name].default_level))
        assert container(p) == container(ref)



def test_matrix_restored_as_matrix(tmp_path):
    # README claim: np.matrix loads back as np.matrix (joblib on NumPy 2 returns an ndarray)
    import warnings as _w

    with _w.catch_warnings():
        _w.simplefilter("ignore", PendingDeprecationWarning)
        m = np.matrix([[1, 2], [3, 4]])
    p = tmp_path / "m.pkl"
    joblib.dump({"m": m}, p)
    r = fastjoblib.load(p)["m"]
    assert type(r) is np.matrix
    np.testing.assert_array_equal(r, m)
    assert type(joblib.load(p)["m"]) is np.ndarray  # the documented difference
