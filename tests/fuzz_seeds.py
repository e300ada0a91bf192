"""Seed streams for fuzzing, shared by tests/test_fuzz.py and fuzz/atheris_load.py.

Real streams: joblib dumps at every protocol (plain, object, big-endian, strided, structured and
Fortran arrays, a user class, a provenance record on odd protocols), plain pickle streams, and
every codec's compressed form of a sample of the joblib streams.
"""
import io

import numpy as np

from fastjoblib import _core
from fastjoblib._provenance import make_record

CODECS = ["zlib", "gzip", "bz2", "lzma", "xz", "lz4", "zstd"]


class Thing:
    def __init__(self, a):
        self.a = a


def seed_objects():
    return [
        {"a": np.arange(6, dtype="<i4"), "b": [1, 2.5, "x", b"y", None, True], "c": (1, 2)},
        [np.arange(5.0).reshape(5, 1)[::2], np.zeros((2, 3), dtype=">f8"), np.array(3.5)],
        np.array([{"k": 1}, "s", None, 2**70], dtype=object),
        {"s": {1, 2}, "f": frozenset({3}), "ba": bytearray(b"ab"), "big": 2**100, "neg": -5},
        np.array([(1, 2.0)], dtype=[("i", "<i2"), ("f", "<f4")]),
        [Thing(np.ones(3, dtype=np.uint8)), Thing("t"), np.asfortranarray(np.eye(3))],
        [np.asfortranarray(np.eye(3)), "héllo", 1.5, complex(1, 2)],
    ]


def build_seeds(codec_stride):
    """(plain pickle streams, joblib streams, {codec: compressed joblib[::codec_stride]})"""
    plain, joblib = [], []
    for obj in seed_objects():
        for proto in range(6):
            try:
                plain.append(_core.dumps(obj, proto))
            except Exception:
                pass
            buf = io.BytesIO()
            _core.dump(obj, buf, proto, trailer=make_record if proto % 2 else None)
            joblib.append(buf.getvalue())
    compressed = {name: [_core._compress(name, s) for s in joblib[::codec_stride]]
                  for name in CODECS}
    return plain, joblib, compressed


def trusted_seed_objects():
    """Real data of the kinds users load with trusted=: pandas frames, NumPy arrays, dtypes and
    random generators, a fitted scikit-learn pipeline (no Cython tree: its __setstate__ trusts
    its arrays, see docs/SECURITY.md)."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.RandomState(0)
    x = rng.normal(size=(40, 3))
    y = (x[:, 0] > 0).astype(int)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    frame = pd.DataFrame({"a": np.arange(5), "b": list("vwxyz"),
                          "t": pd.date_range("2024-01-01", periods=5, tz="UTC"),
                          "c": pd.Categorical(list("ababa"))})
    return [
        {"frame": frame, "series": frame["a"] * 1.5},
        {"rs": np.random.RandomState(1), "gen": np.random.default_rng(2),
         "dt": np.dtype([("a", "<i4"), ("b", "O"), ("c", "<f8", (2,))]),
         "m8": np.array([1, 2], dtype="m8[3s]"), "rec": np.zeros(2, dtype="i1,f4,S3")},
        {"model": model},
    ]


def build_trusted_seeds():
    """(streams, trusted names): pickle protocols 2 and 5 and joblib dumps of trusted_seed_objects,
    and the names a restricted load of them needs (as inspect reports them)."""
    from fastjoblib._inspect import inspect
    streams = []
    for obj in trusted_seed_objects():
        for proto in (2, 5):
            streams.append(_core.dumps(obj, proto))
            buf = io.BytesIO()
            _core.dump(obj, buf, proto)
            streams.append(buf.getvalue())
    names = set()
    for st in streams:
        names.update(inspect(st).get("needs_trusted", []))
    return streams, sorted(names)
