"""Red-team round 11 (given docs/SECURITY.md's claims and an interpreter, not these tests): time
breaks of `trusted=` (the 1 s bound for a 1 MiB file) through callables that are neither NumPy's
nor pandas', and one pandas hash flood:

* ``ChainMap(s)`` of one memoised 200,000-character string, 114,000 times (7 bytes a call):
  each call read the whole string for a ``dateutil/`` zone name (10.9 s for 1 MiB);
* ``PurePosixPath(s, s, ...)`` with 400,000 references to one such string (the same look at
  each: 35 s), or 200,000 to a 60,000-character one ending in ``/`` (pathlib's own joins and
  copies, counted nowhere: 13.9 s for 460 KB);
* ``Index([(k, 0), (k', 1), ...])`` of 20,000 tuples whose first items share one hash: pandas
  makes a MultiIndex and hashes each level (4.8 s for 358 KB); the tuples' own hashes differ;
* ``ChainMap(d)`` of one memoised 60,000-key dict, again and again: each call copied all of
  the dict's values to look at the first 64 (29 s for 1 MiB), then 0.8 s of checks once it
  did not.

A second pass (11b) on those rules found 4 more:

* ``DataFrame({k0: 0, ..., k63: 63, 'z': C})`` with ``C`` a Categorical made without its data:
  only a dict argument's first 64 values were looked at, and pandas crashed on the 65th;
* ``Series(None, [a, a])`` of int64 arrays of one pandas hash: a MultiIndex of arrays, whose
  levels pandas hashes (3.6 s for 320 KB, quadratic);
* ``ChainMap(L, L, ...)``: one call with 520,000 references to one list, each looked into again
  (13.4 s for 1 MiB);
* ``PurePosixPath(s)`` of one 60,000-character ``'a/' * 30000``, again and again: charged its
  length, but pathlib's split costs 1.7 ms a call (3.2 s for 72 KB).

A third, 25-minute pass (11c) found one crash: a Categorical without its data as the
``categories`` of a ``CategoricalDtype``'s BUILD state; hashing the dtype (a dict key, a set
item, 90 bytes) crashed pandas.

A fourth, 30-minute pass (11d) found a crash and four slow repeats: ``DataFrame(UserList([...64
rows, a Categorical without its data]))`` (the wrapper was not looked into; a crash, 227 bytes),
and ``Counter(L)``, ``OrderedDict(P)``, ``dict(P)`` and ``frozenset(L)`` of one memoised
8,000-item list, again and again (2-5 s for 1 MiB before the call limit refused them; the kept
frozensets' memory went past the budget to a plain MemoryError).

Each test fails on the guard before the round's fixes (the streams are small: the old guard
loaded them, slowly, or crashed); each runs in a child process under a 4 GiB address-space limit.
"""
import pickle
import pickletools
import struct

import pytest

from test_trust_attacks import assert_refused, run_child
from test_trust_keys import _int64_one_hash, get, glob, put

pd = pytest.importorskip("pandas")

import fastjoblib  # noqa: E402
from fastjoblib import _guard  # noqa: E402


def _body(x):
    """The opcodes that build x (protocol 2: no frames; no memo: the streams here use their own
    memo indices)."""
    return pickletools.optimize(pickle.dumps(x, 2))[2:-1]


def _text(n, end=b""):
    body = b"a" * (n - len(end)) + end
    return b"X" + struct.pack("<I", len(body)) + body


def _calls(func_ops, arg_ops, calls):
    """func (memo 0), the argument (memo 1), then `calls` x func(argument) (7 bytes each)."""
    return (b"\x80\x04" + func_ops + put(0) + b"0" + arg_ops + put(1) + b"0"
            + (get(0) + get(1) + b"\x85R0") * calls + b"N.")


def _one_call(func_ops, arg_ops, refs):
    """func(argument, argument, ...) with `refs` memo references to one argument."""
    return (b"\x80\x04" + func_ops + arg_ops + put(1) + b"0(" + get(1) * refs + b"tR.")


