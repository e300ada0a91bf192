"""The C unpickler against stdlib pickle: every corpus object x protocols 0-5, py2 strings,
hooks (find_class, persistent_load, buffers, EXT codes), every opcode, file positions, errors."""
import copyreg
import io
import os
import pickle
import pickletools
import sys

import numpy as np
import pytest

from corpus import CORPUS_NAMES, assert_deep_equal, corpus
from fastjoblib import _core

PROTOCOLS = range(0, pickle.HIGHEST_PROTOCOL + 1)
_CORPUS = corpus()


def _dumps_or_skip(obj, proto):
    try:
        return pickle.dumps(obj, proto)
    except Exception as exc:  # some objects cannot be pickled at low protocols
        pytest.skip(f"stdlib cannot pickle at protocol {proto}: {exc!r}")


@pytest.mark.parametrize("proto", PROTOCOLS)
@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_corpus_loads_matches_stdlib(name, proto):
    data = _dumps_or_skip(_CORPUS[name], proto)
    expected = pickle.loads(data)
    got = _core.loads(data)
    assert_deep_equal(expected, got)
    # the same through the file-object paths
    assert_deep_equal(expected, _core.Unpickler(io.BytesIO(data)).load())
    assert_deep_equal(expected, _core.load_pickle(io.BytesIO(data)))


def test_identity_and_recursion_preserved():
    shared = [1]
    obj = {"a": shared, "b": shared}
    obj["self"] = obj
    for proto in PROTOCOLS:
        got = _core.loads(pickle.dumps(obj, proto))
        assert got["a"] is got["b"]
        assert got["self"] is got


def _all_opcodes_seen(datas):
    seen = set()
    for d in datas:
        for op, _, _ in pickletools.genops(d):
            seen.add(op.name)
    return seen


class OldStyle:
    def __init__(self, *args):
        self.args = args

    def __eq__(self, other):
        return type(other) is OldStyle and other.args == self.args


def _handmade():
    """Pickles for opcodes stdlib's writer never emits (INST, OBJ, DUP, POP, text forms...)."""
    mod = __name__.encode()
    return {
        "inst": b"(I1\nI2\ni" + mod + b"\nOldStyle\n.",
        "obj": b"(c" + mod + b"\nOldStyle\nI3\no.",
        "dup": b"]2a.",  # a list appended to itself... DUP then APPEND
        "pop": b"I1\nI2\n0.",
        "pop_mark": b"I7\n(I1\nI2\n1.",
        "text_long": b"L12345678901234567890L\n.",
        "text_float": b"F1.5\n.",
        "text_string": b"S'abc'\n.",
        "text_unicode": b"V\\u00e9t\\u00e9\n.",
        "dict": b"(S'a'\nI1\nd.",
        "setitem": b"}S'k'\nI2\ns.",
        "get_put": b"(I5\np0\ng0\nl.",
        "long1_neg": b"\x80\x02\x8a\x02\x00\x80.",
        "long4": b"\x80\x02\x8b\x03\x00\x00\x00\x01\x02\x03.",
        "binstring": b"\x80\x02T\x03\x00\x00\x00abc.",
        "bool_text": b"I01\n.",
        "frozenset": b"\x80\x04(K\x01K\x02\x91.",
        "long_binput_get": b"\x80\x02K\x07r\x00\x00\x01\x00j\x00\x00\x01\x00\x86.",
        "short_binstring": b"\x80\x02U\x03abc.",
    }


@pytest.mark.parametrize("name", sorted(_handmade()))
def test_handmade_opcodes_match_stdlib(name):
    data = _handmade()[name]
    pickletools.dis(data, out=io.StringIO())  # well-formed for pickletools
    expected = pickle.loads(data)
    got = _core.loads(data)
    if name == "dup":
        assert got[0] is got
        return
    assert type(got) is type(expected)
    assert got == expected


