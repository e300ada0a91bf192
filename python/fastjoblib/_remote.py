"""Targets behind a URL: any fsspec filesystem (``s3://``, ``gs://``, ``az://``, ``memory://``,
``file://``, ...). The C core never sees a URL: it gets a Python file object from here.

dump (``dump_url``): a file-like *writer* the C core writes memoryviews into.

* S3 (s3fs): a multipart upload through s3fs's own client (``S3FileSystem._call_s3``: its
  credentials, endpoint, retries, error translation). Each part is copied out of the pickler's
  memoryview into a part buffer and sent on s3fs's event loop while the pickler and compressors
  keep producing; at most ``S3_PARTS_IN_FLIGHT`` parts are in flight, so memory stays bounded
  (about (in flight + 1) x part size) whatever the object's size. The object appears only at
  CompleteMultipartUpload; any exception, KeyboardInterrupt included, aborts the upload
  (AbortMultipartUpload), so the previous object stays and no multipart upload is left behind. An
  object smaller than one part is one PutObject at the end (atomic as well).
* ``file://`` and local paths: the caller uses the local atomic path write instead.
* any other filesystem: ``fs.open(path, 'wb')`` fed from a background thread (bounded queue), so
  the filesystem's own upload (gcsfs resumable, adlfs blocks, memory://) overlaps pickling. On an
  exception the file is ``discard()``-ed where the filesystem supports it (gcsfs, adlfs and s3fs
  files abort their uploads) and never closed, so no object is committed.

load (``open_url``): a read-only file object over the object:

* reads of the pickle stream are served from blocks read ahead (``READ_BLOCK`` each,
  ``READ_AHEAD`` of them in flight);
* a large ``readinto`` (the C core reads an array payload straight into the new array's memory
  with one ``readinto``) is split into ranges fetched concurrently (``READ_CONNECTIONS`` at once)
  straight into that memory: for s3fs, the response bodies are streamed into slices of the array;
  for other filesystems, ``fs.cat_file(path, start, end)`` per range, copied in.
"""
import collections
import concurrent.futures
import io
import re
import sys
import threading
import warnings

