"""What a restricted load counts and keeps (session 9's speed-up of the guard):

* pandas calls count by the cost of their constructor: ``Categorical``, ``CategoricalIndex``
  and ``MultiIndex`` four units, ``IntervalIndex`` / ``IntervalArray`` three,
  ``CategoricalDtype`` two, others one, against 8192 + one unit per 32 bytes of input;
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
from test_trust_keys import glob

pd = pytest.importorskip("pandas")

import fastjoblib  # noqa: E402
from fastjoblib import _guard  # noqa: E402


def _limit(stream):
    return 8192 + len(stream) // 32


@pytest.mark.parametrize("name,args,weight", [
    ("Categorical", b"]K\x01a", 4),
    ("MultiIndex", b"]]K\x01aa]]K\x00aa", 4),
    ("Series", b"]K\x01a", 2),  # (a converting constructor given data: one more)
])
def test_pandas_calls_count_by_cost(name, args, weight):
    # the most calls of `weight` units that the limit allows load; a few more are refused
    calls = 1
    while weight * (calls + 1) <= _limit(_repeat(glob("pandas", name), args, calls + 1)):
        calls += 1
    ok = _repeat(glob("pandas", name), args, calls)
    assert weight * calls <= _limit(ok)
    fastjoblib.loads(ok, trusted=True)
    over = _repeat(glob("pandas", name), args, calls + 3)
    with pytest.raises(pickle.UnpicklingError, match="pandas constructor calls"):
        fastjoblib.loads(over, trusted=True)


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
