"""The pickle-compatible writer: _core.dumps / dump_pickle / Pickler against stdlib pickle."""
import copyreg
import collections
import io
import os
import pickle
import pickletools
import threading

import numpy as np
import pytest

from corpus import assert_deep_equal, corpus

from fastjoblib import _core

CORPUS = corpus()
PROTOCOLS = range(0, pickle.HIGHEST_PROTOCOL + 1)


@pytest.mark.parametrize("proto", PROTOCOLS)
@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus_roundtrip(name, proto):
    obj = CORPUS[name]
    try:
        expected = pickle.loads(pickle.dumps(obj, proto))
    except Exception as e:  # stdlib refuses (e.g. __slots__ below protocol 2): so must we
        with pytest.raises(type(e)):
            _core.dumps(obj, proto)
        return
    got = pickle.loads(_core.dumps(obj, proto))
    assert_deep_equal(expected, got)


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_dis_well_formed(proto):
    for name in ["dict", "recursive_list", "shared", "dataclass", "ints", "str", "set",
                 "frozenset", "tuple", "array_float64", "namedtuple", "big_bytes"]:
        data = _core.dumps(CORPUS[name], proto)
        pickletools.dis(data, out=io.StringIO())


def test_default_and_negative_protocol():
    assert _core.dumps(1)[:2] == bytes([0x80, pickle.DEFAULT_PROTOCOL])
    assert _core.dumps(1, -1)[:2] == b"\x80\x05"
    with pytest.raises(ValueError):
        _core.dumps(1, 6)


def test_atoms_and_edges():
    values = [None, True, False, 0, 1, -1, 255, 256, 65535, 65536, 2**31 - 1, -2**31,
              2**31, -2**31 - 1, 2**63 - 1, -2**63, 2**64, -2**64, 2**1000, -2**1000,
              0.0, -0.0, 1e-300, float("inf"), "", "a", "é" * 300, "\ud800", "a\\b\n\r\x1a\0",
              b"", b"x" * 300, bytearray(), bytearray(b"ab"), (), (1,), (1, 2), (1, 2, 3),
              (1, 2, 3, 4), [], {}, set(), frozenset(), 1 + 2j, Ellipsis, NotImplemented,
              type(None), type(Ellipsis), type(NotImplemented), list(range(2500)),
              {i: str(i) for i in range(2100)}, set(range(2100)), frozenset(range(1001))]
    for proto in PROTOCOLS:
        for v in values:
            got = pickle.loads(_core.dumps(v, proto))
            assert got == v or (v != v), (proto, v)
            assert type(got) is type(v)


def test_shared_and_recursive_structures():
    shared = ["s"]
    t = (shared, shared)
    lst = [1]
    lst.append(lst)
    rt = ([],)
    rt[0].append(rt)  # recursive tuple
    d = {}
    d["t"] = (d, 1, 2, 3)  # recursive through a long tuple
    for proto in PROTOCOLS:
        a = pickle.loads(_core.dumps(t, proto))
        assert a[0] is a[1]
        b = pickle.loads(_core.dumps(lst, proto))
        assert b[1] is b
        c = pickle.loads(_core.dumps(rt, proto))
        assert c[0][0] is c
        e = pickle.loads(_core.dumps(d, proto))
        assert e["t"][0] is e


def test_large_payloads_out_of_frame_to_file(tmp_path):
    obj = [b"a" * 200_000, "é" * 100_000, bytearray(b"z" * 70_000), "x" * 70_000]
    for proto in PROTOCOLS:
        bio = io.BytesIO()
        _core.dump_pickle(obj, bio, proto)
        assert pickle.loads(bio.getvalue()) == obj
        assert pickle.loads(_core.dumps(obj, proto)) == obj
        path = tmp_path / f"p{proto}.pkl"
        with open(path, "wb") as f:
            _core.dump_pickle(obj, f.fileno(), proto)
        with open(path, "rb") as f:
            assert pickle.load(f) == obj


def test_many_frames_stream_to_file():
    # a big object graph written through a file: frames are flushed as they fill
    obj = [{"id": i, "name": f"n{i}"} for i in range(50_000)]
    writes = []

    class W:
        def write(self, b):
            writes.append(len(b))
            return len(b)

    _core.dump_pickle(obj, W(), 4)
    assert len(writes) > 10 and max(writes) < 200_000
    bio = io.BytesIO()
    _core.dump_pickle(obj, bio, 4)
    assert pickle.loads(bio.getvalue()) == obj


