"""What a restricted load (``trusted=``) checks beyond the names a file may import.

The policy in ``_trust.py`` decides which globals a stream may name. This module holds the rest of
the security boundary (``docs/SECURITY.md``), as hooks the C engine calls under a policy:

* ``check_object(obj, shared)``, after every call (REDUCE, NEWOBJ, OBJ, INST) and after BUILD:
  no object may carry a dunder attribute in its instance ``__dict__`` (``__array_interface__``
  on a SimpleNamespace is how a file would hand NumPy a raw address), and a call may not return a
  callable shared with the rest of the process unless the policy itself handed it out (the C
  engine only calls globals that passed the policy, or such shared results).
* ``filter_state(inst, state)``, before every BUILD: the states NumPy trusts blindly are
  validated, and dtype states are rebuilt from their validated parts (``_dtype_state``), so the
  flags, itemsize and object-ness NumPy uses come from NumPy's own constructor, never from the file.
* ``before_call(func, args, kwargs)``, before every call: sizes the file asks for without paying
  for them in bytes (ranges, virtual arrays, byte counts) are charged to the load's budget, and
  containers built from an iterable are checked for hash flooding.

The C engine adds the rules that need reference counts: objects this load did not create are never
mutated (BUILD, SETITEM(S), APPEND(S), ADDITEMS), dtypes and arrays get state only while unused,
distinct dict keys / set items sharing one hash are capped, and the budget counts NumPy array data
(a NumPy memory handler), long strings and a fixed cost per opcode.
"""
import collections
import pickle
import sys
import types

__all__ = ["BudgetExceededError", "Budget", "attach", "default_max_bytes"]

GiB = 1 << 30
# Budget of a restricted load when max_bytes is not given: 1 GiB + 1000 x the input's size.
_BASE = GiB
_PER_INPUT_BYTE = 1000
# Distinct items sharing one hash value that a container built by a call may hold.
_FLOOD_MAX = 64


class BudgetExceededError(pickle.UnpicklingError, MemoryError):
    """A restricted load asked for more memory than ``max_bytes`` allows."""


def default_max_bytes(input_size):
    """The budget of a restricted load of an input of ``input_size`` bytes (None: unknown)."""
    return _BASE + _PER_INPUT_BYTE * max(0, int(input_size or 0))


class Budget:
    """A load's memory budget (a C capsule the engine uses, plus the Python-side charges)."""

    __slots__ = ("capsule", "explicit")

    def __init__(self, max_bytes=None):
        from . import _core
        if max_bytes is not None:
            if isinstance(max_bytes, bool) or not isinstance(max_bytes, int):
                raise TypeError(f"max_bytes must be an int or None, got {max_bytes!r}")
            if max_bytes <= 0:
                raise ValueError(f"max_bytes must be positive, got {max_bytes!r}")
        self.explicit = max_bytes is not None
        self.capsule = _core._budget(max_bytes if max_bytes is not None else default_max_bytes(0))

    def set_input_size(self, n):
        """The default limit follows the input's size (no effect when max_bytes was given)."""
        from . import _core
        if not self.explicit:
            _core._budget_set_limit(self.capsule, default_max_bytes(n))

    def charge(self, n):
        from . import _core
        _core._budget_charge(self.capsule, n)

    def state(self):
        """(used, peak, limit, refused request or 0)."""
        from . import _core
        return _core._budget_state(self.capsule)


def _refuse(what):
    from ._trust import UntrustedGlobalError
    return UntrustedGlobalError(what[0], what[1])


def _is_dunder(k):
    return type(k) is str and len(k) >= 4 and k[:2] == "__" and k[-2:] == "__"


# ------------------------------------------------------------------------------------------------
# check_object

_CALLABLE_TYPES = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
                   types.MethodType, types.MethodWrapperType, types.WrapperDescriptorType,
                   types.MethodDescriptorType, types.ClassMethodDescriptorType)


