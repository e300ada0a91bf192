"""Truncated and byte-flipped variants (seeded) of real joblib files and pickles: each one loads
or raises an Exception; the process never dies, hangs or leaks a crash. Run it under the sanitizer
build too (see tools/devbuild.sh)."""
import io
import pickle
import random

import joblib
import numpy as np
import pytest

from corpus import corpus
from fastjoblib import _core

_SEED = 20261126


def _originals():
    c = corpus()
    objs = {
        "mixed": [c["dict"], c["shared"], c["recursive_dict"], c["str"], c["bytes"], c["set"],
                  c["frozenset"], c["tuple"], c["ordered_dict"], c["dataclass"], c["slots"]],
        "arrays": {k: c[k] for k in ("array_float64", "array_object", "array_f_order", "array_zero_d",
                                     "array_empty", "array_structured", "array_big_endian_f8",
                                     "array_matrix")},
        # (no scikit-learn model here: its Cython Tree.__setstate__ trusts the arrays it is given
        # and reads out of bounds on corrupted state, with stdlib pickle as well)
        "objects": [c["namedtuple"], c["enum"], c["getstate"], c["reduce"], c["datetime"], c["decimal"],
                    c["defaultdict"], c["deque"], c["counter"], c["complex"], c["ints"], c["floats"]],
    }
    out = {}
    for name, obj in objs.items():
        for proto in (2, 4, 5):
            b = io.BytesIO()
            joblib.dump(obj, b, protocol=proto)
            out[f"joblib-{name}-p{proto}"] = b.getvalue()
        for proto in (0, 1, 3, 5):
            try:
                out[f"pickle-{name}-p{proto}"] = pickle.dumps(obj, proto)
            except Exception:
                pass
    return out


class _NoPeek:
    def __init__(self, data):
        self._b = io.BytesIO(data)
        self.read = self._b.read
        self.readline = self._b.readline


def _try(fn):
    try:
        fn()
    except (Exception, RecursionError):
        return False
    return True


def _variants(data, rng, n_flip, n_trunc):
    for _ in range(n_trunc):
        yield data[: rng.randrange(len(data))]
    for _ in range(n_flip):
        b = bytearray(data)
        for _ in range(rng.choice((1, 1, 2, 3))):
            i = rng.randrange(len(b))
            b[i] = rng.choice((rng.randrange(256), b[i] ^ 0x80, 0xFF, 0x00, b[i] + 1 & 0xFF))
        yield bytes(b)


@pytest.mark.parametrize("name", sorted(_originals()))
def test_mutations_never_crash(name):
    data = _originals()[name]
    rng = random.Random(f"{_SEED}-{name}")
    n = 0
    for v in _variants(data, rng, n_flip=150, n_trunc=60):
        _try(lambda: _core.load(v))
        _try(lambda: _core.loads(v))
        n += 1
        if n % 4 == 0:  # the streaming paths too (slower)
            _try(lambda: _core.load(_NoPeek(v)))
            _try(lambda: _core.Unpickler(io.BytesIO(v)).load())
    assert n == 210


def test_random_garbage_never_crashes():
    rng = random.Random(_SEED)
    opcodes = bytes(range(0x20, 0x7f)) + bytes(range(0x80, 0x99))
    for _ in range(2000):
        n = rng.randrange(1, 40)
        v = bytes(rng.choice(opcodes) if rng.random() < 0.6 else rng.randrange(256) for _ in range(n))
        _try(lambda: _core.loads(v))
        _try(lambda: _core.load(v))


def test_allocation_failures_never_crash():
    """Fail the n-th allocation (CPython's _testcapi.set_nomemory) for each n in turn: every
    error path of the engine runs; each load raises (MemoryError or other) or succeeds."""
    _testcapi = pytest.importorskip("_testcapi")
    if not hasattr(_testcapi, "set_nomemory"):
        pytest.skip("no set_nomemory")
    b = io.BytesIO()
    joblib.dump({"a": np.arange(100.0), "o": np.array([1, "x"], dtype=object), "l": [1, (2, "s")]}, b)
    jb = b.getvalue()
    pk = pickle.dumps([{"k": (1, "s"), "f": 1.5}, {1, 2}, frozenset([3]), b"x" * 100, list(range(50))], 5)
    pk0 = pickle.dumps([{"k": (1, "s")}, "é", 10**30, 1.5], 0)
    cases = [(pk, _core.loads), (pk0, _core.loads), (jb, _core.load),
             (pk, lambda d: _core.Unpickler(io.BytesIO(d)).load()), (jb, lambda d: _core.load(_NoPeek(d)))]
    failures = 0
    for data, fn in cases:
        for i in range(300):
            _testcapi.set_nomemory(i, i + 1)
            try:
                fn(data)
            except MemoryError:
                failures += 1
            except Exception:
                pass
            finally:
                _testcapi.remove_mem_hooks()
    assert failures > 50  # the injection really hit the engine
