"""Static inspection of joblib files and pickle streams: nothing in the file is imported or run.

``inspect(source)`` detects the container by its magic bytes, decompresses it as a stream (bounded
memory), and walks the pickle opcodes with a small symbolic stack machine. It understands joblib's
twist: after the BUILD of a ``NumpyArrayWrapper`` the raw array bytes (after a padding prefix) or,
for object arrays, a nested pickle stream, are spliced into the stream; the wrapper's state is
rebuilt symbolically (the dtype from numpy's dtype reduce arguments) so that the payload can be
skipped, located and sized.

Hostile or damaged input raises ``ValueError`` (every loop consumes input, every length is checked,
strings and containers are kept only up to small bounds).
"""
import _compat_pickle
import codecs
import gc
import io
import lzma
import math
import os
import re
import struct
import zlib
from collections import Counter

from . import _sniff
from ._provenance import as_record
from ._torch import (INSPECT_CALLS as _TORCH_CALLS, INSPECT_ITEMSIZE as _TORCH_ITEMSIZE,
                     INSPECT_ALIAS as _TORCH_ALIAS, INSPECT_FROM_NUMPY as _NUMPY_TO_TORCH,
                     INSPECT_STORAGE_DTYPE as _STORAGE_DTYPE)
from ._trust import DEFAULT_TRUSTED, is_denied

__all__ = ["inspect"]

_CHUNK = 1 << 20          # skip / decompress granularity
_KEEP_STR = 4096          # strings longer than this are kept only as their length
_KEEP_ITEMS = 4096        # dict items / tuple elements kept per container
_KEEP_HEAD = 512          # first bytes kept of a longer bytes object
_KEEP_TENSORS = 4096      # torch tensors described one by one (all are counted)
_MAX_NDIM = 64
_MAX_GETATTR_NAME = 1024  # a getattr chain's dotted name beyond this is not a real global
_DIM_LIMIT = 1 << 63   # a dimension, an array's or a tensor's byte size: as the loaders bound them
_MAX_STACK = 2 << 20      # stack / mark-stack entries (a DUP flood would grow them without end)
# What a compressed stream may expand to by default: 64 MiB + 16 x the compressed size.
_EXPAND_BASE, _EXPAND_PER_BYTE = 64 << 20, 16
# ... and the opcodes it may hold: 1M (as many as an uncompressed 1 MiB file can), or 1 per byte
# of a bigger compressed file (a walk step costs ~0.3-0.8 us: a file of at most 1 MiB is walked
# within a second; max_bytes= lifts both bounds).
_OPS_FLOOR, _OPS_PER_BYTE = 1 << 20, 1

_WRAPPERS = {
    "joblib.numpy_pickle.NumpyArrayWrapper",
    "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper",
    "sklearn.externals._joblib.numpy_pickle.NumpyArrayWrapper",
}
_OLD_WRAPPERS = {
    "joblib.numpy_pickle.NDArrayWrapper", "joblib.numpy_pickle.ZNDArrayWrapper",
    "joblib.numpy_pickle_compat.NDArrayWrapper", "joblib.numpy_pickle_compat.ZNDArrayWrapper",
    "sklearn.externals.joblib.numpy_pickle.NDArrayWrapper",
    "sklearn.externals.joblib.numpy_pickle.ZNDArrayWrapper",
}
_VERSION_KEY = re.compile(r"^(__version__|_?[A-Za-z0-9_]*_version)$")
_DESCR = re.compile(r"^[|<>=]?[A-Za-z][0-9]{0,10}$")


class _Bad(ValueError):
    pass


# ------------------------------------------------------------------------------------------------
# Symbolic values.

class _Long:
    """A string/bytes too long to keep: only its kind, length and (bytes) its first bytes."""
    __slots__ = ("kind", "length", "head")

    def __init__(self, kind, length, head=b""):
        self.kind, self.length, self.head = kind, length, head


class _Global:
    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name


class _Obj:
    """The result of REDUCE / NEWOBJ / OBJ / INST: a callable (symbolic) applied to args."""
    __slots__ = ("func", "args", "state", "dtype", "dtext")

    def __init__(self, func, args):
        self.func, self.args, self.state = func, args, None
        self.dtext = None  # _struct_text's answer for that dtype, kept likewise
        self.dtype = None  # _dtype_from's answer, kept: a sub-dtype shared through the memo
        # by many fields is rebuilt once (linear time, not exponential in the nesting depth)

    def cls_name(self):
        f = self.func
        if isinstance(f, _Global):
            if f.name == "copyreg._reconstructor" and isinstance(self.args, tuple) \
                    and self.args and isinstance(self.args[0], _Global):
                return self.args[0].name
            return f.name
        return None


class _Dict:
    __slots__ = ("items", "n")

    def __init__(self):
        self.items, self.n = {}, 0

    def set(self, k, v):
        self.n += 1
        # only flat keys are kept: hashing a hostile, deeply nested tuple would recurse in C.
        # Numbers have hashes a file can choose (thousands of keys on one hash value: quadratic
        # time), so only the first few are kept; str/bytes hashes are randomised.
        t = type(k)
        if t is str or t is bytes:
            keep = _KEEP_ITEMS
        elif t in (int, bool, float) or k is None:
            keep = 64
        else:
            return
        if len(self.items) < keep or (t in (str, bytes) and k in self.items):
            self.items[k] = v


class _Opaque:
    __slots__ = ("kind",)

    def __init__(self, kind):
        self.kind = kind


class _ArrayRef(_Opaque):
    """The value an array record leaves on the stack: which record it is."""
    __slots__ = ("index",)

    def __init__(self, index):
        self.kind, self.index = "ndarray", index


_LIST = _Opaque("list")
_SET = _Opaque("set")
_MARK = object()


def _tuple(items):
    return tuple(items) if len(items) <= _KEEP_ITEMS else _Opaque("tuple")


def _reduce_value(func, args):
    """Fold the two reduces that protocols 0-2 use for bytes (evaluated here, never called)."""
    if isinstance(func, _Global) and isinstance(args, tuple):
        if func.name in ("_codecs.encode", "codecs.encode") and len(args) == 2 \
                and isinstance(args[0], str) and args[1] in ("latin1", "latin-1"):
            try:
                return args[0].encode("latin-1")
            except UnicodeEncodeError:
                pass
        elif func.name == "builtins.bytes" and args == ():
            return b""
    return _Obj(func, args)


# ------------------------------------------------------------------------------------------------
# The walk loop dispatches in two steps, a group (which sub-chain of tests) then the opcode,
# so no opcode waits behind more than ~20 comparisons: an opcode's group is the position of
# its branch in _Walker.run, 8 branches a group (tests/test_inspect.py checks every opcode).
def _op_groups():
    """opcode -> sub-chain of the walk loop handling it (0: invalid)."""
    table = bytearray(256)
    for g, ops in enumerate([
            b'.\x80\x95\x8cX\x8dVC',
            b'B\x8e\x96UTSN\x88',
            b'\x89JKMIL\x8a\x8bF',
            b'G])}\x8f\x85\x86\x87',
            b'(tl\x91dae\x90s',
            b'u021ghjpqr\x94c',
            b'\x93\x82\x83\x84ioR\x81\x92b',
            b'PQ\x97\x98',
    ], start=1):
        for c in ops:
            table[c] = g
    return bytes(table)


_OP_GROUP = _op_groups()


# Byte sources.

