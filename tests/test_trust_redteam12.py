"""Session 12's `trusted=` checks.

* An IntervalArray's BUILD state (its left and right ends, set without pandas' own checks) must
  hold ends of one length and kind that match its dtype. Round 11d made one whose ends differ in
  length: each use it tried raised, none crashed, but pandas' interval code indexes one end by
  the other's positions.
* A MultiIndex given shorter ``_levels`` by a BUILD passed the check after it, which read the
  levels pandas had cached when the index was made.

Red-team round 12 (given docs/SECURITY.md's claims and an interpreter, not these tests) found:

* a crash (193 bytes): a Categorical made without its data as the ``data`` of a ``UserList`` or
  ``UserDict`` through BUILD (only pandas' and NumPy's BUILD states were searched for such
  objects), then ``bool(U)``, ``list(U)`` or ``Series(U)``;
* memory past the budget with the torch names listed: ``Tensor.set_`` of an empty
  ``new_empty`` storage to 900 MiB (torch grows the storage; 354 bytes);
* a 1 MiB bz2 file of 150 MiB that took 2 s to decode (bz2 decodes at 45-120 MB/s, not the
  250-400 MB/s the compressed budget assumed);
* a false refusal: NumPy text arrays pickled at protocols 0-4 (the stdlib's and fastjoblib's
  default), checked as if their dtype's flags said "pickled as a list" (0x08 is
  NPY_NEEDS_INIT, which every 'U' dtype has; NPY_LIST_PICKLE is 0x02).
"""
import os
import pickle
import pickletools

import numpy as np
import pytest

import fastjoblib
from fastjoblib._guard import default_max_bytes
from test_trust_attacks import assert_refused, run_child
from test_trust_keys import get, glob, put

pd = pytest.importorskip("pandas")


def _interval(left, right, dtype=None):
    a = pd.arrays.IntervalArray.from_breaks([0, 1, 2])
    a._left, a._right = left, right
    if dtype is not None:
        a._dtype = dtype
    return a


LEGIT = {
    "int": lambda: pd.arrays.IntervalArray.from_breaks([0, 1, 2]),
    "float closed both": lambda: pd.arrays.IntervalArray.from_breaks([0.0, 1, 2.5], closed="both"),
    "datetime": lambda: pd.arrays.IntervalArray.from_breaks(pd.date_range("2020", periods=4)),
    "datetime tz": lambda: pd.arrays.IntervalArray.from_breaks(
        pd.date_range("2020", periods=4, tz="UTC")),
    "timedelta": lambda: pd.arrays.IntervalArray.from_breaks(pd.timedelta_range(0, periods=3)),
    "uint64 index": lambda: pd.IntervalIndex.from_breaks(np.arange(5, dtype=np.uint64)),
    "missing": lambda: pd.Series(pd.arrays.IntervalArray.from_tuples([(0, 1), None, (2, 3)])),
    "frame": lambda: pd.DataFrame({"i": pd.interval_range(0, 4)}),
    "cut": lambda: pd.cut(np.arange(10), 3),
    "empty": lambda: pd.arrays.IntervalArray([], dtype="interval[int64, right]"),
}


@pytest.mark.parametrize("proto", [2, 5])
@pytest.mark.parametrize("name", sorted(LEGIT))
def test_real_interval_objects_load(name, proto):
    obj = LEGIT[name]()
    got = fastjoblib.loads(pickle.dumps(obj, protocol=proto), trusted=True)
    assert type(got) is type(obj)
    assert str(got) == str(obj)