def test_fix_imports_protocol2():
    data = _core.dumps([range, bytes, ValueError], 2)
    assert b"__builtin__" in data
    assert pickle.loads(data) == [range, bytes, ValueError]
    data = _core.dumps([range], 2, fix_imports=False)
    assert b"__builtin__" not in data
    assert pickle.loads(data) == [range]


def test_extension_registry():
    copyreg.add_extension("collections", "OrderedDict", 0xF1F1)
    try:
        data = _core.dumps(collections.OrderedDict, 2)
        assert b"\x83" in data and b"OrderedDict" not in data
        assert pickle.loads(data) is collections.OrderedDict
    finally:
        copyreg.remove_extension("collections", "OrderedDict", 0xF1F1)


class Outer:
    class Inner:
        def method(self):
            return 1


def test_nested_qualname_and_methods():
    for proto in PROTOCOLS:
        assert pickle.loads(_core.dumps(Outer.Inner, proto)) is Outer.Inner
        if proto >= 2:  # stdlib needs protocol 2+ for the method reduce too
            assert pickle.loads(_core.dumps(Outer.Inner.method, proto)) is Outer.Inner.method


def _no_module():
    return 1


def test_whichmodule_when_module_missing():
    f = _no_module
    f.__module__ = None
    try:
        for proto in PROTOCOLS:
            assert pickle.loads(_core.dumps(f, proto)) is f
    finally:
        f.__module__ = __name__


class PersPickler(_core.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, str) and obj.startswith("ext:"):
            return obj[4:]
        return None


class PersUnpickler(pickle.Unpickler):
    def persistent_load(self, pid):
        return ("loaded", pid)


def test_persistent_id_subclass():
    for proto in PROTOCOLS:
        bio = io.BytesIO()
        PersPickler(bio, proto).dump(["a", "ext:key", 3])
        bio.seek(0)
        assert PersUnpickler(bio).load() == ["a", ("loaded", "key"), 3]


def test_persistent_id_assigned_on_instance():
    bio = io.BytesIO()
    p = _core.Pickler(bio, 4)
    p.persistent_id = lambda o: "X" if o == 7 else None
    p.dump([7, 8])
    bio.seek(0)
    assert PersUnpickler(bio).load() == [("loaded", "X"), 8]


class Token:
    def __init__(self, v):
        self.v = v


def test_reducer_override_and_dispatch_table():
    class RO(_core.Pickler):
        def reducer_override(self, obj):
            if isinstance(obj, Token):
                return (int, (obj.v,))
            return NotImplemented

    bio = io.BytesIO()
    RO(bio, 4).dump([Token(5), {"k": Token(6)}, 1.5])
    assert pickle.loads(bio.getvalue()) == [5, {"k": 6}, 1.5]

    class DT(_core.Pickler):
        dispatch_table = {Token: lambda o: (str, (f"tok{o.v}",))}

    bio = io.BytesIO()
    DT(bio, 2).dump([Token(1)])
    assert pickle.loads(bio.getvalue()) == ["tok1"]

    # per-instance dispatch_table (ChainMap like cloudpickle) leaves copyreg's alone
    bio = io.BytesIO()
    p = _core.Pickler(bio, 3)
    p.dispatch_table = collections.ChainMap({Token: lambda o: (float, (o.v,))},
                                            copyreg.dispatch_table)
    p.dump(Token(2))
    assert pickle.loads(bio.getvalue()) == 2.0
    with pytest.raises(AttributeError):
        pickle.loads(_core.dumps(Token(2))).missing  # plain pickling unaffected


def test_copyreg_dispatch_table():
    class Local:
        pass

    copyreg.pickle(Token, lambda o: (Token, (o.v * 10,)))
    try:
        assert pickle.loads(_core.dumps(Token(3))).v == 30
    finally:
        del copyreg.dispatch_table[Token]