def _make_check_object(returned):
    weights = {}

    def check_object(obj, shared=False):
        np = sys.modules.get("numpy")
        if np is not None and isinstance(obj, np.dtype) and (obj.fields or obj.subdtype) \
                and dtype_weight(obj, weights) > _MAX_DTYPE_WEIGHT:
            raise pickle.UnpicklingError(
                f"refused structured dtype under trusted=: more than {_MAX_DTYPE_WEIGHT} fields "
                "once its shared sub-dtypes are expanded (NumPy walks every one of them)")
        # (a shared object's attributes were not set by this file: only fresh ones are checked)
        d = getattr(obj, "__dict__", None) if not shared and not isinstance(obj, type) else None
        if type(d) is dict:
            for k in d:
                if _is_dunder(k):
                    raise _refuse((f"{type(obj).__module__}.{type(obj).__qualname__}",
                                   f"an object may not carry the special attribute {k!r} under "
                                   "trusted= (a file could point NumPy at any memory address "
                                   "this way)"))
        if shared and (isinstance(obj, _CALLABLE_TYPES) or hasattr(type(obj), "__get__")) \
                and returned.get(id(obj)) is not obj:
            name = getattr(obj, "__qualname__", None) or type(obj).__name__
            raise _refuse((str(name), "a trusted callable returned a function or class that "
                                      "the policy did not hand out"))
    return check_object


# ------------------------------------------------------------------------------------------------
# filter_state: NumPy states

_ENDIANS = ("<", ">", "|", "=")
_DT_UNITS = frozenset({b"Y", b"M", b"W", b"D", b"h", b"m", b"s", b"ms", b"us", b"ns", b"ps",
                       b"fs", b"as", b"generic"})


def _bad_state(kind, why):
    return pickle.UnpicklingError(f"refused {kind} state under trusted=: {why}")


def _is_int(x, lo=None, hi=None):
    return type(x) is int and (lo is None or x >= lo) and (hi is None or x <= hi)


