"""The codec registry: every codec declared once (``REGISTRY`` below).

Each entry: name, magic prefix, file extension, level range, default level, the Python package
it needs (None: built in), and whether the C engine compresses / decompresses it on several
threads. Read by the Python layer (this module, ``_persist``), the C dispatch (``setup.py``
generates ``fj_codec_table.h`` from this declaration: the table ``csrc/codec.c`` dispatches on),
the stubs (tests/test_registry.py checks their ``Literal`` lists against it), the CLI's help and
``bench``, and ``inspect`` (magic detection). See docs/ARCHITECTURE.md, "Adding a codec".

Mirrors joblib's ``_COMPRESSORS`` (same names, prefixes, extensions and registration order, which
is also the order used for magic detection and for extension inference), plus ``zstd``, which is
fastjoblib's addition and comes last. The streams themselves are produced and consumed by the C
core (``_core.dump(..., codec=name)`` / ``_core.load(..., codec=name)``).

Imports nothing heavy: this module is loaded by ``import fastjoblib``.
"""
import operator
from typing import NamedTuple


def missing_package_message(package, what=None):
    """The one wording for a missing optional package (dump, load, inspect, convert, bench)."""
    head = f"{what} needs" if what else "needs"
    return f"{head} the '{package}' package, which is not installed here: pip install {package}"


# joblib's own text (what stock joblib raises); fastjoblib raises the one wording above, with
# joblib's exception type (ValueError) for lz4.
JOBLIB_LZ4_NOT_INSTALLED_ERROR = (
    "LZ4 is not installed. Install it with pip: https://python-lz4.readthedocs.io/"
)
LZ4_NOT_INSTALLED_ERROR = missing_package_message("lz4", "lz4 compression")

# Pre-0.9.3 joblib z-files ("compat" container), checked before every registered prefix.
ZFILE_PREFIX = b"ZF"


class Compressor(NamedTuple):
    name: str
    prefix: bytes
    extension: str
    default_level: int  # what the stream is compressed with when the level is None (joblib's)
    min_level: int = 0
    max_level: int = 9
    package: "str | None" = None  # module the codec needs at run time (None: linked in)
    pip_name: "str | None" = None  # what to pip install for it
    threads: bool = True          # the C engine compresses on several threads
    c_name: str = ""              # C engine: fj_<c_name>_writer / fj_<c_name>_reader_threads


def _check_level_zlib(level):
    # joblib's BinaryZlibFile check (zlib and gzip): exact text, ints only (numpy ints rejected).
    if not isinstance(level, int) or not (1 <= level <= 9):
        raise ValueError(
            "'compresslevel' must be an integer between 1 and 9. "
            "You provided 'compresslevel={}'".format(level)
        )
    return int(level)


def _check_level_bz2(level):
    # bz2.BZ2File's range check, then BZ2Compressor's integer conversion.
    if not (1 <= level <= 9):
        raise ValueError("compresslevel must be between 1 and 9")
    return operator.index(level)


def _check_level_lzma(level):
    # lzma.LZMACompressor's preset converter: its rule and error text are the running
    # interpreter's ("an integer is required" before 3.14, "'float' object cannot be interpreted
    # as an integer" from 3.14), so let it raise: the conversion fails before any allocation.
    # From 3.14 it also accepts objects with __index__ (np.int64), as joblib then does.
    if not isinstance(level, int):
        import lzma
        lzma.LZMACompressor(preset=level)  # raises, or accepts an __index__ object (3.14)
        return operator.index(level)
    return int(level)


def _check_level_index(level):
    # lz4.frame (and our zstd): an integer conversion, errors as operator.index gives them.
    return operator.index(level)


# THE declaration (order = joblib's registration order = magic detection and extension order).
REGISTRY = (
    Compressor("zlib", b"\x78", ".z", 3, 1, 9, None, None, True, "zlib"),
    Compressor("gzip", b"\x1f\x8b", ".gz", 3, 1, 9, None, None, True, "gzip"),
    Compressor("bz2", b"BZ", ".bz2", 9, 1, 9, None, None, True, "bz2"),
    Compressor("lzma", b"\x5d\x00", ".lzma", 6, 0, 9, None, None, False, "lzma"),
    Compressor("xz", b"\xfd\x37\x7a\x58\x5a", ".xz", 6, 0, 9, None, None, True, "xz"),
    Compressor("lz4", b"\x04\x22\x4d\x18", ".lz4", 0, 0, 16, "lz4", "lz4", True, "lz4"),
    Compressor("zstd", b"\x28\xb5\x2f\xfd", ".zst", 3, 1, 22, "zstandard", "zstandard", True,
               "zstd"),
)

COMPRESSORS = {c.name: c for c in REGISTRY}
CODEC_NAMES = tuple(COMPRESSORS)

_LEVEL_CHECKS = {
    "zlib": _check_level_zlib,
    "gzip": _check_level_zlib,
    "bz2": _check_level_bz2,
    "lzma": _check_level_lzma,
    "xz": _check_level_lzma,
    "lz4": _check_level_index,
    "zstd": _check_level_index,
}

MAX_PREFIX_LEN = max([len(c.prefix) for c in COMPRESSORS.values()] + [len(ZFILE_PREFIX)])


def detect(first_bytes):
    """'compat', a registered compressor name, or 'not-compressed' (joblib's _detect_compressor)."""
    if first_bytes.startswith(ZFILE_PREFIX):
        return "compat"
    for name, comp in COMPRESSORS.items():
        if first_bytes.startswith(comp.prefix):
            return name
    return "not-compressed"


def infer_from_extension(filename):
    """The compressor whose extension ends `filename` (case-sensitive; the last match wins), or
    None."""
    method = None
    for name, comp in COMPRESSORS.items():
        if filename.endswith(comp.extension):
            method = name
    return method


def core_level(name, level):
    """The level to pass to ``_core`` for a resolved (method, level): -1 for the codec's default
    (level None), else the level after the same checks the joblib stream factory performs (so
    the same exception types and texts come out)."""
    if level is None:
        return -1
    return _LEVEL_CHECKS.get(name, _check_level_index)(level)


def missing_package(name):
    """The pip name of the package codec `name` needs and lacks here, else None (no import)."""
    import importlib.util

    spec = COMPRESSORS.get(name)
    if spec is None or spec.package is None:
        return None
    try:
        found = importlib.util.find_spec(spec.package) is not None
    except (ImportError, ValueError):
        found = False
    return None if found else spec.pip_name


def require_package(name):
    """Raise the one missing-package error if codec `name` needs a package that is not
    installed: ValueError for lz4 (joblib's type for it), ImportError otherwise."""
    pip = missing_package(name)
    if pip is None:
        return
    message = missing_package_message(pip, f"{name} compression")
    if name == "lz4":
        raise ValueError(message)
    raise ImportError(message, name=COMPRESSORS[name].package)


def codec_available(name):
    """Whether the C core can write/read `name`. Asks ``_core.codec_available`` when the core
    offers it; otherwise assumes the codecs of the contract, except lz4, which (like joblib)
    needs python-lz4 to be importable."""
    from . import _core

    query = getattr(_core, "codec_available", None)
    if query is not None:
        return bool(query(name))
    if name == "lz4":
        import importlib.util

        return importlib.util.find_spec("lz4") is not None
    return name in COMPRESSORS
