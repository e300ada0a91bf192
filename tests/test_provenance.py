"""Provenance records (the issue's "Trust: provenance" part).

A dump with ``_core.dump(..., trailer=make_record)`` (what ``fastjoblib.dump(provenance=True)``
does) ends with ``<record dict> POP STOP``. Checked here:

- stock ``joblib.load``, ``pickle.loads`` and ``fastjoblib`` load exactly the same object as from
  a dump without the record (deep-equal, same loader on both sides);
- the record is in the file: an independent reader (stock joblib's Python unpickler with its
  dispatch wrapped) sees the dict dropped by the POP right before STOP; genops shows the opcodes;
- the C hooks: the module set handed to the trailer (nested object-array streams, EXT codes), type
  checks, and that only a POP immediately followed by STOP is collected;
- version checks: a record whose sklearn / numpy / python version is rewritten in the raw bytes
  (same length) warns VersionMismatchWarning naming the package, plain or compressed; patch-level
  differences do not; checking never imports a module named in the record;
- no record without the trailer (provenance=False).
"""
import copyreg
import datetime
import fractions
import gzip
import io
import os
import pickle
import pickletools
import sys
import warnings
import zlib

import joblib
import numpy as np
import pytest
from joblib import numpy_pickle

import fastjoblib
from corpus import assert_deep_equal, corpus
from fastjoblib import _core, _provenance
from fastjoblib._provenance import VersionMismatchWarning, check_record, make_record

sklearn = pytest.importorskip("sklearn")
pd = pytest.importorskip("pandas")
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

PUBLIC = "provenance" in __import__("inspect").signature(fastjoblib.dump).parameters
needs_public = pytest.mark.skipif(
    not PUBLIC, reason="fastjoblib.dump has no provenance= yet (the _persist.py patch of the "
    "provenance part is not merged)")


# ------------------------------------------------------------------------------------------------
# helpers

def _model():
    rng = np.random.default_rng(0)
    X = rng.random((40, 3))
    y = (X[:, 0] > 0.5).astype(int)
    return {
        "model": make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y),
        "frame": pd.DataFrame({"a": np.arange(5), "b": list("abcde")}),
        "weights": np.arange(1000, dtype="float32"),
        "objects": np.array([fractions.Fraction(1, 3), None, "x"], dtype=object),
        "text": "héllo",
    }


def _dump_bytes(obj, protocol=5, trailer=make_record, codec=None):
    buf = io.BytesIO()
    _core.dump(obj, buf, protocol, trailer=trailer, codec=codec)
    return buf.getvalue()


def _dump_file(path, obj, protocol=5, trailer=make_record, codec=None):
    with open(path, "wb") as f:
        _core.dump(obj, f.fileno(), protocol, trailer=trailer, codec=codec)
    return path


def _load_with_record(source, **kw):
    out = []
    obj = _core.load(source, trailer=out, **kw)
    return obj, out


_POP, _STOP = pickle.POP[0], pickle.STOP[0]


def _recording(base):
    """A subclass of the pure-Python unpickler `base` that remembers the object a POP drops and
    whether the opcode right before STOP was that POP (an independent reader of the record)."""
    dispatch = dict(base.dispatch)

    def wrap(code, f):
        def op(self):
            if code == _POP:
                self._popped = self.stack[-1] if self.stack else None
            elif code == _STOP:
                self.before_stop = self._popped if self._last == _POP else None
            self._last = code
            return f(self)
        return op

    for code, f in base.dispatch.items():
        dispatch[code] = wrap(code, f)
    return type("Recording" + base.__name__, (base,),
                {"dispatch": dispatch, "_last": None, "_popped": None, "before_stop": None})


RecordingJoblib = _recording(numpy_pickle.NumpyUnpickler)
RecordingPickle = _recording(pickle._Unpickler)


def _joblib_walk(path):
    """(object, the dict POPped right before STOP or None), read by stock joblib's unpickler."""
    with open(path, "rb") as f:
        with numpy_pickle._validate_fileobject_and_memmap(f, path, None) as (fobj, _):
            u = RecordingJoblib(path, fobj, ensure_native_byte_order=True)
            obj = u.load()
    return obj, u.before_stop