def test_clear_memo_and_fast():
    bio = io.BytesIO()
    p = _core.Pickler(bio, 2)
    s = ["shared"]
    p.dump(s)
    p.dump(s)  # memo kept: second stream refers to the first memo entry (like stdlib)
    second = bio.getvalue()
    bio2 = io.BytesIO()
    p2 = pickle.Pickler(bio2, 2)
    p2.dump(s)
    p2.dump(s)
    assert len(second) == len(bio2.getvalue())
    p.clear_memo()
    bio.seek(0)
    bio.truncate()
    p.dump(s)
    assert pickle.loads(bio.getvalue()) == s
    p.fast = 1
    bio.seek(0)
    bio.truncate()
    p.dump([s, s])
    assert pickle.loads(bio.getvalue()) == [s, s]
    assert p.bin == 1


def test_buffer_callback_out_of_band():
    a = np.arange(100_000, dtype="f8")
    ro = np.arange(10, dtype="i4")
    ro.flags.writeable = False
    buffers = []
    data = _core.dumps([a, ro, pickle.PickleBuffer(b"bytes-ro")], 5,
                       buffer_callback=buffers.append)
    assert len(buffers) == 3
    out = pickle.loads(data, buffers=buffers)
    np.testing.assert_array_equal(out[0], a)
    np.testing.assert_array_equal(out[1], ro)
    assert bytes(out[2]) == b"bytes-ro"
    assert len(data) < 1000
    # in-band when the callback returns true
    data = _core.dumps([a], 5, buffer_callback=lambda b: True)
    np.testing.assert_array_equal(pickle.loads(data)[0], a)
    with pytest.raises(ValueError):
        _core.dumps(1, 4, buffer_callback=buffers.append)
    with pytest.raises(pickle.PicklingError):
        _core.dumps(pickle.PickleBuffer(b"x"), 4)


def test_picklebuffer_non_contiguous():
    a = np.arange(20.0)[::2]
    with pytest.raises(pickle.PicklingError):
        _core.dumps(pickle.PickleBuffer(a), 5)


class NewObjEx:
    def __init__(self, a, *, b):
        self.a, self.b = a, b

    def __getnewargs_ex__(self):
        return (self.a,), {"b": self.b}

    def __new__(cls, a, *, b):
        o = super().__new__(cls)
        o.a, o.b = a, b
        return o


def _set_state(obj, state):
    obj.__dict__.update(state)
    obj.via_setter = True


class WithSetter:
    def __init__(self):
        self.x = 1

    def __reduce__(self):
        return (WithSetter, (), {"x": 2}, None, None, _set_state)


class ListLike(list):
    pass


def test_reduce_protocol_variants():
    for proto in PROTOCOLS:
        o = pickle.loads(_core.dumps(NewObjEx(1, b=2), proto))
        assert (o.a, o.b) == (1, 2)
        if proto >= 2:
            ws = pickle.loads(_core.dumps(WithSetter(), proto))
            assert ws.x == 2 and ws.via_setter
        ll = ListLike([1, 2, 3])
        ll.attr = "v"
        got = pickle.loads(_core.dumps(ll, proto))
        assert type(got) is ListLike and got == [1, 2, 3] and got.attr == "v"
        dd = collections.defaultdict(int, {"a": 1})
        assert pickle.loads(_core.dumps(dd, proto)) == dd


def test_reduce_errors():
    class BadLen:
        def __reduce__(self):
            return (int,)

    class BadType:
        def __reduce__(self):
            return 42

    class BadArgs:
        def __reduce__(self):
            return (int, [1])

    for cls in (BadLen, BadType, BadArgs):
        with pytest.raises(pickle.PicklingError):
            _core.dumps(cls())


@pytest.mark.parametrize("make", [
    lambda: (lambda x: x),
    lambda: threading.Lock(),
    lambda: (i for i in range(3)),
    lambda: (lambda: (lambda: 0))(),
])
@pytest.mark.parametrize("proto", PROTOCOLS)
def test_unpicklable_same_exception_type(make, proto):
    obj = make()
    with pytest.raises(Exception) as std:
        pickle.dumps(obj, proto)
    with pytest.raises(Exception) as ours:
        _core.dumps(obj, proto)
    assert type(ours.value) is type(std.value)


MODULE_LAMBDA = lambda: 0  # noqa: E731


