"""Attacks on ``trusted=`` as a security boundary (docs/SECURITY.md), one class per section.

Each hostile stream runs in a child process (a crash there fails the test instead of killing the
run) under a 4 GiB address-space limit; the child reports what happened as JSON. The boundary
holds when every stream raises a clear exception (or loads harmlessly) and the child survives.
"""
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastjoblib
from fastjoblib._trust import DEFAULT_TRUSTED, is_denied, make_find_class


# ------------------------------------------------------------------------------------------------
# A tiny pickle assembler: hostile streams are written opcode by opcode.

def g(module, name):
    """STACK_GLOBAL of module.name"""
    return s(module) + s(name) + b"\x93"


def s(text):
    b = text.encode()
    return b"\x8c" + bytes([len(b)]) + b


def i(n):
    return b"J" + struct.pack("<i", n)


def by(data):
    return b"C" + bytes([len(data)]) + data if len(data) < 256 else b"B" + struct.pack("<I", len(data)) + data


def p4(body):
    return b"\x80\x04" + body + b"."


# ------------------------------------------------------------------------------------------------
# The child

_CHILD = textwrap.dedent(r"""
    import json, os, pickle, resource, sys, time
    if "asan" not in os.environ.get("LD_PRELOAD", ""):  # ASan reserves terabytes of address space
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    import fastjoblib
    cases = pickle.loads(sys.stdin.buffer.read())
    out = {}
    for name, (how, data, kw) in cases.items():
        t = time.monotonic()
        try:
            if how == "loads":
                fastjoblib.loads(data, **kw)
            elif how == "load":
                import io
                fastjoblib.load(io.BytesIO(data), **kw)
            elif how == "inspect":
                fastjoblib.inspect(data)
            res = "loaded"
        except Exception as exc:
            res = f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
        out[name] = [res, time.monotonic() - t]
    print(json.dumps(out))
""")


def run_child(cases, timeout=300):
    """cases: {name: (how, bytes, kwargs)} -> {name: (result text, seconds)}"""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    p = subprocess.run([sys.executable, "-c", _CHILD], input=pickle.dumps(cases),
                       capture_output=True, timeout=timeout, env=env)
    assert p.returncode == 0, (p.returncode, p.stderr.decode()[-3000:])
    return {k: tuple(v) for k, v in json.loads(p.stdout.decode().splitlines()[-1]).items()}


def assert_refused(results, *words):
    for name, (res, _) in results.items():
        assert res != "loaded", f"{name}: a hostile stream loaded"
        assert any(w in res for w in words), f"{name}: {res}"


# ------------------------------------------------------------------------------------------------
# 1. Memory exposed through __array_interface__ and friends

def _namespace_with(attr, value_ops):
    """SimpleNamespace() given `attr` through BUILD; then handed to numpy.matrix."""
    return (g("numpy", "matrix") + g("types", "SimpleNamespace") + b")R}" + s(attr) + value_ops
            + b"sb\x85R")


_IFACE = (b"}(" + s("shape") + b"K\x01\x85" + s("typestr") + s("<i8") + s("data")
          + b"\x8a\x05AAAAA\x89\x86" + s("version") + b"K\x03u")


def test_array_interface_from_the_issue():
    data = (b"\x80\x04\x8c\x05numpy\x8c\x06matrix\x93\x8c\x05types\x8c\x0fSimpleNamespace\x93)R}"
            b"\x8c\x13__array_interface__}(\x8c\x05shapeK\x01\x85\x8c\x07typestr\x8c\x03<i8\x8c"
            b"\x04data\x8a\x05AAAAA\x89\x86\x8c\x07versionK\x03usb\x85R.")
    assert_refused(run_child({"issue": ("loads", data, {"trusted": True})}), "special attribute")


def test_memory_exposing_attributes_never_reach_a_constructor():
    cases = {}
    for attr in ("__array_interface__", "__array_struct__", "__array__", "__array_priority__",
                 "__class__", "__dict__", "__buffer__"):
        cases[f"ns-{attr}"] = ("loads", p4(_namespace_with(attr, _IFACE)), {"trusted": True})
    # other allowed classes with a __dict__, other array constructors
    for mod, cls in (("collections", "OrderedDict"), ("collections", "UserDict"),
                     ("collections", "UserList"), ("collections", "Counter")):
        for cmod, ctor in (("numpy", "matrix"), ("numpy.ma", "MaskedArray"), ("numpy", "dtype"),
                           ("pandas", "Series"), ("pandas", "Index")):
            body = (g(cmod, ctor) + g(mod, cls) + b")R}" + s("__array_interface__") + _IFACE
                    + b"sb\x85R")
            cases[f"{cls}-{ctor}"] = ("loads", p4(body), {"trusted": True})
    # slot state (setattr) rather than the instance dict
    cases["slotstate-class"] = ("loads", p4(g("types", "SimpleNamespace") + b")RN}" + s("__class__")
                                            + g("collections", "OrderedDict") + b"s\x86b"),
                                {"trusted": True})
    # a mapping straight into the constructor (SimpleNamespace(mapping), Python 3.13+; a
    # TypeError before)
    cases["ctor-mapping"] = ("loads", p4(g("numpy", "matrix") + g("types", "SimpleNamespace")
                                         + b"}" + s("__array_interface__") + _IFACE
                                         + b"s\x85R\x85R"), {"trusted": True})
    assert_refused(run_child(cases), "special attribute", "TypeError")


def test_default_classes_expose_memory_only_as_numpy_does():
    """Audit: no default-trusted class defines __array_interface__ / __array_struct__ itself
    unless it is an ndarray or NumPy scalar (whose memory NumPy made)."""
    import importlib
    offenders = []
    for name in sorted(DEFAULT_TRUSTED):
        mod, _, qual = name.rpartition(".")
        try:
            obj = getattr(importlib.import_module(mod), qual)
        except Exception:
            continue
        if isinstance(obj, type) and any(
                a in vars(k) for k in obj.__mro__ for a in ("__array_interface__", "__array_struct__")):
            if not issubclass(obj, (np.ndarray, np.generic)):
                offenders.append(name)
    assert offenders == []


# ------------------------------------------------------------------------------------------------
# 2. dtype and ndarray states that lie

def _dtype(code, state):
    return g("numpy", "dtype") + b"(" + s(code) + b"\x89\x88tR" + state + b"b"


def _state(endian="|", sub=b"N", names=b"N", fields=b"N", elsize=-1, align=-1, flags=0):
    return (b"(K\x03" + s(endian) + sub + names + fields + i(elsize) + i(align) + i(flags) + b"t")


def _array_of(dtype_ops, raw):
    return (g("numpy._core.multiarray", "_reconstruct") + b"(" + g("numpy", "ndarray") + b"K\x00\x85"
            + by(b"b") + b"tR(K\x01K\x01\x85" + dtype_ops + b"\x89" + by(raw) + b"tb")


def test_dtype_state_from_the_issue():
    data = (b"\x80\x04\x8c\x08builtins\x8c\x04list\x93(\x8c\x16numpy._core.multiarray\x8c\x0c_reconstruct"
            b"\x93(\x8c\x05numpy\x8c\x07ndarray\x93(K\x00tC\x01btR(K\x01(K\x01t\x8c\x05numpy\x8c\x05dtype"
            b"\x93(\x8c\x02O8\x89\x88tR(K\x03\x8c\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89C"
            b"\x08AAAAAAAAtbtR.")
    assert_refused(run_child({"issue": ("loads", data, {"trusted": True})}), "refused")


def test_dtype_lies_are_refused_or_rebuilt():
    obj_field = b"}(" + s("a") + _dtype("O8", _state(flags=63)) + b"K\x00\x86u"
    cases = {
        # an object dtype whose flags deny holding references, in an array of raw bytes
        "object-flags-0": _array_of(_dtype("O8", _state(flags=0)), b"A" * 8),
        # a structured dtype with an object field and flags 0
        "struct-object-flags-0": _array_of(_dtype("V8", _state(names=b"(" + s("a") + b"t",
                                                               fields=obj_field, elsize=8,
                                                               flags=0)), b"A" * 8),
        # itemsize smaller than its fields
        "itemsize-too-small": _array_of(_dtype("V8", _state(
            names=b"(" + s("a") + b"t", fields=b"}(" + s("a") + _dtype("f8", _state("<"))
            + b"K\x04\x86u", elsize=4, flags=0)), b"A" * 4),
        # a plain dtype turned into a structured one
        "kind-change": _array_of(_dtype("f8", _state(names=b"(" + s("a") + b"t", fields=obj_field,
                                                     elsize=8, flags=63)), b"A" * 8),
        # subarray whose base holds objects, flags 0
        "subarray-object": _array_of(_dtype("V16", _state(sub=b"(" + _dtype("O8", _state(flags=63))
                                                          + b"K\x02\x85\x86", elsize=16, flags=0)),
                                     b"A" * 16),
        # datetime without its unit
        "datetime-no-unit": _array_of(_dtype("M8", _state("<")), b"A" * 8),
        # unicode itemsize not a multiple of 4
        "unicode-odd": _array_of(_dtype("U1", _state("<", elsize=5, align=4, flags=8)), b"A" * 5),
        # raw bytes shorter than the shape needs
        "short-raw": (g("numpy._core.multiarray", "_reconstruct") + b"(" + g("numpy", "ndarray")
                      + b"K\x00\x85" + by(b"b") + b"tR(K\x01J\x00\x00\x00\x10\x85"
                      + _dtype("f8", _state("<")) + b"\x89" + by(b"A" * 8) + b"tb"),
    }
    res = run_child({k: ("loads", p4(v), {"trusted": True}) for k, v in cases.items()})
    assert_refused(res, "refused", "NumPy refuses", "dtype", "state")


def test_dtype_changed_after_use_is_refused():
    """BUILD a dtype again once a structured dtype (or an array) uses it: the refcount rule."""
    inner = g("numpy", "dtype") + b"(" + s("V8") + b"\x89\x88tR\x94"  # memo 0
    body = (inner + _state(elsize=8, flags=0) + b"b0"  # built once, popped
            + g("numpy", "dtype") + b"(" + s("V8") + b"\x89\x88tR"
            + b"(K\x03" + s("|") + b"N(" + s("a") + b"t}(" + s("a") + b"h\x00K\x00\x86u"
            + i(8) + i(1) + i(0) + b"tb"  # a struct using it
            + b"h\x00(K\x03" + s("|") + b"NNN" + i(8) + i(-1) + i(63) + b"tb")  # again
    res = run_child({"rebuild": ("loads", p4(body + b"\x86"), {"trusted": True})})
    assert_refused(res, "referenced elsewhere", "refused")


def test_singleton_dtype_not_rebuilt():
    """dtype('f8', False, False) is NumPy's shared float64 dtype: BUILD on it is refused."""
    body = g("numpy", "dtype") + b"(" + s("f8") + b"\x89\x89tR" + _state(">") + b"b"
    res = run_child({"singleton": ("loads", p4(body), {"trusted": True})})
    assert_refused(res, "did not create", "global", "referenced elsewhere")
    assert np.dtype("f8").byteorder == "="