def _doctor(data, old, new):
    """Rewrite the last occurrence of `old` (the record comes last) with `new`, same length."""
    old_b, new_b = old.encode(), new.encode()
    assert len(old_b) == len(new_b)
    i = data.rfind(old_b)
    assert i > 0, f"{old!r} not found"
    return data[:i] + new_b + data[i + len(old_b):]


def _other_major(v):
    """Same length, different major version ('1.9.1' -> '2.9.1', '9.0' -> '8.0')."""
    d = int(v[0])
    return str(d + 1 if d < 9 else d - 1) + v[1:]


def _other_minor(v):
    major, minor, rest = v.split(".", 2) if v.count(".") >= 2 else (*v.split("."), None)
    m = int(minor[0])
    minor = str(m + 1 if m < 9 else m - 1) + minor[1:]
    return ".".join(x for x in (major, minor, rest) if x is not None)


def _other_patch(v):
    head, last = v.rsplit(".", 1)
    d = int(last[-1])
    return head + "." + last[:-1] + str(d + 1 if d < 9 else d - 1)


def _mismatch_warnings(record):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        check_record(record)
    return [x for x in w if issubclass(x.category, VersionMismatchWarning)]


# ------------------------------------------------------------------------------------------------
# the record itself

def test_make_record_contents():
    rec = make_record(frozenset({"sklearn", "pandas", "numpy", "collections", "builtins",
                                 "copyreg", "__main__", "no_such_module_xyz", "fastjoblib"}))
    assert all(type(k) is str and type(v) is str for k, v in rec.items())
    assert rec["fastjoblib.provenance"] == "1"
    assert rec["python"] == "%d.%d.%d" % sys.version_info[:3]
    assert rec["numpy"] == np.__version__
    assert rec["fastjoblib"] == fastjoblib.__version__
    assert rec["byteorder"] == sys.byteorder
    created = datetime.datetime.fromisoformat(rec["created"])
    assert created.utcoffset() == datetime.timedelta(0)
    assert abs(datetime.datetime.now(datetime.timezone.utc) - created) < datetime.timedelta(hours=1)
    assert rec["pkg:sklearn"] == sklearn.__version__
    assert rec["pkg:pandas"] == pd.__version__
    # stdlib, builtins, __main__, unknown modules and the ones with their own key: no pkg entry
    assert sorted(k for k in rec if k.startswith("pkg:")) == ["pkg:pandas", "pkg:sklearn"]
    assert len(pickle.dumps(rec)) < 1024