def test_error_message_names_object():
    with pytest.raises(pickle.PicklingError, match="lambda"):
        _core.dumps(MODULE_LAMBDA)
    # a local object: AttributeError before 3.14, PicklingError from 3.14 (the running stdlib's)
    local = lambda: 0  # noqa: E731
    with pytest.raises(Exception) as std:
        pickle.dumps(local)
    with pytest.raises(type(std.value), match="local object") as ours:
        _core.dumps(local)
    assert str(ours.value) == str(std.value)
    with pytest.raises(TypeError, match="lock"):
        _core.dumps(threading.Lock())


def test_recursion_error():
    deep = []
    cur = deep
    for _ in range(100_000):
        nxt = []
        cur.append(nxt)
        cur = nxt
    with pytest.raises(RecursionError):
        _core.dumps(deep)
    d = {}
    cur = d
    for _ in range(100_000):
        cur["k"] = {}
        cur = cur["k"]
    with pytest.raises(RecursionError):
        _core.dumps(d, 2)


def test_dict_changed_size_during_pickling():
    class Mutator:
        def __init__(self, d):
            self.d = d

        def __reduce__(self):
            self.d["new"] = 1
            return (int, (0,))

    d = {"a": 1}
    d["m"] = Mutator(d)
    with pytest.raises(RuntimeError):
        _core.dumps(d)


def test_pickler_api():
    bio = io.BytesIO()
    with pytest.raises(TypeError):
        _core.Pickler(object())
    p = _core.Pickler(bio)
    p.dump({"a": 1})
    assert pickle.loads(bio.getvalue()) == {"a": 1}

    class NoInit(_core.Pickler):
        def __init__(self):
            pass

    with pytest.raises(pickle.PicklingError):
        NoInit().dump(1)


def test_write_error_propagates():
    class Bad:
        def write(self, b):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        _core.dump_pickle(list(range(10)), Bad())
    with pytest.raises(OSError, match="disk full"):
        _core.Pickler(Bad(), 4).dump([1])


def test_threads_concurrently():
    objs = [[{"i": i, "s": str(i)} for i in range(2000)] for _ in range(4)]
    results = [None] * 4

    def run(k):
        for _ in range(20):
            results[k] = _core.dumps(objs[k], 4)

    ts = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for k in range(4):
        assert pickle.loads(results[k]) == objs[k]


def test_fd_target(tmp_path):
    path = tmp_path / "x.pkl"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        _core.dump_pickle({"x": b"y" * 100_000}, fd, 5)
    finally:
        os.close(fd)
    with open(path, "rb") as f:
        assert pickle.load(f) == {"x": b"y" * 100_000}


def _random_graph(rng, depth=0, pool=None):
    pool = [] if pool is None else pool
    k = rng.integers(0, 12)
    if depth > 4 or k < 4:
        atoms = [None, True, int(rng.integers(-2**40, 2**40)), float(rng.random()),
                 "s" * int(rng.integers(0, 300)), b"b" * int(rng.integers(0, 300)),
                 2**int(rng.integers(60, 200)), complex(1, 2)]
        return atoms[int(rng.integers(0, len(atoms)))]
    if k == 4 and pool:
        return pool[int(rng.integers(0, len(pool)))]  # shared reference
    n = int(rng.integers(0, 6))
    kids = [_random_graph(rng, depth + 1, pool) for _ in range(n)]
    if k in (5, 6):
        out = list(kids)
    elif k == 7:
        out = tuple(kids)
    elif k == 8:
        out = {str(i): v for i, v in enumerate(kids)}
    elif k == 9:
        out = collections.OrderedDict((i, v) for i, v in enumerate(kids))
    elif k == 10:
        out = {i for i in range(n)}
    else:
        out = frozenset(str(i) for i in range(n))
    pool.append(out)
    return out


def test_random_graphs_match_stdlib():
    rng = np.random.default_rng(1234)
    for i in range(300):
        obj = _random_graph(rng)
        for proto in PROTOCOLS:
            assert pickle.loads(_core.dumps(obj, proto)) == pickle.loads(pickle.dumps(obj, proto))