class _Reader:
    """Buffered exact reads over `read(n)`, with the uncompressed offset and bounded skips."""

    def __init__(self, read, size=None, limit=None):
        self._read = read
        self._buf = b""
        self._i = 0
        self._off = 0          # offset of _buf[0] in the stream
        self.size = size       # total stream size when known (uncompressed input)
        self.limit = limit     # most bytes a compressed stream may expand to, or None
        self.max_ops = None    # most opcodes a compressed stream may hold, or None

    def tell(self):
        return self._off + self._i

    def _fill(self, want):
        """Make at least `want` bytes available if the source has them; return available."""
        avail = len(self._buf) - self._i
        if avail >= want:
            return avail
        parts = [self._buf[self._i:]]
        self._off += self._i
        self._i = 0
        while avail < want:
            chunk = self._read(max(want - avail, 65536))
            if not chunk:
                break
            chunk = bytes(chunk)
            if self.limit is not None and self._off + avail + len(chunk) > self.limit:
                raise _Bad(f"the compressed stream expands to more than {self.limit} bytes: "
                           "inspect stops there (pass a larger max_bytes= to inspect it all)")
            parts.append(chunk)
            avail += len(chunk)
        self._buf = b"".join(parts)
        return avail

    def read(self, n, what="data"):
        if n < 0:
            raise _Bad(f"negative length for {what} at offset {self.tell()}")
        if n > _CHUNK * 64:
            raise _Bad(f"{what} of {n} bytes at offset {self.tell()} is too large to read")
        if self._fill(n) < n:
            raise _Bad(f"truncated stream: {what} needs {n} bytes at offset {self.tell()}")
        out = self._buf[self._i:self._i + n]
        self._i += n
        return out

    def skip(self, n, what="data"):
        if n < 0:
            raise _Bad(f"negative length for {what} at offset {self.tell()}")
        if self.size is not None and self.tell() + n > self.size:
            raise _Bad(f"truncated stream: {what} of {n} bytes at offset {self.tell()} runs past "
                       f"the end ({self.size} bytes)")
        while n:
            step = min(n, _CHUNK)
            avail = self._fill(step)
            if avail == 0:
                raise _Bad(f"truncated stream: {what} ends early at offset {self.tell()}")
            step = min(step, avail)
            self._i += step
            n -= step

    def readline(self, what):
        """Read up to and including b'\\n'; return (kept prefix without newline, full length)."""
        kept = bytearray()
        total = 0
        while True:
            avail = self._fill(1)
            if avail == 0:
                raise _Bad(f"truncated stream: unterminated {what} at offset {self.tell()}")
            j = self._buf.find(b"\n", self._i)
            end = j if j >= 0 else len(self._buf)
            seg = self._buf[self._i:end]
            total += len(seg)
            if len(kept) <= _KEEP_STR:
                kept += seg[:_KEEP_STR + 1 - len(kept)]
            self._i = end
            if j >= 0:
                self._i += 1
                return bytes(kept), total

    def at_eof(self):
        return self._fill(1) == 0


class _ZlibRaw:
    """read(n) over a zlib stream (wbits selects zlib / gzip), bounded output per call."""

    def __init__(self, read, wbits=zlib.MAX_WBITS):
        self._src = read
        self._wbits = wbits
        self._d = zlib.decompressobj(wbits)
        self._pending = b""

    def read(self, n):
        while True:
            if self._d.eof:
                rest = self._d.unused_data
                if self._wbits & 16 and (rest or self._pending):  # gzip: next member
                    self._pending = rest + self._pending
                    self._d = zlib.decompressobj(self._wbits)
                    continue
                return b""
            data = self._pending or self._d.unconsumed_tail or self._src(65536)
            self._pending = b""
            if not data:
                raise _Bad("truncated compressed stream")
            out = self._d.decompress(data, n)
            if out:
                return out


def _open_source(source):
    """-> (read callable, size or None, closer)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        mv = memoryview(source).cast("B")
        pos = 0

        def read_view(n):  # slices of the caller's buffer: no copy of the whole input
            nonlocal pos
            out = mv[pos:pos + n]
            pos += len(out)
            return out
        return read_view, len(mv), (lambda: None)
    if isinstance(source, (str, os.PathLike)):
        f = open(source, "rb")
        return f.read, os.fstat(f.fileno()).st_size, f.close
    if hasattr(source, "read"):
        size = None
        try:
            if source.seekable():
                here = source.tell()
                size = source.seek(0, io.SEEK_END) - here
                source.seek(here)
        except (AttributeError, OSError, ValueError):
            size = None
        return source.read, size, (lambda: None)
    raise TypeError(f"inspect() takes a path, a binary file object or bytes, not "
                    f"{type(source).__name__}")


class _Prefixed(io.RawIOBase):
    """A file object re-serving already-read magic bytes, then the rest of the source."""

    def __init__(self, prefix, read):
        self._prefix, self._read = prefix, read

    def readable(self):
        return True

    def readinto(self, b):
        n = len(b)
        if self._prefix:
            k = min(n, len(self._prefix))
            b[:k] = self._prefix[:k]
            self._prefix = self._prefix[k:]
            return k
        data = self._read(n)
        b[:len(data)] = data
        return len(data)


def _magics():
    """(prefix, container) pairs: the pre-0.10 z-file first, then the codec registry's magics
    (the same table load detects with)."""
    from ._compressors import REGISTRY, ZFILE_PREFIX

    return [(ZFILE_PREFIX, "zfile")] + [(c.prefix, c.name) for c in REGISTRY]


def _container(read, size):
    """Detect the container; -> (name, decompressed-stream read callable, size or None)."""
    head = b""
    while len(head) < 6:
        chunk = read(6 - len(head))
        if not chunk:
            break
        head += bytes(chunk)
    if not head:
        raise _Bad("empty input")
    name = "raw"
    for magic, cname in _magics():
        if head.startswith(magic):
            name = cname
            break
    src = io.BufferedReader(_Prefixed(head, read), 65536)
    if name == "raw":
        return name, src.read, size
    if name == "zfile":
        hdr = src.read(21)
        if len(hdr) < 21:
            raise _Bad("truncated ZF header")
        try:
            int(hdr[2:].strip(b" "), 16)
        except ValueError:
            raise _Bad("bad ZF header length field") from None
        first = src.read(1)
        if first != b" ":  # joblib <= 0.8.4 / Python 2 header is one byte wider
            src = io.BufferedReader(_Prefixed(first, src.read), 65536)
        return name, _ZlibRaw(src.read).read, None
    # every registered codec: the C reader load uses (one decoder per codec), pulled in
    # bounded pieces, serial (threads=1: bounded memory)
    from . import _core
    from ._compressors import missing_package, missing_package_message

    pip = missing_package(name)
    if pip is not None:
        raise ImportError(missing_package_message(pip, f"reading a {name} file"))
    reader = _core._codec_open(name, src, threads=1)

    def read(n):
        return _core._codec_read(reader, min(n, _CHUNK))
    return name, read, None


# ------------------------------------------------------------------------------------------------
# dtype and wrapper state, rebuilt symbolically (numpy is called only on validated plain data).

def _dtype_from(sym, depth=0):
    """numpy dtype from numpy's dtype reduce: dtype(descr, False, True) + BUILD state tuple."""
    if depth > 32:
        raise _Bad("dtype nesting too deep")
    if not isinstance(sym, _Obj):
        raise _Bad("array dtype is not a pickled dtype")
    if sym.dtype is None:
        # many dtype objects may share one state through the memo (a fresh dtype per array
        # record, one 1000-field state): built once per (descr, state), not per object
        key = id(sym.state)
        hit = _DTYPE_MEMO.get(key) if sym.state is not None else None
        if hit is not None and hit[0] is sym.state and hit[1] == sym.args:
            sym.dtype, sym.dtext = hit[2], hit[3]
        else:
            sym.dtype = _dtype_build(sym, depth)
            if sym.state is not None:
                if len(_DTYPE_MEMO) >= 4096:
                    _DTYPE_MEMO.clear()
                _DTYPE_MEMO[key] = [sym.state, sym.args, sym.dtype, None, sym]
    return sym.dtype


