"""joblib.Memory with fastjoblib's store backend (python/fastjoblib/_memory.py): local
directories, memory:// and S3 (the session's moto server) as locations, caches shared with
joblib's local backend, scikit-learn's Pipeline(memory=...), and joblib's own Memory test files
run with the backend swapped in (tests/fj_memory_swap.py)."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import fastjoblib

joblib = pytest.importorskip("joblib")
from joblib import Memory  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

# joblib's own Memory tests that do not apply to this backend, with the reason (README lists them)
NOT_APPLICABLE = {
    "test_filesystem_store_backend_repr":
        "checks the class name in repr(): 'FileSystemStoreBackend(location=...)'; the backend "
        "is FastjoblibStoreBackend (same format otherwise)",
}


@pytest.fixture(scope="module", autouse=True)
def registered():
    cls = fastjoblib.register_memory_backend()
    assert cls.__name__ == "FastjoblibStoreBackend"
    return cls


class Counter:
    def __init__(self):
        self.calls = 0

    def __call__(self, n):
        self.calls += 1
        return {"arr": np.arange(n, dtype=np.float64), "n": n}


def check_cached(memory):
    count = Counter()

    def f(n):
        return count(n)

    cached = memory.cache(f)
    first = cached(1000)
    second = cached(1000)
    assert count.calls == 1
    np.testing.assert_array_equal(first["arr"], second["arr"])
    assert second["n"] == 1000
    cached(10)
    assert count.calls == 2
    return cached


def test_local_directory(tmp_path, registered):
    memory = Memory(str(tmp_path), backend="fastjoblib", verbose=0)
    assert type(memory.store_backend) is registered
    check_cached(memory)
    items = memory.store_backend.get_items()
    assert len(items) == 2
    # the cached outputs are joblib files: stock joblib.load reads them
    for item in items:
        out = joblib.load(os.path.join(item.path, "output.pkl"))
        assert set(out) == {"arr", "n"}
    memory.clear(warn=False)
    assert memory.store_backend.get_items() == []


def test_cache_shared_with_joblib_local_backend(tmp_path):
    count = Counter()

    def g(n):
        return count(n)

    joblib_mem = Memory(str(tmp_path), verbose=0)
    fj_mem = Memory(str(tmp_path), backend="fastjoblib", verbose=0)
    joblib_mem.cache(g)(50)
    np.testing.assert_array_equal(fj_mem.cache(g)(50)["arr"], np.arange(50.0))
    fj_mem.cache(g)(60)
    np.testing.assert_array_equal(joblib_mem.cache(g)(60)["arr"], np.arange(60.0))
    assert count.calls == 2


def test_mmap_mode_and_compress(tmp_path):
    memory = Memory(str(tmp_path / "m"), backend="fastjoblib", mmap_mode="r", verbose=0)

    def h(n):
        return np.ones(n)

    cached = memory.cache(h)
    cached(1000)
    out = cached(1000)
    assert isinstance(out, np.memmap)
    memory = Memory(str(tmp_path / "c"), backend="fastjoblib", compress=("gzip", 3), verbose=0)
    cached = memory.cache(h)
    cached(1000)
    np.testing.assert_array_equal(cached(1000), np.ones(1000))
    (item,) = memory.store_backend.get_items()
    with open(os.path.join(item.path, "output.pkl"), "rb") as f:
        assert f.read(2) == b"\x1f\x8b"


def test_memory_url(registered):
    import fsspec

    fs = fsspec.filesystem("memory")
    memory = Memory("memory://fj-memory-test", backend="fastjoblib", verbose=0)
    try:
        check_cached(memory)
        items = memory.store_backend.get_items()
        assert len(items) == 2
        memory.reduce_size(items_limit=1)
        assert len(memory.store_backend.get_items()) == 1
        memory.clear(warn=False)
        assert memory.store_backend.get_items() == []
    finally:
        if fs.exists("/fj-memory-test"):
            fs.rm("/fj-memory-test", recursive=True)


def test_s3_url(s3, s3_bucket):
    location = "s3://%s/cache" % s3_bucket
    memory = Memory(location, backend="fastjoblib", verbose=0,
                    backend_options={"storage_options": s3.storage_options()})
    cached = check_cached(memory)
    calls = cached.func.__closure__[0].cell_contents.calls
    keys = [o["Key"] for o in s3.boto3_client().list_objects_v2(Bucket=s3_bucket)["Contents"]]
    outputs = [k for k in keys if k.endswith("/output.pkl")]
    assert len(outputs) == 2 and all(k.startswith("cache/joblib/") for k in keys)
    assert any(k.endswith("func_code.py") for k in keys)
    # a second Memory (another process would do the same) finds the cached results
    other = Memory(location, backend="fastjoblib", verbose=0,
                   backend_options={"storage_options": s3.storage_options()})
    assert len(other.store_backend.get_items()) == 2
    assert other.cache(cached.func)(1000)["n"] == 1000  # from the store: no new call
    assert cached.func.__closure__[0].cell_contents.calls == calls
    assert len(other.store_backend.get_items()) == 2
    other.clear(warn=False)
    assert other.store_backend.get_items() == []
    with pytest.warns(UserWarning, match="mmap_mode"):
        Memory(location, backend="fastjoblib", mmap_mode="r", verbose=0,
               backend_options={"storage_options": s3.storage_options()})


def test_storage_options_for_local_location_rejected(tmp_path):
    with pytest.raises(ValueError, match="storage_options"):
        Memory(str(tmp_path), backend="fastjoblib",
               backend_options={"storage_options": {"anon": True}})


def test_sklearn_pipeline_memory(tmp_path):
    sklearn = pytest.importorskip("sklearn")  # noqa: F841
    from sklearn.datasets import make_classification
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    X, y = make_classification(n_samples=200, n_features=20, random_state=0)
    memory = Memory(str(tmp_path), backend="fastjoblib", verbose=0)
    pipe = Pipeline([("pca", PCA(n_components=5)), ("clf", LogisticRegression())],
                    memory=memory)
    pipe.fit(X, y)
    first = pipe.predict_proba(X)
    assert len(memory.store_backend.get_items()) == 1  # the fitted PCA
    pipe2 = Pipeline([("pca", PCA(n_components=5)), ("clf", LogisticRegression())],
                     memory=memory)
    pipe2.fit(X, y)  # PCA comes from the cache
    np.testing.assert_allclose(pipe2.predict_proba(X), first)
    assert len(memory.store_backend.get_items()) == 1


def test_joblib_memory_suite_with_fastjoblib_backend(tmp_path):
    """joblib's own test_memory.py and test_store_backends.py, with FastjoblibStoreBackend in
    place of the local backend (tests/fj_memory_swap.py)."""
    import importlib.util

    # shipped inside the joblib package (its wheel includes joblib/test)
    assert importlib.util.find_spec("joblib.test.test_memory") is not None

    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(fastjoblib.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([HERE, pkg_parent])
    cmd = [sys.executable, "-m", "pytest", "-p", "fj_memory_swap", "-p", "no:cacheprovider",
           "-q", "-rfE", "--import-mode=append", "-W", "ignore::DeprecationWarning",
           "--pyargs", "joblib.test.test_memory", "joblib.test.test_store_backends"]
    r = subprocess.run(cmd, cwd=str(tmp_path), env=env, capture_output=True, text=True,
                       timeout=1200)
    out = r.stdout + r.stderr
    assert "joblib Memory store backend: fastjoblib._memory.FastjoblibStoreBackend" in out, out
    failed = set(re.findall(r"^(?:FAILED|ERROR) \S*::(\w+)", out, re.M))
    assert failed <= set(NOT_APPLICABLE), out[-5000:]
    m = re.search(r"(\d+) passed", out)
    assert m and int(m.group(1)) >= 60, out[-3000:]
