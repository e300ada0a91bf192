"""Red-team round 7 (given docs/SECURITY.md's claims and an interpreter, not these tests): the
breaks that crashed the interpreter or let a loaded array share memory a check had passed, and
the ones that made `python -m fastjoblib inspect` die with a traceback.

* `pandas._new_DatetimeIndex(cls, d)` / `_new_TimedeltaIndex` call ``cls.__new__(cls, **d)`` when
  `d` has no 'data': any allowed class called with keywords from the file, past every per-callee
  rule (``numpy.ndarray(shape, 'O', buffer=bytearray)``: an object array whose pointers are file
  bytes; ``bytes(source=N)``; 100k-char Timestamp strings);
* `pandas._libs.sparse.BlockIndex` with a negative block length (the guard's own
  ``to_int_index()`` overflowed the heap);
* `SparseArray`'s pre-0.24 tuple state (``ndarray.__setstate__`` called by pandas itself, past
  the ndarray-state check: an object array read past its item list);
* ``numpy.ma.MaskedArray(bytearray)`` / ``numpy.matrix(buffer, None, False)``: views of one
  buffer (a Categorical's checked codes, or the caller's out-of-band buffer) handed out;
* a NumpyArrayWrapper shape that is a 10**8-element range (materialised before ndim was checked);
* `inspect` CLI: a lone surrogate in a version string (UnicodeEncodeError), a tensor offset of
  5000 digits (int->str limit), a MemoryError.

Each hostile stream runs in a child process under a 4 GiB address-space limit
(tests/test_trust_attacks.py's runner): before the fixes, the crash cases killed it.
"""
import os
import pickle
import pickletools
import struct
import subprocess
import sys

import pytest

from test_trust_attacks import assert_refused, run_child

pytest.importorskip("pandas")


def glob(module, name):  # GLOBAL (protocol 0 spelling, as the red team's files)
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def x(text):
    b = text.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def put(i):
    return b"q" + bytes([i])


def get(i):
    return b"h" + bytes([i])


NEW_DTI = glob("pandas.core.indexes.datetimes", "_new_DatetimeIndex")
NEW_TDI = glob("pandas.core.indexes.timedeltas", "_new_TimedeltaIndex")


def _objbuf(helper, use=True):
    """helper(numpy.ndarray, {'shape': (1,), 'dtype': 'O', 'buffer': bytearray(b'A' * 8)})"""
    s = b"\x80\x05\x96" + struct.pack("<Q", 8) + b"\x41" * 8 + put(0) + b"0"
    s += helper + b"(" + glob("numpy", "ndarray") + b"}(" + x("shape") + b"K\x01\x85" \
        + x("dtype") + x("O") + x("buffer") + get(0) + b"u" + b"tR"
    if use:
        s += put(1) + b"0" + glob("builtins", "list") + get(1) + b"\x85R"
    return s + b"."


def _gadget(helper, cls, kwargs_ops):
    return b"\x80\x05" + helper + b"(" + cls + b"}(" + kwargs_ops + b"u" + b"tR."


def test_new_index_helpers_only_make_their_index():
    cases = {
        "objbuf": ("loads", _objbuf(NEW_DTI), {"trusted": True}),
        "objbuf-no-use": ("loads", _objbuf(NEW_DTI, use=False), {"trusted": True}),
        "objbuf-td": ("loads", _objbuf(NEW_TDI), {"trusted": True}),
        "bytes-source": ("loads", _gadget(NEW_DTI, glob("builtins", "bytes"),
                                          x("source") + b"\x8a\x04" + struct.pack("<I", 1 << 30)),
                         {"trusted": True}),
        "timestamp-string": ("loads", _gadget(NEW_DTI, glob("pandas", "Timestamp"),
                                              x("ts_input") + x("1." * 50_000)),
                             {"trusted": True}),
        # the right class, but no data: cls.__new__(DatetimeIndex, **file keywords)
        "no-data": ("loads", _gadget(NEW_DTI, glob("pandas", "DatetimeIndex"),
                                     x("name") + x("n")), {"trusted": True}),
    }
    res = run_child(cases)
    assert_refused(res, "only DatetimeIndex", "only TimedeltaIndex", "without 'data'",
                   "at most 1024")  # (the 100,000-char string one level down, since round 8)


