"""Old-format joblib fixtures, generated at test time (no committed binaries).

Every generator writes the documented layout with real joblib classes and the pure-Python pickler,
so stock joblib can (where it still supports the format) load the same files; the tests use that to
check the fixtures themselves.

* ``dump_joblib_010``: the 0.10-1.1 single-file layout: NumpyArrayWrapper state without the
  ``numpy_array_alignment_bytes`` key, array bytes right after BUILD, no padding byte.
* ``dump_vendored``: the same stream (aligned or not) naming ``sklearn.externals.joblib.numpy_pickle``
  (or ``sklearn.externals._joblib.numpy_pickle``) instead of ``joblib.numpy_pickle``.
* ``dump_joblib_09``: 0.9.x multi-file: NDArrayWrapper records + companion ``<name>_NN.npy``.
* ``dump_joblib_09_compressed``: 0.9.x compressed: a ZF z-file holding the pickle; arrays as
  ZNDArrayWrapper records with companion ``<name>_NN.npy.z`` z-files (object arrays inline).
"""
import io
import os
import pickle
import zlib

import numpy as np
from joblib import numpy_pickle
from joblib.numpy_pickle_compat import NDArrayWrapper, ZNDArrayWrapper

_MAX_LEN = len(hex(2**64))


def write_zfile(fh, data, compress=1):
    fh.write(b"ZF")
    fh.write("{:#x}".format(len(data)).ljust(_MAX_LEN).encode("latin1"))
    fh.write(zlib.compress(data, compress))


class _Pickler010(numpy_pickle.NumpyPickler):
    """joblib's own pickler with the 1.2 alignment attribute removed (-> 0.10-1.1 layout)."""

    def _create_array_wrapper(self, array):
        wrapper = super()._create_array_wrapper(array)
        del wrapper.numpy_array_alignment_bytes
        return wrapper


def dump_joblib_010(obj, path, protocol=3):
    with open(path, "wb") as f:
        _Pickler010(f, protocol=protocol).dump(obj)


def dump_vendored(obj, path, module="sklearn.externals.joblib.numpy_pickle", protocol=2, aligned=True):
    """A joblib stream whose wrapper global names a vendored joblib module (protocol 2/3: text
    GLOBAL, no frames, so the rename is a plain byte substitution)."""
    assert protocol in (2, 3)
    buf = io.BytesIO()
    (numpy_pickle.NumpyPickler if aligned else _Pickler010)(buf, protocol=protocol).dump(obj)
    data = buf.getvalue()
    old = b"cjoblib.numpy_pickle\nNumpyArrayWrapper\n"
    assert old in data
    data = data.replace(old, b"c" + module.encode() + b"\nNumpyArrayWrapper\n")
    if aligned:
        # the padding depends on the absolute offset; the rename shifted it: re-dump is simpler
        # than patching, so only the unaligned form is offset-independent.
        raise ValueError("use aligned=False: renaming shifts the aligned offsets")
    with open(path, "wb") as f:
        f.write(data)


def dump_vendored_any(obj, path, module="sklearn.externals.joblib.numpy_pickle", protocol=4, aligned=True):
    """Any protocol, aligned or not: joblib's pickler with the wrapper class re-homed in a
    temporary module of the vendored name (registered in sys.modules only while dumping)."""
    import sys
    import types

    wrapper_cls = type("NumpyArrayWrapper", (numpy_pickle.NumpyArrayWrapper,), {"__module__": module})
    parts = module.split(".")
    added = []
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        if name not in sys.modules:
            sys.modules[name] = types.ModuleType(name)
            added.append(name)
    sys.modules[module].NumpyArrayWrapper = wrapper_cls
    base = numpy_pickle.NumpyPickler if aligned else _Pickler010

    class P(base):
        def _create_array_wrapper(self, array):
            w = super()._create_array_wrapper(array)
            w.__class__ = wrapper_cls
            return w

    try:
        with open(path, "wb") as f:
            P(f, protocol=protocol).dump(obj)
    finally:
        for name in added:
            del sys.modules[name]


def _fix_compat_globals(data):
    # 0.9.x files named the wrappers in joblib.numpy_pickle (where joblib still exposes them)
    return data.replace(b"cjoblib.numpy_pickle_compat\n", b"cjoblib.numpy_pickle\n")


class _Pickler09(pickle._Pickler):
    """0.9.x NumpyPickler: arrays go to companion .npy files (or .npy.z with compress)."""

    def __init__(self, fh, path, compress, protocol=2):
        super().__init__(fh, protocol=protocol)
        self._path = path
        self._compress = compress
        self._count = 0

    def save(self, obj, save_persistent_id=True):
        if type(obj) in (np.ndarray, np.matrix, np.memmap):
            if self._compress and obj.dtype.hasobject:
                return super().save(obj, save_persistent_id)  # small/object arrays were inline
            self._count += 1
            base = os.path.basename(self._path)
            if self._compress:
                name = "%s_%02d.npy.z" % (base, self._count)
                arr = np.asarray(obj)
                init_args, state = arr.__reduce__()[1:]
                with open(os.path.join(os.path.dirname(self._path), name), "wb") as f:
                    write_zfile(f, state[-1])
                wrapper = ZNDArrayWrapper(name, init_args, state[:-1])
            else:
                name = "%s_%02d.npy" % (base, self._count)
                np.save(os.path.join(os.path.dirname(self._path), name), np.asarray(obj), allow_pickle=True)
                wrapper = NDArrayWrapper(name, type(obj), allow_mmap=not obj.dtype.hasobject)
            return super().save(wrapper, save_persistent_id)
        return super().save(obj, save_persistent_id)


def dump_joblib_09(obj, path, protocol=2):
    buf = io.BytesIO()
    _Pickler09(buf, path, compress=False, protocol=protocol).dump(obj)
    with open(path, "wb") as f:
        f.write(_fix_compat_globals(buf.getvalue()))


def dump_joblib_09_compressed(obj, path, protocol=2):
    buf = io.BytesIO()
    _Pickler09(buf, path, compress=True, protocol=protocol).dump(obj)
    with open(path, "wb") as f:
        write_zfile(f, _fix_compat_globals(buf.getvalue()))
