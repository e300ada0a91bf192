"""What a restricted load (``trusted=``) checks beyond the names a file may import.

The policy in ``_trust.py`` decides which globals a stream may name. This module holds the rest of
the security boundary (``docs/SECURITY.md``), as hooks the C engine calls under a policy:

* ``check_object(obj, shared)``, after every call (REDUCE, NEWOBJ, OBJ, INST) and after BUILD
  (but for exact builtin data types and NumPy arrays, which it has nothing to check in: the C
  engine skips the call):
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
import datetime
import copyreg
import itertools
import pickle
import sys
import types
import weakref

from . import _core

__all__ = ["BudgetExceededError", "Budget", "attach", "default_max_bytes"]

GiB = 1 << 30
# Budget of a restricted load when max_bytes is not given: 1 GiB + 1000 x the input's size.
_BASE = GiB
_PER_INPUT_BYTE = 1000
# ... and of a compressed input: 64 MiB + 100 x the compressed size. Decompression runs at
# 250-400 MB/s for bz2, xz and zlib here, so a compressed file of 1 MiB is refused before it has
# expanded to more than 164 MiB (about 0.5 s of decoding), where the plain rule would let it
# expand to 2 GiB (seconds); max_bytes= lifts it.
_COMPRESSED_BASE = 64 << 20
_COMPRESSED_PER_INPUT_BYTE = 100
# ... but bz2 (Burrows-Wheeler) decodes at 45-120 MB/s, slowest (45-90 MB/s) on data that
# compresses 20-150x: a 1 MiB bz2 file of 150 MiB took 2 s. Its default is 8 MiB + 24 x its
# size (32 MiB for 1 MiB, at most 0.8 s of decoding over a sweep of such data, measured).
_BZ2_BASE = 8 << 20
_BZ2_PER_INPUT_BYTE = 24
# Distinct items sharing one hash value that a container built by a call may hold.
_FLOOD_MAX = 64
# Elements one tuple or frozenset key may expand to, and that the keys' hashing and comparing
# may walk in one load (csrc/unpickler.c KEY_MAX / KEY_WORK_MAX: the same rule for calls).
_KEY_MAX = 100_000
_KEY_WORK_MAX = 64 << 20
# Longest string argument a pandas callable may be given (Timestamp('1.' * n) is quadratic).
_MAX_PANDAS_STR = 1024


class BudgetExceededError(pickle.UnpicklingError, MemoryError):
    """A restricted load asked for more memory than ``max_bytes`` allows."""


def default_max_bytes(input_size, compressed=False):
    """The budget of a restricted load of an input of ``input_size`` bytes (None: unknown),
    ``compressed`` when those bytes are a compressed container (True, or the codec's name)."""
    n = max(0, int(input_size or 0))
    if compressed == "bz2":
        return _BZ2_BASE + _BZ2_PER_INPUT_BYTE * n
    if compressed:
        return _COMPRESSED_BASE + _COMPRESSED_PER_INPUT_BYTE * n
    return _BASE + _PER_INPUT_BYTE * n


_dunder_key = _core._dunder_key
_budget_charge = _core._budget_charge


class Budget:
    """A load's memory budget (a C capsule the engine uses, plus the Python-side charges)."""

    __slots__ = ("capsule", "explicit", "compressed", "input_size")

    def __init__(self, max_bytes=None):
        if max_bytes is not None:
            if isinstance(max_bytes, bool) or not isinstance(max_bytes, int):
                raise TypeError(f"max_bytes must be an int or None, got {max_bytes!r}")
            if max_bytes <= 0:
                raise ValueError(f"max_bytes must be positive, got {max_bytes!r}")
        self.explicit = max_bytes is not None
        self.compressed = False
        self.input_size = None
        self.capsule = _core._budget(max_bytes if max_bytes is not None else default_max_bytes(0))

    def set_input_size(self, n, compressed=False):
        """The default limit follows the input's size and whether it is compressed (no effect
        when max_bytes was given)."""
        self.input_size = n
        if not self.explicit:
            self.compressed = compressed or False  # (True, or the codec's name)
            _core._budget_set_limit(self.capsule, default_max_bytes(n, compressed))

    def charge(self, n):
        _budget_charge(self.capsule, n)

    def read(self):
        """Stream bytes the load had read at its last call hook."""
        return _core._budget_read(self.capsule)

    def state(self):
        """(used, peak, limit, refused request or 0)."""
        return _core._budget_state(self.capsule)


def _refuse(what):
    from ._trust import UntrustedGlobalError
    return UntrustedGlobalError(what[0], what[1])


# ------------------------------------------------------------------------------------------------
# check_object

_CALLABLE_TYPES = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
                   types.MethodType, types.MethodWrapperType, types.WrapperDescriptorType,
                   types.MethodDescriptorType, types.ClassMethodDescriptorType)


_PD_KINDS: dict[type, tuple[object, object]] = {}  # type -> what _pd_kind says of its instances (types are pandas' own classes)
_PD_KINDS_MAX = 4096


def _pd_kind(pd, obj):
    """Which of the checks below applies to `obj` (one isinstance chain per type, then a dict
    lookup): 'nab' (NDArrayBacked), 'offset', 'multi', 'sparse', 'sparse_index', 'masked',
    'arrow', 'interval', 'index', 'frame' (DataFrame / Series) or None."""
    t = type(obj)
    hit = _PD_KINDS.get(t)
    if hit is not None and hit[0] is pd and obj.__class__ is t:
        return hit[1]
    nab = getattr(getattr(pd, "_libs", None), "arrays", None)
    sp = getattr(pd.arrays, "SparseArray", None)
    sparse = getattr(getattr(pd, "_libs", None), "sparse", None)
    aea = getattr(pd.arrays, "ArrowExtensionArray", None)
    from pandas.core.arrays.masked import BaseMaskedArray
    from pandas._libs.tslibs.offsets import BaseOffset
    if nab is not None and isinstance(obj, nab.NDArrayBacked):
        kind = "nab"
    elif isinstance(obj, BaseOffset):
        kind = "offset"
    elif isinstance(obj, pd.MultiIndex):
        kind = "multi"
    elif sp is not None and isinstance(obj, sp):
        kind = "sparse"
    elif sparse is not None and isinstance(obj, (sparse.IntIndex, sparse.BlockIndex)):
        kind = "sparse_index"
    elif isinstance(obj, BaseMaskedArray):
        kind = "masked"
    elif aea is not None and isinstance(obj, aea):
        kind = "arrow"
    elif isinstance(obj, pd.arrays.IntervalArray):
        kind = "interval"
    elif isinstance(obj, pd.Index):
        kind = "index"
    elif isinstance(obj, (pd.DataFrame, pd.Series)):
        kind = "frame"
    else:
        kind = None
    if obj.__class__ is t and len(_PD_KINDS) < _PD_KINDS_MAX:
        _PD_KINDS[t] = (pd, kind)
    return kind


_RECHECK_ITEM_COST = 4096  # bytes a re-check's per-item work counts as (a placement: ~0.6 us)


def _pd_recheck_cost(pd, obj):
    """What a re-check of `obj` reads, in bytes: the data of what has its values checked
    (Categorical codes, MultiIndex codes, sparse indexes, an Index backed by an NDArrayBacked
    array), the placements of a DataFrame's or Series' blocks (_check_blocks: 4 KiB an item,
    what walking one costs), nothing for what only has its types and shapes checked (an Arrow
    string array, a block, a RangeIndex, masked arrays)."""
    kind = _pd_kind(pd, obj)
    if kind == "frame":
        try:
            n = len(obj._mgr.axes[0]) + len(obj._mgr.blocks)
        except Exception:
            n = 1
        return _RECHECK_ITEM_COST * max(n, 1)
    if kind == "index":  # (its backing array's check, when that is an NDArrayBacked one)
        nab = getattr(getattr(pd, "_libs", None), "arrays", None)
        reads = nab is not None and isinstance(getattr(obj, "_data", None), nab.NDArrayBacked)
    else:
        reads = kind in ("nab", "multi", "sparse", "sparse_index")
    if not reads:
        return 0
    try:
        if kind == "nab" or kind == "index":  # (the data it reads: Categorical.nbytes adds up
            data = obj if kind == "nab" else obj._data  # its categories' memory too)
            return int(data._ndarray.nbytes)
        if kind == "multi":  # (its codes: MultiIndex.nbytes adds up its levels' memory, 4% of
            return sum(int(c.nbytes) for c in obj.codes)  # a load of small MultiIndex frames)
        return int(getattr(obj, "nbytes", 0) or 0)
    except Exception:
        return 0


def _pd_recheck(pd, obj):
    """Why a pandas object made by this load is unsafe now (None: fine). Run again before a call
    uses it and at the end of the load: a later call may have changed memory it shares."""
    kind = _pd_kind(pd, obj)
    if kind == "nab":
        why = _pd_ndarray_backed_problem(pd, obj)
    else:
        why = _pd_other_problem(pd, obj, kind)
    if why is None and kind == "frame":
        mgr = getattr(obj, "_mgr", None)
        try:
            _check_blocks(list(mgr.axes), [(b.values, b.mgr_locs) for b in mgr.blocks])
        except pickle.UnpicklingError as exc:
            why = str(exc)
        except Exception:
            why = "an inconsistent block manager"
    return why


_OBJ_KINDS: dict[type, tuple[object, bool]] = {}  # type -> (module kind: 0, 'rng' or 'pandas'; whether callable-like)


def _obj_kind(obj):
    """check_object's facts about the type of `obj`, worked out once per type."""
    t = type(obj)
    hit = _OBJ_KINDS.get(t)
    if hit is not None and obj.__class__ is t:
        return hit
    mod = t.__module__
    kind = 0
    if type(mod) is str:
        if mod.startswith("numpy.random"):
            kind = "rng"
        elif mod.startswith("pandas"):
            kind = "pandas"
    hit = (kind, isinstance(obj, _CALLABLE_TYPES) or hasattr(t, "__get__"))
    if obj.__class__ is t and len(_OBJ_KINDS) < 4096:
        _OBJ_KINDS[t] = hit
    return hit


# the kinds of made pandas objects whose checks read their data (codes, indices, values)
_READ_KINDS = frozenset(("nab", "multi", "sparse", "sparse_index", "index"))


def _count_check_reads(budget, check_reads, pd, obj):
    """Count what a check of a made pandas object reads (its codes or data): at most 4 x the
    budget (at least 4 GiB) a load. 1,000 Categoricals BUILT on one memoised 1e8-code array, 8
    bytes each, had the check read all of it each time: 4.9 s, 48.8 s with 1e9 codes."""
    check_reads[0] += _pd_recheck_cost(pd, obj)
    if check_reads[0] > 4 * max(budget.state()[2], 1 << 30):
        raise _bad_state(type(obj).__name__, "checked more data than the budget allows (each "
                                             "object built on an array has all of it checked)")


def _make_check_object(returned, pending, made, budget=None, check_reads=None):
    weights = {}

    def check_object(obj, shared=False):
        kind, callable_like = _obj_kind(obj)
        if not shared and kind:
            if kind == "rng":
                _rng_check_built(obj)
            else:
                pd = sys.modules.get("pandas")
                try:
                    made[id(obj)] = weakref.ref(obj)
                except TypeError:
                    pass
                kind = _pd_kind(pd, obj)
                if budget is not None and kind in _READ_KINDS:
                    _count_check_reads(budget, check_reads, pd, obj)
                if kind == "nab":
                    why = _pd_ndarray_backed_problem(pd, obj)
                elif kind == "offset":
                    why = _pd_offset_problem(obj)
                else:
                    why = _pd_other_problem(pd, obj, kind)
                if why == "pending":
                    try:
                        pending[id(obj)] = weakref.ref(obj)
                    except TypeError:
                        raise _bad_state(type(obj).__name__, "made without its data") from None
                elif why is not None:
                    raise _bad_state(type(obj).__name__, why)
                else:
                    pending.pop(id(obj), None)
        np = sys.modules.get("numpy")
        if np is not None and isinstance(obj, np.dtype) and (obj.fields or obj.subdtype) \
                and dtype_weight(obj, weights) > _MAX_DTYPE_WEIGHT:
            raise pickle.UnpicklingError(
                f"refused structured dtype under trusted=: more than {_MAX_DTYPE_WEIGHT} fields "
                "once its shared sub-dtypes are expanded (NumPy walks every one of them)")
        # (a shared object's attributes were not set by this file: only fresh ones are checked)
        d = getattr(obj, "__dict__", None) if not shared and not isinstance(obj, type) else None
        if type(d) is dict and d:
            k = _dunder_key(d)
            if k is not None:
                raise _refuse((f"{type(obj).__module__}.{type(obj).__qualname__}",
                                   f"an object may not carry the special attribute {k!r} under "
                                   "trusted= (a file could point NumPy at any memory address "
                                   "this way)"))
        if shared and callable_like and returned.get(id(obj)) is not obj:
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


_CONVERTED_ATOMS = (int, float, bool, complex, type(None), datetime.datetime, datetime.date,
                    datetime.timedelta)


def _converted_problem(np, v, dt):
    """Why NumPy storing `v` into an item (or field) of dtype `dt` could take time or memory the
    file does not pay for, or None. NumPy converts what it stores into anything but a plain
    object item: a text item (StringDType, 'U', 'S') gets str() of it, quadratic for a big int
    and as long as the expanded structure for a list (a StringDType list state of one doubling
    list: 1.8 GB from 702 bytes; 500,000 references to one 4,300-digit int: 116 s)."""
    if dt.names is not None:
        if type(v) is not tuple or len(v) != len(dt.names):
            return (None if isinstance(v, np.void) and v.dtype == dt
                    else f"a {type(v).__name__} for a structured item (a tuple of its fields)")
        for name, w in zip(dt.names, v):
            why = _converted_problem(np, w, dt.fields[name][0])
            if why is not None:
                return why
        return None
    if dt.subdtype is not None:
        base, shp = dt.subdtype
        if isinstance(v, np.ndarray):
            return ("an object array for a sub-array of converted items"
                    if v.dtype.hasobject and base.kind != "O" else None)
        if type(v) in (list, tuple):
            if base.kind == "O":
                return None
            size, _ = _expanded_slots(v)
            if size > 4 * _count(shp) + 64:
                return f"a sub-array item of {size} slots for {_count(shp)} elements"
            stack = [v]
            while stack:
                x = stack.pop()
                for w in x:
                    if type(w) in (list, tuple):
                        stack.append(w)
                    else:
                        why = _converted_problem(np, w, base)
                        if why is not None:
                            return why
            return None
        return _converted_problem(np, v, base)
    if dt.kind == "O":
        return None  # (an object item: stored as it is; StringDType has hasobject too)
    tv = type(v)
    if dt.kind in "TUS":
        if tv is str or tv is bytes or (dt.kind == "T" and (tv is float or v is None
                                                             or tv.__name__ == "NAType")):
            return None
        return f"a {tv.__name__} for a text item (NumPy makes it text with str())"
    if tv in _CONVERTED_ATOMS or isinstance(v, np.generic):
        if tv is int and int.bit_length(v) > 128:
            return f"an int of {int.bit_length(v)} bits for a {dt} item"
        return None
    return f"a {tv.__name__} for a {dt} item (NumPy would convert it)"


