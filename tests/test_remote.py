"""fsspec URL targets (python/fastjoblib/_remote.py) against a real S3-compatible server on
127.0.0.1 (moto's server mode, tests/s3server.py) and fsspec's memory:// filesystem: both
directions with stock joblib, every compressor, multipart uploads and their abort, errors."""
import io
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import fastjoblib
from fastjoblib import _remote

joblib = pytest.importorskip("joblib")
fsspec = pytest.importorskip("fsspec")

HERE = os.path.dirname(os.path.abspath(__file__))
# the fastjoblib under test (the work tree's python/ in development, site-packages when the
# tests run against an installed sdist) and this directory, for child processes
PYTHONPATH = os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(
    _remote.__file__))), HERE])

COMPRESSORS = ["zlib", "gzip", "bz2", "lzma", "xz", "lz4", "zstd"]
EXT = {"zlib": ".z", "gzip": ".gz", "bz2": ".bz2", "lzma": ".lzma", "xz": ".xz", "lz4": ".lz4",
       "zstd": ".zst"}


def make_obj(nbytes=1 << 20, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "big": rng.integers(0, 50, size=nbytes // 8, dtype=np.int64),
        "small": np.arange(10, dtype=np.float32),
        "fortran": np.asfortranarray(rng.random((30, 20))),
        "objects": np.array(["a", 1, None], dtype=object),
        "text": "x" * 1000,
        "nested": [{"k": i} for i in range(100)],
    }


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], np.ndarray):
            assert a[k].dtype == b[k].dtype
            np.testing.assert_array_equal(a[k], b[k])
        else:
            assert a[k] == b[k]


def s3fs_of(s3):
    import s3fs

    return s3fs.S3FileSystem(**s3.storage_options())


def uploads_in_progress(s3, bucket):
    return s3.boto3_client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def run_py(code):
    env = dict(os.environ, PYTHONPATH=PYTHONPATH)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=300)


# --------------------------------------------------------------------------------------------
# URL detection, imports, argument errors (no server)


@pytest.mark.parametrize("target,expected", [
    ("s3://b/k", True), ("memory://x", True), ("file:///tmp/x", True), ("gs://b/k.gz", True),
    ("simplecache::s3://b/k", True), ("/tmp/x.pkl", False), ("x.pkl", False),
    ("C:\\x.pkl", False), ("c:/x.pkl", False), ("./s3://x", False), (b"s3://b/k", False),
])
def test_is_url(target, expected):
    assert _remote.is_url(target) is expected


