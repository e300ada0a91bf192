"""PyTorch CPU tensors as joblib array records: everything fastjoblib knows about torch.

Dump side (:func:`dump_hooks`, passed to ``_core.dump(reducers=, global_names=)``): a dense CPU
tensor is written as a chain of calls that stock ``joblib.load`` (with torch installed, without
fastjoblib) evaluates with plain pickle semantics; the storage bytes are a plain ``uint8`` ndarray
that the C array path writes as an ordinary joblib array record (zero copy, aligned, compressed
like any array, memory-mappable)::

    base  = torch.from_numpy(<uint8 ndarray: the whole untyped storage>)   # once per storage
    typed = torch.Tensor.view(base, dtype)                  # once per (storage, dtype); not uint8
    t     = torch.Tensor.set_(torch.Tensor.new_empty(typed, (0,)), typed, offset, size, stride)
    t     = torch.Tensor.requires_grad_(t, True)            # only when t.requires_grad
    p     = torch.nn.parameter.Parameter(t, requires_grad)  # an exact nn.Parameter

``base`` and ``typed`` are memoized in the pickle, so tensors sharing a storage share it again
after loading (whichever of fastjoblib or stock joblib loads the file), as with ``torch.save``.
Every dtype works the same way, including those NumPy lacks (bfloat16, the float8 types, the
unsigned 16/32/64-bit and complex32 types): the bytes travel as ``uint8``, ``Tensor.view(dtype)``
reinterprets them. ``set_`` checks the offset / size / stride against the storage (a hostile file
raises, it cannot read out of bounds).

Only exact ``torch.Tensor`` / ``torch.nn.Parameter`` objects that are dense (strided) CPU tensors
without Python attributes, backward hooks, names, conjugate or negative bits, whose storage holds a
whole number of elements, take this path, and only with pickle protocol >= 4 (the dotted names
``Tensor.view`` etc. need STACK_GLOBAL). Everything else (other devices, sparse, quantized, nested,
meta tensors, subclasses, protocol < 4) goes through torch's own ``__reduce_ex__`` unchanged.

Load side (:func:`mapped_from_numpy`): under ``fastjoblib.load(mmap_mode=...)`` the storage
ndarray is an ``np.memmap``; tensors over it follow the mode (see :data:`MMAP_MODES`).

torch is never imported here: the hooks are built only when ``torch`` is already in
``sys.modules`` (an object holding tensors implies it is).
"""
import sys

__all__ = ["dump_hooks", "TORCH_GLOBALS", "MMAP_MODES", "mapped_from_numpy", "INSPECT_CALLS"]

# The globals a file with tensor records uses (besides the torch dtype singletons such as
# torch.float32 / torch.bfloat16, which are plain objects): the names to pass in trusted=.
TORCH_GLOBALS = (
    "torch.from_numpy",
    "torch.Tensor.view",
    "torch.Tensor.new_empty",
    "torch.Tensor.set_",
    "torch.Tensor.requires_grad_",
    "torch.nn.parameter.Parameter",
)

# mmap_mode of fastjoblib.load -> how the storage of a tensor is mapped
MMAP_MODES = {
    "r": "c",    # copy-on-write: the tensor is writable in memory, the file never changes (a
                 # read-only mapping would crash the process on the first in-place op)
    "c": "c",    # copy-on-write, as asked
    "r+": "r+",  # shared: writes through the tensor go to the file
}


def _callables(torch):
    """{object: (module, qualname)}: the callables written by name (their own pickling would go
    through builtins.getattr)."""
    T = torch.Tensor
    return {
        torch.from_numpy: ("torch", "from_numpy"),
        T.view: ("torch", "Tensor.view"),
        T.new_empty: ("torch", "Tensor.new_empty"),
        T.set_: ("torch", "Tensor.set_"),
        T.requires_grad_: ("torch", "Tensor.requires_grad_"),
    }