HOSTILE = {
    "ends of different lengths": (
        lambda: _interval(np.arange(3), np.arange(1, 1001)), "different lengths"),
    "ends of different kinds": (
        lambda: _interval(np.arange(2), np.arange(1.0, 3.0)), "different types"),
    "2-D ends": (lambda: _interval(np.zeros((2, 2), np.int64), np.ones((2, 2), np.int64)), "1-D"),
    "object ends": (
        lambda: _interval(np.array([0, 1], object), np.array([1, 2], object)),
        "numbers or datetime-like"),
    "a dtype of another subtype": (
        lambda: _interval(np.arange(2), np.arange(1, 3), pd.IntervalDtype("float64")),
        "IntervalDtype of the ends"),
    "a list for an end": (lambda: _interval([0, 1], np.arange(1, 3)), "NumPy or datetime-like"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_inconsistent_interval_states_are_refused(name):
    make, why = HOSTILE[name]
    data = pickle.dumps(make(), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match=why):
        fastjoblib.loads(data, trusted=True)


def _mi_build(state):
    """A real MultiIndex's pickle (_new_Index), then a BUILD of `state` on it."""
    mi = pd.MultiIndex.from_arrays([np.arange(1000), np.arange(1000)])
    return pickle.dumps(mi, protocol=2)[:-1] + pickle.dumps(state, protocol=2)[2:-1] + b"b."


@pytest.mark.parametrize("state, why", [
    # shorter levels: the check after the BUILD read the levels pandas had cached before it
    # (which still fitted the codes); pandas' own code derives them again from _levels
    ({"_levels": [pd.Index([1]), pd.Index([2])]}, "codes outside"),
    ({"_levels": [pd.Index(np.arange(1000))]}, "as many code arrays and names as levels"),
    ({"_names": [None]}, "as many code arrays and names as levels"),
    ({"_codes": [np.array([5000] * 1000, np.int16), np.arange(1000)]}, "codes outside"),
])
def test_multiindex_build_is_checked_against_what_pandas_derives(state, why):
    with pytest.raises(pickle.UnpicklingError, match=why):
        fastjoblib.loads(_mi_build(state), trusted=True)


def test_a_build_drops_what_pandas_cached():
    # a BUILD that keeps the MultiIndex consistent loads, and pandas then reads the new levels,
    # not those it cached when the index was made
    new = [pd.Index(np.arange(1000) * 2), pd.Index(np.arange(1000) * 3)]
    got = fastjoblib.loads(_mi_build({"_levels": new}), trusted=True)
    assert got[-1] == (1998, 2997)
    assert list(got.levels[1][:2]) == [0, 3]


def _pending_categorical():
    """The opcodes of pandas' own Categorical pickle up to the object made without its data
    (its first REDUCE), BUILD not yet applied; protocol 2, no memo."""
    body = pickletools.optimize(pickle.dumps(pd.Categorical(["a", "b"]), 2))
    end = next(pos for op, _, pos in pickletools.genops(body) if op.name == "REDUCE")
    return body[2:end + 1]


@pytest.mark.parametrize("wrapper", ["UserList", "UserDict"])
def test_a_pending_object_in_any_build_state_is_refused(wrapper):
    # U = copyreg._reconstructor(wrapper, object, None); BUILD U {'data': P}; then use U
    head = (b"\x80\x02" + _pending_categorical() + put(0) + b"0"
            + glob("copyreg", "_reconstructor") + glob("collections", wrapper)
            + glob("builtins", "object") + b"N\x87R}" + b"X\x04\x00\x00\x00data" + get(0)
            + b"sb" + put(1) + b"0")
    cases = {f"{wrapper}-{use}": ("loads", head + glob(*fn) + get(1) + b"\x85R.", {"trusted": True})
             for use, fn in (("bool", ("builtins", "bool")), ("list", ("builtins", "list")),
                             ("series", ("pandas", "Series")))}
    cases["nested"] = ("loads", head.replace(b"data" + get(0) + b"sb",
                                             b"data" + get(0) + b"\x85]\x86sb") + b"N.",
                       {"trusted": True})
    assert_refused(run_child(cases), "used before it got its data")


torch = None
try:
    import torch
except ImportError:
    pass

_TORCH_NAMES = ["torch.from_numpy", "torch.Tensor.view", "torch.Tensor.new_empty",
                "torch.Tensor.set_", "torch.Tensor.requires_grad_",
                "torch.nn.parameter.Parameter"]


def _set_call(src_ops, size, stride, offset=0):
    """Tensor.set_(new_empty(base, (0,)), <src>, offset, size, stride), base a 16-byte array."""
    arr = pickletools.optimize(pickle.dumps(np.zeros(16, np.uint8), 2))[2:-1]
    base = b"c" + b"torch\nfrom_numpy\n" + arr + b"\x85R" + put(10) + b"0"
    empty = glob("torch", "Tensor.new_empty") + get(10) + b"K\x00\x85\x86R"
    ints = lambda t: b"(" + b"".join(b"J" + int(d).to_bytes(4, "little", signed=True)  # noqa
                                     for d in t) + b"t"
    src = {"empty": empty, "base": get(10)}[src_ops]
    return (b"\x80\x02" + base + glob("torch", "Tensor.set_") + b"(" + empty + src
            + b"J" + offset.to_bytes(4, "little", signed=True) + ints(size) + ints(stride)
            + b"tR.")


@pytest.mark.skipif(torch is None, reason="torch is not installed")
def test_set_may_not_grow_a_storage():
    cases = {
        "grow an empty storage": ("loads", _set_call("empty", (900 << 20,), (1,)),
                                  {"trusted": _TORCH_NAMES}),
        "past the end of a real one": ("loads", _set_call("base", (17,), (1,)),
                                       {"trusted": _TORCH_NAMES}),
        "offset past it": ("loads", _set_call("base", (8,), (1,), offset=9),
                           {"trusted": _TORCH_NAMES}),
        "strides past it": ("loads", _set_call("base", (4, 4), (4, 2)),
                            {"trusted": _TORCH_NAMES}),
        "negative stride": ("loads", _set_call("base", (4,), (-1,), offset=8),
                            {"trusted": _TORCH_NAMES}),
    }
    assert_refused(run_child(cases), "torch would grow the storage", "negative")
    # views inside the storage load
    t = fastjoblib.loads(_set_call("base", (4, 4), (4, 1)), trusted=_TORCH_NAMES)
    assert t.shape == (4, 4)
    t = fastjoblib.loads(_set_call("base", (2, 3), (6, 2), offset=5), trusted=_TORCH_NAMES)
    assert t.shape == (2, 3) and t.storage_offset() == 5
    assert fastjoblib.loads(_set_call("empty", (0,), (1,)), trusted=_TORCH_NAMES).numel() == 0


@pytest.mark.skipif(torch is None, reason="torch is not installed")
def test_fastjoblib_tensors_still_load_under_the_listed_names(tmp_path):
    x = {"w": torch.arange(12.0).reshape(3, 4)[:, 1:], "p": torch.nn.Parameter(torch.ones(5)),
         "b": torch.zeros(0, 3, dtype=torch.int16)}
    path = tmp_path / "t.joblib"
    fastjoblib.dump(x, path)
    got = fastjoblib.load(path, trusted=_TORCH_NAMES + ["torch.float32", "torch.int16"])
    for k in x:
        assert torch.equal(got[k], x[k])


def test_bz2_files_have_a_smaller_default_budget(tmp_path):
    assert default_max_bytes(1 << 20, "bz2") == (8 << 20) + 24 * (1 << 20)
    assert default_max_bytes(1 << 20, "zlib") == default_max_bytes(1 << 20, True) \
        == (64 << 20) + 100 * (1 << 20)
    arrays = [np.zeros(4 << 20, np.uint8) for _ in range(4)]  # 16 MiB: a file of a few KB
    bz, zl = tmp_path / "a.joblib.bz2", tmp_path / "a.joblib.z"
    fastjoblib.dump(arrays, bz, compress=("bz2", 9))
    fastjoblib.dump(arrays, zl, compress=("zlib", 3))
    with pytest.raises(fastjoblib.BudgetExceededError, match="bz2-compressed file is 8 MiB"):
        fastjoblib.load(bz, trusted=True)
    assert len(fastjoblib.load(zl, trusted=True)) == 4
    assert len(fastjoblib.load(bz, trusted=True, max_bytes=64 << 20)) == 4
    with pytest.raises(ValueError):  # inspect's expansion bound: the same rule for bz2
        fastjoblib.inspect(bz)
    assert fastjoblib.inspect(zl)["container"] is not None


@pytest.mark.parametrize("proto", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("dt", ["U3", "S3", [("a", "U3"), ("b", "i4")]], ids=["U", "S", "UV"])
def test_text_arrays_load_at_every_protocol(dt, proto):
    a = np.array([("ab", 1), ("c", 2)] if isinstance(dt, list) else ["ab", "c"], dtype=dt)
    got = fastjoblib.loads(pickle.dumps(a, protocol=proto), trusted=True)
    assert got.dtype == a.dtype and got.tolist() == a.tolist()
    assert fastjoblib.loads(fastjoblib.dumps(a), trusted=True).tolist() == a.tolist()


def test_a_model_fitted_on_text_labels_loads():
    sklearn = pytest.importorskip("sklearn")  # noqa: F841
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import LabelEncoder
    m = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], ["no", "no", "yes", "yes"])
    enc = LabelEncoder().fit(["cat", "dog", "cat"])
    got = fastjoblib.loads(pickle.dumps(m), trusted=["sklearn.linear_model._logistic.LogisticRegression"])
    assert list(got.classes_) == ["no", "yes"] and list(got.predict([[3.0]])) == ["yes"]
    got = fastjoblib.loads(pickle.dumps(enc), trusted=["sklearn.preprocessing._label.LabelEncoder"])
    assert list(got.classes_) == ["cat", "dog"]


# ------------------------------------------------------------------------------------------------
# Round 12b (a second pass, given this session's diff)

def test_a_pending_object_one_level_down_in_any_call_is_refused():
    pairs = b"(" + b"".join(b"(K" + bytes([i]) + b"K\x00t" for i in range(64))
    head = b"\x80\x02" + _pending_categorical() + put(0) + b"0"
    cases = {
        "dict": ("loads", head + glob("builtins", "dict") + b"(" + get(0) + b"l\x85R.",
                 {"trusted": True}),
        "OrderedDict": ("loads", head + glob("collections", "OrderedDict") + b"(" + get(0)
                        + b"l\x85R.", {"trusted": True}),
        "defaultdict, the 65th pair": ("loads", head + glob("collections", "defaultdict") + b"N"
                                       + pairs + get(0) + b"l\x86R.", {"trusted": True}),
    }
    assert_refused(run_child(cases), "used before it got its data")


def test_pending_walks_are_charged():
    # a pending object kept alive, then one memoised state of a 100,000-item list BUILT again
    # and again on fresh objects: each BUILD walked the list (7.7 s for 864 bytes at 1M items)
    items = b"]q\x01(" + b"K\x01" * 100_000 + b"e"
    state = b"}X\x01\x00\x00\x00a" + get(1) + b"sq\x02"
    ns = glob("types", "SimpleNamespace") + b"q\x03"
    builds = (get(3) + b")R" + get(2) + b"b0") * 100
    data = (b"\x80\x02" + _pending_categorical() + put(0) + b"0" + items + b"0" + state + b"0"
            + ns + b"0" + builds + b"N.")
    assert_refused(run_child({"walks": ("loads", data, {"trusted": True,
                                                         "max_bytes": 32 << 20})}), "max_bytes")


def test_items_numpy_converts_are_checked():
    from numpy.dtypes import StringDType
    from fastjoblib import _guard
    for raw in ([10 ** 5000, "x"], [["a"] * 3, "x"], [2.5j, "y"]):
        with pytest.raises(pickle.UnpicklingError, match="text item"):
            _guard._check_raw(np, np.dtype(StringDType()), (2,), raw)
    _guard._check_raw(np, np.dtype(StringDType(na_object=None)), (3,), ["a", None, "b"])
    _guard._check_raw(np, np.dtype(object), (2,), [10 ** 5000, ["a"] * 3])  # (kept as they are)
    # a structured item's text field given an int; a masked array's text fill value a list
    a = np.array([(None, "ab")], dtype=[("o", "O"), ("s", "U5")])
    data = pickle.dumps(a, 2)
    assert fastjoblib.loads(data, trusted=True).tolist() == a.tolist()
    assert data.count(b"X\x02\x00\x00\x00ab") == 1
    with pytest.raises(pickle.UnpicklingError, match="a int for a text item"):
        fastjoblib.loads(data.replace(b"X\x02\x00\x00\x00ab", b"K\x05"), trusted=True)
    m = np.ma.masked_array(["ab", "b"], mask=[0, 1], fill_value="zz")
    assert str(fastjoblib.loads(pickle.dumps(m, 2), trusted=True)) == str(m)
    state = m.__reduce__()[2]
    assert len(state) == 7
    _guard._ndarray_state(np, m, state)
    for fill in ([5], [[10 ** 5000] * 2] * 2, 10 ** 5000):
        with pytest.raises(pickle.UnpicklingError, match="fill value"):
            _guard._ndarray_state(np, m, state[:6] + (fill,))


def test_checks_of_objects_built_on_one_array_are_counted():
    # 500 Categoricals BUILT on one memoised state over a 10M-code array: each check read all
    # of it (5 GB read, 4.9 s with 1e8 codes and 1,000 Categoricals)
    # (an uninitialised uint8 array: whatever its bytes, codes of 256 categories)
    n = 10_000_000
    arr = glob("numpy", "ndarray") + b"J" + n.to_bytes(4, "little") + b"\x85X\x02\x00\x00\x00u1" \
        + b"\x86Rq\x01"
    dtype = glob("pandas", "CategoricalDtype") + b"](" + b"".join(b"K" + bytes([i])
                                                                 for i in range(256)) \
        + b"e\x85Rq\x02"
    body = _pending_categorical()
    assert body.endswith(b"R")
    func_args = body[:-1]  # (the callable and its argument tuple, then REDUCE at each use)
    data = (b"\x80\x02" + arr + dtype + b"\x86q\x03" + b"0" + func_args + b"q\x05" + b"0"
            + b"q\x04" + b"0" + b"](" + (get(4) + get(5) + b"R" + get(3) + b"b") * 500
            + b"e.")
    assert_refused(run_child({"shared codes": ("loads", data, {"trusted": True})}),
                   "checked more data than the budget allows")


def test_a_compressed_file_counts_calls_by_its_own_size(tmp_path):
    path = tmp_path / "series.joblib.z"
    series = [pd.Series([float(i), 2.0], index=["p", "q"]) for i in range(4000)]
    fastjoblib.dump(series, path, compress=3)
    size = os.path.getsize(path)
    assert size < 300_000  # (a few units a Series: far more than 8192 + size / 32)
    with pytest.raises(pickle.UnpicklingError, match="compressed file's size"):
        fastjoblib.load(path, trusted=True)
    got = fastjoblib.load(path, trusted=True, max_bytes=1 << 31)  # (the user's own bound)
    assert len(got) == 4000 and got[-1].equals(series[-1])
    plain = tmp_path / "series.joblib"
    fastjoblib.dump(series, plain)
    assert len(fastjoblib.load(plain, trusted=True)) == 4000


@pytest.mark.skipif(torch is None, reason="torch is not installed")
def test_set_views_are_bounded_by_the_budget():
    with pytest.raises(pickle.UnpicklingError, match="more than the budget"):
        fastjoblib.loads(_set_call("base", ((1 << 31) - 1,), (0,)), trusted=_TORCH_NAMES)
    t = fastjoblib.loads(_set_call("base", (1000,), (0,)), trusted=_TORCH_NAMES)  # (an expand)
    assert t.shape == (1000,) and t.stride() == (0,)