def _check_raw(np, dtype, shape, raw, kind="ndarray"):
    n = _count(shape)
    if dtype.hasobject or dtype.flags & 0x02:  # NPY_LIST_PICKLE (0x08 is NPY_NEEDS_INIT)
        if type(raw) is not list or len(raw) != n:
            raise _bad_state(kind, f"an array of {n} objects needs a list of {n} items")
        if dtype.kind != "O":
            # items NumPy converts (text dtypes, structured ones with other fields than objects)
            # (a memoised item is looked at once: the list holds the same objects again)
            seen = set()
            for v in raw:
                if id(v) in seen:
                    continue
                seen.add(id(v))
                why = _converted_problem(np, v, dtype)
                if why is not None:
                    raise _bad_state(kind, why)
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
        # its fill_value, which NumPy converts to the array's dtype (np.asarray of a doubling
        # list of one big int into '<U5': 2^k str() calls, 14 s from 2.3 KB)
        fv = state[6]
        if fv is not None:
            why = _converted_problem(np, fv, dtype) if not isinstance(fv, np.ndarray) else (
                None if fv.size <= 1 and (fv.dtype == dtype or not fv.dtype.hasobject)
                else "an array fill value")
            if why is None and type(fv) in (list, tuple) and _expanded_slots(fv)[0] > 64:
                why = "a fill value of more than 64 items"
            if why is not None:
                raise _bad_state("masked array", f"fill value: {why}")
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
        spec = _RNG_INDEX.get(str(name)) if isinstance(name, str) else None
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


def _rng_check_built(obj):
    """After BUILD or a call: the bit generator's state as NumPy now holds it (whatever the
    stream's spelling of it) keeps its buffer index in range; SeedSequence's pool matches its
    size."""
    bg = obj
    if not hasattr(obj, "state") or isinstance(obj, type):
        bg = getattr(obj, "_bit_generator", None) or getattr(obj, "bit_generator", None)
    st = getattr(bg, "state", None) if bg is not None else None
    if type(st) is dict:
        name = type(bg).__name__
        spec = _RNG_INDEX.get(name)
        if spec is not None:
            key, hi = spec
            holder = st.get("state") if name == "MT19937" else st
            v = holder.get(key) if type(holder) is dict else None
            try:
                ok = 0 <= int(v) <= hi
            except Exception:
                ok = False
            if not ok:
                raise _bad_state(name, f"{key} must be in 0..{hi}")
    pool = getattr(obj, "pool", None)
    if type(obj).__name__ == "SeedSequence" and pool is not None:
        size = getattr(obj, "pool_size", None)
        if not (getattr(pool, "shape", None) == (size,) and str(pool.dtype) == "uint32"):
            raise _bad_state("SeedSequence", "pool does not match pool_size")


def _pd_state_keys(inst, state):
    """pandas objects: cached values ('_cache', which pandas pickles with an array's __dict__) are
    dropped from the state: pandas recomputes them, and a check and pandas' own code must read
    the same thing. Offsets other than DateOffset take no state (they pickle through their
    constructor). Returns the state to apply."""
    pd = sys.modules["pandas"]
    offsets = sys.modules.get("pandas._libs.tslibs.offsets")  # (no import statement: 6,000
    if offsets is None:                                        # small frames' states)
        from pandas._libs.tslibs import offsets
    if isinstance(inst, offsets.BaseOffset) and type(inst) is not pd.DateOffset:
        raise _bad_state(type(inst).__name__, "pandas offsets pickle through their constructor")
    # and what the object has cached so far (the checks of it read pandas' cached properties):
    # BUILD on a MultiIndex made by _new_Index replaced its _levels with shorter ones, and the
    # check after it read the levels cached before, which still fitted the codes
    d = getattr(inst, "__dict__", None)
    cache = d.get("_cache") if type(d) is dict else None
    if type(cache) is dict and cache:
        cache.clear()

    def clean(part):
        if type(part) is dict and "_cache" in part:
            part = {k: v for k, v in part.items() if k != "_cache"}
        return part
    if type(state) is tuple:
        return tuple(clean(p) for p in state)
    return clean(state)


def _pd_offset_problem(obj):
    """An offset made without its __init__ (NEWOBJ) has internal codes that do not match its
    parameters, and pandas caches dtypes by offset: compare with one made by the constructor."""
    import pandas as pd
    if type(obj) is pd.DateOffset:
        return None
    try:
        ref = type(obj)(obj.n, obj.normalize, **obj.kwds)
    except Exception as exc:
        return f"its parameters are refused by its constructor ({exc})"
    for attr in ("_period_dtype_code", "freqstr", "rule_code"):
        try:
            a, b = getattr(obj, attr, None), getattr(ref, attr, None)
        except Exception:
            return f"unreadable {attr}"
        if a != b:
            return f"{attr} {a!r} does not match its parameters ({b!r})"
    return None


def _arrow_string_state(pd, state, arrow_made):
    """The state of a pandas.arrays.ArrowStringArray (after _cache was dropped): exactly
    ``_readonly`` (optional, a bool: views pickle it), ``_pa_array`` (a string Array that this load's _restore_array stand-in built and fully
    validated) and ``_dtype`` (a StringDtype with pyarrow storage)."""
    import pyarrow as pa
    if type(state) is not dict or not {"_pa_array", "_dtype"} <= set(state) \
            <= {"_pa_array", "_dtype", "_readonly"} or type(state.get("_readonly", False)) is not bool:
        keys = sorted(map(repr, state)) if type(state) is dict else type(state).__name__
        raise _bad_state("ArrowStringArray", f"state must be exactly _pa_array, _dtype, _cache "
                                             f"and optionally _readonly (a bool), got {keys}")
    arr, dtype = state["_pa_array"], state["_dtype"]
    if arrow_made.get(id(arr)) is not arr or not isinstance(arr, pa.Array) \
            or not _arrow_string_type(pa, arr.type):
        raise _bad_state("ArrowStringArray", "_pa_array must be a string array built (and "
                                             "validated) by this load's pyarrow stand-ins")
    if type(dtype) is not pd.StringDtype or dtype.storage != "pyarrow":
        raise _bad_state("ArrowStringArray", "_dtype must be a StringDtype with pyarrow storage")
    return state


def _arrow_string_type(pa, t):
    return isinstance(t, pa.DataType) and (t.equals(pa.string()) or t.equals(pa.large_string()))


# Structured-dtype fields a load may hand to dtype BUILDs in all (NumPy rebuilds every field at
# each BUILD: one 1000-field state shared through the memo, applied at every 9-byte BUILD, was
# seconds a kilobyte, 1 ms a BUILD). 500k is far beyond a real file's dtypes.
_MAX_FIELDS_APPLIED = 500_000


def _filter_state(inst, state, arrow_made=None, fields_applied=None, dateutil_seen=None):
    _refuse_dateutil(state, 0, dateutil_seen)
    pd = sys.modules.get("pandas")
    if pd is not None and type(type(inst).__module__) is str \
            and type(inst).__module__.startswith("pandas"):
        if isinstance(inst, getattr(pd.arrays, "SparseArray", ())) and type(state) is not dict:
            # pandas < 0.24's tuple state: SparseArray.__setstate__ hands its ndarray state to
            # ndarray.__setstate__ itself, past the ndarray-state check
            raise _bad_state("SparseArray", "a pre-0.24 tuple state (not supported under "
                                            "trusted=)")
        state = _pd_state_keys(inst, state)
        if isinstance(inst, getattr(pd.arrays, "ArrowExtensionArray", ())):
            if type(inst) is not pd.arrays.ArrowStringArray:
                raise _bad_state(type(inst).__name__, "only pyarrow-backed string arrays are "
                                                      "supported under trusted=")
            return _arrow_string_state(pd, state, arrow_made or {})
    if pd is not None and type(inst).__name__ in ("BlockManager", "SingleBlockManager") \
            and type(inst).__module__ == "pandas.core.internals.managers":
        return _pd_manager_state(state)
    np = sys.modules.get("numpy")
    if np is not None:
        if isinstance(inst, np.dtype):
            if fields_applied is not None and type(state) is tuple and len(state) >= 4 \
                    and type(state[3]) is tuple:
                fields_applied[0] += len(state[3])
                if fields_applied[0] > _MAX_FIELDS_APPLIED:
                    raise _bad_state("dtype", f"more than {_MAX_FIELDS_APPLIED:,} structured "
                                              "fields set in one load")
            return _dtype_state(np, inst, state)
        if isinstance(inst, np.ndarray):
            return _ndarray_state(np, inst, state)
        mod = type(inst).__module__
        if type(mod) is str and mod.startswith("numpy.random"):
            return _rng_state(state)
    return state


# ------------------------------------------------------------------------------------------------
# pandas: objects whose Cython code indexes with the file's numbers (boundscheck off)

def _pd_ndarray_backed_problem(pd, obj):
    """Why a pandas NDArrayBacked array (Categorical, DatetimeArray, ...) is unsafe to use, or
    None. 'pending' when it has no data yet (made by __pyx_unpickle_NDArrayBacked, BUILD to come)."""
    try:
        arr = obj._ndarray
    except Exception:
        return "pending"
    import numpy as np
    if not isinstance(arr, np.ndarray):
        return "pending"
    try:
        dtype = obj.dtype
    except Exception:
        return "pending"
    if isinstance(obj, pd.Categorical):
        if arr.dtype.kind not in "iu":
            return f"codes of dtype {arr.dtype}"
        n = len(dtype.categories) if dtype.categories is not None else 0
        if arr.size:
            lo, hi = _int_range(arr)
            if lo < -1 or hi >= n:
                return f"codes outside -1..{n - 1}"
        return None
    kinds = {"DatetimeArray": "M", "TimedeltaArray": "m", "PeriodArray": "i"}
    kind = kinds.get(type(obj).__name__)
    if kind is not None and (arr.dtype.kind != kind or arr.dtype.itemsize != 8):
        return f"a {type(obj).__name__} backed by {arr.dtype} data"
    if kind in ("M", "m") and np.datetime_data(arr.dtype) not in (
            ("s", 1), ("ms", 1), ("us", 1), ("ns", 1)):
        return f"a {type(obj).__name__} backed by {arr.dtype} data (pandas has s/ms/us/ns only)"
    if isinstance(dtype, np.dtype) and arr.dtype != dtype and kind is None:
        return f"{arr.dtype} data for dtype {dtype}"
    return None


def _int_range(arr):
    """(min, max) of a non-empty integer array, as Python ints (a small one's through a list:
    5x quicker than two NumPy reductions, which are most of a check of small pandas objects)."""
    if arr.size <= 32:
        items = arr.ravel().tolist()
        return min(items), max(items)
    return int(arr.min()), int(arr.max())


def _pd_sparse_index_problem(pd, np, idx):
    """An IntIndex's points, or a BlockIndex's blocks, inside 0..length, sorted, not overlapping
    (pandas' Cython code checks neither negative block lengths nor block starts, and indexes
    with them unchecked: to_int_index() of a negative length overflows the heap). Checked with
    NumPy on the index's own arrays, before any pandas method walks them."""
    sparse = pd._libs.sparse
    n = idx.length
    if type(n) is not int or n < 0:
        return "sparse index with a bad length"
    if isinstance(idx, sparse.BlockIndex):
        b = np.asarray(idx.blocs, dtype=np.int64)
        ln = np.asarray(idx.blengths, dtype=np.int64)
        if b.ndim != 1 or b.shape != ln.shape:
            return "sparse blocks and lengths disagree"
        if b.size:
            if int(ln.min()) <= 0 or int(b.min()) < 0 or int((b + ln).max()) > n \
                    or (b.size > 1 and not bool((b[1:] >= b[:-1] + ln[:-1]).all())):
                return "sparse blocks outside the length, empty, unsorted or overlapping"
        if int(ln.sum()) != idx.npoints:
            return "sparse blocks disagree with their point count"
        return None
    if isinstance(idx, sparse.IntIndex):
        ind = np.asarray(idx.indices)
        if ind.ndim != 1 or ind.size != idx.npoints:
            return "sparse points disagree with their count"
        if ind.size and (int(ind.min()) < 0 or int(ind.max()) >= n
                         or (ind.size > 1 and not bool((np.diff(ind) > 0).all()))):
            return "sparse index outside its length or unsorted"
        return None
    return "an unknown sparse index"


