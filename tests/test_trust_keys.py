"""Round 7's open time breaks of `trusted=`, and their variants:

* keys that are costly to compare: every insert of a tuple (or frozenset) key compares it with
  each key of its hash already in the container, and 64 equal-hash 100,000-element tuple keys
  are 200M element comparisons (11 KB file: 15-20 s); the same through `set(L)` / `dict(pairs)`
  called again and again on one memoised list (each call compares them all again), and with
  frozenset keys;
* pandas' own hash tables: `Categorical(values)` factorizes with pandas' khash, whose hashes are
  unseeded and 32 bits wide, so 40,000 distinct int64 (or float64, or Python ints in an object
  array, or a list) of one hash made pandas take seconds (120,000 int64: 20 s).

Each test builds the stream by hand and checks that a restricted load refuses it (before the
fixes, each of them loaded, after seconds of quadratic work at the full sizes); the legitimate
shapes next to them still load.
"""
import pickle
import struct

import numpy as np
import pytest

from test_trust_attacks import assert_refused, run_child

import fastjoblib
from fastjoblib import _core

P61 = (1 << 61) - 1  # ints congruent modulo 2**61 - 1 share one Python hash


def glob(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def put(i):
    return b"q" + bytes([i])


def get(i):
    return b"h" + bytes([i])


def long1(v):
    b = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(b)]) + b


def body(obj):
    s = pickle.dumps(obj, protocol=2)
    return s[2:-1]


# memo 0: list(range(n)); 1: builtins.tuple; 2: builtins.frozenset; 3: builtins.list;
# 4: builtins.set; 5: builtins.dict
def _prelude(n):
    s = b"\x80\x02" + glob("builtins", "list") + put(3) + glob("builtins", "range") + b"J" \
        + struct.pack("<i", n) + b"\x85R\x85R" + put(0) + b"0"
    s += glob("builtins", "tuple") + put(1) + b"0" + glob("builtins", "frozenset") + put(2) + b"0"
    return s + glob("builtins", "set") + put(4) + b"0" + glob("builtins", "dict") + put(5) + b"0"


def _bigkey(m, kind):
    """(tuple(L), 1 + m*P61) or frozenset(list(L) + [1 + m*P61]): one hash for every m, unequal"""
    if kind == "tuple":
        return get(1) + get(0) + b"\x85R" + long1(1 + m * P61) + b"\x86"
    return get(2) + get(3) + get(0) + b"\x85R" + put(9) + long1(1 + m * P61) + b"a" + b"\x85R"


def _dict_of_keys(n, count, kind):
    return _prelude(n) + b"}(" + b"".join(_bigkey(m, kind) + b"N" for m in range(count)) + b"u."


def _repeated_call(n, count, kind, fn, calls):
    """L = [count colliding keys] (memoised); then `calls` x set(L) (or dict(pairs))"""
    pairs = fn == "dict"
    s = _prelude(n) + b"](" + b"".join((b"(" + _bigkey(m, kind) + b"Nt") if pairs
                                       else _bigkey(m, kind) for m in range(count))
    s += b"e" + put(6) + b"0" + b"](" + (get(5 if pairs else 4) + get(6) + b"\x85R") * calls
    return s + b"e."


def test_colliding_big_keys_are_charged_for_their_comparisons():
    # 64 keys of 50,000 elements on one hash: 3.2M elements to hash (within the old count),
    # 100M to compare (over the 64M bound)
    cases = {
        "dict-tuple-keys": ("loads", _dict_of_keys(50_000, 64, "tuple"), {"trusted": True}),
        "dict-frozenset-keys": ("loads", _dict_of_keys(50_000, 64, "frozenset"),
                                {"trusted": True}),
    }
    assert_refused(run_child(cases), "compare more than")


def test_calls_that_hash_one_list_again_are_charged_each_time():
    # one set(L) compares 64 keys of 20,000 elements: 40M; three calls go over the bound
    cases = {
        "set-tuples": ("loads", _repeated_call(20_000, 64, "tuple", "set", 3), {"trusted": True}),
        "set-frozensets": ("loads", _repeated_call(20_000, 64, "frozenset", "set", 3),
                           {"trusted": True}),
        "dict-pairs": ("loads", _repeated_call(20_000, 64, "tuple", "dict", 3),
                       {"trusted": True}),
    }
    # (or first by the call limit: the same call again counts its containers' size, session 11)
    assert_refused(run_child(cases), "walk more than", "pandas constructor calls")


