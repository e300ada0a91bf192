"""What a restricted load counts and keeps (session 9's speed-up of the guard):

* pandas calls count by the cost of their constructor: ``Categorical``, ``CategoricalIndex``
  and ``MultiIndex`` four units, ``IntervalIndex`` / ``IntervalArray`` three,
  ``CategoricalDtype`` two, others one, against 8192 + one unit per 32 bytes of input;
  ``_new_Index`` by the class it makes (session 10: MultiIndex 4, datetime-like 3,
  CategoricalIndex 2); a pandas call repeated with the same argument objects 3 more; calls
  of atoms only have their check's answer remembered, their units counted each time;
* a restricted load (done or refused) leaves nothing of its checks behind: the objects it
  loaded are freed when the caller drops them, without waiting for the cyclic collector;
* the Arrow stand-ins check their own arguments (the guard's generic argument checks are
  skipped for them), and still refuse what is not theirs.
"""
import gc
import io
import pickle
import weakref

import pytest

from test_trust_redteam8 import _repeat
from test_trust_keys import get, glob, put

pd = pytest.importorskip("pandas")

import fastjoblib  # noqa: E402
from fastjoblib import _guard  # noqa: E402


def _limit(stream):
    return 8192 + len(stream) // 32


def _fresh(func_ops, args_ops, calls):
    """func (memo 0), then `calls` x (BINGET 0, a new args tuple, REDUCE, POP): no call repeats
    another's argument objects."""
    return b"\x80\x02" + func_ops + put(0) + b"0" \
        + (get(0) + b"(" + args_ops + b"tR0") * calls + b"N."


def _most_calls(make, first, then):
    """The most calls `make(n)` may hold when its first costs `first` units and each other
    `then`, under the limit."""
    calls = 1
    while first + then * calls <= _limit(make(calls + 1)):
        calls += 1
    return calls


@pytest.mark.parametrize("name,args,weight", [
    ("Categorical", b"]K\x01a", 4),
    ("MultiIndex", b"]]K\x01aa]]K\x00aa", 4),
    ("Series", b"]K\x01a", 2),  # (a converting constructor given data: one more)
])
@pytest.mark.parametrize("how", ["fresh", "repeated"])
def test_pandas_calls_count_by_cost(name, args, weight, how):
    # the most calls of `weight` units that the limit allows load; a few more are refused. A
    # call repeated with the same argument objects (BINGET, BINGET, REDUCE) counts 3 more.
    make = (lambda n: _fresh(glob("pandas", name), args, n)) if how == "fresh" else \
        (lambda n: _repeat(glob("pandas", name), args, n))
    then = weight if how == "fresh" else weight + 3
    calls = _most_calls(make, weight, then)
    ok = make(calls)
    assert weight + then * (calls - 1) <= _limit(ok)
    fastjoblib.loads(ok, trusted=True)
    with pytest.raises(pickle.UnpicklingError, match="pandas constructor calls"):
        fastjoblib.loads(make(calls + 3), trusted=True)


def _new_index_calls(index, calls):
    """_new_Index(type(index), {'data': <its values>}) `calls` times, a fresh dict each time
    (the values and the key memoised)."""
    data = pickle.dumps(index._values, protocol=2)[2:-1]
    cls = type(index)
    return (b"\x80\x02" + data + put(250) + b"0" + b"X\x04\x00\x00\x00data" + put(251) + b"0"
            + glob(cls.__module__, cls.__name__) + put(252) + b"0"
            + glob("pandas.core.indexes.base", "_new_Index") + put(253) + b"0"
            + (get(253) + get(252) + b"}" + get(251) + get(250) + b"s\x86R0") * calls + b"N.")


