"""Provenance records: the environment a file was written in, stored inside the pickle stream.

``fastjoblib.dump`` (``provenance=True``, the default) passes :func:`make_record` to
``_core.dump(..., trailer=make_record)``. After the object, the C pickler calls it with the
frozenset of the top-level module names of every global it wrote (nested object-array streams
included), saves the returned ``dict`` of ``str -> str``, then writes ``POP`` and ``STOP``. Every
unpickler (stdlib ``pickle``, stock ``joblib.load``) pushes the record and drops it again: the
loaded object is exactly the one it would be without the record.

``fastjoblib.load`` passes a list as ``_core.load(..., trailer=lst)``; the object dropped by a POP
immediately before the final STOP lands in it, and :func:`check_record` compares the recorded
versions with the installed ones, warning with :class:`VersionMismatchWarning` when the
major.minor differ.

A record looks like::

    {'fastjoblib.provenance': '1', 'python': '3.11.7', 'numpy': '2.4.6', 'fastjoblib': '0.1.0',
     'byteorder': 'little', 'created': '2026-11-26T11:45:03+00:00', 'pkg:sklearn': '1.7.2'}

The record is data read from the file: checking it never imports a module named in it.
"""
import datetime
import os
import re
import sys
import warnings
from typing import Optional

__all__ = ["VersionMismatchWarning", "make_record", "check_record", "as_record", "RECORD_KEY"]

RECORD_KEY = "fastjoblib.provenance"
RECORD_FORMAT = "1"
PKG_PREFIX = "pkg:"

_MAX_PACKAGES = 64      # pkg: entries written (a model referencing more is unusual)
_MAX_VALUE = 64         # characters of a version string kept
_MAX_CHECKED = 256      # record entries looked at on load (a hostile record can be large)

# Top-level names never recorded: the interpreter's own modules and the ones with their own key.
_NOT_PACKAGES = frozenset(sys.stdlib_module_names) | {
    "__main__", "__builtin__", "builtins", "numpy", "fastjoblib", "__mp_main__",
}

_MAJOR_MINOR = re.compile(r"\s*v?(\d+)\.(\d+)")


class VersionMismatchWarning(UserWarning):
    """A file records a major.minor version of a package (or of Python / NumPy) that differs from
    the installed one. Attributes: ``package``, ``recorded``, ``installed``."""

    def __init__(self, message, package=None, recorded=None, installed=None):
        super().__init__(message)
        self.package = package
        self.recorded = recorded
        self.installed = installed


# ------------------------------------------------------------------------------------------------
# versions of installed packages (never importing anything)

def _python_version():
    return sys.version.split()[0]  # platform.python_version() without importing platform


def _clean(v):
    """`v` as a plain ``str`` fit for the record, or None. A ``str`` subclass (``torch.__version__``
    is a ``TorchVersion``) is copied to an exact ``str`` without calling any of its methods; any
    other object (a ``packaging`` ``Version``, ...) goes through ``str()`` and is kept only when
    the text looks like a version (starts with a digit, or ``v`` and a digit). Never raises."""
    if v is None:
        return None
    try:
        if isinstance(v, str):
            s = str.__str__(v)  # exact str, whatever the subclass overrides
        else:
            s = str(v)
            if not isinstance(s, str):
                return None
            s = str.__str__(s)
            if not _MAJOR_MINOR.match(s) and not s[:1].isdigit():
                return None
    except Exception:  # an odd __str__
        return None
    if s and len(s) <= _MAX_VALUE and s.isprintable():
        return s
    return None


UNKNOWN = "unknown"  # recorded for a package whose __version__ exists but cannot be read


_dist_cache: dict[str, Optional[str]] = {}  # top-level module name -> version str or None (metadata lookups)


def _metadata_version(name):
    """Version of the installed distribution named like top-level module `name`, or None.
    (A direct lookup, about 0.2 ms; importlib.metadata.packages_distributions() would map module
    names to other distribution names but scans every installed distribution, ~150 ms.)"""
    try:
        return _dist_cache[name]
    except KeyError:
        pass
    try:
        from importlib import metadata
        version = _clean(metadata.version(name))
    except Exception:  # PackageNotFoundError, broken metadata, odd names
        version = None
    if len(_dist_cache) < 4096:
        _dist_cache[name] = version
    return version


