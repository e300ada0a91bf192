"""joblib.Memory store backend built on fastjoblib: ``fastjoblib.register_memory_backend()``
then ``joblib.Memory(location, backend="fastjoblib")``.

* a local directory: joblib's own local backend (same layout, same ``get_items`` / size limits /
  ``.gitignore``), with the cached outputs written by ``fastjoblib.dump`` to the path (atomic:
  a temporary beside the file, then exchanged or renamed; no separate temporary + rename step)
  and read by ``fastjoblib.load`` from the path (``mmap_mode`` honoured; the C unpickler reads
  straight from the descriptor);
* an fsspec URL (``s3://bucket/cache``, ``memory://cache``, ...): the same layout as keys under
  that prefix; outputs go through fastjoblib's URL targets (parallel multipart upload, aborted on
  failure; concurrent ranged reads), the small files (metadata.json, func_code.py) through the
  filesystem's own files. ``backend_options={"storage_options": {...}}`` reaches the filesystem.

The on-disk (on-store) format is joblib's, so a cache written with this backend is read by
joblib's local backend and the other way round.

Importing this module imports joblib (fastjoblib itself never needs it otherwise).
"""
import datetime
import os
import posixpath
import re
import time
import warnings
from pickle import PicklingError, UnpicklingError

from . import _remote

BACKEND_NAME = "fastjoblib"
_HASH_DIR = re.compile("[a-f0-9]{32}")


def register_memory_backend(name=BACKEND_NAME):
    """Register the fastjoblib store backend with joblib under `name` (default "fastjoblib"):
    ``joblib.Memory(location, backend=name)`` then caches through fastjoblib, with a local
    directory or an fsspec URL as location. Returns the backend class. Needs joblib."""
    from joblib import register_store_backend

    register_store_backend(name, FastjoblibStoreBackend)
    return FastjoblibStoreBackend


from joblib._store_backends import CacheItemInfo, CacheWarning, FileSystemStoreBackend  # noqa: E402
from joblib.logger import format_time  # noqa: E402

from . import _persist  # noqa: E402


def _backend_class():
    return FastjoblibStoreBackend