def test_pickle_api_write_argument_types():
    got = []

    class W:
        def write(self, b):
            got.append((type(b), bytes(b)))
            return len(b)

    big = b"q" * 1_000_000
    _core.dump_pickle(["small", big], W(), 5)
    kinds = [t for t, _ in got]
    assert bytes in kinds and memoryview in kinds  # big payload handed over without a copy
    assert pickle.loads(b"".join(b for _, b in got)) == ["small", big]


def test_fast_mode_cycle_is_an_error_like_stdlib():
    lst = []
    cur = lst
    for _ in range(60):
        nxt = []
        cur.append(nxt)
        cur = nxt
    cur.append(lst)  # a cycle 60 deep
    for P in (pickle.Pickler, _core.Pickler):
        p = P(io.BytesIO(), 4)
        p.fast = 1
        with pytest.raises(ValueError, match="fast mode"):
            p.dump(lst)
    p = _core.Pickler(io.BytesIO(), 4)
    p.fast = 1
    deep = [[[[["x"]]]]] * 3
    p.dump(deep)  # shared but acyclic: fine, written three times


# --- memo proxy, reducer_override lookup, framing of big items in memory -----------------------

def test_pickler_memo_proxy_copy_set_clear():
    s = "shared-string"
    lst = [s, s]
    p = _core.Pickler(io.BytesIO(), 4)
    p.dump(lst)
    ref = pickle.Pickler(io.BytesIO(), 4)
    ref.dump(lst)
    got = p.memo.copy()
    want = ref.memo.copy()
    assert sorted(v[0] for v in got.values()) == sorted(v[0] for v in want.values())
    assert {k: v[1] is (s if v[1] == s else lst) for k, v in got.items()}
    assert got[id(s)] == (want[id(s)][0], s) and got[id(s)][1] is s
    assert pickle.loads(pickle.dumps(p.memo)) .keys() == got.keys()  # __reduce__: a dict
    # a primed pickler refers back to what the first one wrote
    bio = io.BytesIO()
    primed = _core.Pickler(bio, 4)
    primed.memo = p.memo
    primed.dump(lst)
    assert b"shared-string" not in bio.getvalue()
    # assigned from a plain dict in copy() form
    bio2 = io.BytesIO()
    q = _core.Pickler(bio2, 4)
    q.memo = got
    q.dump(lst)
    assert bio2.getvalue() == bio.getvalue()
    # the proxy is live: clear() through it empties the pickler's memo
    proxy = q.memo
    proxy.clear()
    assert q.memo.copy() == {}
    with pytest.raises(TypeError):
        q.memo = [1]
    with pytest.raises(TypeError):
        q.memo = {1: "not a pair"}
    with pytest.raises(TypeError):
        del q.memo


class _OverrideMixin:
    def reducer_override(self, obj):
        if isinstance(obj, Token):
            return (int, (obj.v,))
        return NotImplemented


def test_reducer_override_from_mixin_and_instance():
    class Mixed(_core.Pickler, _OverrideMixin):  # the mixin comes after Pickler in the MRO
        pass

    bio = io.BytesIO()
    Mixed(bio, 2).dump([Token(4)])
    assert pickle.loads(bio.getvalue()) == [4]
    bio = io.BytesIO()
    p = _core.Pickler(bio, 5)
    p.reducer_override = lambda o: (str, ("inst",)) if isinstance(o, Token) else NotImplemented
    p.dump(Token(1))
    assert pickle.loads(bio.getvalue()) == "inst"


@pytest.mark.parametrize("proto", [4, 5])
def test_big_items_unframed_in_memory_like_stdlib(proto):
    n = 200_000
    obj = [b"x" * n, [1], [2], "y" * n, bytearray(b"z" * n)]
    got = _core.dumps(obj, proto)
    want = pickle.dumps(obj, proto)
    assert pickle.loads(got) == obj

    def layout(data):  # frame sizes, and for each big item whether it sits inside a frame
        frames, big, frame_end = [], [], -1
        for op, arg, pos in pickletools.genops(data):
            if op.name == "FRAME":
                frames.append(arg)
                frame_end = pos + 9 + arg
            elif isinstance(arg, (bytes, str, bytearray)) and len(arg) >= n:
                big.append(pos < frame_end)
        return len(frames), big

    assert layout(got) == layout(want)
    assert layout(got)[1] == [False, False, False]
