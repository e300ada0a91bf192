"""trusted=True and pandas string columns backed by pyarrow (pandas.arrays.ArrowStringArray).

The pyarrow callables such a pickle names (type_for_alias, py_buffer, _restore_array) resolve to
stand-ins (fastjoblib._trust._arrow_shims) that check every number and buffer before pyarrow
reads anything and fully validate the array; _guard checks the ArrowStringArray's state.
Hostile streams run in a child process (tests/test_trust_attacks.run_child): a crash fails the
test instead of killing the run.
"""
import copyreg
import os
import pickle
import struct

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")
joblib = pytest.importorskip("joblib")

import fastjoblib  # noqa: E402
from fastjoblib._trust import DEFAULT_TRUSTED, UntrustedGlobalError  # noqa: E402
from test_trust_attacks import assert_refused, run_child  # noqa: E402


def _string_array(values, arrow_type, na=np.nan):
    """An ArrowStringArray over `arrow_type` as is: pandas 3 converts to large_string when it
    builds one, but pickles from pandas 2 hold 'string' arrays, and __setstate__ keeps them."""
    arr = pd.arrays.ArrowStringArray.__new__(pd.arrays.ArrowStringArray)
    arr.__setstate__({"_pa_array": pa.array(values, arrow_type),
                      "_dtype": pd.StringDtype("pyarrow", na_value=na)})
    return arr


def _frames():
    big = ["row%d-é" % i if i % 7 else None for i in range(5000)]
    out = {
        "series-default": pd.Series(["x", "y", None]),
        "series-na": pd.Series(["x", None, "z"], dtype=pd.StringDtype("pyarrow")),
        "series-no-nulls": pd.Series(["a", "bb", "ccc"], dtype="str"),
        "series-empty": pd.Series([], dtype="str"),
        "series-all-null": pd.Series([None, None], dtype="str"),
        "series-sliced": pd.Series(["x", "y", None, "zz"])[1:],
        "index": pd.Index(["a", "b", "c"], name="k"),
        "frame": pd.DataFrame({"a": ["p", "q", "é"], "b": [1, 2, 3], "c": ["u", None, "w"]},
                              index=pd.Index(["r", "s", "t"])),
        "frame-big": pd.DataFrame({"s": big, "n": np.arange(5000)}),
    }
    for t in ("string", "large_string"):
        for na in (np.nan, pd.NA):
            arr = _string_array(["a", None, "ccc", ""], getattr(pa, t)(), na)
            assert str(arr._pa_array.type) == t
            out[f"array-{t}-{'nan' if na is np.nan else 'NA'}"] = arr
            out[f"series-{t}-{'nan' if na is np.nan else 'NA'}"] = pd.Series(arr)
    return out


FRAMES = _frames()


def _same(a, b):
    assert type(a) is type(b)
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b)
    elif isinstance(a, pd.Series):
        pd.testing.assert_series_equal(a, b)
    elif isinstance(a, pd.Index):
        pd.testing.assert_index_equal(a, b)
    else:
        pd.testing.assert_extension_array_equal(a, b)
    for x, y in ((a, b),) if not isinstance(a, pd.DataFrame) else zip(
            [a[c] for c in a], [b[c] for c in b]):
        arr_x = getattr(x, "array", x)
        arr_y = getattr(y, "array", y)
        if isinstance(arr_x, pd.arrays.ArrowStringArray):
            assert isinstance(arr_y, pd.arrays.ArrowStringArray)
            assert arr_x._pa_array.type == arr_y._pa_array.type
            assert arr_x.dtype == arr_y.dtype


def test_default_set_names_only_the_string_path():
    arrow = sorted(n for n in DEFAULT_TRUSTED if "arrow" in n.lower())
    assert arrow == ["pandas.arrays.ArrowStringArray", "pyarrow.lib._restore_array",
                     "pyarrow.lib.py_buffer", "pyarrow.lib.type_for_alias"]
    from fastjoblib._trust import make_find_class
    fc = make_find_class(True)
    for n in ("_restore_array", "py_buffer", "type_for_alias"):
        got = fc("pyarrow.lib", n)
        assert got is not getattr(pa.lib, n) and got.__qualname__.startswith("restricted_")


