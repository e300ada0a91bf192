"""inspect on files holding PyTorch tensors (issue 13): tensors shown as tensors, nothing run.

Real torch (optional: ``pip install '.[torch]'``; CI installs torch==2.13.0) and stock joblib:

- fastjoblib.dump files (storages as array records + torch rebuild calls): count, torch dtypes,
  shapes / strides / offsets, bytes, nn.Parameter and requires_grad counts, shared storages,
  compressed files, modules and state dicts; the report is the same in an interpreter where
  torch cannot be imported;
- stock joblib.dump / pickle files (torch's own reduce) are recognised as holding tensors, with
  their dtypes read from the torch.save bytes' header; torch's other rebuilds are counted;
- the CLI's first screen, --arrays and --json;
- the trusted=[...] list inspect suggests is exactly what loads a torch file: each name is needed;
- a doctored view past its storage is flagged.
"""
import ast
import json
import os
import pickle
import subprocess
import sys
from collections import Counter

import joblib
import numpy as np
import pytest

import fastjoblib
from fastjoblib._cli import main as cli_main
from fastjoblib._inspect import inspect

torch = pytest.importorskip(
    "torch", reason="torch is not installed (optional: pip install '.[torch]'; CI installs "
    "torch==2.13.0)")

PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(fastjoblib.__file__)))


def _sample():
    """Tensors of several dtypes, views of one storage, Parameters, requires_grad."""
    torch.manual_seed(0)
    w = torch.randn(6, 8)
    obj = {
        "w": w,
        "w_t": w.t(),                           # a view of w's storage
        "row": w[2, 1:5],                       # another, at an offset
        "bits": w.view(torch.int32)[0],         # same storage, other dtype
        "b": torch.ones(5, dtype=torch.bfloat16),
        "i": torch.arange(7, dtype=torch.int64),
        "m": torch.zeros(3, 2, dtype=torch.bool),
        "g": torch.zeros(4, requires_grad=True),
        "p": torch.nn.Parameter(torch.randn(3, 3)),
        "q": torch.nn.Parameter(torch.randn(2, dtype=torch.float16), requires_grad=False),
        "e": torch.empty(0, 5),
        "s": torch.tensor(3.5, dtype=torch.float64),
        "np": np.arange(10.0),                  # a plain NumPy array next to them
    }
    if hasattr(torch, "float8_e4m3fn"):
        obj["f8"] = torch.randn(9).to(torch.float8_e4m3fn)
    return obj


def _tensors(obj):
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _expected(obj):
    ts = _tensors(obj)
    return {
        "dtypes": Counter(str(t.dtype) for t in ts.values()),
        "nbytes": sum(t.numel() * t.element_size() for t in ts.values()),
        "views": Counter((str(t.dtype), tuple(t.shape), tuple(t.stride()), t.storage_offset())
                         for t in ts.values()),
        "parameters": sum(isinstance(t, torch.nn.Parameter) for t in ts.values()),
        "requires_grad": sum(t.requires_grad for t in ts.values()),
    }


def _views(info):
    return Counter((t["dtype"], tuple(t["shape"]), tuple(t["stride"]), t["offset"])
                   for t in info["list"])


def _cli(capsys, *args):
    rc = cli_main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("compress", [0, 3, "lz4"])
def test_fastjoblib_file_tensor_summary(tmp_path, compress):
    if compress == "lz4":
        pytest.importorskip("lz4", reason="lz4 is not installed (pip install lz4)")
    obj = _sample()
    path = str(tmp_path / "t.joblib")
    fastjoblib.dump(obj, path, compress=compress)
    info = inspect(path)["torch"]
    exp = _expected(obj)
    n = len(_tensors(obj))
    assert info["tensors"] == n and info["forms"] == {"array records": n}
    assert Counter(info["dtypes"]) == exp["dtypes"]
    assert info["nbytes"] == exp["nbytes"] and info["nbytes_unknown"] == 0
    assert _views(info) == exp["views"]
    assert info["parameters"] == exp["parameters"] == 2
    assert info["requires_grad"] == exp["requires_grad"] == 2  # g and p (q has it off)
    by_shape = {tuple(t["shape"]): t for t in info["list"]}
    assert by_shape[(3, 3)]["parameter"] and by_shape[(3, 3)]["requires_grad"] is True
    assert by_shape[(2,)]["parameter"] and by_shape[(2,)]["requires_grad"] is False
    assert by_shape[(4,)]["requires_grad"] is True and not by_shape[(4,)]["parameter"]
    # w, w.t(), w[2, 1:5] and the int32 view share one storage; every other tensor has its own
    assert info["shared_storages"] == 1 and info["tensors_on_shared"] == 4
    assert info["storages"] == n - 3
    real = {}
    for t in _tensors(obj).values():
        real[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    assert info["storage_nbytes"] == sum(real.values())
    assert info["out_of_bounds"] == 0 and info["other_rebuilds"] == {}
    # the storages are the array records marked as such; the NumPy array is not one
    report = inspect(path)
    marked = [a for a in report["arrays"] if a.get("torch_storage")]
    assert len(marked) == info["storages"]
    assert all(a["dtype"] == "|u1" for a in marked)
    assert sum(1 for a in report["arrays"] if not a.get("torch_storage")) == 1
    for t in info["list"]:
        assert report["arrays"][t["array"]].get("torch_storage")


def test_module_and_state_dict(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 4, dtype=torch.float64))
    p1, p2 = str(tmp_path / "m.joblib"), str(tmp_path / "sd.joblib")
    fastjoblib.dump(model, p1)
    fastjoblib.dump(model.state_dict(), p2)
    m = inspect(p1)["torch"]
    assert m["tensors"] == 4 and m["parameters"] == 4 and m["requires_grad"] == 4
    assert m["dtypes"] == {"torch.float32": 2, "torch.float64": 2}
    assert m["nbytes"] == sum(p.numel() * p.element_size() for p in model.parameters())
    sd = inspect(p2)["torch"]
    assert sd["tensors"] == 4 and sd["parameters"] == 0 and sd["requires_grad"] == 0
    assert _views(sd) == Counter((str(t.dtype), tuple(t.shape), tuple(t.stride()), 0)
                                 for t in model.state_dict().values())