def test_created_honours_source_date_epoch(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert make_record(())["created"] == "2023-11-14T22:13:20+00:00"
    obj = {"a": [1, 2, 3]}
    assert _dump_bytes(obj) == _dump_bytes(obj)  # reproducible dumps


def test_record_in_file_and_module_set(tmp_path):
    seen = []

    def trailer(mods):
        seen.append(mods)
        return make_record(mods)

    path = _dump_file(str(tmp_path / "m.pkl"), _model(), trailer=trailer)
    (mods,) = seen
    assert type(mods) is frozenset
    assert {"sklearn", "numpy", "pandas", "fractions"} <= mods
    assert all("." not in m for m in mods)
    obj, rec = _joblib_walk(path)
    assert rec == _load_with_record(open(path, "rb").read())[1][0]
    assert rec["pkg:sklearn"] == sklearn.__version__ and rec["numpy"] == np.__version__
    assert isinstance(obj["model"], type(_model()["model"]))


def test_nested_object_array_globals_count():
    # pandas appears only inside the nested stream of an object array
    seen = []
    arr = np.array([pd.Timestamp("2020-01-01"), 1], dtype=object)
    _dump_bytes([arr], trailer=lambda m: seen.append(m) or {})
    assert "pandas" in seen[0]
    out = _load_with_record(_dump_bytes([arr]))[1]
    assert out[0]["pkg:pandas"] == pd.__version__


def test_ext_code_globals_count():
    code = 0x3FF1
    copyreg.add_extension("fractions", "Fraction", code)
    try:
        seen = []
        data = _dump_bytes(fractions.Fraction(1, 3), protocol=2,
                           trailer=lambda m: seen.append(m) or {"k": "v"})
    finally:
        copyreg.remove_extension("fractions", "Fraction", code)
    assert "EXT2" in [op.name for op, _, _ in pickletools.genops(data)]
    assert "fractions" in seen[0]


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_plain_pickle_readers_see_same_object(protocol):
    """A stream without arrays is a plain pickle: stdlib reads it, and the record is popped."""
    obj = {k: v for k, v in corpus().items() if not k.startswith("array_")
           and k not in ("dataframe", "series", "random_forest", "pipeline", "same_array_twice",
                         "getstate", "plain_with_arrays", "dict_of_arrays")}
    try:
        pickle.dumps(obj, protocol)
    except Exception as exc:
        pytest.skip(f"stdlib cannot pickle the subset at protocol {protocol}: {exc!r}")
    with_rec = _dump_bytes(obj, protocol)
    without = _dump_bytes(obj, protocol, trailer=None)
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(with_rec)]
    assert [name for name, _ in ops[-2:]] == ["POP", "STOP"]
    # the record stands alone: no memo traffic between its key and the POP
    start = ops.index(next(o for o in ops if o[1] == "fastjoblib.provenance"))
    assert not [n for n, _ in ops[start:] if "GET" in n or "PUT" in n or n == "MEMOIZE"]
    assert [op.name for op, _, _ in pickletools.genops(without)][-1] == "STOP"
    if protocol < 4:  # no frames: the record is inserted right before STOP, nothing else moves
        assert with_rec.startswith(without[:-1]) and len(with_rec) > len(without)
    u = RecordingPickle(io.BytesIO(with_rec))
    got = u.load()
    assert u.before_stop["fastjoblib.provenance"] == "1"
    for loader in (pickle.loads, fastjoblib.loads, lambda b: _core.load(b, trailer=[])):
        a, b = loader(with_rec), loader(without)
        assert_deep_equal(b, a)
        assert_deep_equal(obj, a)
    assert_deep_equal(obj, got)


@pytest.mark.parametrize("protocol", [3, 5])
@pytest.mark.parametrize("codec", [None, "zlib", "gzip", "lz4", "xz"])
def test_joblib_and_fastjoblib_load_same_object(tmp_path, protocol, codec):
    obj = corpus()
    with_rec = _dump_file(str(tmp_path / "with.pkl"), obj, protocol, codec=codec)
    without = _dump_file(str(tmp_path / "without.pkl"), obj, protocol, trailer=None, codec=codec)
    # stock joblib: same object either way, and it drops the record right before STOP
    a, rec = _joblib_walk(with_rec)
    b, none = _joblib_walk(without)
    assert rec is not None and rec["fastjoblib.provenance"] == "1" and none is None
    assert_deep_equal(b, a)
    assert_deep_equal(joblib.load(without), joblib.load(with_rec))
    assert_deep_equal(obj, a, check_type=False, native_ok=True)
    # fastjoblib's core, through an fd
    with open(with_rec, "rb") as f:
        a, out = _load_with_record(f.fileno(), codec=codec)
    with open(without, "rb") as f:
        b, out2 = _load_with_record(f.fileno(), codec=codec)
    assert out == [rec] and out2 == []
    assert_deep_equal(b, a)
    assert_deep_equal(obj, a, native_ok=True)


def test_mmap_load_keeps_record(tmp_path):
    obj = {"w": np.arange(10_000.0), "m": _model()["model"]}
    path = _dump_file(str(tmp_path / "m.pkl"), obj)
    with open(path, "rb") as f:
        got, out = _load_with_record(f.fileno(), mmap_mode="r", filename=path)
    assert isinstance(got["w"], np.memmap)
    np.testing.assert_array_equal(got["w"], obj["w"])
    assert out[0]["pkg:sklearn"] == sklearn.__version__


# ------------------------------------------------------------------------------------------------
# C hooks

