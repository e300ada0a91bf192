"""Atheris (libFuzzer) harness: fastjoblib's loaders and codec decoders on hostile bytes.

The first input byte picks the target (low 4 bits, modulo 10) and the mode (high bit):

  target 0     _core.loads(data)                pickle-compatible loader
  target 1     _core.load(data, trailer=[])     joblib-mode loader (provenance hook on)
  target 2     _core.load(data)                 joblib-mode loader
  target 3..9  codec (t - 3): bit 0x40 clear: _core._decompress(codec, data)
                              bit 0x40 set:   _core.load(data, codec=codec)
  mode 0x80 clear: data = the rest of the input, as is (raw; use a seed corpus, --make-corpus)
  mode 0x80 set:   the rest of the input is a mutation program applied to one of the built-in
                   real streams (truncate, flip, overwrite with boundary values, insert, delete,
                   splice), so that the run stays meaningful even when libFuzzer gets no
                   coverage feedback from the C extension (gcc builds: see README.md)

FJ_FUZZ_TRUSTED=1: every load runs under trusted= (the default allow-list plus the names the
trusted seeds need), and targets 0-2 mutate real pandas / NumPy / scikit-learn streams
(tests/fuzz_seeds.py: build_trusted_seeds) as well: the security boundary of docs/SECURITY.md.

Every input must load or raise an Exception; a crash (signal, sanitizer report), a BaseException
that is not an Exception, or a timeout (-timeout=N) is a finding.

    python fuzz/atheris_load.py --make-corpus fuzz/corpus
    python fuzz/atheris_load.py fuzz/corpus -timeout=10 -max_len=8192 -max_total_time=300
"""
import io
import pickle
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))  # fuzz_seeds

import atheris  # noqa: E402

with atheris.instrument_imports():
    import fastjoblib._provenance  # noqa: F401  (pure Python: instrumented)
from fastjoblib import _core  # noqa: E402
from fuzz_seeds import CODECS, build_seeds, build_trusted_seeds, seed_objects  # noqa: E402


def make_corpus(directory):
    from fastjoblib._provenance import make_record

    os.makedirs(directory, exist_ok=True)
    n = 0

    def put(selector, data):
        nonlocal n
        with open(os.path.join(directory, f"seed-{n:04d}"), "wb") as f:
            f.write(bytes([selector]) + data)
        n += 1

    for obj in seed_objects():
        for proto in range(6):
            try:
                put(0, _core.dumps(obj, proto))
            except Exception:
                pass
            buf = io.BytesIO()
            _core.dump(obj, buf, proto, trailer=make_record if proto % 2 else None)
            put(1 + proto % 2, buf.getvalue())
            if proto in (2, 5):
                for k, name in enumerate(CODECS):
                    put((3 + k) | (0x40 if proto == 5 else 0), _core._compress(name, buf.getvalue()))
    for sel in range(10):  # mutation-program mode, one starter per target
        for i in range(4):
            put(0x80 | sel | (0x40 if i % 2 else 0), bytes([i * 37 % 256, 5, i, 200, 3, 17]) * 3)
    print(f"{n} seeds written to {directory}")


_SEEDS = {}
_INTERESTING = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\xff\xff\xff\xff", b"\xff\xff\xff\x7f",
                b"\x00\x00\x00\x80", b"\xff" * 8, b"\x00" * 8, b"\x94", b"(", b".", b"0", b"\x95"]


def seeds():
    """plain pickle streams, joblib streams, {codec: compressed joblib streams}"""
    if not _SEEDS:
        plain, joblib, compressed = build_seeds(codec_stride=3)
        if _TRUSTED:
            plain = plain + TRUSTED_SEEDS
            joblib = joblib + TRUSTED_SEEDS
        _SEEDS["plain"], _SEEDS["joblib"] = plain, joblib
        _SEEDS.update(compressed)
    return _SEEDS