def test_real_datetime_indexes_still_load():
    import numpy as np
    import pandas as pd

    import fastjoblib
    for obj in (pd.date_range("2020-01-01", periods=5, freq="D", name="d"),
                pd.date_range("2020-01-01", periods=3, tz="UTC"),
                pd.timedelta_range("1 day", periods=4), pd.period_range("2020-01", periods=3,
                                                                         freq="M")):
        for proto in (2, 4, 5):
            back = fastjoblib.loads(pickle.dumps(obj, protocol=proto), trusted=True)
            assert back.equals(obj) and back.name == obj.name
    s = pd.Series(np.arange(3), index=pd.date_range("2021-01-01", periods=3))
    assert fastjoblib.loads(pickle.dumps(s), trusted=True).equals(s)


def _block_index(length, blocs, blengths):
    def ilist(v):
        return b"(" + b"".join(b"J" + struct.pack("<i", n) for n in v) + b"l"
    return glob("pandas._libs.sparse", "BlockIndex") + b"(J" + struct.pack("<i", length) \
        + ilist(blocs) + ilist(blengths) + b"tR"


def test_sparse_block_index_is_checked_before_use():
    n = 10 ** 7
    bad = _block_index(10, [0, n], [n, -(n - 1)])
    sparse_over_bad = b"\x80\x02" + bad + put(0) + b"0" + glob("pandas.arrays", "SparseArray") \
        + b"((G" + struct.pack(">d", 1.0) + b"l" + get(0) + b"tR."
    cases = {"negative-length": ("loads", sparse_over_bad, {"trusted": True}),
             "index-alone": ("loads", b"\x80\x02" + bad + b".", {"trusted": True}),
             "overlapping": ("loads", b"\x80\x02" + _block_index(10, [0, 2], [4, 2]) + b".",
                             {"trusted": True}),
             "past-the-end": ("loads", b"\x80\x02" + _block_index(10, [8], [4]) + b".",
                              {"trusted": True})}
    # (pandas itself refuses overlapping and past-the-end blocks; not negative lengths)
    assert_refused(run_child(cases), "sparse blocks", "overlaps", "extends beyond end")


def test_real_sparse_arrays_still_load():
    import numpy as np
    import pandas as pd

    import fastjoblib
    for kind in ("integer", "block"):
        arr = pd.arrays.SparseArray([0, 0, 1.5, 2.5, 0, 0, 3.0, 0], kind=kind)
        back = fastjoblib.loads(pickle.dumps(arr), trusted=True)
        assert np.array_equal(np.asarray(back), np.asarray(arr))
        assert type(back.sp_index) is type(arr.sp_index)
    adjacent = pd.arrays.SparseArray(np.array([1.0, 2.0, 0, 3.0]), kind="block")
    assert np.array_equal(np.asarray(fastjoblib.loads(pickle.dumps(adjacent), trusted=True)),
                          np.asarray(adjacent))


def test_sparse_array_tuple_state_refused():
    import numpy as np
    state = ((1, (100_000,), np.dtype("O"), False, [1]), (np.nan, None))
    body = pickle.dumps(state, protocol=2)[2:-1]
    stream = b"\x80\x02" + glob("pandas.arrays", "SparseArray") + b")\x81" + body + b"b."
    assert_refused(run_child({"legacy": ("loads", stream, {"trusted": True})}),
                   "pre-0.24 tuple state")


def test_numpy_views_of_writable_buffers_refused():
    n = 8
    s = b"\x80\x05\x96" + struct.pack("<Q", n) + b"\x00" * n + put(0) + b"0"
    s += glob("numpy.ma", "MaskedArray") + put(1) + b"0"
    s += glob("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked") + glob("pandas", "Categorical") \
        + b"J" + struct.pack("<i", 82904607) + b"N\x87R"
    s += b"}(" + x("_ndarray") + get(1) + get(0) + b"\x85R"
    s += x("_dtype") + glob("pandas", "CategoricalDtype") + b"((" + x("a") + b"l\x89tR" + b"u" + b"b"
    s += get(1) + get(0) + b"\x85R\x86."
    matrix = b"\x80\x05" + glob("numpy", "matrix") + b"\x96" + struct.pack("<Q", 8) + b"\x00" * 8 \
        + b"N\x89\x87R."
    assert_refused(run_child({"shared-codes": ("loads", s, {"trusted": True}),
                              "matrix": ("loads", matrix, {"trusted": True})}),
                   "a bytearray argument")