def test_every_opcode_is_exercised():
    datas = list(_handmade().values())
    for name in CORPUS_NAMES:
        for proto in PROTOCOLS:
            try:
                datas.append(pickle.dumps(_CORPUS[name], proto))
            except Exception:
                pass
    datas.append(pickle.dumps(pickle.PickleBuffer(bytearray(b"xy")), 5))
    datas.append(pickle.dumps([pickle.PickleBuffer(b"xy"), pickle.PickleBuffer(bytearray(b"z"))], 5,
                              buffer_callback=lambda b: False))
    datas.append(pickle.dumps(b"x" * 10, 3) + pickle.dumps("y" * 300, 4))
    datas.append(b"\x80\x04\x8e\x02\x00\x00\x00\x00\x00\x00\x00ab\x8d\x01\x00\x00\x00\x00\x00\x00\x00c\x86.")
    datas.append(b"\x80\x02\x82\x01\x83\x00\x01\x84\x00\x00\x01\x00\x87.")  # EXT1/2/4 (names only)
    datas.append(b"\x80\x02X\x01\x00\x00\x00aQ.")  # BINPERSID
    datas.append(b"Pid\n.")  # PERSID
    datas.append(b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01K\x02\x86.")
    datas.append(b"\x80\x05\x97\x98.")  # NEXT_BUFFER, READONLY_BUFFER
    datas.append(b"\x80\x04\x8f(K\x01\x90.")  # EMPTY_SET, ADDITEMS
    datas.append(b"\x80\x04c" + b"builtins\nobject\n)}\x92.")  # NEWOBJ_EX
    datas.append(b"\x80\x02C\x01a.")
    seen = _all_opcodes_seen(datas)
    missing = {op.name for op in pickletools.opcodes} - seen
    assert not missing, missing
    # and the C engine loads every stdlib-producible one of them: checked by the other tests


# --- py2 strings / encodings ---------------------------------------------------------------

PY2_PICKLES = {
    "short_binstring_latin": b"\x80\x02U\x03\xe9t\xe9q\x00.",
    "binstring_ascii": b"\x80\x02T\x03\x00\x00\x00abcq\x00.",
    "text_string_latin": b"S'\\xe9t\\xe9'\np0\n.",
    "py2_datetime": (b"\x80\x02cdatetime\ndatetime\nq\x00U\n\x07\xe4\x01\x02\x03\x04\x05\x00\x00\x06"
                     b"q\x01\x85q\x02Rq\x03."),
    "py2_builtin_set": b"c__builtin__\nset\np0\n((lp1\nI1\naI2\natp2\nRp3\n.",
    "py2_copy_reg": (b"\x80\x02ccopy_reg\n_reconstructor\nq\x00c__builtin__\nobject\nq\x01h\x01N\x87q\x02Rq\x03."),
    "py2_unicode": b"\x80\x02X\x02\x00\x00\x00\xc3\xa9q\x00.",
}


def _outcome(fn):
    try:
        return ("ok", fn())
    except Exception as exc:
        return ("err", type(exc))


@pytest.mark.parametrize("kwargs", [{}, {"encoding": "latin1"}, {"encoding": "bytes"},
                                    {"encoding": "ASCII", "errors": "replace"},
                                    {"fix_imports": False}, {"encoding": "utf-8", "errors": "strict"}])
@pytest.mark.parametrize("name", sorted(PY2_PICKLES))
def test_py2_strings_match_stdlib(name, kwargs):
    data = PY2_PICKLES[name]
    exp = _outcome(lambda: pickle.loads(data, **kwargs))
    got = _outcome(lambda: _core.loads(data, **kwargs))
    assert exp[0] == got[0], (exp, got)
    if exp[0] == "err":
        assert issubclass(got[1], exp[1]) or issubclass(exp[1], got[1]), (exp, got)
    else:
        assert type(exp[1]) is type(got[1])
        if type(exp[1]) is object:
            return
        assert exp[1] == got[1]


# --- hooks -----------------------------------------------------------------------------------

class Restricted(_core.Unpickler):
    def find_class(self, module, name):
        if module == "builtins" and name in ("set", "frozenset"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is forbidden")


def test_find_class_override_in_subclass():
    assert Restricted(io.BytesIO(pickle.dumps({1, 2}, 4))).load() == {1, 2}
    with pytest.raises(pickle.UnpicklingError, match="forbidden"):
        Restricted(io.BytesIO(pickle.dumps(OldStyle(1), 4))).load()


def test_find_class_assigned_on_instance():
    calls = []
    u = _core.Unpickler(io.BytesIO(pickle.dumps(OldStyle(1, 2), 4)))
    base = u.find_class

    def fc(module, name):
        calls.append((module, name))
        return base(module, name)

    u.find_class = fc
    assert u.load() == OldStyle(1, 2)
    assert (__name__, "OldStyle") in calls


def test_find_class_audit_event():
    seen = []

    def hook(event, args):
        if event == "pickle.find_class":
            seen.append(args)

    sys.addaudithook(hook)
    _core.loads(pickle.dumps(OldStyle, 4))
    assert (__name__, "OldStyle") in seen


def test_find_class_fix_imports_mapping():
    u = _core.Unpickler(io.BytesIO(b"."))
    assert _core.loads(b"c__builtin__\nset\n.") is set
    assert _core.loads(b"c__builtin__\nset\n.", fix_imports=True) is set
    with pytest.raises(ModuleNotFoundError):
        _core.loads(b"c__builtin__\nset\n.", fix_imports=False)
    assert u.find_class("builtins", "len") is len


class PersistentPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, str) and obj.startswith("ext:"):
            return obj[4:]
        return None


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_persistent_load(proto):
    buf = io.BytesIO()
    PersistentPickler(buf, protocol=proto).dump(["ext:alpha", "plain", "ext:beta"])
    data = buf.getvalue()

    class U(_core.Unpickler):
        def persistent_load(self, pid):
            return ("resolved", pid)

    assert U(io.BytesIO(data)).load() == [("resolved", "alpha"), "plain", ("resolved", "beta")]
    u = _core.Unpickler(io.BytesIO(data))
    u.persistent_load = lambda pid: pid.upper()
    assert u.load() == ["ALPHA", "plain", "BETA"]
    with pytest.raises(pickle.UnpicklingError, match="persistent_load"):
        _core.loads(data)
    with pytest.raises(pickle.UnpicklingError):
        pickle.loads(data)


def test_out_of_band_buffers():
    arr = np.arange(1000.0)
    bufs = []
    data = pickle.dumps([arr, pickle.PickleBuffer(b"ro")], protocol=5, buffer_callback=bufs.append)
    got = _core.loads(data, buffers=bufs)
    np.testing.assert_array_equal(got[0], arr)
    exp = pickle.loads(data, buffers=bufs)
    assert bytes(got[1]) == bytes(exp[1]) == b"ro"
    assert type(got[1]) is type(exp[1])
    got2 = _core.Unpickler(io.BytesIO(data), buffers=iter(bufs)).load()
    np.testing.assert_array_equal(got2[0], arr)
    with pytest.raises(pickle.UnpicklingError, match="buffers"):
        _core.loads(data)
    with pytest.raises(pickle.UnpicklingError, match="not enough"):
        _core.loads(data, buffers=bufs[:1])


def test_readonly_buffer_makes_readonly_view():
    data = pickle.dumps(pickle.PickleBuffer(b"abc"), 5, buffer_callback=lambda b: False)
    b = bytearray(b"abc")
    exp = pickle.loads(data, buffers=[b])
    got = _core.loads(data, buffers=[b])
    assert type(exp) is type(got) is memoryview
    assert got.readonly and bytes(got) == b"abc"


def test_ext_codes():
    cases = [(17, "collections", "OrderedDict"), (300, "collections", "Counter"), (70000, "collections", "deque")]
    for code, mod, name in cases:
        copyreg.add_extension(mod, name, code)
    try:
        import collections
        for proto in (2, 3, 4, 5):
            data = pickle.dumps([collections.OrderedDict, collections.Counter, collections.deque], proto)
            ops = {op.name for op, _, _ in pickletools.genops(data)}
            assert {"EXT1", "EXT2", "EXT4"} <= ops
            assert _core.loads(data) == [collections.OrderedDict, collections.Counter, collections.deque]
    finally:
        for code, mod, name in cases:
            copyreg.remove_extension(mod, name, code)
    with pytest.raises(ValueError, match="unregistered extension code"):
        _core.loads(b"\x80\x02\x82\x05.")


# --- file position ---------------------------------------------------------------------------

class ReadOnlyFile:
    """read + readline only: no peek, no readinto, no seek."""

    def __init__(self, data):
        self._b = io.BytesIO(data)
        self.read = self._b.read
        self.readline = self._b.readline

    def tell(self):
        return self._b.tell()


class ReadintoFile(ReadOnlyFile):
    def __init__(self, data):
        super().__init__(data)
        self.readinto = self._b.readinto


@pytest.mark.parametrize("proto", PROTOCOLS)
@pytest.mark.parametrize("kind", ["bytesio", "buffered", "readonly", "readinto"])
def test_file_position_after_load(tmp_path, proto, kind):
    first = {"a": list(range(300)), "b": "x" * 70000, "c": b"y" * 100}
    stream = pickle.dumps(first, proto) + pickle.dumps("second", proto) + b"trailing"
    n1 = len(pickle.dumps(first, proto))
    if kind == "bytesio":
        f = io.BytesIO(stream)
    elif kind == "buffered":
        p = tmp_path / "s.bin"
        p.write_bytes(stream)
        f = open(p, "rb")
    elif kind == "readonly":
        f = ReadOnlyFile(stream)
    else:
        f = ReadintoFile(stream)
    try:
        assert _core.Unpickler(f).load() == first
        assert f.tell() == n1
        assert _core.load_pickle(f) == "second"
        assert f.read() == b"trailing"
    finally:
        if kind == "buffered":
            f.close()


def test_fd_position_after_load(tmp_path):
    p = tmp_path / "s.bin"
    a = pickle.dumps(list(range(1000)), 4)
    p.write_bytes(a + pickle.dumps("two", 2) + b"rest")
    fd = os.open(p, os.O_RDONLY)
    try:
        assert _core.load_pickle(fd) == list(range(1000))
        assert os.lseek(fd, 0, os.SEEK_CUR) == len(a)
        assert _core.load_pickle(fd) == "two"
        assert os.read(fd, 10) == b"rest"
    finally:
        os.close(fd)


# --- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("data,exc,match", [
    (b"", EOFError, "Ran out of input"),
    (b"\x80\x04\x95", pickle.UnpicklingError, "truncated"),
    (b"\x80\x06N.", ValueError, "unsupported pickle protocol: 6"),
    (b"h\x05.", pickle.UnpicklingError, "Memo value not found"),
    (b"j\xff\xff\xff\x7f.", pickle.UnpicklingError, "Memo value not found"),
    (b"a.", pickle.UnpicklingError, "underflow"),
    (b"t.", pickle.UnpicklingError, "MARK"),
    (b"(u.", pickle.UnpicklingError, "underflow"),
    (b"\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\x7f.", pickle.UnpicklingError, "truncated"),
    (b"X\xff\xff\xff\xffab.", pickle.UnpicklingError, "truncated"),
    (b"N", EOFError, "STOP"),  # like stdlib: input ending where an opcode should start
    (b"\xff", pickle.UnpicklingError, "invalid load key"),
    (b"Ixyz\n.", ValueError, "int"),
    (b"}K\x01K\x02K\x03u.", pickle.UnpicklingError, "MARK"),
    (b"(K\x01d.", pickle.UnpicklingError, "odd number"),
    (b"\x8b\xff\xff\xff\xff.", pickle.UnpicklingError, "negative"),
    (b"K\x01K\x02\x93.", pickle.UnpicklingError, "STACK_GLOBAL requires str"),
    (b"K\x01)\x81.", pickle.UnpicklingError, "must be a type"),
])
def test_bad_input_raises(data, exc, match):
    with pytest.raises(exc, match=match):
        _core.loads(data)
    with pytest.raises(Exception):
        _core.Unpickler(io.BytesIO(data)).load()


