"""The pickle-compatible API against the *running* interpreter's stdlib pickle, side by side.

Where stdlib pickle changed between CPython versions (csrc/pyver.h: find_class lookups and their
errors, save_global errors, extension-code errors, frame checks, text-protocol integers, nested
names under protocol < 4, reducer_override), fastjoblib must give what the stdlib of the
interpreter running the test gives: the same exception type, text and chained context, or the same
result / bytes. Nothing here is written for one version: each case compares with `pickle` live.
"""
import copyreg
import io
import pickle
import sys

import numpy as np
import pytest

import fastjoblib
from fastjoblib import _core


def outcome(fn, *args):
    """('ok', repr) or (exception type name, text, context type name, context text)."""
    try:
        return ("ok", repr(fn(*args)))
    except Exception as e:  # noqa: BLE001 - the exception is what is compared
        ctx = e.__context__
        return (type(e).__name__, str(e), type(ctx).__name__ if ctx is not None else None,
                str(ctx) if ctx is not None else None)


# ---- find_class ---------------------------------------------------------------------------------

FIND_CLASS_CASES = [
    ("math", "log"), ("math", "spam"), ("math", "log.spam"), ("math", "log.<locals>.spam"),
    ("math", ""), ("math", ".log"), ("math", "log."), ("math", "log.__qualname__"),
    ("builtins", "str.upper"), ("builtins", "str.__dict__.upper"), ("os.path", "join"),
    ("__builtin__", "str"), ("spam_no_such_module", "log"), ("", "log"),
    ("math", None), (None, "log"), ("math", 1),
]


def _unpicklers(cls, head):
    u = cls(io.BytesIO(head))
    if head:
        u.load()  # the protocol find_class follows is the loaded stream's
    return u


@pytest.mark.parametrize("head", [b"", b"\x80\x02N.", b"\x80\x04N."], ids=["fresh", "proto2", "proto4"])
@pytest.mark.parametrize("module,name", FIND_CLASS_CASES)
def test_find_class_like_stdlib(head, module, name):
    want = outcome(_unpicklers(pickle.Unpickler, head).find_class, module, name)
    assert outcome(_unpicklers(_core.Unpickler, head).find_class, module, name) == want
    assert outcome(_unpicklers(fastjoblib.Unpickler, head).find_class, module, name) == want


def test_find_class_non_str_name_does_not_crash():
    # CPython 3.13 crashed here before (a non-str name reached a str-only C function)
    u = _core.Unpickler(io.BytesIO(b"\x80\x04N."))
    u.load()
    with pytest.raises((TypeError, AttributeError)):
        u.find_class("math", None)


# ---- save_global errors -------------------------------------------------------------------------

def _make_local():
    def local_function():
        pass
    return local_function


class _Hidden:
    pass


HIDDEN = _Hidden
del _Hidden


class _NotSame:
    pass


NOT_SAME = _NotSame


class _NotSame:  # noqa: F811 - the module attribute is now another class
    pass


def _no_module():
    pass


_no_module.__module__ = "fastjoblib_no_such_module_xyz"

GLOBAL_ERROR_CASES = {
    "local": _make_local(),
    "local_in_list": [1, {"k": _make_local()}],
    "hidden": HIDDEN,
    "not_same": NOT_SAME,
    "no_module": _no_module,
}


@pytest.mark.parametrize("proto", [0, 2, 4, 5])
@pytest.mark.parametrize("case", sorted(GLOBAL_ERROR_CASES))
def test_save_global_errors_like_stdlib(case, proto):
    obj = GLOBAL_ERROR_CASES[case]
    want = outcome(pickle.dumps, obj, proto)
    assert want[0] != "ok"
    assert outcome(_core.dumps, obj, proto) == want
    assert outcome(lambda o, p: _core.Pickler(io.BytesIO(), p).dump(o), obj, proto) == want


class Outer:
    class Inner:
        pass


class Recursive:
    pass


Recursive.ref = Recursive
Recursive.__qualname__ = "Recursive.ref"


