"""PyTorch tensors (issue 13): CPU tensors as joblib array records readable by stock joblib.

Checked with the real torch (an optional dependency: ``pip install '.[torch]'``; CI installs
torch==2.13.0), against stock ``joblib.load`` / ``joblib.dump`` in both directions:

- every dtype (bytes compared, NaN-safe), any strides / storage offset / 0-d / empty;
- views of one storage stay views of one storage after loading (both loaders), also across dtypes;
- requires_grad, nn.Parameter, modules, state dicts, optimizer states;
- compressed files; mmap_mode ('r' and 'c' copy-on-write, 'r+' shared with the file);
- the file needs neither fastjoblib nor anything but torch / numpy globals (inspect, and a fresh
  interpreter that loads it with stock joblib);
- everything else (sparse, quantized, nested, meta, subclasses, conj views, tensors with Python
  attributes, protocol < 4) goes through torch's own reduce and round-trips as before;
- trusted=: the documented names load a tensor file, trusted=True alone refuses it.
"""
import io
import json
import os
import pickle
import subprocess
import sys
import warnings

import joblib
import numpy as np
import pytest

import fastjoblib
from fastjoblib import _torch
from fastjoblib._inspect import inspect

torch = pytest.importorskip(
    "torch", reason="torch is not installed (optional: pip install '.[torch]'; CI installs "
    "torch==2.13.0)")

LOADERS = {"fastjoblib": fastjoblib.load, "joblib": joblib.load}

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.complex64,
          torch.complex128, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8,
          torch.bool]
for _name in ("uint16", "uint32", "uint64", "complex32", "float8_e4m3fn", "float8_e5m2",
              "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu"):
    if hasattr(torch, _name):
        DTYPES.append(getattr(torch, _name))


def _random(dtype, shape, seed=0):
    """A tensor of `dtype` with arbitrary bytes (valid 0/1 for bool)."""
    g = torch.Generator().manual_seed(seed)
    n = int(np.prod(shape)) if shape else 1
    if dtype == torch.bool:
        return torch.randint(0, 2, (n,), generator=g).bool().reshape(shape)
    size = torch.finfo(dtype).bits // 8 if dtype.is_floating_point else (
        torch.iinfo(dtype).bits // 8 if not dtype.is_complex else
        {torch.complex64: 8, torch.complex128: 16}.get(dtype, 4))
    raw = torch.randint(0, 256, (n * size,), dtype=torch.uint8, generator=g)
    return raw.view(dtype).reshape(shape)


def _bytes(t):
    """The tensor's logical bytes (equality that NaNs and float8 do not break)."""
    t = t.detach().contiguous()
    return t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def assert_tensor_equal(a, b):
    assert type(a) is type(b)
    assert a.dtype == b.dtype and a.shape == b.shape and a.device == b.device
    assert a.stride() == b.stride() and a.storage_offset() == b.storage_offset()
    assert a.requires_grad == b.requires_grad
    assert _bytes(a) == _bytes(b)


def _same_storage(a, b):
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def _globals(path):
    return set(inspect(path)["globals"])


def _dump(obj, tmp_path, name="t.pkl", **kw):
    path = str(tmp_path / name)
    fastjoblib.dump(obj, path, **kw)
    return path


# ------------------------------------------------------------------------------------------------
# dtypes, layouts

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_every_dtype(tmp_path, dtype, loader):
    base = _random(dtype, (6, 8))
    obj = {"t": base, "slice": base[1:5, 2:], "T": base.t(), "scalar": _random(dtype, ())}
    path = _dump(obj, tmp_path)
    g = _globals(path)
    assert "torch.from_numpy" in g and not any("_rebuild" in n or "storage" in n for n in g), g
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. torch's warning on non-writable numpy memory
        # torch's own warning whenever a complex32 tensor is made (torch.load gives it too)
        warnings.filterwarnings("ignore", "ComplexHalf support is experimental")
        out = LOADERS[loader](path)
    for k in obj:
        assert_tensor_equal(out[k], obj[k])
    assert _same_storage(out["t"], out["slice"]) and _same_storage(out["t"], out["T"])


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_layouts(tmp_path, loader):
    big = torch.arange(2 * 3 * 4 * 5, dtype=torch.float64).reshape(2, 3, 4, 5)
    obj = [big, big.permute(3, 1, 0, 2), big[:, ::2, 1:], big.as_strided((3, 3), (7, 2), 11),
           torch.ones(3).expand(4, 3), torch.empty(0), torch.empty(3, 0, 2, dtype=torch.int16),
           big[1:1], torch.tensor(7)]
    path = _dump(obj, tmp_path)
    out = LOADERS[loader](path)
    for a, b in zip(out, obj):
        assert_tensor_equal(a, b)
    assert out[1].stride() == big.permute(3, 1, 0, 2).stride()