def test_huge_claim_in_stream_does_not_allocate():
    # a stream with no known size claiming 2**62 bytes: fails on truncation, not MemoryError
    data = b"\x80\x04\x8e" + (2**62).to_bytes(8, "little") + b"abc"
    with pytest.raises(pickle.UnpicklingError, match="truncated"):
        _core.Unpickler(ReadOnlyFile(data)).load()
    data = b"\x80\x05\x96" + (2**40).to_bytes(8, "little") + b"abc"
    with pytest.raises(pickle.UnpicklingError, match="truncated"):
        _core.Unpickler(ReadOnlyFile(data)).load()
    with pytest.raises(pickle.UnpicklingError, match="truncated"):
        _core.loads(data)


def test_loads_rejects_str_and_accepts_buffers():
    with pytest.raises(TypeError):
        _core.loads("abc")
    data = pickle.dumps([1, 2], 5)
    assert _core.loads(bytearray(data)) == [1, 2]
    assert _core.loads(memoryview(data)) == [1, 2]


def test_unpickler_threads():
    import threading
    data = pickle.dumps([{"k": i, "v": str(i)} for i in range(20000)], 5)
    expected = pickle.loads(data)
    errors = []

    def work():
        for _ in range(5):
            if _core.loads(data) != expected:
                errors.append("mismatch")

    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors


def test_sparse_and_overwritten_memo_indices():
    data = b"(I5\np99999999\ng99999999\nI6\np3\nI7\np3\ng3\nl."
    assert _core.loads(data) == pickle.loads(data) == [5, 5, 6, 7, 7]
    data = b"\x80\x02K\x01r\xff\xff\xff\xff0j\xff\xff\xff\xff\x94h\x01\x86."  # MEMOIZE after a sparse PUT
    # (the C stdlib unpickler sizes its memo array by the index and raises MemoryError here)
    assert _core.loads(data) == pickle._loads(data) == (1, 1)


@pytest.mark.parametrize("proto", (0, 1))
def test_long_text_lines_from_streams(proto):
    obj = ["é" * 300_000, 10**4000, "x" * 2_000_000]
    data = pickle.dumps(obj, proto)
    for f in (io.BytesIO(data), ReadOnlyFile(data), ReadintoFile(data)):
        assert _core.Unpickler(f).load() == obj
        assert f.read() == b""


def test_fd_pipe_source():
    import threading
    obj = {"k": list(range(50000)), "b": b"z" * 3_000_000}
    data = pickle.dumps(obj, 5) + b"after"
    r, w = os.pipe()

    def writer():
        with os.fdopen(w, "wb") as f:
            f.write(data)

    th = threading.Thread(target=writer)
    th.start()
    try:
        assert _core.load_pickle(r) == obj
    finally:
        th.join()
        os.close(r)


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_memo_shared_across_loads_like_stdlib(proto):
    shared = ["shared"]
    buf = io.BytesIO()
    p = pickle.Pickler(buf, protocol=proto)
    p.dump(shared)
    p.dump({"again": shared})  # refers to the first dump's memo entry
    data = buf.getvalue()
    u = _core.Unpickler(io.BytesIO(data))
    first = u.load()
    second = u.load()
    assert second["again"] is first
    ref = pickle.Unpickler(io.BytesIO(data))
    r1 = ref.load()
    assert ref.load()["again"] is r1


