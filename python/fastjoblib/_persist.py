"""dump / load: joblib's argument handling, reproduced exactly, then one call into ``_core``.

Everything a user can observe before the first byte is pickled follows joblib 1.6
(``joblib/numpy_pickle.py``): the order in which ``compress`` is resolved, extension inference,
target checks, warnings and their texts, error types and texts. Deliberate differences, all
documented in the README:

* a path is written atomically (temporary file beside it, then exchanged with the old file or
  renamed into place: ``_target.py``); on any exception, KeyboardInterrupt included, the previous
  file is left intact and the temporary is removed;
* ``mmap_mode='write'`` is treated like ``'w+'`` (mapped ``'r+'``) instead of truncating the file;
* an invalid ``mmap_mode`` for an uncompressed path raises numpy's ValueError before reading,
  not at the first array;
* a file object without ``peek`` is rewound to where it was, not to offset 0, unless it was at
  its end (then to 0, as joblib does, so that ``dump(x, bio); load(bio)`` works);
* a non-seekable file object without ``peek`` loads instead of raising ``UnsupportedOperation``;
* zstd (``.zst``, magic ``28 b5 2f fd``) is a registered compressor.
"""
import io
import os
import pickle
import sys
import warnings

from . import _compressors, _provenance, _remote, _torch
from ._target import atomic_write as _atomic_write
from ._compressors import COMPRESSORS, LZ4_NOT_INSTALLED_ERROR, MAX_PREFIX_LEN

# numpy.memmap's modes (numpy/_core/memmap.py), to reproduce its error for invalid ones.
_NP_VALID_FILEMODES = ["r", "c", "r+", "w+"]
_NP_MODE_EQUIVALENTS = {"readonly": "r", "copyonwrite": "c", "readwrite": "r+", "write": "w+"}


def _core():
    from . import _core as core

    return core


# ---------------------------------------------------------------------------------------------
# dump


def _resolve_protocol(protocol):
    # As NumpyPickler + pickle._Pickler resolve it, checked before the target is touched.
    if protocol is None:
        return pickle.DEFAULT_PROTOCOL
    if protocol < 0:
        return pickle.HIGHEST_PROTOCOL
    if not 0 <= protocol <= pickle.HIGHEST_PROTOCOL:
        raise ValueError("pickle protocol must be <= %d" % pickle.HIGHEST_PROTOCOL)
    return int(protocol)


def _resolve_threads(threads):
    if threads is None:
        return 0  # _core: <= 0 means all cores
    if isinstance(threads, bool) or not isinstance(threads, int):
        raise TypeError(
            "threads must be a positive int or None, got %r" % (threads,))
    if threads < 1:
        raise ValueError("threads must be a positive int or None, got %r" % (threads,))
    return threads


def _resolve_compress(compress, filename, is_filename, is_fileobj):
    """(codec name or None, level for _core). Same order of checks and texts as joblib.dump."""
    compress_method = "zlib"
    if compress is True:
        compress_level = None
    elif isinstance(compress, tuple):
        if len(compress) != 2:
            raise ValueError(
                "Compress argument tuple should contain exactly 2 elements: "
                "(compress method, compress level), you passed {}".format(compress)
            )
        compress_method, compress_level = compress
    elif isinstance(compress, str):
        compress_method = compress
        compress_level = None
        compress = (compress_method, compress_level)
    else:
        compress_level = compress

    if compress_method == "lz4" and not _compressors.codec_available("lz4"):
        raise ValueError(LZ4_NOT_INSTALLED_ERROR)

    if (
        compress_level is not None
        and compress_level is not False
        and compress_level not in range(10)
    ):
        raise ValueError(
            'Non valid compress level given: "{}". Possible values are {}.'.format(
                compress_level, list(range(10))
            )
        )

    if compress_method not in COMPRESSORS:
        raise ValueError(
            'Non valid compression method given: "{}". Possible values are {}.'.format(
                compress_method, COMPRESSORS
            )
        )

    if not is_filename and not is_fileobj:
        raise ValueError(
            "Second argument should be a filename or a file-like object, "
            "%s (type %s) was given." % (filename, type(filename))
        )

    if is_filename and not isinstance(compress, tuple):
        compress_method = _compressors.infer_from_extension(filename)
        if compress_method in COMPRESSORS and compress_level == 0:
            compress_level = None

    if compress_level != 0:
        if compress_method not in COMPRESSORS:
            compress_method = "zlib"
        if compress_method == "lz4" and not _compressors.codec_available("lz4"):
            raise ValueError(LZ4_NOT_INSTALLED_ERROR)
        return compress_method, _compressors.core_level(compress_method, compress_level)
    return None, -1


