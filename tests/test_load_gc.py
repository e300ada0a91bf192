"""The cyclic collector is off while a load runs, and left as it was found afterwards (on, or off
when the caller had turned it off), after a load that succeeds, fails or is refused, and around
nested loads."""
import gc
import io
import pickle

import pytest

import fastjoblib


class Call:
    """Pickles as a call of `f` with `a` (made when the stream is loaded)."""

    def __init__(self, f, *a):
        self.f, self.a = f, a

    def __reduce__(self):
        return self.f, self.a


PROBE = pickle.dumps([Call(gc.isenabled), 1.5, Call(gc.isenabled)], protocol=4)


@pytest.fixture(autouse=True)
def _gc_on():
    # (CPython's default thresholds: an earlier test in the process may have changed them, as
    # mypy's in-process run does)
    thresholds = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    gc.enable()
    yield
    gc.enable()
    gc.set_threshold(*thresholds)


@pytest.mark.parametrize("how", ["loads", "load_pickle", "Unpickler"])
def test_collector_is_off_during_the_load_and_on_after(how):
    if how == "loads":
        got = fastjoblib.loads(PROBE)
    elif how == "load_pickle":
        got = fastjoblib.load_pickle(io.BytesIO(PROBE))
    else:
        got = fastjoblib.Unpickler(io.BytesIO(PROBE)).load()
    assert got == [False, 1.5, False]
    assert gc.isenabled()


def test_joblib_file_load(tmp_path):
    path = tmp_path / "probe.joblib"
    fastjoblib.dump([Call(gc.isenabled), Call(gc.isenabled)], path)
    assert fastjoblib.load(path) == [False, False]
    assert gc.isenabled()


def test_a_caller_that_turned_it_off_keeps_it_off():
    gc.disable()
    assert fastjoblib.loads(PROBE) == [False, 1.5, False]
    assert not gc.isenabled()


def test_on_again_after_a_failed_load():
    with pytest.raises((pickle.UnpicklingError, EOFError)):
        fastjoblib.loads(PROBE[:-5])
    assert gc.isenabled()
    bad = pickle.dumps(Call(int, "not a number"))
    with pytest.raises(ValueError):
        fastjoblib.loads(bad)
    assert gc.isenabled()


def test_on_again_after_a_refused_restricted_load():
    with pytest.raises(pickle.UnpicklingError):
        fastjoblib.loads(PROBE, trusted=True)  # (gc.isenabled is not an allowed name)
    assert gc.isenabled()
    assert fastjoblib.loads(pickle.dumps([1, {"a": (2, 3.0)}]), trusted=True) == [1, {"a": (2, 3.0)}]
    assert gc.isenabled()


def test_nested_load_leaves_the_outer_one_uncollected():
    inner = pickle.dumps(Call(gc.isenabled))
    outer = pickle.dumps([Call(fastjoblib.loads, inner), Call(gc.isenabled)])
    assert fastjoblib.loads(outer) == [False, False]  # (still off after the inner load ended)
    assert gc.isenabled()


def test_no_collection_while_a_big_graph_loads():
    data = pickle.dumps([[i] for i in range(200_000)], protocol=5)
    starts = []

    def cb(phase, info):
        if phase == "start":
            starts.append(info["generation"])
    gc.callbacks.append(cb)
    try:
        fastjoblib.loads(data)
        during = len(starts)
        pickle.loads(data)  # (the stdlib's load of the same stream collects many times)
    finally:
        gc.callbacks.remove(cb)
    assert during == 0
    assert len(starts) > during