# A URL: "scheme://..." or an fsspec chain "scheme::...". A plain local path never matches (a
# drive letter is one character, a scheme here at least two), and matching never imports fsspec.
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+(://|::)")

S3_PART_SIZE = 6 << 20         # first part size (S3 minimum 5 MiB); grows after every 1000 parts
S3_PARTS_IN_FLIGHT = 9         # parts uploading at once (memory: (9 + 1) x 6 MiB); through the
#                                simulated remote store (20 ms, 50 MB/s a connection) 5 x 8 MiB
#                                took 3.50-3.67 s for 256 MiB, 9 x 6 MiB 2.72 s (benchmarks/bench_remote.py)
GENERIC_QUEUE = 4              # chunks queued for a generic filesystem's writer thread
GENERIC_CHUNK = 8 << 20

READ_BLOCK_MIN = 256 << 10    # first read-ahead block of the pickle stream; doubles while the
READ_BLOCK = 8 << 20           # reading stays sequential, up to READ_BLOCK
READ_AHEAD = 3                 # blocks in flight ahead of the reader once reading is sequential
READ_RANGE_MIN = 16 << 20      # a large read is split into READ_CONNECTIONS ranges of at least
READ_RANGE_MAX = 64 << 20      # READ_RANGE_MIN and at most READ_RANGE_MAX bytes
READ_CONNECTIONS = 4           # concurrent ranged reads
LARGE_READ = 8 << 20           # readinto() at least this big is fetched in parallel ranges


def is_url(target):
    return isinstance(target, str) and _URL_RE.match(target) is not None


def _protocol(url):
    return _URL_RE.match(url).group(0).rstrip(":/").split("::")[0]


def get_fs(url, storage_options):
    """(filesystem, path) for `url`; ImportError naming the package to install."""
    try:
        import fsspec
        import fsspec.core
    except ImportError:
        raise ImportError(
            "fastjoblib: dump/load to the URL %r needs fsspec (and the package for its "
            "protocol): pip install fsspec" % (url,)) from None
    options = dict(storage_options or {})
    try:
        return fsspec.core.url_to_fs(url, **options)
    except ImportError as exc:
        proto = _protocol(url)
        package = _package_for(fsspec, proto)
        raise ImportError(
            "fastjoblib: the URL %r needs the %s package for the %r protocol: pip install %s (%s)"
            % (url, package, proto, package, exc)) from exc
    except ValueError as exc:
        if "Protocol not known" in str(exc):
            raise ValueError("fastjoblib: %s in URL %r" % (exc, url)) from exc
        raise


def _package_for(fsspec, proto):
    from fsspec.registry import known_implementations

    spec = known_implementations.get(proto) or {}
    m = re.search(r"[Ii]nstall (\S+)", spec.get("err", ""))
    if m:
        return m.group(1).strip("`'\".,")
    cls = spec.get("class", "")
    return cls.split(".")[0] if cls else proto


def is_local(fs):
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(fs, LocalFileSystem)


def _is_s3(fs):
    return type(fs).__module__.split(".")[0] == "s3fs" and hasattr(fs, "_call_s3")


def check_storage_options(target, storage_options):
    if storage_options is not None and not is_url(target):
        raise ValueError(
            "storage_options passed with a target that is not an fsspec URL: %r" % (target,))


def warn_mmap(mmap_mode, url):
    warnings.warn(
        'mmap_mode "%s" is not compatible with the URL %s: the object is loaded in memory '
        '("%s" flag ignored).' % (mmap_mode, url, mmap_mode), stacklevel=3)


# ---------------------------------------------------------------------------------------------
# dump


def dump_url(fs, path, write):
    """Call write(fileobj) with a writer for `path` on `fs`; commit on success, abort on any
    exception (KeyboardInterrupt included)."""
    writer = _S3Writer(fs, path) if _is_s3(fs) else _GenericWriter(fs, path)
    try:
        write(writer)
        writer.commit()
    except BaseException:
        writer.abort()
        raise


def _run(fs, coro):
    """Schedule `coro` on the filesystem's event loop; a concurrent.futures.Future."""
    import asyncio

    return asyncio.run_coroutine_threadsafe(coro, fs.loop)


def _wait(fut):
    # (a plain result() wait: interruptible by SIGINT on POSIX)
    return fut.result()


class _S3Writer:
    """Multipart upload, parts in parallel; see the module docstring."""

    def __init__(self, fs, path):
        self.fs = fs
        bucket, key, _ = fs.split_path(path)
        if not key:
            raise ValueError("fastjoblib: %r names a bucket, not an object" % (path,))
        self.bucket, self.key = bucket, key
        self.kw = dict(getattr(fs, "s3_additional_kwargs", None) or {})
        self.upload_id = None
        self.parts = {}          # part number -> ETag
        self.inflight = collections.deque()  # (part number, future)
        self.part_size = S3_PART_SIZE
        self.buf = bytearray(self.part_size)
        self.fill = 0
        self.pos = 0
        self.closed = False

    # file-object surface used by the C core
    def tell(self):
        return self.pos

    def writable(self):
        return True

    def write(self, data):
        mv = memoryview(data).cast("B")
        n = len(mv)
        off = 0
        while off < n:
            take = min(n - off, self.part_size - self.fill)
            self.buf[self.fill:self.fill + take] = mv[off:off + take]
            self.fill += take
            off += take
            if self.fill == self.part_size:
                self._send_part()
        self.pos += n
        return n

    def flush(self):
        pass

    def _send_part(self):
        if self.upload_id is None:
            out = _wait(_run(self.fs, self.fs._call_s3(
                "create_multipart_upload", Bucket=self.bucket, Key=self.key, **self.kw)))
            self.upload_id = out["UploadId"]
        number = len(self.parts) + len(self.inflight) + 1
        # The part leaves as an io.BytesIO over bytes (shared, not copied): aiohttp then streams
        # it in small chunks instead of slicing and joining the whole part (two more copies)
        body = io.BytesIO(bytes(memoryview(self.buf)[:self.fill]))
        fut = _run(self.fs, self.fs._call_s3(
            "upload_part", Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
            PartNumber=number, Body=body))
        self.inflight.append((number, fut))
        # S3 allows 10000 parts: double the part size every 1000 parts (6 MiB parts reach 6 GB,
        # then 12 MiB parts, ...)
        if number % 1000 == 0:
            self.part_size *= 2
        if len(self.buf) != self.part_size:
            self.buf = bytearray(self.part_size)
        self.fill = 0
        while len(self.inflight) >= S3_PARTS_IN_FLIGHT or (
                self.inflight and self.inflight[0][1].done()):
            self._reap_one()

    def _reap_one(self):
        number, fut = self.inflight[0]
        out = _wait(fut)
        self.inflight.popleft()
        self.parts[number] = out["ETag"]

    def commit(self):
        if self.upload_id is None:
            # smaller than one part: a single PutObject
            body = bytes(self.buf[:self.fill])
            self.buf = None
            _wait(_run(self.fs, self.fs._call_s3(
                "put_object", Bucket=self.bucket, Key=self.key, Body=body, **self.kw)))
        else:
            if self.fill:
                self._send_part()
            while self.inflight:
                self._reap_one()
            self.buf = None
            parts = [{"PartNumber": k, "ETag": self.parts[k]} for k in sorted(self.parts)]
            _wait(_run(self.fs, self.fs._call_s3(
                "complete_multipart_upload", Bucket=self.bucket, Key=self.key,
                UploadId=self.upload_id, MultipartUpload={"Parts": parts})))
            self.upload_id = None
        self.closed = True
        self.fs.invalidate_cache(self.fs._parent("%s/%s" % (self.bucket, self.key)))

    def abort(self):
        self.buf = None
        self.closed = True
        pending, self.inflight = self.inflight, collections.deque()
        for _, fut in pending:
            fut.cancel()
        upload_id, self.upload_id = self.upload_id, None
        if upload_id is None:
            return
        # The parts still uploading were cancelled (their tasks stop at their next await). S3
        # says a part upload in progress during an abort may still succeed and the abort may
        # need repeating: abort, then check the upload is gone (ListParts: NoSuchUpload), up to
        # 3 times. An interrupt arriving meanwhile does not skip the abort.
        for _ in range(3):
            try:
                _run(self.fs, self.fs._call_s3(
                    "abort_multipart_upload", Bucket=self.bucket, Key=self.key,
                    UploadId=upload_id)).result(timeout=60)
                _run(self.fs, self.fs._call_s3(
                    "list_parts", Bucket=self.bucket, Key=self.key,
                    UploadId=upload_id)).result(timeout=60)
            except KeyboardInterrupt:
                continue
            except Exception:
                return  # NoSuchUpload (gone: done), or the store is unreachable: give up


class _GenericWriter:
    """fs.open(path, 'wb') fed by a background thread; see the module docstring."""

    def __init__(self, fs, path):
        from fsspec.spec import AbstractBufferedFile

        import secrets

        parent, _, name = path.rpartition("/")
        tmp = "%s/.%s.%s.fjtmp" % (parent, name[:200], secrets.token_hex(6))
        self.fs, self.path, self.tmp = fs, path, tmp
        f = fs.open(tmp, "wb")
        if isinstance(f, AbstractBufferedFile):
            # an upload that commits on close (gcsfs, adlfs, ...): write the target directly,
            # discard() aborts it; the temporary's file was never started (nothing written)
            f.discard()
            self.tmp = None
            f = fs.open(path, "wb")
        # else a file that may be visible while written (memory://, sftp, ...): the temporary
        # beside the target is moved into place once complete
        self.f = f
        self.pos = 0
        self.queue = collections.deque()
        self.cond = threading.Condition()
        self.error = None
        self.stop = False
        self.thread = threading.Thread(target=self._run, name="fastjoblib-upload", daemon=True)
        self.thread.start()
        self.chunk = bytearray()

    def _run(self):
        while True:
            with self.cond:
                while not self.queue and not self.stop:
                    self.cond.wait()
                if not self.queue:
                    return
                item = self.queue[0]
            try:
                if self.error is None:
                    self.f.write(item)
            except BaseException as exc:  # reported to the writer at its next call
                self.error = exc
            with self.cond:
                self.queue.popleft()
                self.cond.notify_all()

    def _check(self):
        if self.error is not None:
            raise self.error

    def tell(self):
        return self.pos

    def writable(self):
        return True

    def write(self, data):
        self._check()
        mv = memoryview(data).cast("B")
        self.chunk += mv
        self.pos += len(mv)
        if len(self.chunk) >= GENERIC_CHUNK:
            self._push()
        return len(mv)

    def flush(self):
        pass

    def _push(self):
        item, self.chunk = bytes(self.chunk), bytearray()
        with self.cond:
            while len(self.queue) >= GENERIC_QUEUE and self.error is None:
                self.cond.wait()
            self.queue.append(item)
            self.cond.notify_all()
        self._check()

    def _finish_thread(self):
        with self.cond:
            self.stop = True
            self.cond.notify_all()
        self.thread.join()

    def commit(self):
        if self.chunk:
            self._push()
        self._finish_thread()
        self._check()
        self.f.close()
        if self.tmp is not None:
            self.fs.mv(self.tmp, self.path)
            self.tmp = None

    def abort(self):
        self.error = self.error or RuntimeError("aborted")
        with self.cond:
            self.queue.clear()
            self.stop = True
            self.cond.notify_all()
        self.thread.join()
        discard = getattr(self.f, "discard", None)
        if discard is not None:
            try:
                discard()
            except Exception:
                pass
        # never close() a buffered fsspec file: its close() commits what was written
        if self.tmp is not None:
            try:
                self.f.close()
                self.fs.rm(self.tmp)
            except Exception:
                pass


# ---------------------------------------------------------------------------------------------
# load


def fileobj_remaining(fobj):
    """Bytes left to read in a file object whose fileno() cannot tell (io.BytesIO, fsspec's
    buffered files, RemoteReader), or None. The C core then reads each array straight into its
    final memory in one readinto() instead of growing a buffer as the bytes come."""
    try:
        if isinstance(fobj, io.BytesIO):
            # (not getbuffer(): on a BytesIO made from bytes it copies the whole buffer)
            pos = fobj.tell()
            end = fobj.seek(0, 2)
            fobj.seek(pos)
            return max(end - pos, 0)
        if isinstance(fobj, RemoteReader):
            return max(fobj.size - fobj.tell(), 0)
        spec = sys.modules.get("fsspec.spec")
        if spec is not None and isinstance(fobj, spec.AbstractBufferedFile) and \
                fobj.mode == "rb" and isinstance(fobj.size, int):
            return max(fobj.size - fobj.tell(), 0)
    except (OSError, ValueError, AttributeError, BufferError):
        pass
    return None


def open_url(fs, path):
    """A read-only file object over `path` (FileNotFoundError / PermissionError as the
    filesystem raises them)."""
    info = fs.info(path)
    if info.get("type") == "directory":
        raise IsADirectoryError(21, "Is a directory", path)
    size = info.get("size")
    if size is None:
        size = fs.size(path)
    fetcher = _S3Fetcher(fs, path, info) if _is_s3(fs) else _GenericFetcher(fs, path)
    return RemoteReader(fetcher, int(size), path)


class _Stopped(Exception):
    pass


def fsspec_read_file(fobj):
    """True for a file opened for reading by an fsspec filesystem of the buffered kind (s3fs,
    gcsfs, adlfs, http files, ...): its bytes can be fetched with ranged reads too."""
    spec = sys.modules.get("fsspec.spec")
    return (spec is not None and isinstance(fobj, spec.AbstractBufferedFile)
            and getattr(fobj, "mode", None) == "rb" and isinstance(fobj.size, int)
            and not fobj.closed)


def reader_for_file(fobj):
    """A RemoteReader over the object behind an fsspec file (at the file's position); the caller
    puts the file's position after what was consumed with ``fobj.seek(reader.tell())``."""
    fs = fobj.fs
    info = dict(getattr(fobj, "details", None) or {})
    if getattr(fobj, "version_id", None):
        info["VersionId"] = fobj.version_id
    fetcher = _S3Fetcher(fs, fobj.path, info) if _is_s3(fs) else _GenericFetcher(fs, fobj.path)
    reader = RemoteReader(fetcher, int(fobj.size), fobj.path)
    reader.seek(fobj.tell())
    reader._restart_at(reader.tell())
    return reader


class _S3Fetcher:
    """Ranged GETs through s3fs's client, streamed into the caller's memory."""

    stop = False

    def __init__(self, fs, path, info):
        self.fs = fs
        self.bucket, self.key, version = fs.split_path(path)
        self.kw = {}
        version = version or info.get("VersionId")
        if version:
            self.kw["VersionId"] = version
        elif info.get("ETag"):
            # every range comes from the same object even if it is replaced meanwhile
            self.kw["IfMatch"] = info["ETag"]

    async def _get_into(self, start, view):
        import asyncio

        end = start + len(view)
        off = 0
        attempts = 0
        while off < len(view):
            resp = await self.fs._call_s3(
                "get_object", Bucket=self.bucket, Key=self.key,
                Range="bytes=%d-%d" % (start + off, end - 1), **self.kw)
            body = resp["Body"]
            try:
                while off < len(view):
                    if self.stop:
                        raise _Stopped()
                    chunk = await body.read(min(1 << 20, len(view) - off))
                    if not chunk:
                        break
                    view[off:off + len(chunk)] = chunk
                    off += len(chunk)
                else:
                    break
            except (OSError, asyncio.TimeoutError, _payload_errors()):
                attempts += 1
                if attempts > 3:
                    raise
                continue
            finally:
                body.close()
            attempts += 1
            if attempts > 3:
                break
        return off

    def submit(self, start, view):
        return _run(self.fs, self._get_into(start, view))


def _payload_errors():
    try:
        import aiohttp
        return aiohttp.ClientPayloadError
    except ImportError:  # pragma: no cover
        return OSError


class _GenericFetcher:
    stop = False
    _pool = None
    _lock = threading.Lock()

    def __init__(self, fs, path):
        self.fs = fs
        self.path = path

    def _get_into(self, start, view):
        if self.stop:
            raise _Stopped()
        data = self.fs.cat_file(self.path, start=start, end=start + len(view))
        n = min(len(data), len(view))
        view[:n] = memoryview(data)[:n]
        return n

    def submit(self, start, view):
        with _GenericFetcher._lock:
            if _GenericFetcher._pool is None:
                _GenericFetcher._pool = concurrent.futures.ThreadPoolExecutor(
                    READ_CONNECTIONS, thread_name_prefix="fastjoblib-fetch")
        return _GenericFetcher._pool.submit(self._get_into, start, view)


class RemoteReader:
    """A read-only, seekable file object over a remote object of known size."""

    def __init__(self, fetcher, size, name):
        self._fetcher = fetcher
        self.size = size
        self.name = name
        self._pos = 0
        self._buf = memoryview(b"")
        self._buf_start = 0
        self._ahead = collections.deque()  # (start, bytearray, future), contiguous
        self._next = 0                     # where the next read-ahead block starts
        self._block = READ_BLOCK_MIN
        self.closed = False

    # -- plumbing
    def _schedule(self, depth=READ_AHEAD):
        while len(self._ahead) < depth and self._next < self.size:
            n = min(self._block, self.size - self._next)
            self._block = min(self._block * 2, READ_BLOCK)
            block = bytearray(n)
            fut = self._fetcher.submit(self._next, memoryview(block))
            self._ahead.append((self._next, block, fut))
            self._next += n

    def _drop_ahead(self):
        # (read-ahead blocks are our own buffers, kept alive by their fetches: nothing to wait
        # for; a fetch not started yet is cancelled)
        for _, _, fut in self._ahead:
            fut.cancel()
        self._ahead.clear()

    def _restart_at(self, pos):
        self._drop_ahead()
        self._buf = memoryview(b"")
        self._buf_start = pos
        self._next = pos
        self._block = READ_BLOCK_MIN

    def _advance(self):
        """Make the next read-ahead block the current buffer (blocks until it arrived). The
        first block after a (re)start is fetched alone; read-ahead starts once reading proves
        sequential (a stream of one big array then costs one small request besides its ranges)."""
        first = not self._ahead
        if first:
            self._schedule(depth=1)
        start, block, fut = self._ahead.popleft()
        got = fut.result()
        self._buf = memoryview(block)[:got]
        self._buf_start = start
        if got < len(block):
            # the object is shorter than its listed size (replaced or truncated meanwhile)
            self._drop_ahead()
            self._next = self.size = start + got
        if not first:
            self._schedule()

    def _copy_buffered(self, view):
        i = self._pos - self._buf_start
        if 0 <= i < len(self._buf):
            n = min(len(view), len(self._buf) - i)
            view[:n] = self._buf[i:i + n]
            self._pos += n
            return n
        return 0

    def _parallel_into(self, view):
        """Fetch view's bytes (starting at self._pos) in concurrent ranges straight into it."""
        start = self._pos
        total = len(view)
        count = max(1, min(READ_CONNECTIONS, total // READ_RANGE_MIN))
        step = min(-(-total // count), READ_RANGE_MAX)
        ranges = [(off, min(step, total - off)) for off in range(0, total, step)]
        self._buf = memoryview(b"")
        self._next = self._buf_start = start + total
        self._block = READ_BLOCK_MIN
        pending = collections.deque()
        got = {}
        it = iter(ranges)
        try:
            for off, n in it:
                pending.append((off, n, self._fetcher.submit(start + off, view[off:off + n])))
                if len(pending) >= READ_CONNECTIONS:
                    break
            # the stream after the array (often only its last opcodes) is fetched meanwhile
            self._schedule(depth=1)
            while pending:
                off, n, fut = pending.popleft()
                got[off] = fut.result()
                nxt = next(it, None)
                if nxt is not None:
                    o2, n2 = nxt
                    pending.append((o2, n2, self._fetcher.submit(start + o2, view[o2:o2 + n2])))
        except BaseException:
            # These fetches write into the caller's memory (the new array, freed once the load
            # fails): stop them and wait until every one has finished, whatever else arrives.
            self._fetcher.stop = True
            try:
                for _, _, fut in pending:
                    while True:
                        try:
                            concurrent.futures.wait([fut])
                            break
                        except BaseException:
                            continue
            finally:
                self._fetcher.stop = False
            raise
        # short only when the object ended early: count the contiguous prefix that arrived
        done = 0
        for off, n in ranges:
            done += got[off]
            if got[off] < n:
                self._restart_at(start + done)
                self.size = start + done
                break
        self._pos = start + done
        return done

    # -- file object API
    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self._pos

    def seek(self, offset, whence=0):
        if whence == 0:
            pos = offset
        elif whence == 1:
            pos = self._pos + offset
        elif whence == 2:
            pos = self.size + offset
        else:
            raise ValueError("invalid whence (%r)" % (whence,))
        if pos < 0:
            raise ValueError("negative seek position %r" % (pos,))
        self._pos = pos
        return self._pos

    def _ensure(self):
        """Make the current buffer cover self._pos; False at the end of the object."""
        while not (self._buf_start <= self._pos < self._buf_start + len(self._buf)):
            if self._pos >= self.size:
                return False
            if not (self._ahead and self._ahead[0][0] <= self._pos < self._next):
                self._restart_at(self._pos)
            self._advance()
        return True

    def readinto(self, b):
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        view = memoryview(b).cast("B")
        n = len(view)
        done = self._copy_buffered(view)
        while done < n and self._pos < self.size:
            rest = min(n - done, self.size - self._pos)
            if rest >= LARGE_READ:
                # blocks already in flight inside the region are used, the rest goes in parallel
                while self._ahead and self._ahead[0][0] == self._pos and \
                        self._ahead[0][0] + len(self._ahead[0][1]) <= self._pos + rest:
                    self._advance_keep()
                    done += self._copy_buffered(view[done:])
                    rest = min(n - done, self.size - self._pos)
                if rest >= LARGE_READ:
                    self._drop_ahead()
                    got = self._parallel_into(view[done:done + rest])
                    done += got
                    if got < rest:
                        break
                    continue
            if not self._ensure():
                break
            done += self._copy_buffered(view[done:])
        return done

    def _advance_keep(self):
        """Like _advance, without scheduling more read-ahead (a large read follows)."""
        start, block, fut = self._ahead.popleft()
        got = fut.result()
        self._buf = memoryview(block)[:got]
        self._buf_start = start
        if got < len(block):
            self._drop_ahead()
            self._next = self.size = start + got

    def read(self, n=-1):
        if n is None or n < 0:
            n = max(self.size - self._pos, 0)
        out = bytearray(min(n, max(self.size - self._pos, 0)))
        got = self.readinto(out)
        del out[got:]
        return bytes(out)

    def readline(self, limit=-1):
        parts = []
        total = 0
        while (limit is None or limit < 0 or total < limit) and self._ensure():
            i = self._pos - self._buf_start
            chunk = self._buf[i:]
            if limit is not None and limit >= 0:
                chunk = chunk[:limit - total]
            data = bytes(chunk)
            j = data.find(b"\n")
            if j >= 0:
                data = data[:j + 1]
            parts.append(data)
            total += len(data)
            self._pos += len(data)
            if j >= 0:
                break
        return b"".join(parts)

    def close(self):
        if not self.closed:
            self._drop_ahead()
            self._buf = memoryview(b"")
            self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