def test_buffers_iterator_spans_loads_like_stdlib():
    bufs = []
    p1 = pickle.dumps(pickle.PickleBuffer(b"one"), 5, buffer_callback=bufs.append)
    p2 = pickle.dumps(pickle.PickleBuffer(b"two"), 5, buffer_callback=bufs.append)
    for cls in (pickle.Unpickler, _core.Unpickler):
        u = cls(io.BytesIO(p1 + p2), buffers=list(bufs))
        assert bytes(u.load()) == b"one"
        assert bytes(u.load()) == b"two"


def test_load_pickle_requires_readline():
    class OnlyRead:
        def read(self, n=-1):
            return b""

    with pytest.raises(TypeError, match="readline"):
        _core.load_pickle(OnlyRead())
    with pytest.raises(TypeError, match="readline"):
        _core.Unpickler(OnlyRead())


# --- memo proxy and file attributes ---------------------------------------------------------------

def test_unpickler_memo_proxy():
    data = pickle.dumps(["abc", "abc", [1]], 2)
    u = _core.Unpickler(io.BytesIO(data))
    first = u.load()
    ref = pickle.Unpickler(io.BytesIO(data))
    ref.load()
    got = u.memo.copy()
    assert got.keys() == ref.memo.copy().keys()
    assert got[0] is first
    # primed from the proxy or from a dict: GETs resolve to the shared objects
    stream = b"\x80\x02h\x00h\x00\x86q\x05."   # (memo[0], memo[0]) with no PUT of its own
    for memo in (u.memo, dict(got)):
        v = _core.Unpickler(io.BytesIO(stream))
        v.memo = memo
        a, b = v.load()
        assert a is first and b is first
        assert v.memo.copy()[5] == (first, first)
    proxy = u.memo
    proxy.clear()
    assert u.memo.copy() == {}
    with pytest.raises(pickle.UnpicklingError, match="Memo value not found"):
        u2 = _core.Unpickler(io.BytesIO(stream))
        u2.load()
    with pytest.raises(ValueError):
        _core.Unpickler(io.BytesIO(stream)).memo = {-1: 0}
    with pytest.raises(TypeError):
        _core.Unpickler(io.BytesIO(stream)).memo = [1]