def _dtype_state(np, inst, state):
    """A safe state for ``inst.__setstate__``: rebuilt by NumPy's constructor from the validated
    parts of `state`; the file's flags, alignment and itemsize claims are never used as such."""
    if type(state) is not tuple or len(state) not in (8, 9) or state[0] not in (3, 4):
        raise _bad_state("dtype", "only NumPy's version 3/4 dtype states are accepted")
    if type(inst) not in _legacy_dtype_types(np):
        raise _bad_state("dtype", f"{type(inst).__name__} objects take no state")
    _, endian, sub, names, fields, elsize, _align, flags = state[:8]
    meta = state[8] if len(state) == 9 else None
    if endian not in _ENDIANS or not _is_int(elsize, -1) or not _is_int(flags):
        raise _bad_state("dtype", "malformed header items")
    try:
        if sub is not None:
            if names is not None or fields is not None:
                raise _bad_state("dtype", "a subarray dtype with fields")
            if not (type(sub) is tuple and len(sub) == 2 and isinstance(sub[0], np.dtype)
                    and type(sub[1]) is tuple and all(_is_int(x, 0, 2**31) for x in sub[1])):
                raise _bad_state("dtype", "malformed subarray")
            ref = np.dtype((sub[0], sub[1]))
        elif names is not None or fields is not None:
            if type(names) is not tuple or type(fields) is not dict:
                raise _bad_state("dtype", "names must be a tuple and fields a dict")
            formats, offsets, titles = [], [], []
            for n in names:
                f = fields.get(n) if type(n) is str else None
                if not (type(f) is tuple and len(f) in (2, 3) and isinstance(f[0], np.dtype)
                        and _is_int(f[1], 0)):
                    raise _bad_state("dtype", f"malformed field {n!r}")
                title = f[2] if len(f) == 3 else None
                if title is not None and type(title) is not str:
                    raise _bad_state("dtype", f"malformed title of field {n!r}")
                formats.append(f[0])
                offsets.append(f[1])
                titles.append(title)
            spec = {"names": list(names), "formats": formats, "offsets": offsets}
            if elsize >= 0:
                spec["itemsize"] = elsize
            if any(t is not None for t in titles):
                spec["titles"] = titles
            ref = np.dtype(spec, align=bool(flags & 0x80))  # NPY_ALIGNED_STRUCT
            if set(fields) != set(ref.fields):
                raise _bad_state("dtype", "fields disagree with names and titles")
        else:
            ref = np.dtype(inst.char) if inst.kind not in "SUVMm" else None
            if inst.kind in "SUV":
                if elsize > 0:
                    n = elsize // 4 if inst.kind == "U" else elsize
                    if inst.kind == "U" and elsize % 4:
                        raise _bad_state("dtype", "unicode itemsize is not a multiple of 4")
                    ref = np.dtype((inst.kind, n))
                else:
                    ref = np.dtype(inst.kind)
            elif inst.kind in "Mm":
                unit = meta[1] if type(meta) is tuple and len(meta) == 2 else None
                if not (type(unit) is tuple and len(unit) == 4 and unit[0] in _DT_UNITS
                        and _is_int(unit[1], 1, 2**31)):
                    raise _bad_state("dtype", "datetime64/timedelta64 without a valid unit")
                u = unit[0].decode()
                ref = np.dtype(f"{inst.kind.upper() if inst.kind == 'M' else 'm'}8"
                               + ("" if u == "generic" else f"[{unit[1]}{u}]"))
        if endian in "<>" and ref.byteorder != "|":
            ref = ref.newbyteorder(endian)
        if isinstance(meta, dict):
            ref = np.dtype(ref, metadata=meta)
        elif type(meta) is tuple and len(meta) == 2 and isinstance(meta[0], dict):
            ref = np.dtype(ref, metadata=meta[0])
    except pickle.UnpicklingError:
        raise
    except (TypeError, ValueError, OverflowError, KeyError) as exc:
        raise _bad_state("dtype", f"NumPy refuses its parts: {exc}") from None
    if ref.num != inst.num:
        raise _bad_state("dtype", f"a {inst.str} dtype cannot become {ref.str}")
    return ref.__reduce__()[2]


# Fields of a structured dtype once its tree is expanded: NumPy walks that tree (np.empty, repr,
# .descr), so a few KB whose fields share one sub-dtype through the memo can cost 2**depth.
_MAX_DTYPE_WEIGHT = 100_000


def dtype_weight(dt, memo):
    """Fields in `dt`'s tree, each shared sub-dtype counted at every use (memo: id -> weight)."""
    key = id(dt)
    if key in memo:
        return memo[key][1]
    w = 1
    fields = dt.fields
    if fields:
        for f in fields.values():
            w += dtype_weight(f[0], memo)
            if w > _MAX_DTYPE_WEIGHT:
                break
    elif dt.subdtype is not None:
        w += dtype_weight(dt.subdtype[0], memo)
    memo[key] = (dt, w)  # keeps dt alive: ids stay unique
    return w


def _legacy_dtype_types(np):
    return _LEGACY_DTYPES if _LEGACY_DTYPES else _init_legacy(np)


_LEGACY_DTYPES: set = set()


def _init_legacy(np):
    for c in "?bhilqBHILQefdgFDGSUVOMm":
        _LEGACY_DTYPES.add(type(np.dtype(c)))
    return _LEGACY_DTYPES