def test_random_state_index_out_of_range():
    """MT19937's pos indexes a 624-word buffer unchecked by NumPy: every later draw would read
    past it. The hostile streams are real pickles with pos = 1000000."""
    good = pickle.dumps(np.random.RandomState(0), 4)
    raw = pickle.dumps(np.random.MT19937(0), 4)
    import re
    pos = re.compile(rb"\x8c\x03pos\x94M..", re.S)  # 'pos': BININT2
    assert pos.search(raw) and pos.search(good)
    far = b"\x8c\x03pos\x94J\x40\x42\x0f\x00"
    res = run_child({"mt-pos": ("loads", pos.sub(far, raw, 1), {"trusted": True}),
                     "rs-pos": ("loads", pos.sub(far, good, 1), {"trusted": True}),
                     "good": ("loads", good, {"trusted": True})})
    assert res.pop("good")[0] == "loaded"
    assert_refused(res, "pos must be in 0..624")


# ------------------------------------------------------------------------------------------------
# 3. No change to objects that existed before the load

def test_nat_singleton_from_the_issue():
    data = (b"\x80\x04\x8c\x1bpandas._libs.tslibs.nattype\x8c\r_nat_unpickle\x93(tR(\x8c\tisoformat"
            b"\x8c\x05PWNED\x8c\x08to_numpyNdb.")
    child = textwrap.dedent(f"""
        import pandas as pd, fastjoblib
        try:
            fastjoblib.loads({data!r}, trusted=True)
            print("loaded")
        except Exception as exc:
            print(type(exc).__name__, exc)
        print(pd.NaT.isoformat())
    """)
    p = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    out = p.stdout.splitlines()
    assert p.returncode == 0 and out[0].startswith("UnpicklingError"), p
    assert out[-1] == "NaT"


def test_shared_objects_are_never_mutated():
    cases = {
        # SETITEMS / APPENDS / ADDITEMS on a global
        "setitems-global": p4(g("pandas", "NA") + b"(" + s("k") + s("v") + b"u"),
        "appends-global": p4(g("collections", "deque") + b"(K\x01e"),
        # BUILD on a cached ZoneInfo returned by a trusted callable
        "build-cached-zone": p4(g("builtins", "getattr") + b"(" + g("zoneinfo", "ZoneInfo")
                                + s("_unpickle") + b"tR(" + s("UTC") + b"K\x01tR}" + s("key")
                                + s("x") + b"sb"),
        # calling something that is not a global (a list the stream made)
        "call-non-global": p4(b"](tR"),
        # a dtype singleton through copy=False, given a new byte order
        "dtype-singleton": p4(g("numpy", "dtype") + b"(" + s("i8") + b"\x89\x89tR"
                              + _state(">") + b"b"),
    }
    res = run_child({k: ("loads", v, {"trusted": True}) for k, v in cases.items()})
    assert_refused(res, "did not create", "global", "only globals", "refused")


# ------------------------------------------------------------------------------------------------
# 4. Time linear in the file's size

def _shared_tree_dtype(depth):
    dt = np.dtype("i1")
    for _ in range(depth):
        dt = np.dtype({"names": ["a", "b"], "formats": [dt, dt], "offsets": [0, 0], "itemsize": 1})
    return dt


def test_shared_dtype_tree_is_linear():
    """A structured dtype whose two fields share the sub-dtype below, 40 levels deep: 2**40
    fields once expanded, a few KB in the file. Under trusted= it is refused at once (NumPy itself
    walks the expanded tree in np.empty / repr); fastjoblib's own walks (the array-record check,
    inspect) are linear."""
    dt = _shared_tree_dtype(40)
    plain = pickle.dumps(dt, 4)
    assert len(plain) < 8000
    res = run_child({"loads": ("loads", plain, {"trusted": True}),
                     "inspect": ("inspect", plain, {})}, timeout=120)
    assert "more than 100000 fields" in res["loads"][0], res
    assert res["inspect"][0] == "loaded", res
    # a joblib array record of a moderately deep one: the record check and inspect are linear
    # (depth 15: 65535 expanded fields, under the limit)
    dt16 = _shared_tree_dtype(15)
    buf = io.BytesIO()
    fastjoblib.dump(np.zeros(1, dtype=dt16), buf)
    res = run_child({"load": ("load", buf.getvalue(), {"trusted": True}),
                     "load-unrestricted": ("load", buf.getvalue(), {}),
                     "inspect": ("inspect", buf.getvalue(), {})}, timeout=120)
    for name, (r, _) in res.items():
        assert r == "loaded", (name, r)


def test_hash_flooding_is_refused():
    mod = 2**61 - 1
    keys = [k * mod + 7 for k in range(1, 3000)]
    as_dict = pickle.dumps({k: None for k in keys[:200]}, 4)
    as_set = pickle.dumps(set(keys[:200]), 4)
    as_frozenset = pickle.dumps(frozenset(keys[:200]), 4)
    as_call = p4(g("builtins", "set") + pickle.dumps(keys[:200], 2)[2:-1] + b"\x85R")
    # many containers with the same keys are not a flood (the count is per container)
    fine = pickle.dumps([{k: None for k in range(5000)}]
                        + [{0: i, 1.5: i, (1, 2): i, "a": i} for i in range(3000)]
                        + [{keys[0], keys[1]} for _ in range(3000)], 4)
    res = run_child({"dict": ("loads", as_dict, {"trusted": True}),
                     "set": ("loads", as_set, {"trusted": True}),
                     "frozenset": ("loads", as_frozenset, {"trusted": True}),
                     "set-call": ("loads", as_call, {"trusted": True}),
                     "fine": ("loads", fine, {"trusted": True})})
    assert res.pop("fine")[0] == "loaded"
    assert_refused(res, "hash flooding")


def test_slow_constructors_take_only_what_they_pickle_as():
    import decimal
    import fractions
    cases = {
        "fraction-str": p4(g("fractions", "Fraction") + s("1e9999999") + b"\x85R"),
        "fraction-huge": p4(g("fractions", "Fraction") + b"\x8b" + struct.pack("<i", 1 << 20)
                            + b"\x01" * (1 << 20) + b"K\x03\x86R"),
        "decimal-huge-int": p4(g("decimal", "Decimal") + b"\x8b" + struct.pack("<i", 1 << 20)
                               + b"\x01" * (1 << 20) + b"\x85R"),
    }
    res = run_child({k: ("loads", v, {"trusted": True}) for k, v in cases.items()}, timeout=120)
    assert_refused(res, "at most 100000 bits")
    for proto in range(6):
        obj = [fractions.Fraction(3, 7), decimal.Decimal("-1.5e-7"), fractions.Fraction(2**200, 3)]
        assert fastjoblib.loads(pickle.dumps(obj, proto), trusted=True) == obj


# ------------------------------------------------------------------------------------------------
# 5. Memory within a budget

def test_range_blowup_from_the_issue():
    data = b"\x80\x04\x8c\x08builtins\x8c\x04list\x93(\x8c\x08builtins\x8c\x05range\x93(J\x00\x87\x93\x03tRtR."
    res = run_child({"issue": ("loads", data, {"trusted": True})})
    assert "BudgetExceededError" in res["issue"][0], res
    assert "max_bytes" in res["issue"][0]


def test_allocations_from_small_numbers_are_budgeted():
    cases = {
        "bytes-n": p4(g("builtins", "bytes") + b"\x8a\x05\x00\x00\x00\x00\x01\x85R"),
        "bytearray-n": p4(g("builtins", "bytearray") + b"\x8a\x05\x00\x00\x00\x00\x01\x85R"),
        "ndarray-shape": p4(g("numpy", "ndarray") + b"(J\x00\x00\x01\x00J\x00\x00\x01\x00t\x85R"),
        "reconstruct-state": p4(g("numpy._core.multiarray", "_reconstruct") + b"(" + g("numpy", "ndarray")
                                + b"K\x00\x85" + by(b"b") + b"tR(K\x01(J\x00\x00\x00\x08t"
                                + g("numpy", "dtype") + b"(" + s("O8") + b"\x89\x88tR" + _state(flags=63)
                                + b"b\x89]tb"),
        "tuple-range": p4(g("builtins", "tuple") + g("builtins", "range") + b"J\x00\x00\x00\x40\x85R\x85R"),
        "series-rangeindex": p4(g("pandas", "Series") + b"K\x01" + g("pandas", "RangeIndex")
                                + b"J\x00\x00\x00\x40\x85R\x86R"),
    }
    res = run_child({k: ("loads", v, {"trusted": True}) for k, v in cases.items()})
    assert_refused(res, "BudgetExceededError", "refused")


def test_compressed_bomb_is_budgeted(tmp_path):
    """A small zlib file whose array is 256 MiB of zeros: refused under max_bytes=64 MiB before
    the memory is taken, refused by the default budget of a compressed file (64 MiB + 100 x its
    size), and loads when max_bytes allows it."""
    path = str(tmp_path / "bomb.pkl.z")
    fastjoblib.dump(np.zeros(32 << 20), path, compress=("zlib", 9))
    small = os.path.getsize(path)
    assert small < 1 << 20
    with pytest.raises(fastjoblib.BudgetExceededError, match="max_bytes=67108864"):
        fastjoblib.load(path, trusted=True, max_bytes=64 << 20)
    default = (64 << 20) + 100 * small
    with pytest.raises(fastjoblib.BudgetExceededError,
                       match=f"max_bytes={default} \\(the default budget of a compressed file"):
        fastjoblib.load(path, trusted=True)
    assert fastjoblib.load(path, trusted=True, max_bytes=300 << 20).nbytes == 256 << 20
    # the same array uncompressed is within the default budget of an uncompressed file
    plain = str(tmp_path / "plain.pkl")
    fastjoblib.dump(np.zeros(32 << 20), plain)
    assert fastjoblib.load(plain, trusted=True).nbytes == 256 << 20


@pytest.mark.parametrize("codec", ["zlib", "gzip", "bz2", "lzma", "xz", "lz4", "zstd"])
def test_compressed_default_budget_every_codec(codec, tmp_path):
    """Every codec: a file far smaller than 1 MiB that expands to 1 GiB of zeros (which the
    uncompressed default of 1 GiB + 1000 x size would let through) is refused by default."""
    pytest.importorskip({"lz4": "lz4", "zstd": "zstandard"}.get(codec, "zlib"))
    path = str(tmp_path / ("bomb." + codec))
    fastjoblib.dump(np.zeros(16 << 20), path, compress=(codec, 9))  # 128 MiB: fast to write
    size = os.path.getsize(path)
    assert (64 << 20) + 100 * size < 128 << 20, size  # the default is below the array's size
    with pytest.raises(fastjoblib.BudgetExceededError, match="compressed file"):
        fastjoblib.load(path, trusted=True)
    assert fastjoblib.load(path).nbytes == 128 << 20  # unrestricted loads are not budgeted


_RSS_CHILD = textwrap.dedent("""
    import sys, fastjoblib

    def hwm():  # this process's peak RSS (ru_maxrss would include the parent's, kept over exec)
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) * 1024

    base = hwm()
    try:
        fastjoblib.load(sys.argv[1], trusted=True)
        res = "loaded"
    except fastjoblib.BudgetExceededError as exc:
        res = "refused"
    print(res, hwm() - base)
""")