def test_local_paths_never_import_fsspec(tmp_path):
    r = run_py("""
        import sys, numpy as np, fastjoblib
        p = %r
        fastjoblib.dump({"a": np.arange(10)}, p)
        fastjoblib.dump({"a": np.arange(10)}, p + ".gz")
        fastjoblib.load(p); fastjoblib.load(p + ".gz", mmap_mode="r")
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("fsspec", "s3fs", "aiohttp")))
    """ % str(tmp_path / "x.pkl"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


@pytest.mark.parametrize("blocked,url,package", [
    ("fsspec", "s3://b/k.pkl", "fsspec"),
    ("s3fs", "s3://b/k.pkl", "s3fs"),
])
def test_missing_package_import_error(blocked, url, package):
    r = run_py("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == %r:
                    raise ImportError("blocked for the test: " + name)
        sys.meta_path.insert(0, Block())
        import fastjoblib
        for call in (lambda: fastjoblib.dump(1, %r), lambda: fastjoblib.load(%r)):
            try:
                call()
            except ImportError as exc:
                print("ImportError:", exc)
            else:
                print("no error")
    """ % (blocked, url, url))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2
    for line in lines:
        assert line.startswith("ImportError:"), line
        assert "pip install %s" % package in line


def test_unknown_protocol():
    with pytest.raises(ValueError, match="nosuchproto"):
        fastjoblib.dump(1, "nosuchproto://b/k")


def test_storage_options_need_a_url(tmp_path):
    with pytest.raises(ValueError, match="storage_options"):
        fastjoblib.dump(1, str(tmp_path / "x"), storage_options={"anon": True})
    with pytest.raises(ValueError, match="storage_options"):
        fastjoblib.load(io.BytesIO(b""), storage_options={})
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------------------------
# memory:// and file://


@pytest.fixture
def memfs():
    fs = fsspec.filesystem("memory")
    root = "/fj-test-%d" % os.getpid()
    yield fs, root
    if fs.exists(root):
        fs.rm(root, recursive=True)


@pytest.mark.parametrize("compress", [None] + COMPRESSORS)
def test_memory_roundtrip_both_directions(memfs, compress):
    fs, root = memfs
    obj = make_obj(3 << 20)
    url = "memory://%s/m.pkl%s" % (root, EXT[compress] if compress else "")
    assert fastjoblib.dump(obj, url) == [url]
    assert_same(fastjoblib.load(url), obj)
    if compress == "zstd":
        fastjoblib.register_zstd_with_joblib()
    with fs.open(url, "rb") as f:
        assert_same(joblib.load(f), obj)
    url2 = url.replace("m.pkl", "j.pkl")
    with fs.open(url2, "wb") as f:
        joblib.dump(obj, f, compress=(compress, 3) if compress else 0)
    assert_same(fastjoblib.load(url2), obj)


def test_memory_interrupted_dump_keeps_previous(memfs):
    fs, root = memfs
    url = "memory://%s/keep.pkl" % root
    fastjoblib.dump({"v": 1}, url)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("boom")

    for exc_obj in (Boom(),):
        with pytest.raises(RuntimeError, match="boom"):
            fastjoblib.dump([np.ones(3 << 20), exc_obj], url)
    assert fastjoblib.load(url) == {"v": 1}
    with pytest.raises(RuntimeError):
        fastjoblib.dump([np.ones(3 << 20), Boom()], "memory://%s/new.pkl" % root)
    assert not fs.exists("%s/new.pkl" % root)


def test_file_url_is_a_local_atomic_path(tmp_path):
    path = tmp_path / "f.pkl"
    url = "file://" + str(path)
    obj = make_obj(1 << 16)
    assert fastjoblib.dump(obj, url) == [url]
    assert_same(joblib.load(str(path)), obj)
    loaded = fastjoblib.load(url, mmap_mode="r")
    assert isinstance(loaded["big"], np.memmap)
    assert_same(loaded, obj)


# --------------------------------------------------------------------------------------------
# the reader on its own (memory://, small blocks so every path is taken)


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(_remote, "READ_BLOCK_MIN", 1000)
    monkeypatch.setattr(_remote, "READ_BLOCK", 4000)
    monkeypatch.setattr(_remote, "READ_RANGE_MIN", 3000)
    monkeypatch.setattr(_remote, "READ_RANGE_MAX", 7000)
    monkeypatch.setattr(_remote, "LARGE_READ", 5000)


def test_reader_matches_bytes(memfs, small_blocks):
    fs, root = memfs
    data = np.random.default_rng(1).integers(0, 256, 100_003, dtype=np.uint8).tobytes()
    data = data.replace(b"\x07", b"\n")
    fs.pipe("%s/blob" % root, data)
    r = _remote.open_url(fs, "%s/blob" % root)
    assert r.size == len(data)
    rng = np.random.default_rng(2)
    pos = 0
    for _ in range(400):
        op = rng.integers(0, 5)
        if op == 0:
            pos = int(rng.integers(0, len(data) + 10))
            assert r.seek(pos) == pos
        elif op == 1:
            n = int(rng.integers(0, 30000))
            got = r.read(n)
            assert got == data[pos:pos + n]
            pos += len(got)
        elif op == 2:
            n = int(rng.integers(0, 30000))
            buf = bytearray(n)
            k = r.readinto(buf)
            assert bytes(buf[:k]) == data[pos:pos + n]
            pos += k
        elif op == 3:
            line = r.readline()
            end = data.find(b"\n", pos)
            expect = data[pos:] if end < 0 else data[pos:end + 1]
            assert line == expect
            pos += len(line)
        else:
            assert r.tell() == pos
    r.seek(0)
    assert r.read() == data
    r.close()
    with pytest.raises(ValueError):
        r.readinto(bytearray(1))


def test_load_through_small_blocks(memfs, small_blocks):
    fs, root = memfs
    obj = make_obj(1 << 20)
    for ext in ("", ".gz", ".lz4"):
        url = "memory://%s/s.pkl%s" % (root, ext)
        fastjoblib.dump(obj, url)
        assert_same(fastjoblib.load(url), obj)


def test_generic_writer_error_surfaces(memfs, monkeypatch):
    # an error inside the filesystem's own write (here: a write on a memory:// file that fails)
    # is raised by dump, and nothing is committed
    fs, root = memfs
    from fsspec.implementations.memory import MemoryFile

    def failing_write(self, data):
        raise OSError(28, "No space left on device (test)")

    monkeypatch.setattr(MemoryFile, "write", failing_write)
    with pytest.raises(OSError, match="No space left"):
        fastjoblib.dump(np.ones(4 << 20), "memory://%s/full.pkl" % root)
    monkeypatch.undo()
    assert not fs.exists("%s/full.pkl" % root)


# --------------------------------------------------------------------------------------------
# S3 (moto server)


@pytest.mark.parametrize("compress,size", [(c, 1 << 10) for c in [None] + COMPRESSORS] + [
    (c, 12 << 20) for c in (None, "zlib", "lz4", "zstd")])  # 12 MiB: a multipart upload
def test_s3_roundtrip_both_directions(s3, s3_bucket, compress, size):
    so = s3.storage_options()
    fs = s3fs_of(s3)
    obj = make_obj(size)
    url = "s3://%s/m.pkl%s" % (s3_bucket, EXT[compress] if compress else "")
    assert fastjoblib.dump(obj, url, storage_options=so) == [url]
    assert_same(fastjoblib.load(url, storage_options=so), obj)
    if compress == "zstd":
        fastjoblib.register_zstd_with_joblib()
    with fs.open(url, "rb") as f:
        assert_same(joblib.load(f), obj)
    url2 = url.replace("m.pkl", "j.pkl")
    with fs.open(url2, "wb") as f:
        joblib.dump(obj, f, compress=(compress, 3) if compress else 0)
    assert_same(fastjoblib.load(url2, storage_options=so), obj)
    assert uploads_in_progress(s3, s3_bucket) == []


def test_s3_compress_argument_and_threads(s3, s3_bucket):
    so = s3.storage_options()
    obj = make_obj(12 << 20)
    url = "s3://%s/noext" % s3_bucket
    fastjoblib.dump(obj, url, compress=("gzip", 1), threads=2, storage_options=so)
    head = s3.boto3_client().get_object(Bucket=s3_bucket, Key="noext", Range="bytes=0-1")
    assert head["Body"].read() == b"\x1f\x8b"
    assert_same(fastjoblib.load(url, storage_options=so), obj)


def test_s3_large_dump_is_multipart_and_aligned(s3, s3_bucket, tmp_path):
    so = s3.storage_options()
    arr = np.arange(5 << 20, dtype=np.float64)  # 40 MiB: several 6 MiB parts
    url = "s3://%s/big.pkl" % s3_bucket
    fastjoblib.dump(arr, url, storage_options=so)
    head = s3.boto3_client().head_object(Bucket=s3_bucket, Key="big.pkl")
    parts = -(-head["ContentLength"] // _remote.S3_PART_SIZE)
    assert parts == 7
    assert head["ETag"].strip('"').endswith("-%d" % parts)
    # the same bytes as a dump to a path: tell() works, so array payloads are aligned
    fastjoblib.dump(arr, url, storage_options=so, provenance=False)
    local = tmp_path / "big.pkl"
    fastjoblib.dump(arr, str(local), provenance=False)
    assert s3_fs_cat(s3, url) == local.read_bytes()
    np.testing.assert_array_equal(fastjoblib.load(url, storage_options=so), arr)


def s3_fs_cat(s3, url):
    return s3fs_of(s3).cat_file(url)


def test_s3_dump_memory_is_bounded(s3, s3_bucket):
    import tracemalloc

    so = s3.storage_options()
    arr = np.ones(12 << 20)  # 96 MiB
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        fastjoblib.dump(arr, "s3://%s/bounded.pkl" % s3_bucket, storage_options=so)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    limit = (_remote.S3_PARTS_IN_FLIGHT + 2) * _remote.S3_PART_SIZE
    assert peak < limit < arr.nbytes, (peak, limit)


class Boom:
    def __init__(self, exc):
        self.exc = exc

    def __reduce__(self):
        raise self.exc


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
@pytest.mark.parametrize("nbytes", [1 << 10, 40 << 20])
def test_s3_interrupted_dump_aborts(s3, s3_bucket, exc, nbytes):
    so = s3.storage_options()
    url = "s3://%s/model.pkl" % s3_bucket
    fastjoblib.dump({"version": 1}, url, storage_options=so)
    with pytest.raises(type(exc)):
        fastjoblib.dump([np.ones(nbytes // 8), Boom(exc)], url, storage_options=so)
    assert fastjoblib.load(url, storage_options=so) == {"version": 1}
    assert uploads_in_progress(s3, s3_bucket) == []
    # and a new key is never created
    with pytest.raises(type(exc)):
        fastjoblib.dump([np.ones(nbytes // 8), Boom(exc)], url + ".new", storage_options=so)
    assert uploads_in_progress(s3, s3_bucket) == []
    keys = [o["Key"] for o in s3.boto3_client().list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert keys == ["model.pkl"]


def test_s3_failed_part_aborts(s3, s3_bucket, monkeypatch):
    # the server refuses a part (here: an UploadId it does not know): dump raises, the upload
    # is aborted, the previous object stays
    so = s3.storage_options()
    url = "s3://%s/p.pkl" % s3_bucket
    fastjoblib.dump("old", url, storage_options=so)
    orig = _remote._S3Writer._send_part
    calls = []

    def send_part(self):
        calls.append(1)
        if len(calls) == 3:
            real = self.upload_id
            self.upload_id = "not-an-upload"
            try:
                return orig(self)
            finally:
                self.upload_id = real
        return orig(self)

    monkeypatch.setattr(_remote._S3Writer, "_send_part", send_part)
    with pytest.raises(OSError):
        fastjoblib.dump(np.ones(8 << 20), url, storage_options=so)
    assert fastjoblib.load(url, storage_options=so) == "old"
    assert uploads_in_progress(s3, s3_bucket) == []


def test_s3_missing_bucket_and_key(s3, s3_bucket):
    so = s3.storage_options()
    with pytest.raises(FileNotFoundError):
        fastjoblib.load("s3://%s/nope.pkl" % s3_bucket, storage_options=so)
    with pytest.raises(FileNotFoundError):
        fastjoblib.load("s3://no-such-bucket-fj/x.pkl", storage_options=so)
    for n in (10, 4 << 20):  # a single PutObject and a multipart upload
        with pytest.raises(FileNotFoundError):
            fastjoblib.dump(np.ones(n), "s3://no-such-bucket-fj/x.pkl", storage_options=so)
    with pytest.raises(ValueError, match="bucket"):
        fastjoblib.dump(1, "s3://%s" % s3_bucket, storage_options=so)


def test_s3_bad_credentials(s3, s3_bucket):
    good = s3.storage_options()
    url = "s3://%s/c.pkl" % s3_bucket
    fastjoblib.dump([1, 2], url, storage_options=good)
    for bad in (s3.storage_options(secret="wrong-secret"),
                s3.storage_options(key="AKIAUNKNOWNKEY000000")):
        bad["skip_instance_cache"] = True
        with pytest.raises(PermissionError):
            fastjoblib.load(url, storage_options=bad)
        with pytest.raises(PermissionError):
            fastjoblib.dump([3], url, storage_options=bad)
        with pytest.raises(PermissionError):
            fastjoblib.dump(np.ones(2 << 20), url, storage_options=bad)
    assert fastjoblib.load(url, storage_options=good) == [1, 2]


@pytest.mark.parametrize("compress", [None, "gzip", "lz4"])
def test_s3_truncated_object(s3, s3_bucket, compress, tmp_path):
    so = s3.storage_options()
    obj = make_obj(2 << 20)
    bio = io.BytesIO()
    fastjoblib.dump(obj, bio, compress=(compress, 3) if compress else 0)
    data = bio.getvalue()
    client = s3.boto3_client()
    for cut in (len(data) // 2, len(data) - 5, 100):
        client.put_object(Bucket=s3_bucket, Key="t.pkl", Body=data[:cut])
        local = tmp_path / "t.pkl"
        local.write_bytes(data[:cut])
        try:
            expected = fastjoblib.load(str(local))
        except Exception as exc:
            # the object fails exactly as the same bytes in a file do
            with pytest.raises(type(exc)):
                fastjoblib.load("s3://%s/t.pkl" % s3_bucket, storage_options=so)
        else:
            # (a compressed stream cut inside its trailer still holds the whole pickle)
            assert cut > len(data) - 16
            assert_same(fastjoblib.load("s3://%s/t.pkl" % s3_bucket, storage_options=so),
                        expected)
    with pytest.raises(Exception):
        fastjoblib.load(str(tmp_path / "t.pkl"))


def test_s3_mmap_mode_warns_and_loads_in_memory(s3, s3_bucket):
    so = s3.storage_options()
    url = "s3://%s/mm.pkl" % s3_bucket
    arr = np.arange(1000)
    fastjoblib.dump(arr, url, storage_options=so)
    with pytest.warns(UserWarning, match="mmap_mode"):
        out = fastjoblib.load(url, mmap_mode="r", storage_options=so)
    assert type(out) is np.ndarray
    np.testing.assert_array_equal(out, arr)


def test_s3_trusted_progress_provenance(s3, s3_bucket):
    so = s3.storage_options()
    url = "s3://%s/tp.pkl.gz" % s3_bucket
    calls = []
    fastjoblib.dump({"a": np.ones(3 << 20)}, url, storage_options=so, provenance=False,
                    progress=lambda done, total: calls.append(done))
    assert calls
    calls.clear()
    out = fastjoblib.load(url, trusted=True, storage_options=so,
                          progress=lambda done, total: calls.append(done))
    np.testing.assert_array_equal(out["a"], np.ones(3 << 20))
    assert calls

    class Evil:
        def __reduce__(self):
            return (os.getcwd, ())

    fastjoblib.dump(Evil(), url, storage_options=so)
    with pytest.raises(fastjoblib.UntrustedGlobalError):
        fastjoblib.load(url, trusted=True, storage_options=so)


def test_s3_file_objects(s3, s3_bucket):
    # plain file objects (s3fs files, BytesIO) keep working, both ways with joblib
    fs = s3fs_of(s3)
    obj = make_obj(3 << 20)
    with fs.open("%s/fo.pkl" % s3_bucket, "wb") as f:
        fastjoblib.dump(obj, f)
    with fs.open("%s/fo.pkl" % s3_bucket, "rb") as f:
        assert_same(fastjoblib.load(f), obj)
    with fs.open("%s/fo.pkl" % s3_bucket, "rb") as f:
        assert_same(joblib.load(f), obj)


def test_s3_object_replaced_during_load_is_detected(s3, s3_bucket, monkeypatch):
    # every ranged read names the ETag seen first: a load never mixes two versions of an object
    so = s3.storage_options()
    url = "s3://%s/r.pkl" % s3_bucket
    fastjoblib.dump(np.zeros(6 << 20), url, storage_options=so)
    orig = _remote.RemoteReader._parallel_into

    def swap_then_read(self, view):
        s3.boto3_client().put_object(Bucket=s3_bucket, Key="r.pkl", Body=b"other")
        return orig(self, view)

    monkeypatch.setattr(_remote.RemoteReader, "_parallel_into", swap_then_read)
    with pytest.raises(OSError, match="pre-condition"):
        fastjoblib.load(url, storage_options=so)


def test_warning_free_roundtrip(s3, s3_bucket):
    so = s3.storage_options()
    url = "s3://%s/w.pkl" % s3_bucket
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fastjoblib.dump({"a": np.ones(10)}, url, storage_options=so)
        fastjoblib.load(url, storage_options=so)


def test_s3_file_object_position_and_parallel_reads(s3, s3_bucket, monkeypatch):
    # an s3fs file object is read with the URL reader from its position (two dumps back to back
    # in one object load one after the other), with concurrent ranged reads for the arrays
    fs = s3fs_of(s3)
    a, b = make_obj(10 << 20, seed=1), make_obj(1 << 10, seed=2)
    with fs.open("%s/two.pkl" % s3_bucket, "wb") as f:
        joblib.dump(a, f)
        joblib.dump(b, f)
    ranged = []
    orig = _remote.RemoteReader._parallel_into

    def spy(self, view):
        ranged.append(len(view))
        return orig(self, view)

    monkeypatch.setattr(_remote.RemoteReader, "_parallel_into", spy)
    with fs.open("%s/two.pkl" % s3_bucket, "rb") as f:
        assert_same(fastjoblib.load(f), a)
        assert_same(fastjoblib.load(f), b)
        assert f.read() == b""
    assert ranged and max(ranged) > (8 << 20)