def _count(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def _check_raw(np, dtype, shape, raw, kind="ndarray"):
    n = _count(shape)
    if dtype.hasobject or dtype.flags & 0x08:  # NPY_LIST_PICKLE
        if type(raw) is not list or len(raw) != n:
            raise _bad_state(kind, f"an array of {n} objects needs a list of {n} items")
    else:
        if not isinstance(raw, (bytes, bytearray)) or len(raw) != n * dtype.itemsize:
            raise _bad_state(kind, f"{n} items of {dtype.itemsize} bytes need "
                                   f"{n * dtype.itemsize} bytes of data")


def _ndarray_state(np, inst, state):
    if type(state) is not tuple or len(state) not in (4, 5, 7):
        raise _bad_state("ndarray", "not a NumPy array state")
    off = 0 if len(state) == 4 else 1
    shape, dtype, fortran, raw = state[off:off + 4]
    if not (type(shape) is tuple and all(_is_int(d, 0) for d in shape) and len(shape) <= 64):
        raise _bad_state("ndarray", "malformed shape")
    if not isinstance(dtype, np.dtype) or type(fortran) not in (bool, int):
        raise _bad_state("ndarray", "malformed dtype or order")
    _check_raw(np, dtype, shape, raw)
    if len(state) == 7:
        if not isinstance(inst, np.ma.MaskedArray):
            raise _bad_state("ndarray", "a masked-array state for a plain array")
        mask = state[5]
        mdt = np.ma.make_mask_descr(dtype)
        if isinstance(mask, (bytes, bytearray)) or type(mask) is list:
            _check_raw(np, mdt, shape, mask, "masked array mask")
        else:
            raise _bad_state("masked array", "malformed mask")
    return state


# numpy.random: the state setters of these bit generators take an index into a fixed buffer
# unchecked (MT19937's pos: 0-624; Philox's buffer_pos: 0-4): a larger one makes every later draw
# read past the buffer.
_RNG_INDEX = {"MT19937": ("pos", 624), "Philox": ("buffer_pos", 4)}


def _rng_state(state, depth=0):
    if type(state) is tuple:  # RandomState's legacy ('MT19937', key, pos, has_gauss, gauss)
        if len(state) >= 3 and state[0] == "MT19937" and not _is_int(state[2], 0, 624):
            raise _bad_state("RandomState", "MT19937 pos must be in 0..624")
        if depth < 3:  # (state dict, seed sequence) and the like
            for v in state:
                if type(v) in (dict, tuple):
                    _rng_state(v, depth + 1)
        return state
    if type(state) is dict:
        name = state.get("bit_generator")
        spec = _RNG_INDEX.get(name) if type(name) is str else None
        if spec is not None:
            key, hi = spec
            holder = state.get("state") if name == "MT19937" else state
            v = holder.get(key) if type(holder) is dict else None
            if not _is_int(v, 0, hi) and not (hasattr(v, "dtype") and v.shape == ()
                                              and 0 <= int(v) <= hi):
                raise _bad_state(name, f"{key} must be in 0..{hi}")
        for v in state.values():  # RandomState's dict nests the bit generator's state
            if type(v) is dict and "bit_generator" in v and depth < 3:
                _rng_state(v, depth + 1)
    return state


def _filter_state(inst, state):
    np = sys.modules.get("numpy")
    if np is not None:
        if isinstance(inst, np.dtype):
            return _dtype_state(np, inst, state)
        if isinstance(inst, np.ndarray):
            return _ndarray_state(np, inst, state)
        mod = type(inst).__module__
        if type(mod) is str and mod.startswith("numpy.random"):
            return _rng_state(state)
    return state


# ------------------------------------------------------------------------------------------------
# before_call: sizes and hash flooding

_INT_SIZED = (bytes, bytearray)  # bytes(n) / bytearray(n) allocate n bytes
_CONTAINERS = (list, tuple, set, frozenset, dict, bytes, bytearray, collections.deque,
               collections.Counter, collections.OrderedDict, collections.UserList,
               collections.UserDict, collections.defaultdict)
_HASHED = (set, frozenset, dict, collections.Counter, collections.OrderedDict,
           collections.UserDict, collections.defaultdict)


def _virtual_nbytes(np, a):
    """Bytes an array claims beyond the memory that backs it (stride tricks), else 0."""
    try:
        claimed = a.size * a.itemsize
    except Exception:
        return 0
    base = a
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    if isinstance(base, np.ndarray):
        real = base.nbytes
    else:
        try:
            real = memoryview(base).nbytes
        except TypeError:
            real = claimed
    return claimed if claimed > real else 0


def _lazy_size(np, pd_range, x):
    """Bytes that materialising `x` would take when `x` is a lazy or virtual sequence."""
    if type(x) is range:  # a list slot and an int object per element
        try:
            return 40 * len(x)
        except OverflowError:
            return 1 << 62
    if np is not None and isinstance(x, np.ndarray):
        return _virtual_nbytes(np, x)
    if pd_range is not None and isinstance(x, pd_range):
        return 8 * len(x)
    return 0


def _flood_check(func, items):
    counts = collections.Counter()
    seen = set()
    for k in items:
        if type(k) in (str, bytes) or id(k) in seen:  # str/bytes hashes are randomised
            continue
        seen.add(id(k))
        try:
            h = hash(k)
        except TypeError:
            return  # the constructor raises on its own
        counts[h] += 1
        if counts[h] > _FLOOD_MAX:
            raise pickle.UnpicklingError(
                f"refused {getattr(func, '__qualname__', func)!s}(...): more than {_FLOOD_MAX} "
                "distinct items share one hash value (hash flooding: building it would take "
                "quadratic time)")


def _keys_of(x):
    if isinstance(x, dict):
        return list(x)
    if isinstance(x, (list, tuple, set, frozenset)):
        return x
    return ()


def _make_before_call(budget):
    def before_call(func, args, kwargs):
        np = sys.modules.get("numpy")
        pd = sys.modules.get("pandas")
        pd_range = getattr(pd, "RangeIndex", None) if pd is not None else None
        vals = list(args) + (list(kwargs.values()) if kwargs else [])
        for v in vals:
            n = _lazy_size(np, pd_range, v)
            if n:
                budget.charge(n)
        if func in _CONTAINERS and args:
            a0 = args[0]
            if func in _INT_SIZED and type(a0) is int:
                budget.charge(a0)
            elif np is not None and isinstance(a0, np.ndarray):
                budget.charge(64 * a0.size)  # one Python object per element
            if func in _HASHED:
                if func in (dict, collections.OrderedDict, collections.UserDict) \
                        and isinstance(a0, (list, tuple)):
                    _flood_check(func, [p[0] for p in a0 if type(p) is tuple and len(p) == 2])
                else:
                    _flood_check(func, _keys_of(a0))
    return before_call


# ------------------------------------------------------------------------------------------------

def input_size(source):
    """Size in bytes of what a load reads (bytes-like, fd, file object), or None when unknown."""
    import os
    try:
        if isinstance(source, int):
            return os.fstat(source).st_size
        if hasattr(source, "read"):
            try:
                return os.fstat(source.fileno()).st_size
            except Exception:
                return None
        return memoryview(source).nbytes
    except Exception:
        return None


def reraise_budget(policy, exc):
    """Turn the MemoryError of a refused allocation into BudgetExceededError (else return)."""
    used, peak, limit, refused = policy.budget_obj.state()
    if refused:
        raise BudgetExceededError(
            f"restricted load refused: the file asks for more memory than max_bytes={limit} "
            f"(a request of {refused} bytes with {used} in use); pass a larger max_bytes= to "
            "the load if you trust this file to be that large") from exc


def attach(find_class, returned, max_bytes=None):
    """Give a policy (``make_find_class``'s find_class) the hooks the C engine looks up."""
    find_class.check_object = _make_check_object(returned)
    find_class.filter_state = _filter_state
    budget = Budget(max_bytes)
    find_class.budget_obj = budget
    find_class.budget = budget.capsule
    find_class.before_call = _make_before_call(budget)
    return find_class