class FastjoblibStoreBackend(FileSystemStoreBackend):
    """joblib store backend writing and reading cached outputs with fastjoblib."""

    _fs = None
    storage_options = None

    # -- configuration
    def configure(self, location, verbose=1, backend_options=None):
        options = dict(backend_options or {})
        self.storage_options = options.pop("storage_options", None)
        if _remote.is_url(location):
            fs, path = _remote.get_fs(location, self.storage_options)
            if _remote.is_local(fs):
                location = path
            else:
                self._fs = fs
                self._root = path.rstrip("/")
        if self._fs is None:
            if self.storage_options is not None:
                raise ValueError("storage_options given for a local location %r"
                                 % (location,))
            return super().configure(location, verbose=verbose, backend_options=options)
        self.location = location.rstrip("/")
        self.compress = options.get("compress", False)
        mmap_mode = options.get("mmap_mode")
        if mmap_mode is not None:
            warnings.warn(
                "mmap_mode cannot be used with the remote location %s: items are loaded "
                "in memory. Option will be ignored." % (location,), stacklevel=2)
        self.mmap_mode = None
        self.verbose = verbose
        self.create_location(self.location)

    # -- remote primitives (the URL keeps its scheme in self.location; fs calls get paths)
    def _p(self, location):
        if location.startswith(self.location):
            return self._root + location[len(self.location):]
        return location

    def _url(self, location):
        return location  # locations are URLs already (os.path.join on the URL)

    def _open_item(self, f, mode):
        if self._fs is None:
            return open(f, mode)
        return self._fs.open(self._p(f), mode)

    def _item_exists(self, location):
        if self._fs is None:
            return os.path.exists(location)
        return self._fs.exists(self._p(location))

    def _move_item(self, src, dst):
        if self._fs is None:
            return super()._move_item(src, dst)
        self._fs.mv(self._p(src), self._p(dst))

    def create_location(self, location):
        if self._fs is None:
            return super().create_location(location)
        self._fs.makedirs(self._p(location), exist_ok=True)

    def clear_location(self, location):
        if self._fs is None:
            return super().clear_location(location)
        p = self._p(location)
        try:
            if self._fs.exists(p):
                self._fs.rm(p, recursive=True)
        except FileNotFoundError:
            pass
        self._fs.invalidate_cache()

    def _concurrency_safe_write(self, to_write, filename, write_func):
        if self._fs is None:
            return super()._concurrency_safe_write(to_write, filename, write_func)
        # an object store replaces an object atomically: no temporary + move (a copy there)
        write_func(to_write, filename)

    def get_items(self):
        if self._fs is None:
            return super().get_items()
        self._fs.invalidate_cache()
        try:
            found = self._fs.find(self._root, detail=True)
        except FileNotFoundError:
            return []
        groups = {}
        for path, info in found.items():
            parent = posixpath.dirname(path)
            if not _HASH_DIR.match(posixpath.basename(parent)):
                continue
            size, last = groups.get(parent, (0, None))
            stamp = _timestamp(info)
            if posixpath.basename(path) == "output.pkl" or last is None:
                last = stamp if stamp is not None else last
            groups[parent] = (size + int(info.get("size") or 0), last)
        items = []
        for parent, (size, last) in groups.items():
            when = datetime.datetime.fromtimestamp(last if last is not None else time.time())
            items.append(CacheItemInfo(self.location + parent[len(self._root):], size, when))
        return items

    # -- cached outputs: fastjoblib.dump / load on the path or URL
    def load_item(self, call_id, verbose=1, timestamp=None, metadata=None):
        full_path = os.path.join(self.location, *call_id)
        if verbose > 1:
            ts_string = (
                "{: <16}".format(format_time(time.time() - timestamp))
                if timestamp is not None else "")
            signature = os.path.basename(call_id[0])
            if metadata is not None and "input_args" in metadata:
                kwargs = ", ".join(
                    "{}={}".format(*item) for item in metadata["input_args"].items())
                signature += "({})".format(kwargs)
            msg = "[Memory]{}: Loading {}".format(ts_string, signature)
            if verbose < 10:
                print("{0}...".format(msg))
            else:
                print("{0} from {1}".format(msg, full_path))
        filename = os.path.join(full_path, "output.pkl")
        if not self._item_exists(filename):
            raise KeyError(
                "Non-existing item (may have been "
                "cleared).\nFile %s does not exist" % filename)
        mmap_mode = getattr(self, "mmap_mode", None)
        try:
            if self._fs is None:
                return _persist.load(filename, mmap_mode=mmap_mode)
            return _persist.load(filename, storage_options=self.storage_options)
        except (UnpicklingError, EOFError) as exc:
            # joblib's pure-Python unpickler mostly raises ValueError on a corrupted item, which
            # MemorizedResult.get() turns into its KeyError ("this folder is corrupted")
            raise ValueError("corrupted cache item %s: %s" % (filename, exc)) from exc

    def dump_item(self, call_id, item, verbose=1):
        try:
            item_path = os.path.join(self.location, *call_id)
            if not self._item_exists(item_path):
                self.create_location(item_path)
            filename = os.path.join(item_path, "output.pkl")
            if verbose > 10:
                print("Persisting in %s" % item_path)
            try:
                # atomic by itself (a temporary beside the file / an aborted upload)
                if self._fs is None:
                    _persist.dump(item, filename, compress=self.compress)
                else:
                    _persist.dump(item, filename, compress=self.compress,
                                  storage_options=self.storage_options)
            except PicklingError as e:
                warnings.warn(
                    "Unable to cache to disk: failed to pickle "
                    "output. In version 1.5 this will raise an "
                    f"exception. Exception: {e}.",
                    FutureWarning,
                )
        except Exception as e:  # noqa: BLE001 (joblib's behaviour: a warning)
            warnings.warn(
                "Unable to cache to disk. Possibly a race condition in the "
                f"creation of the directory. Exception: {e}.",
                CacheWarning,
            )

    def __repr__(self):
        return '{class_name}(location="{location}")'.format(
            class_name=self.__class__.__name__, location=self.location)



def _timestamp(info):
    for key in ("LastModified", "mtime", "last_modified", "created", "updated"):
        v = info.get(key)
        if v is None:
            continue
        if isinstance(v, datetime.datetime):
            return v.timestamp()
        if isinstance(v, (int, float)):
            return float(v)
        try:
            return datetime.datetime.fromisoformat(str(v)).timestamp()
        except ValueError:
            continue
    return None