# id(dtype state) -> [state, reduce args, (dtype, kind), struct text, a symbolic dtype]: filled
# during one inspect, cleared after it (entries are checked by identity, so a walk in another
# thread at most misses)
_DTYPE_MEMO: "dict[int, list[object]]" = {}


def _dtype_build(sym, depth):
    import numpy as np
    cname = sym.cls_name()
    if cname != "numpy.dtype":
        # e.g. NumPy 2 StringDType (numpy._core._internal._convert_to_stringdtype_kwargs):
        # report it by name; joblib pickles such arrays as a nested stream (refcounted items).
        return None, cname
    args = sym.args
    if not (isinstance(args, tuple) and args and isinstance(args[0], str)
            and _DESCR.match(args[0])):
        raise _Bad("malformed dtype reduce arguments")
    descr = args[0]
    st = sym.state
    if st is None:
        st = (3, "|", None, None, None, -1, -1, 0)
    if not isinstance(st, tuple) or len(st) < 8:
        raise _Bad("malformed dtype state")
    endian, sub, names, fields, elsize = st[1], st[2], st[3], st[4], st[5]
    try:
        if names is not None:
            if not (isinstance(names, tuple) and isinstance(fields, _Dict)
                    and fields.n == len(names) == len(fields.items) and isinstance(elsize, int)):
                raise _Bad("malformed structured dtype")
            formats, offsets = [], []
            for n in names:
                f = fields.items.get(n)
                if not (isinstance(n, str) and isinstance(f, tuple) and len(f) >= 2
                        and isinstance(f[1], int)):
                    raise _Bad("malformed structured dtype field")
                fdt, _ = _dtype_from(f[0], depth + 1)
                if fdt is None:
                    raise _Bad("unsupported structured dtype field")
                formats.append(fdt)
                offsets.append(f[1])
            dt = np.dtype({"names": list(names), "formats": formats, "offsets": offsets,
                           "itemsize": elsize})
        elif sub is not None:
            if not (isinstance(sub, tuple) and len(sub) == 2 and isinstance(sub[1], tuple)
                    and all(isinstance(x, int) and 0 <= x < 2**31 for x in sub[1])):
                raise _Bad("malformed subarray dtype")
            base, _ = _dtype_from(sub[0], depth + 1)
            if base is None:
                raise _Bad("unsupported subarray base dtype")
            dt = np.dtype((base, sub[1]))
        else:
            kind = descr.lstrip("|<>=")[0]
            if kind in "Mm" and len(st) >= 9:
                meta = st[8]
                unit = meta[1] if isinstance(meta, tuple) and len(meta) == 2 else None
                if not (isinstance(unit, tuple) and len(unit) >= 2 and isinstance(unit[0], bytes)
                        and re.match(rb"^[A-Za-z]{1,3}$", unit[0]) and isinstance(unit[1], int)):
                    raise _Bad("malformed datetime dtype metadata")
                dt = np.dtype(f"{descr}[{unit[1]}{unit[0].decode()}]" if unit[1] != 1
                              else f"{descr}[{unit[0].decode()}]")
            else:
                dt = np.dtype(descr)
                if kind in "SUV" and isinstance(elsize, int) and elsize > 0 \
                        and dt.itemsize != elsize:
                    raise _Bad("dtype itemsize disagrees with its state")
        if endian in ("<", ">") and dt.byteorder not in ("|",) and names is None:
            dt = dt.newbyteorder(endian)
    except (TypeError, ValueError, OverflowError) as exc:
        if isinstance(exc, _Bad):
            raise
        raise _Bad(f"invalid dtype in stream: {exc}") from None
    return dt, "numpy.dtype"


def _struct_text(dt):
    """repr(dt.descr) for a structured dtype of reasonable size; a summary for one whose field
    tree is huge once expanded (sub-dtypes shared by many fields) or that has no descr."""
    from ._guard import dtype_weight
    if dtype_weight(dt, {}) <= 1000:
        try:
            return repr(dt.descr)
        except ValueError:  # overlapping or out-of-order fields
            pass
    return f"structured dtype: {len(dt.names)} fields, itemsize {dt.itemsize}"


def _array_record(state, rd):
    """Validate the wrapper state dict; -> record dict (payload not yet consumed)."""
    if not isinstance(state, _Dict):
        raise _Bad("NumpyArrayWrapper state is not a dict")
    s = state.items
    for key in ("shape", "order", "dtype"):
        if key not in s:
            raise _Bad(f"NumpyArrayWrapper state lacks {key!r}")
    shape = s["shape"]
    if not (isinstance(shape, tuple) and len(shape) <= _MAX_NDIM
            and all(type(x) is int and 0 <= x < _DIM_LIMIT for x in shape)):
        raise _Bad("NumpyArrayWrapper shape is not a tuple of non-negative ints below 2**63")
    order = s["order"]
    if order not in ("C", "F"):
        raise _Bad("NumpyArrayWrapper order is not 'C' or 'F'")
    sym = s["dtype"]
    dt, dkind = _dtype_from(sym)
    hasobject = dt is None or dt.hasobject
    sub = s.get("subclass")
    if dt is not None and dt.fields and sym.dtext is None:
        # (once per pickled dtype: a dtype shared through the memo by many records is
        # described once and its text shared, not rebuilt and copied per record; likewise
        # dtype objects that share one state)
        hit = _DTYPE_MEMO.get(id(sym.state)) if sym.state is not None else None
        if hit is not None and hit[0] is sym.state and hit[3] is not None \
                and hit[2] is sym.dtype:
            sym.dtext = hit[3]
        else:
            sym.dtext = _struct_text(dt)
            if hit is not None and hit[0] is sym.state:
                hit[3] = sym.dtext
    rec = {
        "dtype": dt.str if dt is not None and not dt.fields else (
            sym.dtext if dt is not None else dkind),
        "shape": shape,
        "order": order,
        "object": hasobject,
        "subclass": sub.name if isinstance(sub, _Global) else None,
        "allow_mmap": s.get("allow_mmap") is True,
    }
    if "numpy_array_alignment_bytes" in s:
        align = s["numpy_array_alignment_bytes"]
        if align is not None and (type(align) is not int or not -_DIM_LIMIT < align < _DIM_LIMIT):
            raise _Bad("numpy_array_alignment_bytes is neither an int (below 2**63) nor None")
        rec["alignment"] = align
    else:
        rec["alignment"] = "absent"
    count = math.prod(shape)  # (at most _MAX_NDIM factors below 2**63: bounded work)
    rec["itemsize"] = dt.itemsize if dt is not None else None
    rec["nbytes"] = count * dt.itemsize if dt is not None and not hasobject else None
    if rec["nbytes"] is not None and rec["nbytes"] >= _DIM_LIMIT:
        raise _Bad(f"NumpyArrayWrapper array of {_int_text(count)} items is too large to load")
    return rec


# ------------------------------------------------------------------------------------------------
# PyTorch tensors, recognised from the calls that build them (nothing is imported or called).
#
# fastjoblib.dump writes a dense CPU tensor as (fastjoblib/_torch.py):
#   base = torch.from_numpy(<uint8 array record>); typed = torch.Tensor.view(base, torch.DTYPE)
#   t = torch.Tensor.set_(torch.Tensor.new_empty(typed, (0,)), typed, offset, size, stride)
#   [torch.Tensor.requires_grad_(t, True)] [torch.nn.parameter.Parameter(t, requires_grad)]
# torch's own reduce (pickle, stock joblib.dump, and fastjoblib's fallback types):
#   torch._utils._rebuild_tensor_v2(torch.storage._load_from_bytes(<legacy torch.save bytes>),
#                                   offset, size, stride, requires_grad, hooks[, metadata])
#   torch._utils._rebuild_parameter(tensor, requires_grad, hooks)