def test_caller_buffers_not_viewed():
    import fastjoblib
    buf = bytearray(b"ABCDEFGH")
    data = b"\x80\x05" + glob("numpy.ma", "MaskedArray") + b"\x97\x85R."
    with pytest.raises(pickle.UnpicklingError, match="a PickleBuffer argument"):
        fastjoblib.loads(data, trusted=True, buffers=[pickle.PickleBuffer(buf)])
    import numpy as np  # protocol-5 arrays still load, as copies
    a = np.arange(4.0)
    bufs = []
    data = pickle.dumps(a, protocol=5, buffer_callback=bufs.append)
    back = fastjoblib.loads(data, trusted=True, buffers=bufs)
    assert np.array_equal(back, a) and not np.shares_memory(back, a)


def test_wrapper_shape_range_checked_before_it_is_built():
    import numpy as np
    body = pickle.dumps({"dtype": np.dtype("u1"), "shape": range(10 ** 8), "order": "C",
                         "allow_mmap": False}, protocol=2)[2:-1]
    stream = b"\x80\x02" + glob("joblib.numpy_pickle", "NumpyArrayWrapper") + b")\x81" + body \
        + b"b."
    # under 1 GiB of address space: the 10**8-item tuple alone would need 3.6 GB
    code = ("import io, resource, fastjoblib\n"
            "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
            "for kw in ({'trusted': True}, {}):\n"
            "    try:\n"
            "        fastjoblib.load(io.BytesIO(DATA), **kw)\n"
            "    except Exception as exc:\n"
            "        print(type(exc).__name__, exc)\n")
    if "asan" in os.environ.get("LD_PRELOAD", ""):
        pytest.skip("ASan reserves terabytes of address space")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    p = subprocess.run([sys.executable, "-c", "DATA = " + repr(stream) + "\n" + code],
                       capture_output=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    lines = p.stdout.decode().splitlines()
    assert lines == ["UnpicklingError NumpyArrayWrapper shape has 100000000 dimensions"] * 2, lines


def _cli(path, *flags):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p),
               PYTHONIOENCODING="utf-8:strict")
    return subprocess.run([sys.executable, "-m", "fastjoblib", "inspect", *flags, str(path)],
                          capture_output=True, text=True, env=env, timeout=300)