@pytest.mark.parametrize("name", sorted(FRAMES))
@pytest.mark.parametrize("proto", [2, 3, 4, 5])
def test_string_columns_load_trusted(name, proto):
    obj = FRAMES[name]
    _same(obj, fastjoblib.loads(pickle.dumps(obj, proto), trusted=True))


@pytest.mark.parametrize("name", ["series-default", "index", "frame", "frame-big",
                                  "series-string-NA", "array-large_string-nan"])
def test_joblib_files_both_directions(name, tmp_path):
    obj = FRAMES[name]
    theirs, ours = str(tmp_path / "j.joblib"), str(tmp_path / "f.joblib")
    joblib.dump(obj, theirs)
    _same(obj, fastjoblib.load(theirs, trusted=True))
    fastjoblib.dump(obj, ours)
    _same(obj, joblib.load(ours))
    _same(obj, fastjoblib.load(ours, trusted=True))
    joblib.dump(obj, theirs, compress=3)
    _same(obj, fastjoblib.load(theirs, trusted=True))


def test_loaded_arrays_are_independent_of_the_input():
    data = bytearray(pickle.dumps(FRAMES["series-default"], 5))
    got = fastjoblib.loads(data, trusted=True)
    data[:] = b"\0" * len(data)
    assert list(got.fillna("-")) == ["x", "y", "-"]


def test_string_buffers_are_charged_to_the_budget():
    s = pd.Series(["x" * 1000] * 20000)  # 20 MB of values
    data = pickle.dumps(s, 5)
    with pytest.raises(MemoryError):
        fastjoblib.loads(data, trusted=True, max_bytes=len(data) + (8 << 20))
    _same(s, fastjoblib.loads(data, trusted=True))


def test_other_pyarrow_dtypes_are_refused_clearly():
    for obj in (pd.Series([1, 2], dtype="int64[pyarrow]"),
                pd.Series(["a", "b"], dtype=pd.ArrowDtype(pa.string()))):
        with pytest.raises(UntrustedGlobalError, match="ArrowExtensionArray|ArrowDtype"):
            fastjoblib.loads(pickle.dumps(obj, 5), trusted=True)
    # a caller who lists the pyarrow-dtype names gets a clear refusal from the state check
    obj = pd.Series([1, 2], dtype="int64[pyarrow]")
    with pytest.raises(Exception, match="only pyarrow-backed string arrays|type_for_alias"):
        fastjoblib.loads(pickle.dumps(obj, 5), trusted=["pandas.arrays.ArrowExtensionArray",
                                                        "pandas.ArrowDtype"])


# ------------------------------------------------------------------------------------------------
# Hostile streams, written with the real pickler from objects that reduce to the pyarrow names.

class _Call:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


class _NewObj:
    def __init__(self, cls, state):
        self.cls, self.state = cls, state

    @property
    def __class__(self):  # the pickler checks NEWOBJ's class against obj.__class__
        return self.cls

    def __reduce__(self):
        return copyreg.__newobj__, (self.cls,), self.state


def buf(data):
    return _Call(pa.lib.py_buffer, bytes(data))


def typ(alias="string"):
    return _Call(pa.lib.type_for_alias, alias)


def offs(*values, width=4):
    return buf(struct.pack(f"<{len(values)}{'i' if width == 4 else 'q'}", *values))


def raw(length, null_count, offset, buffers, t=None, children=(), dictionary=None):
    return _Call(pa.lib._restore_array, (typ() if t is None else t, length, null_count, offset,
                                         list(buffers), list(children), dictionary))


def asa(arr, dtype=None, **extra):
    state = {"_pa_array": arr,
             "_dtype": pd.StringDtype("pyarrow") if dtype is None else dtype, "_cache": {}}
    state.update(extra)
    return _NewObj(pd.arrays.ArrowStringArray, state)


def P(obj, proto=4):
    return pickle.dumps(obj, proto)


def _good():
    return raw(2, 0, 0, [None, offs(0, 1, 2), buf(b"ab")])


