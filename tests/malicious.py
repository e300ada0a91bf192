"""Generators of hostile pickle / joblib streams, written at test time (no binaries committed).

Each generator returns bytes. The ones that execute a command run ``touch <marker>``, so a test
can prove both that the stream is really hostile (a plain, unrestricted load creates the marker)
and that a restricted load refuses it before anything runs (the marker does not exist).

`HOSTILE` maps a case name to (generator(marker) -> bytes, the global the policy must name when it
refuses, kind), kind being "plain" (a plain pickle stream) or "joblib" (needs joblib's array
records) or "build" (refused by the BUILD rule, not by find_class) or "shim" (the name is trusted
but resolves to a stand-in that refuses to be called).
"""
import io
import struct

import numpy as np


def _cmd(marker):
    return f"touch {marker}"


def _sbu(s):
    """SHORT_BINUNICODE (or BINUNICODE when long)."""
    b = s.encode("utf-8")
    if len(b) < 256:
        return b"\x8c" + bytes([len(b)]) + b
    return b"X" + struct.pack("<I", len(b)) + b


def _frame(body):
    """PROTO 4 + one FRAME holding body (FRAME is optional; we add it to look like real files)."""
    return b"\x80\x04\x95" + struct.pack("<Q", len(body)) + body


# ------------------------------------------------------------------------------------------------
# Direct code execution.

def global_reduce(marker, module="os", name="system"):
    """Protocol 0 text GLOBAL + REDUCE: os.system('touch marker')."""
    return (b"c" + module.encode() + b"\n" + name.encode() + b"\n(V" + _cmd(marker).encode()
            + b"\ntR.")


def stack_global(marker, module="os", name="system"):
    """Protocol 4 STACK_GLOBAL built from two strings, then REDUCE."""
    body = (_sbu(module) + b"\x94" + _sbu(name) + b"\x94\x93\x94" + _sbu(_cmd(marker))
            + b"\x94\x85\x94R\x94.")
    return _frame(body)


def inst_opcode(marker):
    """Protocol 0 INST: MARK, args, 'i' module\nname\n calls the class with the args."""
    return b"(V" + _cmd(marker).encode() + b"\nios\nsystem\n."


def obj_opcode(marker):
    """Protocol 1 OBJ: MARK, callable, args, 'o'."""
    return b"(cposix\nsystem\nV" + _cmd(marker).encode() + b"\no."


EXT_CODE = 0x7A31


def ext_opcode(marker):
    """EXT2 through copyreg's extension registry (only hostile if the code maps to a gadget, as
    in test_trust, which registers os.system under EXT_CODE)."""
    return b"\x80\x02\x83" + struct.pack("<H", EXT_CODE) + b"X" + \
        struct.pack("<I", len(_cmd(marker))) + _cmd(marker).encode() + b"\x85R."


def builtins_eval(marker):
    """builtins.eval of a source string (the classic one-liner)."""
    src = f"__import__('os').system({_cmd(marker)!r})"
    return b"\x80\x02c__builtin__\neval\nq\x00X" + struct.pack("<I", len(src)) + src.encode() + \
        b"\x85R."


def py2_alias(marker):
    """A Python 2 module name that pickle maps to subprocess: commands.getoutput."""
    return global_reduce(marker, "commands", "getoutput")


# ------------------------------------------------------------------------------------------------
# Loader trampolines: a stream whose globals look like data access but reduce to a second,
# unrestricted load of an inner payload.

def pickle_loads_inner(marker):
    """pickle.loads(b'<os.system payload>')."""
    inner = global_reduce(marker)
    return b"\x80\x02cpickle\nloads\nC" + bytes([len(inner)]) + inner + b"\x85R." \
        if len(inner) < 256 else b"\x80\x02cpickle\nloads\nB" + struct.pack("<i", len(inner)) + \
        inner + b"\x85R."


def joblib_load_inner(marker, inner_path):
    """joblib.load('<path of a hostile file>')."""
    return stack_global(marker, "joblib", "load").replace(
        _sbu(_cmd(marker)), _sbu(str(inner_path)))