def test_trailer_type_errors():
    for bad in (lambda m: None, lambda m: ["x"], lambda m: {"a": 1}, lambda m: {1: "a"},
                lambda m: {"a": type("S", (str,), {})("x")}):
        with pytest.raises(TypeError, match="trailer must return a dict of str -> str"):
            _dump_bytes([1], trailer=bad)
    with pytest.raises(TypeError, match="callable"):
        _dump_bytes([1], trailer=42)
    with pytest.raises(ZeroDivisionError):
        _dump_bytes([1], trailer=lambda m: 1 / 0)
    with pytest.raises(TypeError, match="list"):
        _core.load(_dump_bytes([1]), trailer=())


@pytest.mark.parametrize("stream, expected, collected", [
    (b"\x80\x02N}0.", None, [{}]),              # POP right before STOP
    (b"\x80\x02N}0]0.", None, [[]]),            # the last POP counts
    (b"\x80\x02}0N.", None, []),                # POP not followed by STOP
    (b"\x80\x02N}0\x88.", True, []),
    (b"\x80\x02N(N0}1.", None, []),             # POP inside a mark, then POP_MARK
    (b"\x80\x02N(0.", None, []),                # POP dropping a MARK right before STOP
    (b"\x80\x02N.", None, []),
])
def test_only_pop_right_before_stop_is_collected(stream, expected, collected):
    out = []
    assert _core.load(stream, trailer=out) == expected
    assert out == collected
    assert pickle.loads(stream) == expected


def test_nested_stream_pop_is_not_collected():
    # an object array's nested stream is a complete pickle; a POP+STOP inside it is not the
    # outermost stream's (only our own writer's record at the very end counts)
    arr = np.array([{"a": 1}, 2], dtype=object)
    data = _dump_bytes(arr, trailer=None)
    nested = pickle.dumps(arr, 5)
    i = data.index(nested[:-1])  # the nested stream starts with PROTO 5 ... ends with STOP
    doctored = data[:i] + nested[:-1] + b"N0." + data[i + len(nested):]
    # the nested stream now ends "... N POP STOP": still the array, nothing collected
    got, out = _load_with_record(doctored)
    assert out == []
    assert_deep_equal(arr, got)


def test_no_record_without_trailer(tmp_path):
    data = _dump_bytes(_model(), trailer=None)
    assert b"fastjoblib.provenance" not in data
    assert _load_with_record(data)[1] == []
    path = _dump_file(str(tmp_path / "n.pkl"), _model(), trailer=None)
    assert _joblib_walk(path)[1] is None


# ------------------------------------------------------------------------------------------------
# version checks

@pytest.mark.parametrize("protocol", [0, 3, 5])
@pytest.mark.parametrize("package, key, version", [
    ("sklearn", "pkg:sklearn", sklearn.__version__),
    ("numpy", "numpy", np.__version__),
    ("python", "python", "%d.%d.%d" % sys.version_info[:3]),
])
def test_doctored_version_warns(package, key, version, protocol):
    data = _dump_bytes(_model(), protocol)
    _, out = _load_with_record(data)
    assert _mismatch_warnings(out[0]) == []
    for doctored_version, warns in ((_other_major(version), True), (_other_minor(version), True),
                                    (_other_patch(version), False)):
        doctored = _doctor(data, version, doctored_version)
        with warnings.catch_warnings(record=True) as during_load:
            warnings.simplefilter("always")
            got, out = _load_with_record(doctored)
        # only the record changed (its strings stand alone: no memo shared with the object)
        assert not [x for x in during_load if "InconsistentVersion" in x.category.__name__]
        assert out[0][key] == doctored_version
        assert isinstance(got["model"], type(_model()["model"]))
        w = _mismatch_warnings(out[0])
        if not warns:
            assert w == []
            continue
        assert len(w) == 1, [str(x.message) for x in w]
        msg = str(w[0].message)
        assert package in msg and doctored_version in msg and version in msg
        assert (w[0].message.package, w[0].message.recorded, w[0].message.installed) == (
            package, doctored_version, version)