def test_equal_and_small_keys_still_load():
    # (a list of small tuples handed to list() again and again is not hashed: not charged)
    many_small = {(i, i + 1): i for i in range(200_000)}
    assert fastjoblib.loads(pickle.dumps(many_small), trusted=True) == many_small
    s = b"\x80\x02" + glob("builtins", "list") + put(1) + b"0" + b"K\x07" + put(0) + b"0" \
        + b"](" + (get(0) + b"\x85") * 50_000 + b"e" + put(2) + b"0" \
        + (get(1) + get(2) + b"\x85R0") * 400 + b"N."
    assert fastjoblib.loads(s, trusted=True) is None
    one = (tuple(range(50_000)), 1)
    assert fastjoblib.loads(pickle.dumps({one: 1, (tuple(range(50_000)), 2): 2}),
                            trusted=True)[one] == 1
    fs = [frozenset(range(i, i + 1000)) for i in range(100)]
    assert fastjoblib.loads(pickle.dumps(set(fs)), trusted=True) == set(fs)


# ------------------------------------------------------------------------------------------------
# pandas' hash tables

pd = pytest.importorskip("pandas")
_MASK = 0xFFFFFFFF


def _int64_one_hash(n):
    """n distinct int64 whose pandas hash (k >> 33 ^ k ^ k << 11, 32 bits) is one value"""
    def inv(v):  # solve low32 ^ (low32 << 11) = v for low32
        y = v
        for _ in range(4):
            y = v ^ ((y << 11) & _MASK)
        return y
    return np.array([(hi << 32) | inv((0x1234567 ^ (hi >> 1)) & _MASK) for hi in range(1, n + 1)],
                    dtype=np.uint64).view(np.int64)


def _float64_one_hash(n):
    """n distinct float64 whose bits have one MurmurHash2 (pandas' float64 hash)"""
    m, mask = 0x5BD1E995, _MASK
    minv = pow(m, -1, 1 << 32)

    def mix(k):
        k = (k * m) & mask
        k ^= k >> 24
        return (k * m) & mask

    def unmix(v):
        v = (v * minv) & mask
        v ^= v >> 24
        return (v * minv) & mask
    out = []
    for k1 in range(1, n + 1):
        h = ((0xC70F6907 ^ 4) * m) & mask
        h = ((h ^ mix(k1)) * m) & mask
        out.append(k1 | (unmix(0x12345678 ^ h) << 32))
    a = np.array(out, dtype=np.uint64)
    # keep them finite and non-zero
    a = a[np.isfinite(a.view(np.float64)) & (a.view(np.float64) != 0)]
    return a.view(np.float64)


def _objects_one_folded_hash(n):
    """Python ints with distinct hashes whose 32-bit fold (pandas' object hash) is one value"""
    return np.array([(a << 32) | (a ^ 0x1234567) for a in range(1, n + 1)], dtype=object)


def _call(name, *args):
    mod, _, attr = name.rpartition(".")
    return b"\x80\x02" + glob(mod, attr) + b"(" + b"".join(body(a) for a in args) + b"tR."


def test_the_hash_emulation_matches_pandas():
    from pandas._libs import hashtable
    objs = [0, 1, -1, -2, 2 ** 62, 2 ** 64 + 5, -2 ** 70, 1.5, -0.0, 0.0, float("nan"),
            float("inf"), 1e300, complex(1, 2), complex(float("nan"), 1), (1, 2),
            (1, (2.5, "x")), (), None, True, "abc", b"xy", (float("nan"),), ((1, 2), (3, 4))]
    objs += list(_objects_one_folded_hash(5))
    for o in objs:
        assert _core._pd_obj_hash32(o) == hashtable.object_hash(o), o
    assert len({hashtable.object_hash(o) for o in _objects_one_folded_hash(100)}) == 1