def dump(value, filename, compress=0, protocol=None, *, threads=None, progress=None,
         provenance=True, durable=False, storage_options=None):
    """Persist an arbitrary Python object into one file, in joblib's format.

    Same arguments, return value, errors and warnings as ``joblib.dump``; stock ``joblib.load``
    reads the file.

    Parameters
    ----------
    value: any Python object
    filename: str, os.PathLike, fsspec URL or file object
        A path is written atomically: a temporary file in the same directory takes its place
        once the dump succeeded (exchanged with the old file, which is then unlinked, where the
        system can; else renamed over it). The compressor matching the extension ('.z', '.gz',
        '.bz2', '.lzma', '.xz', '.lz4', '.zst') is used unless `compress` names one.
        A URL (``s3://bucket/key``, ``gs://``, ``az://``, ``memory://``, ``file://``, any fsspec
        protocol; needs fsspec and the protocol's package) is written through that filesystem,
        streaming with bounded memory; on S3 as a parallel multipart upload that is completed
        only when the dump succeeded and aborted otherwise (the previous object stays).
    compress: int 0-9, bool, None, str or (str, int)
        Exactly as joblib: 0/False = no compression (unless the extension asks for one), True or
        None = zlib at its default level 3, an int = zlib at that level, a str = that method at
        its default level, a tuple = (method, level); ('zlib', 0) means uncompressed.
    protocol: int, optional
        Pickle protocol, ``pickle.DEFAULT_PROTOCOL`` when None.
    threads: int, optional (keyword only)
        Compression threads; None = all cores. The output is one standard stream either way.
    progress: None, True, or a callable(done_bytes, None) (keyword only)
        True shows a progress bar (tqdm if installed, else a line on stderr) for dumps that take
        more than a second; a callable is called every few MiB written.
    provenance: bool (keyword only)
        Record the environment (Python, NumPy, fastjoblib and referenced packages' versions, byte
        order, creation time) inside the stream; every loader returns the same object either way.
    durable: bool (keyword only)
        For a path: fsync the file before it replaces the old one and the directory after, so
        that it survives a power cut once dump returns. False (default): like joblib and pickle,
        the data stays in the page cache until the kernel writes it back. Ignored for a file
        object (its owner decides when to flush it) or a URL.
    storage_options: dict, optional (keyword only)
        For a URL: passed to the fsspec filesystem (credentials, ``client_kwargs``, ...).

    Returns
    -------
    ``[filename]`` for a path, None for a file object.
    """
    if isinstance(filename, os.PathLike):
        filename = os.fspath(filename)
    remote = None
    given = filename
    if storage_options is not None or _remote.is_url(filename):
        _remote.check_storage_options(filename, storage_options)
        fs, path = _remote.get_fs(filename, storage_options)
        if not _remote.is_local(fs):
            remote = (fs, path)
        else:
            filename = path

    is_filename = isinstance(filename, str)
    is_fileobj = hasattr(filename, "write")

    codec, level = _resolve_compress(compress, filename, is_filename, is_fileobj)
    if codec is not None:
        _compressors.require_package(codec)
        if codec == "zstd":
            from ._zstd_joblib import warn_unregistered_once
            warn_unregistered_once()
    protocol = _resolve_protocol(protocol)
    nthreads = _resolve_threads(threads)
    core = _core()
    extra = {}
    if progress is not None and progress is not False:
        from ._progress import make_progress
        extra["progress"] = make_progress(progress, "dump", value, codec is not None)
    torch_hooks = "torch" in sys.modules  # tensors as array records (see _torch.py)

    def write(target):
        hooks = _torch.dump_hooks(protocol) if torch_hooks else {}
        core.dump(value, target, protocol, codec=codec, level=level, threads=nthreads,
                  trailer=_provenance.make_record if provenance else None, **hooks, **extra)

    try:
        if remote is not None:
            _remote.dump_url(remote[0], remote[1], write)
        elif is_filename:
            _atomic_write(filename, write, durable=bool(durable))
        else:
            write(filename)
    finally:
        if extra:
            from ._progress import close_progress
            close_progress(extra["progress"])

    if is_fileobj:
        return None
    return [given]