def test_hand_written_good_streams_load():
    # the assembler itself produces loadable streams: the refusals below are about the edits
    for proto in (2, 4, 5):
        got = fastjoblib.loads(P(asa(_good()), proto), trusted=True)
        assert list(got) == ["a", "b"]
    got = fastjoblib.loads(P(asa(raw(3, -1, 1, [buf(b"\x0b"), offs(0, 0, 1, 1, 3), buf(b"xyz")]))),
                           trusted=True)  # null_count -1 is computed; offset 1 is honoured
    assert list(got.fillna("-")) == ["x", "-", "yz"]
    got = fastjoblib.loads(P(asa(raw(2, 0, 0, [None, offs(0, 1, 2, width=8), buf(b"ab")],
                                     t=typ("large_string")))), trusted=True)
    assert str(got._pa_array.type) == "large_string"


_HOSTILE_ARRAYS = {
    "offsets-past-values": raw(2, 0, 0, [None, offs(0, 1, 100), buf(b"ab")]),
    "offsets-huge": raw(1, 0, 0, [None, offs(0, 2**31 - 1), buf(b"ab")]),
    "offsets-negative-start": raw(1, 0, 0, [None, offs(-5, 1), buf(b"ab")]),
    "offsets-decreasing": raw(2, 0, 0, [None, offs(0, 2, 1), buf(b"ab")]),
    "offsets-buffer-short": raw(5, 0, 0, [None, offs(0, 1), buf(b"ab")]),
    "offsets-missing": raw(1, 0, 0, [None, None, buf(b"ab")]),
    "large-offsets-as-32bit": raw(2, 0, 0, [None, offs(0, 1, 2), buf(b"ab")],
                                  t=typ("large_string")),
    "slice-offset-past-end": raw(1, 0, 3, [None, offs(0, 1, 2), buf(b"ab")]),
    "length-negative": raw(-1, 0, 0, [None, offs(0, 1, 2), buf(b"ab")]),
    "length-huge": raw(2**40, 0, 0, [None, offs(0, 1, 2), buf(b"ab")]),
    "length-beyond-int64": raw(2**63, 0, 0, [None, offs(0, 1, 2), buf(b"ab")]),
    "length-float": raw(2.0, 0, 0, [None, offs(0, 1, 2), buf(b"ab")]),
    "offset-negative": raw(1, 0, -1, [None, offs(0, 1, 2), buf(b"ab")]),
    "null-count-low": raw(2, 0, 0, [buf(b"\x01"), offs(0, 1, 2), buf(b"ab")]),
    "null-count-high": raw(2, 2, 0, [buf(b"\x01"), offs(0, 1, 2), buf(b"ab")]),
    "null-count-without-bitmap": raw(2, 1, 0, [None, offs(0, 1, 2), buf(b"ab")]),
    "null-count-below-minus-one": raw(2, -2, 0, [None, offs(0, 1, 2), buf(b"ab")]),
    "bitmap-too-short": raw(20, -1, 0, [buf(b"\xff"), offs(*range(21)), buf(b"a" * 20)]),
    "bitmap-empty": raw(2, -1, 0, [buf(b""), offs(0, 1, 2), buf(b"ab")]),
    "utf8-invalid": raw(2, 0, 0, [None, offs(0, 1, 2), buf(b"a\xff")]),
    "utf8-split-multibyte": raw(2, 0, 0, [None, offs(0, 1, 2), buf("é".encode())]),
    "utf8-overlong": raw(1, 0, 0, [None, offs(0, 2), buf(b"\xc0\xaf")]),
    "utf8-surrogate": raw(1, 0, 0, [None, offs(0, 3), buf(b"\xed\xa0\x80")]),
    "buffer-is-bytes": raw(2, 0, 0, [None, struct.pack("<3i", 0, 1, 2), buf(b"ab")]),
    "buffer-from-ndarray": raw(2, 0, 0, [None, _Call(pa.lib.py_buffer, np.array([0, 1, 2], "<i4")),
                                         buf(b"ab")]),
    "buffer-from-str": raw(1, 0, 0, [None, offs(0, 1), _Call(pa.lib.py_buffer, "a")]),
    "buffer-from-int": raw(1, 0, 0, [None, offs(0, 1), _Call(pa.lib.py_buffer, 10**9)]),
    "four-buffers": raw(2, 0, 0, [None, offs(0, 1, 2), buf(b"ab"), buf(b"")]),
    "two-buffers": raw(2, 0, 0, [None, offs(0, 1, 2)]),
    "children": raw(2, 0, 0, [None, offs(0, 1, 2), buf(b"ab")], children=[_good()]),
    "dictionary": raw(2, 0, 0, [None, offs(0, 1, 2), buf(b"ab")], dictionary=_good()),
    "type-int64": raw(2, 0, 0, [None, offs(0, 1, 2), buf(b"ab")], t=typ("int64")),
    "type-binary": raw(2, 0, 0, [None, offs(0, 1, 2), buf(b"ab")], t=typ("binary")),
    "type-utf8-alias": raw(2, 0, 0, [None, offs(0, 1, 2), buf(b"ab")], t=typ("utf8")),
    "type-not-from-stand-in": raw(2, 0, 0, [None, offs(0, 1, 2), buf(b"ab")], t="string"),
    "description-short": _Call(pa.lib._restore_array, (typ(), 2, 0, 0, [])),
    "description-list": _Call(pa.lib._restore_array, [typ(), 2, 0, 0, [], [], None]),
}