def installed_version(name):
    """The installed version of top-level module `name`: its ``__version__`` when it is imported,
    else its distribution's metadata version, else None. Never imports `name`, never raises.
    An imported module whose ``__version__`` exists but cannot be read (the attribute raises, or
    its value is not a version) and which has no distribution metadata gives ``UNKNOWN``."""
    if name == "python":
        return _python_version()
    mod = sys.modules.get(name)
    unreadable = False
    if mod is not None:
        try:
            raw = getattr(mod, "__version__", None)
        except Exception:  # a lazy module whose attribute access fails
            raw, unreadable = None, True
        v = _clean(raw)
        if v is not None:
            return v
        unreadable = unreadable or raw is not None
    v = _metadata_version(name)
    if v is None and unreadable:
        return UNKNOWN
    return v


# ------------------------------------------------------------------------------------------------
# dump side

def _module_version(name):
    """__version__ of the imported module `name` as a plain str, or None. Never raises."""
    try:
        return _clean(getattr(sys.modules.get(name), "__version__", None))
    except Exception:
        return None


def _fastjoblib_version():
    return _module_version("fastjoblib") or UNKNOWN


def _created():
    """UTC time of the dump, ISO 8601 to the second. SOURCE_DATE_EPOCH (the reproducible-builds
    convention) fixes it, so that two dumps of the same object can be byte-identical."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = None
    if epoch:
        try:
            when = datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc)
        except (ValueError, OverflowError, OSError):
            when = None
    if when is None:
        when = datetime.datetime.now(datetime.timezone.utc)
    return when.isoformat(timespec="seconds")


def make_record(modules):
    """The provenance record of a dump whose globals come from the top-level modules `modules`
    (an iterable of str). Returns a small dict of str -> str."""
    rec = {
        RECORD_KEY: RECORD_FORMAT,
        "python": _python_version(),
        "numpy": (_module_version("numpy") or UNKNOWN) if "numpy" in sys.modules else "none",
        "fastjoblib": _fastjoblib_version(),
        "byteorder": sys.byteorder,
        "created": _created(),
    }
    n = 0
    for name in sorted(m for m in modules if type(m) is str):
        if n >= _MAX_PACKAGES:
            break
        if name in _NOT_PACKAGES or name.startswith("_"):
            continue
        try:
            v = installed_version(name)
        except Exception:  # belt and braces: provenance never fails a dump
            v = UNKNOWN
        if v is not None:
            rec[PKG_PREFIX + name] = v
            n += 1
    return rec


# ------------------------------------------------------------------------------------------------
# load side

def as_record(obj):
    """`obj` if it is a provenance record (a dict of str -> str with the record key), else None.
    Accepts any mapping-like dict, e.g. what a static walk of the stream rebuilt."""
    if type(obj) is not dict or not isinstance(obj.get(RECORD_KEY), str):
        return None
    if len(obj) > 4 * _MAX_CHECKED:
        return None
    for k, v in obj.items():
        if type(k) is not str or type(v) is not str:
            return None
    return obj


def _major_minor(v):
    m = _MAJOR_MINOR.match(v)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _stacklevel():
    """warnings.warn stacklevel pointing at the first caller outside the fastjoblib package."""
    here = os.path.dirname(os.path.abspath(__file__))
    f = sys._getframe(1)
    level = 1
    while f is not None:
        fn = f.f_code.co_filename
        if not (fn.startswith(here + os.sep) or fn == __file__):
            return level
        f = f.f_back
        level += 1
    return 1


def mismatches(record):
    """[(package, recorded, installed)] for the record's entries whose major.minor differs from
    the installed version (python, numpy and every pkg: entry whose package is installed)."""
    rec = as_record(record)
    if rec is None:
        return []
    out = []
    for i, (key, recorded) in enumerate(rec.items()):
        if i >= _MAX_CHECKED:
            break
        if key in ("python", "numpy"):
            name = key
        elif key.startswith(PKG_PREFIX):
            name = key[len(PKG_PREFIX):]
        else:
            continue
        if not name or len(name) > 200:
            continue
        want = _major_minor(recorded)
        if want is None:
            continue
        installed = installed_version(name)
        if installed is None:
            continue
        have = _major_minor(installed)
        if have is not None and have != want:
            out.append((name, recorded, installed))
    return out


def check_record(record, filename=None):
    """Warn (VersionMismatchWarning, one per package) when the record's major.minor versions
    differ from the installed ones. Anything that is not a record is ignored silently."""
    found = mismatches(record)
    if not found:
        return
    where = f"{os.fsdecode(filename)!r} " if isinstance(filename, (str, bytes)) else "the file "
    level = _stacklevel()
    for name, recorded, installed in found:
        msg = (f"{where}was written with {name} {recorded} but {name} {installed} is installed "
               f"(major.minor differs): the loaded object may not work as it did when it was "
               f"saved")
        warnings.warn(VersionMismatchWarning(msg, name, recorded, installed), stacklevel=level)
