"""The compressor registry: name, magic prefix, file extension, default level.

Mirrors joblib's ``_COMPRESSORS`` (same names, prefixes, extensions and registration order, which
is also the order used for magic detection and for extension inference), plus ``zstd``, which is
fastjoblib's addition and comes last. The streams themselves are produced and consumed by the C
core (``_core.dump(..., codec=name)`` / ``_core.load(..., codec=name)``).

Imports nothing heavy: this module is loaded by ``import fastjoblib``.
"""
import operator
from typing import NamedTuple

LZ4_NOT_INSTALLED_ERROR = (
    "LZ4 is not installed. Install it with pip: https://python-lz4.readthedocs.io/"
)

# Pre-0.9.3 joblib z-files ("compat" container), checked before every registered prefix.
ZFILE_PREFIX = b"ZF"


class Compressor(NamedTuple):
    name: str
    prefix: bytes
    extension: str
    default_level: int  # what the stream is compressed with when the level is None (joblib's)


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


COMPRESSORS = {
    "zlib": Compressor("zlib", b"\x78", ".z", 3),
    "gzip": Compressor("gzip", b"\x1f\x8b", ".gz", 3),
    "bz2": Compressor("bz2", b"BZ", ".bz2", 9),
    "lzma": Compressor("lzma", b"\x5d\x00", ".lzma", 6),
    "xz": Compressor("xz", b"\xfd\x37\x7a\x58\x5a", ".xz", 6),
    "lz4": Compressor("lz4", b"\x04\x22\x4d\x18", ".lz4", 0),
    "zstd": Compressor("zstd", b"\x28\xb5\x2f\xfd", ".zst", 3),
}

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
    return _LEVEL_CHECKS[name](level)


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
