"""Targets: where the bytes of a dump go. Today: a local path, replaced atomically.

``atomic_write(filename, write, durable=False)`` calls ``write(fd)`` on a new temporary file beside
the target and, once it is complete, puts it in the target's place:

* the target exists: on Linux the temporary and the target are *exchanged*
  (``renameat2(RENAME_EXCHANGE)``, ``_core._exchange``) and the old file, now at the temporary's
  name, is unlinked (the name at once; the freeing of its pages and blocks, tens of ms for a big
  file, on a releaser thread that closes an O_PATH descriptor held across the unlink). A rename over an existing file would make ext4 (its replace-via-rename
  heuristic, ``auto_da_alloc``) and btrfs start writeback of the whole new file and wait for it;
  an exchange does not. Where the exchange is unavailable (any OSError from it: EINVAL or
  EOPNOTSUPP from the filesystem, ENOSYS from the kernel or a platform without the call, ENOENT
  when the target vanished meanwhile), a plain ``os.replace`` does the job as before.
* no target yet: ``os.replace``.

Before the new file is written, the old file's *clean* cached pages are dropped
(``posix_fadvise(DONTNEED)``, ``_drop_clean_pages``): a big old file (>= 16 MiB) whose pages the
kernel has written back (``cachestat(2)`` shows none dirty or under writeback; on kernels before
6.5, without cachestat, a file last modified longer ago than the kernel's dirty expiry plus its
writeback interval). Truncating in place (``open(filename, 'wb')``, joblib, pickle) frees those
pages first and writes into them; a new file otherwise needs as many pages again from free memory.
On a virtual machine whose host takes back free guest memory (free page reporting: Firecracker,
crosvm, QEMU's ``free-page-reporting``), every such page costs the host a page fault on first use:
a 256 MiB dump went from 700 ms to 85 ms on this project's machine, dumping once every few
seconds (joblib: 308 ms). Dirty pages are left alone: dropping them would start their writeback,
and the unlink after the swap discards them unwritten. Skipped on tmpfs and ramfs (the pages are
the file). The old file's data on disk is untouched, so the guarantees below hold; a concurrent
reader of the old file reads it from disk instead of the cache.

Guarantees (tests/test_atomic.py, tests/test_target.py, on tmpfs and ext4/xfs/btrfs loop mounts):
an exception, KeyboardInterrupt or SIGINT before the swap leaves the old file intact and removes
the temporary; a concurrent reader opens the complete old or the complete new file; the new file
gets what ``open(filename, 'wb')`` would have given it (the old file's mode, its owner when
permitted, ``0o666 & ~umask`` for a new file; a symlink is written through). One window is new
with the exchange: a process killed (SIGKILL, power cut) between the exchange and the unlink leaves
the old contents under the temporary's name (``.NAME.<12 hex>.fjtmp`` beside the target), which is
never cleaned up automatically (another process may be writing a temporary of that pattern).

``durable=True`` fsyncs the file before the swap and the directory after it (and after the unlink),
so the new file survives a power cut once the call returns. Default: neither, like joblib and
pickle: the data sits in the page cache until the kernel writes it back.
"""
import errno
import os
import secrets
import stat

# errnos of an fsync on a directory that the filesystem does not support (nothing to make durable)
_DIR_FSYNC_UNSUPPORTED = (errno.EINVAL, errno.EBADF, errno.ENOTSUP)


def _exchange(a, b):
    """Swap the directory entries a and b atomically; OSError where impossible."""
    from . import _core

    _core._exchange(a, b)


def _fail_like_open(exc_type, err, filename):
    return exc_type(err, os.strerror(err), filename)


def _check_target(filename):
    """(path to write, its stat or None), with open(filename, 'wb')'s errors for a bad target."""
    if filename == "":
        raise _fail_like_open(FileNotFoundError, errno.ENOENT, filename)
    # Write through a symlink to its target, as open() would, instead of replacing the link.
    target = os.path.realpath(filename) if os.path.islink(filename) else filename
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise _fail_like_open(IsADirectoryError, errno.EISDIR, filename)
        if not os.access(target, os.W_OK):
            raise _fail_like_open(PermissionError, errno.EACCES, filename)
    return target, st