def test_hostile_arrow_arrays_are_refused():
    cases = {}
    for name, arr in _HOSTILE_ARRAYS.items():
        cases[name] = ("loads", P(asa(arr)), {"trusted": True})
        cases[name + "-bare"] = ("loads", P(arr), {"trusted": True})
        cases[name + "-in-series"] = ("loads", P(_Call(pd.Series, asa(arr))), {"trusted": True})
    res = run_child(cases)
    assert_refused(res, "pyarrow.lib.", "refused")
    # each refusal names the check that caught it
    assert "offsets" in res["offsets-past-values"][0]
    assert "null_count" in res["null-count-low"][0]
    assert "validity bitmap" in res["bitmap-too-short"][0]
    assert "UTF8" in res["utf8-invalid"][0] and "UTF8" in res["utf8-split-multibyte"][0]
    assert "py_buffer stand-in" in res["buffer-is-bytes"][0]
    assert "only bytes or bytearray" in res["buffer-from-ndarray"][0]
    assert "string types" in res["type-int64"][0]


def _edit(data, old, new):
    assert data.count(old) >= 1 and len(old) == len(new)
    return data.replace(old, new)


def test_edited_real_frames_are_refused():
    frame = pd.DataFrame({"a": ["p\u00e9q", "rs"], "n": [1, 2]})
    cases = {}
    for proto in (4, 5):
        data = P(frame, proto)
        cases[f"utf8-{proto}"] = ("loads", _edit(data, "p\u00e9q".encode(), b"p\xff\xfeq"),
                                  {"trusted": True})
        # last offset (6 = len("péq" + "rs")) made to point past the values buffer
        cases[f"offset-{proto}"] = ("loads", _edit(data, struct.pack("<3q", 0, 4, 6),
                                                   struct.pack("<3q", 0, 4, 4000)),
                                    {"trusted": True})
        cases[f"alias-{proto}"] = ("loads", _edit(data, b"\x0clarge_string", b"\x0clarge_binary"),
                                   {"trusted": True})
    assert_refused(run_child(cases), "pyarrow.lib.")