def _pd_other_problem(pd, obj, kind):
    """MultiIndex codes, SparseArray indexes, masked arrays' masks, indexes' backing arrays.
    `kind`: _pd_kind(pd, obj)."""
    import numpy as np
    if kind not in ("multi", "sparse", "sparse_index", "masked", "arrow", "interval", "index"):
        return None
    if kind == "interval":
        # (its BUILD state: the left and right ends, set without pandas' own checks; ends of
        # different lengths or kinds only raised in the uses tried, but pandas' interval code
        # indexes one by the other's positions)
        d = getattr(obj, "__dict__", {})
        if "_left" not in d or "_right" not in d or "_dtype" not in d:
            return "pending"
        left, right, dtype = d["_left"], d["_right"], d["_dtype"]
        nab = getattr(getattr(pd, "_libs", None), "arrays", None)
        for end in (left, right):
            if not (type(end) is np.ndarray or (nab is not None and isinstance(end, nab.NDArrayBacked)
                                                and _pd_kind(pd, end) == "nab")):
                return "interval ends must be NumPy or datetime-like arrays"
            if end.ndim != 1:
                return "interval ends must be 1-D"
            if type(end) is np.ndarray and end.dtype.kind not in "iuf":
                return "interval ends must be numbers or datetime-like"
        if len(left) != len(right):
            return f"interval ends of different lengths ({len(left)} and {len(right)})"
        if type(left) is not type(right) or left.dtype != right.dtype:
            return "interval ends of different types"
        if type(dtype) is not pd.IntervalDtype or dtype.subtype != left.dtype:
            return "_dtype must be the IntervalDtype of the ends"
        if type(left) is not np.ndarray:
            return _pd_ndarray_backed_problem(pd, left) or _pd_ndarray_backed_problem(pd, right)
        return None
    if kind == "multi":
        # (what pandas derives its levels, codes and names from; the public properties are
        # cached copies of them)
        d = getattr(obj, "__dict__", {})
        levels, codes, names = d.get("_levels"), d.get("_codes"), d.get("_names")
        if levels is None or codes is None or names is None:
            levels, codes, names = obj.levels, obj.codes, obj.names
        if not (len(levels) == len(codes) == len(names)):
            return "as many code arrays and names as levels needed"
        n = None
        for lev, c in zip(levels, codes):
            c = np.asarray(c)
            if c.dtype.kind not in "iu" or c.ndim != 1:
                return "codes must be 1-D integers"
            if c.size:
                lo, hi = _int_range(c)
                if lo < -1 or hi >= len(lev):
                    return f"codes outside -1..{len(lev) - 1}"
            if n is not None and c.size != n:
                return "code arrays of different lengths"
            n = c.size
        return None
    if kind == "sparse":
        try:
            idx, vals = obj.sp_index, obj.sp_values
        except Exception:
            return "pending"
        if not isinstance(vals, np.ndarray) or vals.ndim != 1 or vals.size != idx.npoints:
            return "sparse values disagree with their index"
        return _pd_sparse_index_problem(pd, np, idx)
    if kind == "sparse_index":
        return _pd_sparse_index_problem(pd, np, obj)
    if kind == "masked":
        d, m = getattr(obj, "_data", None), getattr(obj, "_mask", None)
        if not (isinstance(d, np.ndarray) and isinstance(m, np.ndarray)):
            return "pending"
        want = {"BooleanArray": "b", "IntegerArray": "iu", "FloatingArray": "f"}.get(
            type(obj).__name__)
        if m.dtype != np.bool_ or m.shape != d.shape or (want and d.dtype.kind not in want):
            return "data and mask disagree"
        return None
    if kind == "arrow":
        # state checked by _arrow_string_state; a call (ArrowStringArray(x)) only gets Arrow
        # arrays from this load's stand-ins, as no other default-trusted callable makes them
        d = getattr(obj, "__dict__", {})
        if type(obj) is not pd.arrays.ArrowStringArray:
            return "only pyarrow-backed string arrays are supported under trusted="
        if "_pa_array" not in d or "_dtype" not in d:
            return "pending"
        import pyarrow as pa
        arr, dtype = d["_pa_array"], d["_dtype"]
        if not isinstance(arr, pa.ChunkedArray) or not _arrow_string_type(pa, arr.type):
            return "_pa_array must be a ChunkedArray of Arrow strings"
        if type(dtype) is not pd.StringDtype or dtype.storage != "pyarrow":
            return "_dtype must be a StringDtype with pyarrow storage"
        return None
    if kind == "index":
        data = getattr(obj, "_data", None)
        nab = getattr(getattr(pd, "_libs", None), "arrays", None)
        if nab is not None and isinstance(data, nab.NDArrayBacked):
            return _pd_ndarray_backed_problem(pd, data)
        if isinstance(obj, (pd.DatetimeIndex, pd.TimedeltaIndex, pd.PeriodIndex)) \
                and not isinstance(data, nab.NDArrayBacked):
            return "an index without its array"
    return None


def _locs(loc, n):
    """Indices of a block placement (BlockPlacement, slice, array, list), checked in 0..n-1: a
    range for a slice, else an array."""
    np = sys.modules["numpy"]
    ind = getattr(loc, "indexer", loc)
    if isinstance(ind, slice):
        start, stop, step = ind.start or 0, ind.stop, ind.step or 1
        if not (_is_int(start, 0) and _is_int(stop, 0) and _is_int(step, 1)
                and start <= stop <= n):
            raise _bad_state("pandas block", f"placement {ind} outside 0..{n - 1}")
        return range(start, stop, step)
    a = np.asarray(ind)
    if a.ndim != 1 or a.dtype.kind not in "iu":
        raise _bad_state("pandas block", "placement is not a 1-D integer array")
    if a.size and (int(a.min()) < 0 or int(a.max()) >= n):
        raise _bad_state("pandas block", f"placement outside 0..{n - 1}")
    return a


def _check_blocks(axes, blocks):
    """blocks: [(values, placement)] of a BlockManager (2 axes) / SingleBlockManager (1 axis)."""
    np = sys.modules["numpy"]
    if not isinstance(axes, (list, tuple)) or len(axes) not in (1, 2):
        raise _bad_state("pandas manager", "malformed axes")
    try:
        lens = [len(a) for a in axes]
    except Exception:
        raise _bad_state("pandas manager", "malformed axes") from None
    n_items = lens[0]
    seen = []
    for values, loc in blocks:
        locs = _locs(loc, n_items)
        shape = getattr(values, "shape", None)
        if shape is None:
            raise _bad_state("pandas block", "values without a shape")
        if len(axes) == 2:
            ok = (tuple(shape) == (len(locs), lens[1])
                  or (len(shape) == 1 and len(locs) == 1 and shape[0] == lens[1]))
        else:
            ok = len(shape) >= 1 and shape[0] == n_items
        if not ok:
            raise _bad_state("pandas block", f"values of shape {tuple(shape)} for "
                                             f"{len(locs)} items x {lens[1:]}")
        if len(axes) == 2:
            seen.append(locs)
    if len(axes) == 2 and all(type(r) is range and r.step == 1 for r in seen):
        # (pandas' usual placements, slices of step 1: they cover each item once when, in
        # order, each starts where the one before stopped and the last stops at n_items)
        at = 0
        for r in sorted(seen, key=lambda r: r.start):
            if not r:
                continue  # (empty: covers nothing, as in the array count below)
            if r.start != at:
                raise _bad_state("pandas manager", "block placements do not cover the items once")
            at = r.stop
        if at != n_items:
            raise _bad_state("pandas manager", "block placements do not cover the items once")
    elif len(axes) == 2:
        seen = [np.arange(r.start, r.stop, r.step) if type(r) is range else r for r in seen]
        allp = np.concatenate(seen) if seen else np.zeros(0, dtype=np.intp)
        # (every placement is in 0..n_items-1 (_locs): n_items of them cover each item once
        # when each is counted once; np.unique hashes: 0.7 s for 1M placements)
        if allp.size != n_items or (n_items and not bool(
                (np.bincount(allp, minlength=n_items) == 1).all())):
            raise _bad_state("pandas manager", "block placements do not cover the items once")


_PD_NEW_INDEX = {"_new_DatetimeIndex": ("DatetimeIndex", "M"),
                 "_new_TimedeltaIndex": ("TimedeltaIndex", "m"),
                 "_new_PeriodIndex": ("PeriodIndex", "i")}


def _pd_index_parts(pd, np, func, cls, d):
    """_new_*Index(cls, d): the data a datetime-like index is made from, before pandas uses it.

    pandas' _new_DatetimeIndex / _new_TimedeltaIndex call ``cls.__new__(cls, **d)`` when `d` has
    no (or an index as) 'data': any allowed class called with keywords from the file, out of
    reach of the per-callee rules (``ndarray(buffer=)``, ``bytes(n)``, string lengths). pandas'
    own pickles always hold the class itself and its data, so nothing else is accepted."""
    want = _PD_NEW_INDEX.get(getattr(func, "__name__", ""))
    if want is not None and getattr(func, "__module__", "").startswith("pandas.core.indexes"):
        name = "pandas." + func.__name__
        if cls is not getattr(pd, want[0], None):
            raise _bad_state(name, f"called for {getattr(cls, '__qualname__', type(cls).__name__)}"
                                   f" (only {want[0]})")
        if "data" not in d:
            raise _bad_state(name, "without 'data' (pandas would call the class with the "
                                   "file's keywords)")
    kind = {"DatetimeIndex": "M", "TimedeltaIndex": "m", "PeriodIndex": "i"}.get(
        getattr(cls, "__name__", ""))
    data = d.get("data")
    if kind is None or data is None or cls is not getattr(pd, cls.__name__, None):
        return
    if isinstance(data, np.ndarray):
        if data.dtype.kind != kind or data.dtype.itemsize != 8 or (
                kind in "Mm" and np.datetime_data(data.dtype) not in (
                    ("s", 1), ("ms", 1), ("us", 1), ("ns", 1))):
            raise _bad_state(cls.__name__, f"made from {data.dtype} data")
    else:
        nab = pd._libs.arrays.NDArrayBacked
        if not isinstance(data, nab):
            raise _bad_state(cls.__name__, f"made from a {type(data).__name__}")
        why = _pd_ndarray_backed_problem(pd, data)
        if why is not None:
            raise _bad_state(cls.__name__, why if why != "pending" else "array without its data")


# pandas helpers that only rebuild a pickled scalar, block or array (a few microseconds a call):
# not counted against the pandas call limit (a list of 20,000 Timestamps is 20,000 calls)
_PD_CHEAP = frozenset({
    "_unpickle_timestamp", "_timedelta_unpickle", "_nat_unpickle", "_unpickle_block",
    "__pyx_unpickle_NDArrayBacked", "__pyx_unpickle_IntervalMixin", "Day", "Hour", "Minute",
    "Second", "Milli", "Micro", "Nano", "Week", "MonthEnd", "MonthBegin", "QuarterEnd",
    "QuarterBegin", "YearEnd", "YearBegin", "BusinessDay", "BusinessMonthEnd",
    "BusinessMonthBegin", "DateOffset", "Period", "StringDtype", "Interval"})
# what a pandas call counts, by the cost of its constructor (one unit: ~20 us, what Index([1]),
# Series([1]) or DataFrame(manager) cost with their checks; Categorical([1]), CategoricalIndex
# and MultiIndex take 75-90 us, IntervalIndex 50 us, measured on pandas 3.1)
_PD_HEAVY = {"Categorical": 4, "CategoricalIndex": 4, "MultiIndex": 4, "IntervalIndex": 3,
             "IntervalArray": 3, "CategoricalDtype": 2, "_new_IntervalIndex": 2}
# NumPy calls that count units (others count only their text): the random generators' constructors
# seed from a SeedSequence or the OS (RandomState(0), MT19937(0): 130-160 us a call with their
# checks; at 4 units 174,000 memoised calls were refused after 1.3-1.6 s), and the
# stand-ins of numpy.random._pickle that make one
_NP_UNITS = {"RandomState": 8, "MT19937": 8, "PCG64": 8, "PCG64DXSM": 8, "Philox": 8, "SFC64": 8,
             "SeedSequence": 1, "restricted__randomstate_ctor": 8,
             "restricted__generator_ctor": 8, "restricted__bit_generator_ctor": 8}
# ints given to a NumPy call: SeedSequence(n) turns n into 32-bit words by repeated shifts
# (quadratic: 2**2M - 1 took 15.8 s)
_NP_INT_BITS = 4096
# extra units of _new_Index(cls, d) for the classes whose constructors cost more (see above)
_PD_NEW_INDEX_UNITS = {"MultiIndex": 3, "CategoricalIndex": 1, "DatetimeIndex": 2,
                       "TimedeltaIndex": 2, "PeriodIndex": 1, "IntervalIndex": 2}
# extra units of a numpy or pandas call repeated with the same argument objects
_PD_REPEAT_UNITS = 3
# public constructors that pickled pandas objects call with no argument (NEWOBJ, then BUILD)
# but that a file can call with data to convert (Series([1]) through the memo: 25 us a call):
# one more unit when given positional arguments
_PD_CONVERTING = frozenset({"Series", "DataFrame", "Index", "DatetimeIndex", "TimedeltaIndex",
                            "PeriodIndex"})
# characters of text given to pandas calls that count as one call (date parsing: ~2 us a char)
_PD_CHARS_PER_UNIT = 32
# pandas calls that parse the strings of an object array they are given
_PD_DTYPE_NAMED = frozenset({"PeriodDtype", "DatetimeTZDtype"})  # (their own string argument)
_PD_PARSERS = frozenset({"Timestamp", "Timedelta", "Period", "DatetimeIndex", "TimedeltaIndex",
                         "PeriodIndex", "DatetimeArray", "TimedeltaArray", "PeriodArray",
                         "_new_DatetimeIndex", "_new_TimedeltaIndex", "_new_PeriodIndex"})


def _pd_boxes(np, pd, v):
    """Whether a pandas call given `v` (as its dtype) makes a Python object, or a pyarrow
    string, of every element of the arrays it is given."""
    if v is object or v is str:
        return True
    if isinstance(v, str):
        s = str(v)
        return s in ("object", "O", "str") or s.startswith("string") or s.startswith("<U")
    if isinstance(v, np.dtype):
        return v.hasobject or v.kind in "US"
    sd = getattr(pd, "StringDtype", None)
    return sd is not None and isinstance(v, sd)


def _pd_unit_limit(budget):
    """pandas call units (_PD_HEAVY) a load may make: 8192 + one per 32 bytes of its input (a
    legitimate list of 2,000 two-row DataFrames makes one per 52 bytes; lists of small
    categorical Series or DataFrames one per 36-40; a file of 6-byte repeated calls of
    Categorical([1]) made one per 6 bytes, 90 us each: 16 s for 1 MiB). For a compressed input
    or one of unknown size, the bytes of the stream read so far."""
    n = budget.input_size if not budget.compressed else None
    if budget.compressed and budget.input_size is not None:
        # a compressed file (with the default budget): its own size, like an uncompressed
        # file's. Its decompressed bytes cost a file nothing: 5-byte Series() calls padded with
        # strings of zeros made 250,000 calls from 3.7 KB of zstd (3.9 s), 600,000 from 1 MiB
        # (9.7 s). With max_bytes= given, the decompressed bytes count (below).
        return 8192 + budget.input_size // 32
    # (what the load has read of its stream: the decompressed bytes of a compressed file, the
    # bytes so far of a stream of unknown size)
    read = budget.read()
    return 8192 + max(n or 0, read) // 32