def _open_temporary(directory, base, filename, made):
    """(name, fd) of a new temporary. The name is appended to `made` before the file is created,
    so an interrupt between the creation and the caller's assignment still finds it."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = os.path.join(directory, ".%s.%s.fjtmp" % (base, secrets.token_hex(6)))
        made.append(tmp)
        try:
            return tmp, os.open(tmp, flags, 0o666)
        except FileExistsError:
            made.pop()  # someone else's file
            continue
        except OSError as exc:
            raise type(exc)(exc.errno, exc.strerror, filename) from None
    raise _fail_like_open(FileExistsError, errno.EEXIST, filename)  # pragma: no cover


_DROP_MIN = 16 << 20  # old files smaller than this: not worth a system call
_RAM_FS = (0x01021994, 0x858458F6)  # TMPFS_MAGIC, RAMFS_MAGIC: no disk behind the pages
_expiry = None


def _writeback_expiry():
    """Seconds after which the kernel has written a dirty page back (dirty_expire_centisecs +
    dirty_writeback_centisecs, defaults 30 s + 5 s), plus a margin; read once."""
    global _expiry
    if _expiry is None:
        total = 0.0
        for name, default in (("dirty_expire_centisecs", 3000),
                              ("dirty_writeback_centisecs", 500)):
            try:
                with open("/proc/sys/vm/" + name) as f:
                    total += int(f.read().split()[0]) / 100
            except (OSError, ValueError, IndexError):
                total += default / 100
        _expiry = total + 5.0
    return _expiry


def _drop_clean_pages(target, st):
    """Drop the old file's cached pages when they are all clean (module docstring). Returns
    whether it did; never raises an OSError (an optimisation only)."""
    if (st is None or not stat.S_ISREG(st.st_mode) or st.st_size < _DROP_MIN
            or not hasattr(os, "posix_fadvise")):
        return False
    from . import _core

    try:
        fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:  # unreadable (a write-only file), vanished, ...
        return False
    try:
        if _core._fs_magic(fd) in _RAM_FS:
            return False
        page = os.sysconf("SC_PAGE_SIZE")
        try:
            cached, dirty, writeback = _core._cachestat(fd)
        except OSError:  # no cachestat (Linux < 6.5): written back once old enough
            import time

            if time.time() - os.fstat(fd).st_mtime < _writeback_expiry():
                return False
        else:
            if cached * page < _DROP_MIN or dirty or writeback:
                return False
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _fsync_directory(directory):
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
    dfd = os.open(directory or os.curdir, flags)
    try:
        os.fsync(dfd)
    except OSError as exc:
        if exc.errno not in _DIR_FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(dfd)


def atomic_write(filename, write, durable=False):
    """Call write(fd) on a new temporary file beside `filename`, then put it in its place
    (exchange + unlink of the old file where possible, else a rename; see the module docstring).

    On any exception before the swap, KeyboardInterrupt included, the temporary is removed and
    the exception re-raised; the target is untouched.
    """
    target, st = _check_target(filename)
    directory, base = os.path.split(target)
    _drop_clean_pages(target, st)
    fd = -1
    tmp = None
    made = []
    try:
        tmp, fd = _open_temporary(directory, base[:200], filename, made)
        if st is not None:
            os.fchmod(fd, stat.S_IMODE(st.st_mode))
            if hasattr(os, "fchown") and (st.st_uid, st.st_gid) != (os.getuid(), os.getgid()):
                try:
                    os.fchown(fd, st.st_uid, st.st_gid)
                except OSError:
                    pass
        write(fd)
        if durable:
            os.fsync(fd)
        os.close(fd)
        fd = -1
        exchanged = False
        if st is not None:
            try:
                _exchange(tmp, target)
                exchanged = True
            except OSError:
                pass
        if exchanged:
            # the old file is now at `tmp`: unlinking it is the cleanup below too, so an
            # interrupt landing anywhere from here on leaves the new file in place
            _unlink_old(tmp, target, filename)
        else:
            os.replace(tmp, target)
        tmp = None
        made = None
        if durable:
            _fsync_directory(directory)
    except BaseException:
        # (an interrupt can land between a call and the assignment after it: every step of the
        # cleanup tolerates an already-closed fd or an already-renamed / unlinked temporary;
        # before the swap `tmp` is the partial new file, after an exchange the old file)
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass
        if tmp is None and made:  # interrupted between the file's creation and the assignment
            tmp = made[-1]
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise


def _unlink_old(tmp, target, filename):
    # The old file's name goes now; its pages and blocks are freed when the inode's last
    # reference goes, which for a big file on ext4 or btrfs takes tens of milliseconds (a dirty
    # 256 MiB file: 20-70 ms). An O_PATH descriptor held across the unlink moves that work to
    # its close, which the releaser thread does off the caller's path.
    keep = _hold(tmp)
    try:
        os.unlink(tmp)
    except (IsADirectoryError, PermissionError):
        _close_quietly(keep)
        # a directory was put at the target's name since it was checked: swap back, so the
        # directory keeps its name; the new file at `tmp` is removed by the caller's cleanup
        if os.path.isdir(tmp) and not os.path.islink(tmp):
            _exchange(tmp, target)
            raise _fail_like_open(IsADirectoryError, errno.EISDIR, filename) from None
        raise
    except BaseException:
        _close_quietly(keep)
        raise
    _release_later(keep)


def _hold(path):
    """An O_PATH descriptor of path itself (no permission needed, a symlink not followed), or
    -1 where there is none."""
    flags = getattr(os, "O_PATH", 0)
    if not flags:
        return -1
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return -1


def _close_quietly(fd):
    if fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass


class _Releaser:
    """Closes held descriptors of replaced files on one daemon thread, started at first use and
    kept (the thread count of the process stays put after it). At most MAX_PENDING wait: beyond
    that the caller closes its own, so a tight loop of dumps never holds more than a few old
    files' blocks. A forked child closes the ones it inherited at once (cheap: the parent still
    holds them); descriptors still queued at exit are closed by the kernel."""

    MAX_PENDING = 2

    def __init__(self):
        import threading

        self._cond = threading.Condition()
        self._queue = []
        self._busy = False
        self._thread = None

    def submit(self, fd):
        with self._cond:
            if len(self._queue) < self.MAX_PENDING:
                self._queue.append(fd)
                fd = -1
                if self._thread is None:
                    self._start()
                self._cond.notify()
        _close_quietly(fd)  # (the releaser is behind, or could not start)

    def _start(self):
        import threading

        t = threading.Thread(target=self._run, name="fastjoblib-releaser", daemon=True)
        try:
            t.start()
        except RuntimeError:  # interpreter shutting down / no more threads
            fds, self._queue = self._queue, []
            for fd in fds:
                _close_quietly(fd)
            return
        self._thread = t

    def _run(self):
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                # (taken off the queue before it is closed: the queue only ever holds open
                # descriptors, so a fork never closes a number already reused in the child)
                fd = self._queue.pop(0)
                self._busy = True
            _close_quietly(fd)
            with self._cond:
                self._busy = False

    def after_fork_in_child(self):
        import threading

        fds, self._queue = self._queue, []
        self._cond = threading.Condition()
        self._busy = False
        self._thread = None
        for fd in fds:
            _close_quietly(fd)

    def drain(self):
        """Wait until every queued descriptor is closed (tests)."""
        import time

        while True:
            with self._cond:
                if not self._queue and not self._busy:
                    return
            time.sleep(0.001)


_releaser = None


def _release_later(fd):
    global _releaser
    if fd < 0:
        return
    if _releaser is None:
        _releaser = _Releaser()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_releaser.after_fork_in_child)
    _releaser.submit(fd)