_STORAGE_CLASS = re.compile(rb"ctorch\n([A-Za-z0-9_]{1,40})Storage\n")


def _int_text(n):
    return str(n) if n < _DIM_LIMIT else "more than 2**63"


def _dims(v):
    """A tuple of non-negative ints (a size / stride), else None."""
    if isinstance(v, tuple) and len(v) <= _MAX_NDIM and \
            all(type(x) is int and 0 <= x < _DIM_LIMIT for x in v):
        return v
    return None


class _Storage:
    """One storage: an array record (fastjoblib's form) or a torch.save blob (torch's reduce)."""
    __slots__ = ("index", "nbytes", "dtype", "array", "users")

    def __init__(self, index, nbytes, dtype, array):
        self.index, self.nbytes, self.dtype, self.array = index, nbytes, dtype, array
        self.users = 0   # tensors (final ones) over it


class _Tensor:
    """A symbolic tensor: a storage, a dtype and (once set_ / a rebuild made it) a view."""
    __slots__ = ("storage", "dtype", "rec")

    def __init__(self, storage, dtype, rec=None):
        self.storage, self.dtype, self.rec = storage, dtype, rec


class _TorchWalk:
    """The tensors of one file, from the REDUCE calls in _TORCH_CALLS (nested streams too)."""

    def __init__(self, arrays):
        self.arrays = arrays
        self.n_storages = 0        # _Storage objects made (their index)
        self._blob_dtypes = {}     # id(blob) -> (blob, storage dtype): a blob searched once
        self._geometry = {}        # (id(size), id(stride), dtype) -> what _tensor measured
        self._spans = {}           # (id(size), id(stride)) of _dims results -> their span
        self.by_array = {}         # array record index -> _Storage
        # storages in use, counted as tensors take them (no list of them: a hostile stream could
        # make millions)
        self.used = 0
        self.used_nbytes = 0
        self.used_unknown = 0      # storages of unknown size in use (torch.save blobs)
        self.shared = 0
        self.on_shared = 0
        self.count = 0             # tensors (each set_ / rebuild result once)
        self.kept = []             # the first _KEEP_TENSORS tensor records
        self.dtypes = Counter()
        self.nbytes = 0            # logical bytes of the tensors whose dtype is known
        self.unknown_bytes = 0     # tensors whose size is unknown
        self.parameters = 0
        self.requires_grad = 0
        self.out_of_bounds = 0     # views past their storage's end (set_ refuses them at load)
        self.forms = Counter()     # 'array records' / "torch's reduce"
        self.others = Counter()    # torch's other rebuild calls, by name

    # -- building blocks

    def _storage_of_array(self, ref):
        st = self.by_array.get(ref.index)
        if st is None:
            rec = self.arrays[ref.index]
            st = self._new_storage(rec.get("nbytes"), _NUMPY_TO_TORCH.get(rec.get("dtype")),
                                   ref.index)
            rec["torch_storage"] = True
            self.by_array[ref.index] = st
        return st

    def _storage_of_blob(self, blob):
        head = blob.head if isinstance(blob, _Long) else blob if isinstance(blob, bytes) else b""
        # (the class name is near the start of a legacy storage blob; the same memoised blob may
        # come back at every 6-byte REDUCE, so the search is bounded)
        known = self._blob_dtypes.get(id(blob))
        if known is not None and known[0] is blob:
            return self._new_storage(None, known[1], None)
        m = _STORAGE_CLASS.search(head[:512])
        dtype = None
        if m is not None:
            name = m.group(1).decode("ascii")
            dtype = _STORAGE_DTYPE.get(name, name + "Storage")
        if len(self._blob_dtypes) < 4096:
            self._blob_dtypes[id(blob)] = (blob, dtype)  # the blob kept: ids stay unique
        return self._new_storage(None, dtype, None)

    def _new_storage(self, nbytes, dtype, array):
        self.n_storages += 1
        return _Storage(self.n_storages - 1, nbytes, dtype, array)

    def _use(self, st):
        st.users += 1
        if st.users == 1:
            self.used += 1
            if st.nbytes is None:
                self.used_unknown += 1
            else:
                self.used_nbytes += st.nbytes
        elif st.users == 2:
            self.shared += 1
            self.on_shared += 2
        else:
            self.on_shared += 1

    def _dtype_name(self, g):
        if isinstance(g, _Global) and g.name.startswith("torch."):
            name = g.name[6:]
            if name in _TORCH_ITEMSIZE:
                return _TORCH_ALIAS.get(name, name)
        return None

    def _tensor(self, storage, dtype, offset, size, stride, requires_grad, form):
        """A final tensor: counted, summed, kept (the first _KEEP_TENSORS)."""
        self.count += 1
        self.forms[form] += 1
        self.dtypes["torch." + dtype if dtype else "?"] += 1
        # (one size / stride pair of the memo given to call after call: measured once)
        key = (id(size), id(stride), dtype)
        hit = self._geometry.get(key)
        if hit is not None and hit[0] is size and hit[1] is stride:
            size, stride, item, nbytes = hit[2:]
        else:
            size0, stride0 = size, stride
            size, stride = _dims(size), _dims(stride)
            item = _TORCH_ITEMSIZE.get(dtype) if dtype else None
            nbytes = None
            if size is not None and item is not None:
                nbytes = math.prod(size) * item  # (dims below 2**63, at most _MAX_NDIM of them)
                if nbytes >= _DIM_LIMIT:  # no such tensor can be built: its size is not counted
                    nbytes = None
            if len(self._geometry) < 65536:
                self._geometry[key] = (size0, stride0, size, stride, item, nbytes)
        if nbytes is not None:
            self.nbytes += nbytes
        else:
            self.unknown_bytes += 1
        if storage is not None:
            self._use(storage)
            if (storage.nbytes is not None and item and size is not None and stride is not None
                    and type(offset) is int and len(size) == len(stride)):
                span = self._spans.get((id(size), id(stride)))
                if span is None or span[0] is not size or span[1] is not stride:
                    span = (size, stride, 0 if 0 in size else 1 + sum(
                        (n - 1) * s for n, s in zip(size, stride)))
                    if len(self._spans) < 65536:
                        self._spans[(id(size), id(stride))] = span
                extent = 0 if 0 in size else offset + span[2]
                if offset < 0 or extent * item > storage.nbytes:
                    self.out_of_bounds += 1
        if requires_grad is True:
            self.requires_grad += 1
        rec = {"dtype": "torch." + dtype if dtype else None, "shape": size, "stride": stride,
               "offset": offset if type(offset) is int and -_DIM_LIMIT < offset < _DIM_LIMIT
               else None, "nbytes": nbytes,
               "requires_grad": requires_grad if type(requires_grad) is bool else None,
               "parameter": False, "storage": storage.index if storage is not None else None,
               "array": storage.array if storage is not None else None, "form": form}
        if len(self.kept) < _KEEP_TENSORS:  # (all are counted above)
            self.kept.append(rec)
        return _Tensor(storage, dtype, rec)

    # -- the calls

    def call(self, func, args):
        """The symbolic value of REDUCE(func, args) for func in _TORCH_CALLS."""
        name = func.name
        a = args if isinstance(args, tuple) else ()
        if name == "torch.from_numpy":
            if len(a) == 1 and isinstance(a[0], _ArrayRef):
                st = self._storage_of_array(a[0])
                return _Tensor(st, st.dtype)
        elif name == "torch.Tensor.view":
            if len(a) == 2 and isinstance(a[0], _Tensor) and a[0].rec is None:
                dtype = self._dtype_name(a[1])
                if dtype is not None:
                    return _Tensor(a[0].storage, dtype)
        elif name == "torch.Tensor.new_empty":
            if a and isinstance(a[0], _Tensor) and a[0].rec is None:
                # (an empty storage's stand-in base: new_empty of the empty from_numpy tensor)
                return _Tensor(a[0].storage, a[0].dtype)
        elif name == "torch.Tensor.set_":
            if len(a) == 5 and isinstance(a[0], _Tensor) and isinstance(a[1], _Tensor):
                return self._tensor(a[1].storage, a[1].dtype, a[2], a[3], a[4], False,
                                    "array records")
        elif name == "torch.Tensor.requires_grad_":
            if a and isinstance(a[0], _Tensor) and a[0].rec is not None:
                rg = a[1] if len(a) > 1 else True
                if rg is True and not a[0].rec.get("requires_grad"):
                    self.requires_grad += 1
                    a[0].rec["requires_grad"] = True
                return a[0]
        elif name in ("torch.nn.parameter.Parameter", "torch.nn.Parameter",
                      "torch._utils._rebuild_parameter",
                      "torch._utils._rebuild_parameter_with_state"):
            if a and isinstance(a[0], _Tensor) and a[0].rec is not None:
                rg = a[1] if len(a) > 1 else True
                rec = a[0].rec
                self.parameters += 1
                was = rec.get("requires_grad") is True
                if rg is True and not was:
                    self.requires_grad += 1
                elif rg is False and was:
                    self.requires_grad -= 1
                rec["parameter"] = True
                rec["requires_grad"] = rg if type(rg) is bool else None
                return _Tensor(a[0].storage, a[0].dtype, rec)
        elif name == "torch.storage._load_from_bytes":
            if len(a) == 1 and isinstance(a[0], (bytes, _Long)):
                return self._storage_of_blob(a[0])
        elif name in ("torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor_v3",
                      "torch._utils._rebuild_tensor"):
            if len(a) >= 4:
                st = a[0] if isinstance(a[0], _Storage) else None
                rg = a[4] if len(a) > 4 else False
                dtype = st.dtype if st is not None else None
                if name.endswith("_v3"):  # (dtypes without a legacy storage class: float8, ...)
                    dtype = self._dtype_name(a[6]) if len(a) > 6 else None
                return self._tensor(st, dtype, a[1], a[2], a[3], rg, "torch's reduce")
        else:
            self.others[name] += 1
        return _reduce_value(func, args)

    def report(self):
        """The "torch" entry of inspect's report (None: no tensor in the file)."""
        if not (self.count or self.others or self.n_storages):
            return None
        return {
            "tensors": self.count,
            "forms": dict(self.forms),
            "dtypes": dict(self.dtypes.most_common()),
            "nbytes": self.nbytes,
            "nbytes_unknown": self.unknown_bytes,
            "parameters": self.parameters,
            "requires_grad": self.requires_grad,
            "storages": self.used,
            "storage_nbytes": None if self.used_unknown else self.used_nbytes,
            "shared_storages": self.shared,
            "tensors_on_shared": self.on_shared,
            "out_of_bounds": self.out_of_bounds,
            "other_rebuilds": dict(self.others),
            "list": self.kept,
        }