def _pd_dates(np, pd, v):
    """Whether `v` names a date, time or period dtype (pandas parses strings into it)."""
    if isinstance(v, str):
        t = str(v).lstrip("<>=|")
        return t.startswith(("datetime64", "timedelta64", "M8", "m8", "period", "Period"))
    if np is not None and isinstance(v, np.dtype):
        return v.kind in "Mm"
    return type(v).__name__ in ("DatetimeTZDtype", "PeriodDtype") and \
        type(v).__module__.startswith("pandas")


_NOT_DATES = frozenset({int, float, bool, type(None), complex, bytes, bytearray, tuple, list})
# exact types that hold no text at all
_NOT_TEXT = frozenset({int, float, bool, type(None), complex, bytes, bytearray})


def _text_units(t, what, parses=False):
    """pandas call units of one string given to a call (a too long one refused); a string a
    date, time or period call parses (Period('2020 , , , ...'): dateutil's parser, 75 us for 31
    characters) counts four units plus one per 8 characters."""
    if len(t) > _MAX_PANDAS_STR:
        raise _bad_state(what, f"a string argument of {len(t)} characters (at most "
                               f"{_MAX_PANDAS_STR}: pandas parses them in quadratic time)")
    if parses:
        return 4 + len(t) // 8
    return 1 + len(t) // _PD_CHARS_PER_UNIT


def _array_text_units(np, w, what):
    """The units of the strings of an object or text array a parsing call is given."""
    units = 0
    if isinstance(w, np.ndarray) and w.dtype.kind in "OU":
        for t in w.ravel():
            if isinstance(t, str):
                units += _text_units(str(t), what, True)
    return units


def _pd_text_units(np, func, vals, fls, parser, what, cheap=False):
    """The strings a pandas call is given: arguments, items of list / tuple / dict-value
    arguments (one level down), and, for the calls that parse them (date, time and period
    constructors, or any call given such a dtype), the strings of object and text arrays and
    of containers one more level down, counted as pandas call units (1 + one per
    _PD_CHARS_PER_UNIT characters each); a string longer than _MAX_PANDAS_STR is refused.
    `fls`: the arguments' _type_flags; `parser`: whether `func` is one of _PD_PARSERS; `what`:
    the call's name for the error; `cheap`: `func` is one of _PD_CHEAP, whose short string
    arguments that it does not parse count nothing (Interval(0, 1, 'right'): 14 bytes)."""
    pd = sys.modules.get("pandas")
    parses = parser
    if not parses:
        for v, fl in zip(vals, fls):
            if type(v) is dict:
                for w in v.values():
                    tw = type(w)
                    if (tw is str or tw not in _ATOM_SET) and _flags_of(w) & (_T_TEXT | _T_DTYPE) \
                            and _pd_dates(np, pd, w):
                        parses = True
                        break
                if parses:
                    break
            elif fl & (_T_TEXT | _T_DTYPE) and type(v) not in _NOT_DATES \
                    and _pd_dates(np, pd, v):
                parses = True
                break
    units = 0
    for v, fl in zip(vals, fls):
        tv = type(v)
        if fl & _T_TEXT:
            # (the dtype name given to PeriodDtype or DatetimeTZDtype, 'period[M]', is matched
            # by a regular expression and a frequency parser, not parsed as a date: ordinary
            # text; counted as a date, lists of period Series made a unit per 24 bytes)
            as_date = parses and what not in _PD_DTYPE_NAMED
            if cheap and not as_date and len(v) <= 16:
                continue
            units += _text_units(v, what, as_date)
        elif tv is list or tv is tuple or tv is dict:
            for w in (v.values() if tv is dict else v):
                tw = type(w)
                if tw is str or isinstance(w, str):
                    units += _text_units(w, what, parses)
                elif tw in _NOT_TEXT:
                    continue
                elif parses and (tw is list or tw is tuple or tw is dict):
                    for u in (w.values() if tw is dict else w):
                        if isinstance(u, str):
                            units += _text_units(u, what, parses)
                        elif np is not None:
                            units += _array_text_units(np, u, what)
                elif parses and np is not None:
                    units += _array_text_units(np, w, what)
        elif parses and fl & _T_NDARRAY:
            units += _array_text_units(np, v, what)
    return units


# pandas callables that may put the values they are given in one of pandas' own hash tables
# (factorize in Categorical(values), is_unique of categories and of MultiIndex levels); the last
# three (and _new_Index of another class) only when given dtype='category'
_PD_HASHING = ("Categorical", "CategoricalIndex", "CategoricalDtype", "MultiIndex", "Index",
               "Series", "DataFrame")


_PD_HASHING_IDS = [None, (), ()]  # pandas module, ids of its first four, ids of the last three


def _pd_hashing_ids(pd):
    if _PD_HASHING_IDS[0] is not pd:
        _PD_HASHING_IDS[:] = [pd, frozenset(id(getattr(pd, n, None)) for n in _PD_HASHING[:4]),
                              frozenset(id(getattr(pd, n, None)) for n in _PD_HASHING[4:])]
    return _PD_HASHING_IDS[1], _PD_HASHING_IDS[2]


def _pd_hashing_call(pd, func, args, vals):
    first, last = _pd_hashing_ids(pd)  # (module attributes: alive as long as the module)
    if id(func) in first:
        return True
    if getattr(func, "__name__", None) == "_new_Index":
        if args and id(args[0]) in first:
            return True
    elif id(func) not in last:
        return False

    cat = pd.CategoricalDtype
    for v in vals:  # dtype='category' or a CategoricalDtype, as an argument or a dict value
        tv = type(v)
        if tv is cat or (isinstance(v, str) and v == "category"):
            return True
        if tv is dict:
            for w in v.values():
                if type(w) is cat or (isinstance(w, str) and w == "category"):
                    return True
    return False


def _pd_tuple_data(vals):
    """Whether a pandas call is given more than _FLOOD_MAX tuples (a list or tuple of them, as
    an argument or a dict value, or a dict's keys): pandas makes a MultiIndex of them and
    hashes each level."""
    for v in vals:
        tv = type(v)
        if tv is dict:
            if len(v) > _FLOOD_MAX and isinstance(next(iter(v)), tuple):
                return True
            for w in v.values():  # (each value counts a unit per two beyond 8 anyway)
                if type(w) in (list, tuple) and len(w) > _FLOOD_MAX and isinstance(w[0], tuple):
                    return True
        elif (tv is list or tv is tuple) and len(v) > _FLOOD_MAX and isinstance(v[0], tuple):
            return True
    return False


def _pd_level_data(np, pd, vals):
    """Whether a pandas call is given a list or tuple holding arrays, indexes, Series or lists of
    more than _FLOOD_MAX items (as an argument or a dict value): pandas makes a MultiIndex of
    them (Series(None, [a, a])) and hashes each."""
    for v in vals:
        for w in ([v] if type(v) in (list, tuple) else
                  [x for x in v.values() if type(x) in (list, tuple)] if type(v) is dict else ()):
            for x in w[:64]:
                if isinstance(x, (np.ndarray, pd.Index, pd.Series)) or (
                        type(x) in (list, tuple) and len(x) > _FLOOD_MAX):
                    return True
    return False