def numpy_load_inner(marker, inner_path):
    """numpy.load(path, allow_pickle=True) through a trusted-looking module (numpy)."""
    # numpy.load(path, None, True): positional allow_pickle
    body = (_sbu("numpy") + _sbu("load") + b"\x93" + _sbu(str(inner_path)) + b"N\x88\x87R.")
    return _frame(body)


def getattr_chain(marker):
    """getattr(getattr(collections.OrderedDict, '__init__'), '__globals__') ... via builtins."""
    body = (_sbu("builtins") + _sbu("getattr") + b"\x93\x94"
            + _sbu("collections") + _sbu("OrderedDict") + b"\x93" + _sbu("__init__") + b"\x86R.")
    return _frame(body)


def dunder_walk(marker):
    """A trusted module, a qualname walking to module globals through dunders."""
    body = _sbu("numpy") + _sbu("ndarray.__init__.__globals__") + b"\x93."
    return _frame(body)


def module_walk(marker):
    """A trusted module with a qualname that walks into a module attribute: pathlib.os.system."""
    body = (_sbu("pathlib") + _sbu("os.system") + b"\x93" + _sbu(_cmd(marker)) + b"\x85R.")
    return _frame(body)


def runstring(marker):
    """numpy.testing._private.utils.runstring(code, dict): a prefix-allowlist gadget."""
    body = (_sbu("numpy.testing._private.utils") + _sbu("runstring") + b"\x93"
            + _sbu(f"import os; os.system({_cmd(marker)!r})") + b"}\x86R.")
    return _frame(body)


def operator_attrgetter(marker):
    """operator.attrgetter('system')(os module) needs a module; here just the attrgetter call."""
    body = (_sbu("operator") + _sbu("attrgetter") + b"\x93" + _sbu("system") + b"\x85R.")
    return _frame(body)


def memmap_write(marker):
    """numpy.memmap(path, 'uint8', 'w+', 0, (1,)): a trusted-looking numpy name that creates or
    truncates any file."""
    body = (_sbu("numpy") + _sbu("memmap") + b"\x93(" + _sbu(str(marker)) + _sbu("uint8")
            + _sbu("w+") + b"K\x00K\x01\x85tR.")
    return _frame(body)


# ------------------------------------------------------------------------------------------------
# Memo confusion (picklescan#14 style): MEMOIZE stores at index len(memo), not at max index + 1.
# A scanner that numbers MEMOIZE entries by its own counter believes memo[1] holds "collections"
# and that the global is collections.system; really memo[1] was overwritten with "os".

def memo_confusion(marker):
    body = (_sbu("collections") + b"q\x01"       # BINPUT 1        memo = {1: 'collections'}
            + b"0"                               # POP
            + _sbu("os") + b"\x94"               # MEMOIZE         memo[len(memo) = 1] = 'os'
            + b"0"                               # POP
            + b"h\x01"                           # BINGET 1        -> 'os'
            + _sbu("system") + b"\x93"           # STACK_GLOBAL    os.system
            + _sbu(_cmd(marker)) + b"\x85R.")
    return _frame(body)


# ------------------------------------------------------------------------------------------------
# The BUILD (setattr) gadget on an allowed global: protectai/modelscan#85 style. find_class gives
# a trusted class or function; BUILD with a (None, slotstate) state calls setattr on that shared
# global. Here it plants an attribute `pwned` on collections.UserDict (a trusted Python class
# without __setstate__) and, in the
# second variant, on a trusted Python function via its __dict__.

def build_on_class(marker):
    body = (_sbu("collections") + _sbu("UserDict") + b"\x93"
            + b"N}" + _sbu("pwned") + _sbu(str(marker)) + b"s\x86b.")
    return _frame(body)


def build_on_function(marker):
    body = (_sbu("pandas.core.indexes.base") + _sbu("_new_Index") + b"\x93"
            + b"}" + _sbu("pwned") + _sbu(str(marker)) + b"sb.")
    return _frame(body)