@pytest.mark.parametrize("proto", range(pickle.HIGHEST_PROTOCOL + 1))
def test_nested_names_like_stdlib(proto):
    # below protocol 4 a dotted __qualname__ is written as getattr calls; how, changed in 3.13
    assert _core.dumps(Outer.Inner, proto) == pickle.dumps(Outer.Inner, proto)
    got = outcome(_core.dumps, Recursive, proto)
    want = outcome(pickle.dumps, Recursive, proto)
    assert got[0] == want[0]
    if want[0] == "ok":
        assert pickle.loads(_core.dumps(Recursive, proto)) is Recursive


class MyList(list):
    pass


@pytest.mark.parametrize("code", [object(), None, -1, 0, 2**31, 2**1000],
                         ids=["object", "None", "-1", "0", "2**31", "2**1000"])
def test_bad_extension_code_like_stdlib(code):
    key = (MyList.__module__, "MyList")
    assert key not in copyreg._extension_registry
    copyreg._extension_registry[key] = code
    copyreg._inverted_registry[code] = key
    try:
        want = outcome(pickle.dumps, MyList, 2)
        assert want[0] != "ok"
        assert outcome(_core.dumps, MyList, 2) == want
    finally:
        del copyreg._extension_registry[key]
        del copyreg._inverted_registry[code]


@pytest.mark.parametrize("value", [None, 10])
def test_invalid_reducer_override_like_stdlib(value):
    def dump(cls):
        class P(cls):
            pass
        p = P(io.BytesIO())
        p.reducer_override = value
        p.dump(object())
    want = outcome(dump, pickle.Pickler)
    assert want[0] == "TypeError"
    assert outcome(dump, _core.Pickler) == want


# ---- the reading side: frames and text integers -------------------------------------------------

FRAME_CASES = [
    b"\x80\x04\x95\x06\x00\x00\x00\x00\x00\x00\x00Vhelloworld\n.",
    b"\x80\x04\x95\x06\x00\x00\x00\x00\x00\x00\x00X\x0a\x00\x00\x00helloworld.",
    b"\x80\x04\x95\x03\x00\x00\x00\x00\x00\x00\x00C\x0ahelloworld.",
    b"\x80\x04\x95\x09\x00\x00\x00\x00\x00\x00\x00cbuiltins\nprint\n.",
    b"\x80\x04\x95\x0c\x00\x00\x00\x00\x00\x00\x00N\x95\x00\x00\x00\x00\x00\x00\x00\x00NN.",
    b"\x80\x04\x95\x0a\x00\x00\x00\x00\x00\x00\x00N\x95\x00\x00\x00\x00\x00\x00\x00\x00N.",
    b"\x80\x04\x95\x02\x00\x00\x00\x00\x00\x00\x00N.",
]


@pytest.mark.parametrize("data", FRAME_CASES)
def test_frames_like_stdlib(data):
    """pickle-compatible loads: frames as strict as the running stdlib's C unpickler."""
    want = outcome(pickle.loads, data)
    assert outcome(_core.loads, data) == want
    assert outcome(lambda d: _core.Unpickler(io.BytesIO(d)).load(), data) == want


@pytest.mark.parametrize("data", FRAME_CASES)
def test_frames_like_joblib(tmp_path, data):
    """joblib-compatible load: joblib reads with the pure-Python unpickler, strict on every
    version; fastjoblib.load gives the same result or the same exception type."""
    joblib = pytest.importorskip("joblib")
    path = tmp_path / "f.pkl"
    path.write_bytes(data)
    want = outcome(joblib.load, str(path))
    got = outcome(fastjoblib.load, str(path))
    assert got[0] == want[0]
    if want[0] == "ok":
        assert got == want


