"""One wording for a missing codec package (which package, the pip command) in dump, load,
inspect and convert; joblib's exception type kept for lz4 (ValueError); a zstd dump warns once
that stock joblib needs register_zstd_with_joblib()."""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import fastjoblib
from fastjoblib import _zstd_joblib

PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(fastjoblib.__file__)))

CHILD = r"""
import sys
for m in ('zstandard', 'lz4', 'lz4.frame', 'lz4.block'):
    sys.modules[m] = None
import fastjoblib
from fastjoblib._cli import main

zst, lz4f, out = sys.argv[1], sys.argv[2], sys.argv[3]

def show(label, fn):
    try:
        fn()
        print(label, 'no error')
    except Exception as exc:
        print(label, type(exc).__name__, '|', exc)

show('dump-zstd', lambda: fastjoblib.dump([1], out + '.zst'))
show('dump-lz4', lambda: fastjoblib.dump([1], out + '.lz4'))
show('load-zstd', lambda: fastjoblib.load(zst))
show('load-lz4', lambda: fastjoblib.load(lz4f))
show('inspect-zstd', lambda: fastjoblib.inspect(zst))
show('inspect-lz4', lambda: fastjoblib.inspect(lz4f))
print('cli-inspect rc', main(['inspect', zst]))
print('cli-convert rc', main(['convert', zst, out + '.pkl']))
print('cli-convert-out rc', main(['convert', out + '.src.pkl', out + '.zst']))
"""


def test_one_wording_everywhere(tmp_path):
    pytest.importorskip("zstandard")
    pytest.importorskip("lz4")
    zst, lz4f = str(tmp_path / "a.zst"), str(tmp_path / "a.lz4")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", _zstd_joblib.ZstdJoblibWarning)
        fastjoblib.dump({"x": np.arange(10)}, zst)
    fastjoblib.dump({"x": np.arange(10)}, lz4f)
    fastjoblib.dump([1, 2], str(tmp_path / "o.src.pkl"))
    proc = subprocess.run([sys.executable, "-c", CHILD, zst, lz4f, str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=PKG_PARENT))
    assert proc.returncode == 0, proc.stderr
    got = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    zwant = "the 'zstandard' package, which is not installed here: pip install zstandard"
    lwant = "the 'lz4' package, which is not installed here: pip install lz4"
    assert got["dump-zstd"].startswith("ImportError |") and zwant in got["dump-zstd"]
    assert got["load-zstd"].startswith("ImportError |") and zwant in got["load-zstd"]
    assert got["inspect-zstd"].startswith("ImportError |") and zwant in got["inspect-zstd"]
    # joblib raises ValueError for a missing lz4: same type, our wording
    assert got["dump-lz4"].startswith("ValueError |") and lwant in got["dump-lz4"]
    assert got["load-lz4"].startswith("ValueError |") and lwant in got["load-lz4"]
    assert got["inspect-lz4"].startswith("ImportError |") and lwant in got["inspect-lz4"]
    assert got["cli-inspect"] == "rc 1" and got["cli-convert"] == "rc 1"
    assert got["cli-convert-out"] == "rc 1"
    err = proc.stderr
    assert err.count("pip install zstandard") == 3, err
    assert "not a readable joblib file" not in err


def test_zstd_dump_warns_once_until_registered(tmp_path, monkeypatch):
    pytest.importorskip("zstandard")
    joblib_compressor = pytest.importorskip("joblib.compressor")
    saved = dict(joblib_compressor._COMPRESSORS)
    monkeypatch.setattr(_zstd_joblib, "_warned", False)
    joblib_compressor._COMPRESSORS.pop("zstd", None)
    try:
        with pytest.warns(_zstd_joblib.ZstdJoblibWarning, match="register_zstd_with_joblib"):
            fastjoblib.dump([1], str(tmp_path / "a.zst"))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fastjoblib.dump([1], str(tmp_path / "b.zst"))  # once per process
        monkeypatch.setattr(_zstd_joblib, "_warned", False)
        fastjoblib.register_zstd_with_joblib()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # registered: silent
            fastjoblib.dump([1], str(tmp_path / "c.zst"))
    finally:
        joblib_compressor._COMPRESSORS.clear()
        joblib_compressor._COMPRESSORS.update(saved)