@pytest.mark.parametrize("codec, compress", [("zlib", zlib.compress), ("gzip", gzip.compress)])
def test_doctored_version_compressed(tmp_path, codec, compress):
    data = _dump_bytes(_model(), codec=codec)
    plain = zlib.decompress(data, 47)  # zlib or gzip header
    doctored = compress(_doctor(plain, sklearn.__version__, _other_major(sklearn.__version__)))
    path = tmp_path / "d.pkl"
    path.write_bytes(doctored)
    with open(path, "rb") as f:
        _, out = _load_with_record(f.fileno(), codec=codec)
    w = _mismatch_warnings(out[0])
    assert [x.message.package for x in w] == ["sklearn"]
    assert _joblib_walk(str(path))[1] == out[0]


def test_check_record_ignores_non_records_and_unknowns():
    for junk in (None, 1, [], {"a": "b"}, {"fastjoblib.provenance": 1},
                 {"fastjoblib.provenance": "1", "numpy": 2},
                 {"fastjoblib.provenance": "1", "pkg:sklearn": "not a version"},
                 {"fastjoblib.provenance": "1", "pkg:no_such_module_xyz": "0.1.0"},
                 {"fastjoblib.provenance": "1", "fastjoblib": "99.0"}):
        assert _mismatch_warnings(junk) == []


def test_check_record_never_imports(tmp_path, monkeypatch):
    (tmp_path / "fj_prov_side_effect.py").write_text(
        "import os\nopen(os.environ['FJ_PROV_FLAG'], 'w').close()\n__version__ = '1.0'\n")
    flag = tmp_path / "imported"
    monkeypatch.setenv("FJ_PROV_FLAG", str(flag))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _mismatch_warnings({"fastjoblib.provenance": "1",
                               "pkg:fj_prov_side_effect": "9.9"}) == []
    assert "fj_prov_side_effect" not in sys.modules and not flag.exists()


def test_installed_version_prefers_module_then_metadata():
    assert _provenance.installed_version("sklearn") == sklearn.__version__
    # joblib is imported and has __version__; metadata agrees
    assert _provenance.installed_version("joblib") == joblib.__version__
    assert _provenance.installed_version("no_such_module_xyz") is None


# ------------------------------------------------------------------------------------------------
# public API (needs the _persist.py patch)

@needs_public
@pytest.mark.parametrize("compress", [0, 3, ("gzip", 3)])
def test_public_dump_load(tmp_path, compress):
    obj = _model()
    p1, p2 = str(tmp_path / "a.pkl"), str(tmp_path / "b.pkl")
    fastjoblib.dump(obj, p1, compress=compress)
    fastjoblib.dump(obj, p2, compress=compress, provenance=False)
    assert _joblib_walk(p1)[1]["pkg:sklearn"] == sklearn.__version__
    assert _joblib_walk(p2)[1] is None
    with warnings.catch_warnings():
        warnings.simplefilter("error", VersionMismatchWarning)
        a, b = fastjoblib.load(p1), fastjoblib.load(p2)
    assert_deep_equal(b, a)
    assert_deep_equal(joblib.load(p2), joblib.load(p1))
    assert fastjoblib.VersionMismatchWarning is VersionMismatchWarning


@needs_public
def test_public_load_warns(tmp_path):
    p = str(tmp_path / "a.pkl")
    fastjoblib.dump(_model(), p)
    data = open(p, "rb").read()
    open(p, "wb").write(_doctor(data, np.__version__, _other_major(np.__version__)))
    with pytest.warns(VersionMismatchWarning, match="numpy") as rec:
        fastjoblib.load(p)
    assert [w.filename for w in rec if w.category is VersionMismatchWarning] == [__file__]


def test_inspect_shows_record(tmp_path):
    _inspect = pytest.importorskip("fastjoblib._inspect")
    path = _dump_file(str(tmp_path / "i.pkl"), _model(), codec="zlib")
    report = _inspect.inspect(path)
    if "provenance" not in report:
        pytest.skip("fastjoblib._inspect has no provenance key yet (the _inspect.py patch of the "
                    "provenance part is not merged)")
    with open(path, "rb") as f:
        assert [report["provenance"]] == _load_with_record(f.fileno(), codec="zlib")[1]
    assert _inspect.inspect(_dump_bytes(_model(), trailer=None))["provenance"] is None


# ------------------------------------------------------------------------------------------------
# odd __version__ values never fail a dump (issue 13: torch.__version__ is a str subclass)