@pytest.mark.parametrize("index,units", [
    (pd.Index([1, 2]), 1),
    (pd.CategoricalIndex(["a", "b"]), 2),
    (pd.DatetimeIndex(["2020-01-01", "2020-01-02"]), 3),
])
def test_new_index_counts_the_class_it_makes(index, units):
    # (the pickled values cost a few units once: their dtype's text, a Categorical)
    setup = 12
    ok = _most_calls(lambda n: _new_index_calls(index, n), setup + units, units)
    out = fastjoblib.loads(_new_index_calls(index, ok), trusted=True)
    assert out is None
    over = ok
    while units * over <= _limit(_new_index_calls(index, over)):
        over += 1
    # (one unit more a call would refuse `ok`; one less would load `over`)
    assert (units + 1) * ok > _limit(_new_index_calls(index, ok))
    assert (units - 1) * over + setup <= _limit(_new_index_calls(index, over))
    with pytest.raises(pickle.UnpicklingError, match="pandas constructor calls"):
        fastjoblib.loads(_new_index_calls(index, over), trusted=True)


def test_calls_of_atoms_are_counted_every_time():
    # the same Timestamp(text) through the memo: one unit, and its text parsed (4 + 19 // 8
    # units) each time, though the check's answer is remembered
    text = b"X\x13\x00\x00\x002020-01-01 00:00:00"
    calls = _most_calls(lambda n: _repeat(glob("pandas", "Timestamp"), text, n), 7, 7)
    fastjoblib.loads(_repeat(glob("pandas", "Timestamp"), text, calls), trusted=True)
    with pytest.raises(pickle.UnpicklingError, match="pandas constructor calls"):
        fastjoblib.loads(_repeat(glob("pandas", "Timestamp"), text, calls + 2), trusted=True)
    # cheap helpers (Day(1)) count nothing, repeated or not
    fastjoblib.loads(_repeat(glob("pandas._libs.tslibs.offsets", "Day"), b"K\x01", 100_000),
                     trusted=True)


@pytest.mark.parametrize("func,args", [
    (("pandas", "DatetimeTZDtype"), b"X\x02\x00\x00\x00nsX\x0e\x00\x00\x00dateutil/x/y/z"),
    (("builtins", "bytearray"), b"X\x0e\x00\x00\x00dateutil/x/y/zX\x05\x00\x00\x00utf-8"),
])
def test_calls_of_atoms_still_refuse_dateutil_zones(func, args):
    for calls in (1, 3):
        with pytest.raises(fastjoblib.UntrustedGlobalError, match="dateutil"):
            fastjoblib.loads(_repeat(glob(*func), args, calls), trusted=True)


def _frames(n=50):
    return [pd.DataFrame({"a": [i, i + 1], "b": [float(i), 2.0], "c": ["x", "y"]})
            for i in range(n)]


@pytest.mark.parametrize("how", ["loads", "load", "load_pickle", "Unpickler"])
def test_a_restricted_load_keeps_nothing_alive(tmp_path, how):
    data = fastjoblib.dumps(_frames())
    path = tmp_path / "f.joblib"
    fastjoblib.dump(_frames(), path)
    gc.collect()
    gc.disable()
    try:
        if how == "loads":
            out = fastjoblib.loads(data, trusted=True)
        elif how == "load":
            out = fastjoblib.load(path, trusted=True)
        elif how == "load_pickle":
            out = fastjoblib.load_pickle(io.BytesIO(data), trusted=True)
        else:
            out = fastjoblib.Unpickler(io.BytesIO(data), trusted=True).load()
        refs = [weakref.ref(b.values) for df in out for b in df._mgr.blocks
                if hasattr(b.values, "__weakref__")]
        refs += [weakref.ref(df) for df in out]
        del out
        assert refs and all(r() is None for r in refs), \
            f"{sum(r() is not None for r in refs)} of {len(refs)} loaded objects still alive"
    finally:
        gc.enable()


def test_a_refused_load_keeps_nothing_alive():
    # frames, then a refused global: the half-built list is dropped with the exception
    data = pickle.dumps(_frames(), protocol=2)  # (no frames: the stream can be extended)
    assert data.endswith(b".")
    stream = data[:-1] + b"cos\nsystem\n."
    gc.collect()
    before = len(gc.get_objects())
    gc.disable()
    try:
        with pytest.raises(fastjoblib.UntrustedGlobalError):
            fastjoblib.loads(stream, trusted=True)
        # (a list of 50 DataFrames is thousands of tracked objects)
        assert len(gc.get_objects()) - before < 500
    finally:
        gc.enable()