def test_unpickler_memo_visible_during_load():
    seen = []

    class U(_core.Unpickler):
        def find_class(self, module, name):
            seen.append(dict(self.memo.copy()))
            return super().find_class(module, name)

    obj = ["first", collections_ordered()]
    data = pickle.dumps(obj, 2)
    got = U(io.BytesIO(data)).load()
    assert got == obj
    assert any("first" in d.values() for d in seen)  # the running load's memo, not an empty one


def collections_ordered():
    import collections
    return collections.OrderedDict(a=1)


def test_unpickler_file_attribute_errors_propagate():
    class Bad:
        @property
        def read(self):
            raise ZeroDivisionError

        def readline(self):
            return b""

    with pytest.raises(ZeroDivisionError):
        _core.Unpickler(Bad())
    with pytest.raises(ZeroDivisionError):
        _core.load_pickle(Bad())

    class NoReadline:
        def read(self, n):
            return b""

    with pytest.raises(TypeError):
        _core.Unpickler(NoReadline())


def test_reduce_non_tuple_is_type_error():
    with pytest.raises(TypeError):
        _core.loads(b"cbuiltins\nint\nNR.")
    with pytest.raises(EOFError):
        _core.loads(b"N")
    with pytest.raises(EOFError):
        _core.Unpickler(io.BytesIO(b"K\x01")).load()


# --- restricted loading: find_class policy, check_build, built-in BUILD rule, EXT ----------------

import _compat_pickle  # noqa: E402
import collections  # noqa: E402
import types  # noqa: E402


class Point:
    """A plain data class whose instances get state through BUILD."""

    def __init__(self, x=0):
        self.x = x

    def __eq__(self, other):
        return type(other) is Point and other.x == self.x


SINGLETON = Point(99)  # a module-level instance: a global, not an object created by a load


class Policy:
    """A small allow-list policy of this test module's own (independent of fastjoblib._trust)."""

    def __init__(self, allowed, with_check=True):
        self.allowed = set(allowed)
        self.calls = []
        self.builds = []
        if with_check:
            self.check_build = self._check_build

    def __call__(self, module, name):
        self.calls.append((module, name))
        if (module, name) in _compat_pickle.NAME_MAPPING:  # protocol 0-2 streams name py2 globals
            module, name = _compat_pickle.NAME_MAPPING[module, name]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) not in self.allowed:
            raise pickle.UnpicklingError(f"policy refuses {module}.{name}")
        return getattr(sys.modules[module] if module in sys.modules else __import__(module), name)

    def _check_build(self, inst):
        self.builds.append(type(inst).__name__)
        if isinstance(inst, type):
            raise PermissionError(f"check_build refused {inst.__name__}")


def _build_count(data):
    return sum(op.name == "BUILD" for op, _, _ in pickletools.genops(data))


def _build_on_global(module, name):
    """GLOBAL module.name; (None, {"pwned": 1}); BUILD; STOP: setattr straight onto a global."""
    return (b"c" + module.encode() + b"\n" + name.encode() + b"\n"
            + b"N}X\x05\x00\x00\x00pwnedK\x01s\x86b.")