# ---------------------------------------------------------------------------------------------
# load


def _core_mmap_mode(mmap_mode):
    """numpy's mode (after its aliases), with 'w+' / 'write' mapped to 'r+' as joblib maps 'w+'.
    Invalid modes raise numpy.memmap's own error."""
    try:
        mode = _NP_MODE_EQUIVALENTS[mmap_mode]
    except KeyError:
        if mmap_mode not in _NP_VALID_FILEMODES:
            all_modes = _NP_VALID_FILEMODES + list(_NP_MODE_EQUIVALENTS.keys())
            raise ValueError(
                f"mode must be one of {all_modes!r} (got {mmap_mode!r})"
            ) from None
        mode = mmap_mode
    return "r+" if mode == "w+" else mode


def _is_raw_file(fileobj):
    fileobj = getattr(fileobj, "raw", fileobj)
    return isinstance(fileobj, io.FileIO)


class _PrefixedReader:
    """A non-seekable stream whose first bytes were already consumed for detection."""

    def __init__(self, prefix, fileobj):
        self._prefix = prefix
        self._file = fileobj

    def read(self, n=-1):
        if self._prefix:
            if n is None or n < 0:
                rest = self._file.read()
                data, self._prefix = self._prefix + (rest or b""), b""
                return data
            data, self._prefix = self._prefix[:n], self._prefix[n:]
            if len(data) < n:
                more = self._file.read(n - len(data))
                if more:
                    data += more
            return data
        return self._file.read(n)

    def readline(self):
        if self._prefix:
            i = self._prefix.find(b"\n")
            if i >= 0:
                line, self._prefix = self._prefix[: i + 1], self._prefix[i + 1:]
                return line
            line, self._prefix = self._prefix, b""
            return line + self._file.readline()
        return self._file.readline()

    def readinto(self, buf):
        view = memoryview(buf).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)


def _detect_fileobj(fobj):
    """(kind, file object to read from), leaving the stream where the dump starts."""
    if hasattr(fobj, "peek"):
        return _compressors.detect(fobj.peek(MAX_PREFIX_LEN)), fobj
    try:
        start = fobj.tell()
    except (OSError, AttributeError):
        start = None
    head = fobj.read(MAX_PREFIX_LEN)
    try:
        if not head and start:
            # At the end of a stream (e.g. a BytesIO just dumped into): rewind to 0 as joblib
            # does, and detect what is there.
            fobj.seek(0)
            head = fobj.read(MAX_PREFIX_LEN)
            fobj.seek(0)
        elif start is not None:
            fobj.seek(start)
        else:
            raise io.UnsupportedOperation("seek")
    except (OSError, AttributeError):
        return _compressors.detect(head), _PrefixedReader(head, fobj)
    return _compressors.detect(head), fobj


def _legacy_loader():
    try:
        from . import _legacy
    except ImportError:
        _legacy = None
    return getattr(_legacy, "load_compatibility", None)


def _warn_compat(filename):
    warnings.warn(
        "The file '%s' has been generated with a joblib "
        "version less than 0.10. "
        "Please regenerate this pickle file." % filename,
        DeprecationWarning,
        stacklevel=3,
    )


def _load_extras(trusted, progress, max_bytes=None):
    """Keyword arguments for _core.load from the trust and progress options."""
    extra = {}
    if trusted is not None and trusted is not False:
        from ._trust import make_find_class
        extra["find_class"] = make_find_class(trusted, max_bytes=max_bytes)
    elif max_bytes is not None:
        raise ValueError("max_bytes= bounds restricted loads: pass it with trusted=")
    if progress is not None and progress is not False:
        from ._progress import make_progress
        extra["progress"] = make_progress(progress, "load")
    return extra