def test_the_release_hook_empties_the_checks_memory():
    from fastjoblib._trust import make_find_class
    policy = make_find_class(True)
    out = fastjoblib._core.loads(fastjoblib.dumps(_frames(5)), find_class=policy)
    policy.finish()
    cells = [c.cell_contents for c in policy.before_call.__closure__
             if isinstance(c.cell_contents, dict)
             and c.cell_contents is not getattr(policy, "self_checked", None)]
    assert any(cells)  # the checks remembered the load's objects
    _guard.release(policy)
    assert not any(cells)
    assert len(out) == 5


def test_arrow_stand_ins_still_refuse_foreign_arguments():
    pa = pytest.importorskip("pyarrow")  # noqa: F841
    # py_buffer of a str, _restore_array of a tuple not made by the stand-ins
    s = b"\x80\x04" + glob("pyarrow.lib", "py_buffer") + b"X\x04\x00\x00\x00abcd\x85R."
    with pytest.raises(fastjoblib.UntrustedGlobalError, match="only bytes or bytearray"):
        fastjoblib.loads(s, trusted=True)
    fake = b"\x80\x04" + glob("pyarrow.lib", "_restore_array") \
        + b"(NK\x01K\x00K\x00](NNNe]Nt\x85R."
    with pytest.raises(fastjoblib.UntrustedGlobalError, match="type_for_alias"):
        fastjoblib.loads(fake, trusted=True)


def test_indexes_inside_containers_are_still_looked_at():
    # the hash-flood look at the indexes a pandas call may align is skipped only when no
    # argument, nor an item of a list / tuple / dict argument, is an Index, Series or DataFrame:
    # an Index of one-hash keys as a dict value (DataFrame({'a': idx})) is still found
    from test_trust_keys import _int64_one_hash, body
    k = _int64_one_hash(300)
    idx = glob("pandas", "Index") + b"(" + body(k) + b"tR"
    for outer in (b"}(X\x01\x00\x00\x00a" + idx + b"u", b"]" + idx + b"a"):
        s = b"\x80\x02" + glob("pandas", "DataFrame") + b"(" + outer + b"tR."
        with pytest.raises(pickle.UnpicklingError, match="pandas' hash-table hashes"):
            fastjoblib.loads(s, trusted=True)


def test_lists_of_period_series_load():
    # each pickled PeriodArray names its dtype, PeriodDtype('period[M]'): counted as a date
    # string (4 + one unit per 8 characters) it made lists of small period Series one unit per
    # 24 bytes, so files of 3,500 of them (855 KB) or more were refused
    data = fastjoblib.dumps([pd.Series(pd.period_range("2020", periods=2, freq="M"))
                             for _ in range(4000)])
    out = fastjoblib.loads(data, trusted=True)
    assert len(out) == 4000 and str(out[-1].dtype) == "period[M]"


def test_repeated_numpy_calls_count():
    # numpy calls count nothing (but for their text); the same call again with the same
    # argument objects counts 3 units (174,000 6-byte _reconstruct calls: 1 s)
    make = lambda n: _repeat(glob("numpy", "ndarray"), b"K\x00\x85", n)  # noqa: E731
    calls = _most_calls(make, 0, 3)
    fastjoblib.loads(make(calls), trusted=True)
    with pytest.raises(pickle.UnpicklingError, match="pandas constructor calls"):
        fastjoblib.loads(make(calls + 3), trusted=True)


def test_lists_of_intervals_load():
    # pd.Interval(left, right, 'right') is a scalar helper (14 bytes pickled): counted two units
    # (a call and its short text) a list of 100,000 of them (1.4 MB) was refused
    data = fastjoblib.dumps([pd.Interval(i, i + 1) for i in range(100_000)])
    out = fastjoblib.loads(data, trusted=True)
    assert len(out) == 100_000 and out[-1] == pd.Interval(99_999, 100_000)


def _units_of(stream, monkeypatch):
    """The units a restricted load of `stream` counts: the smallest limit it loads under."""
    lo, hi = 0, 1 << 20
    while lo < hi:
        mid = (lo + hi) // 2
        monkeypatch.setattr(_guard, "_pd_unit_limit", lambda budget, mid=mid: mid)
        try:
            fastjoblib.loads(stream, trusted=True)
            hi = mid
        except pickle.UnpicklingError as e:
            assert "pandas constructor calls" in str(e)
            lo = mid + 1
    monkeypatch.undo()
    return lo


