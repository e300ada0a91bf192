"""Files that are not joblib files or pickles: the error names the format (issue 18).

Each file is written at test time by the library that owns the format (numpy, torch, skops,
safetensors, h5py, pyarrow, zipfile, gzip / bz2 / lzma); fastjoblib.load, inspect and the CLI must
name it and what reads it, with the exception type the load raised before (joblib's). A real but
damaged pickle keeps its precise message with the offset.
"""
import bz2
import gzip
import io
import lzma
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import fastjoblib
from fastjoblib import _sniff
from fastjoblib._inspect import inspect

ARR = np.arange(12.0).reshape(3, 4)


def _npy(p):
    np.save(p, ARR)


def _npz(p):
    with open(p, "wb") as f:
        np.savez(f, a=ARR, b=ARR)


def _torch(p):
    torch = pytest.importorskip("torch")
    torch.save({"w": torch.ones(3)}, p)


def _skops(p):
    sio = pytest.importorskip("skops.io")
    from sklearn.linear_model import LinearRegression
    sio.dump(LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0]), p)


def _zip(p):
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("notes.txt", "hello")
        z.writestr("data/values.csv", "a,b\n1,2\n")


def _safetensors(p):
    st = pytest.importorskip("safetensors.numpy")
    st.save_file({"w": ARR}, str(p))


def _hdf5(p):
    h5py = pytest.importorskip("h5py")
    with h5py.File(p, "w") as f:
        f["w"] = ARR


def _parquet(p):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa
    pq.write_table(pa.table({"x": [1, 2, 3]}), str(p))


def _text(p):
    with open(p, "w") as f:
        f.write("hello world, this is a text file\nwith two lines\n")


def _csv(p):
    with open(p, "w") as f:
        f.write("col1,col2\n1,2\n3,4\n")


def _json(p):
    with open(p, "w") as f:
        f.write('{"a": [1, 2, 3]}\n')


def _gz_text(p):
    with gzip.open(p, "wb") as f:
        f.write(b"hello world\nplain text inside gzip\n")


def _bz2_npy(p):
    buf = io.BytesIO()
    np.save(buf, ARR)
    with bz2.open(p, "wb") as f:
        f.write(buf.getvalue())


def _xz_csv(p):
    with lzma.open(p, "wb") as f:
        f.write(b"a,b\n1,2\n3,4\n")


def _gz_binary(p):
    with gzip.open(p, "wb") as f:
        f.write(bytes(range(256)) * 4)


# (writer, file name, words the message must contain)
CASES = [
    (_npy, "a.npy", ["NumPy .npy file", "numpy.load"]),
    (_npz, "a.npz", ["NumPy .npz archive", "numpy.load"]),
    (_torch, "model.pt", ["torch.save", "torch.load"]),
    (_skops, "model.skops", ["skops file", "skops.io.load"]),
    (_zip, "bundle.zip", ["a zip archive", "notes.txt", "zipfile.ZipFile"]),
    (_safetensors, "w.safetensors", ["safetensors file", "safetensors"]),
    (_hdf5, "w.h5", ["HDF5 file", "h5py.File"]),
    (_parquet, "t.parquet", ["Parquet file", "read_parquet"]),
    (_text, "notes.txt", ["plain text", "hello world", "open()"]),
    (_csv, "t.csv", ["CSV text", "pandas.read_csv"]),
    (_json, "t.json", ["JSON", "json.load"]),
    (_gz_text, "t.txt.gz", ["gzip-compressed plain text", "gzip.open"]),
    (_bz2_npy, "a.npy.bz2", ["a bz2-compressed NumPy .npy file", "bz2.open", "numpy.load"]),
    (_xz_csv, "t.csv.xz", ["xz-compressed CSV text", "lzma.open"]),
    (_gz_binary, "b.gz", ["gzip-compressed data that is not a pickle", "gzip.open"]),
]
IDS = [c[1] for c in CASES]


def _pickle_error(path):
    """The exception type the running stdlib C unpickler raises for the file's (decompressed)
    bytes: what fastjoblib raised before naming the format, and still raises."""
    data = path.read_bytes()
    for magic, mod in ((b"\x1f\x8b", gzip), (b"BZh", bz2), (b"\xfd7zXZ", lzma)):
        if data.startswith(magic):
            data = mod.decompress(data)
    try:
        pickle.loads(data)
    except Exception as exc:  # noqa: BLE001
        return type(exc)
    return None


