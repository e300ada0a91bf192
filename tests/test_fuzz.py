"""Fuzzing with a fixed budget, run by the default test command (and by CI's sanitizer pass).

Inputs are real streams (joblib dumps at every protocol with plain / object / big-endian arrays and
a provenance record, plain pickle streams, and every codec's compressed form of them) mutated by
hypothesis: truncation, byte flips, overwrites with boundary values (lengths 0x7f / 0xff /
0xffffffff ...), insertions, deletions and splices of two seeds. Targets:

  _core.loads(data)                    pickle-compatible loader
  _core.load(data[, trailer=[]])       joblib-mode loader on bytes input
  _core.load(data, codec=name)         joblib-mode loader through each codec's reader
  _core._decompress(name, data)        each codec's decoder alone (also with 1-byte reads)

Each input must either load or raise an Exception (never crash, never hang). A watchdog
(faulthandler, which needs no GIL) kills the process with all thread tracebacks when one call
takes over 10 s; the input being run is kept in a file named in the failure output.

The examples are derandomized: CI runs the same inputs on every change. Longer, coverage-guided
runs: fuzz/atheris_load.py (see fuzz/README.md).
"""
import faulthandler
import os
import sys
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastjoblib import _core
from fuzz_seeds import CODECS, build_seeds, build_trusted_seeds

UNDER_ASAN = "asan" in os.environ.get("LD_PRELOAD", "")
# per-test budget: ~5-10 s each on 2 shared cores normally; the sanitizer pass runs fewer
EXAMPLES = int(os.environ.get("FASTJOBLIB_FUZZ_EXAMPLES", 300 if UNDER_ASAN else 2500))
WATCHDOG_S = 10

FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck), print_blob=True)


# ------------------------------------------------------------------------------------------------
# seeds (tests/fuzz_seeds.py, shared with fuzz/atheris_load.py)

PLAIN, JOBLIB, COMPRESSED = build_seeds(codec_stride=5)
ALL = PLAIN + JOBLIB
TRUSTED_SEEDS, TRUSTED_NAMES = build_trusted_seeds()


# ------------------------------------------------------------------------------------------------
# mutations

_INTERESTING = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\xff\xff\xff\xff", b"\xff\xff\xff\x7f",
                b"\x00\x00\x00\x80", b"\xff" * 8, b"\x00" * 8, b"\x94", b"(", b".", b"0", b"\x95"]


@st.composite
def mutated(draw, seeds):
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "flip", "set", "insert", "delete", "splice"]))
        n = len(data)
        pos = draw(st.integers(0, max(n - 1, 0)))
        if kind == "truncate":
            del data[pos:]
        elif kind == "flip" and n:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            val = draw(st.sampled_from(_INTERESTING))
            data[pos:pos + len(val)] = val
        elif kind == "insert":
            data[pos:pos] = draw(st.one_of(st.sampled_from(_INTERESTING),
                                           st.binary(min_size=1, max_size=16)))
        elif kind == "delete":
            del data[pos:pos + draw(st.integers(1, 16))]
        elif kind == "splice":
            other = draw(st.sampled_from(seeds))
            a = draw(st.integers(0, len(other)))
            data[pos:] = other[a:]
    return bytes(data)


# ------------------------------------------------------------------------------------------------
# the watchdog

@pytest.fixture(scope="module")
def last_input():
    fd, path = tempfile.mkstemp(prefix="fastjoblib-fuzz-", suffix=".bin")
    yield fd, path
    os.close(fd)
    os.unlink(path)


def _run(last_input, func, data, *args, **kw):
    """func(data, ...) must return or raise an Exception within WATCHDOG_S seconds."""
    fd, path = last_input
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    faulthandler.dump_traceback_later(WATCHDOG_S, exit=True)
    try:
        func(data, *args, **kw)
    except Exception:
        pass
    except BaseException as exc:  # SystemExit, KeyboardInterrupt, ...: not an allowed outcome
        raise AssertionError(f"{type(exc).__name__} from input kept in {path}") from exc
    finally:
        faulthandler.cancel_dump_traceback_later()


def _load_mem(data, **kw):
    return _core.load(data, **kw)


# ------------------------------------------------------------------------------------------------
# targets

def test_seeds_load():
    for s in PLAIN:
        _core.loads(s)
    for s in JOBLIB:
        _core.load(s)
    for name, seeds in COMPRESSED.items():
        for s, orig in zip(seeds, JOBLIB[::5]):
            assert _core._decompress(name, s) == orig


@FUZZ
@given(data=mutated(ALL))
def test_fuzz_loads(last_input, data):
    _run(last_input, _core.loads, data)


@FUZZ
@given(data=mutated(JOBLIB + PLAIN[::3]))
def test_fuzz_load_joblib(last_input, data):
    _run(last_input, _load_mem, data)
    _run(last_input, _load_mem, data, trailer=[])


@FUZZ
@given(name=st.sampled_from(CODECS), data=st.data())
def test_fuzz_codec_decoders(last_input, name, data):
    # mostly this codec's own seeds, sometimes another codec's or a raw stream
    seeds = COMPRESSED[name] if data.draw(st.integers(0, 4)) else COMPRESSED[name] + JOBLIB[:3]
    blob = data.draw(mutated(seeds))
    _run(last_input, lambda b: _core._decompress(name, b), blob)
    if data.draw(st.booleans()):
        _run(last_input, lambda b: _core._decompress(name, b, chunk=7, inner_chunk=1), blob)
    _run(last_input, _load_mem, blob, codec=name)


def _load_trusted(data):
    import fastjoblib
    if data[:1] == b"\x80" and data.find(b"NumpyArrayWrapper") < 0:
        fastjoblib.loads(data, trusted=TRUSTED_NAMES)
    else:
        _core.load(data, find_class=_trust_policy())


def _trust_policy():
    from fastjoblib._trust import make_find_class
    return make_find_class(TRUSTED_NAMES)


def test_trusted_seeds_load():
    import fastjoblib
    for s in TRUSTED_SEEDS:
        fastjoblib.loads(s, trusted=TRUSTED_NAMES) if s.find(b"NumpyArrayWrapper") < 0 \
            else _core.load(s, find_class=_trust_policy())


@FUZZ
@given(data=mutated(TRUSTED_SEEDS))
def test_fuzz_trusted(last_input, data):
    """Mutated real pandas / NumPy / scikit-learn streams under trusted=: load or raise."""
    _run(last_input, _load_trusted, data)