# ------------------------------------------------------------------------------------------------
# The opcode walk.

def _s(b, what):
    try:
        return b.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        raise _Bad(f"invalid UTF-8 in {what}") from None


class _Walk:
    def __init__(self, rd, container):
        self.rd = rd
        self.container = container
        self.ops = 0  # opcodes walked, in every stream (nested object-array streams too)
        self.globals = Counter()
        self.arrays = []
        self._records_seen = {}  # id(state dict) -> (it, its item count, its record)
        self.versions = {}
        self.generations = set()
        self.protocol = None
        self.unresolved = 0
        self.bad_getattr = False  # builtins.getattr applied to something other than a global
        self._gnames = {}  # (module, name) -> dotted name, made once
        self.persistent_ids = 0
        self.oob_buffers = 0
        self.extensions = []
        self.companions = []
        self.build_on_globals = set()
        self.provenance = None
        self._last_pop = None  # (symbolic value, offset after the POP), outermost stream
        self.torch = _TorchWalk(self.arrays)

    # -- helpers --------------------------------------------------------------------------------
    def add_global(self, module, name):
        # one name per (module, name) pair: a stream may name the same two memoised 4 KB
        # strings at every 4-byte STACK_GLOBAL (8 KB of new text per op otherwise)
        key = (module, name)
        full = self._gnames.get(key)
        if full is None:
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
            full = f"{module}.{name}"
            if len(self._gnames) < 65536:
                self._gnames[key] = full
        self.globals[full] += 1
        return _Global(full)

    def text(self, kind, n, what):
        if n > _KEEP_STR:
            head = b""
            if kind == "bytes":  # the head of a long bytes object (a torch storage blob's type)
                head = self.rd.read(_KEEP_HEAD, what)
            self.rd.skip(n - len(head), what)
            return _Long(kind, n, head)
        b = self.rd.read(n, what)
        if kind == "str":
            return _s(b, what)
        return b

    def length(self, fmt, what):
        size = struct.calcsize(fmt)
        (n,) = struct.unpack(fmt, self.rd.read(size, what))
        if n < 0:
            raise _Bad(f"negative length in {what} at offset {self.rd.tell()}")
        return n

    # -- main loop ------------------------------------------------------------------------------
    def run(self, nested=0):
        rd = self.rd
        stack = []
        metastack = []
        memo = {}

        def pop_mark():
            nonlocal stack
            if not metastack:
                raise _Bad(f"MARK expected at offset {rd.tell()}")
            items = stack
            stack = metastack.pop()
            return items

        ops = 0
        max_ops = rd.max_ops
        op_group = _OP_GROUP
        try:
            while True:
                ops += 1
                if not ops & 4095:
                    if len(stack) > _MAX_STACK or len(metastack) > _MAX_STACK:
                        raise _Bad(f"more than {_MAX_STACK} items on the stack at offset {rd.tell()}")
                    # one count for the whole walk: each nested object-array stream runs its own loop
                    self.ops += 4096
                    if max_ops is not None and self.ops > max_ops:
                        raise _Bad(f"more than {max_ops} opcodes in a compressed stream of this size: "
                                   "inspect stops there (pass a larger max_bytes= to inspect it all)")
                # (the opcode byte straight from the reader's buffer: one walk step costs a few
                # hundred nanoseconds, and a 1 MiB file can hold a million steps)
                i = rd._i
                buf = rd._buf
                if i < len(buf):
                    c = buf[i]
                    rd._i = i + 1
                    pos = rd._off + i
                else:
                    pos = rd.tell()
                    c = rd.read(1, "opcode")[0]
                g = op_group[c]
                if g == 1:
                    if c == 0x2E:  # STOP
                        if metastack:
                            raise _Bad(f"STOP inside a MARK at offset {pos}")
                        if not nested and self._last_pop and self._last_pop[1] == pos \
                                and isinstance(self._last_pop[0], _Dict):
                            self.provenance = as_record(dict(self._last_pop[0].items))
                        # the opcodes since the last count (a nested stream shorter than 4096
                        # opcodes would otherwise never count)
                        self.ops += ops & 4095
                        if max_ops is not None and self.ops > max_ops:
                            raise _Bad(f"more than {max_ops} opcodes in a compressed stream of "
                                       "this size: inspect stops there (pass a larger "
                                       "max_bytes= to inspect it all)")
                        return stack.pop()
                    elif c == 0x80:  # PROTO
                        p = rd.read(1, "PROTO")[0]
                        if p > 5:
                            raise _Bad(f"unsupported pickle protocol {p}")
                        if nested == 0 and self.protocol is None:
                            self.protocol = p
                    elif c == 0x95:  # FRAME: frames are transparent to a stream walk
                        self.length("<Q", "FRAME")
                    elif c == 0x8C:  # SHORT_BINUNICODE
                        stack.append(self.text("str", rd.read(1, "SHORT_BINUNICODE")[0], "string"))
                    elif c == 0x58:  # BINUNICODE
                        stack.append(self.text("str", self.length("<I", "BINUNICODE"), "string"))
                    elif c == 0x8D:  # BINUNICODE8
                        stack.append(self.text("str", self.length("<Q", "BINUNICODE8"), "string"))
                    elif c == 0x56:  # UNICODE (raw-unicode-escape line)
                        b, n = rd.readline("UNICODE")
                        stack.append(_Long("str", n) if n > _KEEP_STR else
                                     b.decode("raw-unicode-escape", "replace"))
                    elif c == 0x43:  # SHORT_BINBYTES
                        stack.append(self.text("bytes", rd.read(1, "SHORT_BINBYTES")[0], "bytes"))
                    else:
                        raise _Bad(f"invalid pickle opcode {bytes([c])!r} at offset {pos}")
                elif g == 2:
                    if c == 0x42:  # BINBYTES
                        stack.append(self.text("bytes", self.length("<I", "BINBYTES"), "bytes"))
                    elif c == 0x8E:  # BINBYTES8
                        stack.append(self.text("bytes", self.length("<Q", "BINBYTES8"), "bytes"))
                    elif c == 0x96:  # BYTEARRAY8
                        rd.skip(self.length("<Q", "BYTEARRAY8"), "bytearray")
                        stack.append(_Opaque("bytearray"))
                    elif c == 0x55:  # SHORT_BINSTRING (py2 str)
                        v = self.text("bytes", rd.read(1, "SHORT_BINSTRING")[0], "string")
                        stack.append(v.decode("latin-1") if isinstance(v, bytes) else v)
                    elif c == 0x54:  # BINSTRING
                        v = self.text("bytes", self.length("<i", "BINSTRING"), "string")
                        stack.append(v.decode("latin-1") if isinstance(v, bytes) else v)
                    elif c == 0x53:  # STRING: a quoted repr on one line
                        b, n = rd.readline("STRING")
                        if n > _KEEP_STR:
                            stack.append(_Long("str", n))
                        else:
                            if len(b) < 2 or b[0] != b[-1] or b[:1] not in (b"'", b'"'):
                                raise _Bad(f"STRING opcode argument not quoted at offset {pos}")
                            try:
                                stack.append(codecs.escape_decode(b[1:-1])[0].decode("latin-1"))
                            except ValueError:
                                raise _Bad(f"bad STRING escape at offset {pos}") from None
                    elif c == 0x4E:  # NONE
                        stack.append(None)
                    elif c == 0x88:
                        stack.append(True)
                    else:
                        raise _Bad(f"invalid pickle opcode {bytes([c])!r} at offset {pos}")
                elif g == 3:
                    if c == 0x89:
                        stack.append(False)
                    elif c == 0x4A:  # BININT
                        stack.append(struct.unpack("<i", rd.read(4, "BININT"))[0])
                    elif c == 0x4B:
                        stack.append(rd.read(1, "BININT1")[0])
                    elif c == 0x4D:
                        stack.append(struct.unpack("<H", rd.read(2, "BININT2"))[0])
                    elif c in (0x49, 0x4C):  # INT, LONG (decimal lines)
                        b, n = rd.readline("INT")
                        if n > _KEEP_STR:
                            stack.append(_Opaque("int"))
                        elif c == 0x49 and b in (b"00", b"01"):
                            stack.append(b == b"01")
                        else:
                            try:
                                stack.append(int(b.rstrip(b"L")))
                            except ValueError:
                                raise _Bad(f"bad INT/LONG literal at offset {pos}") from None
                    elif c == 0x8A:  # LONG1
                        n = rd.read(1, "LONG1")[0]
                        stack.append(int.from_bytes(rd.read(n, "LONG1"), "little", signed=True))
                    elif c == 0x8B:  # LONG4
                        n = self.length("<i", "LONG4")
                        if n > _KEEP_STR:
                            rd.skip(n, "LONG4")
                            stack.append(_Opaque("int"))
                        else:
                            stack.append(int.from_bytes(rd.read(n, "LONG4"), "little", signed=True))
                    elif c == 0x46:  # FLOAT
                        b, n = rd.readline("FLOAT")
                        try:
                            stack.append(float(b))
                        except ValueError:
                            raise _Bad(f"bad FLOAT literal at offset {pos}") from None
                    else:
                        raise _Bad(f"invalid pickle opcode {bytes([c])!r} at offset {pos}")
                elif g == 4:
                    if c == 0x47:  # BINFLOAT
                        stack.append(struct.unpack(">d", rd.read(8, "BINFLOAT"))[0])
                    elif c == 0x5D:  # EMPTY_LIST
                        stack.append(_LIST)
                    elif c == 0x29:  # EMPTY_TUPLE
                        stack.append(())
                    elif c == 0x7D:  # EMPTY_DICT
                        stack.append(_Dict())
                    elif c == 0x8F:  # EMPTY_SET
                        stack.append(_SET)
                    elif c == 0x85:
                        stack.append((stack.pop(),))
                    elif c == 0x86:
                        b_ = stack.pop()
                        a_ = stack.pop()
                        stack.append((a_, b_))
                    elif c == 0x87:
                        c_ = stack.pop()
                        b_ = stack.pop()
                        a_ = stack.pop()
                        stack.append((a_, b_, c_))
                    else:
                        raise _Bad(f"invalid pickle opcode {bytes([c])!r} at offset {pos}")
                elif g == 5:
                    if c == 0x28:  # MARK
                        metastack.append(stack)
                        stack = []
                    elif c == 0x74:  # TUPLE
                        items = pop_mark()  # rebinds `stack`: pop before naming it
                        stack.append(_tuple(items))
                    elif c == 0x6C:  # LIST
                        pop_mark()
                        stack.append(_Opaque("list"))
                    elif c == 0x91:  # FROZENSET
                        pop_mark()
                        stack.append(_Opaque("frozenset"))
                    elif c == 0x64:  # DICT
                        items = pop_mark()
                        if len(items) % 2:
                            raise _Bad(f"odd number of items for DICT at offset {pos}")
                        d = _Dict()
                        for i in range(0, len(items), 2):
                            self.dict_item(d, items[i], items[i + 1])
                        stack.append(d)
                    elif c == 0x61:  # APPEND
                        stack.pop()
                        stack[-1]
                    elif c in (0x65, 0x90):  # APPENDS, ADDITEMS
                        pop_mark()
                        stack[-1]
                    elif c == 0x73:  # SETITEM
                        v = stack.pop()
                        k = stack.pop()
                        d = stack[-1]
                        if isinstance(d, _Dict):
                            self.dict_item(d, k, v)
                    else:
                        raise _Bad(f"invalid pickle opcode {bytes([c])!r} at offset {pos}")
                elif g == 6:
                    if c == 0x75:  # SETITEMS
                        items = pop_mark()
                        if len(items) % 2:
                            raise _Bad(f"odd number of items for SETITEMS at offset {pos}")
                        d = stack[-1]
                        if isinstance(d, _Dict):
                            for i in range(0, len(items), 2):
                                self.dict_item(d, items[i], items[i + 1])
                    elif c == 0x30:  # POP
                        if stack:
                            v = stack.pop()
                            if not nested:
                                self._last_pop = (v, rd.tell())
                        else:
                            pop_mark()
                    elif c == 0x32:  # DUP
                        stack.append(stack[-1])
                    elif c == 0x31:  # POP_MARK
                        pop_mark()
                    elif c in (0x67, 0x68, 0x6A):  # GET, BINGET, LONG_BINGET
                        if c == 0x67:
                            b, n = rd.readline("GET")
                            try:
                                idx = int(b)
                            except ValueError:
                                raise _Bad(f"bad GET index at offset {pos}") from None
                        elif c == 0x68:
                            idx = rd.read(1, "BINGET")[0]
                        else:
                            idx = struct.unpack("<I", rd.read(4, "LONG_BINGET"))[0]
                        if idx not in memo:
                            raise _Bad(f"memo key {idx} not found at offset {pos}")
                        stack.append(memo[idx])
                    elif c in (0x70, 0x71, 0x72):  # PUT, BINPUT, LONG_BINPUT
                        if c == 0x70:
                            b, n = rd.readline("PUT")
                            try:
                                idx = int(b)
                            except ValueError:
                                raise _Bad(f"bad PUT index at offset {pos}") from None
                            if idx < 0:
                                raise _Bad(f"negative PUT index at offset {pos}")
                        elif c == 0x71:
                            idx = rd.read(1, "BINPUT")[0]
                        else:
                            idx = struct.unpack("<I", rd.read(4, "LONG_BINPUT"))[0]
                        memo[idx] = stack[-1]
                    elif c == 0x94:  # MEMOIZE: index = number of entries, as CPython does
                        memo[len(memo)] = stack[-1]
                    elif c == 0x63:  # GLOBAL
                        m, _ = rd.readline("GLOBAL module")
                        n, _ = rd.readline("GLOBAL name")
                        stack.append(self.add_global(m.decode("utf-8", "replace"),
                                                     n.decode("utf-8", "replace")))
                    else:
                        raise _Bad(f"invalid pickle opcode {bytes([c])!r} at offset {pos}")
                elif g == 7:
                    if c == 0x93:  # STACK_GLOBAL
                        n = stack.pop()
                        m = stack.pop()
                        if isinstance(m, str) and isinstance(n, str):
                            stack.append(self.add_global(m, n))
                        else:
                            self.unresolved += 1
                            stack.append(_Global("<unresolved STACK_GLOBAL>"))
                    elif c in (0x82, 0x83, 0x84):  # EXT1/2/4
                        size = {0x82: 1, 0x83: 2, 0x84: 4}[c]
                        code = int.from_bytes(rd.read(size, "EXT"), "little")
                        self.extensions.append(code)
                        stack.append(_Global(f"<extension code {code}>"))
                    elif c == 0x69:  # INST
                        m, _ = rd.readline("INST module")
                        n, _ = rd.readline("INST name")
                        g = self.add_global(m.decode("utf-8", "replace"), n.decode("utf-8", "replace"))
                        items = pop_mark()
                        stack.append(_Obj(g, _tuple(items)))
                    elif c == 0x6F:  # OBJ
                        items = pop_mark()
                        if not items:
                            raise _Bad(f"OBJ without a class at offset {pos}")
                        stack.append(_Obj(items[0], _tuple(items[1:])))
                    elif c == 0x52:  # REDUCE
                        args = stack.pop()
                        func = stack.pop()
                        if isinstance(func, _Global) and func.name == "builtins.getattr":
                            # a restricted load answers getattr(GLOBAL, 'attr') as the global
                            # GLOBAL.attr (fastjoblib._trust._PolicyGetattr), and refuses anything else
                            if (isinstance(args, tuple) and len(args) == 2
                                    and isinstance(args[0], _Global) and isinstance(args[1], str)
                                    and not args[0].name.startswith("<")
                                    and len(args[0].name) + len(args[1]) < _MAX_GETATTR_NAME):
                                full = f"{args[0].name}.{args[1]}"
                                self.globals[full] += 1
                                stack.append(_Global(full))
                            else:
                                self.bad_getattr = True
                                stack.append(_reduce_value(func, args))
                        elif isinstance(func, _Global) and func.name in _TORCH_CALLS:
                            stack.append(self.torch.call(func, args))
                        else:
                            stack.append(_reduce_value(func, args))
                    elif c == 0x81:  # NEWOBJ
                        args = stack.pop()
                        cls = stack.pop()
                        stack.append(_Obj(cls, args))
                    elif c == 0x92:  # NEWOBJ_EX
                        stack.pop()
                        args = stack.pop()
                        cls = stack.pop()
                        stack.append(_Obj(cls, args))
                    elif c == 0x62:  # BUILD
                        state = stack.pop()
                        inst = stack[-1]
                        self.build(stack, inst, state, nested)
                    else:
                        raise _Bad(f"invalid pickle opcode {bytes([c])!r} at offset {pos}")
                elif g == 8:
                    if c == 0x50:  # PERSID
                        rd.readline("PERSID")
                        self.persistent_ids += 1
                        stack.append(_Opaque("persistent"))
                    elif c == 0x51:  # BINPERSID
                        stack.pop()
                        self.persistent_ids += 1
                        stack.append(_Opaque("persistent"))
                    elif c == 0x97:  # NEXT_BUFFER
                        self.oob_buffers += 1
                        stack.append(_Opaque("buffer"))
                    elif c == 0x98:  # READONLY_BUFFER
                        stack[-1]
                    else:
                        raise _Bad(f"invalid pickle opcode {bytes([c])!r} at offset {pos}")
                else:
                    raise _Bad(f"invalid pickle opcode {bytes([c])!r} at offset {pos}")
        except IndexError:  # stack.pop() / stack[-1] on an empty stack (zero-cost try)
            raise _Bad(f"stack underflow at offset {rd.tell()}") from None

    def dict_item(self, d, k, v):
        d.set(k, v)
        # (the regex backtracks quadratically on long keys: version keys are short; so are
        # versions, and a long value compared with 64 kept ones at every SETITEM is not one)
        if isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 128 \
                and (k in self.versions or len(self.versions) < 256) and _VERSION_KEY.match(k):
            vals = self.versions.setdefault(k, [])
            if v not in vals and len(vals) < 64:
                vals.append(v)

    def build(self, stack, inst, state, nested):
        if isinstance(inst, _Global):  # setattr on a shared global (modelscan#85 gadget)
            self.build_on_globals.add(inst.name)
            return
        if isinstance(inst, _Obj):
            inst.state = state
            cname = inst.cls_name()
        else:
            cname = None
        if cname in _OLD_WRAPPERS:
            self.generations.add("joblib<0.10")
            if isinstance(state, _Dict) and isinstance(state.items.get("filename"), str):
                self.companions.append(state.items["filename"])
            return
        if cname not in _WRAPPERS or nested:
            return
        # joblib's array record: the payload follows this BUILD in the raw stream.
        rd = self.rd
        # A state dict shared through the memo by many records (unchanged since: same item
        # count) is validated once; each record gets a copy of that answer.
        hit = self._records_seen.get(id(state))
        if hit is not None and hit[0] is state and hit[1] == state.n:
            rec = dict(hit[2])
        else:
            rec = _array_record(state, rd)
            self._records_seen[id(state)] = (state, state.n, dict(rec))
        if rec["object"]:
            self.generations.add("joblib>=1.2" if rec["alignment"] != "absent"
                                 else "joblib 0.10-1.1")
            rec["offset"] = rd.tell()
            self.run(nested + 1)
            rec["nbytes"] = rd.tell() - rec["offset"]
        else:
            align = rec["alignment"]
            if align == "absent":
                self.generations.add("joblib 0.10-1.1")
            else:
                self.generations.add("joblib>=1.2")
                if align is not None:
                    pad = rd.read(1, "padding length")[0]
                    rd.skip(pad, "padding")
                    rec["padding"] = pad
            rec["offset"] = rd.tell()
            rd.skip(rec["nbytes"], "array payload")
        rec["mmap"] = (self.container == "raw" and rec["allow_mmap"] and not rec["object"])
        self.arrays.append(rec)
        stack[-1] = _ArrayRef(len(self.arrays) - 1)