def test_a_long_string_given_again_and_again_is_charged():
    # 2,000 calls of ChainMap(s), s 200,000 characters: 400 MB of text handed to calls, past a
    # 64 MiB budget, and a unit per 512 characters past the call limit (the first use of a
    # text is the file's own: not charged)
    s = _text(200_000)
    res = run_child({
        "chainmap": ("loads", _calls(glob("collections", "ChainMap"), s, 2000),
                     {"trusted": True, "max_bytes": 64 << 20}),
        "path-segments": ("loads", _one_call(glob("pathlib", "PurePosixPath"), _text(60_000, b"/"),
                                             2000), {"trusted": True, "max_bytes": 64 << 20}),
    })
    assert_refused(res, "max_bytes", "pandas constructor calls")
    # once each: loads
    once = fastjoblib.loads(_calls(glob("collections", "ChainMap"), s, 1), trusted=True,
                            max_bytes=64 << 20)
    assert once is None
    path = fastjoblib.loads(_one_call(glob("pathlib", "PurePosixPath"), _text(2000), 1),
                            trusted=True)
    assert str(path) == "a" * 2000


def test_a_long_dateutil_string_is_refused_at_every_use():
    # long strings are looked at once a load; one naming a dateutil zone is still refused, at
    # its first use and (a refused load) never remembered as clean
    zone = _text(5000, b"dateutil/etc/passwd")
    for calls in (1, 3):
        for func in (("collections", "ChainMap"), ("pandas", "DatetimeTZDtype")):
            with pytest.raises(fastjoblib.UntrustedGlobalError, match="dateutil"):
                fastjoblib.loads(_calls(glob(*func), zone, calls), trusted=True)
    # inside a fresh tuple at each call, after a clean long string was remembered
    clean = _text(5000)
    stream = (b"\x80\x04" + glob("collections", "ChainMap") + put(0) + b"0" + clean + put(1)
              + b"0" + get(0) + get(1) + b"\x85R0" + get(0) + zone + b"\x85\x85R0N.")
    with pytest.raises(fastjoblib.UntrustedGlobalError, match="dateutil"):
        fastjoblib.loads(stream, trusted=True)


def _one_hash_tuples(n):
    """n tuples (k_i, i): the k_i = (i + 1) * (2**61 - 1) all have Python hash 0."""
    return [((i + 1) * (2 ** 61 - 1), i) for i in range(n)]


def test_tuples_whose_levels_flood_are_refused():
    tuples = _one_hash_tuples(3000)
    body = _body(tuples)
    hashes = "pandas' hash-table hashes"
    res = run_child({
        "index": ("loads", b"\x80\x04" + glob("pandas", "Index") + body + b"\x85R.",
                  {"trusted": True}),
        "series-index": ("loads", b"\x80\x04" + glob("pandas", "Series")
                         + _body(list(range(3000))) + body + b"\x86R.",
                         {"trusted": True}),
        "series-of-dict": ("loads", b"\x80\x04" + glob("pandas", "Series")
                           + _body(dict.fromkeys(tuples, 1)) + b"\x85R.",
                           {"trusted": True}),
    })
    assert_refused(res, hashes)
    # real tuples load, as a MultiIndex
    ok = [(i % 7, f"x{i}") for i in range(3000)]
    out = fastjoblib.loads(pickle.dumps(pd.Index(ok), 4), trusted=True)
    assert isinstance(out, pd.MultiIndex) and list(out) == ok
    idx = fastjoblib.loads(b"\x80\x04" + glob("pandas", "Index")
                           + _body(ok) + b"\x85R.", trusted=True)
    assert isinstance(idx, pd.MultiIndex) and len(idx) == 3000


def test_a_big_dict_given_again_and_again_is_counted():
    # ChainMap(d) of one 60,000-key dict, repeated: each repeat of a call with the same
    # non-atom argument objects counts 3 units (here 20,000 repeats: past the 8192 + size/32)
    d = _body(dict.fromkeys(range(60_000)))
    stream = _calls(glob("collections", "ChainMap"), d, 20_000)
    assert_refused(run_child({"chainmap-dict": ("loads", stream, {"trusted": True})}),
                   "repeated calls")
    # a few repeats load (each counts 3 units and one per 128 slots of the dict: 940)
    assert fastjoblib.loads(_calls(glob("collections", "ChainMap"), d, 5), trusted=True) is None


