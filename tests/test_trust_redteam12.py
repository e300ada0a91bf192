"""Session 12's `trusted=` checks: an IntervalArray's BUILD state (its left and right ends, set
without pandas' own checks) must hold ends of one length and kind that match its dtype.
Round 11d made one whose ends differ in length: each use it tried raised, none crashed, but
pandas' interval code indexes one end by the other's positions."""
import pickle

import numpy as np
import pytest

import fastjoblib

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