def test_pandas_hash_floods_are_refused():
    n = 300
    cases = {
        "categorical-int64": ("loads", _call("pandas.Categorical", _int64_one_hash(n)),
                              {"trusted": True}),
        "categorical-float64": ("loads", _call("pandas.Categorical", _float64_one_hash(n)),
                                {"trusted": True}),
        "categorical-objects": ("loads", _call("pandas.Categorical", _objects_one_folded_hash(n)),
                                {"trusted": True}),
        "categorical-list": ("loads", _call("pandas.Categorical",
                                            [int(v) for v in _int64_one_hash(n)]),
                             {"trusted": True}),
        "series-category": ("loads", _call("pandas.Series", _int64_one_hash(n), None, "category"),
                            {"trusted": True}),
        "categorical-dtype": ("loads", _call("pandas.CategoricalDtype", _int64_one_hash(n)),
                              {"trusted": True}),
        "datetimes": ("loads", _call("pandas.Categorical",
                                     _int64_one_hash(n).view("M8[ns]")), {"trusted": True}),
    }
    assert_refused(run_child(cases), "pandas' hash-table hashes")


def test_pandas_hashing_calls_of_real_data_still_load():
    rng = np.random.default_rng(0)
    for values in (rng.integers(-2 ** 63, 2 ** 63 - 1, 100_000), rng.random(100_000),
                   np.array(rng.integers(0, 2 ** 62, 20_000), dtype=object),
                   np.full(1000, np.nan), np.array([float("nan")] * 1000, dtype=object),
                   np.zeros(100_000, np.int64)):
        got = fastjoblib.loads(_call("pandas.Categorical", values), trusted=True)
        assert isinstance(got, pd.Categorical) and len(got) == len(values)
    s = fastjoblib.loads(_call("pandas.Series", rng.integers(0, 50, 10_000), None, "category"),
                         trusted=True)
    assert s.dtype == "category" and len(s) == 10_000
    n = 100_000
    mi = pd.MultiIndex.from_arrays([rng.integers(0, 10 ** 12, n),
                                    pd.date_range("2020", periods=n, freq="s")])
    df = pd.DataFrame({"a": rng.random(n), "c": pd.Categorical(rng.integers(0, 1000, n))},
                      index=mi)
    out = fastjoblib.loads(pickle.dumps(df), trusted=True)
    pd.testing.assert_frame_equal(out, df)


# ------------------------------------------------------------------------------------------------
# The same call again (one callable and one argument tuple through the memo) skips the checks it
# passed, not what it costs, and not a re-check of what may have changed since.

def test_a_repeated_call_is_charged_every_time():
    big = struct.pack("<i", 10 ** 8)
    # bytes(10**8) (args of one atom, memoised) made 20 times: 2 GB, over the 1 GiB budget
    s1 = b"\x80\x02" + glob("builtins", "bytes") + put(1) + b"J" + big + b"\x85" + put(2) + b"0" \
        + b"](" + (get(1) + get(2) + b"R") * 20 + b"e."
    # list(range(10**7)) 30 times: 40 bytes an element each time
    s2 = b"\x80\x02" + glob("builtins", "list") + put(1) + glob("builtins", "range") + b"J" \
        + struct.pack("<i", 10 ** 7) + b"\x85R\x85" + put(2) + b"0" \
        + b"](" + (get(1) + get(2) + b"R0") * 30 + b"e."
    res = run_child({"bytes": ("loads", s1, {"trusted": True}),
                     "list-range": ("loads", s2, {"trusted": True})})
    assert_refused(res, "max_bytes")


def test_a_repeated_call_sees_a_list_that_grew():
    # L = []; str(L) passes; then L gets 40 references to a 10,000-item list; str(L) again is
    # 400,000 items of text: refused (the list changed without any call or BUILD; the
    # unpickler refuses the change itself: it is referenced by the call's arguments)
    s = b"\x80\x02" + glob("builtins", "str") + put(1) + b"0" + b"]" + put(2) + b"0" \
        + glob("builtins", "list") + glob("builtins", "range") + b"M" + struct.pack("<H", 10000) \
        + b"\x85R\x85R" + put(3) + b"0" \
        + get(2) + b"\x85" + put(4) + b"0" + get(1) + get(4) + b"R0" \
        + get(2) + b"(" + get(3) * 40 + b"e0" \
        + get(1) + get(4) + b"R."
    assert_refused(run_child({"grown": ("loads", s, {"trusted": True})}), "made into text",
                   "referenced elsewhere")
    # (the same with a list that stays small loads)
    ok = b"\x80\x02" + glob("builtins", "str") + put(1) + b"0" + b"](K\x01K\x02e" + put(2) \
        + b"\x85" + put(4) + b"0" + b"](" + (get(1) + get(4) + b"R") * 5 + b"e."
    assert fastjoblib.loads(ok, trusted=True) == ["[1, 2]"] * 5