class _StrSubclass(str):
    def __str__(self):  # never called: the record copies the characters without str()
        raise RuntimeError("__str__ called")


class _VersionObject:  # like packaging.version.Version: not a str, str() gives the text
    def __str__(self):
        return "3.4.5"


class _RaisingModule(type(sys)):
    @property
    def __version__(self):
        raise RuntimeError("lazy attribute failed")


def _fake_module(monkeypatch, name, version=None, raising=False):
    mod = _RaisingModule(name) if raising else type(sys)(name)
    if not raising:
        mod.__version__ = version
    monkeypatch.setitem(sys.modules, name, mod)
    return mod


@pytest.mark.parametrize("version, expected", [
    (_StrSubclass("1.2.3+cpu"), "1.2.3+cpu"),
    (_VersionObject(), "3.4.5"),
    (object(), "unknown"),            # str() is not a version
    ((1, 2), "unknown"),              # neither is a tuple's
    ("x" * 200, "unknown"),           # too long
    ("1.0\n2", "unknown"),            # not printable
])
def test_odd_version_values_become_plain_str(monkeypatch, version, expected):
    _fake_module(monkeypatch, "fj_prov_odd_pkg", version)
    rec = make_record(frozenset({"fj_prov_odd_pkg"}))
    assert rec["pkg:fj_prov_odd_pkg"] == expected
    assert type(rec["pkg:fj_prov_odd_pkg"]) is str
    assert all(type(k) is str and type(v) is str for k, v in rec.items())


def test_raising_version_recorded_as_unknown(monkeypatch, tmp_path):
    _fake_module(monkeypatch, "fj_prov_raising_pkg", raising=True)
    assert _provenance.installed_version("fj_prov_raising_pkg") == "unknown"
    rec = make_record(frozenset({"fj_prov_raising_pkg"}))
    assert rec["pkg:fj_prov_raising_pkg"] == "unknown"


def test_missing_version_without_metadata_not_recorded(monkeypatch):
    _fake_module(monkeypatch, "fj_prov_plain_mod", None)
    assert "pkg:fj_prov_plain_mod" not in make_record(frozenset({"fj_prov_plain_mod"}))


def test_odd_numpy_and_fastjoblib_versions(monkeypatch):
    monkeypatch.setattr(np, "__version__", _StrSubclass(np.__version__))
    monkeypatch.setattr(fastjoblib, "__version__", object())
    rec = make_record(frozenset())
    assert type(rec["numpy"]) is str and rec["numpy"] == str.__str__(np.__version__)
    assert rec["fastjoblib"] == "unknown"


class _OddVersionClass:  # a global from a module whose __version__ is a str subclass
    pass


@needs_public
@pytest.mark.parametrize("raising", [False, True])
def test_public_dump_with_odd_versions(tmp_path, monkeypatch, raising):
    # the object's class lives in a module whose __version__ is a str subclass / raises
    mod = _fake_module(monkeypatch, "fj_prov_dump_pkg", _StrSubclass("7.1"), raising=raising)
    monkeypatch.setattr(_OddVersionClass, "__module__", "fj_prov_dump_pkg")
    mod._OddVersionClass = _OddVersionClass
    path = str(tmp_path / "odd.pkl")
    fastjoblib.dump({"x": _OddVersionClass, "a": np.arange(3)}, path)
    _, rec = _joblib_walk(path)
    assert rec["pkg:fj_prov_dump_pkg"] == ("unknown" if raising else "7.1")
    assert fastjoblib.load(path)["x"] is _OddVersionClass


@needs_public
def test_public_dump_with_torch(tmp_path):
    torch = pytest.importorskip("torch", reason="torch not installed (pip install '.[torch]')")
    assert type(torch.__version__) is not str  # the case of issue 13
    path = str(tmp_path / "t.pkl")
    fastjoblib.dump({"t": torch.arange(4.0), "m": torch.nn.Linear(2, 3)}, path)
    _, rec = _joblib_walk(path)
    assert type(rec["pkg:torch"]) is str and rec["pkg:torch"] == str.__str__(torch.__version__)
    out = fastjoblib.load(path)
    assert torch.equal(out["t"], torch.arange(4.0))