def test_objects_made_by_one_class_or_function_are_not_repeated_calls():
    # defaultdict(list) is pickled as the call defaultdict(list) for every such dict: the same
    # argument object each time, which is no repeated call (other callables' calls of classes,
    # functions and atoms only are not counted)
    import collections
    dicts = [collections.defaultdict(list, {i: [i]}) for i in range(40_000)]
    for proto in (2, 4):
        out = fastjoblib.loads(pickle.dumps(dicts, proto), trusted=True)
        assert len(out) == 40_000 and out[-1] == {39_999: [39_999]}
        assert out[-1].default_factory is list


def _s(text):
    b = text.encode()
    return b"\x8c" + bytes([len(b)]) + b


_PENDING = glob("pandas", "Categorical") + b")\x81"  # Categorical.__new__: no data yet


def test_objects_without_their_data_anywhere_in_a_pandas_argument_are_refused():
    keys = b"".join(_s(f"k{i}") + b"K" + bytes([i]) for i in range(64))
    frame = b"\x80\x04" + glob("pandas", "DataFrame")
    res = run_child({
        "65th-dict-value": ("loads", frame + b"}(" + keys + _s("z") + _PENDING + b"u\x85R.",
                            {"trusted": True}),
        "71st-list-item": ("loads", frame + b"](" + b"K\x01" * 70 + _PENDING + b"e\x85R.",
                           {"trusted": True}),
        "in-a-dict-value-list": ("loads", frame + b"}(" + _s("z") + b"]" + _PENDING + b"au\x85R.",
                                 {"trusted": True}),
    })
    assert_refused(res, "used before it got its data")


def test_arrays_made_into_multiindex_levels_are_flood_checked():
    a = _int64_one_hash(3000)
    res = run_child({"series-index-of-arrays": (
        "loads", b"\x80\x04" + glob("pandas", "Series") + b"N" + _body([a, a])
        + b"\x86R.", {"trusted": True})})
    assert_refused(res, "pandas' hash-table hashes")
    ok = __import__("numpy").arange(3000)
    out = fastjoblib.loads(b"\x80\x04" + glob("pandas", "Series") + b"N"
                           + _body([ok, ok]) + b"\x86R.", trusted=True)
    assert isinstance(out.index, pd.MultiIndex) and len(out) == 3000


def test_an_object_given_many_times_in_one_call_is_looked_at_once(monkeypatch):
    # ChainMap(L, L, ..., L), L a list of 64 lists: the items of L are looked at once, not at
    # each of the 10,000 references (counted: the calls of the guard's type lookup)
    calls = [0]
    flags_of = _guard._flags_of

    def counting(x):
        calls[0] += 1
        return flags_of(x)
    monkeypatch.setattr(_guard, "_flags_of", counting)
    lst = b"](" + b"]" * 64 + b"e"
    stream = (b"\x80\x04" + glob("collections", "ChainMap") + lst + put(1) + b"0("
              + get(1) * 10_000 + b"tR.")
    out = fastjoblib.loads(stream, trusted=True)
    assert len(out.maps) == 10_000
    assert calls[0] < 20_000 + 1000  # (the arguments' own lookups, and one look into L)


def test_long_text_given_again_counts_its_work():
    # PurePosixPath(s) of one 60,000-character 'a/' * 30000, 200 times: one unit per 512
    # characters at each use after the first (117 a call), past the limit
    s = b"X" + struct.pack("<I", 60_000) + b"a/" * 30_000
    assert_refused(run_child({"path-again": (
        "loads", _calls(glob("pathlib", "PurePosixPath"), s, 200), {"trusted": True})}),
        "pandas constructor calls")
    out = fastjoblib.loads(_calls(glob("pathlib", "PurePosixPath"), s, 3), trusted=True)
    assert out is None