POINT_NAMES = {(__name__, "Point"), ("copyreg", "_reconstructor"), ("builtins", "object")}


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_check_build_called_before_every_build(proto):
    obj = [Point(1), Point(2), {"p": Point(3)}]
    data = pickle.dumps(obj, proto)
    n = _build_count(data)
    assert n == 3
    for load in (lambda d, p: _core.loads(d, find_class=p),
                 lambda d, p: _core.load_pickle(io.BytesIO(d), find_class=p),
                 lambda d, p: _core.load(io.BytesIO(d), find_class=p),
                 lambda d, p: _core.load(d, find_class=p)):
        policy = Policy(POINT_NAMES)
        assert load(data, policy) == obj
        assert policy.builds == ["Point"] * n
        assert (__name__, "Point") in policy.calls


def test_check_build_in_nested_object_array_streams(tmp_path):
    joblib = pytest.importorskip("joblib")
    arr = np.array([Point(1), Point(2), None], dtype=object)
    p = tmp_path / "objarr.pkl"
    joblib.dump({"a": arr, "p": Point(7)}, p)
    allowed = POINT_NAMES | {("joblib.numpy_pickle", "NumpyArrayWrapper"),
                             ("numpy", "dtype"), ("numpy", "ndarray"),
                             ("numpy._core.multiarray", "_reconstruct")}
    policy = Policy(allowed)
    with open(p, "rb") as f:
        got = _core.load(f, find_class=policy)
    assert list(got["a"]) == list(arr) and got["p"] == Point(7)
    # Point(7) at top level, the array wrapper, and the two Points of the nested stream
    assert policy.builds.count("Point") == 3
    assert "NumpyArrayWrapper" in policy.builds
    # check_build refusing inside the nested stream aborts the whole load
    refuse = Policy(allowed)
    seen = []

    def no_points(inst):  # called before the state is applied: count the Points instead
        seen.append(inst)
        if sum(isinstance(i, Point) for i in seen) == 2:  # Point(2), inside the array's stream
            raise PermissionError("no Point(2)")

    refuse.check_build = no_points
    with open(p, "rb") as f, pytest.raises(PermissionError, match="Point\\(2\\)"):
        _core.load(f, find_class=refuse)
    assert isinstance(seen[-2], Point) and any(type(i).__name__ == "NumpyArrayWrapper" for i in seen)


def test_check_build_exception_propagates_before_state_is_applied():
    class Marker:
        pass

    data = _build_on_global("collections", "UserDict")
    policy = Policy({("collections", "UserDict")})
    with pytest.raises(PermissionError, match="UserDict"):
        _core.loads(data, find_class=policy)
    assert "pwned" not in vars(collections.UserDict)
    # unrestricted, the same stream really does mutate the class (the test can fail)
    try:
        _core.loads(data)
        assert vars(collections.UserDict)["pwned"] == 1
    finally:
        if "pwned" in vars(collections.UserDict):
            del collections.UserDict.pwned


@pytest.mark.parametrize("target,owner", [
    (("collections", "UserDict"), lambda: collections.UserDict),        # a type
    (("builtins", "len"), None),                                        # a builtin function
    ((__name__, "collections_ordered"), None),                          # a Python function
    (("os", "path"), None),                                             # a module (os.path)
    ((__name__, "SINGLETON"), lambda: SINGLETON),                       # an instance find_class returned
    (("types", "SimpleNamespace"), lambda: types.SimpleNamespace),
])
def test_builtin_build_rule_refuses_globals(target, owner):
    data = _build_on_global(*target)
    policy = Policy({target}, with_check=False)  # no check_build: the C rule alone
    for load in (lambda: _core.loads(data, find_class=policy),
                 lambda: _core.load(io.BytesIO(data), find_class=policy),
                 lambda: _core.load_pickle(io.BytesIO(data), find_class=policy)):
        with pytest.raises(pickle.UnpicklingError, match="refused BUILD") as exc:
            load()
        assert not isinstance(exc.value, PermissionError)
    if owner is not None:
        assert "pwned" not in vars(owner())
    assert not hasattr(SINGLETON, "pwned")


