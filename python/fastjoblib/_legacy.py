"""Pre-0.10 joblib formats (rare, so plain Python).

* ``ZF`` z-files: ``b"ZF"`` + the hex payload length left-justified to 19 characters (one more
  space in Python 2 / joblib <= 0.8.4 files) + one zlib stream holding a whole pickle.
* ``NDArrayWrapper`` records (joblib 0.9.x): the array lives in a companion ``.npy`` file next to
  the main file; ``ZNDArrayWrapper`` records: raw array data in a companion ``.npy.z`` z-file.

The C unpickler calls :func:`read_ndarray_wrapper` / :func:`read_zndarray_wrapper` at the BUILD of
these records; :func:`load_compatibility` loads a ZF container.
"""
import os
import warnings
import zlib

_ZFILE_PREFIX = b"ZF"
_MAX_LEN = len(hex(2**64))  # 19, as joblib
_ZSLICE = 4 << 20  # output per decompress call

COMPAT_WARNING = ("The file '%s' has been generated with a joblib version less than 0.10. "
                  "Please regenerate this pickle file.")


def read_zfile(file_handle, budget=None):
    """Decompress a z-file (joblib's layout) and return its payload (a bytearray).

    ``budget``: the restricted load's ``_guard.Budget``: decompression stops at its limit and the
    payload is charged to it (MemoryError beyond)."""
    file_handle.seek(0)
    header_length = len(_ZFILE_PREFIX) + _MAX_LEN
    header = file_handle.read(header_length)
    if len(header) < header_length or not header.startswith(_ZFILE_PREFIX):
        raise ValueError("not a joblib z-file (bad ZF header)")
    try:
        length = int(header[len(_ZFILE_PREFIX):], 16)
    except ValueError:
        raise ValueError("corrupted z-file header: %r" % header) from None
    # Python 2 / joblib <= 0.8.4 headers are one space wider; a zlib stream never starts with ' '.
    if file_handle.read(1) != b" ":
        file_handle.seek(header_length)
    if length < 0:
        raise ValueError("corrupted z-file header: negative length")
    d = zlib.decompressobj(15)
    # bounded: never allocate more than the compressed data can produce (nor, under a policy,
    # more than one byte past the load's budget)
    max_length = length
    if budget is not None:
        used, _, limit, _ = budget.state()
        max_length = min(length, max(0, limit - used) + 1)
    # in slices appended to one bytearray: a single decompress(data, max_length) builds its
    # output in blocks and then joins them, taking twice the output at its peak
    data = bytearray()
    pending = file_handle.read()
    while len(data) < max_length:
        piece = d.decompress(pending, min(max_length - len(data), _ZSLICE))
        if budget is not None:
            budget.charge(len(piece))
        data += piece
        pending = d.unconsumed_tail
        if not pending and (d.eof or not piece):
            break
    if len(data) != length:
        raise ValueError("Incorrect data length while decompressing %s. The file could be corrupted."
                         % file_handle)
    return data


def write_zfile(file_handle, data, compress=1):
    """Write `data` as a z-file (used by the tests to build old-format fixtures)."""
    file_handle.write(_ZFILE_PREFIX)
    file_handle.write(("{:#x}".format(len(data))).ljust(_MAX_LEN).encode("latin1"))
    file_handle.write(zlib.compress(data, compress))


def _native(array):
    import numpy as np

    dt = array.dtype
    foreign = ">" if np.little_endian else "<"
    mismatch = dt.byteorder == foreign or (
        dt.byteorder == "|" and dt.fields and all(e[0].byteorder == foreign for e in dt.fields.values()))
    if mismatch:
        array = array.byteswap().view(dt.newbyteorder("="))
    return array


def _restore_subclass(array, subclass):
    import numpy as np

    # joblib restores subclasses with __array_prepare__ (gone in NumPy 2); we restore np.matrix.
    if subclass is np.matrix and not isinstance(array, np.matrix):
        return array.view(np.matrix)
    return array


def read_ndarray_wrapper(state, filename, mmap_mode, find_class=None):
    """BUILD of a 0.9.x NDArrayWrapper: np.load the companion .npy next to `filename`."""
    import numpy as np

    dirname = os.path.dirname(filename) if filename else ""
    path = os.path.join(dirname, state["filename"])
    kwargs = {"allow_pickle": True}
    if state.get("allow_mmap", True) and mmap_mode:
        kwargs["mmap_mode"] = mmap_mode
    array = np.load(path, **kwargs)
    array = _native(array)  # joblib always converts these to native byte order
    return _restore_subclass(array, state.get("subclass"))


def read_zndarray_wrapper(state, filename, mmap_mode, find_class=None):
    """BUILD of a 0.9.x ZNDArrayWrapper: rebuild from init_args + state + companion z-file data."""
    import numpy as np

    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # NumPy 1
        from numpy.core.multiarray import _reconstruct
    dirname = os.path.dirname(filename) if filename else ""
    path = os.path.join(dirname, state["filename"])
    array = _reconstruct(*state["init_args"])
    with open(path, "rb") as f:
        data = bytes(read_zfile(f))
    array.__setstate__(tuple(state["state"]) + (data,))
    if not isinstance(array, np.ndarray):
        raise ValueError("ZNDArrayWrapper did not rebuild an ndarray")
    return array


def load_compatibility(filename, mmap_mode=None, find_class=None):
    """Load a ZF container written by joblib < 0.10 (warns like joblib)."""
    from . import _core

    warnings.warn(COMPAT_WARNING % filename, DeprecationWarning, stacklevel=3)
    budget = getattr(find_class, "budget_obj", None)
    with open(filename, "rb") as f:
        if budget is not None:
            budget.set_input_size(os.fstat(f.fileno()).st_size, compressed=True)
        data = read_zfile(f, budget)
    with warnings.catch_warnings():
        # the C loader warns again when it meets NDArrayWrapper records; joblib warns once here
        warnings.filterwarnings("ignore", message="The file .* less than 0.10", category=DeprecationWarning)
        try:
            # like joblib, arrays of a ZF container are never memory-mapped
            return _core.load(data, filename=os.fspath(filename), find_class=find_class)
        except UnicodeDecodeError as exc:
            raise ValueError("You may be trying to read with python 3 a joblib pickle generated with "
                             "python 2. This feature is not supported by joblib.") from exc