def mutate(fdp, pool):
    data = bytearray(pool[fdp.ConsumeIntInRange(0, len(pool) - 1)])
    for _ in range(fdp.ConsumeIntInRange(1, 6)):
        kind = fdp.ConsumeIntInRange(0, 6)  # an exhausted input gives 0: stop mutating
        if kind == 0:
            break
        n = len(data)
        pos = fdp.ConsumeIntInRange(0, max(n - 1, 0))
        if kind == 6:
            del data[pos:]
        elif kind == 1 and n:
            data[pos] ^= 1 << fdp.ConsumeIntInRange(0, 7)
        elif kind == 2:
            v = _INTERESTING[fdp.ConsumeIntInRange(0, len(_INTERESTING) - 1)]
            data[pos:pos + len(v)] = v
        elif kind == 3:
            data[pos:pos] = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 16))
        elif kind == 4:
            del data[pos:pos + fdp.ConsumeIntInRange(1, 16)]
        else:
            other = pool[fdp.ConsumeIntInRange(0, len(pool) - 1)]
            data[pos:] = other[fdp.ConsumeIntInRange(0, len(other)):]
    return bytes(data)


# FJ_FUZZ_AVOID_NUMPY_SETSTATE=1: load under a find_class policy that refuses numpy's
# _reconstruct / ndarray, so that a known NumPy crash (ndarray.__setstate__ of an object dtype
# with a list shorter than the shape writes out of bounds; reachable from any pickle loader, stdlib
# included) does not stop every run. The policy otherwise resolves globals like the default one.
_AVOID_NUMPY = os.environ.get("FJ_FUZZ_AVOID_NUMPY_SETSTATE") == "1"
_default_find_class = _core.Unpickler(io.BytesIO(b"")).find_class


def _policy(module, name):
    if module.startswith("numpy") and name in ("_reconstruct", "ndarray"):
        raise pickle.UnpicklingError(f"fuzz policy: {module}.{name} refused")
    return _default_find_class(module, name)


_KW = {"find_class": _policy} if _AVOID_NUMPY else {}
_TRUSTED = os.environ.get("FJ_FUZZ_TRUSTED") == "1"
TRUSTED_SEEDS, TRUSTED_NAMES = build_trusted_seeds() if _TRUSTED else ([], [])


def _kw(body):
    """Keyword arguments of one load: a fresh trusted= policy per input in FJ_FUZZ_TRUSTED mode."""
    if not _TRUSTED:
        return _KW
    from fastjoblib._trust import make_find_class
    policy = make_find_class(TRUSTED_NAMES)
    policy.budget_obj.set_input_size(len(body))
    return {"find_class": policy}

# FJ_FUZZ_STRUCTURED=1: every input is a mutation program (what a run without coverage feedback
# should use). FJ_FUZZ_STATS=path: outcome counts per target written there every 20000 inputs.
_STRUCTURED = os.environ.get("FJ_FUZZ_STRUCTURED") == "1"
_STATS_PATH = os.environ.get("FJ_FUZZ_STATS")
_stats = {}
_runs = 0


def _count(target, outcome):
    global _runs
    key = f"{target}:{outcome}"
    _stats[key] = _stats.get(key, 0) + 1
    _runs += 1
    if _STATS_PATH and _runs % 20000 == 0:
        with open(_STATS_PATH, "w") as f:
            f.write(f"runs {_runs}\n")
            for k in sorted(_stats):
                f.write(f"{k} {_stats[k]}\n")


def TestOneInput(data):
    if not data:
        return
    sel, body = data[0], data[1:]
    if _STRUCTURED:
        sel |= 0x80
    target = (sel & 0x0F) % 10
    via_load = bool(sel & 0x40)
    if sel & 0x80:
        s = seeds()
        fdp = atheris.FuzzedDataProvider(body)
        if target == 0:
            pool = s["plain"]
        elif target < 3:
            pool = s["joblib"]
        else:
            pool = s[CODECS[target - 3]]
        body = mutate(fdp, pool)
    name = ("loads", "load+trailer", "load")[target] if target < 3 else (
        ("load:" if via_load else "decompress:") + CODECS[target - 3])
    outcome = "ok"
    try:
        if target == 0:
            _core.loads(body, **_kw(body))
        elif target == 1:
            _core.load(body, trailer=[], **_kw(body))
        elif target == 2:
            _core.load(body, **_kw(body))
        elif via_load:
            _core.load(body, codec=CODECS[target - 3], **_kw(body))
        else:
            _core._decompress(CODECS[target - 3], body)
    except Exception as exc:
        outcome = type(exc).__name__
    if _STATS_PATH:
        _count(name, outcome)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--make-corpus":
        make_corpus(sys.argv[2])
        return
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
