"""Teach stock joblib to read and write zstd files (the ``.zst`` files fastjoblib writes).

joblib has no zstd support. It has a registry (``joblib.register_compressor``) keyed by name,
magic prefix and file extension; this module registers a ``'zstd'`` entry backed by the
``zstandard`` package::

    import fastjoblib
    fastjoblib.register_zstd_with_joblib()
    joblib.load("model.zst")                       # a file written by fastjoblib.dump(..., compress="zstd")
    joblib.dump(model, "model.zst")                 # joblib itself can now write zstd too
    joblib.dump(model, "m.pkl", compress=("zstd", 9))

fastjoblib writes standard zstd frames (magic ``28 b5 2f fd``), one per 16 MiB of the stream,
each with its content size and checksum; this reader, like the ``zstd`` tool, reads across
frames. (``zstandard.decompress()`` and ``decompressobj()`` stop after the first frame.)
"""
import io
import os

_ZSTD_PREFIX = b"\x28\xb5\x2f\xfd"
_ZSTD_EXTENSION = ".zst"
_DEFAULT_LEVEL = 3
_NOT_INSTALLED = ("zstd compression needs the 'zstandard' package, which is not installed here: "
                  "pip install zstandard")  # (_compressors.missing_package_message's wording)
_warned = False


class ZstdJoblibWarning(UserWarning):
    """A .zst file was written; stock joblib reads it only after register_zstd_with_joblib()."""


def warn_unregistered_once():
    """Warn once per process, at the first zstd dump, that stock joblib.load needs
    register_zstd_with_joblib() to read the file; silent once that call was made here."""
    global _warned
    if _warned:
        return
    import sys

    jc = sys.modules.get("joblib.compressor")
    if jc is not None and "zstd" in getattr(jc, "_COMPRESSORS", {}):
        return
    _warned = True
    import warnings

    warnings.warn("this file is zstd-compressed: stock joblib.load reads it only after "
                  "fastjoblib.register_zstd_with_joblib() (otherwise joblib fails with "
                  "KeyError: 181); fastjoblib.load reads it as is. Warned once per process.",
                  ZstdJoblibWarning, stacklevel=3)


def _zstandard():
    try:
        import zstandard
    except ImportError as exc:
        raise ImportError(_NOT_INSTALLED) from exc
    return zstandard


class ZstdFile(io.BufferedIOBase):
    """Minimal binary file object over a zstd stream, in joblib's compressor-file shape.

    ``ZstdFile(filename_or_fileobj, mode='rb'|'wb', compresslevel=None)``. ``tell()`` counts
    uncompressed bytes (what joblib's array alignment uses); ``seek`` only moves forward when
    reading (emulated by reading), like joblib's own BinaryZlibFile for forward seeks.
    """

    def __init__(self, filename, mode="rb", compresslevel=None):
        zstandard = _zstandard()
        if mode not in ("rb", "wb"):
            raise ValueError("Invalid mode: %r" % (mode,))
        if compresslevel is None:
            compresslevel = _DEFAULT_LEVEL
        self._owns_fp = False
        if isinstance(filename, (str, bytes, os.PathLike)):
            self._fp = open(filename, mode)
            self._owns_fp = True
        elif hasattr(filename, "read") or hasattr(filename, "write"):
            self._fp = filename
        else:
            raise TypeError("filename must be a str or bytes object, or a file")
        self._mode = mode
        self._pos = 0
        self._reader = self._writer = None
        try:
            if mode == "wb":
                cctx = zstandard.ZstdCompressor(level=int(compresslevel), threads=-1,
                                                write_checksum=True)
                self._writer = cctx.stream_writer(self._fp, closefd=False)
            else:
                dctx = zstandard.ZstdDecompressor()
                self._reader = dctx.stream_reader(self._fp, read_across_frames=True,
                                                  closefd=False)
        except BaseException:
            if self._owns_fp:
                self._fp.close()
            raise

    # -- state --------------------------------------------------------------------------------
    def readable(self):
        self._check_open()
        return self._mode == "rb"

    def writable(self):
        self._check_open()
        return self._mode == "wb"

    def seekable(self):
        self._check_open()
        return self._mode == "rb"

    def _check_open(self):
        if self.closed:
            raise ValueError("I/O operation on closed file")

    def close(self):
        if self.closed:
            return
        try:
            if self._writer is not None:
                zstandard = _zstandard()
                self._writer.flush(zstandard.FLUSH_FRAME)
                self._writer.close()
            elif self._reader is not None:
                self._reader.close()
        finally:
            self._reader = self._writer = None
            try:
                if self._owns_fp:
                    self._fp.close()
            finally:
                self._fp = None
                super().close()

    def fileno(self):
        self._check_open()
        return self._fp.fileno()

    # -- reading ------------------------------------------------------------------------------
    def readinto(self, b):
        self._check_open()
        if self._reader is None:
            raise io.UnsupportedOperation("File not open for reading")
        n = self._reader.readinto(b)
        self._pos += n
        return n

    def read(self, size=-1):
        self._check_open()
        if self._reader is None:
            raise io.UnsupportedOperation("File not open for reading")
        if size is None or size < 0:
            chunks = []
            while True:
                chunk = self._reader.read(1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
            data = b"".join(chunks)
        else:
            data = self._reader.read(size)
        self._pos += len(data)
        return data

    def seek(self, offset, whence=io.SEEK_SET):
        self._check_open()
        if self._reader is None:
            raise io.UnsupportedOperation("Seeking is only supported in read mode")
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence != io.SEEK_SET:
            raise ValueError("Invalid whence value: %r" % (whence,))
        if offset < self._pos:
            raise io.UnsupportedOperation("ZstdFile cannot seek backwards")
        while self._pos < offset:
            if not self.read(min(offset - self._pos, 1 << 20)):
                break
        return self._pos

    def tell(self):
        self._check_open()
        return self._pos

    # -- writing ------------------------------------------------------------------------------
    def write(self, data):
        self._check_open()
        if self._writer is None:
            raise io.UnsupportedOperation("File not open for writing")
        with memoryview(data) as view:
            n = view.nbytes
            self._writer.write(view.cast("B") if view.ndim != 1 or view.format != "B" else view)
        self._pos += n
        return n


def _wrapper_class():
    from joblib.compressor import CompressorWrapper

    class ZstdCompressorWrapper(CompressorWrapper):
        """joblib compressor entry for zstd (prefix 28 b5 2f fd, extension .zst)."""

        def __init__(self):
            CompressorWrapper.__init__(self, obj=ZstdFile, prefix=_ZSTD_PREFIX,
                                       extension=_ZSTD_EXTENSION)

    return ZstdCompressorWrapper


def register_zstd_with_joblib(force=False):
    """Register a ``'zstd'`` compressor with joblib so that stock ``joblib.load`` reads
    fastjoblib's ``.zst`` files (and ``joblib.dump`` can write them).

    Idempotent. If another ``'zstd'`` compressor is already registered it is kept unless
    ``force=True``. Returns True when this call registered it. Needs the ``zstandard`` package.
    """
    _zstandard()
    from joblib import compressor as jc
    from joblib import register_compressor

    current = jc._COMPRESSORS.get("zstd")
    if current is not None:
        if getattr(current, "fileobj_factory", None) is ZstdFile or not force:
            return False
    register_compressor("zstd", _wrapper_class()(), force=True)
    return True