def _unpickle(source, extra, sniff=None, name=None, **kwargs):
    if kwargs.get("codec") is not None:
        _compressors.require_package(kwargs["codec"])
    try:
        return _unpickle_core(source, extra, **kwargs)
    except (MemoryError, RecursionError):
        raise
    except Exception as exc:
        # not a pickle? name the format (same exception type; a pickle keeps its message)
        from . import _sniff
        kind = sniff(_sniff) if sniff is not None else None
        new = _sniff.rewrite(exc, name, kind) if kind is not None else None
        if new is None:
            raise
        raise new from None


def _unpickle_core(source, extra, **kwargs):
    trailer = []
    policy = extra.get("find_class")
    if policy is not None:
        from ._guard import input_size
        policy.budget_obj.set_input_size(input_size(source),
                                         compressed=kwargs.get("codec") or False)
    try:
        obj = _core().load(source, trailer=trailer, **kwargs, **extra)
    except MemoryError as exc:
        if policy is not None:
            from ._guard import reraise_budget
            reraise_budget(policy, exc)
        raise
    except UnicodeDecodeError as exc:
        raise ValueError(
            "You may be trying to read with "
            "python 3 a joblib pickle generated with python 2. "
            "This feature is not supported by joblib."
        ) from exc
    finally:
        if "progress" in extra:
            from ._progress import close_progress
            close_progress(extra["progress"])
    if policy is not None:
        policy.finish()
    if trailer:
        _provenance.check_record(trailer[-1])
    return obj


def load(filename, mmap_mode=None, ensure_native_byte_order="auto", *, trusted=None,
         progress=None, max_bytes=None, storage_options=None):
    """Reconstruct a Python object from a file written by ``joblib.dump`` or ``fastjoblib.dump``.

    Same arguments, errors and warnings as ``joblib.load``. Like pickle, loading runs code named
    in the file: never load files from untrusted sources.

    Parameters
    ----------
    filename: str, bytes, os.PathLike, fsspec URL or file object
        A URL (``s3://bucket/key``, ``memory://``, ... as for dump) is read through its
        filesystem: the pickle stream read ahead, array payloads fetched with concurrent ranged
        reads straight into the new arrays' memory.
    mmap_mode: {None, 'r+', 'r', 'w+', 'c'} (and numpy's long aliases)
        Arrays of an uncompressed file given by path are memory-mapped. 'w+' (and 'write') map
        'r+': the file is never truncated. Ignored, with joblib's warning, for compressed files
        and in-memory buffers; file objects are never mapped (as in joblib). PyTorch tensors
        written by fastjoblib.dump are mapped too: copy-on-write for 'r' and 'c' (writable
        tensors, the file never changes), shared with the file for 'r+' / 'w+'.
    ensure_native_byte_order: bool or 'auto'
        'auto' = True when mmap_mode is None. Swaps foreign-endian in-memory arrays.
    trusted: None, True, or an iterable of "module.qualname" strings
        None (default): unrestricted, like joblib. True: only the built-in allow-list of plain
        data classes (builtins, numpy, pandas, datetime, ...) may be imported; an iterable adds
        exact names to that list (``python -m fastjoblib inspect --trusted FILE`` prints what a
        file needs). Anything else raises ``fastjoblib.UntrustedGlobalError`` before it is
        imported or called, nested object-array streams included. See docs/SECURITY.md for
        everything a restricted load guarantees.
    max_bytes: None or int
        With trusted=: the most memory the file may make the load take (arrays, containers,
        strings); None = 1 GiB + 1000 x the file's size (64 MiB + 100 x for a compressed
        file). Going over raises
        ``fastjoblib.BudgetExceededError`` before the memory is taken.
    progress: None, True, or a callable(done_bytes, total_bytes)
        True shows a progress bar (tqdm if installed, else a line on stderr) for loads that take
        more than a second; a callable is called every few MiB read.
    storage_options: dict, optional
        For a URL: passed to the fsspec filesystem (credentials, ``client_kwargs``, ...).
    """
    extra = _load_extras(trusted, progress, max_bytes)
    again = _rereadable(filename) if "find_class" in extra else None
    try:
        return _load_inner(filename, mmap_mode, ensure_native_byte_order, extra, storage_options)
    except pickle.UnpicklingError as exc:
        # a trusted= refusal names every global the file needs that the policy refuses
        if again is None:
            raise
        full = _explain_refusal(exc, extra["find_class"], again)
        if full is exc:
            raise
        raise full from None
    finally:
        if "find_class" in extra:
            from ._guard import release
            release(extra["find_class"])