def inspect(source, max_bytes=None, _max_ops=None):
    """Describe a joblib file or pickle stream without importing or calling anything from it.

    source: a path (str / os.PathLike), a binary file object (read from its current position),
    or a bytes-like object. Raises ValueError for damaged or hostile input, TypeError for another
    source type; a missing path raises the usual OSError. max_bytes: the most a compressed file
    may expand to (default 64 MiB + 16 x its size, and max(1M, its size) opcodes): beyond that,
    ValueError.

    Returns a dict:
      container       'raw', 'zlib', 'gzip', 'bz2', 'lzma', 'xz', 'lz4', 'zstd' or 'zfile'
      compressed      container != 'raw'
      protocol        the first PROTO opcode's value (None for protocols 0/1)
      format          'joblib>=1.2' (aligned), 'joblib 0.10-1.1', 'joblib<0.10',
                      'joblib<0.10 (zfile)' or 'pickle' (no array records)
      globals         {"module.qualname": count}, Python 2 names mapped as pickle does, nested
                      object-array streams included
      arrays          one dict per joblib array record, in stream order: dtype (numpy's .str,
                      or the descr list for structured dtypes), shape, order, object, subclass,
                      allow_mmap, alignment (16 / None / 'absent'), itemsize, nbytes, padding,
                      offset (of the payload in the uncompressed stream; for object arrays the
                      nested stream's start and nbytes its length), mmap (the payload can be
                      memory-mapped: uncompressed, allow_mmap, not object)
      versions        {key: [values]} for str items whose key looks like a version
                      (e.g. '_sklearn_version')
      needs_trusted   sorted globals outside DEFAULT_TRUSTED and not denied: what to pass as
                      trusted=[...] after reviewing them
      dangerous       sorted globals on the denylist, plus '<unresolved STACK_GLOBAL>',
                      '<extension code N>' and '<BUILD on module.name>' (state applied to a
                      global itself: the setattr gadget): a restricted load refuses the file
      stream_size, trailing_data, persistent_ids, out_of_band_buffers, companion_files
      provenance      the record fastjoblib.dump writes (python / numpy / fastjoblib / pkg:<name>
                      versions, byteorder, created), or None
      torch           None, or PyTorch tensors recognised from the calls that rebuild them
                      (nothing imported): tensors (count), forms ({'array records': n,
                      "torch's reduce": n}: fastjoblib's storage-as-array-record calls, or
                      torch's own reduce with torch.save bytes, as pickle / stock joblib.dump
                      write them), dtypes ({'torch.float32': n}, '?' where unknown), nbytes
                      (sum of numel x itemsize of the tensors of known size), nbytes_unknown
                      (tensors of unknown size), parameters (nn.Parameter), requires_grad,
                      storages (distinct storages used), storage_nbytes (None if one is of
                      unknown size: torch.save blobs), shared_storages, tensors_on_shared,
                      out_of_bounds (views past their storage: a load refuses them),
                      other_rebuilds ({torch._utils._rebuild_*: n}: other devices, sparse,
                      quantized, nested, subclasses), list (the first 4096 tensors: dtype,
                      shape, stride, offset, nbytes, requires_grad, parameter, storage, array
                      (the array record holding the storage), form); array records holding a
                      storage get torch_storage: True
    """
    start = _sniff.tell(source)
    read, size, close = _open_source(source)
    try:
        try:
            container, dread, dsize = _container(read, size)
            limit = None
            if container != "raw":
                # (bz2 decodes at 45-120 MB/s, 80 MiB took 0.88 s: the load's default for it)
                from ._guard import _BZ2_BASE, _BZ2_PER_INPUT_BYTE
                base, per = (_BZ2_BASE, _BZ2_PER_INPUT_BYTE) if container == "bz2" \
                    else (_EXPAND_BASE, _EXPAND_PER_BYTE)
                limit = max_bytes if max_bytes is not None else (
                    base + per * (size if size is not None else 1 << 20))
            rd = _Reader(dread, dsize, limit)
            if container != "raw" and max_bytes is None:
                # (a small file of 'N0' x 30M would otherwise take seconds to walk)
                rd.max_ops = max(_OPS_FLOOR, _OPS_PER_BYTE * (size if size is not None else 0))
            if _max_ops is not None:  # a caller's own bound (the refusal path of a load)
                rd.max_ops = _max_ops if rd.max_ops is None else min(rd.max_ops, _max_ops)
            w = _Walk(rd, container)
            # (the walk allocates one small object per opcode and keeps them all: the cyclic
            # GC would traverse them again and again, up to 45% of a 1 MiB flood's walk; the
            # objects it makes hold no cycles but through the memo, freed after the walk)
            gc_was_enabled = gc.isenabled()
            gc.disable()
            try:
                w.run()
            finally:
                if gc_was_enabled:
                    gc.enable()
            end = rd.tell()
            trailing = not rd.at_eof()
        except _Bad:
            raise
        except (zlib.error, lzma.LZMAError, EOFError, OSError, struct.error, ValueError,
                RecursionError, OverflowError, IndexError, RuntimeError) as exc:
            # decompressor errors (lz4 raises RuntimeError, zstd ZstdError is a subclass of
            # Exception only: handled below), bad headers, truncated members
            raise _Bad(f"cannot read the stream: {type(exc).__name__}: {exc}") from None
        except Exception as exc:
            if type(exc).__module__.startswith(("zstandard", "lz4")):
                raise _Bad(f"cannot read the stream: {exc}") from None
            raise
    except _Bad as exc:
        kind = _sniff.for_source(source, start)  # not a pickle at all? say what it is
        name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
        raise ValueError("fastjoblib.inspect: %s" % (
            _sniff.message(name, kind, str(exc)) if kind else exc)) from None
    finally:
        close()
        _DTYPE_MEMO.clear()

    if container == "zfile":
        fmt = "joblib<0.10 (zfile)"
    elif "joblib<0.10" in w.generations:
        fmt = "joblib<0.10"
    elif "joblib>=1.2" in w.generations:
        fmt = "joblib>=1.2"
    elif "joblib 0.10-1.1" in w.generations:
        fmt = "joblib 0.10-1.1"
    else:
        fmt = "pickle"
    names = sorted(w.globals)
    # builtins.getattr: a restricted load hands out a policy-checked stand-in (see the REDUCE
    # case); what it looks up is listed as the dotted global it resolves to.
    dangerous = sorted({n for n in names if is_denied(n) and n != "builtins.getattr"}
                       | ({"<builtins.getattr not on a global>"} if w.bad_getattr else set())
                       | ({"<unresolved STACK_GLOBAL>"} if w.unresolved else set())
                       | {f"<extension code {c}>" for c in w.extensions}
                       | {f"<BUILD on {n}>" for n in w.build_on_globals})
    return {
        "container": container,
        "compressed": container != "raw",
        "protocol": w.protocol,
        "format": fmt,
        "globals": {n: w.globals[n] for n in names},
        "arrays": w.arrays,
        "versions": w.versions,
        "needs_trusted": [n for n in names if n not in DEFAULT_TRUSTED and not is_denied(n)],
        "dangerous": dangerous,
        "stream_size": end,
        "trailing_data": trailing,
        "persistent_ids": w.persistent_ids,
        "out_of_band_buffers": w.oob_buffers,
        "companion_files": w.companions,
        "provenance": w.provenance,
        "torch": w.torch.report(),
    }