# ------------------------------------------------------------------------------------------------
# joblib: os.system hidden in the nested pickle stream of an object array.

def joblib_nested_object_array(marker):
    """A genuine joblib file of an object array whose nested stream is replaced by a hostile one.

    The outer stream (NumpyArrayWrapper with an object dtype) is what a restricted loader sees
    first and is entirely benign.
    """
    buf = io.BytesIO()
    import joblib
    joblib.dump(np.array([1, "a"], dtype=object), buf, protocol=4)
    data = buf.getvalue()
    # joblib >= 1.5 writes the nested stream with protocol 5; the outer one is protocol 4.
    start = data.index(b"\x80\x05", 2)
    assert data[-1:] == b"."
    return data[:start] + stack_global(marker) + data[-1:]


def joblib_hostile_after_array(marker):
    """A joblib file whose outer stream holds a float array then os.system (list of both)."""
    buf = io.BytesIO()
    import joblib
    joblib.dump([np.arange(3.0)], buf, protocol=4)
    data = buf.getvalue()
    # Replace the final STOP: the list is on the stack; push os.system(...) and APPEND it.
    assert data.endswith(b".")
    evil = _sbu("os") + _sbu("system") + b"\x93" + _sbu(_cmd(marker)) + b"\x85Ra."
    return data[:-1] + evil


HOSTILE = {
    "global_reduce": (global_reduce, "os.system", "plain"),
    "stack_global": (stack_global, "os.system", "plain"),
    "posix_system": (lambda m: stack_global(m, "posix", "system"), "posix.system", "plain"),
    "subprocess": (lambda m: stack_global(m, "subprocess", "check_call"),
                   "subprocess.check_call", "plain"),
    "builtins_eval": (builtins_eval, "builtins.eval", "plain"),
    "inst_opcode": (inst_opcode, "os.system", "plain"),
    "obj_opcode": (obj_opcode, "posix.system", "plain"),
    "py2_alias": (py2_alias, "subprocess.getoutput", "plain"),
    "pickle_loads_inner": (pickle_loads_inner, "pickle.loads", "plain"),
    "getattr_chain": (getattr_chain, "collections.OrderedDict.__init__", "plain"),
    "dunder_walk": (dunder_walk, "numpy.ndarray.__init__.__globals__", "plain"),
    "module_walk": (module_walk, "pathlib.os.system", "plain"),
    "runstring": (runstring, "numpy.testing._private.utils.runstring", "plain"),
    "operator_attrgetter": (operator_attrgetter, "operator.attrgetter", "plain"),
    "memo_confusion": (memo_confusion, "os.system", "plain"),
    "memmap_write": (memmap_write, "numpy.memmap", "shim"),
    "build_on_class": (build_on_class, "collections.UserDict", "build"),
    "build_on_function": (build_on_function, "pandas.core.indexes.base._new_Index", "build"),
    "joblib_nested_object_array": (joblib_nested_object_array, "os.system", "joblib"),
    "joblib_hostile_after_array": (joblib_hostile_after_array, "os.system", "joblib"),
}

# Cases that execute `touch marker` under an unrestricted load (used to prove they are hostile).
EXECUTES = {"global_reduce", "stack_global", "posix_system", "builtins_eval", "py2_alias",
            "inst_opcode", "obj_opcode",
            "pickle_loads_inner", "memo_confusion", "memmap_write", "runstring",
            "joblib_nested_object_array",
            "joblib_hostile_after_array"}


def write_all(directory, marker):
    """Write every hostile case to directory/<name>.pkl; returns {name: path}."""
    out = {}
    for name, (gen, _, _) in HOSTILE.items():
        p = directory / f"{name}.pkl"
        p.write_bytes(gen(marker))
        out[name] = p
    return out


def unrestricted_load(data):
    """What an unrestricted joblib.load does with these bytes (for proving hostility)."""
    import joblib
    return joblib.load(io.BytesIO(data))


__all__ = ["HOSTILE", "EXECUTES", "write_all", "unrestricted_load", "joblib_load_inner",
           "numpy_load_inner"]