def test_hostile_string_array_states_are_refused():
    ok = _good()
    cases = {
        "extra-key": asa(ok, extra=1),
        "dunder-key": asa(ok, __class__=dict),
        "dunder-dict": asa(ok, __dict__={}),
        "legacy-_data": _NewObj(pd.arrays.ArrowStringArray,
                                {"_data": ok, "_dtype": pd.StringDtype("pyarrow")}),
        "missing-dtype": _NewObj(pd.arrays.ArrowStringArray, {"_pa_array": ok}),
        "missing-array": _NewObj(pd.arrays.ArrowStringArray,
                                 {"_dtype": pd.StringDtype("pyarrow")}),
        "readonly-not-bool": asa(ok, _readonly=[1]),
        "python-storage": asa(ok, dtype=pd.StringDtype("python")),
        "other-dtype": asa(ok, dtype=pd.Int64Dtype()),
        "array-is-list": asa(["a", "b"]),
        "array-is-str": asa("ab"),
        "array-is-buffer": asa(buf(b"ab")),
        "array-is-ndarray": asa(np.array(["a"], dtype=object)),
        "state-is-tuple": _NewObj(pd.arrays.ArrowStringArray,
                                  ({"_pa_array": ok, "_dtype": pd.StringDtype("pyarrow")}, None)),
        "no-state-used": _Call(pd.Series, _NewObj(pd.arrays.ArrowStringArray, None)),
        "call-with-list": _Call(pd.arrays.ArrowStringArray, ["a", "b"]),
    }
    res = run_child({k: ("loads", P(v), {"trusted": True}) for k, v in cases.items()})
    assert_refused(res, "ArrowStringArray", "refused", "Error")
    for k in ("extra-key", "dunder-key", "legacy-_data", "missing-dtype", "python-storage",
              "array-is-list", "array-is-buffer"):
        assert "refused ArrowStringArray state" in res[k][0], (k, res[k])


def _build(target_ops, state_obj):
    """A stream that BUILDs the state of a real ArrowStringArray pickle onto `target_ops`."""
    body = pickle.dumps(state_obj, 4)
    assert body.startswith(b"\x80\x04\x95")
    inner = body[11:-1]  # unframed stream without PROTO/FRAME/STOP
    return b"\x80\x04" + target_ops + inner + b"b."


def test_string_array_state_on_objects_not_made_by_the_load_is_refused():
    state = {"_pa_array": _good(), "_dtype": pd.StringDtype("pyarrow"), "_cache": {}}

    def g(m, n):
        return b"\x8c" + bytes([len(m)]) + m.encode() + b"\x8c" + bytes([len(n)]) + n.encode() \
            + b"\x93"
    cases = {
        "on-the-class": _build(g("pandas.arrays", "ArrowStringArray"), state),
        "on-pandas-NA": _build(g("pandas", "NA"), state),
        "on-a-stand-in": _build(g("pyarrow.lib", "py_buffer"), state),
        "on-a-buffer": _build(g("pyarrow.lib", "py_buffer") + b"C\x02ab\x85R", state),
    }
    res = run_child({k: ("loads", v, {"trusted": True}) for k, v in cases.items()})
    assert_refused(res, "BUILD", "refused", "Error")
    assert "BUILD" in res["on-the-class"][0] and "BUILD" in res["on-pandas-NA"][0]
    import pandas
    assert not hasattr(pandas.arrays.ArrowStringArray, "_pa_array") or not isinstance(
        pandas.arrays.ArrowStringArray.__dict__.get("_pa_array"), pa.Array)


def test_no_file_access_from_arrow_names(tmp_path):
    # pyarrow's own file readers are not reachable: only the three stand-ins are trusted
    path = str(tmp_path / "x.arrow")
    with open(path, "wb") as f:
        f.write(b"ARROW1")
    for fn in (pa.memory_map, pa.OSFile, pa.input_stream):
        with pytest.raises(UntrustedGlobalError):
            fastjoblib.loads(P(_Call(fn, path)), trusted=True)
    assert os.path.getsize(path) == 6


def test_inspect_needs_nothing_for_string_frames(tmp_path):
    path = str(tmp_path / "f.joblib")
    joblib.dump(FRAMES["frame"], path)
    report = fastjoblib.inspect(path)
    assert report["needs_trusted"] == [] and report["dangerous"] == []
    with pytest.raises(UntrustedGlobalError, match="ArrowExtensionArray"):
        joblib.dump(pd.Series([1, 2], dtype="int64[pyarrow]"), path)
        fastjoblib.load(path, trusted=True)
    assert "pandas.arrays.ArrowExtensionArray" in fastjoblib.inspect(path)["needs_trusted"]
