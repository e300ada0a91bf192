"""Red-team round 10 (given docs/SECURITY.md's claims, this session's diff and an interpreter, not
these tests): time breaks of `trusted=` (the 1 s bound for a 1 MiB file), each through a call
that cost more than what it counted against the load's limit of 8192 + one unit per 32 bytes:

* ``str(n)`` of a memoised 4300-digit int (240 us a call, 6 bytes: 38.8 s for 1 MiB), and
  ``str(list)`` of a memoised list of ints (20,000 ints: 3 ms a call; found while fixing);
* ``SeedSequence(n)`` of an int of 2M bits (quadratic conversion: 15.8 s for 250 KB);
* ``RandomState(0)`` / ``MT19937(0)`` repeated (NumPy calls counted nothing: 23-28 s);
* ``DataFrame({8 keys: lists of 511 items})`` and ``DataFrame([511-key dict])`` repeated (items
  one level down counted one unit per 512: 4.8-25.5 s);
* ``_new_Index(IntervalIndex, {'data': a})`` with a fresh dict each call (one unit: 1.8 s).

The streams here are 64 KB (limit 10,240 units) so that each loaded in 1-3 s before the fixes
and is refused in a fraction of that now; each runs in a child process under a 4 GiB
address-space limit (tests/test_trust_attacks.py's runner).
"""
import pickle
import struct

import pytest

from test_trust_attacks import assert_refused, run_child
from test_trust_keys import get, glob, put

pd = pytest.importorskip("pandas")

import fastjoblib  # noqa: E402

SIZE = 64 << 10
LIMIT = "pandas constructor calls"