# ------------------------------------------------------------------------------------------------
# sharing

@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_views_share_storage_after_load(tmp_path, loader):
    w = torch.arange(64, dtype=torch.float32)
    obj = {"w": w, "v": w[8:16], "m": w.view(8, 8), "i": w.view(torch.int32)[3:],
           "b": w.view(torch.uint8), "other": torch.arange(4.0), "again": w}
    path = _dump(obj, tmp_path)
    # one storage record for w and its views, one for `other`
    assert len(inspect(path)["arrays"]) == 2
    out = LOADERS[loader](path)
    assert out["again"] is out["w"]
    for k in ("v", "m", "i", "b"):
        assert _same_storage(out[k], out["w"]), k
        assert_tensor_equal(out[k], obj[k])
    assert not _same_storage(out["other"], out["w"])
    out["w"][8] = -1.0
    assert out["v"][0].item() == -1.0 and out["m"][1, 0].item() == -1.0
    # each tensor is a tensor of its own (as torch.load gives), not a view of a helper
    assert not out["v"]._is_view() and out["v"]._base is None


def test_shared_storage_across_two_dumped_objects_is_not_merged(tmp_path):
    a = torch.zeros(4)
    b = torch.zeros(4)
    out = fastjoblib.load(_dump([a, b], tmp_path))
    assert not _same_storage(out[0], out[1])


# ------------------------------------------------------------------------------------------------
# autograd, Parameters, modules, state dicts, optimizers

@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_requires_grad_and_parameters(tmp_path, loader):
    leaf = torch.randn(3, requires_grad=True)
    nonleaf = leaf * 2  # as torch's reduce: loads as a leaf that requires grad
    p = torch.nn.Parameter(torch.randn(2, 2))
    q = torch.nn.Parameter(torch.randn(5), requires_grad=False)
    pv = torch.nn.Parameter(p.data[0])  # a Parameter over a view of p's storage
    obj = {"leaf": leaf, "nonleaf": nonleaf, "p": p, "q": q, "pv": pv}
    path = _dump(obj, tmp_path)
    assert "torch.nn.parameter.Parameter" in _globals(path)
    out = LOADERS[loader](path)
    assert out["leaf"].requires_grad and out["leaf"].is_leaf
    assert out["nonleaf"].requires_grad and out["nonleaf"].is_leaf
    assert _bytes(out["nonleaf"]) == _bytes(nonleaf)
    for k in ("p", "q", "pv"):
        assert type(out[k]) is torch.nn.Parameter and out[k].requires_grad == obj[k].requires_grad
        assert _bytes(out[k]) == _bytes(obj[k])
    assert _same_storage(out["p"], out["pv"])
    (out["leaf"].sum() + (out["p"] ** 2).sum()).backward()
    assert torch.equal(out["leaf"].grad, torch.ones(3))


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.BatchNorm1d(32), torch.nn.ReLU(),
                               torch.nn.Linear(32, 4))


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_module_state_dict_optimizer(tmp_path, loader):
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(8, 16)
    model(x).sum().backward()
    opt.step()
    obj = {"model": model, "state": model.state_dict(), "opt": opt.state_dict()}
    path = _dump(obj, tmp_path)
    g = _globals(path)
    assert "torch.storage._load_from_bytes" not in g and "torch._utils._rebuild_tensor_v2" not in g
    out = LOADERS[loader](path)
    model.eval()
    out["model"].eval()
    assert torch.equal(out["model"](x), model(x))
    assert list(out["state"]) == list(obj["state"])
    for k, v in obj["state"].items():
        assert_tensor_equal(out["state"][k], v)
    assert out["state"]._metadata == obj["state"]._metadata
    for i, st in obj["opt"]["state"].items():
        for k, v in st.items():
            assert_tensor_equal(out["opt"]["state"][i][k], v)
    # a fresh model takes the state dict; a fresh optimizer takes the optimizer state
    fresh = _model()
    fresh.load_state_dict(out["state"])
    fresh.eval()
    assert torch.equal(fresh(x), model(x))
    torch.optim.Adam(fresh.parameters()).load_state_dict(out["opt"])