def _pd_hash_values(np, pd, x):
    """The NumPy array pandas would hash for argument `x` (None: nothing to look at)."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (pd.Index, pd.Series)):
        x = getattr(x, "_values", None)
        if isinstance(x, np.ndarray):
            return x
    ext = getattr(getattr(pd, "api", None), "extensions", None)
    if ext is not None and isinstance(x, ext.ExtensionArray):
        # datetime / timedelta / period (_ndarray), masked integer / float / boolean (_data),
        # sparse (sp_values)
        for attr in ("_ndarray", "_data", "sp_values"):
            v = getattr(x, attr, None)
            if isinstance(v, np.ndarray):
                return v
        return None
    if isinstance(x, pd.CategoricalDtype):
        return _pd_hash_values(np, pd, getattr(x, "categories", None))
    return None


def _pd_indexes(pd, x, out, depth=0):
    """The pandas Index objects (MultiIndex: its levels) that aligning, reindexing or combining
    `x` may look up in a hash table: an Index, a Series' index, a DataFrame's index and columns;
    inside lists, tuples and dict values one level down."""
    if isinstance(x, pd.MultiIndex):
        out.extend(x.levels)
    elif isinstance(x, pd.Index):
        out.append(x)
    elif isinstance(x, pd.Series):
        _pd_indexes(pd, x.index, out, depth + 1)
    elif isinstance(x, pd.DataFrame):
        _pd_indexes(pd, x.index, out, depth + 1)
        _pd_indexes(pd, x.columns, out, depth + 1)
    elif depth == 0 and type(x) in (list, tuple):
        for v in x:
            _pd_indexes(pd, v, out, 1)
    elif depth == 0 and type(x) is dict:
        for v in x.values():
            _pd_indexes(pd, v, out, 1)


def _pd_flood_refusal(func):
    return pickle.UnpicklingError(
        f"refused {getattr(func, '__qualname__', func)!s}(...): more than {_FLOOD_MAX} "
        "distinct values share one of pandas' hash-table hashes (hash flooding: pandas "
        "would take quadratic time to index them)")


def _pd_hash_flood_check(np, pd, func, vals, checked, indexes_only=False):
    """Refuse values that pandas' own hash tables would take quadratic time to insert: more
    than _FLOOD_MAX distinct values sharing one of pandas' unseeded 32-bit hashes (an int64
    array of 120,000 such values: 20 s in Categorical). Arguments, their items and dict values
    one level down; each array once per load (`checked`)."""

    todo = []
    for v in vals:
        if type(v) in (list, tuple, dict):  # (a container is looked into once a load for each
            key = (id(v), indexes_only)     # kind of look: it cannot change once a call was
            hit = checked.get(key)          # given it)
            if hit is not None and hit is v:
                continue
            checked[key] = v
        if indexes_only:
            _pd_indexes(pd, v, todo)
            continue
        todo.append(v)
        if type(v) in (list, tuple):
            todo.extend(w for w in v if not isinstance(w, (int, float, str)))
        elif type(v) is dict:
            todo.extend(v.values())
            for w in v.values():  # (the items of its lists too: _new_Index(MultiIndex, {'levels':
                if type(w) in (list, tuple):  # [L1, L2], ...}))
                    todo.extend(x for x in w if not isinstance(x, (int, float, str)))
            if len(v) > _FLOOD_MAX and isinstance(next(iter(v)), tuple):
                todo.append(list(v))  # (tuple keys: Series(dict) indexes by a MultiIndex)
    arrays = []
    columns = set()  # ids of the level lists made below (not looked into again)
    for v in todo:
        if isinstance(v, (list, tuple)):
            if len(v) <= _FLOOD_MAX:
                continue
            if id(v) not in columns and isinstance(v[0], tuple):
                # pandas makes a MultiIndex of a list of tuples (Index(tuples), an index or
                # keys of them) and hashes each level: each level's values are looked at too
                # (their tuples' own hashes differ: 20,000 (k, i) with k of one hash, 4.8 s)
                width = min(max(len(w) for w in v if isinstance(w, tuple)), _FLOOD_MAX)
                for j in range(width):
                    col = [w[j] if isinstance(w, tuple) and len(w) > j else None for w in v]
                    columns.add(id(col))
                    todo.append(col)
            # pandas turns a list into an object array, or an int64 / float64 one (ints with
            # None become floats): each reading is checked
            arrays.append((v, "O", v))
            try:
                a = np.asarray(v)
            except Exception:
                a = None
            if a is not None and a.ndim == 1 and a.dtype.kind in "iufcMm":
                arrays.append((a, None, None))
            elif all(w is None or type(w) in (int, float, bool) for w in v):
                try:
                    arrays.append((np.array(v, dtype=np.float64), None, None))
                except (TypeError, ValueError, OverflowError):
                    pass
            continue
        a = _pd_hash_values(np, pd, v)
        if a is not None:
            arrays.append((a, None, None))
    for a, code, data in arrays:
        if code is not None:  # a list, as Python objects
            if _core._pd_hash_flood(data, code, _FLOOD_MAX):
                raise _pd_flood_refusal(func)
            continue
        if a.size <= _FLOOD_MAX:
            continue
        hit = checked.get(id(a))
        if hit is not None and hit is a:
            continue
        checked[id(a)] = a
        kind = a.dtype.kind
        size = a.dtype.itemsize
        if kind in "iuMm" and size == 8:
            code = "Q" if kind == "u" else "q"
        elif kind == "f" and size in (2, 8):
            code = "d"
        elif kind == "c" and size in (8, 16):
            code = "F" if size == 8 else "D"
        elif kind == "O":
            code = "O"
        else:
            continue  # values of 32 bits or less hash one to one (and long double is not hashed)
        if code == "O":
            data = a.ravel()
        else:
            want = {"q": np.dtype(np.int64), "Q": np.dtype(np.uint64),
                    "d": np.dtype(np.float64), "F": np.dtype(np.complex64),
                    "D": np.dtype(np.complex128)}[code]
            data = np.ascontiguousarray(a.astype(want, copy=False))  # (values, native order)
        if _core._pd_hash_flood(data if code != "O" else list(data), code, _FLOOD_MAX):
            raise _pd_flood_refusal(func)


def _pd_manager_call(pd, func, args):
    managers = sys.modules.get("pandas.core.internals.managers")
    if managers is None:
        from pandas.core.internals import managers
    if func is managers.BlockManager and len(args) >= 2:
        blocks, axes = args[0], args[1]
        _check_blocks(axes, [(getattr(b, "values", None), getattr(b, "mgr_locs", None))
                             for b in blocks])
    elif func is managers.SingleBlockManager and len(args) >= 2:
        b = args[0]
        _check_blocks([args[1]], [(getattr(b, "values", b), getattr(b, "mgr_locs",
                                                                    slice(0, len(args[1]))))])


def _pd_manager_state(state):
    """BlockManager / SingleBlockManager __setstate__ input (pandas' '0.14.1' layout)."""
    if type(state) is tuple and len(state) >= 4 and type(state[3]) is dict \
            and "0.14.1" in state[3]:
        st = state[3]["0.14.1"]
        if type(st) is not dict or "axes" not in st or "blocks" not in st:
            raise _bad_state("pandas manager", "malformed state")
        blocks = st["blocks"]
        if type(blocks) is not list or not all(type(b) is dict for b in blocks) \
                or type(st["axes"]) is not list:
            raise _bad_state("pandas manager", "blocks must be a list of dicts, axes a list")
        _check_blocks(st["axes"], [(b.get("values"), b.get("mgr_locs")) for b in blocks])
        return state
    raise _bad_state("pandas manager", "only pandas' own state layout is accepted")


# ------------------------------------------------------------------------------------------------
# before_call: sizes and hash flooding

_INT_SIZED = (bytes, bytearray)  # bytes(n) / bytearray(n) allocate n bytes
_WRITABLE_BUFFERS = (bytearray, memoryview, pickle.PickleBuffer)
_SIZED_ARGS = (list, tuple, set, frozenset, dict, collections.deque, collections.OrderedDict,
               collections.Counter, collections.defaultdict)
_CONTAINERS = (list, tuple, set, frozenset, dict, bytes, bytearray, collections.deque,
               collections.Counter, collections.OrderedDict, collections.UserList,
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
        if x.itemsize == 0:  # NumPy and pandas still walk each element (2**62 of 'V0')
            return x.size
        return _virtual_nbytes(np, x)
    if pd_range is not None and isinstance(x, pd_range):
        return 8 * len(x)
    return 0


def _flood_check(func, items, work=None):
    """Refuse more than _FLOOD_MAX distinct (unequal) items sharing one hash value. Equal items
    are no flood (a lookup stops at the first equal key), so each new item is compared with the
    few kept for its hash: linear time, but for keys that are big to compare: a tuple or
    frozenset key is walked element by element by every hash and every comparison, so each one
    costs its size for its hash and again for each item it is compared with (as it will cost
    the callee), counted in `work` (this load's [total]) against _KEY_WORK_MAX. (In C:
    _core._flood_scan.)"""

    status, total = _core._flood_scan(items, work[0] if work is not None else 0, _FLOOD_MAX,
                                      _KEY_MAX, _KEY_WORK_MAX)
    if work is not None:
        work[0] = total
    if status == 1:
        raise pickle.UnpicklingError(
            f"refused {getattr(func, '__qualname__', func)!s}(...): more than {_FLOOD_MAX} "
            "distinct items share one hash value (hash flooding: building it would take "
            "quadratic time)")
    if status == 2:
        raise _key_refusal(func)


def _key_refusal(func):
    return pickle.UnpicklingError(
        f"refused {getattr(func, '__qualname__', func)!s}(...): a tuple, frozenset or big-int "
        f"item that expands to more than {_KEY_MAX:,} elements, or items whose hashing and "
        f"comparing would walk more than {_KEY_WORK_MAX:,} elements in this load")


def _keys_of(x):
    if isinstance(x, dict):
        return list(x)
    if isinstance(x, (list, tuple, set, frozenset)):
        return x
    return ()


_TEXT_SEEN_MIN = 1024  # strings this long are looked at once a load (by _refuse_dateutil)


def _refuse_dateutil(x, depth, seen=None):
    """pandas reads any file a 'dateutil/...' time-zone string names (dateutil.tz.gettz).
    `seen` (kept for a load): containers already looked at, at the depth they were (a memoised
    100,000-item tuple handed to call after call is walked once), and long strings (one
    200,000-character string handed to 114,000 7-byte calls: 11 s when each call read it)."""
    if isinstance(x, str):  # numpy.str_ too
        if seen is not None and len(x) >= _TEXT_SEEN_MIN:
            hit = seen.get(id(x))
            if hit is not None and hit[0] is x:
                return
            if "dateutil/" not in x:
                seen[id(x)] = (x, 0, len(x))  # (text does not change)
                return
        if "dateutil/" in x:  # (also inside a dtype string: 'datetime64[ns, dateutil/...]')
            raise _refuse(("pandas tz", f"time-zone string {x[:80]!r}: dateutil zones are read "
                                        "from files the string names"))
    elif depth < 2 and type(x) in (tuple, list, dict):
        if seen is not None:
            hit = seen.get(id(x))
            if hit is not None and hit[0] is x and hit[1] <= depth and \
                    (type(x) is tuple or hit[2] == len(x)):
                return
        for v in (x.values() if type(x) is dict else x):
            tv = type(v)
            if tv is str:
                if len(v) >= _TEXT_SEEN_MIN or "dateutil/" in v:
                    _refuse_dateutil(v, depth + 1, seen)
            elif tv is tuple or tv is list or tv is dict or (tv not in _ATOM_SET
                                                             and isinstance(v, str)):
                _refuse_dateutil(v, depth + 1, seen)
        if seen is not None and len(x) >= 16:
            seen[id(x)] = (x, depth, len(x))


def _effective_call(func, args, kwargs):
    """The call a helper makes for the stream: copyreg's reconstructors call their class."""
    if func is not copyreg.__newobj__ and func is not copyreg.__newobj_ex__ \
            and func is not copyreg._reconstructor:
        return func, args, kwargs
    if func is copyreg.__newobj__ and args:
        return args[0], args[1:], kwargs
    if func is copyreg.__newobj_ex__ and len(args) == 3:
        return args[0], tuple(args[1]) if isinstance(args[1], tuple) else (), args[2]
    if func is copyreg._reconstructor and len(args) == 3:
        return args[1], (args[2],) if args[2] is not None else (), None
    return func, args, kwargs


_EXPANDED_MAX = 4 << 20  # container slots a call argument may expand to through shared parts
_DICT_TYPES = (dict, collections.OrderedDict, collections.Counter, collections.defaultdict)
_CONTAINER_TYPES = (list, tuple, set, frozenset, collections.deque) + _DICT_TYPES
_STR_SLOT = 16  # a text or bytes leaf counts one slot per 16 characters (what str() copies)
# str()/repr() of a container walks and copies all of it at every call, and the memo can hand
# the same argument to str() at every 6-byte REDUCE: no pickle stringifies more than this
_STRINGIFY_MAX = 100_000


_KNOWN_MIN = 4096  # lists and tuples of atoms at least this long are remembered across calls
_WALKED_TYPES = _CONTAINER_TYPES + (str, bytes, bytearray)
_FLAT_TYPES = (list, tuple, set, frozenset, collections.deque)  # walked at C speed when flat


def _expanded_slots(root, known=None):
    """(slots of `root` with every shared container counted at each use, distinct slots): what
    repr(), str(), hashing or comparing it walks, against what the file holds. Iterative and
    memoised, so linear in the distinct containers. `known` (kept by the caller for the whole
    load): big lists and tuples of atoms already counted, so a fresh tuple holding the same
    4M-item list at every call does not walk it again (a list only grows: its length says
    whether it changed)."""
    if type(root) not in _CONTAINER_TYPES:
        return 0, 0
    if len(root) <= 256:  # a small container of atoms (most call arguments): no walk
        flat = [*root, *root.values()] if type(root) in _DICT_TYPES else root
        if set(map(type, flat)).isdisjoint(_CONTAINER_TYPES):
            return len(flat) + sum(len(k) // _STR_SLOT for k in flat
                                   if type(k) in (str, bytes, bytearray)), len(flat)
    memo = {}
    distinct = 0
    stack = [(root, False)]
    active = set()
    while stack:
        x, done = stack.pop()
        if id(x) in memo:
            continue
        if known is not None and not done:
            k = known.get(id(x))
            if k is not None and k[0] is x and k[1] == len(x):
                memo[id(x)] = (k[2], x)
                distinct += k[1]
                continue
        if not done and type(x) in _FLAT_TYPES and len(x) >= 64 \
                and set(map(type, x)).isdisjoint(_WALKED_TYPES):
            # only atoms (numbers, None, ...): one C-speed pass instead of the walk below
            memo[id(x)] = (len(x), x)
            distinct += len(x)
            if known is not None and len(x) >= _KNOWN_MIN and type(x) in (list, tuple):
                known[id(x)] = (x, len(x), len(x))
            continue
        mapping = type(x) in _DICT_TYPES
        kids = list(x.items()) if mapping else x
        flat = []
        for k in kids:
            if type(k) is tuple and mapping:
                flat.extend(k)
            else:
                flat.append(k)
        if not done:
            if id(x) in active:
                continue  # a cycle: counted once
            active.add(id(x))
            stack.append((x, True))
            for k in flat:
                if type(k) in _CONTAINER_TYPES and id(k) not in memo and id(k) not in active:
                    stack.append((k, False))
        else:
            distinct += len(flat)
            size = len(flat) + sum(memo[id(k)][0] if type(k) in _CONTAINER_TYPES
                                   else len(k) // _STR_SLOT for k in flat
                                   if (type(k) in _CONTAINER_TYPES and id(k) in memo)
                                   or type(k) in (str, bytes, bytearray))
            memo[id(x)] = (size, x)
            active.discard(id(x))
            if known is not None and type(x) in (list, tuple) and len(flat) >= _KNOWN_MIN \
                    and not any(type(k) in _CONTAINER_TYPES for k in flat):
                known[id(x)] = (x, len(x), size)
    return memo[id(root)][0], distinct


# Arguments that no call can change (a checked call of only these is the same call again)
_ATOMS = (str, int, float, bool, type(None), complex, bytes)
# Arguments SETITEMS / APPENDS / ADDITEMS change without a new epoch
_UNFROZEN = (list, dict, set, collections.deque, bytearray, collections.OrderedDict,
             collections.Counter, collections.defaultdict)
# Builtin constructors that hash the items of their argument.
_HASHING_BUILTINS = (set, frozenset, dict, collections.Counter, collections.OrderedDict,
                     collections.defaultdict, collections.UserDict)
# Builtins that never hash the items of their arguments.
_NO_HASH_CALLS = (list, tuple, str, repr, int, float, complex, bool, bytes, range, slice,
                  collections.deque)
# Builtins that build a new object from their arguments without writing into any argument's
# memory: calls of these do not start a new re-check epoch (see attach).
_READ_ONLY_CALLS = (list, tuple, set, frozenset, dict, str, repr, int, float, complex, bool,
                    bytes, range, slice, collections.deque, collections.OrderedDict)


_ATOM_SET = frozenset(_ATOMS)
_NOTHING = object()  # (no pandas.NA)
_CONTAINER_SET = frozenset(_CONTAINER_TYPES)

# Facts about an argument's type that the call checks use, worked out once per type (for an
# object whose __class__ is its type: isinstance(x, c) is then issubclass(type(x), c)).
_T_SEQ = 1  # a list, tuple or deque (subclasses too): its items are scanned for hash flooding
_T_DICT = 2  # a dict (subclasses too): its keys are scanned
_T_NDARRAY = 4  # a NumPy array
_T_LAZY = 8  # range, a NumPy array or a pandas RangeIndex: _lazy_size may charge for it
_T_SCAN = _T_SEQ | _T_DICT | _T_NDARRAY  # flood_scan has something to look at
_T_TEXT = 16  # a str (subclasses too: numpy.str_)
# may name a dtype (_pd_boxes, _pd_dates): a class, a NumPy dtype, pandas' StringDtype,
# DatetimeTZDtype or PeriodDtype
_T_DTYPE = 32
_T_PD_AXES = 64  # a pandas Index, Series or DataFrame (_pd_indexes finds indexes in it)
_TYPE_FLAGS: dict[type, int] = {}
_TYPE_FLAGS_MODS: list[object] = [None, None]  # (numpy, pandas) the cache was made with


def _type_flags(x, np, pd):
    t = type(x)
    if _TYPE_FLAGS_MODS[0] is not np or _TYPE_FLAGS_MODS[1] is not pd:
        _TYPE_FLAGS.clear()  # numpy or pandas imported since
        _TYPE_FLAGS_MODS[:] = [np, pd]
    fl = _TYPE_FLAGS.get(t)
    if fl is not None and x.__class__ is t:
        return fl
    fl = 0
    if isinstance(x, (list, tuple, collections.deque)):
        fl |= _T_SEQ
    if isinstance(x, dict):
        fl |= _T_DICT
    if np is not None and isinstance(x, np.ndarray):
        fl |= _T_NDARRAY | _T_LAZY
    pd_range = getattr(pd, "RangeIndex", None) if pd is not None else None
    if t is range or (pd_range is not None and isinstance(x, pd_range)):
        fl |= _T_LAZY
    if isinstance(x, str):
        fl |= _T_TEXT
    sd = getattr(pd, "StringDtype", None) if pd is not None else None
    if isinstance(x, type) or (np is not None and isinstance(x, np.dtype)) or (
            sd is not None and isinstance(x, sd)) or (
            t.__name__ in ("DatetimeTZDtype", "PeriodDtype")
            and str(getattr(t, "__module__", "")).startswith("pandas")):
        fl |= _T_DTYPE
    if pd is not None and isinstance(x, (pd.Index, pd.Series, pd.DataFrame)):
        fl |= _T_PD_AXES
    if x.__class__ is t and len(_TYPE_FLAGS) < 4096:
        _TYPE_FLAGS[t] = fl
    return fl


def _may_hold_indexes(vals, fls):
    """Whether _pd_indexes could find an index in the arguments `vals` (`fls`: their
    _type_flags): one of them, or an item of a list, tuple or dict one, is a pandas Index,
    Series or DataFrame (containers of more than 64 items: assumed so, as _pd_hash_flood_check
    looks at each container once a load)."""
    for v, fl in zip(vals, fls):
        if fl & _T_PD_AXES:
            return True
        tv = type(v)
        if tv is list or tv is tuple or tv is dict:
            if len(v) > 64:
                return True
            for w in (v.values() if tv is dict else v):
                if type(w) not in _ATOM_SET and _flags_of(w) & _T_PD_AXES:
                    return True
    return False


_STRINGIFY = (str, repr, format, ascii, collections.UserString)
_CONVERSIONS = _STRINGIFY + (int, float, complex)
_CONVERTED = (str, int, float, complex)  # (classes whose calls convert: subclasses too)
_RECONSTRUCTORS = tuple(getattr(copyreg, n) for n in ("__newobj__", "__newobj_ex__",
                                                      "_reconstructor"))
_BIG_INT_BITS = 2048


def _nested_problem(root, int_bits, deep_objects=True):
    """Why the items of a container argument (nested ones included, keys too) may not be given
    to the call, or None: an int of more than `int_bits` bits, or an object that is neither an
    atom nor a container at item depth 3 or more (`deep_objects`: False refuses such objects at
    any depth). Each container is looked at once per depth up to 3: linear in what the file
    holds (the caller charges the expanded size)."""
    seen = set()
    stack = [(root, 0)]
    while stack:
        x, d = stack.pop()
        key = (id(x), min(d, 3))
        if key in seen:
            continue
        seen.add(key)
        items = [*x, *x.values()] if type(x) in _DICT_TYPES else x
        for w in items:
            tw = type(w)
            if tw in _ATOM_SET or w is None:
                if tw is int and int.bit_length(w) > int_bits:
                    return f"an int of {int.bit_length(w)} bits (at most {int_bits})"
            elif tw in _CONTAINER_SET:
                stack.append((w, d + 1))
            elif isinstance(w, int) and int.bit_length(w) > int_bits:
                return f"an int of {int.bit_length(w)} bits (at most {int_bits})"
            elif not deep_objects or d + 1 >= 3:
                return (f"a {tw.__name__} nested {d + 1} deep in an argument" if deep_objects
                        else f"a {tw.__name__} inside a container made into text")
    return None


def _atoms_or_na(args):
    na = getattr(sys.modules.get("pandas"), "NA", _NOTHING)
    return all(type(a) in _ATOM_SET or a is na for a in args)


# Arguments that a call of another callable may get again and again (the memo's class or
# function), without the repeat surcharge
_REPEATABLE = (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType)
_VALUE_KEY_TYPES = _ATOM_SET | {tuple, type}  # (what _small_tuple_key may key a call by)
_SMALL_ATOMS = frozenset((int, bool, type(None), str, bytes))


def _small_tuple_key(args):
    """For a call whose arguments are atoms, classes and small tuples of small atoms (NumPy's
    _reconstruct(ndarray, (0,), b'b') in every pickled array, a fresh tuple each time): a key
    naming the atoms and classes by id and the tuples by value, or None. What the full check of
    such a call finds depends on those values alone: a tuple of up to 8 small ints, bools,
    Nones and short strings or bytes is never made, pending, re-checked, hashed at any cost
    (no tuple, frozenset or big-int item), flooded or deep."""
    key = []
    tup = False
    for a in args:
        ta = type(a)
        if ta in _ATOM_SET or ta is type:  # (a class: the policy's, which no load changes)
            key.append(id(a))
        elif ta is tuple and len(a) <= 8:
            for x in a:
                tx = type(x)
                if tx not in _SMALL_ATOMS or (tx is int and not -(1 << 62) <= x < 1 << 62) \
                        or (tx in (str, bytes) and len(x) > 64):
                    return None
            key.append((ta, *[(type(x), x) for x in a]))
            tup = True
        else:
            return None
    return tuple(key) if tup else None


def _flags_of(x):
    """_type_flags(x, numpy, pandas), the cached answer looked up inline."""
    t = type(x)
    fl = _TYPE_FLAGS.get(t)
    if fl is not None and x.__class__ is t:
        return fl
    return _type_flags(x, sys.modules.get("numpy"), sys.modules.get("pandas"))


def _call_profile(func):
    """What _check_call needs to know of a callable, worked out once per callable: (read_only,
    is_container, numpy_mod, pandas_mod, pd_units_base (numpy's calls: _NP_UNITS), pd_parser,
    pd_managers, pd_internal, pd_indexes, pd_new_index, qualname, pd_converting, special:
    one of the callables checked last by name, converts: see before_call)."""
    fmod = getattr(func, "__module__", None)
    if type(fmod) is not str:
        fmod = ""
    fname = getattr(func, "__name__", None)
    qualname = getattr(func, "__qualname__", None)
    pandas_mod = fmod.startswith("pandas")
    pd_indexes = pandas_mod and fmod.startswith("pandas.core.indexes")
    numpy_mod = fmod.startswith("numpy") or fname in _NP_UNITS  # (and the RNG stand-ins)
    if numpy_mod:
        base = _NP_UNITS.get(fname, 0) if type(fname) is str else 0
    else:
        base = 0 if fname in _PD_CHEAP else _PD_HEAVY.get(fname, 1) if type(fname) is str else 1
    return (func in _READ_ONLY_CALLS, func in _CONTAINERS, numpy_mod, pandas_mod, base,
            fname in _PD_PARSERS, fmod == "pandas.core.internals.managers",
            fmod.startswith(("pandas.core.internals", "pandas._libs")), pd_indexes,
            pd_indexes and fname in _PD_NEW_INDEX, qualname if type(qualname) is str else None,
            pandas_mod and fname in _PD_CONVERTING,
            # numpy.ndarray (buffer=), torch.from_numpy, torch.Tensor.new_empty: checked last
            fname in ("ndarray", "from_numpy", "new_empty", "set_"),
            # a conversion between numbers and text, or a copyreg reconstructor (which may make one)
            func in _CONVERSIONS or (isinstance(func, type) and issubclass(func, _CONVERTED))
            or func in _RECONSTRUCTORS)


def _make_before_call(budget, pending, made, epoch=None, self_checked=None):
    if epoch is None:
        epoch = [0]
    self_checked = self_checked or {}  # id -> stand-in that checks its own arguments (_trust)
    # (what these remember is kept in pairs of dicts: one holds the object, under its id, so
    # the id stays its own; the other what was found, as ints or tuples of ints, which the
    # cyclic collector stops tracking: a restricted load of many small objects otherwise kept
    # a tracked tuple for each, and every collection walked them)
    rechecked_at = {}  # id(made pandas object) -> the epoch it was last re-checked at
    rechecked_ref = {}  # id(made pandas object) -> its weak reference in `made` then
    flood_checked = {}  # id(x) -> the key work its items' hashing costs
    flood_objs = {}  # id(x) -> x
    key_work = [0]  # tuple / frozenset key elements the checked calls hash and compare
    pd_hash_checked = {}  # arrays checked against pandas' hash-table flooding
    same_calls = {}  # (id(func), *ids of args) -> (func, args, epoch or None): checked calls
    atom_calls = {}  # numpy / pandas calls of atoms: (id(func), *ids) -> (func, args, units)
    value_calls = {}  # ... of atoms and small tuples of atoms (_small_tuple_key) -> the same
    seen_calls = {}  # numpy / pandas calls of other objects: (id(func), *ids) -> arguments
    pd_units = [0]  # pandas constructor calls (and their text) so far
    dateutil_seen = {}  # containers _refuse_dateutil looked at
    rechecked_bytes = [0]  # data of made pandas objects re-checked so far
    recheck_ids = set()  # made objects re-checked for the call being checked
    dag_checked = {}  # id(v) -> (slots, distinct slots)
    dag_objs = {}  # id(v) -> v
    known = {}  # big lists / tuples of atoms counted once (_expanded_slots)
    text_uses = {}  # id -> long str / bytes already given to a call (charge_call)

    def dag_check(func, v):
        if type(v) not in _CONTAINER_SET:
            return
        hit = dag_checked.get(id(v)) if dag_objs.get(id(v)) is v else None
        if hit is not None:
            size, distinct = hit
        else:
            size, distinct = _expanded_slots(v, known)
            dag_objs[id(v)] = v
            dag_checked[id(v)] = (size, distinct)
        if func in (str, repr, format) and size > _STRINGIFY_MAX:
            raise _bad_state(getattr(func, "__qualname__", "call"),
                             f"a container of {size} items once its shared parts are expanded "
                             f"(at most {_STRINGIFY_MAX:,} are made into text)")
        if hit is not None:
            return
        if size > _EXPANDED_MAX and size > 64 * max(distinct, 1):
            raise _bad_state(getattr(func, "__qualname__", "call"),
                             f"an argument whose shared parts expand to {size} items (the file "
                             f"holds {distinct}): printing, hashing or comparing it would walk "
                             "every one")

    def flood_scan(func, x, fl):
        if not fl & _T_SCAN:
            return  # (never checked before: only such objects are remembered, alive)
        hit = flood_checked.get(id(x)) if flood_objs.get(id(x)) is x else None
        if hit is not None:
            # checked before; a callee that hashes its items hashes and compares the tuple and
            # frozenset ones again each time
            if hit and func not in _NO_HASH_CALLS:
                key_work[0] += hit
                if key_work[0] > _KEY_WORK_MAX:
                    raise _key_refusal(func)
            return
        np = sys.modules.get("numpy")
        before = key_work[0]
        if isinstance(x, (list, tuple, collections.deque)) or (
                np is not None and isinstance(x, np.ndarray) and x.dtype.hasobject):
            _flood_check(func, x.ravel() if hasattr(x, "ravel") else x, key_work)
            flood_objs[id(x)] = x
            flood_checked[id(x)] = key_work[0] - before
        elif np is not None and isinstance(x, np.ndarray) and func in _HASHING_BUILTINS:
            # set(array) hashes NumPy scalars, whose hashes are their values' (complex128
            # values of one Python hash): looked at as Python values (what set() makes anyway,
            # charged 64 bytes an element)
            _flood_check(func, x.ravel().tolist(), key_work)
            flood_objs[id(x)] = x
            flood_checked[id(x)] = key_work[0] - before
        elif isinstance(x, dict):
            _flood_check(func, list(x), key_work)
            flood_objs[id(x)] = x
            flood_checked[id(x)] = key_work[0] - before

    def conversion_units(func, args):
        """Units of a call that turns numbers into text or text into numbers (str, repr,
        format, ascii, int, float, complex, and their subclasses): CPython converts an int to
        decimal text in quadratic time (a 4300-digit int: 240 us, 174,000 6-byte calls of
        str(n): 39 s), str() of a list walks and formats all of it (20,000 ints: 3 ms a call),
        int(text) is quadratic and float(text) linear. A container holding an int of more than
        2048 bits is refused (its text is quadratic and repeated at every use)."""
        to_text = func in _STRINGIFY or (isinstance(func, type) and issubclass(func, str))
        units = 0
        for v in args:
            if isinstance(v, int):
                if to_text:
                    b = int.bit_length(v)
                    units += 1 + b * b // 14_000_000  # (14,285 bits, 4300 digits: 15 units)
            elif to_text and type(v) not in _ATOM_SET and type(v) not in _CONTAINER_SET:
                # str() of an array, a frame or any object: its own repr, of any cost (an
                # array of 1000 floats: 3-4 ms); pickles make only text and numbers into text
                raise _bad_state(getattr(func, "__qualname__", "str"),
                                 f"a {type(v).__name__} made into text (only text, numbers "
                                 "and containers of them are under trusted=)")
            elif isinstance(v, (str, bytes, bytearray)):
                n = len(v)
                if to_text:
                    units += n // 65536
                else:
                    units += 1 + n // 4096
                    if func is int or (isinstance(func, type) and issubclass(func, int)):
                        units += n * n // 4_000_000  # (4300 digits: ~100 us, 4 units)
            elif to_text and type(v) in _CONTAINER_SET:
                hit = dag_checked.get(id(v)) if dag_objs.get(id(v)) is v else None
                size = hit[0] if hit is not None else _expanded_slots(v, known)[0]
                if size > _STRINGIFY_MAX:
                    continue  # (refused by dag_check, with its reason)
                units += 1 + size // 128
                why = _nested_problem(v, _BIG_INT_BITS, deep_objects=False)
                if why is not None:
                    raise _bad_state(getattr(func, "__qualname__", "str"),
                                     f"{why} (made into text at every use: an int's text "
                                     "takes quadratic time, an object's repr any time)")
        return units

    def before_call(func, args, kwargs):
        prof = profile_of(func)
        if prof[13]:
            func2, args2, kwargs2 = _effective_call(func, args, kwargs)
            if func2 in _CONVERSIONS or (isinstance(func2, type) and issubclass(func2, _CONVERTED)):
                # (keyword arguments too: str(object=...))
                count_units(func2, conversion_units(
                    func2, (*args2, *kwargs2.values()) if kwargs2 else args2), "builtins")
        # The same call again (the same callable and argument objects through the memo: a
        # 4-6 byte REDUCE) gets the same answer when nothing it was given can have changed:
        # atoms, or (no memory-writing call or BUILD since: the epoch) objects that only those
        # change. What it costs is charged again.
        if self_checked.get(id(func)) is func:
            if getattr(func, "__qualname__", None) == "restricted_restore_array":
                count_units(func, 1, "pyarrow")  # (170,000 6-byte calls: 1.5 s)
            return
        key = None
        types = ()
        counted = prof[2] or prof[3]
        if not kwargs and type(args) is tuple and len(args) <= 8:
            # Arguments that are all atoms (and pandas.NA): none is made, pending, a container
            # or an array, so the full check reduces to what the values themselves decide
            # (numpy / pandas: units, text, refusals; others: charges and time-zone strings)
            types = set(map(type, args))
            if types <= _ATOM_SET or (counted and len(types - _ATOM_SET) == 1
                                      and _atoms_or_na(args)):
                if counted:
                    remembered(atom_calls, (id(func), *map(id, args)), func, args, kwargs, prof)
                    return
                charge_call(sys.modules.get("numpy"), func, args)
                if not prof[0]:
                    epoch[0] += 1
                    for a in args:
                        if type(a) is str and (len(a) >= _TEXT_SEEN_MIN or "dateutil/" in a):
                            _refuse_dateutil(a, 0, dateutil_seen)
                return
        if counted and not kwargs and type(args) is tuple and len(args) <= 8 \
                and tuple in types and types <= _VALUE_KEY_TYPES:
            vkey = _small_tuple_key(args)
            if vkey is not None:
                # atoms and small tuples of small atoms: the first check's answer for the same
                # callable, atom objects and tuple values, its units counted again, with the
                # repeat surcharge when the tuples are the same objects too (the memo)
                skey = (id(func), len(args), *map(id, args))
                repeated = seen_calls.get(skey) is not None
                vkey = (id(func), *vkey)
                if not repeated and value_calls.get(vkey) is not None:
                    seen_calls[skey] = args  # (a first check records it itself)
                remembered(value_calls, vkey, func, args, kwargs, prof,
                           _PD_REPEAT_UNITS if repeated else 0)
                return
        if counted:  # numpy's and pandas' calls are counted: checked every time
            _check_call(func, args, kwargs)
            return
        if not kwargs and type(args) is tuple and len(args) <= 8:
            key = (id(func), *map(id, args))
            hit = same_calls.get(key)  # (it holds the objects: their ids are theirs)
            if hit is not None and (hit[2] is None or hit[2] == epoch[0]):
                func2, args2, _ = _effective_call(func, args, kwargs)
                charge_call(sys.modules.get("numpy"), func2, args2)
                if func2 not in _READ_ONLY_CALLS:
                    epoch[0] += 1
                return
        _check_call(func, args, kwargs)
        if key is not None and len(same_calls) < 4096:
            if all(type(a) in _ATOM_SET for a in args):
                same_calls[key] = (func, args, None)  # can never change
            elif func in _NO_HASH_CALLS and not any(
                    type(a) in _UNFROZEN or (type(a) is tuple and any(type(b) in _UNFROZEN
                                                                      for b in a[:64]))
                    for a in args) and not any(type(a) is tuple and len(a) > 64 for a in args):
                same_calls[key] = (func, args, epoch[0])

    def remembered(cache, key, func, args, kwargs, prof, surcharge=0):
        """A NumPy or pandas call whose check's answer is kept in `cache` under `key` (which
        names its callable and arguments; the entry holds them, so their ids stay theirs): the
        first is checked in full and its units (less `surcharge`) remembered, each later one
        counts them again (plus `surcharge`)."""
        hit = cache.get(key)
        if hit is not None:
            count_units(func, hit[2] + surcharge, "pandas" if prof[3] else "numpy")
            if not prof[0]:
                epoch[0] += 1
            return
        before = pd_units[0]
        _check_call(func, args, kwargs)
        if len(cache) < 4096:
            cache[key] = (func, args, pd_units[0] - before - surcharge)

    def clear():
        """Drop what this load's checks remember (they hold the load's objects; the policy's
        closures reference each other, so without this they would live until the next cyclic
        collection, and make it slower)."""
        for d in (rechecked_at, rechecked_ref, flood_checked, flood_objs, pd_hash_checked,
                  same_calls, atom_calls, value_calls, seen_calls, dateutil_seen, dag_checked,
                  dag_objs, known, text_uses, profiles):
            d.clear()
    before_call.clear = clear

    def count_units(func, units, lib):
        """Count a pandas (or text-parsing NumPy) call against the load's limit."""
        if units:
            pd_units[0] += units
            limit = _pd_unit_limit(budget)
            if pd_units[0] > limit:
                raise _bad_state(getattr(func, "__qualname__", lib),
                                 f"more than {limit:,} pandas constructor calls (or their text) "
                                 "in one load, or NumPy calls, conversions and repeated calls "
                                 "counted with them: each costs 20-100 us (the limit follows "
                                 + ("the compressed file's size; pass max_bytes= to the load "
                                    "to count its decompressed bytes instead)"
                                    if budget.compressed else "the bytes the load has read)"))

    def charge_call(np, func, args, kwargs=None, fls=None):
        """`fls`: the _type_flags of args and kwargs' values, when the caller has them."""
        if kwargs and len(kwargs) >= 16:  # a memoised keyword dict copied into each call
            budget.charge(128 * len(kwargs))
        pd_range = None
        vals = (*args, *kwargs.values()) if kwargs else args
        for v, fl in zip(vals, fls if fls is not None else map(_flags_of, vals)):
            if fl & _T_TEXT or type(v) is bytes:
                # a long text argument given again (the memo's), charged at each use after the
                # first: the callee may copy it (pathlib joins its segments: PurePosixPath(s, s,
                # ...) of one 60,000-character s, 200,000 times, was 14 s for 460 KB); its
                # first use is the file's own text (_codecs.encode(data, 'latin1'))
                if len(v) >= _TEXT_SEEN_MIN:
                    if text_uses.get(id(v)) is v:
                        # and its work: one unit per 512 characters (pathlib splits 'a/' * 30000
                        # into 30,000 parts, 28 ns a character: 1.7 ms for 6 bytes)
                        budget.charge(len(v))
                        count_units(func, len(v) // 512, "text")
                    else:
                        text_uses[id(v)] = v
                continue
            if not fl & _T_LAZY:
                continue
            pd = sys.modules.get("pandas")
            if pd_range is None and pd is not None:
                pd_range = getattr(pd, "RangeIndex", None)
            n = _lazy_size(np, pd_range, v)  # what materialising a lazy argument takes
            if n:
                budget.charge(n)
        if func in _CONTAINERS and args:
            a0 = args[0]
            if func in _INT_SIZED and type(a0) is int:
                budget.charge(a0)
            elif np is not None and isinstance(a0, np.ndarray):
                budget.charge(64 * a0.size)  # one Python object per element
            elif type(a0) in _SIZED_ARGS:
                # the new container's slots (and the work of filling them): a big list the memo
                # hands to set() again and again reaches the budget, not minutes of hashing
                # (64 bytes an item for a hash table: set, frozenset, dict, Counter, ...)
                budget.charge((64 if func in _HASHING_BUILTINS else 16) * len(a0))
            elif type(a0) in (bytes, bytearray, str) and (func is not bytes or
                                                            type(a0) is not bytes):
                # list(b) / bytearray(b) / tuple(s) of one memoised 64 KiB string, again and
                # again (bytes(b) of a bytes is b itself)
                budget.charge((1 if func in _INT_SIZED else 16) * len(a0))
        elif func in (str, repr) and args and type(args[0]) in (bytes, bytearray):
            budget.charge(4 * len(args[0]))  # (repr: up to 4 characters a byte)

    profiles = {}  # id(callable) -> (callable, _call_profile(callable))

    def profile_of(func):
        hit = profiles.get(id(func))
        if hit is not None and hit[0] is func:
            return hit[1]
        prof = _call_profile(func)
        if len(profiles) < 4096:  # (getattr may hand out a new bound method at every call)
            profiles[id(func)] = (func, prof)
        return prof

    def deep_pending(vals):
        """Refuse a pandas object made without its data (BUILD to come) two containers down in
        a call's argument (the deepest an object may be for NumPy and pandas, _nested_problem;
        dict([P]) unpacks the pair P and crashed pandas): the callee may use it. Each container
        once; the items looked at are charged (_PENDING_ITEM_COST a piece): a pending object
        kept alive would otherwise have one big memoised list walked at every call."""
        seen = set()
        stack = [(_unwrapped(v), 0) for v in vals if type(v) in _PENDING_WALK]
        walked = 0
        while stack:
            x, d = stack.pop()
            if id(x) in seen:
                continue
            seen.add(id(x))
            walked += len(x)
            if walked > 4096:
                budget.charge(_PENDING_ITEM_COST * len(x))
            for w in ([*x, *x.values()] if type(x) in _DICT_TYPES else x):
                ref = pending.get(id(w))
                if ref is not None and ref() is w:
                    raise _bad_state(type(w).__name__, "used before it got its data")
                if d < 1 and type(w) in _PENDING_WALK:
                    stack.append((_unwrapped(w), d + 1))

    def check_value(func, w, fl, rechecked, now, pd):
        """A call argument, or an item one level inside one (`fl`: its _type_flags): made
        pandas objects re-checked, pending ones refused, hashed items scanned for flooding."""
        wid = id(w)
        if pending and wid in pending and pending[wid]() is w:
            raise _bad_state(type(w).__name__, "used before it got its data")
        ref = made.get(wid) if made else None
        if ref is not None and ref() is w and wid not in rechecked:
            if not (rechecked_ref.get(wid) is ref and rechecked_at[wid] == now):
                rechecked.add(wid)
                rechecked_ref[wid] = ref
                rechecked_at[wid] = now
                rechecked_bytes[0] += _pd_recheck_cost(pd, w)  # (each re-check reads it again)
                if rechecked_bytes[0] > 4 * max(budget.state()[2], 1 << 30):
                    raise _bad_state(type(w).__name__, "re-checked after more calls that "
                                     "may write memory than its data allows (each re-check "
                                     "reads all of it)")
                why = _pd_recheck(pd, w)
                if why is not None and why != "pending":
                    raise _bad_state(type(w).__name__, f"{why} (changed after it was made)")
        if fl & _T_SCAN:
            flood_scan(func, w, fl)

    def _check_call(func, args, kwargs):
        func, args, kwargs = _effective_call(func, args, kwargs)
        (read_only, is_container, numpy_mod, pandas_mod, pd_units_base, pd_parser, pd_managers,
         pd_internal, pd_indexes, pd_new_index, qualname, pd_converting, special, _) = \
            profile_of(func)
        np = sys.modules.get("numpy")
        pd = sys.modules.get("pandas")
        vals = (*args, *kwargs.values()) if kwargs else args
        fls = tuple(map(_flags_of, vals))
        # charged first: the walks below are linear in the arguments too
        charge_call(np, func, args, kwargs, fls)
        if is_container and args:
            a0 = args[0]
            if func is collections.defaultdict and len(args) >= 2:
                a0 = args[1]  # (defaultdict(factory, pairs))
            if func in (dict, collections.OrderedDict, collections.UserDict,
                        collections.defaultdict, collections.Counter) \
                    and isinstance(a0, (list, tuple, set, frozenset, collections.deque)):
                _flood_check(func, [p[0] for p in a0 if type(p) is tuple and len(p) == 2],
                             key_work)
        rechecked = recheck_ids  # (one argument list may hold one pandas object 64 times)
        if rechecked:
            rechecked.clear()
        now = epoch[0]
        if not read_only:
            epoch[0] += 1  # this call may write memory: what it is given is re-checked first
        # (an object given many times in one call is looked at once: ChainMap(L, L, ...) with
        # 520,000 references to one list of 64 lists, 2 bytes each, was 13 s)
        done = set() if len(vals) > 8 else None
        counted = numpy_mod or pandas_mod
        for v, fl in zip(vals, fls):
            tv = type(v)
            if tv in _ATOM_SET:
                # an exact str, int, float, ...: nothing to expand, hash-scan or re-check; only
                # a time-zone string that pandas would read a file for
                if tv is str and not read_only and (len(v) >= _TEXT_SEEN_MIN or "dateutil/" in v):
                    _refuse_dateutil(v, 0, dateutil_seen)
                continue
            if done is not None:
                if id(v) in done:
                    continue
                done.add(id(v))
            if read_only:
                # a builtin constructor only references the items inside its argument (hashing
                # and printing are bounded by flood_scan / dag_check on the argument itself):
                # the per-item checks are for calls that use them, not for list((df,) * 64)
                # repeated through the memo
                inner = ()
            else:
                if tv is tuple or tv is list or tv is dict or fl & _T_TEXT:
                    _refuse_dateutil(v, 0, dateutil_seen)
                # the items one level down: all of them for a NumPy or pandas call (which uses
                # them, and counts a unit per two beyond eight: a pending Categorical as the 65th
                # value of a DataFrame's dict crashed it), the first 64 for others (a dict's
                # without a copy of all: ChainMap(d) of one memoised 60,000-key dict, again and
                # again, was 29 s a megabyte)
                inner = v if tv is tuple or tv is list else (
                    (list(v.values()) if counted else list(itertools.islice(v.values(), 64)))
                    if tv is dict else ())
            if tv in _CONTAINER_SET:
                dag_check(func, v)
            check_value(func, v, fl, rechecked, now, pd)
            if inner:
                if not counted:
                    inner = inner[:64]
                if not _ATOM_SET.issuperset(map(type, inner)):  # (atoms: nothing to check)
                    for w in inner:
                        if type(w) not in _ATOM_SET:
                            check_value(func, w, _flags_of(w), rechecked, now, pd)
        if pending:
            deep_pending(vals)
        if numpy_mod or pandas_mod:
            # what a container argument holds at any depth: its expanded size counts one unit
            # per 64 slots beyond the first 64 (a pandas error message prints all of it: the
            # repr of [[[array] * 3000]] took 9 s), no object but atoms and containers sits
            # three containers down, and NumPy gets no int of more than _NP_INT_BITS bits at
            # any depth (SeedSequence([[n]]) cuts n into 32-bit words: 40 s for 2.9M bits)
            for v in vals:
                if type(v) in _CONTAINER_SET:
                    hit = dag_checked.get(id(v)) if dag_objs.get(id(v)) is v else None
                    size = hit[0] if hit is not None else _expanded_slots(v, known)[0]
                    count_units(func, max(0, size - 64) // 64, "pandas" if pandas_mod else "numpy")
                    why = _nested_problem(v, _NP_INT_BITS if numpy_mod else 1 << 62)
                    if why is not None:
                        raise _bad_state(qualname or "pandas", why)
        repeat = 0
        if len(vals) <= 8 and not _ATOM_SET.issuperset(map(type, vals)) and (
                numpy_mod or pandas_mod
                or not all(type(v) in _ATOM_SET or isinstance(v, _REPEATABLE) for v in vals)):
            # the same call again with the same objects (BINGET, BINGET, REDUCE: 6 bytes),
            # which no pickler writes (it memoises what the call made): 3 units more
            # (_reconstruct(ndarray, (0,), b'b') 174,000 times: 1 s; ChainMap(d) of one
            # 60,000-key dict, 114,000 times: 0.8 s of checks). Other callables' calls of
            # atoms, classes and functions only (copyreg._reconstructor(cls, object, None)
            # for each object of a class) are not counted.
            key = (id(func), len(args), *map(id, vals), *(kwargs or ()))
            if seen_calls.get(key) is not None:
                # and the work of its container arguments again: one unit per 128 slots of
                # their expanded size (Counter(L) of one memoised 8,000-int list, 168,000
                # times: 5 s before the call limit refused it)
                repeat = _PD_REPEAT_UNITS
                for v in (vals if func not in _NO_HASH_CALLS else ()):  # (list(L): a copy,
                    if type(v) in _CONTAINER_SET:                        # charged 16 B an item)
                        hit = dag_checked.get(id(v)) if dag_objs.get(id(v)) is v else None
                        repeat += (hit[0] if hit is not None else len(v)) // 128
                if not (numpy_mod or pandas_mod):
                    count_units(func, repeat, "call")
            else:
                seen_calls[key] = vals  # (holds them: the ids stay theirs)
        if numpy_mod:
            # numpy.matrix(str) and numpy.dtype(str) parse their text (matrix: a compile() per
            # token): capped like pandas' strings, and counted with pandas' calls
            units = repeat + pd_units_base
            for v in vals:  # (lists, tuples and dicts: as for pandas' calls, below)
                if type(v) in (list, tuple, dict):
                    units += max(0, len(v) - 8) // 2
            count_units(func, units, "numpy")  # (then its text, below)
            units = 0
            for v in vals:
                if isinstance(v, int) and int.bit_length(v) > _NP_INT_BITS:
                    raise _bad_state(qualname or "numpy",
                                     f"an int of {int.bit_length(v)} bits (at most "
                                     f"{_NP_INT_BITS}: NumPy converts it in quadratic time)")
                if isinstance(v, str):
                    if len(v) > _MAX_PANDAS_STR:
                        raise _bad_state(qualname or "numpy",
                                         f"a string argument of {len(v)} characters (at most "
                                         f"{_MAX_PANDAS_STR}: NumPy parses it)")
                    # (matrix('1 1 ... 1'), 31 characters: 88 us, one literal_eval a token)
                    units += 1 + len(v) // 8
            count_units(func, units, "numpy")
        if numpy_mod or pandas_mod:
            # NumPy makes a view of a writable buffer it is handed (MaskedArray(ba), matrix(ba,
            # copy=False), ...): two such views, or one over a caller's out-of-band buffer,
            # would let the caller's writes change data a check has passed (pandas codes).
            # Protocol-5 arrays come through the copying _frombuffer stand-in instead.
            for v in vals:
                if type(v) in _WRITABLE_BUFFERS:
                    raise _bad_state(qualname or "numpy",
                                     f"a {type(v).__name__} argument (an array over its memory)")
        if pandas_mod:
            # pandas parses date, period and frequency strings in super-linear time, and its
            # constructors cost 30-100 us a call: each call is counted (the helpers that only
            # rebuild a pickled scalar or block are cheap: not counted), with its text
            units = pd_units_base + _pd_text_units(np, func, vals, fls, pd_parser,
                                                   qualname or "pandas", not pd_units_base)
            if args and pd_converting:
                units += 1
            if qualname == "_new_Index" and args:
                # an unpickled MultiIndex, CategoricalIndex or datetime-like index costs its
                # constructor: 4, 2, 3 (PeriodIndex 2) units (not CategoricalIndex's 4: small
                # legitimate frames indexed by one make a unit per 34.5 bytes at 2, near the
                # one per 32 allowed, and PeriodIndex-indexed ones one per 33 at 3;
                # _new_Index(DatetimeIndex, {'data': a}) with a fresh dict each call: 47 us)
                units += _PD_NEW_INDEX_UNITS.get(getattr(args[0], "__name__", None), 0) \
                    if args[0] is getattr(pd, getattr(args[0], "__name__", ""), None) else 0
            units += repeat
            for v in vals:
                # a constructor does work per item of the lists, tuples and dicts it is given
                # (DataFrame of a 10,000-key dict: 80 ms): one unit per two beyond the first
                # eight (pickled pandas objects give their helpers a few), and the same for those
                # one level down (DataFrame of 8 lists of 511 Intervals, or of [511-key dict],
                # repeated: 13-25 s when they counted one per 512)
                tv = type(v)
                if tv is list or tv is tuple or tv is dict:
                    units += max(0, len(v) - 8) // 2
                    if len(v) <= 4096:
                        for w in (v.values() if tv is dict else v):
                            if type(w) in (list, tuple, dict):
                                units += max(0, len(w) - 8) // 2
            count_units(func, units, "pandas")
            if pd_managers:
                _pd_manager_call(pd, func, args)
            hashing = np is not None and _pd_hashing_call(pd, func, args, vals)
            if hashing or (np is not None and (_pd_tuple_data(vals) or (
                    not pd_internal and _pd_level_data(np, pd, vals)))):
                _pd_hash_flood_check(np, pd, func, vals, pd_hash_checked)
            if not hashing and np is not None and not pd_internal \
                    and _may_hold_indexes(vals, fls):
                # any other pandas call may align or reindex the indexes it is given
                _pd_hash_flood_check(np, pd, func, vals, pd_hash_checked, indexes_only=True)
            # boxing: a NumPy array turned into Python objects (dtype=object, or a string dtype:
            # Python str objects or a pyarrow buffer, neither NumPy memory) costs ~100 B each
            if np is not None and any(fl & (_T_TEXT | _T_DTYPE) and _pd_boxes(np, pd, v)
                                      for v, fl in zip(vals, fls)):
                for v, fl in zip(vals, fls):
                    if fl & _T_NDARRAY and not v.dtype.hasobject:
                        budget.charge(100 * v.size)
            elif np is not None:
                for v, fl in zip(vals, fls):  # void, bytes and text arrays: pandas makes objects
                    if fl & _T_NDARRAY and v.dtype.kind in "VSU" and v.size:
                        budget.charge(100 * v.size)
            if pd_indexes and len(args) == 2 and type(args[1]) is dict:
                _pd_index_parts(pd, np, func, args[0], args[1])
            elif pd_new_index:
                raise _bad_state("pandas." + func.__name__, "only (class, dict) arguments")
        if not special:
            return
        if np is not None and func is np.ndarray and (len(args) > 2 or (kwargs and "buffer" in kwargs)):
            raise _bad_state("numpy.ndarray", "an array over another object's memory (buffer=)")
        torch = sys.modules.get("torch")
        if torch is not None and func is getattr(torch, "from_numpy", None) and args \
                and np is not None and isinstance(args[0], np.ndarray) \
                and not args[0].flags.writeable:
            raise _bad_state("torch.from_numpy", "a read-only array (torch would write into "
                                                 "memory that is not the load's, e.g. a shared "
                                                 "bytes object)")
        if torch is not None and func is getattr(torch.Tensor, "set_", None):
            _torch_set_check(torch, args, kwargs, budget.state()[2])
        if torch is not None and func is getattr(torch.Tensor, "new_empty", None) and len(args) >= 2:
            try:  # torch's allocations are not NumPy's: charge what new_empty is asked for
                n = 1
                for d in (args[1] if isinstance(args[1], (tuple, list)) else args[1:]):
                    n *= int(d)
                budget.charge(n * args[0].element_size())
            except (TypeError, ValueError, AttributeError):
                pass
    return before_call


def _torch_set_check(torch, args, kwargs, limit):
    """Tensor.set_(t, source, offset, size, stride) may only view what `source`'s storage holds:
    torch grows a resizable storage to fit (set_ of new_empty(base, (0,)) to 900 MiB, 354 bytes
    of file, none of it charged to the budget)."""
    a = list(args[1:]) + [kwargs[k] for k in ("source", "storage_offset", "size", "stride")
                          if kwargs and k in kwargs]
    if not a:
        return  # (set_(): an empty tensor)
    src = a[0]
    try:
        if isinstance(src, torch.Tensor):
            have = src.untyped_storage().nbytes()
            if len(a) == 1:
                return  # (set_(t): t's own storage, offset and shape)
        else:
            have = src.nbytes()
        esize = args[0].element_size()
        offset = int(a[1]) if len(a) > 1 else 0
        size = tuple(int(d) for d in a[2]) if len(a) > 2 else (have // max(esize, 1),)
        stride = tuple(int(d) for d in a[3]) if len(a) > 3 else None
    except Exception as exc:
        raise _bad_state("torch.Tensor.set_", f"malformed arguments ({type(exc).__name__})") from None
    if stride is None:
        stride, step = [], 1
        for d in reversed(size):
            stride.insert(0, step)
            step *= max(d, 1)
    if offset < 0 or len(stride) != len(size) or any(d < 0 for d in size) \
            or any(st < 0 for st in stride):
        raise _bad_state("torch.Tensor.set_", "a negative offset, size or stride, or as many "
                                              "strides as sizes needed")
    if any(d == 0 for d in size):
        return
    numel = 1
    for d in size:
        numel *= d
    if numel * esize > limit:
        # (stride 0: 2**63 - 1 elements over 8 bytes; what uses it makes them all)
        raise _bad_state("torch.Tensor.set_", f"a view of {numel} elements, more than the "
                                              f"budget ({limit} bytes) holds")
    need = (offset + sum((d - 1) * st for d, st in zip(size, stride)) + 1) * esize
    if need > have:
        raise _bad_state("torch.Tensor.set_", f"a view of {need} bytes of a storage of {have} "
                                              "(torch would grow the storage, past the budget)")


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
        why = ""
        if policy.budget_obj.compressed == "bz2":
            why = (" (the default budget of a bz2-compressed file is 8 MiB + 24 x its size, so "
                   "that a small file cannot take seconds to decompress: bz2 decodes at 45-120 "
                   "MB/s)")
        elif policy.budget_obj.compressed:
            why = (" (the default budget of a compressed file is 64 MiB + 100 x its size, "
                   "so that a small file cannot take seconds to decompress)")
        raise BudgetExceededError(
            f"restricted load refused: the file asks for more memory than max_bytes={limit}{why} "
            f"(a request of {refused} bytes with {used} in use); pass a larger max_bytes= to "
            "the load if you trust this file to be that large") from exc


def _refuse_pending(inst, state, pending, budget):
    """A BUILD state may not hold a pandas object made without its data (but `inst` itself),
    three containers deep: a CategoricalDtype given such a Categorical as its categories crashed
    pandas when the dtype was hashed (a dict key, a set item), a UserList given one as its
    'data' when it was counted or copied. Each container once; past 4096 items, each item is
    charged _PENDING_ITEM_COST (one memoised state of a 1M-item list, BUILT again and again
    while a pending object was kept alive: 7.7 s for 864 bytes)."""
    seen = set()
    stack = [(state, 0)] if type(state) in _STATE_CONTAINERS else []
    walked = 0
    while stack:
        x, d = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        walked += len(x)
        if walked > 4096:
            budget.charge(_PENDING_ITEM_COST * len(x))
        for w in ([*x, *x.values()] if isinstance(x, dict) else x):
            ref = pending.get(id(w))
            if ref is not None and ref() is w and w is not inst:
                raise _bad_state(type(w).__name__, "used before it got its data (in the state "
                                                   f"of a {type(inst).__name__})")
            if d < 3 and type(w) in _STATE_CONTAINERS:
                stack.append((w, d + 1))


# Budget bytes charged for each item a pending-object walk looks at past its first 4096 (a
# walk is ~60 ns an item: a 1 GiB budget then allows ~8M items, about 0.5 s, of repeated walks)
_PENDING_ITEM_COST = 128

# What deep_pending looks into: containers, and the collections wrappers pandas iterates like
# them (DataFrame(UserList([... 64 rows, a Categorical without its data])) crashed pandas)
_PENDING_WALK = frozenset(_CONTAINER_TYPES + (collections.UserList, collections.UserDict,
                                             collections.ChainMap))


def _unwrapped(x):
    """A container, or what a collections wrapper holds (its items, as one container)."""
    t = type(x)
    if t is collections.UserList or t is collections.UserDict:
        return x.data
    if t is collections.ChainMap:
        return tuple(x.maps)
    return x


_STATE_CONTAINERS = frozenset((tuple, list, dict, set, frozenset, collections.OrderedDict))


def attach(find_class, returned, max_bytes=None):
    """Give a policy (``make_find_class``'s find_class) the hooks the C engine looks up, and
    ``finish()``, which the caller runs on the loaded value."""
    pending = {}  # pandas arrays made without their data (BUILD to come): id -> weakref
    made = {}  # pandas objects this load made: id -> weakref (checked again at use and at the end)
    budget = Budget(max_bytes)
    check_reads = [0]  # bytes of data the checks after BUILDs and at the end have read
    find_class.check_object = _make_check_object(returned, pending, made, budget, check_reads)
    arrow_made = getattr(find_class, "arrow_made", {})
    fields_applied = [0]  # structured-dtype fields given to dtype BUILDs in this load
    # bumped before every BUILD and every call that may write memory (_READ_ONLY_CALLS are not):
    # a made pandas object re-checked at one epoch need not be re-checked until the next
    epoch = [0]

    dateutil_seen = {}

    def filter_state(inst, state):
        epoch[0] += 1
        if pending:  # (any object's: UserList's {'data': P} crashed bool(), list(), Series())
            _refuse_pending(inst, state, pending, budget)
        return _filter_state(inst, state, arrow_made, fields_applied, dateutil_seen)
    find_class.filter_state = filter_state
    find_class.budget_obj = budget
    find_class.budget = budget.capsule
    before_call = _make_before_call(budget, pending, made, epoch,
                                    getattr(find_class, "self_checked", None))
    find_class.before_call = before_call

    def finish():
        for ref in pending.values():
            obj = ref()
            if obj is not None:
                raise _bad_state(type(obj).__name__, "left without its data at the end of the load")
        pd = sys.modules.get("pandas")
        for ref in made.values():
            obj = ref()
            if obj is not None and pd is not None:
                if _pd_kind(pd, obj) in _READ_KINDS:
                    _count_check_reads(budget, check_reads, pd, obj)
                why = _pd_recheck(pd, obj)
                if why is not None:
                    raise _bad_state(type(obj).__name__, f"{why} at the end of the load")
    find_class.finish = finish

    def release(objects=True):
        # objects=False (a reused Unpickler, whose memo keeps what its loads made, refused ones
        # included): the pandas objects made so far stay known, to be checked again when a
        # later load hands one out; only the checks' caches are dropped
        if objects:
            pending.clear()
            made.clear()
            arrow_made.clear()
        dateutil_seen.clear()
        clear = getattr(before_call, "clear", None)
        if clear is not None:
            clear()
    find_class.release = release
    return find_class


def release(policy, objects=True):
    """After a restricted load (done or failed): forget the objects its checks remember (with
    objects=False, only the caches: for an Unpickler that may load again from its memo)."""
    r = getattr(policy, "release", None)
    if r is not None:
        r(objects)