def _fill(head, body, tail=b"N."):
    return head + body * ((SIZE - len(head) - len(tail)) // len(body)) + tail


def _repeat(func_ops, args_ops):
    """func (memo 0), args tuple (memo 1), then BINGET 0, BINGET 1, REDUCE, POP to fill SIZE."""
    return _fill(b"\x80\x02" + func_ops + put(0) + b"0(" + args_ops + b"t" + put(1) + b"0",
                 get(0) + get(1) + b"R0")


def _long(n):
    data = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8b" + struct.pack("<I", len(data)) + data


def _text(t):
    b = t.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _list_of_ints(n):
    return b"]" + b"(" + b"".join(b"J" + struct.pack("<i", i) for i in range(n)) + b"e"


def test_text_conversions_count():
    big = 10 ** 4299 + 1  # (the most digits str() makes: the interpreter's limit)
    assert_refused(run_child({
        "str(4300-digit int)": ("loads", _repeat(glob("builtins", "str"), _long(big)),
                                {"trusted": True}),
        "str(list of 2,000 ints)": ("loads", _repeat(glob("builtins", "str"), _list_of_ints(2000)),
                                    {"trusted": True}),
        "int(4300 digits)": ("loads", _repeat(glob("builtins", "int"), _text("7" * 4300)),
                             {"trusted": True}),
    }), LIMIT)
    # a container holding a big int is refused outright
    s = b"\x80\x02" + glob("builtins", "str") + b"(" + _long(2 ** 3000) + b"\x85tR."
    with pytest.raises(pickle.UnpicklingError, match="bits .at most 2048."):
        fastjoblib.loads(s, trusted=True)
    # what legitimate files do: str subclasses and short conversions
    assert fastjoblib.loads(pickle.dumps([str(i) for i in range(100)]), trusted=True)[-1] == "99"


def test_numpy_gets_no_huge_ints():
    for arg in (_long(2 ** 100_000 - 1), b"]" + b"K\x01" + _long(2 ** 5000) + b"\x86"):
        s = b"\x80\x02" + glob("numpy.random.bit_generator", "SeedSequence") + b"(" + arg + b"tR."
        with pytest.raises(pickle.UnpicklingError, match="bits"):
            fastjoblib.loads(s, trusted=True)
    seq = fastjoblib.loads(pickle.dumps(__import__("numpy").random.SeedSequence(2 ** 127 + 5)),
                           trusted=True)
    assert seq.entropy == 2 ** 127 + 5


def test_numpy_random_constructors_count():
    assert_refused(run_child({
        "RandomState(0)": ("loads", _repeat(glob("numpy.random.mtrand", "RandomState"), b"K\x00"),
                           {"trusted": True}),
        "MT19937(0)": ("loads", _repeat(glob("numpy.random._mt19937", "MT19937"), b"K\x00"),
                       {"trusted": True}),
    }), LIMIT)


def test_lists_one_level_down_count():
    # a fresh dict of 8 memoised 511-item lists, and a fresh list holding a memoised 511-key
    # dict, at each call (no call repeats another's argument objects): 2 units a call before
    col = _list_of_ints(511)
    head = b"\x80\x02" + glob("pandas", "DataFrame") + put(0) + b"0" + col + put(1) + b"0" \
        + b"".join(_text(f"c{i}") + put(2 + i) + b"0" for i in range(8))
    frame = _fill(head, get(0) + b"(}(" + b"".join(get(2 + i) + get(1) for i in range(8))
                  + b"utR0")
    wide = b"}(" + b"".join(_text(f"k{i}") + b"K\x01" for i in range(511)) + b"u"
    head = b"\x80\x02" + glob("pandas", "DataFrame") + put(0) + b"0" + wide + put(1) + b"0"
    wide_calls = head + (get(0) + b"(]" + get(1) + b"atR0") * 2000 + b"N."
    assert_refused(run_child({
        "DataFrame(8 x 511)": ("loads", frame, {"trusted": True}),
        "DataFrame([511-key dict])": ("loads", wide_calls, {"trusted": True}),
    }), LIMIT)


def test_new_index_of_an_interval_index_counts_as_one():
    ia = pickle.dumps(pd.arrays.IntervalArray.from_breaks([0, 1, 2]), protocol=2)[2:-1]
    head = (b"\x80\x02" + ia + put(250) + b"0" + b"X\x04\x00\x00\x00data" + put(251) + b"0"
            + glob("pandas", "IntervalIndex") + put(252) + b"0"
            + glob("pandas.core.indexes.base", "_new_Index") + put(253) + b"0")
    s = _fill(head, get(253) + get(252) + b"}" + get(251) + get(250) + b"s\x86R0")
    assert_refused(run_child({"_new_Index(IntervalIndex)": ("loads", s, {"trusted": True})}),
                   LIMIT)


def test_conversions_through_keywords_count():
    # str(object=big) through NEWOBJ_EX's keyword dict
    big = 10 ** 4299 + 1
    s = _fill(b"\x80\x04" + glob("builtins", "str") + put(0) + b"0)" + put(1) + b"0}"
              + b"\x8c\x06object" + _long(big) + b"s" + put(2) + b"0",
              get(0) + get(1) + get(2) + b"\x920")
    assert_refused(run_child({"str(object=4300-digit int)": ("loads", s, {"trusted": True})}),
                   LIMIT)


# Round 10b (a second helper, 20 minutes, on the rules above): five more time breaks, each
# loaded or ran for 5-60 s before (24 KB to 1 MiB inputs).

def _array_ops():
    return pickle.dumps(__import__("numpy").arange(1000.0), protocol=2)[2:-1]


def test_only_text_numbers_and_their_containers_are_made_into_text():
    arr = _array_ops()
    s = b"\x80\x02" + glob("builtins", "str") + b"(" + arr + b"tR."  # (1000 floats: 3-4 ms)
    with pytest.raises(pickle.UnpicklingError, match="ndarray made into text"):
        fastjoblib.loads(s, trusted=True)
    # a list holding one array 30 times (str() prints it at each)
    s = b"\x80\x02" + glob("builtins", "str") + b"(" + arr + put(9) + b"0]" + b"(" \
        + get(9) * 30 + b"etR."
    with pytest.raises(pickle.UnpicklingError, match="inside a container made into text"):
        fastjoblib.loads(s, trusted=True)
    # UserString(n) is str(n): counted like it
    big = 10 ** 4299 + 1
    assert_refused(run_child({"UserString(4300-digit int)": (
        "loads", _repeat(glob("collections", "UserString"), _long(big)), {"trusted": True})}),
        LIMIT)


def test_nested_arguments_of_numpy_and_pandas_calls():
    # an int of 2.9M bits two lists down reached SeedSequence (40 s); an array three containers
    # down in a Timestamp argument was printed whole in pandas' error message (9 s)
    s = b"\x80\x02" + glob("numpy.random.bit_generator", "SeedSequence") + b"(]]" \
        + _long(2 ** 5000) + b"aa" + b"tR."
    with pytest.raises(pickle.UnpicklingError, match="bits"):
        fastjoblib.loads(s, trusted=True)
    s = b"\x80\x02" + glob("pandas", "Timestamp") + b"(]]]" + _array_ops() + b"aaa" + b"tR."
    with pytest.raises(pickle.UnpicklingError, match="nested 3 deep"):
        fastjoblib.loads(s, trusted=True)