def test_array_record_after_its_frame(tmp_path):
    """The array payload follows the frame that ends at BUILD: frames stay strict around it."""
    path = tmp_path / "a.pkl"
    obj = {"a": np.arange(1000.0), "b": [np.arange(3), "x" * 70000, np.zeros((4, 4))]}
    fastjoblib.dump(obj, str(path), protocol=4)
    back = fastjoblib.load(str(path))
    np.testing.assert_array_equal(back["a"], obj["a"])
    assert back["b"][1] == obj["b"][1]


TEXT_INTS = [b"I010\n.", b"I-010\n.", b"L010\n.", b"L010L\n.", b"I0b10\n.", b"I0x10\n.",
             b"L0o10L\n.", b"I 10\n.", b"I1_0\n.", b"I+10\n.", b"I00\n.", b"I01\n.", b"I0\n.",
             b"I10 \n.", b"L-0L\n.", b"I\xd9\xa1\n."]

# Before 3.14 stdlib's own two unpicklers disagree on zero-padded integers (the C one reads "010"
# as octal 8, the pure-Python one refuses it); fastjoblib sides with the pure-Python one there.
PRE_314_DISAGREE = {b"I010\n.", b"I-010\n.", b"L010\n."}


@pytest.mark.parametrize("data", TEXT_INTS)
def test_text_integers_like_stdlib(data):
    want = outcome(pickle.loads, data)
    if sys.version_info < (3, 14) and data in PRE_314_DISAGREE:
        want = outcome(pickle._loads, data)
        assert outcome(_core.loads, data)[0] == want[0]
        return
    got = outcome(_core.loads, data)
    assert got[0] == want[0]
    if want[0] == "ok":
        assert got == want


# ---- errors inside nested objects: 3.14's notes ("when serializing list item 1") -------------

class NoteError(Exception):
    pass


class Unpicklable:
    def __reduce__(self):
        raise NoteError("no")


U = Unpicklable()


class Holder:  # state through __dict__
    def __init__(self, v):
        self.v = v


class Slotted:  # state as (None, {slot: value})
    __slots__ = ("a",)

    def __init__(self, v):
        self.a = v


class ListSub(list):  # listitems of the reduce value
    pass


class DictSub(dict):  # dictitems of the reduce value
    pass


class Reduces:
    def __init__(self, rv):
        self.rv = rv

    def __reduce__(self):
        return self.rv


class NotesNotAList:
    def __reduce__(self):
        e = NoteError("x")
        e.__notes__ = "not a list"  # adding a note fails: that TypeError is raised instead
        raise e


class OwnAddNote(Exception):
    def add_note(self, note):  # stdlib's C pickler adds its notes with BaseException.add_note
        raise RuntimeError("not called")


class RaisesOwnAddNote:
    def __reduce__(self):
        raise OwnAddNote("y")


def _cycle_list():
    a = []
    a.append(a)
    return [a]


def _cycle_dict():
    d = {}
    d["k"] = d
    return d


NOTE_CASES = {
    "list": lambda: [1, [2, 3, U]],
    "list_batches": lambda: [*range(2500), U],
    "tuple": lambda: (1, (2, U)),
    "tuple_long": lambda: (*range(10), U),
    "dict_value": lambda: {"a": {"b": U}},
    "dict_key": lambda: {U: 1},  # a key gets no note
    "dict_batches": lambda: {**dict.fromkeys(range(1500)), "z": U},
    "set": lambda: {U},
    "frozenset": lambda: frozenset({frozenset({U})}),
    "state": lambda: [Holder({"k": [U]})],
    "slots": lambda: Slotted(U),
    "listitems": lambda: ListSub([1, 2, U]),
    "dictitems": lambda: DictSub(a=U),
    "reconstructor": lambda: Reduces((Unpicklable(), ())),
    "reconstructor_args": lambda: Reduces((print, (1, U))),
    "newobj_args": lambda: Reduces((copyreg.__newobj__, (Reduces, 1, U))),
    "newobj_ex_kwargs": lambda: Reduces((copyreg.__newobj_ex__, (Reduces, (), {"a": U}))),
    "state_setter": lambda: Reduces((print, (), "s", None, None, Unpicklable())),
    "bad_reduce_value": lambda: [Reduces([print, ()])],
    "bad_callable": lambda: {"x": Reduces((42, ()))},
    "bad_args": lambda: Reduces((print, [])),
    "bad_listitems": lambda: Reduces((list, (), None, [])),
    "bad_dictitems": lambda: Reduces((dict, (), None, None, iter([("a",)]))),
    "bad_state_setter": lambda: Reduces((print, (), "s", None, None, 42)),
    "newobj_empty": lambda: Reduces((copyreg.__newobj__, ())),
    "newobj_not_class": lambda: Reduces((copyreg.__newobj__, (42,))),
    "newobj_wrong_class": lambda: Reduces((copyreg.__newobj__, (str,))),
    "newobj_ex_short": lambda: Reduces((copyreg.__newobj_ex__, (Reduces,))),
    "newobj_ex_args": lambda: Reduces((copyreg.__newobj_ex__, (Reduces, 42, {}))),
    "object_array": lambda: {"x": np.array([1, U], dtype=object)},
    "notes_not_a_list": lambda: [1, NotesNotAList()],
    "own_add_note": lambda: {"a": RaisesOwnAddNote()},
}