@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                    reason="peak RSS is not the program's under ASan (shadow memory, quarantine)")
def test_xz_bomb_memory_within_budget(tmp_path):
    """xz files carry independent blocks whose headers declare their size; the multithreaded
    decoder decodes a whole block (192 MiB at preset 9) into its own buffer before anything reaches
    the budget. A restricted load decodes serially: its peak memory stays within the budget plus
    the decoder's dictionary (64 MiB at preset 9)."""
    path = str(tmp_path / "bomb.xz")
    fastjoblib.dump(np.zeros(256 << 20, np.uint8), path, compress=("xz", 9))
    budget = (64 << 20) + 100 * os.path.getsize(path)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    p = subprocess.run([sys.executable, "-c", _RSS_CHILD, path], capture_output=True, text=True,
                       timeout=300, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    outcome, grown = p.stdout.split()
    assert outcome == "refused"
    assert int(grown) < budget + (64 << 20) + (48 << 20), (int(grown) >> 20, budget >> 20)


def test_legacy_zfile_bomb_is_budgeted(tmp_path):
    """A joblib < 0.10 ZF container is one zlib stream decompressed before unpickling: under a
    policy the decompression stops at the budget (no 256 MiB bytes object is made)."""
    from oldformats import write_zfile
    payload = pickle.dumps(b"\0" * (256 << 20), 2)
    path = str(tmp_path / "old.pkl")
    with open(path, "wb") as fh:
        write_zfile(fh, payload, 9)
    assert os.path.getsize(path) < 1 << 20
    with pytest.warns(DeprecationWarning):
        with pytest.raises(fastjoblib.BudgetExceededError, match="compressed file"):
            fastjoblib.load(path, trusted=True)
    with pytest.warns(DeprecationWarning):
        assert len(fastjoblib.load(path, trusted=True, max_bytes=1 << 30)) == 256 << 20


def test_budget_argument_rules():
    data = pickle.dumps(np.zeros(1 << 20), 4)  # 8 MiB of array data
    with pytest.raises(ValueError, match="trusted="):
        fastjoblib.loads(data, max_bytes=10)
    with pytest.raises(fastjoblib.BudgetExceededError):
        fastjoblib.loads(data, trusted=True, max_bytes=1 << 20)
    assert fastjoblib.loads(data, trusted=True, max_bytes=64 << 20).shape == (1 << 20,)
    with pytest.raises(ValueError):
        fastjoblib.loads(data, trusted=True, max_bytes=0)
    assert issubclass(fastjoblib.BudgetExceededError, pickle.UnpicklingError)
    assert issubclass(fastjoblib.BudgetExceededError, MemoryError)


def test_budget_is_only_for_the_load():
    """The NumPy memory handler of a restricted load is this load's only: arrays made after it
    (and in unrestricted loads) are not counted or refused."""
    data = pickle.dumps(np.zeros(1000), 4)
    fastjoblib.loads(data, trusted=True, max_bytes=1 << 20)
    big = np.ones(1 << 22)  # 32 MiB, over that budget
    assert big.sum() == 1 << 22
    assert fastjoblib.loads(pickle.dumps(big, 4), trusted=True).shape == big.shape


# ------------------------------------------------------------------------------------------------
# 6. File, network and process access refused even when listed

IO_GADGETS = [
    "logging.FileHandler", "logging.handlers.RotatingFileHandler", "logging.StreamHandler",
    "linecache.getline", "linecache.getlines", "fileinput.input", "shelve.open", "dbm.open",
    "sqlite3.connect", "socket.socket", "socket.create_connection", "urllib.request.urlopen",
    "http.client.HTTPConnection", "tempfile.NamedTemporaryFile", "tempfile.mkstemp", "shutil.copy",
    "shutil.rmtree", "glob.glob", "numpy.load", "numpy.loadtxt", "numpy.genfromtxt",
    "numpy.fromfile", "numpy.fromregex", "numpy.memmap.__new__", "numpy.ma.mrecords.fromtextfile",
    "numpy.ma.mrecords.openfile", "numpy.lib.npyio.DataSource", "numpy.DataSource",
    "numpy.rec.fromfile", "numpy.save", "numpy.savetxt", "pandas.read_csv", "pandas.read_parquet",
    "pandas.read_hdf", "pandas.DataFrame.to_csv", "pandas.DataFrame.to_pickle", "pandas.io.sql.read_sql",
    "pathlib.Path.read_text", "pathlib.Path.write_text", "pathlib.Path.write_bytes",
    "pathlib.Path.unlink", "pathlib.Path.touch", "pathlib.Path.open", "pathlib.Path.iterdir",
    "configparser.ConfigParser", "xml.dom.minidom.parse", "plistlib.load", "mimetypes.init",
    "zipfile.ZipFile", "tarfile.open", "gzip.open", "atexit.register", "warnings.simplefilter",
    "random.seed", "numpy.random.seed", "numpy.random.mtrand.seed", "copyreg.pickle",
    "copyreg.add_extension", "codecs.register", "locale.setlocale", "faulthandler.enable",
    "pandas.set_option", "numpy.set_printoptions", "numpy.seterr", "numpy.copyto", "numpy.put",
]


@pytest.mark.parametrize("name", IO_GADGETS)
def test_io_and_process_gadgets_refused_even_when_listed(name):
    assert is_denied(name), name
    with pytest.raises(ValueError, match="denylist"):
        make_find_class([name])


def test_filehandler_from_the_issue(tmp_path):
    target = str(tmp_path / "created-by-a-file")
    data = p4(g("logging", "FileHandler") + b"(" + s(target) + b"tR")
    with pytest.raises(Exception):
        fastjoblib.loads(data, trusted=True)
    assert not os.path.exists(target)


def test_callables_calling_stream_callables_are_safe():
    """Audit of defaults that call a callable they are given: defaultdict, _reconstructor and the
    numpy.random constructors may only be handed globals that passed the policy (or objects this
    load made), and a call's shared callable result is refused (see docs/SECURITY.md)."""
    cases = {
        # defaultdict with a denied factory: refused at the name, never reaches the constructor
        "defaultdict-eval": p4(g("collections", "defaultdict") + b"(" + g("builtins", "eval") + b"\x85R"),
        # _reconstructor with a base that is not a class the policy allowed
        "reconstructor-os": p4(g("copyreg", "_reconstructor") + b"(" + g("builtins", "object")
                               + g("os", "system") + s("id") + b"tR"),
        # __bit_generator_ctor given a callable that is not a bit generator
        "bitgen-ctor-open": p4(g("numpy.random._pickle", "__bit_generator_ctor") + b"("
                               + g("builtins", "open") + b"\x85R"),
    }
    res = run_child({k: ("loads", v, {"trusted": True}) for k, v in cases.items()})
    assert_refused(res, "refused", "denylist")


# ------------------------------------------------------------------------------------------------
# Compatibility: what legitimately loads still loads

def test_real_data_still_loads_trusted():
    import pandas as pd
    objs = {
        "frame": pd.DataFrame({"a": np.arange(4), "b": list("wxyz"),
                               "t": pd.date_range("2024", periods=4, tz="Europe/Paris")}),
        "nat": [pd.NaT, pd.NA, pd.Timestamp("2024-01-01")],
        "dtypes": [np.dtype([("a", "<i4"), ("b", "O"), ("c", "<f8", (2, 3))], align=True),
                   np.dtype("M8[3s]"), np.dtype(">U7"), np.dtype("f8", metadata={"k": 1}),
                   np.dtype({"names": ["x"], "formats": ["<i2"], "offsets": [4], "itemsize": 12,
                             "titles": ["T"]})],
        "arrays": [np.zeros((3, 2), dtype="i1,f4,S3"), np.array([None, {"a": 1}], dtype=object),
                   np.ma.masked_array([1, 2, 3], mask=[0, 1, 0])],
        "rngs": [np.random.RandomState(3), np.random.default_rng(4),
                 np.random.Generator(np.random.Philox(5))],
    }
    def same(a, b):
        if isinstance(a, list):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        if isinstance(a, np.random.RandomState):
            return repr(a.get_state(legacy=False)) == repr(b.get_state(legacy=False))
        if isinstance(a, np.random.Generator):
            return repr(a.bit_generator.state) == repr(b.bit_generator.state)
        if isinstance(a, np.ndarray):
            return type(a) is type(b) and a.dtype == b.dtype and repr(a) == repr(b)
        if isinstance(a, np.dtype):
            return a == b and a.metadata == b.metadata and a.isalignedstruct == b.isalignedstruct
        return repr(a) == repr(b)

    for name, obj in objs.items():
        for proto in (2, 3, 4, 5):
            out = fastjoblib.loads(pickle.dumps(obj, proto), trusted=True)
            assert same(obj, out), (name, proto)
            buf = io.BytesIO()
            fastjoblib.dump(obj, buf, protocol=proto)
            buf.seek(0)
            fastjoblib.load(buf, trusted=True)
    assert np.dtype("f8").byteorder == "="


# ------------------------------------------------------------------------------------------------
# Found by the red team of 2026-12-06 (each was a crash, a file read, a budget bypass or a hang
# against the first version of this boundary)

def _nab(cls_mod, cls_name, state_ops):
    """pandas' NDArrayBacked unpickler: an array object of cls, then BUILD with (dtype, ndarray)."""
    return (g("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked") + g(cls_mod, cls_name)
            + i(82904607) + b"N\x87R" + state_ops)


def test_red_team_pandas_arrays_with_inconsistent_state():
    import pandas as pd
    bad_codes = pd.Categorical([10, 20])._from_backing_data(np.array([0, 1 << 40], dtype=np.int64))
    cases = {
        "categorical-codes": p4(g("builtins", "list") + pickle.dumps(bad_codes, 2)[2:-1] + b"\x85R"),
        "timedelta-u1": p4(g("builtins", "list") + _nab("pandas.arrays", "TimedeltaArray",
                           pickle.dumps((np.dtype("m8[ns]"), np.arange(3, dtype=np.uint8)), 2)[2:-1]
                           + b"b") + b"\x85R"),
        "no-state-used": p4(g("builtins", "str") + _nab("pandas.arrays", "PeriodArray", b"")
                            + b"\x85R"),
        "no-state-kept": p4(_nab("pandas.arrays", "PeriodArray", b"")),
        "setitems-on-array": p4(_nab("pandas.arrays", "PeriodArray", b"") + b"(J\x00\x00\x00\x00"
                                + i(1) + b"u"),
    }
    res = run_child({k: ("loads", v, {"trusted": True}) for k, v in cases.items()})
    assert_refused(res, "refused", "codes outside", "backed by", "before it got its data",
                   "without its data", "only dicts")


def test_red_team_block_manager_placements():
    import pandas as pd
    df = pd.DataFrame({"a": [1, 2], "b": [3, 4]})
    good = pickle.dumps(df, 4)
    blk = (g("pandas._libs.internals", "_unpickle_block") + pickle.dumps(np.arange(4).reshape(2, 2), 2)[2:-1]
           + pickle.dumps(slice(0, 1 << 30, 1), 2)[2:-1] + i(2) + b"\x87R")
    axes = b"(" + pickle.dumps(pd.Index([10, 20]), 2)[2:-1] + pickle.dumps(pd.RangeIndex(2), 2)[2:-1] + b"l"
    mgr = g("pandas.core.internals.managers", "BlockManager") + blk + b"\x85" + axes + b"\x89\x87R"
    neg = mgr.replace(pickle.dumps(slice(0, 1 << 30, 1), 2)[2:-1],
                      pickle.dumps(np.array([-1, 0]), 2)[2:-1])
    res = run_child({"slice": ("loads", p4(g("pandas", "DataFrame") + mgr + b"\x85R"), {"trusted": True}),
                     "negative": ("loads", p4(g("pandas", "DataFrame") + neg.replace(b"\x89\x87R", b"\x88\x87R")
                                              + b"\x85R"), {"trusted": True}),
                     "good": ("loads", good, {"trusted": True})})
    assert res.pop("good")[0] == "loaded"
    assert_refused(res, "placement")


def test_red_team_wrappers_and_names():
    big = b"\x8a\x05\x00\x5e\xd0\xb2\x00"  # 3 * 10**9
    mod = 2**61 - 1
    keys = pickle.dumps([k * mod + 1 for k in range(1, 300)], 2)[2:-1]
    cases = {
        "reconstructor-bytearray": p4(g("copyreg", "_reconstructor") + g("builtins", "bytearray")
                                      + g("builtins", "bytearray") + big + b"\x87R"),
        "newobj-bytes": p4(g("copyreg", "__newobj__") + g("builtins", "bytes") + big + b"\x86R"),
        "generator-ctor-bytearray": p4(g("numpy.random._pickle", "__generator_ctor") + big
                                       + g("builtins", "bytearray") + b"\x86R"),
        "generator-ctor-set": p4(g("numpy.random._pickle", "__generator_ctor") + keys
                                 + g("builtins", "set") + b"\x86R"),
        "set-of-object-array": p4(g("builtins", "set") + g("numpy._core.multiarray", "_reconstruct")
                                  + g("numpy", "ndarray") + b"K\x00\x85" + by(b"b") + b"\x87R"
                                  + b"(K\x01" + i(299) + b"\x85" + g("numpy", "dtype") + s("O8")
                                  + b"\x89\x88\x87R" + _state(flags=63) + b"b\x89" + keys + b"tb\x85R"),
        "dateutil-tz": p4(g("pandas", "DatetimeTZDtype") + s("ns") + s("dateutil//etc/passwd") + b"\x86R"),
        "timestamp-parse": p4(g("pandas", "Timestamp") + b"X" + struct.pack("<I", 200000) + b"1." * 100000
                              + b"\x85R"),
        "offset-in-cache-rebuilt": p4(g("pandas._libs.tslibs.offsets", "MonthEnd") + i(1) + b"\x89\x86R\x94"
                                      + g("pandas", "PeriodDtype") + b"h\x00\x85R0h\x00}" + s("n") + i(5)
                                      + b"sb"),
        "mt19937-numpy-str-name": p4(g("numpy.random._pickle", "__bit_generator_ctor") + s("MT19937")
                                     + b"\x85R}(" + s("bit_generator")
                                     + pickle.dumps(np.str_("MT19937"), 2)[2:-1] + s("state") + b"}("
                                     + s("key") + pickle.dumps(np.arange(624, dtype=np.uint32), 2)[2:-1]
                                     + s("pos") + i(10**7) + b"uub"),
    }
    res = run_child({k: ("loads", v, {"trusted": True}) for k, v in cases.items()})
    assert_refused(res, "BudgetExceeded", "only NumPy's bit generators", "hash flooding",
                   "dateutil", "characters", "handed to a call", "referenced elsewhere", "pos must be")


@pytest.mark.parametrize("name", [
    "scipy.io.savemat", "scipy.io.loadmat", "sklearn.datasets.clear_data_home",
    "sklearn.datasets.fetch_openml", "uuid.getnode", "pathlib.Path.is_fifo", "dateutil.tz.tzfile",
    "numpy.test", "yaml.unsafe_load", "h5py.File", "PIL.Image.open"])
def test_red_team_listed_io_names_refused(name):
    with pytest.raises(ValueError, match="denylist"):
        make_find_class([name])


def test_red_team_inspect_is_bounded(tmp_path):
    import zlib
    dup_flood = zlib.compress(b"\x80\x04(N" + b"2" * 3_000_000, 1)
    bomb = zlib.compress(b"\x80\x04" + b"N0" * 3_000_000 + b"N.", 1)
    res = run_child({"dup": ("inspect", dup_flood, {}), "bomb": ("inspect", bomb, {})}, timeout=120)
    for name, (r, secs) in res.items():
        assert "ValueError" in r and ("expands to more than" in r or "items on the stack" in r
                                      or "opcodes in a compressed stream" in r), (name, r)


# Second red-team round (2026-12-06): hand-assembled streams, kept as written by the red team.
# Each crashed the process, read /etc/passwd, ran for seconds or changed shared memory against
# the boundary as it stood before this section; torch's needs the torch names.
_ROUND2 = {
    'G10_objects_budget': b'\x80\x04cpandas\nSeries\n(cnumpy\nndarray\n(J\x80\xc3\xc9\x01\x85cnumpy\ndtype\nX\x02\x00\x00\x00M8\x89\x88\x87R(K\x04X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00N(c_codecs\nencode\nX\x02\x00\x00\x00nsX\x06\x00\x00\x00latin1\x86RK\x01K\x01K\x01t\x86tbtRNX\x06\x00\x00\x00objecttR.',
    'G11_torch_bytes_singleton': b'\x80\x04X\x05\x00\x00\x00torchX\n\x00\x00\x00from_numpy\x93(cnumpy._core.numeric\n_frombuffer\n(B\x01\x00\x00\x00Acnumpy\ndtype\nX\x02\x00\x00\x00u1\x89\x88\x87R(K\x03X\x01\x00\x00\x00|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tbK\x01\x85X\x01\x00\x00\x00CtRtR.',
    'G1_multiindex_codes': b'\x80\x04cpandas.core.indexes.base\n_new_Index\n(cpandas\nMultiIndex\n}(X\x06\x00\x00\x00levels]cpandas.core.indexes.base\n_new_Index\ncpandas\nIndex\n}(X\x04\x00\x00\x00datacnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nX\x01\x00\x00\x00bX\x06\x00\x00\x00latin1\x86R\x87R(K\x01K\x02\x85cnumpy\ndtype\nX\x02\x00\x00\x00O8\x89\x88\x87R(K\x03X\x01\x00\x00\x00|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK?tb\x89](X\x01\x00\x00\x00aX\x01\x00\x00\x00betbX\x04\x00\x00\x00nameNu\x86RaX\x05\x00\x00\x00codes]cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nq\x00X\x01\x00\x00\x00bX\x06\x00\x00\x00latin1q\x01\x86R\x87R(K\x01K\x03\x85cnumpy\ndtype\nX\x02\x00\x00\x00i8\x89\x88\x87R(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89h\x00X \x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00x\x00\x00\x00\x00\x00\x00\x00\xc2\x88\xc3\xbf\xc3\xbf\xc3\xbf\xc3\xbf\xc3\xbf\xc3\xbf\xc3\xbfh\x01\x86RtbaX\x05\x00\x00\x00names]NautR.',
    'G1b_multiindex_leak': b'\x80\x04cpandas.core.indexes.base\n_new_Index\n(cpandas\nMultiIndex\n}(X\x06\x00\x00\x00levels]cpandas.core.indexes.base\n_new_Index\ncpandas\nIndex\n}(X\x04\x00\x00\x00datacnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nq\x00X\x01\x00\x00\x00bX\x06\x00\x00\x00latin1q\x01\x86R\x87R(K\x01K\x02\x85cnumpy\ndtype\nX\x02\x00\x00\x00i8\x89\x88\x87R(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89h\x00X\x10\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00h\x01\x86RtbX\x04\x00\x00\x00nameNu\x86RaX\x05\x00\x00\x00codes]cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nq\x00X\x01\x00\x00\x00bX\x06\x00\x00\x00latin1q\x01\x86R\x87R(K\x01K\x03\x85cnumpy\ndtype\nX\x02\x00\x00\x00i8\x89\x88\x87R(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89h\x00X \x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x7f\x00\x00\x00\x00\x00\x00\x00\xc2\x9c\xc3\xbf\xc3\xbf\xc3\xbf\xc3\xbf\xc3\xbf\xc3\xbf\xc3\xbfh\x01\x86RtbaX\x05\x00\x00\x00names]NautR.',
    'G2_sparse_oob': b'\x80\x04(ccopyreg\n_reconstructor\n(cpandas.arrays\nSparseArray\ncbuiltins\nobject\nNtR}(X\r\x00\x00\x00_sparse_indexcpandas._libs.sparse\nBlockIndex\n(J\x00\xe1\xf5\x05cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nq\x00X\x01\x00\x00\x00bX\x06\x00\x00\x00latin1q\x01\x86R\x87R(K\x01K\x01\x85cnumpy\ndtype\nX\x02\x00\x00\x00i4\x89\x88\x87R(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89h\x00X\x04\x00\x00\x00\x01\x00\x00\x00h\x01\x86Rtbcnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nq\x00X\x01\x00\x00\x00bX\x06\x00\x00\x00latin1q\x01\x86R\x87R(K\x01K\x01\x85cnumpy\ndtype\nX\x02\x00\x00\x00i4\x89\x88\x87R(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89h\x00X\x07\x00\x00\x00\xc3\xbf\xc3\xa0\xc3\xb5\x05h\x01\x86RtbtRX\x0e\x00\x00\x00_sparse_valuescnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nq\x00X\x01\x00\x00\x00bX\x06\x00\x00\x00latin1q\x01\x86R\x87R(K\x01K\x02\x85cnumpy\ndtype\nX\x02\x00\x00\x00f8\x89\x88\x87R(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89h\x00X\x12\x00\x00\x00\x00\x00\x00\x00\x00\x00\xc3\xb0?\x00\x00\x00\x00\x00\x00\xc3\xb0?h\x01\x86RtbX\x06\x00\x00\x00_dtypecpandas\nSparseDtype\n)\x81}(X\x06\x00\x00\x00_dtypecnumpy\ndtype\nX\x02\x00\x00\x00f8\x89\x88\x87R(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tbX\x0b\x00\x00\x00_fill_valueG\x7f\xf8\x00\x00\x00\x00\x00\x00ububccopyreg\n_reconstructor\n(cpandas.arrays\nSparseArray\ncbuiltins\nobject\nNtR}(X\r\x00\x00\x00_sparse_indexcpandas._libs.sparse\nBlockIndex\n(J\x00\xe1\xf5\x05cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nq\x00X\x01\x00\x00\x00bX\x06\x00\x00\x00latin1q\x01\x86R\x87R(K\x01K\x01\x85cnumpy\ndtype\nX\x02\x00\x00\x00i4\x89\x88\x87R(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89h\x00X\x04\x00\x00\x00\x02\x00\x00\x00h\x01\x86Rtbcnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nq\x00X\x01\x00\x00\x00bX\x06\x00\x00\x00latin1q\x01\x86R\x87R(K\x01K\x01\x85cnumpy\ndtype\nX\x02\x00\x00\x00i4\x89\x88\x87R(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89h\x00X\x07\x00\x00\x00\xc3\xbe\xc3\xa0\xc3\xb5\x05h\x01\x86RtbtRX\x0e\x00\x00\x00_sparse_valuescnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nq\x00X\x01\x00\x00\x00bX\x06\x00\x00\x00latin1q\x01\x86R\x87R(K\x01K\x02\x85cnumpy\ndtype\nX\x02\x00\x00\x00f8\x89\x88\x87R(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89h\x00X\x12\x00\x00\x00\x00\x00\x00\x00\x00\x00\xc3\xb0?\x00\x00\x00\x00\x00\x00\xc3\xb0?h\x01\x86RtbX\x06\x00\x00\x00_dtypecpandas\nSparseDtype\n)\x81}(X\x06\x00\x00\x00_dtypecnumpy\ndtype\nX\x02\x00\x00\x00f8\x89\x88\x87R(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tbX\x0b\x00\x00\x00_fill_valueG\x7f\xf8\x00\x00\x00\x00\x00\x00ububt.',
    'G2b_sparse_leak': b'\x80\x04(ccopyreg\n_reconstructor\n(cpandas.arrays\nSparseArray\ncbuiltins\nobject\nNtR}(X\r\x00\x00\x00_sparse_indexcpandas._libs.sparse\nBlockIndex\n(JB\x00\x00\x00cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nq\x00X\x01\x00\x00\x00bX\x06\x00\x00\x00latin1q\x01\x86R\x87R(K\x01K\x01\x85cnumpy\ndtype\nX\x02\x00\x00\x00i4\x89\x88\x87R(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89h\x00X\x04\x00\x00\x00\x01\x00\x00\x00h\x01\x86Rtbcnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nq\x00X\x01\x00\x00\x00bX\x06\x00\x00\x00latin1q\x01\x86R\x87R(K\x01K\x01\x85cnumpy\ndtype\nX\x02\x00\x00\x00i4\x89\x88\x87R(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89h\x00X\x04\x00\x00\x00@\x00\x00\x00h\x01\x86RtbtRX\x0e\x00\x00\x00_sparse_valuescnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nq\x00X\x01\x00\x00\x00bX\x06\x00\x00\x00latin1q\x01\x86R\x87R(K\x01K\x02\x85cnumpy\ndtype\nX\x02\x00\x00\x00f8\x89\x88\x87R(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89h\x00X\x12\x00\x00\x00\x00\x00\x00\x00\x00\x00\xc3\xb0?\x00\x00\x00\x00\x00\x00\xc3\xb0?h\x01\x86RtbX\x06\x00\x00\x00_dtypecpandas\nSparseDtype\n)\x81}(X\x06\x00\x00\x00_dtypecnumpy\ndtype\nX\x02\x00\x00\x00f8\x89\x88\x87R(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tbX\x0b\x00\x00\x00_fill_valueG\x7f\xf8\x00\x00\x00\x00\x00\x00ububccopyreg\n_reconstructor\n(cpandas.arrays\nSparseArray\ncbuiltins\nobject\nNtR}(X\r\x00\x00\x00_sparse_indexcpandas._libs.sparse\nBlockIndex\n(JB\x00\x00\x00cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nq\x00X\x01\x00\x00\x00bX\x06\x00\x00\x00latin1q\x01\x86R\x87R(K\x01K\x01\x85cnumpy\ndtype\nX\x02\x00\x00\x00i4\x89\x88\x87R(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89h\x00X\x04\x00\x00\x00\x02\x00\x00\x00h\x01\x86Rtbcnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nq\x00X\x01\x00\x00\x00bX\x06\x00\x00\x00latin1q\x01\x86R\x87R(K\x01K\x01\x85cnumpy\ndtype\nX\x02\x00\x00\x00i4\x89\x88\x87R(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89h\x00X\x04\x00\x00\x00@\x00\x00\x00h\x01\x86RtbtRX\x0e\x00\x00\x00_sparse_valuescnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nq\x00X\x01\x00\x00\x00bX\x06\x00\x00\x00latin1q\x01\x86R\x87R(K\x01K\x02\x85cnumpy\ndtype\nX\x02\x00\x00\x00f8\x89\x88\x87R(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89h\x00X\x12\x00\x00\x00\x00\x00\x00\x00\x00\x00\xc3\xb0?\x00\x00\x00\x00\x00\x00\xc3\xb0?h\x01\x86RtbX\x06\x00\x00\x00_dtypecpandas\nSparseDtype\n)\x81}(X\x06\x00\x00\x00_dtypecnumpy\ndtype\nX\x02\x00\x00\x00f8\x89\x88\x87R(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tbX\x0b\x00\x00\x00_fill_valueG\x7f\xf8\x00\x00\x00\x00\x00\x00ububt.',
    'G3_new_dti_u1': b'\x80\x04cpandas.core.indexes.datetimes\n_new_DatetimeIndex\n(cpandas\nDatetimeIndex\n}(X\x04\x00\x00\x00datacnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nq\x00X\x01\x00\x00\x00bX\x06\x00\x00\x00latin1q\x01\x86R\x87R(K\x01K\x10\x85cnumpy\ndtype\nX\x02\x00\x00\x00u1\x89\x88\x87R(K\x03X\x01\x00\x00\x00|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89h\x00X\x10\x00\x00\x00\x00\x01\x02\x03\x04\x05\x06\x07\x08\t\n\x0b\x0c\r\x0e\x0fh\x01\x86RtbX\x02\x00\x00\x00tzX\x03\x00\x00\x00UTCX\x04\x00\x00\x00freqNutR.',
    'G4_masked_mask_short': b'\x80\x04ccopyreg\n__newobj__\n(cpandas.arrays\nIntegerArray\ntR}(X\x05\x00\x00\x00_datacnumpy\nndarray\n(J\x00\xe1\xf5\x05\x85cnumpy\ndtype\nX\x02\x00\x00\x00i1\x89\x88\x87R(K\x03X\x01\x00\x00\x00|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tbtRX\x05\x00\x00\x00_maskcnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nq\x00X\x01\x00\x00\x00bX\x06\x00\x00\x00latin1q\x01\x86R\x87R(K\x01K\x01\x85cnumpy\ndtype\nX\x02\x00\x00\x00b1\x89\x88\x87R(K\x03X\x01\x00\x00\x00|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89h\x00X\x01\x00\x00\x00\x00h\x01\x86Rtbub.',
    'G5_bm_state_tuple': b'\x80\x04cpandas\nDataFrame\n(cpandas.core.internals.managers\nBlockManager\n((t](cpandas.core.indexes.base\n_new_Index\nq\x00cpandas\nIndex\n}(X\x04\x00\x00\x00datacnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nX\x01\x00\x00\x00bX\x06\x00\x00\x00latin1\x86R\x87R(K\x01K\x00\x85cnumpy\ndtype\nX\x02\x00\x00\x00O8\x89\x88\x87R(K\x03X\x01\x00\x00\x00|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK?tb\x89]tbX\x04\x00\x00\x00nameq\x01Nu\x86Rh\x00cpandas\nRangeIndex\n}(h\x01NX\x05\x00\x00\x00startK\x00X\x04\x00\x00\x00stopK\x00X\x04\x00\x00\x00stepK\x01u\x86RetR(NNN}X\x06\x00\x00\x000.14.1}(X\x04\x00\x00\x00axes](cpandas.core.indexes.base\n_new_Index\nq\x00cpandas\nIndex\n}(X\x04\x00\x00\x00datacnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nX\x01\x00\x00\x00bX\x06\x00\x00\x00latin1\x86R\x87R(K\x01K\x00\x85cnumpy\ndtype\nX\x02\x00\x00\x00O8\x89\x88\x87R(K\x03X\x01\x00\x00\x00|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK?tb\x89]tbX\x04\x00\x00\x00nameq\x01Nu\x86Rh\x00cpandas\nRangeIndex\n}(h\x01NX\x05\x00\x00\x00startK\x00X\x04\x00\x00\x00stopK\x02X\x04\x00\x00\x00stepK\x01u\x86ReX\x06\x00\x00\x00blocks(}(X\x06\x00\x00\x00valuescnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nq\x00X\x01\x00\x00\x00bX\x06\x00\x00\x00latin1q\x01\x86R\x87R(K\x01K\x02K\x02\x86cnumpy\ndtype\nX\x02\x00\x00\x00i8\x89\x88\x87R(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89h\x00X \x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00h\x01\x86RtbX\x08\x00\x00\x00mgr_locscnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nq\x00X\x01\x00\x00\x00bX\x06\x00\x00\x00latin1q\x01\x86R\x87R(K\x01K\x02\x85cnumpy\ndtype\nX\x02\x00\x00\x00i8\x89\x88\x87R(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89h\x00X\x18\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\xc3\xbd\xc3\xbf\xc3\xbf\xc3\xbf\xc3\xbf\xc3\xbf\xc3\xbf\xc3\xbfh\x01\x86RtbutustbtR.',
    'G5b_bm_state_odict': b'\x80\x04cpandas\nDataFrame\n(cpandas.core.internals.managers\nBlockManager\n((t](cpandas.core.indexes.base\n_new_Index\nq\x00cpandas\nIndex\n}(X\x04\x00\x00\x00datacnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nX\x01\x00\x00\x00bX\x06\x00\x00\x00latin1\x86R\x87R(K\x01K\x00\x85cnumpy\ndtype\nX\x02\x00\x00\x00O8\x89\x88\x87R(K\x03X\x01\x00\x00\x00|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK?tb\x89]tbX\x04\x00\x00\x00nameq\x01Nu\x86Rh\x00cpandas\nRangeIndex\n}(h\x01NX\x05\x00\x00\x00startK\x00X\x04\x00\x00\x00stopK\x00X\x04\x00\x00\x00stepK\x01u\x86RetR(NNN}X\x06\x00\x00\x000.14.1}(X\x04\x00\x00\x00axes](cpandas.core.indexes.base\n_new_Index\nq\x00cpandas\nIndex\n}(X\x04\x00\x00\x00datacnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nq\x01X\x01\x00\x00\x00bX\x06\x00\x00\x00latin1q\x02\x86R\x87R(K\x01K\x02\x85cnumpy\ndtype\nX\x02\x00\x00\x00i8\x89\x88\x87R(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89h\x01X\x10\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00h\x02\x86RtbX\x04\x00\x00\x00nameq\x03Nu\x86Rh\x00cpandas\nRangeIndex\n}(h\x03NX\x05\x00\x00\x00startK\x00X\x04\x00\x00\x00stopK\x02X\x04\x00\x00\x00stepK\x01u\x86ReX\x06\x00\x00\x00blocks(}(X\x06\x00\x00\x00valuescnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nq\x00X\x01\x00\x00\x00bX\x06\x00\x00\x00latin1q\x01\x86R\x87R(K\x01K\x02K\x02\x86cnumpy\ndtype\nX\x02\x00\x00\x00i8\x89\x88\x87R(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89h\x00X \x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00h\x01\x86RtbX\x08\x00\x00\x00mgr_locsc__builtin__\nslice\nK\x00K\x02K\x01\x87Ruccollections\nOrderedDict\n)R(X\x06\x00\x00\x00valuescnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nq\x00X\x01\x00\x00\x00bX\x06\x00\x00\x00latin1q\x01\x86R\x87R(K\x01K\x02K\x02\x86cnumpy\ndtype\nX\x02\x00\x00\x00i8\x89\x88\x87R(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89h\x00X \x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00h\x01\x86RtbX\x08\x00\x00\x00mgr_locscnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nq\x00X\x01\x00\x00\x00bX\x06\x00\x00\x00latin1q\x01\x86R\x87R(K\x01K\x02\x85cnumpy\ndtype\nX\x02\x00\x00\x00i8\x89\x88\x87R(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89h\x00X\x18\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\xc3\xbd\xc3\xbf\xc3\xbf\xc3\xbf\xc3\xbf\xc3\xbf\xc3\xbf\xc3\xbfh\x01\x86RtbulustbtR.',
    'G6_catdtype_shrink': b'\x80\x04cpandas._libs.arrays\n__pyx_unpickle_NDArrayBacked\n(cpandas\nCategorical\nJ\x1f\x06\xf1\x04NtR(cpandas\nCategoricalDtype\n(cpandas.core.indexes.base\n_new_Index\ncpandas\nRangeIndex\n}(X\x04\x00\x00\x00nameNX\x05\x00\x00\x00startK\x00X\x04\x00\x00\x00stopJ\x80\x96\x98\x00X\x04\x00\x00\x00stepK\x01u\x86RtRq\ncnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nq\x00X\x01\x00\x00\x00bX\x06\x00\x00\x00latin1q\x01\x86R\x87R(K\x01K\x02\x85cnumpy\ndtype\nX\x02\x00\x00\x00i8\x89\x88\x87R(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89h\x00X\x12\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x7f\xc2\x96\xc2\x98\x00\x00\x00\x00\x00h\x01\x86Rtbtbq\x0b0h\n}(X\n\x00\x00\x00categoriescpandas.core.indexes.base\n_new_Index\ncpandas\nIndex\n}(X\x04\x00\x00\x00datacnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nX\x01\x00\x00\x00bX\x06\x00\x00\x00latin1\x86R\x87R(K\x01K\x01\x85cnumpy\ndtype\nX\x02\x00\x00\x00O8\x89\x88\x87R(K\x03X\x01\x00\x00\x00|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK?tb\x89]X\x01\x00\x00\x00aatbX\x04\x00\x00\x00nameNu\x86RX\x07\x00\x00\x00ordered\x89ub0h\x0b.',
    'G7_dta_generic': b'\x80\x04cpandas._libs.arrays\n__pyx_unpickle_NDArrayBacked\n(cpandas.arrays\nDatetimeArray\nJ\x1f\x06\xf1\x04NtR(cpandas\nDatetimeTZDtype\n)\x81}(X\x04\x00\x00\x00unitX\x02\x00\x00\x00nsX\x02\x00\x00\x00tzcdatetime\ntimezone\ncdatetime\ntimedelta\nK\x00K\x00K\x00\x87R\x85Rubcnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nq\x00X\x01\x00\x00\x00bX\x06\x00\x00\x00latin1q\x01\x86R\x87R(K\x01K\x02\x85cnumpy\ndtype\nX\x02\x00\x00\x00M8\x89\x88\x87R(K\x04X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00N(h\x00X\x07\x00\x00\x00generich\x01\x86RK\x01K\x01K\x01t\x86tb\x89h\x00X\x11\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\xc2\x8a]xEc\x01h\x01\x86Rtbtb.',
    'G8_tz_npstr_file': b'\x80\x04cpandas\nDatetimeTZDtype\n(X\x02\x00\x00\x00nscnumpy._core.multiarray\nscalar\ncnumpy\ndtype\nX\x03\x00\x00\x00U20\x89\x88\x87R(K\x03X\x01\x00\x00\x00<NNNKPK\x04K\x08tbc_codecs\nencode\nXP\x00\x00\x00d\x00\x00\x00a\x00\x00\x00t\x00\x00\x00e\x00\x00\x00u\x00\x00\x00t\x00\x00\x00i\x00\x00\x00l\x00\x00\x00/\x00\x00\x00/\x00\x00\x00e\x00\x00\x00t\x00\x00\x00c\x00\x00\x00/\x00\x00\x00p\x00\x00\x00a\x00\x00\x00s\x00\x00\x00s\x00\x00\x00w\x00\x00\x00d\x00\x00\x00X\x06\x00\x00\x00latin1\x86R\x86RtR.',
}


_TORCH_NAMES = ["torch.from_numpy", "torch.Tensor.view", "torch.Tensor.new_empty",
                "torch.Tensor.set_", "torch.Tensor.requires_grad_", "torch.nn.parameter.Parameter",
                "torch.float32", "torch.uint8"]


def test_red_team_round_two():
    cases = {}
    for name, data in _ROUND2.items():
        kw = {"trusted": _TORCH_NAMES} if "torch" in name else {"trusted": True}
        if "torch" in name and not _has_torch():
            continue
        cases[name] = ("loads", data, kw)
    # a Timestamp string of 250,000 characters given as a numpy.str_ (quadratic parsing)
    cases["timestamp-npstr"] = ("loads", p4(g("pandas", "Timestamp") + g("numpy._core.multiarray", "scalar")
                                           + pickle.dumps(np.dtype("U250000"), 2)[2:-1]
                                           + b"B" + struct.pack("<I", 1_000_000)
                                           + "1.".encode("utf-32-le") * 125000 + b"\x86R\x85R"),
                                {"trusted": True})
    res = run_child(cases, timeout=300)
    assert_refused(res, "refused", "BudgetExceeded", "dateutil", "characters")


def _has_torch():
    try:
        import torch  # noqa: F401
        return True
    except ImportError:
        return False


def test_failed_load_keeps_no_half_built_object_in_its_traceback():
    """The frames of a refused load's hooks hold the object being refused (here a PeriodArray
    without its data, whose repr would crash): the exception that reaches the caller carries no
    frame below the load call, so error reporters that print locals cannot reach it."""
    import traceback
    data = p4(g("builtins", "str") + _nab("pandas.arrays", "PeriodArray", b"") + b"\x85R")
    for load in (lambda: fastjoblib.loads(data, trusted=True),
                 lambda: fastjoblib._core.loads(data, find_class=make_find_class(True))):
        with pytest.raises(pickle.UnpicklingError) as info:
            load()
        frames = [f.f_code.co_name for f, _ in traceback.walk_tb(info.value.__traceback__)]
        assert not any(n in ("check_object", "before_call", "filter_state") for n in frames), frames
        assert info.value.__context__ is None or info.value.__context__.__traceback__ is None


# Third red-team round: an object changed after something else was checked against it (the
# refcount rule), offsets made without their constructor (a process-wide PeriodDtype cache),
# structures whose shared parts expand exponentially (str, tuple keys).
_ROUND3 = {
    'perioddtype-week-newobj': b'\x80\x02cpandas\nPeriodDtype\n(cpandas._libs.tslibs.offsets\nWeek\n)\x81}(X\x01\x00\x00\x00nJ\x01\x00\x00\x00X\t\x00\x00\x00normalize\x89X\x07\x00\x00\x00weekdayJ\x06\x00\x00\x00ubtR.',
    'offset-week-weekday': b'\x80\x02cpandas._libs.tslibs.offsets\nWeek\n)\x81}(X\x01\x00\x00\x00nJ\x01\x00\x00\x00X\t\x00\x00\x00normalize\x89X\x07\x00\x00\x00weekdayJ@B\x0f\x00ub.',
    'dag-str-24': b'\x80\x02]r\x00\x00\x00\x000(j\x00\x00\x00\x00j\x00\x00\x00\x00lr\x01\x00\x00\x000(j\x01\x00\x00\x00j\x01\x00\x00\x00lr\x02\x00\x00\x000(j\x02\x00\x00\x00j\x02\x00\x00\x00lr\x03\x00\x00\x000(j\x03\x00\x00\x00j\x03\x00\x00\x00lr\x04\x00\x00\x000(j\x04\x00\x00\x00j\x04\x00\x00\x00lr\x05\x00\x00\x000(j\x05\x00\x00\x00j\x05\x00\x00\x00lr\x06\x00\x00\x000(j\x06\x00\x00\x00j\x06\x00\x00\x00lr\x07\x00\x00\x000(j\x07\x00\x00\x00j\x07\x00\x00\x00lr\x08\x00\x00\x000(j\x08\x00\x00\x00j\x08\x00\x00\x00lr\t\x00\x00\x000(j\t\x00\x00\x00j\t\x00\x00\x00lr\n\x00\x00\x000(j\n\x00\x00\x00j\n\x00\x00\x00lr\x0b\x00\x00\x000(j\x0b\x00\x00\x00j\x0b\x00\x00\x00lr\x0c\x00\x00\x000(j\x0c\x00\x00\x00j\x0c\x00\x00\x00lr\r\x00\x00\x000(j\r\x00\x00\x00j\r\x00\x00\x00lr\x0e\x00\x00\x000(j\x0e\x00\x00\x00j\x0e\x00\x00\x00lr\x0f\x00\x00\x000(j\x0f\x00\x00\x00j\x0f\x00\x00\x00lr\x10\x00\x00\x000(j\x10\x00\x00\x00j\x10\x00\x00\x00lr\x11\x00\x00\x000(j\x11\x00\x00\x00j\x11\x00\x00\x00lr\x12\x00\x00\x000(j\x12\x00\x00\x00j\x12\x00\x00\x00lr\x13\x00\x00\x000(j\x13\x00\x00\x00j\x13\x00\x00\x00lr\x14\x00\x00\x000(j\x14\x00\x00\x00j\x14\x00\x00\x00lr\x15\x00\x00\x000(j\x15\x00\x00\x00j\x15\x00\x00\x00lr\x16\x00\x00\x000(j\x16\x00\x00\x00j\x16\x00\x00\x00lr\x17\x00\x00\x000(j\x17\x00\x00\x00j\x17\x00\x00\x00lr\x18\x00\x00\x000cbuiltins\nstr\n(j\x18\x00\x00\x00tR\x85.',
    'dag-userstring-24': b'\x80\x02]r\x00\x00\x00\x000(j\x00\x00\x00\x00j\x00\x00\x00\x00lr\x01\x00\x00\x000(j\x01\x00\x00\x00j\x01\x00\x00\x00lr\x02\x00\x00\x000(j\x02\x00\x00\x00j\x02\x00\x00\x00lr\x03\x00\x00\x000(j\x03\x00\x00\x00j\x03\x00\x00\x00lr\x04\x00\x00\x000(j\x04\x00\x00\x00j\x04\x00\x00\x00lr\x05\x00\x00\x000(j\x05\x00\x00\x00j\x05\x00\x00\x00lr\x06\x00\x00\x000(j\x06\x00\x00\x00j\x06\x00\x00\x00lr\x07\x00\x00\x000(j\x07\x00\x00\x00j\x07\x00\x00\x00lr\x08\x00\x00\x000(j\x08\x00\x00\x00j\x08\x00\x00\x00lr\t\x00\x00\x000(j\t\x00\x00\x00j\t\x00\x00\x00lr\n\x00\x00\x000(j\n\x00\x00\x00j\n\x00\x00\x00lr\x0b\x00\x00\x000(j\x0b\x00\x00\x00j\x0b\x00\x00\x00lr\x0c\x00\x00\x000(j\x0c\x00\x00\x00j\x0c\x00\x00\x00lr\r\x00\x00\x000(j\r\x00\x00\x00j\r\x00\x00\x00lr\x0e\x00\x00\x000(j\x0e\x00\x00\x00j\x0e\x00\x00\x00lr\x0f\x00\x00\x000(j\x0f\x00\x00\x00j\x0f\x00\x00\x00lr\x10\x00\x00\x000(j\x10\x00\x00\x00j\x10\x00\x00\x00lr\x11\x00\x00\x000(j\x11\x00\x00\x00j\x11\x00\x00\x00lr\x12\x00\x00\x000(j\x12\x00\x00\x00j\x12\x00\x00\x00lr\x13\x00\x00\x000(j\x13\x00\x00\x00j\x13\x00\x00\x00lr\x14\x00\x00\x000(j\x14\x00\x00\x00j\x14\x00\x00\x00lr\x15\x00\x00\x000(j\x15\x00\x00\x00j\x15\x00\x00\x00lr\x16\x00\x00\x000(j\x16\x00\x00\x00j\x16\x00\x00\x00lr\x17\x00\x00\x000(j\x17\x00\x00\x00j\x17\x00\x00\x00lr\x18\x00\x00\x000ccollections\nUserString\n(j\x18\x00\x00\x00tR\x85.',
    'tuple-dag-key-28': b'\x80\x02)r\x00\x00\x00\x000j\x00\x00\x00\x00j\x00\x00\x00\x00\x86r\x01\x00\x00\x000j\x01\x00\x00\x00j\x01\x00\x00\x00\x86r\x02\x00\x00\x000j\x02\x00\x00\x00j\x02\x00\x00\x00\x86r\x03\x00\x00\x000j\x03\x00\x00\x00j\x03\x00\x00\x00\x86r\x04\x00\x00\x000j\x04\x00\x00\x00j\x04\x00\x00\x00\x86r\x05\x00\x00\x000j\x05\x00\x00\x00j\x05\x00\x00\x00\x86r\x06\x00\x00\x000j\x06\x00\x00\x00j\x06\x00\x00\x00\x86r\x07\x00\x00\x000j\x07\x00\x00\x00j\x07\x00\x00\x00\x86r\x08\x00\x00\x000j\x08\x00\x00\x00j\x08\x00\x00\x00\x86r\t\x00\x00\x000j\t\x00\x00\x00j\t\x00\x00\x00\x86r\n\x00\x00\x000j\n\x00\x00\x00j\n\x00\x00\x00\x86r\x0b\x00\x00\x000j\x0b\x00\x00\x00j\x0b\x00\x00\x00\x86r\x0c\x00\x00\x000j\x0c\x00\x00\x00j\x0c\x00\x00\x00\x86r\r\x00\x00\x000j\r\x00\x00\x00j\r\x00\x00\x00\x86r\x0e\x00\x00\x000j\x0e\x00\x00\x00j\x0e\x00\x00\x00\x86r\x0f\x00\x00\x000j\x0f\x00\x00\x00j\x0f\x00\x00\x00\x86r\x10\x00\x00\x000j\x10\x00\x00\x00j\x10\x00\x00\x00\x86r\x11\x00\x00\x000j\x11\x00\x00\x00j\x11\x00\x00\x00\x86r\x12\x00\x00\x000j\x12\x00\x00\x00j\x12\x00\x00\x00\x86r\x13\x00\x00\x000j\x13\x00\x00\x00j\x13\x00\x00\x00\x86r\x14\x00\x00\x000j\x14\x00\x00\x00j\x14\x00\x00\x00\x86r\x15\x00\x00\x000j\x15\x00\x00\x00j\x15\x00\x00\x00\x86r\x16\x00\x00\x000j\x16\x00\x00\x00j\x16\x00\x00\x00\x86r\x17\x00\x00\x000j\x17\x00\x00\x00j\x17\x00\x00\x00\x86r\x18\x00\x00\x000j\x18\x00\x00\x00j\x18\x00\x00\x00\x86r\x19\x00\x00\x000j\x19\x00\x00\x00j\x19\x00\x00\x00\x86r\x1a\x00\x00\x000j\x1a\x00\x00\x00j\x1a\x00\x00\x00\x86r\x1b\x00\x00\x000j\x1b\x00\x00\x00j\x1b\x00\x00\x00\x86r\x1c\x00\x00\x000}j\x1c\x00\x00\x00Ns.',
}


def _put(n):
    return b"r" + struct.pack("<I", n)


def _get(n):
    return b"j" + struct.pack("<I", n)


def _categorical_over_index():
    """Stream parts: an object Index of 1000 items (memo 10000), a CategoricalDtype over it (memo
    10001), and a Categorical of that dtype whose codes (999) are valid for it."""
    import pandas as pd
    idx = pickle.dumps(pd.Index(list(range(1000)), dtype=object), 2)[2:-1] + _put(10000)
    dtype = (g("pandas", "CategoricalDtype") + b")\x81" + _put(10001) + b"}(" + s("categories")
             + _get(10000) + s("ordered") + b"\x89ub")
    cat = _nab("pandas", "Categorical", b"(" + _get(10001)
               + pickle.dumps(np.array([999] * 4, dtype=np.int16), 2)[2:-1] + b"tb")
    return idx, dtype, cat


def test_red_team_round_three():
    import pandas as pd
    # H1: categories Index shared by a CategoricalDtype, a Categorical checked against it, then
    # the Index shrunk by BUILD (a segfault in list() before the refcount rule)
    idx, dtype, cat = _categorical_over_index()
    shrink = _get(10000) + b"}" + s("_data") + pickle.dumps(np.array([7], dtype=object), 2)[2:-1] + b"sb"
    cases = {"shrink-after-check": p4(b"(" + idx + dtype + cat + shrink + b"t")}
    cases.update({k: v for k, v in _ROUND3.items()})
    res = run_child({k: ("loads", v, {"trusted": True}) for k, v in cases.items()})
    assert_refused(res, "referenced elsewhere", "does not match its parameters",
                   "take no state", "pickle through their constructor", "expand to",
                   "made into text",
                   "tuple key", "big-int key")
    # the process-wide PeriodDtype cache of the child stayed sane: checked in this process too
    assert pd.PeriodDtype("W-SUN")._dtype_code == 4000


def test_pandas_cached_values_are_dropped_not_trusted():
    """A pickled pandas array may carry its _cache; a restricted load drops it (pandas recomputes
    it) rather than letting a check and pandas read different things."""
    import pandas as pd
    dti = pd.date_range("2024", periods=3, tz="UTC")
    dta = dti._data
    _ = dta.year  # fills a cache
    data = pickle.dumps(dta, 4)
    assert b"_cache" in data
    out = fastjoblib.loads(data, trusted=True)
    assert list(out.year) == [2024] * 3 and str(out.dtype) == str(dta.dtype)


# Fourth red-team round: the change rule's bookkeeping (one dict given twice as a state, a reused
# memo index), memory shared by two arrays and written by a later call, a BUILD that changes an
# object shared with another (MaskedArray's __setstate__ writes into its _mask).
_ROUND4 = {
    'frombuffer-alias-keepmask': b'\x80\x02cbuiltins\nbytearray\n(J\x08\x00\x00\x00tRr\xe8\x03\x00\x000cnumpy._core.numeric\n_frombuffer\n(j\xe8\x03\x00\x00cnumpy\ndtype\nX\x02\x00\x00\x00i8\x89\x88\x87R(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb(J\x01\x00\x00\x00tX\x01\x00\x00\x00CtRr\xe9\x03\x00\x000cpandas\nCategoricalDtype\n)\x81}(X\n\x00\x00\x00categoriescpandas.core.indexes.base\n_new_Index\ncpandas\nIndex\n}(X\x04\x00\x00\x00datacnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nX\x01\x00\x00\x00bX\x06\x00\x00\x00latin1\x86R\x87R(K\x01K\x01\x85cnumpy\ndtype\nX\x02\x00\x00\x00O8\x89\x88\x87R(K\x03X\x01\x00\x00\x00|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK?tb\x89]X\x01\x00\x00\x00xatbX\x04\x00\x00\x00nameNu\x86RX\x07\x00\x00\x00ordered\x89ubr\xea\x03\x00\x000cpandas._libs.arrays\n__pyx_unpickle_NDArrayBacked\n(cpandas\nCategorical\nJ\x1f\x06\xf1\x04NtRj\xea\x03\x00\x00j\xe9\x03\x00\x00\x86br\xeb\x03\x00\x000cnumpy.ma.core\nMaskedArray\n(cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nq\x00X\x01\x00\x00\x00bX\x06\x00\x00\x00latin1q\x01\x86R\x87R(K\x01K\x01\x85cnumpy\ndtype\nq\x02X\x02\x00\x00\x00V8\x89\x88\x87R(K\x03X\x01\x00\x00\x00|q\x03N(X\x02\x00\x00\x00f0q\x04X\x02\x00\x00\x00f1q\x05X\x02\x00\x00\x00f2q\x06X\x02\x00\x00\x00f3q\x07X\x02\x00\x00\x00f4q\x08X\x02\x00\x00\x00f5q\tX\x02\x00\x00\x00f6q\nX\x02\x00\x00\x00f7q\x0bt}(h\x04h\x02X\x02\x00\x00\x00b1\x89\x88\x87Rq\x0c(K\x03h\x03NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tbK\x00\x86h\x05h\x0cK\x01\x86h\x06h\x0cK\x02\x86h\x07h\x0cK\x03\x86h\x08h\x0cK\x04\x86h\th\x0cK\x05\x86h\nh\x0cK\x06\x86h\x0bh\x0cK\x07\x86uK\x08K\x01K\x10tb\x89h\x00X\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00h\x01\x86Rtbcnumpy._core.numeric\n_frombuffer\n(j\xe8\x03\x00\x00cnumpy\ndtype\nq\x00X\x02\x00\x00\x00V8\x89\x88\x87R(K\x03X\x01\x00\x00\x00|q\x01N(X\x02\x00\x00\x00f0q\x02X\x02\x00\x00\x00f1q\x03X\x02\x00\x00\x00f2q\x04X\x02\x00\x00\x00f3q\x05X\x02\x00\x00\x00f4q\x06X\x02\x00\x00\x00f5q\x07X\x02\x00\x00\x00f6q\x08X\x02\x00\x00\x00f7q\tt}(h\x02h\x00X\x02\x00\x00\x00b1\x89\x88\x87Rq\n(K\x03h\x01NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tbK\x00\x86h\x03h\nK\x01\x86h\x04h\nK\x02\x86h\x05h\nK\x03\x86h\x06h\nK\x04\x86h\x07h\nK\x05\x86h\x08h\nK\x06\x86h\th\nK\x07\x86uK\x08K\x01K\x10tb(J\x01\x00\x00\x00tX\x01\x00\x00\x00CtRN\x89\x88J\x00\x00\x00\x00N\x89tRr\xec\x03\x00\x000cnumpy.ma.core\nMaskedArray\n(j\xec\x03\x00\x00cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nq\x00X\x01\x00\x00\x00bX\x06\x00\x00\x00latin1q\x01\x86R\x87R(K\x01K\x01\x85cnumpy\ndtype\nq\x02X\x02\x00\x00\x00V8\x89\x88\x87R(K\x03X\x01\x00\x00\x00|q\x03N(X\x02\x00\x00\x00f0q\x04X\x02\x00\x00\x00f1q\x05X\x02\x00\x00\x00f2q\x06X\x02\x00\x00\x00f3q\x07X\x02\x00\x00\x00f4q\x08X\x02\x00\x00\x00f5q\tX\x02\x00\x00\x00f6q\nX\x02\x00\x00\x00f7q\x0bt}(h\x04h\x02X\x02\x00\x00\x00b1\x89\x88\x87Rq\x0c(K\x03h\x03NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tbK\x00\x86h\x05h\x0cK\x01\x86h\x06h\x0cK\x02\x86h\x07h\x0cK\x03\x86h\x08h\x0cK\x04\x86h\th\x0cK\x05\x86h\nh\x0cK\x06\x86h\x0bh\x0cK\x07\x86uK\x08K\x01K\x10tb\x89h\x00X\x08\x00\x00\x00\x01\x01\x01\x01\x01\x01\x01\x01h\x01\x86RtbtR0(j\xeb\x03\x00\x00t.',
}

_OOB_WRITE = b'\x80\x05cnumpy.ma.core\nMaskedArray\n(cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nq\x00X\x01\x00\x00\x00bX\x06\x00\x00\x00latin1q\x01\x86R\x87R(K\x01K\x01\x85cnumpy\ndtype\nq\x02X\x02\x00\x00\x00V8\x89\x88\x87R(K\x03X\x01\x00\x00\x00|q\x03N(X\x02\x00\x00\x00f0q\x04X\x02\x00\x00\x00f1q\x05X\x02\x00\x00\x00f2q\x06X\x02\x00\x00\x00f3q\x07X\x02\x00\x00\x00f4q\x08X\x02\x00\x00\x00f5q\tX\x02\x00\x00\x00f6q\nX\x02\x00\x00\x00f7q\x0bt}(h\x04h\x02X\x02\x00\x00\x00b1\x89\x88\x87Rq\x0c(K\x03h\x03NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tbK\x00\x86h\x05h\x0cK\x01\x86h\x06h\x0cK\x02\x86h\x07h\x0cK\x03\x86h\x08h\x0cK\x04\x86h\th\x0cK\x05\x86h\nh\x0cK\x06\x86h\x0bh\x0cK\x07\x86uK\x08K\x01K\x10tb\x89h\x00X\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00h\x01\x86Rtbcnumpy._core.numeric\n_frombuffer\n(\x97cnumpy\ndtype\nq\x00X\x02\x00\x00\x00V8\x89\x88\x87R(K\x03X\x01\x00\x00\x00|q\x01N(X\x02\x00\x00\x00f0q\x02X\x02\x00\x00\x00f1q\x03X\x02\x00\x00\x00f2q\x04X\x02\x00\x00\x00f3q\x05X\x02\x00\x00\x00f4q\x06X\x02\x00\x00\x00f5q\x07X\x02\x00\x00\x00f6q\x08X\x02\x00\x00\x00f7q\tt}(h\x02h\x00X\x02\x00\x00\x00b1\x89\x88\x87Rq\n(K\x03h\x01NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tbK\x00\x86h\x03h\nK\x01\x86h\x04h\nK\x02\x86h\x05h\nK\x03\x86h\x06h\nK\x04\x86h\x07h\nK\x05\x86h\x08h\nK\x06\x86h\th\nK\x07\x86uK\x08K\x01K\x10tb(J\x01\x00\x00\x00tX\x01\x00\x00\x00CtRN\x89\x88J\x00\x00\x00\x00N\x89tRr\xf6\x03\x00\x000cnumpy.ma.core\nMaskedArray\n(j\xf6\x03\x00\x00cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nq\x00X\x01\x00\x00\x00bX\x06\x00\x00\x00latin1q\x01\x86R\x87R(K\x01K\x01\x85cnumpy\ndtype\nq\x02X\x02\x00\x00\x00V8\x89\x88\x87R(K\x03X\x01\x00\x00\x00|q\x03N(X\x02\x00\x00\x00f0q\x04X\x02\x00\x00\x00f1q\x05X\x02\x00\x00\x00f2q\x06X\x02\x00\x00\x00f3q\x07X\x02\x00\x00\x00f4q\x08X\x02\x00\x00\x00f5q\tX\x02\x00\x00\x00f6q\nX\x02\x00\x00\x00f7q\x0bt}(h\x04h\x02X\x02\x00\x00\x00b1\x89\x88\x87Rq\x0c(K\x03h\x03NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tbK\x00\x86h\x05h\x0cK\x01\x86h\x06h\x0cK\x02\x86h\x07h\x0cK\x03\x86h\x08h\x0cK\x04\x86h\th\x0cK\x05\x86h\nh\x0cK\x06\x86h\x0bh\x0cK\x07\x86uK\x08K\x01K\x10tb\x89h\x00X\x08\x00\x00\x00\x01\x01\x01\x01\x01\x01\x01\x01h\x01\x86RtbtR.'


def test_red_team_round_four():
    # a state (d, d): the same dict counted once as the object's own reference
    idx, dtype, cat = _categorical_over_index()
    d = b"}(" + s("_data") + pickle.dumps(np.array([7], dtype=object), 2)[2:-1] + b"".join(
        s(k) + _get(10000) for k in "wxyz") + b"u" + _put(10002)
    twice = _get(10000) + d + _get(10002) + b"\x86b"
    # the Index left on the stack while its memo index is reused by another object
    reuse = (idx + dtype + cat + b"0" + _get(10000) + b"N" + _put(10000) + b"0" + b"}" + s("_data")
             + pickle.dumps(np.array([7], dtype=object), 2)[2:-1] + b"sb")
    # MaskedArray(keep_mask=False) keeps an IntegerArray's mask as its own; its BUILD then
    # shrinks that mask to one element
    n = 1000
    ba = g("builtins", "bytearray")
    mask = (g("numpy._core.numeric", "_frombuffer") + b"(" + ba + i(n) + b"\x85R" + s("?") + i(n)
            + b"\x85" + s("C") + b"tR" + _put(20000) + b"0")
    ia = (g("pandas.arrays", "IntegerArray") + pickle.dumps(np.ones(n, dtype=np.int64), 2)[2:-1]
          + _get(20000) + b"\x86R" + _put(20001) + b"0")
    ma = (g("numpy.ma.core", "MaskedArray") + b"(" + g("numpy._core.numeric", "_frombuffer") + b"("
          + ba + i(8 * n) + b"\x85R" + s("<i8") + i(n) + b"\x85" + s("C") + b"tR" + _get(20000)
          + b"N\x89\x88K\x00N\x89tR"
          + pickle.dumps(np.ma.array([1], mask=[0], dtype=np.int64).__getstate__(), 2)[2:-1]
          + b"b0(" + _get(20001) + b"t")
    cases = {"state-dict-twice": p4(b"(" + idx + dtype + cat + twice + b"t"),
             "memo-index-reused": p4(b"(" + reuse + b"t"),
             "masked-setstate-shared-mask": p4(mask + ia + ma),
             **_ROUND4}
    res = run_child({k: ("loads", v, {"trusted": True}) for k, v in cases.items()})
    alias = res.pop("frombuffer-alias-keepmask")
    assert alias[0] == "loaded" or "refused" in alias[0]  # no aliasing left: harmless either way
    assert_refused(res, "referenced elsewhere", "handed to a call", "disagree", "refused")


def test_out_of_band_buffers_are_not_written():
    ba = bytearray(8)
    try:
        fastjoblib.loads(_OOB_WRITE, trusted=True, buffers=[ba])
    except pickle.UnpicklingError:
        pass
    assert bytes(ba) == bytes(8)


# ------------------------------------------------------------------------------------------------
# Red-team round 5 (pyarrow stand-ins, the refusal path, ZF containers)

def test_red_team_arrow_validation_is_charged():
    """One memoised _restore_array argument tuple (a 600 KB values buffer) REDUCEd 70,000 times:
    each call validates the same bytes again. That work is charged to the budget, so the 1 MiB
    file is refused instead of loading in ~18 s."""
    pytest.importorskip("pyarrow")
    values = ("\u20ac" * 200_000).encode()
    offsets = struct.pack("<qq", 0, len(values))
    args = (b"(" + g("pyarrow.lib", "type_for_alias") + s("large_string") + b"\x85R"
            + i(1) + i(0) + i(0)
            + b"]" + b"(" + b"N" + g("pyarrow.lib", "py_buffer") + by(offsets) + b"\x85R"
            + g("pyarrow.lib", "py_buffer") + by(values) + b"\x85R" + b"e"
            + b"]" + b"N" + b"t")
    body = (b"(" + g("pyarrow.lib", "_restore_array") + b"q\x01" + args + b"\x85q\x02R"
            + b"h\x01h\x02R0" * 70_000 + b"l")
    data = p4(body)
    assert len(data) <= 1 << 20
    res = run_child({"amp": ("loads", data, {"trusted": True})})
    assert_refused(res, "BudgetExceededError")
    # one such call alone is a valid string array and loads
    ok = run_child({"one": ("loads", p4(g("pyarrow.lib", "_restore_array") + args + b"\x85R"),
                            {"trusted": True})})
    assert ok["one"][0] == "loaded", ok


def test_red_team_inspect_ops_cap_counts_nested_streams(tmp_path):
    """inspect's opcode cap for a compressed file counted each object-array record's nested
    stream from zero, so K records held K x the cap (a 68 KB gzip file took ~40 s, in inspect and
    in the refusal path of a restricted load). One count for the whole walk now."""
    import gzip
    buf = io.BytesIO()
    fastjoblib.dump(np.array(["a"], dtype=object), buf, provenance=False)
    d = buf.getvalue()
    # the record: wrapper global, its state (ending with the alignment key's value 16), BUILD
    hdr = d[d.index(b"\x8c\x13joblib"):d.index(b"K\x10ub") + 4]
    nested = b"\x80\x05" + b"N0" * 300_000 + b"N."  # 600k opcodes: below the cap each
    body = b"\x80\x04" + g("foo", "bar") + b"0(" + (hdr + nested) * 3 + b"l."
    path = str(tmp_path / "nested.pkl.gz")
    with open(path, "wb") as f:
        f.write(gzip.compress(body, 9))
    with pytest.raises(ValueError, match="opcodes in a compressed stream"):
        fastjoblib.inspect(path)
    with pytest.raises(fastjoblib.UntrustedGlobalError, match="foo.bar"):
        fastjoblib.load(path, trusted=True)


@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                    reason="peak RSS is not the program's under ASan (shadow memory, quarantine)")
def test_red_team_zfile_peak_memory(tmp_path):
    """A joblib < 0.10 ZF container of 1 MB expanding to 1 GiB: the restricted load stops at the
    budget without the 2 x peak of one big zlib decompress call."""
    import zlib
    path = str(tmp_path / "old.pkl")
    comp = zlib.compressobj(9)
    chunk = bytes(64 << 20)
    z = b"".join(comp.compress(chunk) for _ in range(16)) + comp.flush()
    with open(path, "wb") as fh:
        fh.write(b"ZF" + "{:#x}".format(16 * len(chunk)).ljust(19).encode() + z)
    budget = (64 << 20) + 100 * os.path.getsize(path)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    p = subprocess.run([sys.executable, "-W", "ignore", "-c", _RSS_CHILD, path],
                       capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    outcome, grown = p.stdout.split()
    assert outcome == "refused"
    assert int(grown) < budget + (48 << 20), (int(grown) >> 20, budget >> 20)


def test_red_team_refusal_listing_is_bounded(tmp_path):
    """A refused restricted load lists every refused global by walking the file again; that walk
    stops after 1M opcodes (then the error names the first refusal only), so a small compressed
    file cannot make the refusal itself slow."""
    import gzip
    few = b"\x80\x04" + g("foo", "bar") + b"0" + g("baz", "qux") + b"0N."
    # 1.4M opcodes: above the listing's 1M, below inspect's own cap (2M + 8 x size)
    many = b"\x80\x04" + g("foo", "bar") + b"0" + b"N0" * 700_000 + g("baz", "qux") + b"0N."
    for name, body, both in (("few.pkl.gz", few, True), ("many.pkl.gz", many, False)):
        path = str(tmp_path / name)
        with open(path, "wb") as f:
            f.write(gzip.compress(body, 9))
        with pytest.raises(fastjoblib.UntrustedGlobalError) as info:
            fastjoblib.load(path, trusted=True)
        assert "foo.bar" in str(info.value)
        assert ("baz.qux" in str(info.value)) is both, str(info.value)