def test_inspect_cli_survives_surrogates_and_huge_ints(tmp_path):
    sur = tmp_path / "surrogate.pkl"
    sur.write_bytes(pickle.dumps({"_sklearn_version": "1.0\ud800"}, protocol=4))
    x_ = 10 ** 5000
    raw = x_.to_bytes((x_.bit_length() + 8) // 8, "little", signed=True)
    off = tmp_path / "offset.pkl"
    off.write_bytes(b"\x80\x02" + glob("torch._utils", "_rebuild_tensor_v2") + b"(N\x8b"
                    + struct.pack("<i", len(raw)) + raw + b"K\x01\x85K\x01\x85\x89}tR.")
    for path in (sur, off):
        for flags in ((), ("--json",), ("--arrays",), ("--trusted",)):
            p = _cli(path, *flags)
            assert "Traceback" not in p.stderr, (path.name, flags, p.stderr[-2000:])
            assert p.returncode in (0, 1), (path.name, flags, p.returncode)
    assert "\\ud800" in _cli(sur).stdout


# ------------------------------------------------------------------------------------------------
# time and memory: work repeated through the memo, or made up names


def test_decimal_digits_and_exponent_bounded():
    import decimal

    import fastjoblib
    for text in ("1e400000", "1" * 5000, "1e-5000"):
        with pytest.raises(pickle.UnpicklingError, match="4300 digits"):
            fastjoblib.loads(pickle.dumps(decimal.Decimal(text)), trusted=True)
    for text in ("3.14159", "1e4300", "-0.000001", "NaN", "Infinity"):
        d = decimal.Decimal(text)
        back = fastjoblib.loads(pickle.dumps(d), trusted=True)
        assert str(back) == str(d)


def test_same_fraction_made_once():
    from fractions import Fraction

    import fastjoblib
    from fastjoblib import _trust
    big = 3 ** 60_000
    arg = pickle.dumps((big, big + 2), protocol=2)[2:-1]  # the argument tuple
    stream = (b"\x80\x02" + glob("fractions", "Fraction") + put(1) + b"0" + arg + put(2) + b"0"
              + (get(1) + get(2) + b"R0") * 200 + b"N.")
    _trust._fraction.cache_clear()
    assert fastjoblib.loads(stream, trusted=True) is None
    info = _trust._fraction.cache_info()
    assert info.misses == 1 and info.hits == 199, info
    assert fastjoblib.loads(pickle.dumps(Fraction(3, 7)), trusted=True) == Fraction(3, 7)


def test_zoneinfo_no_cache_zone_read_once():
    zoneinfo = pytest.importorskip("zoneinfo")

    import fastjoblib
    try:
        z = zoneinfo.ZoneInfo.no_cache("Europe/Paris")
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip("no time-zone database")
    back = fastjoblib.loads(pickle.dumps([z, z]), trusted=True)
    assert back[0] is zoneinfo.ZoneInfo("Europe/Paris") and back[1] is back[0]


def test_container_of_a_big_list_is_charged_before_the_walks():
    import fastjoblib
    from fastjoblib import BudgetExceededError
    n = 2_000_000
    stream = (b"\x80\x02" + glob("builtins", "list") + glob("builtins", "range") + b"J"
              + struct.pack("<i", n) + b"\x85R\x85R" + put(0) + b"0"
              + glob("builtins", "set") + put(1) + b"0" + get(0) + b"\x85" + put(2) + b"0"
              + (get(1) + get(2) + b"R0") * 3 + b"N.")
    # range: 40 B an element (80 MB); set(list): 64 B an element more (128 MB) > 100 MB
    with pytest.raises(BudgetExceededError):
        fastjoblib.loads(stream, trusted=True, max_bytes=100_000_000)
    # (the same set(list) again counts the list's size against the call limit: session 11)
    once = stream.replace((get(1) + get(2) + b"R0") * 3, get(1) + get(2) + b"R0")
    assert fastjoblib.loads(once, trusted=True, max_bytes=400_000_000) is None
    with pytest.raises(pickle.UnpicklingError, match="pandas constructor calls"):
        fastjoblib.loads(stream, trusted=True, max_bytes=400_000_000)


def test_getattr_chain_of_made_up_names():
    import fastjoblib
    from fastjoblib import UntrustedGlobalError
    a = "a" * 4096
    s = b"\x80\x04" + glob("pandas", "DataFrame")
    s += b"X" + struct.pack("<I", len(a)) + a.encode() + put(0) + b"0"
    for _ in range(40):
        s = s[:2] + glob("builtins", "getattr") + s[2:] + get(0) + b"\x86R"
    s += b"."
    report = fastjoblib.inspect(s)
    assert max(len(n) for n in report["globals"]) < 1024 + 4096
    with pytest.raises(UntrustedGlobalError) as info:
        fastjoblib.loads(s, trusted=True)
    assert len(str(info.value)) < 10_000


def _shared_struct_state(nfields):
    """ops: numpy.dtype at memo 1, u1 at memo 0, a structured state of `nfields` u1 fields at
    memo 4 (names tuple and fields dict shared), 'V<n>' reduce args at memo 5"""
    s = glob("numpy", "dtype") + put(1) + b"0"
    s += get(1) + x("u1") + b"\x89\x88\x87R" + put(0) + b"0"
    s += b"("
    for i in range(nfields):
        s += x("f%d" % i) + put(10 + i)
    s += b"t" + put(2) + b"0}("
    for i in range(nfields):
        s += get(10 + i) + get(0) + b"M" + struct.pack("<H", i) + b"\x86"
    s += b"u" + put(3) + b"0"
    s += b"(K\x03" + x("|") + b"N" + get(2) + get(3) + b"M" + struct.pack("<H", nfields) \
        + b"K\x01K\x10t" + put(4) + b"0"
    s += x("V%d" % nfields) + b"\x89\x88\x87" + put(5) + b"0"
    return s


def test_one_dtype_state_applied_again_and_again_is_bounded():
    import fastjoblib
    s = b"\x80\x02" + _shared_struct_state(200)
    s += (get(1) + get(5) + b"R" + get(4) + b"b0") * 3000 + b"N."
    with pytest.raises(pickle.UnpicklingError, match="500,000 structured fields"):
        fastjoblib.loads(s, trusted=True)
    few = b"\x80\x02" + _shared_struct_state(200) + (get(1) + get(5) + b"R" + get(4) + b"b0") * 10
    assert fastjoblib.loads(few + b"N.", trusted=True) is None


def test_inspect_builds_a_shared_dtype_state_once(monkeypatch):
    import fastjoblib
    from fastjoblib import _inspect
    s = b"\x80\x02" + _shared_struct_state(50)
    s += glob("joblib.numpy_pickle", "NumpyArrayWrapper") + put(6) + b"0)" + put(7) + b"0"
    rec = (get(6) + get(7) + b"\x81}(" + x("dtype") + get(1) + get(5) + b"R" + get(4) + b"b"
           + x("shape") + b"K\x00\x85" + x("order") + x("C") + b"ub0")
    s += rec * 300 + b"N."
    calls = []
    real = _inspect._dtype_build

    def counting(sym, depth):
        calls.append(sym.cls_name())
        return real(sym, depth)
    monkeypatch.setattr(_inspect, "_dtype_build", counting)
    report = fastjoblib.inspect(s)
    assert len(report["arrays"]) == 300
    assert len(calls) <= 3, len(calls)  # u1 and the structured dtype (not once per record)
    assert len({r["dtype"] for r in report["arrays"]}) == 1


def test_inspect_searches_a_repeated_storage_blob_once(monkeypatch):
    import fastjoblib
    from fastjoblib import _inspect
    blob = (b"ctorch\n" + b"A" * 40) * 80
    s = b"\x80\x02" + glob("torch.storage", "_load_from_bytes") + put(0) + b"0"
    s += b"B" + struct.pack("<I", len(blob)) + blob + b"\x85" + put(1) + b"0"
    s += (get(0) + get(1) + b"R0") * 500 + b"N."
    searched = []

    class Counting:
        def search(self, data):
            searched.append(len(data))
            return _inspect.re.compile(rb"ctorch\n([A-Za-z0-9_]{1,40})Storage\n").search(data)
    monkeypatch.setattr(_inspect, "_STORAGE_CLASS", Counting())
    fastjoblib.inspect(s)
    assert searched == [512]


def test_inspect_names_the_same_long_global_once():
    import tracemalloc

    import fastjoblib
    m, n = "m" * 4096, "n" * 4096
    s = b"\x80\x04" + x(m) + put(0) + b"0" + x(n) + put(1) + b"0"
    s += (get(0) + get(1) + b"\x93") * 10_000 + b"."
    tracemalloc.start()
    try:
        report = fastjoblib.inspect(s)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert report["globals"] == {f"{m}.{n}": 10_000}
    assert peak < 30 << 20, peak  # one 8 KB name, not 10,000 (80 MB)


def test_pandas_object_rechecked_once_per_call(monkeypatch):
    import numpy as np
    import pandas as pd

    import fastjoblib
    from fastjoblib import _guard
    df = pd.DataFrame({"a": np.arange(3), "b": np.arange(3.0), "c": ["x", "y", "z"]})
    body = pickle.dumps(df, protocol=2)
    assert body.startswith(b"\x80\x02") and body.endswith(b".")
    body = body[2:-1]
    top = max(int(arg) for op, arg, _ in pickletools.genops(pickle.dumps(df, protocol=2))
              if op.name in ("BINPUT", "LONG_BINPUT"))
    d, lst, arg = top + 1, top + 2, top + 3

    def lput(i):
        return b"r" + struct.pack("<I", i)

    def lget(i):
        return b"j" + struct.pack("<I", i)
    s = b"\x80\x02" + body + lput(d) + b"0" + glob("builtins", "list") + lput(lst) + b"0"
    s += b"(" + lget(d) * 64 + b"t\x85" + lput(arg) + b"0"
    s += (lget(lst) + lget(arg) + b"R0") * 50 + b"N."
    calls = []
    real = _guard._pd_recheck

    def counting(pd_, obj):
        calls.append(type(obj).__name__)
        return real(pd_, obj)
    monkeypatch.setattr(_guard, "_pd_recheck", counting)
    assert fastjoblib.loads(s, trusted=True) is None
    # list() only references the items of its argument: not re-checked at each of the 50 calls
    # (was 64 re-checks a call)
    assert calls.count("DataFrame") <= 2, len(calls)


def _doubling(levels, leaf_ops, wrap=b"l"):
    """a container whose two items are the container below, `levels` deep (memo 0..levels)"""
    s = leaf_ops + put(0) + b"0"
    for i in range(1, levels + 1):
        s += b"(" + get(i - 1) + get(i - 1) + wrap + put(i) + b"0"
    return s + get(levels)


def test_stringifying_shared_structure_is_bounded():
    import fastjoblib
    deque = glob("collections", "deque") + b"("  # deque([x, x]) of the level below
    s_deque = x("leaf") + put(0) + b"0"
    for i in range(1, 21):
        s_deque += deque + get(i - 1) + get(i - 1) + b"l\x85R" + put(i) + b"0"
    cases = {
        # str() of a list of 2**20 leaves, again and again
        "str-list": b"\x80\x02" + glob("builtins", "str") + _doubling(20, x("a")) + b"\x85R.",
        # leaves of 60,000 characters: 2**15 of them is a 2 GB text
        "long-leaves": b"\x80\x02" + glob("builtins", "str") + _doubling(15, x("a" * 60_000))
                       + b"\x85R.",
        # nesting through deques, which the walk did not count
        "deques": b"\x80\x02" + glob("builtins", "str") + s_deque + get(20) + b"\x85R.",
    }
    for name, stream in cases.items():
        with pytest.raises(pickle.UnpicklingError, match="shared parts|made into text"):
            fastjoblib.loads(stream, trusted=True)
    ok = b"\x80\x02" + glob("builtins", "str") + _doubling(5, x("a")) + b"\x85R."
    assert fastjoblib.loads(ok, trusted=True).count("'a'") == 32


def test_big_lists_of_atoms_counted_once_per_load():
    from fastjoblib import _guard
    known = {}
    big = list(range(10_000))
    assert _guard._expanded_slots((big,), known) == (10_001, 10_001)
    assert known[id(big)][0] is big  # a fresh tuple holding it next time reuses the count
    assert _guard._expanded_slots(([big, big],), known) == (20_003, 10_003)
    big.append(-1)  # grown (APPEND): counted again
    assert _guard._expanded_slots((big,), known) == (10_002, 10_002)
    text = ["a" * 160] * 100  # text leaves are walked: 160 characters = 10 slots each
    assert _guard._expanded_slots(text, known) == (1100, 100)


def test_fresh_tuples_around_one_big_list_do_not_rewalk_it(monkeypatch):
    import fastjoblib
    from fastjoblib import _guard
    n = 100_000
    s = (b"\x80\x02" + glob("builtins", "list") + glob("builtins", "range") + b"J"
         + struct.pack("<i", n) + b"\x85R\x85R" + put(0) + b"0"
         + glob("builtins", "tuple") + put(1) + b"0"
         + (get(1) + get(0) + b"\x85\x85R0") * 200 + b"N.")
    seen = []
    real = _guard._expanded_slots

    def counting(root, known=None):
        seen.append(id(root))
        return real(root, known)
    monkeypatch.setattr(_guard, "_expanded_slots", counting)
    real_isdisjoint_walks = []
    orig_map = map

    def counting_map(f, it, *rest):  # the atoms pass over the big list
        if f is type and getattr(it, "__len__", None) and len(it) == n:
            real_isdisjoint_walks.append(1)
        return orig_map(f, it, *rest)
    monkeypatch.setattr(_guard, "map", counting_map, raising=False)
    assert fastjoblib.loads(s, trusted=True) is None
    assert len(seen) == 200  # every call's fresh tuple is looked at ...
    assert len(real_isdisjoint_walks) == 1  # ... but the 100k-item list is scanned once
