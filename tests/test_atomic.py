"""A path is replaced atomically: after any failed dump (an exception from a __reduce__, a
KeyboardInterrupt, a real SIGINT) the previous file is intact and loadable, and no temporary file
is left in the directory."""
import io
import os
import signal
import subprocess
import sys
import textwrap
import time

import joblib
import numpy as np
import pytest

import fastjoblib
from fastjoblib import _persist
from fj_support import PREVIOUS, Bomb, write_previous


def _check_intact(directory, path, previous_bytes):
    assert sorted(os.listdir(directory)) == [os.path.basename(path)]
    with open(path, "rb") as f:
        assert f.read() == previous_bytes
    loaded = joblib.load(path)
    assert loaded["version"] == 1
    np.testing.assert_array_equal(loaded["w"], PREVIOUS["w"])
    np.testing.assert_array_equal(fastjoblib.load(path)["w"], PREVIOUS["w"])


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt(), SystemExit(3)],
                         ids=lambda e: type(e).__name__)
def test_atomic_write_helper(exc, tmp_path):
    """The helper itself, with a writer that has written part of the data when it fails."""
    path = str(tmp_path / "model.pkl")
    previous = write_previous(path)

    def write(fd):
        os.write(fd, b"partial data" * 1000)
        raise exc

    with pytest.raises(type(exc)):
        _persist._atomic_write(path, write)
    _check_intact(tmp_path, path, previous)


def test_atomic_write_helper_success_replaces(tmp_path):
    path = str(tmp_path / "model.pkl")
    write_previous(path)
    _persist._atomic_write(path, lambda fd: os.write(fd, b"new"))
    assert sorted(os.listdir(tmp_path)) == ["model.pkl"]
    with open(path, "rb") as f:
        assert f.read() == b"new"


@pytest.mark.parametrize("compress", [0, 3, ("gzip", 1), "lz4", "xz", "zstd"], ids=repr)
@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()],
                         ids=lambda e: type(e).__name__)
def test_reduce_raises_mid_dump(exc, compress, tmp_path):
    path = str(tmp_path / "model.pkl")
    previous = write_previous(path)
    # a few MiB of array data are already written when the bomb goes off
    value = {"big": np.random.default_rng(0).random(2**19), "then": [1, 2, Bomb(exc)]}
    with pytest.raises(type(exc)) as info:
        fastjoblib.dump(value, path, compress=compress, threads=2)
    assert info.value is exc or isinstance(info.value, type(exc))
    _check_intact(tmp_path, path, previous)
    # and the next dump works
    assert fastjoblib.dump({"version": 2}, path, compress=compress) == [path]
    if compress != "zstd":  # (stock joblib has no zstd)
        assert joblib.load(path) == {"version": 2}
    assert sorted(os.listdir(tmp_path)) == ["model.pkl"]


def test_reduce_raises_file_object_propagates():
    bio = io.BytesIO()
    with pytest.raises(RuntimeError, match="boom"):
        fastjoblib.dump([np.arange(10), Bomb(RuntimeError("boom"))], bio)


def test_real_sigint_leaves_old_or_new_file(tmp_path):
    """A SIGINT at an arbitrary moment of a loop of big dumps: the file is always one complete
    dump, never a partial one, and no temporary is left."""
    path = str(tmp_path / "data.pkl")
    code = textwrap.dedent(f"""
        import signal, sys, numpy as np, fastjoblib
        # a shell's background job inherits SIGINT ignored (and Python then keeps it ignored):
        # take the default KeyboardInterrupt handler whatever the parent's disposition
        signal.signal(signal.SIGINT, signal.default_int_handler)
        path = {path!r}
        a = np.arange(2**21, dtype=np.float64)
        i = 0
        fastjoblib.dump((i, a), path)
        print("ready", flush=True)
        while True:
            i += 1
            a[0] = i
            fastjoblib.dump((i, a), path, compress=i % 2)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for delay in (0.05, 0.2, 0.45):
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env)
        try:
            assert proc.stdout.readline().strip() == b"ready", proc.stderr.read()
            time.sleep(delay)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode != 0 and b"KeyboardInterrupt" in err
        assert sorted(os.listdir(tmp_path)) == ["data.pkl"]
        i, a = joblib.load(path)
        assert a[0] == i and a.shape == (2**21,)
        np.testing.assert_array_equal(a[1:], np.arange(1, 2**21, dtype=np.float64))
