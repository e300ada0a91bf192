"""The public trusted= and progress= options of dump/load/loads/load_pickle/Unpickler."""
import io
import os
import pickle

import joblib
import numpy as np
import pytest

import fastjoblib
from corpus import assert_deep_equal


class _System:
    """A hostile object: unpickling it runs a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ("touch %s" % self.marker,))


def _hostile_joblib_file(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "hostile.pkl"
    joblib.dump({"w": np.arange(4.0), "x": _System(marker)}, path)
    return path, marker


def test_load_trusted_refuses_before_running(tmp_path):
    path, marker = _hostile_joblib_file(tmp_path)
    with pytest.raises(fastjoblib.UntrustedGlobalError, match="system"):
        fastjoblib.load(path, trusted=True)
    assert not marker.exists()
    with pytest.raises(ValueError, match="can never be trusted"):  # a list cannot allow a gadget
        fastjoblib.load(path, trusted=["posix.system"])
    assert not marker.exists()
    assert isinstance(fastjoblib.UntrustedGlobalError("x"), pickle.UnpicklingError)


def test_load_trusted_compressed_and_file_object(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "hostile.pkl.gz"
    joblib.dump([_System(marker)], path)
    with pytest.raises(fastjoblib.UntrustedGlobalError):
        fastjoblib.load(path, trusted=True)
    with open(path, "rb") as f, pytest.raises(fastjoblib.UntrustedGlobalError):
        fastjoblib.load(f, trusted=True)
    assert not marker.exists()


def test_load_trusted_plain_data_and_inspect_list(tmp_path):
    data = {"a": np.arange(10.0), "b": [1, "x", (2, 3)], "o": np.array([1, "s"], dtype=object)}
    path = tmp_path / "data.pkl"
    fastjoblib.dump(data, path)
    assert_deep_equal(data, fastjoblib.load(path, trusted=True))
    from sklearn.linear_model import LogisticRegression
    model = LogisticRegression().fit(np.random.default_rng(0).random((20, 3)), [0, 1] * 10)
    fastjoblib.dump(model, path)
    with pytest.raises(fastjoblib.UntrustedGlobalError):
        fastjoblib.load(path, trusted=True)
    needs = fastjoblib.inspect(str(path))["needs_trusted"]
    assert needs, "a scikit-learn model needs names beyond the defaults"
    loaded = fastjoblib.load(path, trusted=needs)
    np.testing.assert_array_equal(loaded.coef_, model.coef_)


def test_loads_load_pickle_unpickler_trusted(tmp_path):
    marker = tmp_path / "pwned"
    blob = pickle.dumps(_System(marker), protocol=4)
    with pytest.raises(fastjoblib.UntrustedGlobalError):
        fastjoblib.loads(blob, trusted=True)
    with pytest.raises(fastjoblib.UntrustedGlobalError):
        fastjoblib.load_pickle(io.BytesIO(blob), trusted=True)
    with pytest.raises(fastjoblib.UntrustedGlobalError):
        fastjoblib.Unpickler(io.BytesIO(blob), trusted=True).load()
    assert not marker.exists()
    ok = pickle.dumps({"k": [1.5, b"x"]})
    assert fastjoblib.loads(ok, trusted=True) == {"k": [1.5, b"x"]}
    assert fastjoblib.Unpickler(io.BytesIO(ok), trusted=True).load() == {"k": [1.5, b"x"]}
    assert fastjoblib.loads(ok) == {"k": [1.5, b"x"]}  # unrestricted by default


@pytest.mark.parametrize("compress", [0, 3])
def test_progress_callable(tmp_path, compress):
    arr = np.arange(3 * 2**20, dtype=np.float64)  # 24 MiB
    path = tmp_path / "a.pkl"
    calls = []
    fastjoblib.dump(arr, path, compress=compress, progress=lambda d, t: calls.append((d, t)))
    assert len(calls) >= 2 and all(t is None for _, t in calls)
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[-1] == os.path.getsize(path)
    calls.clear()
    out = fastjoblib.load(path, progress=lambda d, t: calls.append((d, t)))
    np.testing.assert_array_equal(out, arr)
    assert calls[-1] == (os.path.getsize(path), os.path.getsize(path))


def test_progress_errors(tmp_path):
    path = tmp_path / "a.pkl"
    fastjoblib.dump([1], path)

    def boom(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fastjoblib.dump(np.zeros(2**21), path, progress=boom)
    assert fastjoblib.load(path) == [1]  # the interrupted dump left the old file
    assert [p for p in os.listdir(tmp_path)] == ["a.pkl"]
    with pytest.raises(TypeError, match="progress"):
        fastjoblib.dump([1], path, progress="yes")


def test_progress_bar_plain_line(tmp_path, capsys, monkeypatch):
    from fastjoblib import _progress
    monkeypatch.setattr(_progress, "_DELAY", 0.0)
    monkeypatch.setitem(__import__("sys").modules, "tqdm", None)  # force the stderr line
    path = tmp_path / "a.pkl"
    fastjoblib.dump(np.zeros(2**21), path, progress=True)
    fastjoblib.load(path, progress=True)
    err = capsys.readouterr().err
    assert "fastjoblib dump:" in err and "fastjoblib load:" in err and "MiB" in err
