"""The command line (python -m fastjoblib): help, inspect, convert, bench, exit codes.

Most cases call fastjoblib._cli.main in-process (fast); a few run the real `python -m fastjoblib`
in a subprocess to check exit codes and that expected errors print one line, no traceback.
Converted files are read back with STOCK joblib.load (and pickle where the input was a pickle).
"""
import ast
import gzip
import json
import os
import pickle
import subprocess
import tempfile
import sys

import joblib
import numpy as np
import pytest

import fastjoblib
from fastjoblib import _cli
from fastjoblib._compressors import detect
from corpus import assert_deep_equal, corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(fastjoblib.__file__)))


def run_cli(*args, timeout=120, stdin=None):
    """The real command line in a subprocess: (returncode, stdout, stderr)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [PKG_PARENT, os.path.dirname(os.path.abspath(__file__)), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-m", "fastjoblib", *args], capture_output=True,
                          text=True, env=env, timeout=timeout, stdin=stdin)
    return proc.returncode, proc.stdout, proc.stderr


def main(capsys, *args):
    """fastjoblib._cli.main in-process: (returncode, stdout, stderr)."""
    rc = _cli.main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def sample():
    """A mixed payload: every corpus array kind, containers, and the sklearn / pandas objects.
    (np.matrix and memmap come back as ndarray from joblib on NumPy 2: left out here, the
    persistence tests cover them.)"""
    objs = corpus()
    for name in ("array_matrix",):
        objs.pop(name, None)
    return objs


def kind_of(path):
    with open(path, "rb") as f:
        return detect(f.read(8))


# ------------------------------------------------------------------------------------------------
# help


def test_help_subprocess():
    rc, out, err = run_cli("--help")
    assert rc == 0, err
    for cmd in ("inspect", "convert", "bench"):
        assert cmd in out


@pytest.mark.parametrize("cmd", ["inspect", "convert", "bench"])
def test_subcommand_help(capsys, cmd):
    with pytest.raises(SystemExit) as exc:
        _cli.main([cmd, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m fastjoblib " + cmd)


def test_no_command_prints_help_and_fails(capsys):
    rc, out, _ = main(capsys)
    assert rc == 1
    assert "inspect" in out and "convert" in out


def test_usage_error_exits_1(capsys):
    with pytest.raises(SystemExit) as exc:
        _cli.main(["convert", "only-one-arg"])
    assert exc.value.code == 1
    assert "see --help" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# inspect


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.random((40, 3))
    model = LogisticRegression().fit(x, (x[:, 0] > 0.5).astype(int))
    path = str(tmp_path_factory.mktemp("cli") / "model.joblib")
    joblib.dump({"model": model, "f": np.ones((3, 4), order="F"),
                 "big": np.arange(1000, dtype=">i4"), "obj": np.array([1, "x"], dtype=object)},
                path)
    return path


def test_inspect_text(capsys, model_file):
    from fastjoblib._inspect import inspect

    report = inspect(model_file)
    rc, out, err = main(capsys, "inspect", "--arrays", model_file)
    assert rc == 0, err
    assert "joblib>=1.2" in out and "raw" in out
    for name in report["globals"]:
        assert name in out
    # --arrays: each array record is a row with its dtype, shape, order, offset and size
    section = out.split("array records")[1].split("\n\n")[0]
    rows = [line for line in section.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == len(report["arrays"])
    for row, rec in zip(rows, report["arrays"]):
        assert f" {rec['offset']} " in row and _cli.human_size(rec["nbytes"]) in row, row
        assert f" {rec['order']} " in row
    assert ">i4" in out and "(1000,)" in out and "(3, 4)" in out
    assert "_sklearn_version" in out
    # the estimator class is outside the default trusted set: flagged '?'
    assert any(line.lstrip().startswith("?") and "LogisticRegression" in line
               for line in out.splitlines())


def test_inspect_json(capsys, model_file):
    from fastjoblib._inspect import inspect

    rc, out, err = main(capsys, "inspect", "--json", model_file)
    assert rc == 0, err
    data = json.loads(out)
    expected = json.loads(json.dumps(inspect(model_file), default=str))
    assert data == expected
    assert data["format"] == "joblib>=1.2"
    assert [a["dtype"] for a in data["arrays"]].count(">i4") == 1


def test_inspect_json_gives_a_long_text_once(capsys, tmp_path):
    """Array records sharing one structured dtype (through the memo): --json names its text once
    (a 1 MiB file of 36,500 such records printed 730 MB; one of 129,000 records sharing an 8 KB
    class name, 1.09 GB)."""
    import numpy as np

    dt = np.dtype([(f"field_{i}", "<f8") for i in range(60)])
    path = str(tmp_path / "many.pkl")
    fastjoblib.dump([np.zeros(1, dt) for _ in range(500)] + [np.zeros(3, "<i4")], path)
    rc, out, err = main(capsys, "inspect", "--json", path)
    assert rc == 0, err
    data = json.loads(out)
    text = data["texts"]
    assert len(text) == 1 and "field_59" in text[0]
    dtypes = [a["dtype"] for a in data["arrays"]]
    assert dtypes == ["texts[0]"] * 500 + ["<i4"]
    assert len(out) < 500 * 300  # not 500 copies of the text
    # the rest of the report is the inspect() report
    from fastjoblib._inspect import inspect

    expected = json.loads(json.dumps(inspect(path), default=str))
    for a in expected["arrays"][:500]:
        a["dtype"] = "texts[0]"
    del data["texts"]
    assert data == expected


def test_inspect_trusted(capsys, model_file):
    from fastjoblib._inspect import inspect

    rc, out, err = main(capsys, "inspect", "--trusted", model_file)
    assert rc == 0, err
    listed = ast.literal_eval(out)
    needs = inspect(model_file)["needs_trusted"]
    assert len(listed) == len(needs)
    # public names where the package has them; trusted= accepts them
    assert "sklearn.linear_model.LogisticRegression" in listed
    assert "sklearn.linear_model._logistic.LogisticRegression" in needs
    obj = fastjoblib.load(model_file, trusted=listed)
    assert type(obj["model"]).__name__ == "LogisticRegression"


def test_inspect_forest_first_screen(capsys, tmp_path):
    """A 200-tree RandomForest: the text report fits in 60 lines of at most 120 characters,
    with provenance and the needs-trusted list on the first screen (24 lines)."""
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    x = rng.random((300, 5))
    rf = RandomForestClassifier(n_estimators=200, random_state=0, n_jobs=1).fit(x, x[:, 0] > .5)
    path = str(tmp_path / "rf.joblib")
    fastjoblib.dump(rf, path)
    rc, out, err = main(capsys, "inspect", path)
    assert rc == 0, err
    lines = out.rstrip("\n").splitlines()
    assert len(lines) <= 60, len(lines)
    assert max(len(ln) for ln in lines) <= 120
    screen = "\n".join(lines[:24])
    assert "provenance" in screen and "fastjoblib" in screen.split("provenance")[1]
    assert "needs trusted=[" in screen and "sklearn.ensemble.RandomForestClassifier" in screen
    assert "array records: 801" in out and "--arrays" in out
    rc, full, err = main(capsys, "inspect", "--arrays", path)
    assert rc == 0 and len(full.splitlines()) > 801
    assert max(len(ln) for ln in full.splitlines()) <= 120


def test_inspect_stdin_subprocess(model_file):
    from fastjoblib._inspect import inspect

    with open(model_file, "rb") as f:
        rc, out, err = run_cli("inspect", "--json", "-", stdin=f)
    assert rc == 0, err
    assert json.loads(out) == json.loads(json.dumps(inspect(model_file), default=str))


def test_inspect_dangerous_is_flagged_not_run(capsys, tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pkl"
    # os.system would create the marker if anything ran the file
    path.write_bytes(b"cos\nsystem\n(V touch %s\ntR." % str(marker).encode())
    rc, out, _ = main(capsys, "inspect", str(path))
    assert rc == 0
    assert "DANGEROUS" in out and "os.system" in out
    rc, out, err = main(capsys, "inspect", "--trusted", str(path))
    assert rc == 1 and "dangerous" in err
    assert ast.literal_eval(out) == []
    assert not marker.exists()


def test_inspect_compressed_and_pickle(capsys, tmp_path):
    p1 = tmp_path / "a.pkl.gz"
    joblib.dump([np.arange(10)], str(p1), compress=("gzip", 3))
    rc, out, _ = main(capsys, "inspect", str(p1))
    assert rc == 0 and "gzip (compressed)" in out
    p2 = tmp_path / "plain.pkl"
    p2.write_bytes(pickle.dumps({"a": [1, 2]}, protocol=5))
    rc, out, _ = main(capsys, "inspect", str(p2))
    assert rc == 0 and "format pickle" in out and "protocol 5," in out


def test_inspect_errors(capsys, tmp_path):
    rc, _, err = main(capsys, "inspect", str(tmp_path / "missing.pkl"))
    assert rc == 1 and "no such file" in err
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"\x80\x04\x95\xff\xff\xff\x00\x00\x00\x00\x00garbage")
    rc, _, err = main(capsys, "inspect", str(bad))
    assert rc == 1 and "not a readable joblib file or pickle" in err
    assert len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------------
# convert


@pytest.mark.parametrize("compress", [None, "none", "zlib", "gzip:1", "bz2:9", "xz", "lz4", "zstd:3", "4"])
def test_parse_compress(compress):
    value = _cli.parse_compress(compress)
    expected = {None: 0, "none": ("zlib", 0), "zlib": "zlib", "gzip:1": ("gzip", 1),
                "bz2:9": ("bz2", 9), "xz": "xz", "lz4": "lz4", "zstd:3": ("zstd", 3), "4": 4}
    assert value == expected[compress]


@pytest.mark.parametrize("bad", ["snappy", "zlib:10", "zlib:x", "12"])
def test_parse_compress_rejects(bad):
    with pytest.raises(_cli.CLIError):
        _cli.parse_compress(bad)


def test_convert_joblib_to_zstd(capsys, tmp_path):
    obj = sample()
    src, dst = str(tmp_path / "in.joblib"), str(tmp_path / "out.zst")
    joblib.dump(obj, src)
    rc, out, err = main(capsys, "convert", src, dst)  # .zst: inferred from the extension
    assert rc == 0, err
    assert "in.joblib" in out and "out.zst" in out and "zstd" in out
    assert kind_of(dst) == "zstd"
    assert_deep_equal(obj, fastjoblib.load(dst), native_ok=True)
    register = getattr(fastjoblib, "register_zstd_with_joblib", None)
    if register is None:
        pytest.skip("fastjoblib.register_zstd_with_joblib is not available")
    from joblib import compressor as jc

    saved = dict(jc._COMPRESSORS)
    try:
        register()
        assert_deep_equal(obj, joblib.load(dst), native_ok=True)
    finally:
        jc._COMPRESSORS.clear()
        jc._COMPRESSORS.update(saved)


def test_convert_pickle_to_joblib(capsys, tmp_path):
    obj = sample()
    src, dst = str(tmp_path / "plain.pkl"), str(tmp_path / "out.joblib")
    with open(src, "wb") as f:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
    rc, _, err = main(capsys, "convert", src, dst)
    assert rc == 0, err
    assert kind_of(dst) == "not-compressed"
    from fastjoblib._inspect import inspect

    assert inspect(dst)["format"] == "joblib>=1.2"  # array records, aligned
    assert_deep_equal(obj, joblib.load(dst), native_ok=True)
    loaded = joblib.load(dst, mmap_mode="r")
    assert isinstance(loaded["array_float64"], np.memmap)


def test_convert_gzip_to_plain(capsys, tmp_path):
    obj = sample()
    src, dst = str(tmp_path / "in.pkl.gz"), str(tmp_path / "out.pkl.gz")
    joblib.dump(obj, src, compress=("gzip", 6))
    rc, _, err = main(capsys, "convert", src, dst, "--compress", "none", "--protocol", "5")
    assert rc == 0, err
    assert kind_of(dst) == "not-compressed"  # 'none' wins over the .gz extension
    with open(dst, "rb") as f:
        assert f.read(2) == b"\x80\x05"
    assert_deep_equal(obj, joblib.load(dst), native_ok=True)


@pytest.mark.parametrize("spec,kind", [("gzip:1", "gzip"), ("bz2", "bz2"), ("lzma:1", "lzma"),
                                       ("lz4", "lz4"), ("zlib:9", "zlib")])
def test_convert_compressors_read_by_stock_joblib(capsys, tmp_path, spec, kind):
    if kind == "lz4":
        pytest.importorskip("lz4")
    obj = {"a": np.arange(5000.0).reshape(50, 100), "s": ["x"] * 10, "o": np.array([None, 1])}
    src, dst = str(tmp_path / "in.pkl"), str(tmp_path / "out.bin")
    joblib.dump(obj, src)
    rc, _, err = main(capsys, "convert", src, dst, "--compress", spec, "--threads", "2")
    assert rc == 0, err
    assert kind_of(dst) == kind
    assert_deep_equal(obj, joblib.load(dst))


def test_convert_in_place(capsys, tmp_path):
    obj = {"big": np.arange(300_000.0), "n": [1, 2, 3]}
    path = str(tmp_path / "model.pkl")
    joblib.dump(obj, path)
    before = os.path.getsize(path)
    rc, _, err = main(capsys, "convert", path, path, "--compress", "zlib:6")
    assert rc == 0, err
    assert kind_of(path) == "zlib" and os.path.getsize(path) < before
    assert_deep_equal(obj, joblib.load(path))
    assert os.listdir(tmp_path) == ["model.pkl"]  # no temporary left behind


@pytest.mark.parametrize("durable", [False, True])
def test_convert_durable(capsys, tmp_path, monkeypatch, durable):
    """--durable fsyncs OUT (the inode that ends up at OUT's name) and OUT's directory; without
    it, nothing is fsynced."""
    obj = {"w": np.arange(1000.0)}
    src, dst = str(tmp_path / "in.pkl"), str(tmp_path / "out.pkl")
    joblib.dump(obj, src)
    joblib.dump({"old": 1}, dst)
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        st = os.fstat(fd)
        synced.append((st.st_dev, st.st_ino))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    args = ["convert", src, dst] + (["--durable"] if durable else [])
    rc, _, err = main(capsys, *args)
    assert rc == 0, err
    assert_deep_equal(obj, joblib.load(dst))
    st_out, st_dir = os.stat(dst), os.stat(tmp_path)
    if durable:
        assert synced == [(st_out.st_dev, st_out.st_ino), (st_dir.st_dev, st_dir.st_ino)]
    else:
        assert synced == []
    assert sorted(os.listdir(tmp_path)) == ["in.pkl", "out.pkl"]


@pytest.mark.parametrize("writer", [
    "dump_joblib_010", "dump_joblib_09_compressed", "dump_joblib_09",
])
def test_convert_old_format(capsys, tmp_path, monkeypatch, writer):
    oldformats = pytest.importorskip("oldformats")
    obj = {"a": np.arange(100.0), "b": "text"}
    src, dst = str(tmp_path / "old.pkl"), str(tmp_path / "new.pkl")
    getattr(oldformats, writer)(obj, src)
    monkeypatch.chdir(tmp_path.parent)  # companion files must be found next to the pickle
    rc, _, err = main(capsys, "convert", src, dst)
    assert rc == 0, err
    assert_deep_equal(obj, joblib.load(dst))


def test_convert_corrupt_file_subprocess(tmp_path):
    src = tmp_path / "broken.joblib"
    joblib.dump({"a": np.arange(1000.0)}, str(src))
    data = src.read_bytes()
    src.write_bytes(data[: len(data) // 2])  # truncated
    dst = tmp_path / "out.joblib"
    rc, out, err = run_cli("convert", str(src), str(dst))
    assert rc == 1
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fastjoblib convert: error: cannot load")
    assert "inspect" in lines[0]  # says what to do
    assert not dst.exists()


def test_convert_garbage_and_missing(capsys, tmp_path):
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(os.urandom(256))
    rc, _, err = main(capsys, "convert", str(garbage), str(tmp_path / "o.pkl"))
    assert rc == 1 and "cannot load" in err
    gz = tmp_path / "bad.gz"
    gz.write_bytes(gzip.compress(b"not a pickle at all")[:-6])
    rc, _, err = main(capsys, "convert", str(gz), str(tmp_path / "o.pkl"))
    assert rc == 1 and "cannot load" in err
    rc, _, err = main(capsys, "convert", str(tmp_path / "nope.pkl"), str(tmp_path / "o.pkl"))
    assert rc == 1 and "no such file" in err
    good = tmp_path / "good.pkl"
    joblib.dump([1], str(good))
    rc, _, err = main(capsys, "convert", str(good), str(tmp_path / "o.pkl"), "--compress", "snappy")
    assert rc == 1 and "unknown compressor" in err
    rc, _, err = main(capsys, "convert", str(good), str(tmp_path / "nodir" / "o.pkl"))
    assert rc == 1 and "cannot write" in err
    assert not (tmp_path / "o.pkl").exists()


# ------------------------------------------------------------------------------------------------
# bench


def test_bench_tiny_json(tmp_path):
    """The real command: from a source checkout it runs benchmarks/ratios.py's engine, from an
    installed package the built-in set; either way the JSON follows fastjoblib-bench/1."""
    out_json = tmp_path / "bench.json"
    rc, out, err = run_cli("bench", "--tiny", "--json", str(out_json), timeout=300)
    assert rc == 0, err
    data = json.loads(out_json.read_text())
    assert data["schema"] == "fastjoblib-bench/1"
    assert data["meta"]["size"] == "tiny"
    rows = data["results"]
    impls = {r["impl"] for r in rows}
    assert {"fastjoblib", "joblib"} <= impls and impls & {"pickle", "pickle-5"}
    workloads = {r["workload"] for r in rows}
    assert len(workloads) >= 3
    for wl in workloads:
        assert wl in out  # the table has the workload's rows
        fj = [r for r in rows if r["workload"] == wl and r["impl"] == "fastjoblib"]
        assert {r["op"] for r in fj} == {"dump", "load"}
    for r in rows:
        assert r["seconds_median"] > 0 and r["file_bytes"] > 0
        assert r["seconds_min"] is None or r["seconds_min"] <= r["seconds_median"]
    pytest.importorskip("matplotlib")
    img = tmp_path / "img"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "charts.py"),
                           str(out_json), "--out", str(img)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (img / "bench_time.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_one_definition_and_readme_columns(tmp_path):
    """benchmarks/ratios.py and `python -m fastjoblib bench` are one benchmark: same options,
    workload names, report columns (the README's), medians, raw floor; machine, filesystem and
    versions printed with the table, and the command that reproduces it."""
    from fastjoblib import _bench

    ratios = os.path.join(ROOT, "benchmarks", "ratios.py")
    if not os.path.isfile(ratios):
        pytest.skip("no benchmarks/ratios.py in this checkout")
    args = ["--tiny", "--workloads", "big_array,small_dicts", "--codecs", "bz2", "--no-memory"]
    proc = subprocess.run([sys.executable, ratios] + args, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, PYTHONPATH=PKG_PARENT))
    assert proc.returncode == 0, proc.stderr
    rc, out, err = run_cli("bench", *args, timeout=300)
    assert rc == 0, err
    header = "| " + " | ".join(_bench.TABLE_COLUMNS) + " |"
    for text in (proc.stdout, out):
        assert header in text
        assert "big_array | load | " in text and "small_dicts | dump | " in text
        assert "big_array | dump bz2 |" in text  # --codecs honoured (bz2 needs no package)
        assert "medians" in text and "Versions: fastjoblib" in text and "Machine: " in text
        assert "Files in " in text and "(" + _bench._fstype(tempfile.gettempdir()) + ")" in text
    assert "Command: python benchmarks/ratios.py --tiny" in proc.stdout
    assert "Command: python -m fastjoblib bench --tiny" in out
    # the raw floor is a column of the big_array rows (a ratio, not empty)
    row = [ln for ln in out.splitlines() if ln.startswith("| big_array | dump |")][0]
    assert row.split("|")[6].strip().endswith("x"), row
    # the README's table has these columns and these workload names
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    head = [ln for ln in readme.splitlines() if ln.startswith("| workload | op | vs joblib")][0]
    cells = [c.strip() for c in head.strip("|").split("|")]
    for col in _bench.TABLE_COLUMNS:
        assert any(c == col or c.startswith(col + " (") for c in cells), (col, cells)
    for wl in _bench.DEFAULT_WORKLOADS:
        assert f"| {wl} | dump |" in readme, wl


def test_bench_missing_packages_skip_with_a_note(tmp_path):
    """Codecs and workloads whose package is missing are skipped with one line each naming the
    pip command; the run still exits 0 (the required-dependencies-only case)."""
    code = ("import sys\n"
            "for m in ('zstandard', 'lz4', 'sklearn', 'joblib', 'torch'): sys.modules[m] = None\n"
            "from fastjoblib._cli import main\n"
            "sys.exit(main(['bench', '--tiny', '--no-memory', '--workloads', "
            "'big_array,random_forest,torch_tensor,torch_state_dict', "
            "'--codecs', 'zlib,lz4,zstd']))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, PYTHONPATH=PKG_PARENT))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "pip install zstandard" in out and "pip install lz4" in out
    assert "random_forest: skipped" in out and "pip install scikit-learn" in out
    assert "torch_tensor: skipped" in out and "torch_state_dict: skipped" in out
    assert "pip install torch" in out and "torch_tensor |" not in out
    assert "pip install joblib" in out
    assert "big_array | dump zlib |" in out and "big_array | dump zstd |" not in out
    assert "Traceback" not in proc.stderr


def test_bench_option_errors(capsys):
    rc, _, err = main(capsys, "bench", "--tiny", "--codecs", "zlib,snappy")
    assert rc == 1 and "unknown snappy" in err
    rc, _, err = main(capsys, "bench", "--tiny", "--runs", "0")
    assert rc == 1 and "--runs" in err
    rc, _, err = main(capsys, "bench", "--tiny", "--dir", "/nonexistent/dir")
    assert rc == 1 and "not a directory" in err
    rc, _, err = main(capsys, "bench", "--tiny", "--workloads", "large-array")
    assert rc == 1 and "unknown large-array" in err and "big_array" in err
    rc, _, err = main(capsys, "bench", "--tiny", "--quick")
    assert rc == 1 and "choose one" in err
    rc, _, err = main(capsys, "bench", "--scale", "0")
    assert rc == 1 and "--scale" in err


@pytest.mark.parametrize("name,expected", [
    ("fastjoblib", ("fastjoblib", "none", None)),
    ("joblib zlib", ("joblib", "zlib", None)),
    ("fastjoblib mmap_mode=r", ("fastjoblib", "none", "mmap_mode=r")),
    ("pickle-5", ("pickle-5", "none", None)),
    ("fastjoblib.dump_pickle-5", ("fastjoblib.dump_pickle-5", "none", None)),
    ("raw os.write / np.empty+readinto", ("raw floor", "none", None)),
    ("torch.save/torch.load", ("torch.save/torch.load", "none", None)),
    ("torch.save/torch.load mmap=True", ("torch.save/torch.load", "none", "mmap=True")),
])
def test_split_contender(name, expected):
    from fastjoblib import _bench

    assert _bench.split_contender(name, ["zlib", "lz4"]) == expected