# ------------------------------------------------------------------------------------------------
# stock joblib both ways, no fastjoblib needed to read, compressed files

def test_stock_joblib_reads_without_fastjoblib(tmp_path):
    w = torch.arange(12, dtype=torch.bfloat16)
    path = _dump({"w": w, "v": w[4:], "p": torch.nn.Parameter(torch.ones(2))}, tmp_path)
    code = (
        "import sys, joblib, torch\n"
        "o = joblib.load(sys.argv[1])\n"
        "assert 'fastjoblib' not in sys.modules\n"
        "assert o['w'].dtype == torch.bfloat16 and o['w'].tolist() == list(map(float, range(12)))\n"
        "assert o['v'].untyped_storage().data_ptr() == o['w'].untyped_storage().data_ptr()\n"
        "assert type(o['p']) is torch.nn.Parameter and o['p'].requires_grad\n"
        "print('ok')\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True,
                       env=env, cwd=str(tmp_path), timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_joblib_dump_fastjoblib_load(tmp_path):
    """Files written by stock joblib (torch's own reduce) load as before."""
    w = torch.randn(5, 5)
    obj = {"w": w, "v": w[1], "m": _model(), "p": torch.nn.Parameter(torch.randn(3))}
    path = str(tmp_path / "j.pkl")
    joblib.dump(obj, path)
    out = fastjoblib.load(path)
    assert_tensor_equal(out["w"], w)
    assert_tensor_equal(out["p"], obj["p"])
    assert torch.equal(out["m"][0].weight, obj["m"][0].weight)


@pytest.mark.parametrize("compress", [3, ("lz4", 1), ("gzip", 1), ("xz", 1)])
@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_compressed(tmp_path, compress, loader):
    if isinstance(compress, tuple) and compress[0] == "lz4":
        pytest.importorskip("lz4")
    w = torch.randn(1000, dtype=torch.float64)
    obj = {"w": w, "v": w[100:200], "h": torch.ones(300, dtype=torch.bfloat16)}
    path = _dump(obj, tmp_path, compress=compress)
    assert inspect(path)["compressed"]
    out = LOADERS[loader](path)
    for k in obj:
        assert_tensor_equal(out[k], obj[k])
    assert _same_storage(out["w"], out["v"])


def test_file_object_and_bytes(tmp_path):
    w = torch.randn(7)
    buf = io.BytesIO()
    fastjoblib.dump([w, w[2:]], buf)
    buf.seek(0)
    out = joblib.load(buf)
    assert_tensor_equal(out[0], w) and _same_storage(out[0], out[1])


# ------------------------------------------------------------------------------------------------
# mmap_mode

def _mmap_file(tmp_path):
    w = torch.arange(4096, dtype=torch.float32)
    obj = {"w": w, "v": w[16:32], "h": torch.arange(8, dtype=torch.bfloat16), "a": np.arange(4)}
    return _dump(obj, tmp_path, name="m.pkl"), obj


def _is_mapped(t, path):
    """The tensor's storage lies in a mapping of `path` (from /proc/self/maps)."""
    ptr = t.untyped_storage().data_ptr()
    real = os.path.realpath(path)
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if lo <= ptr < hi:
                return len(parts) >= 6 and os.path.realpath(parts[5]) == real
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
@pytest.mark.parametrize("mode, writes_file", [("r", False), ("c", False), ("r+", True),
                                               ("w+", True)])
def test_mmap_modes(tmp_path, mode, writes_file):
    path, obj = _mmap_file(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns on non-writable numpy memory: never here
        out = fastjoblib.load(path, mmap_mode=mode)
    for k in ("w", "v", "h"):
        assert_tensor_equal(out[k], obj[k])
        assert _is_mapped(out[k], path), k
    assert _same_storage(out["w"], out["v"])
    # numpy arrays keep joblib's semantics ('r' read-only)
    assert isinstance(out["a"], np.memmap) and out["a"].flags.writeable == (mode != "r")
    out["w"][0] = 123.0  # every mode gives writable tensors (copy-on-write for 'r' / 'c')
    assert out["v"].untyped_storage().data_ptr() == out["w"].untyped_storage().data_ptr()
    again = fastjoblib.load(path)
    assert (again["w"][0].item() == 123.0) == writes_file
    del out


def test_mmap_compressed_file_warns_and_loads(tmp_path):
    w = torch.arange(100.0)
    path = _dump(w, tmp_path, name="c.pkl", compress=3)
    with pytest.warns(UserWarning, match="not compatible with compressed file"):
        out = fastjoblib.load(path, mmap_mode="r")
    assert_tensor_equal(out, w)


def test_mmap_stock_joblib_copy_on_write(tmp_path):
    """Stock joblib with mmap_mode='c' maps tensors copy-on-write (documented for users)."""
    path, obj = _mmap_file(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = joblib.load(path, mmap_mode="c")
    assert_tensor_equal(out["w"], obj["w"]) and _same_storage(out["w"], out["v"])


# ------------------------------------------------------------------------------------------------
# what keeps torch's own reduce

def _fallbacks():
    class MyTensor(torch.Tensor):
        pass

    attr = torch.randn(3)
    attr.note = "kept"
    out = {
        "sparse_coo": torch.randn(4, 4).to_sparse(),
        "sparse_csr": torch.randn(4, 4).to_sparse_csr(),
        "quantized": torch.quantize_per_tensor(torch.randn(5), 0.1, 3, torch.quint8),
        "meta": torch.empty(3, 4, device="meta"),
        "conj": torch.randn(3, dtype=torch.complex64).conj(),
        "attr": attr,
        "subclass": torch.randn(2).as_subclass(MyTensor),
    }
    try:
        out["nested"] = torch.nested.nested_tensor([torch.randn(2), torch.randn(3)])
    except Exception:  # nested tensors unsupported in this build
        pass
    return out, MyTensor


def _check_fallback(name, a, b):
    assert type(a) is type(b), name
    assert a.layout == b.layout and a.dtype == b.dtype and a.device == b.device, name
    if name == "meta":
        assert a.shape == b.shape
    elif name == "nested":
        assert all(torch.equal(x, y) for x, y in zip(a.unbind(), b.unbind()))
    elif name == "quantized":
        assert torch.equal(a.int_repr(), b.int_repr()) and a.q_scale() == b.q_scale()
    elif a.layout != torch.strided:
        assert torch.equal(a.to_dense(), b.to_dense())
    else:
        assert torch.equal(a.resolve_conj(), b.resolve_conj())
    if name == "attr":
        assert a.note == "kept"


def test_fallback_types_keep_torch_reduce(tmp_path):
    objs, MyTensor = _fallbacks()
    hooks = _torch.dump_hooks(4)
    red = hooks["reducers"][torch.Tensor].__self__
    for name, t in objs.items():
        if type(t) is torch.Tensor:
            assert red.reduce_tensor(t) is NotImplemented, name
    # in a module's globals so that pickle finds the subclass
    globals()["MyTensor"] = MyTensor
    MyTensor.__qualname__ = "MyTensor"
    try:
        path = _dump(objs, tmp_path)
        for loader in LOADERS.values():
            out = loader(path)
            for name, t in objs.items():
                _check_fallback(name, out[name], t)
    finally:
        del globals()["MyTensor"]


@pytest.mark.parametrize("protocol", [2, 3])
def test_low_protocols_keep_torch_reduce(tmp_path, protocol):
    w = torch.randn(6)
    path = _dump({"w": w, "v": w[2:]}, tmp_path, protocol=protocol)
    assert "torch.from_numpy" not in _globals(path)
    for loader in LOADERS.values():
        out = loader(path)
        assert_tensor_equal(out["w"], w)


def test_torch_not_imported_means_no_hooks(tmp_path):
    code = ("import sys, numpy, fastjoblib\n"
            "fastjoblib.dump({'a': numpy.arange(3)}, sys.argv[1])\n"
            "assert 'torch' not in sys.modules\nprint('ok')\n")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "n.pkl")], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


# ------------------------------------------------------------------------------------------------
# trust

def test_trusted_names(tmp_path):
    w = torch.arange(10, dtype=torch.float32)
    obj = {"w": w, "v": w[3:], "p": torch.nn.Parameter(torch.ones(2, dtype=torch.bfloat16))}
    path = _dump(obj, tmp_path)
    info = inspect(path)
    assert not info["dangerous"]
    assert set(info["needs_trusted"]) <= set(_torch.TORCH_GLOBALS) | {"torch.float32",
                                                                      "torch.bfloat16"}
    with pytest.raises(fastjoblib.UntrustedGlobalError):
        fastjoblib.load(path, trusted=True)
    out = fastjoblib.load(path, trusted=list(_torch.TORCH_GLOBALS) + ["torch.float32",
                                                                      "torch.bfloat16"])
    assert_tensor_equal(out["v"], w[3:]) and _same_storage(out["v"], out["w"])
    assert type(out["p"]) is torch.nn.Parameter
    # mmap under a restricted load: same names
    out = fastjoblib.load(path, mmap_mode="r", trusted=info["needs_trusted"])
    assert_tensor_equal(out["w"], w)


def test_hostile_offsets_raise(tmp_path):
    """set_ checks the view against the storage: a doctored size cannot read past it."""
    w = torch.arange(16, dtype=torch.float32)
    path = _dump(w[4:8], tmp_path)  # size (4,) at offset 4
    data = open(path, "rb").read()
    # the set_ args (offset 4, size (4,), stride (1,)) are written as BININT1 4, BININT1 4 ...:
    # grow the size to 200 (K\xc8)
    needle = b"K\x04K\x04\x85"
    assert data.count(needle) == 1
    bad = data.replace(needle, b"K\x04K\xc8\x85")
    p2 = tmp_path / "bad.pkl"
    p2.write_bytes(bad)
    for loader in LOADERS.values():
        with pytest.raises(RuntimeError):
            loader(str(p2))


def test_plain_pickle_api_unchanged():
    """fastjoblib's stdlib-compatible dumps() (no joblib array records) leaves tensors to torch."""
    w = torch.arange(3.0)
    data = fastjoblib.dumps(w)
    assert b"from_numpy" not in data
    assert torch.equal(pickle.loads(data), w)


def test_tensors_inside_object_arrays(tmp_path):
    """Object arrays are nested plain pickle streams (joblib's format): torch's own reduce there."""
    w = torch.arange(5.0)
    arr = np.empty(2, dtype=object)
    arr[0], arr[1] = w, "x"
    path = _dump({"arr": arr, "w": w}, tmp_path)
    for loader in LOADERS.values():
        out = loader(path)
        assert torch.equal(out["arr"][0], w) and out["arr"][1] == "x"
        assert_tensor_equal(out["w"], w)


# ------------------------------------------------------------------------------------------------
# the benchmark's PyTorch rows (python -m fastjoblib bench; numbers are not checked, the plumbing is)

def test_bench_torch_rows(tmp_path):
    from fastjoblib import _bench

    out_json = tmp_path / "bench.json"
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fastjoblib.__file__)))
    proc = subprocess.run(
        [sys.executable, "-m", "fastjoblib", "bench", "--tiny", "--workloads",
         "torch_tensor,torch_state_dict", "--codecs", "lz4", "--dir", str(tmp_path), "--json",
         str(out_json)], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "| " + " | ".join(_bench.TORCH_TABLE_COLUMNS) + " |" in out
    for wl in ("torch_tensor", "torch_state_dict"):
        for op in ("dump", "load", "load mmap", "dump lz4", "load lz4"):
            row = [ln for ln in out.splitlines() if ln.startswith(f"| {wl} | {op} |")]
            assert len(row) == 1, (wl, op, out)
            cells = [c.strip() for c in row[0].strip("|").split("|")]
            assert cells[2].endswith("x")                          # vs joblib
            assert cells[3].endswith("x") == (op in ("dump", "load", "load mmap"))  # vs torch
    raw = [ln for ln in out.splitlines() if ln.startswith("| torch_tensor | dump |")][0]
    assert raw.strip("|").split("|")[5].strip().endswith("x")      # the os.write floor
    assert "torch " + torch.__version__ in out                      # versions line
    data = json.loads(out_json.read_text())
    rows = data["results"]
    got = {(r["workload"], r["impl"], r["variant"], r["op"]) for r in rows}
    for wl in ("torch_tensor", "torch_state_dict"):
        assert (wl, "torch.save/torch.load", None, "dump") in got
        assert (wl, "torch.save/torch.load", "mmap=True", "load") in got
        assert (wl, "fastjoblib", "mmap_mode=r", "load") in got
    assert data["meta"]["versions"]["torch"] == torch.__version__
    # the peak-memory child runs the same contenders in a fresh interpreter
    mem = _bench.measure_memory("torch_tensor", 1 / 8192, [], str(tmp_path))
    if os.path.exists("/proc/self/clear_refs"):
        assert mem is not None and {"fastjoblib", "joblib", "torch.save/torch.load"} <= set(mem)