def test_builtin_build_rule_names_the_target():
    with pytest.raises(pickle.UnpicklingError, match="UserDict"):
        _core.loads(_build_on_global("collections", "UserDict"),
                    find_class=Policy({("collections", "UserDict")}, with_check=False))
    with pytest.raises(pickle.UnpicklingError, match="Point"):
        _core.loads(_build_on_global(__name__, "SINGLETON"),
                    find_class=Policy({(__name__, "SINGLETON")}, with_check=False))


def test_builtin_build_rule_allows_objects_created_by_the_load():
    # instances made by NEWOBJ / REDUCE during the load may receive state
    obj = [Point(5), collections.OrderedDict(a=1), types.SimpleNamespace(x=1)]
    for proto in PROTOCOLS:
        data = pickle.dumps(obj, proto)
        policy = Policy(POINT_NAMES | {("collections", "OrderedDict"), ("types", "SimpleNamespace"),
                                       ("builtins", "dict")}, with_check=False)
        assert _core.loads(data, find_class=policy) == obj
    # numpy's dtype reduce BUILDs the singleton dtype returned by REDUCE: allowed
    data = pickle.dumps(np.dtype("f8"), 2)
    allowed = {("numpy", "dtype")}
    assert _core.loads(data, find_class=Policy(allowed, with_check=False)) == np.dtype("f8")


def test_unpickler_check_build_method_and_policy_attribute():
    data = pickle.dumps([Point(1), Point(2)], 4)
    builds = []

    class U(_core.Unpickler):
        def check_build(self, inst):
            builds.append(inst)

    assert U(io.BytesIO(data)).load() == [Point(1), Point(2)]
    assert [b.x for b in builds] == [1, 2]
    # a policy object assigned as find_class brings its own check_build and the C rule
    u = _core.Unpickler(io.BytesIO(_build_on_global(__name__, "SINGLETON")))
    u.find_class = Policy({(__name__, "SINGLETON")}, with_check=False)
    u.find_class.check_build = lambda inst: None
    with pytest.raises(pickle.UnpicklingError, match="refused BUILD"):
        u.load()
    # a plain find_class override (no check_build) keeps stdlib semantics: no BUILD rule
    class Plain(_core.Unpickler):
        def find_class(self, module, name):
            return super().find_class(module, name)

    try:
        Plain(io.BytesIO(_build_on_global(__name__, "SINGLETON"))).load()
        assert SINGLETON.pwned == 1
    finally:
        SINGLETON.__dict__.pop("pwned", None)


def test_ext_codes_always_go_through_the_policy():
    code = 0x7ff0
    copyreg.add_extension(__name__, "Point", code)
    try:
        data = pickle.dumps([Point, Point, Point(3)], 2)
        assert b"\x83" in data  # EXT2
        # an unrestricted load fills copyreg's cache
        assert _core.loads(data)[0] is Point
        assert code in copyreg._extension_cache
        policy = Policy(POINT_NAMES)
        assert _core.loads(data, find_class=policy)[2] == Point(3)
        assert policy.calls.count((__name__, "Point")) == 3  # every EXT use asks (cache or not)
        refusing = Policy(set())
        with pytest.raises(pickle.UnpicklingError, match="policy refuses"):
            _core.loads(data, find_class=refusing)
        with pytest.raises(pickle.UnpicklingError, match="policy refuses"):
            _core.load(io.BytesIO(data), find_class=refusing)

        # a policy's answer (here a stand-in) never lands in copyreg's cache
        copyreg._extension_cache.clear()

        class StandIn:
            pass

        _core.loads(data[:data.index(b"\x83") + 3] + b".",
                    find_class=lambda m, n: StandIn)
        assert code not in copyreg._extension_cache
        assert _core.loads(data)[0] is Point
    finally:
        copyreg.remove_extension(__name__, "Point", code)
        copyreg._extension_cache.pop(code, None)


def test_unrestricted_load_has_no_build_rule():
    # without a policy, BUILD on a returned global works as in stdlib (fast path untouched)
    try:
        _core.loads(_build_on_global(__name__, "SINGLETON"))
        assert SINGLETON.pwned == 1
    finally:
        SINGLETON.__dict__.pop("pwned", None)
