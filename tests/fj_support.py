"""Helpers shared by the Python-layer tests (test_persist, test_atomic, test_target,
test_api_joblib_compat)."""
import joblib
import numpy as np

from fastjoblib import _compressors


# The file a failed dump must leave untouched: written by stock joblib.
PREVIOUS = {"version": 1, "w": np.arange(1000.0)}


class Bomb:
    """An object whose pickling raises the given exception (a dump that fails part-way)."""

    def __init__(self, exc):
        self.exc = exc

    def __reduce__(self):
        raise self.exc


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def write_previous(path):
    """Write PREVIOUS at path with stock joblib; return the file's bytes."""
    joblib.dump(PREVIOUS, path)
    return read_bytes(path)


def container(path_or_bytes):
    """(kind, level-revealing header bytes) of a dump, from its magic.

    zlib: the two header bytes (FLEVEL class); gzip: the XFL byte; bz2: 'BZh<level>'; lzma: props +
    dictionary size (follows the preset); others: the container only.
    """
    if isinstance(path_or_bytes, (bytes, bytearray)):
        data = bytes(path_or_bytes[:16])
    else:
        with open(path_or_bytes, "rb") as f:
            data = f.read(16)
    kind = _compressors.detect(data)
    if kind == "zlib":
        return kind, data[:2]
    if kind == "gzip":
        return kind, data[8:9]
    if kind == "bz2":
        return kind, data[:4]
    if kind == "lzma":
        return kind, data[:5]
    return kind, b""