class _TensorReducer:
    """Per-dump state: the storage and typed-view tensors made for the dump (kept alive, so that
    their ids stay valid and the pickle memo can share them) and their reductions."""

    def __init__(self, torch):
        self.torch = torch
        self.Tensor = torch.Tensor
        self.Parameter = torch.nn.Parameter
        self.strided = torch.strided
        self.uint8 = torch.uint8
        self.bases = {}       # storage key -> uint8 tensor over the whole storage
        self.typed = {}       # (storage key, dtype) -> typed view of the base
        self.made = {}        # id(tensor made here) -> its reduction
        self.keep = []        # tensors made here for one tensor only (new_empty / set_ chain)

    # -- which tensors

    def _eligible(self, t):
        """True for a dense CPU tensor whose bytes can be taken as they are."""
        try:
            if (t.device.type != "cpu" or t.layout is not self.strided or t.is_quantized
                    or t.is_nested or t.is_conj() or t.is_neg()):
                return False
            if getattr(t, "__dict__", None):     # Python attributes: torch's reduce keeps them
                return False
            if t._backward_hooks:                # torch's reduce warns about these
                return False
            if any(n is not None for n in (getattr(t, "names", None) or ())):  # named tensors
                return False
            has_storage = getattr(self.torch._C, "_has_storage", None)
            return has_storage is None or has_storage(t)
        except Exception:  # functorch wrappers and other exotic tensors
            return False

    # -- building blocks

    def _base(self, storage):
        """The uint8 tensor over the whole (non-empty) storage, one per (data pointer, size):
        storages over the same memory (two torch.from_numpy of one array) alias it in the file
        too."""
        nbytes = storage.nbytes()
        key = (storage.data_ptr(), nbytes) if nbytes else "empty"
        base = self.bases.get(key)
        if base is None:
            base = self.torch.empty(0, dtype=self.uint8).set_(storage)
            arr = base.numpy()  # zero copy: the C array path writes the storage bytes
            self.made[id(base)] = (self.torch.from_numpy, (arr,))
            if not nbytes:
                # torch.from_numpy of an empty array has stride 0, which Tensor.view(dtype)
                # refuses: a fresh empty uint8 tensor (stride 1) stands in for it
                raw, base = base, base.new_empty((0,))
                self.made[id(base)] = (self.Tensor.new_empty, (raw, (0,)))
                self.keep.append(raw)
            self.bases[key] = base
        return key, base

    def _typed(self, key, base, dtype):
        if dtype == self.uint8:
            return base
        typed = self.typed.get((key, dtype))
        if typed is None:
            typed = base.view(dtype)
            self.made[id(typed)] = (self.Tensor.view, (base, dtype))
            self.typed[(key, dtype)] = typed
        return typed

    def _made(self, obj, reduction):
        self.keep.append(obj)
        self.made[id(obj)] = reduction
        return obj

    def _plain(self, t, requires_grad):
        """The reduction of a tensor with t's dtype, storage, offset, size and stride."""
        storage = t.untyped_storage()
        if storage.nbytes() % t.element_size():
            return None
        key, base = self._base(storage)
        typed = self._typed(key, base, t.dtype)
        T = self.Tensor
        # `empty` and `mid` stand for the objects the calls make at load time: only their
        # identity matters (a fresh tensor each, found again by the reducer through `made`)
        empty = self._made(self.torch.empty(0), (T.new_empty, (typed, (0,))))
        rv = (T.set_, (empty, typed, t.storage_offset(), tuple(t.size()), tuple(t.stride())))
        if requires_grad:
            # set_ returns `empty` itself: the requires_grad_ call takes that object
            mid = self._made(self.torch.empty(0), rv)
            rv = (T.requires_grad_, (mid, True))
        return rv

    # -- the reducers handed to the C pickler

    def reduce_tensor(self, t):
        made = self.made.get(id(t))
        if made is not None:
            return made
        if not self._eligible(t):
            return NotImplemented
        rv = self._plain(t, t.requires_grad)
        return NotImplemented if rv is None else rv

    def reduce_parameter(self, p):
        if not self._eligible(p):
            return NotImplemented
        rv = self._plain(p, False)
        if rv is None:
            return NotImplemented
        inner = self._made(self.torch.empty(0), rv)
        return (self.Parameter, (inner, p.requires_grad))


def dump_hooks(protocol):
    """``dict(reducers=..., global_names=...)`` for ``_core.dump``, or ``{}`` when torch is not
    imported or the protocol is below 4."""
    torch = sys.modules.get("torch")
    if torch is None or protocol < 4 or not hasattr(torch, "Tensor"):
        return {}
    try:
        red = _TensorReducer(torch)
        names = _callables(torch)
        reducers = {torch.Tensor: red.reduce_tensor, torch.nn.Parameter: red.reduce_parameter}
    except Exception:  # a partially imported or very old torch: its own reduce, as before
        return {}
    return {"reducers": reducers, "global_names": names}


# ------------------------------------------------------------------------------------------------
# load side