_RECONSTRUCT = __import__("numpy").ndarray(0).__reduce__()[0]
_TUPLE_CALLS = {
    # (the callable, the ops of one call's arguments): NumPy's _reconstruct as every pickled
    # array calls it, with a fresh (0,) each time; pandas calls given small tuples; a nested
    # tuple (checked in full each time)
    "_reconstruct": (glob(_RECONSTRUCT.__module__, "_reconstruct"),
                     glob("numpy", "ndarray") + b"K\x00\x85C\x01b"),
    "Index": (glob("pandas", "Index"), b"(K\x01K\x02t"),
    "Index-text": (glob("pandas", "Index"), b"(X\x01\x00\x00\x00aX\x01\x00\x00\x00bt"),
    "Index-nested": (glob("pandas", "Index"), b"((K\x01K\x02t(K\x03K\x04tt"),
}


@pytest.mark.parametrize("name", list(_TUPLE_CALLS))
@pytest.mark.parametrize("how", ["fresh", "repeated", "both"])
def test_calls_of_small_tuples_count_as_their_full_check(name, how, monkeypatch):
    # calls of atoms, classes and small tuples of small atoms have the first check's answer
    # remembered by the tuples' values: each call counts what the full check would count (the
    # repeat surcharge when the tuple is the same object again)
    func, args = _TUPLE_CALLS[name]
    if how == "fresh":
        stream = _fresh(func, args, 40)
    elif how == "repeated":
        stream = _repeat(func, args, 40)
    else:
        stream = _fresh(func, args, 20)[:-2] + _repeat(func, args, 20)[2:]
    cached = _units_of(stream, monkeypatch)
    monkeypatch.setattr(_guard, "_small_tuple_key", lambda args: None)  # the full check
    full = _units_of(stream, monkeypatch)
    assert cached == full
    assert full >= (40 if name != "_reconstruct" or how != "fresh" else 0)


def test_calls_of_small_tuples_still_refuse_dateutil_zones():
    zone = b"X\x0e\x00\x00\x00dateutil/x/y/z"
    ok = (b"(X\x03\x00\x00\x00UTCt", )
    for first in (b"", _fresh(glob("pandas", "Index"), ok[0], 3)[2:-2]):
        stream = b"\x80\x02" + first + _fresh(glob("pandas", "Index"), b"(" + zone + b"t", 2)[2:]
        with pytest.raises(fastjoblib.UntrustedGlobalError, match="dateutil"):
            fastjoblib.loads(stream, trusted=True)


@pytest.mark.parametrize("locs", [
    [(0, 2), (2, 5)], [(2, 5), (0, 2)], [(0, 5)], [(0, 2), (3, 5)], [(0, 3), (2, 5)],
    [(0, 2), (0, 2), (2, 5)], [(0, 2), (2, 4)], [(0, 5), (5, 5)], [(0, 5), (3, 3)],
    [(0, 6)], [(1, 5)], [], [(0, 2), (2, 5), (4, 4)],
])
def test_block_placements_of_slices_as_their_arrays(locs):
    # BlockManager placements that are step-1 slices (pandas' usual) are checked without NumPy:
    # the verdict is the one the same placements as arrays get
    np = pytest.importorskip("numpy")
    axes = [pd.RangeIndex(5), pd.RangeIndex(3)]

    def verdict(as_arrays):
        blocks = [(np.zeros((b - a, 3)), np.arange(a, b) if as_arrays else slice(a, b, 1))
                  for a, b in locs]
        try:
            _guard._check_blocks(axes, blocks)
            return "ok"
        except pickle.UnpicklingError as e:
            return "refused" if "cover the items once" in str(e) or "outside" in str(e) \
                else str(e)
    assert verdict(False) == verdict(True)
    ok = sorted(i for a, b in locs for i in range(a, b)) == list(range(5))
    assert verdict(False) == ("ok" if ok else "refused")