@pytest.mark.parametrize("write,name,words", CASES, ids=IDS)
def test_load_names_the_format(tmp_path, write, name, words):
    path = tmp_path / name
    write(path)
    with pytest.raises(Exception) as ei:
        fastjoblib.load(path)
    msg = str(ei.value)
    for w in words:
        assert w in msg, (w, msg)
    assert "not a joblib file or a pickle" in msg
    assert repr(str(path)) in msg
    # the type does not change (an UnpicklingError stays one)
    expected = _pickle_error(path)
    if expected is not None:
        assert isinstance(ei.value, expected), (type(ei.value), expected)
    # the same through a file object and bytes in memory
    with open(path, "rb") as f, pytest.raises(type(ei.value)) as ei2:
        fastjoblib.load(f)
    assert words[0] in str(ei2.value)
    with pytest.raises(type(ei.value)) as ei3:
        fastjoblib.load(io.BytesIO(path.read_bytes()))
    assert words[0] in str(ei3.value)


@pytest.mark.parametrize("write,name,words", CASES, ids=IDS)
def test_inspect_names_the_format(tmp_path, write, name, words):
    path = tmp_path / name
    write(path)
    with pytest.raises(ValueError) as ei:
        inspect(str(path))
    assert words[0] in str(ei.value), str(ei.value)
    with pytest.raises(ValueError) as ei:
        inspect(path.read_bytes())
    assert words[0] in str(ei.value), str(ei.value)


@pytest.mark.parametrize("cmd", ["inspect", "convert"])
def test_cli_names_the_format(tmp_path, cmd):
    path = tmp_path / "a.npy"
    _npy(path)
    argv = [sys.executable, "-m", "fastjoblib", cmd, str(path)]
    if cmd == "convert":
        argv.append(str(tmp_path / "out.pkl"))
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ))
    assert proc.returncode == 1
    assert "NumPy .npy file" in proc.stderr and "numpy.load" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out.pkl").exists()


DAMAGED = [
    # a protocol-5 pickle cut short, a protocol-0 pickle with a bad memo reference, a joblib file
    # with a flipped opcode: all start like pickles, so the unpickler's message stays
    pickle.dumps({"a": list(range(50))}, protocol=5)[:40],
    pickle.dumps(["x", "y"], protocol=0).replace(b"p0", b"g9", 1).replace(b"g1", b"g7", 1),
    pickle.dumps(ARR, protocol=2)[:-30],
]


@pytest.mark.parametrize("data", DAMAGED, ids=["proto5-cut", "proto0-memo", "proto2-cut"])
def test_damaged_pickle_keeps_its_message(tmp_path, data):
    path = tmp_path / "damaged.pkl"
    path.write_bytes(data)
    with pytest.raises(Exception) as ei:
        fastjoblib.load(path)
    msg = str(ei.value)
    assert "not a joblib file or a pickle" not in msg, msg
    assert _sniff.identify(data) is None
    if isinstance(ei.value, pickle.UnpicklingError):
        assert "offset" in msg, msg


def test_damaged_compressed_pickle_keeps_its_message(tmp_path):
    path = tmp_path / "damaged.pkl.gz"
    with gzip.open(path, "wb") as f:
        f.write(pickle.dumps({"a": list(range(500))}, protocol=4)[:300])
    with pytest.raises(Exception) as ei:
        fastjoblib.load(path)
    assert "not a joblib file or a pickle" not in str(ei.value)


def test_real_files_are_not_foreign(tmp_path):
    """Whatever joblib or pickle writes is never taken for a foreign format."""
    joblib = pytest.importorskip("joblib")
    for proto in range(0, pickle.HIGHEST_PROTOCOL + 1):
        for obj in (None, 1, -3, 2.5, "text", b"b", [1, "a"], {"k": (1, 2)}, ARR, True):
            assert _sniff.identify(pickle.dumps(obj, protocol=proto)) is None, (proto, obj)
    for comp in (0, ("gzip", 3), ("bz2", 3), ("xz", 3), ("zlib", 3), ("lzma", 3)):
        p = tmp_path / "j.pkl"
        joblib.dump({"a": ARR}, p, compress=comp)
        assert _sniff.from_path(p) is None, comp
        fastjoblib.dump({"a": ARR}, p, compress=comp)
        assert _sniff.from_path(p) is None, comp