def test_inspect_never_imports_torch(tmp_path):
    """The same report in an interpreter where `import torch` fails: nothing is imported or run."""
    path = str(tmp_path / "t.joblib")
    fastjoblib.dump(_sample(), path)
    here = inspect(path)["torch"]
    code = ("import sys, json\n"
            "sys.modules['torch'] = None\n"
            "from fastjoblib._inspect import inspect\n"
            f"r = inspect({path!r})\n"
            "assert sys.modules['torch'] is None\n"
            "print(json.dumps(r['torch']))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, PYTHONPATH=PKG_PARENT))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == json.loads(json.dumps(here))


def test_numpy_only_file_has_no_torch_entry(tmp_path):
    path = str(tmp_path / "a.joblib")
    fastjoblib.dump({"a": np.arange(5)}, path)
    assert inspect(path)["torch"] is None


@pytest.mark.parametrize("writer", ["joblib", "pickle"])
def test_torch_reduce_files_are_recognised(tmp_path, writer):
    """Stock joblib.dump and pickle keep torch's own reduce: tensors are still recognised, their
    dtypes read from the legacy torch.save header inside the storage bytes (never loaded)."""
    obj = _sample()
    path = str(tmp_path / "t.bin")
    if writer == "joblib":
        joblib.dump(obj, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(obj, f, protocol=4)
    info = inspect(path)["torch"]
    exp = _expected(obj)
    n = len(_tensors(obj))
    assert info["tensors"] == n and info["forms"] == {"torch's reduce": n}
    known = Counter(info["dtypes"])
    # float8 and other dtypes without a legacy storage class name come as '<Name>Storage'
    for dt in ("torch.float32", "torch.bfloat16", "torch.int64", "torch.bool", "torch.float16",
               "torch.float64", "torch.int32"):
        assert known[dt] == exp["dtypes"][dt], (dt, known)
    assert info["parameters"] == 2 and info["requires_grad"] == 2
    assert info["storage_nbytes"] is None  # torch.save blobs: sizes not claimed
    assert Counter((t["shape"], t["stride"], t["offset"]) for t in info["list"]) == Counter(
        (tuple(t.shape), tuple(t.stride()), t.storage_offset()) for t in _tensors(obj).values())
    report = inspect(path)
    assert "torch.storage._load_from_bytes" in report["dangerous"]


def test_other_torch_rebuilds_are_counted(tmp_path):
    sparse = torch.sparse_coo_tensor([[0, 1], [1, 0]], [1.0, 2.0], (2, 2),
                                     check_invariants=True)
    path = str(tmp_path / "s.joblib")
    fastjoblib.dump({"s": sparse, "d": torch.ones(3)}, path)  # sparse keeps torch's reduce
    info = inspect(path)["torch"]
    assert info["other_rebuilds"] == {"torch._utils._rebuild_sparse_tensor": 1}
    # its indices and values are dense tensors in the rebuild's arguments: array records too
    assert info["forms"] == {"array records": 3}
    assert Counter(info["dtypes"]) == {"torch.int64": 1, "torch.float32": 2}


def test_cli_first_screen_arrays_and_json(capsys, tmp_path):
    obj = _sample()
    for i in range(8):  # more tensors than the first screen shows
        obj["extra%d" % i] = torch.full((i + 1,), float(i))
    path = str(tmp_path / "t.joblib")
    fastjoblib.dump(obj, path)
    n = len(_tensors(obj))
    rc, out, _ = _cli(capsys, "inspect", path)
    assert rc == 0
    assert f"torch tensors: {n} (2 nn.Parameter, 2 requires_grad)" in out
    assert "torch.bfloat16" in out and "torch.float32 x" in out
    assert "1 of them shared by 4 tensors" in out
    assert "(torch storage)" in out and "nn.Parameter" in out
    assert f"the 5 largest:" in out and f"--arrays lists all {n} tensors" in out
    assert all(len(line) <= 120 for line in out.splitlines())
    rc, out, _ = _cli(capsys, "inspect", "--arrays", path)
    rows = [ln for ln in out.splitlines() if "torch." in ln and ln.lstrip()[:1].isdigit()
            and ("(" in ln)]
    assert len([r for r in rows if " torch." in r and "(torch storage)" not in r]) == n
    rc, out, _ = _cli(capsys, "inspect", "--json", path)
    data = json.loads(out)
    assert data["torch"]["tensors"] == n
    # stock joblib's file: recognised on the first screen too
    jpath = str(tmp_path / "j.joblib")
    joblib.dump(obj, jpath)
    rc, out, _ = _cli(capsys, "inspect", jpath)
    assert f"torch tensors: {n} (2 nn.Parameter, 2 requires_grad)" in out
    assert "by torch's own reduce" in out


def test_suggested_trusted_list_is_exactly_what_loads(capsys, tmp_path):
    """`inspect --trusted` (and the API's needs_trusted) for a torch file: that list loads it
    (plain and mmap_mode), and every name on it is needed."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(),
                                torch.nn.Linear(3, 2, dtype=torch.bfloat16))
    w = torch.arange(12.0, requires_grad=True)
    obj = {"model": model, "w": w, "v": w.detach()[2:], "n": torch.arange(3)}
    path = str(tmp_path / "t.joblib")
    fastjoblib.dump(obj, path)
    rc, out, _ = _cli(capsys, "inspect", "--trusted", path)
    assert rc == 0
    names = ast.literal_eval(out.strip())
    assert set(fastjoblib._torch.TORCH_GLOBALS) <= set(names) | {"torch.nn.Parameter"}
    assert {"torch.float32", "torch.bfloat16", "torch.int64"} <= set(names)
    with pytest.raises(fastjoblib.UntrustedGlobalError):
        fastjoblib.load(path, trusted=True)
    for mode in (None, "r"):
        out_obj = fastjoblib.load(path, trusted=names, mmap_mode=mode)
        assert torch.equal(out_obj["w"], w) and out_obj["w"].requires_grad
        assert torch.equal(out_obj["v"], w.detach()[2:])
        x = torch.ones(1, 4)
        with torch.no_grad():
            got = out_obj["model"][0](x)
            assert torch.equal(got, model[0](x))
    for name in names:
        fewer = [n for n in names if n != name]
        with pytest.raises(fastjoblib.UntrustedGlobalError):
            fastjoblib.load(path, trusted=fewer)


def test_view_past_its_storage_is_flagged(capsys, tmp_path):
    """A doctored size (as in test_torch.test_hostile_offsets_raise): inspect says the load
    would fail, without running anything."""
    w = torch.arange(16, dtype=torch.float32)
    path = tmp_path / "t.pkl"
    fastjoblib.dump(w[4:8], str(path))
    data = path.read_bytes()
    needle = b"K\x04K\x04\x85"
    assert data.count(needle) == 1
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(data.replace(needle, b"K\x04K\xc8\x85"))
    assert inspect(str(path))["torch"]["out_of_bounds"] == 0
    assert inspect(str(bad))["torch"]["out_of_bounds"] == 1
    rc, out, _ = _cli(capsys, "inspect", str(bad))
    assert rc == 0 and "1 tensor views run past their storage" in out


def test_inspect_tables_match_torch():
    """The tables inspect uses without torch (fastjoblib/_torch.py) agree with the real torch."""
    from fastjoblib import _torch

    for name, size in _torch.INSPECT_ITEMSIZE.items():
        dt = getattr(torch, name, None)
        if dt is None:
            continue  # a dtype of another torch version
        assert isinstance(dt, torch.dtype) and dt.itemsize == size, name
        assert str(dt) == "torch." + _torch.INSPECT_ALIAS.get(name, name), name
    for name, dtype in _torch.INSPECT_STORAGE_DTYPE.items():
        cls = getattr(torch, name + "Storage")
        assert cls.dtype == getattr(torch, dtype), name
    for np_str, name in _torch.INSPECT_FROM_NUMPY.items():
        assert torch.from_numpy(np.zeros(1, dtype=np.dtype(np_str))).dtype == getattr(torch, name)
    for full in _torch.INSPECT_CALLS:
        obj = torch
        for part in full.split(".")[1:]:
            obj = getattr(obj, part, None)
        assert obj is not None, full  # (torch 2.13 has them all: private names can move)


def test_many_tensors_all_counted_first_4096_listed(tmp_path):
    """Counts cover every tensor; the per-tensor list stops at 4096 (bounded report)."""
    n = 4100
    obj = [torch.full((2,), float(i)) for i in range(n)]
    obj[0].requires_grad_(True)
    obj.append(torch.nn.Parameter(torch.ones(3)))  # past the listed ones: still counted
    path = str(tmp_path / "many.joblib")
    fastjoblib.dump(obj, path)
    info = inspect(path)["torch"]
    assert info["tensors"] == n + 1 and len(info["list"]) == 4096
    assert info["parameters"] == 1 and info["requires_grad"] == 2
    assert info["nbytes"] == n * 8 + 12 and info["storages"] == n + 1