def test_objects_without_their_data_in_a_pandas_state_are_refused():
    # CategoricalDtype.__new__, then BUILD {'categories': <a Categorical without its data>}: the
    # dtype, hashed as a dict key or a set item, made pandas read the missing codes (a crash)
    dtype = (glob("pandas", "CategoricalDtype") + b")\x81}(" + _s("categories") + _PENDING
             + _s("ordered") + b"Nub")
    res = run_child({
        "dict-key": ("loads", b"\x80\x04}(" + dtype + b"K\x01u.", {"trusted": True}),
        "frozenset": ("loads", b"\x80\x04(" + dtype + b"\x91.", {"trusted": True}),
        "set-call": ("loads", b"\x80\x04" + glob("builtins", "set") + b"]" + dtype + b"a\x85R.",
                     {"trusted": True}),
        "series-dtype": ("loads", b"\x80\x04" + glob("pandas", "Series") + b"]K\x01aN" + dtype
                         + b"\x87R.", {"trusted": True}),
    })
    assert_refused(res, "used before it got its data")
    # real categorical dtypes, as keys and in frames, still load
    cat = pd.Categorical(["a", "b"])
    out = fastjoblib.loads(pickle.dumps({cat.dtype: pd.DataFrame({"c": cat})}, 4), trusted=True)
    (dt, df), = out.items()
    assert list(dt.categories) == ["a", "b"] and list(df["c"]) == ["a", "b"]


def test_multiindex_levels_given_in_lists_are_flood_checked():
    # _new_Index(MultiIndex, {'levels': [L], ...}): the levels inside the dict's lists are looked
    # at as pandas hashes them (found in pass 11c; pandas hashes them at the first lookup)
    np = __import__("numpy")
    d = {"levels": [pd.Index(_int64_one_hash(3000))], "codes": [np.zeros(1, np.int8)],
         "names": [None], "sortorder": None}
    stream = (b"\x80\x04" + glob("pandas.core.indexes.base", "_new_Index")
              + glob("pandas", "MultiIndex") + _body(d) + b"\x86R.")
    with pytest.raises(pickle.UnpicklingError, match="pandas' hash-table hashes"):
        fastjoblib.loads(stream, trusted=True)
    d["levels"] = [pd.Index(np.arange(3000))]
    stream = (b"\x80\x04" + glob("pandas.core.indexes.base", "_new_Index")
              + glob("pandas", "MultiIndex") + _body(d) + b"\x86R.")
    assert len(fastjoblib.loads(stream, trusted=True).levels[0]) == 3000


def test_objects_without_their_data_inside_collections_wrappers_are_refused():
    rows = b"]" + put(5) + b"K\x01a0" + b"(" + get(5) * 64 + _PENDING + b"l"
    stream = (b"\x80\x04" + glob("pandas", "DataFrame") + glob("collections", "UserList") + rows
              + b"\x85R\x85R.")
    assert_refused(run_child({"userlist-65th-row": ("loads", stream, {"trusted": True})}),
                   "used before it got its data")


@pytest.mark.parametrize("func,arg", [
    (("collections", "Counter"), list(range(8000))),
    (("collections", "OrderedDict"), [(i, i) for i in range(2000)]),
    (("builtins", "dict"), [(i, i) for i in range(2000)]),
    (("builtins", "frozenset"), list(range(8000))),
])
def test_a_container_call_repeated_counts_its_size(func, arg):
    # the same call with the same container again: 3 units and one per 128 slots of the
    # container's expanded size (Counter(L) of 8,000 ints: 65 units, 300 us a call)
    stream = _calls(glob(*func), _body(arg), 400)
    with pytest.raises(pickle.UnpicklingError, match="pandas constructor calls"):
        fastjoblib.loads(stream, trusted=True)
    assert fastjoblib.loads(_calls(glob(*func), _body(arg), 20),
                            trusted=True) is None


def test_hash_table_containers_are_charged_by_their_size():
    # set(L) of 100,000 ints makes a hash table of about 4 MB: charged 64 bytes an item (6.4
    # MB; the list's 100,000 opcodes 6.4 MB more), not 16 (1.6 MB, under the 10 MiB below)
    stream = (b"\x80\x04" + glob("builtins", "set") + _body(list(range(100_000)))
              + b"\x85R.")
    with pytest.raises(fastjoblib.BudgetExceededError):
        fastjoblib.loads(stream, trusted=True, max_bytes=10 << 20)
    assert len(fastjoblib.loads(stream, trusted=True, max_bytes=16 << 20)) == 100_000