def _rereadable(source):
    """What the static inspector can read again after a refused restricted load: a path, or
    a seekable file object (rewound to where the load started); else None."""
    from ._api import rereadable

    if isinstance(source, bytes):  # a path here, not data
        return os.fsdecode(source)
    return rereadable(source)


def _explain_refusal(exc, policy, again):
    from ._api import explain_refusal

    return explain_refusal(exc, policy, again)


def _load_inner(filename, mmap_mode, ensure_native_byte_order, extra, storage_options=None):
    if ensure_native_byte_order == "auto":
        ensure_native_byte_order = mmap_mode is None

    if ensure_native_byte_order and mmap_mode is not None:
        raise ValueError(
            "Native byte ordering can only be enforced if 'mmap_mode' parameter "
            f"is set to None, but got 'mmap_mode={mmap_mode}' instead."
        )
    ensure_native = bool(ensure_native_byte_order)

    if isinstance(filename, os.PathLike):
        filename = os.fspath(filename)

    if storage_options is not None or _remote.is_url(filename):
        _remote.check_storage_options(filename, storage_options)
        fs, path = _remote.get_fs(filename, storage_options)
        if _remote.is_local(fs):
            filename = path
        else:
            return _load_url(filename, fs, path, mmap_mode, ensure_native, extra)

    if hasattr(filename, "read") and mmap_mode is None and _remote.fsspec_read_file(filename):
        # an s3fs / gcsfs / ... file: read with the URL reader (read-ahead, concurrent ranged
        # reads into the arrays) from the file's position, which is then moved past the pickle
        reader = _remote.reader_for_file(filename)
        if reader.tell() >= reader.size > 0:
            reader.seek(0)  # at its end (just written): from the start, as for other files
        try:
            return _load_reader(filename.path, reader, ensure_native, extra)
        finally:
            filename.seek(reader.tell())

    if hasattr(filename, "read"):
        fobj = filename
        name = getattr(fobj, "name", "")
        try:
            start = fobj.tell()
        except Exception:  # noqa: BLE001 - not seekable: nothing to look back at
            start = None
        kind, source = _detect_fileobj(fobj)
        if kind == "compat":
            _warn_compat(name)
            raise ValueError(
                "%r holds a joblib < 0.10 z-file, which can only be loaded from a path" % (fobj,))
        if mmap_mode is not None:
            if kind == "not-compressed" and isinstance(fobj, io.BytesIO):
                warnings.warn(
                    "In memory persistence is not compatible with "
                    'mmap_mode "%s" flag passed. '
                    "mmap_mode option will be ignored." % (mmap_mode,),
                    stacklevel=2,
                )
            elif kind != "not-compressed":
                warnings.warn(
                    'mmap_mode "%s" is not compatible '
                    "with compressed file %s. "
                    '"%s" flag will be ignored.' % (mmap_mode, name, mmap_mode),
                    stacklevel=2,
                )
            elif not _is_raw_file(fobj):
                warnings.warn(
                    '"%r" is not a raw file, mmap_mode '
                    '"%s" flag will be ignored.' % (fobj, mmap_mode),
                    stacklevel=2,
                )
        # joblib never memory-maps through a file object.
        codec = None if kind == "not-compressed" else kind
        kwargs = {}
        if codec is None and source is fobj:
            size = _remote.fileobj_remaining(fobj)
            if size is not None:
                kwargs["size"] = size
        sniff = None if start is None else (lambda m: m.from_file(fobj, start))
        return _unpickle(source, extra, sniff=sniff, name=name or None,
                         ensure_native=ensure_native, codec=codec, **kwargs)

    # A path (str or bytes) or an int file descriptor: opened exactly as joblib's open(x, 'rb')
    # would (same errors), then read through the descriptor.
    with open(filename, "rb", buffering=0) as f:
        fd = f.fileno()
        start = f.tell()
        try:
            head = os.pread(fd, MAX_PREFIX_LEN, start)
        except OSError:  # not pread-able (a pipe given as an fd)
            head = f.read(MAX_PREFIX_LEN)
            if head:
                return _load_prefixed(head, f, ensure_native, extra, filename)
        kind = _compressors.detect(head)
        if kind == "compat":
            loader = _legacy_loader()
            if loader is None:
                _warn_compat(filename)
                raise NotImplementedError(
                    "%r is a joblib < 0.10 z-file; this fastjoblib build has no loader for it "
                    "(fastjoblib._legacy.load_compatibility is missing)" % (filename,))
            # (warns like joblib itself, pointing at our caller)
            policy = extra.get("find_class")
            try:
                obj = loader(filename, find_class=policy)
            except MemoryError as exc:
                if policy is not None:
                    from ._guard import reraise_budget
                    reraise_budget(policy, exc)
                raise
            if policy is not None:
                policy.finish()
            return obj
        core_mmap = None
        if mmap_mode is not None:
            if kind != "not-compressed":
                warnings.warn(
                    'mmap_mode "%s" is not compatible '
                    "with compressed file %s. "
                    '"%s" flag will be ignored.' % (mmap_mode, filename, mmap_mode),
                    stacklevel=2,
                )
            elif isinstance(filename, (str, bytes)):
                core_mmap = _core_mmap_mode(mmap_mode)
        kwargs = dict(ensure_native=ensure_native,
                      codec=None if kind == "not-compressed" else kind)
        if isinstance(filename, (str, bytes)):
            # the path also locates joblib 0.9 companion .npy files next to the pickle
            kwargs.update(filename=os.fsdecode(filename))
        if core_mmap is not None:
            kwargs.update(mmap_mode=core_mmap,
                          replace_globals={("torch", "from_numpy"): _TorchFromNumpy(core_mmap)})
        return _unpickle(fd, extra, sniff=lambda m: m.from_fd(fd, start),
                         name=filename if isinstance(filename, (str, bytes)) else None, **kwargs)