def mapped_from_numpy(mmap_mode):
    """A stand-in for ``torch.from_numpy`` used by ``fastjoblib.load(mmap_mode=...)``: a storage
    array that arrives as an ``np.memmap`` is re-mapped with :data:`MMAP_MODES`'s mode for tensors
    (same file, offset and length; nothing is read), then handed to ``torch.from_numpy``."""
    import numpy as np
    import torch

    want = MMAP_MODES.get(mmap_mode, mmap_mode)

    def from_numpy(arr):
        if (type(arr) is np.memmap and arr.mode != want and isinstance(arr.filename, str)
                and arr.dtype == np.uint8 and arr.ndim == 1):
            arr = np.memmap(arr.filename, dtype=np.uint8, mode=want, offset=arr.offset,
                            shape=arr.shape)
        return torch.from_numpy(arr)

    return from_numpy


# ------------------------------------------------------------------------------------------------
# inspect side: what fastjoblib.inspect needs to recognise tensors in a file without importing
# torch (the walk itself is _inspect._TorchWalk: REDUCE of one of INSPECT_CALLS).

# bytes per element of torch's dtypes (torch.DTYPE global names), aliases included
INSPECT_ITEMSIZE = {
    "float32": 4, "float": 4, "float64": 8, "double": 8, "float16": 2, "half": 2, "bfloat16": 2,
    "complex32": 4, "chalf": 4, "complex64": 8, "cfloat": 8, "complex128": 16, "cdouble": 16,
    "int8": 1, "int16": 2, "short": 2, "int32": 4, "int": 4, "int64": 8, "long": 8,
    "uint8": 1, "uint16": 2, "uint32": 4, "uint64": 8, "bool": 1,
    "float8_e4m3fn": 1, "float8_e5m2": 1, "float8_e4m3fnuz": 1, "float8_e5m2fnuz": 1,
    "float8_e8m0fnu": 1, "float4_e2m1fn_x2": 1,
    "qint8": 1, "quint8": 1, "qint32": 4, "quint4x2": 1, "quint2x4": 1,
}
INSPECT_ALIAS = {"float": "float32", "double": "float64", "half": "float16", "chalf": "complex32",
                 "cfloat": "complex64", "cdouble": "complex128", "short": "int16", "int": "int32",
                 "long": "int64"}
# NumPy dtype.str -> torch dtype name (what torch.from_numpy makes of an array record)
INSPECT_FROM_NUMPY = {
    "|u1": "uint8", "|i1": "int8", "|b1": "bool", "<i2": "int16", "<i4": "int32", "<i8": "int64",
    "<u2": "uint16", "<u4": "uint32", "<u8": "uint64", "<f2": "float16", "<f4": "float32",
    "<f8": "float64", "<c8": "complex64", "<c16": "complex128",
}
# legacy storage class names (torch.FloatStorage, ...) -> dtype name
INSPECT_STORAGE_DTYPE = {
    "Float": "float32", "Double": "float64", "Half": "float16", "BFloat16": "bfloat16",
    "ComplexFloat": "complex64", "ComplexDouble": "complex128", "Long": "int64", "Int": "int32",
    "Short": "int16", "Char": "int8", "Byte": "uint8", "Bool": "bool", "QInt8": "qint8",
    "QUInt8": "quint8", "QInt32": "qint32", "QUInt4x2": "quint4x2", "QUInt2x4": "quint2x4",
}

INSPECT_CALLS = {
    "torch.from_numpy", "torch.Tensor.view", "torch.Tensor.new_empty", "torch.Tensor.set_",
    "torch.Tensor.requires_grad_", "torch.nn.parameter.Parameter", "torch.nn.Parameter",
    "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor_v3",
    "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state",
    "torch.storage._load_from_bytes",
    # torch's other rebuilds (other devices, sparse, quantized, nested, meta, subclasses):
    # counted by name
    "torch._utils._rebuild_device_tensor_from_numpy",
    "torch._utils._rebuild_device_tensor_from_cpu_tensor",
    "torch._utils._rebuild_meta_tensor_no_storage", "torch._utils._rebuild_wrapper_subclass",
    "torch._utils._rebuild_qtensor", "torch._utils._rebuild_sparse_tensor",
    "torch._utils._rebuild_nested_tensor", "torch._utils._rebuild_xla_tensor",
    "torch._tensor._rebuild_from_type_v2", "torch._tensor._rebuild_from_type",
}