def error_of(fn, *args):
    """(type name, text, notes, context type name) of what fn raises; None when it does not."""
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 - the exception is what is compared
        ctx = e.__context__
        return (type(e).__name__, str(e), getattr(e, "__notes__", None),
                type(ctx).__name__ if ctx is not None else None)
    return None


def _pickler_dump(cls, obj, proto, fast=False):
    p = cls(io.BytesIO(), proto)
    p.fast = fast
    p.dump(obj)


@pytest.mark.parametrize("proto", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("case", sorted(NOTE_CASES))
def test_nested_errors_like_stdlib(case, proto):
    # on 3.14 the same notes in the same order, earlier versions none; and the same error either way
    want = error_of(pickle.dumps, NOTE_CASES[case](), proto)
    # (below protocol 2 __newobj__ / __newobj_ex__ are plain callables: no error, on both sides)
    assert want is not None or (case.startswith("newobj") and proto < 2)
    assert error_of(_core.dumps, NOTE_CASES[case](), proto) == want
    assert error_of(_pickler_dump, _core.Pickler, NOTE_CASES[case](), proto) == want
    assert error_of(fastjoblib.dumps, NOTE_CASES[case](), proto) == want


@pytest.mark.parametrize("make", [_cycle_list, _cycle_dict], ids=["list", "dict"])
def test_fast_mode_cycle_like_stdlib(make):
    # fast mode (no memo) detects a cycle at stdlib's depth: 3.14's notes show the depth
    obj = make()
    want = error_of(_pickler_dump, pickle.Pickler, obj, 4, True)
    assert want is not None and want[0] == "ValueError"
    assert error_of(_pickler_dump, _core.Pickler, obj, 4, True) == want


@pytest.mark.skipif(sys.version_info < (3, 14), reason="exception notes are new in 3.14")
def test_nested_error_notes_text():
    # the exact texts (what test_nested_errors_like_stdlib compares is stdlib's own output)
    e = error_of(_core.dumps, {"a": [0, Holder(U)]}, 4)
    assert e[0] == "NoteError"
    assert e[2] == ["when serializing dict item 'v'", f"when serializing {__name__}.Holder state",
                    f"when serializing {__name__}.Holder object", "when serializing list item 1",
                    "when serializing dict item 'a'"]


@pytest.mark.parametrize("case", ["list", "dict_value", "state", "object_array", "listitems"])
def test_nested_errors_like_joblib(tmp_path, case):
    # the joblib dump path (array records, its own save loop) raises what joblib.dump raises
    joblib = pytest.importorskip("joblib")
    for compress in (0, 3):
        want = error_of(joblib.dump, NOTE_CASES[case](), tmp_path / "j.pkl", compress)
        assert want is not None
        assert error_of(fastjoblib.dump, NOTE_CASES[case](), tmp_path / "f.pkl", compress) == want