def _load_url(url, fs, path, mmap_mode, ensure_native, extra):
    if mmap_mode is not None:
        _remote.warn_mmap(mmap_mode, url)
    with _remote.open_url(fs, path) as reader:
        return _load_reader(url, reader, ensure_native, extra)


def _load_reader(url, reader, ensure_native, extra):
    start = reader.tell()
    head = reader.read(MAX_PREFIX_LEN)
    reader.seek(start)
    kind = _compressors.detect(head)
    if kind == "compat":
        _warn_compat(url)
        raise ValueError(
            "%r holds a joblib < 0.10 z-file, which can only be loaded from a path" % (url,))
    codec = None if kind == "not-compressed" else kind
    return _unpickle(reader, extra, ensure_native=ensure_native, codec=codec,
                     **({"size": reader.size - start} if codec is None else {}))


class _TorchFromNumpy:
    """Stand-in for the global torch.from_numpy under mmap_mode: tensor storages mapped with the
    tensor mode of _torch.MMAP_MODES (torch is imported only when a file calls it)."""

    __slots__ = ("mode", "func")

    def __init__(self, mode):
        self.mode = mode
        self.func = None

    def __call__(self, arr):
        if self.func is None:
            self.func = _torch.mapped_from_numpy(self.mode)
        return self.func(arr)


def _load_prefixed(head, f, ensure_native, extra, name=None):
    kind = _compressors.detect(head)
    codec = None if kind in ("not-compressed", "compat") else kind
    return _unpickle(_PrefixedReader(head, f), extra, sniff=lambda m: m.identify(head),
                     name=None if isinstance(name, int) else name,
                     ensure_native=ensure_native, codec=codec)
