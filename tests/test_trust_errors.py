"""trusted= refusals that lead to success: one error naming every global the file needs that the
policy refuses, with the exact trusted=[...] list; public names (sklearn.preprocessing.
StandardScaler) accepted for the object they name, resolved safely (only the user's names,
by identity, the denylist first)."""
import ast
import io
import pickle
import sys

import numpy as np
import pytest

import fastjoblib
from fastjoblib import UntrustedGlobalError
from fastjoblib._trust import public_name

sklearn = pytest.importorskip("sklearn")
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402


@pytest.fixture(scope="module")
def pipeline_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    x = rng.random((40, 3))
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, x[:, 0] > 0.5)
    path = str(tmp_path_factory.mktemp("trust") / "pipe.joblib")
    fastjoblib.dump(model, path)
    return path


def _suggested(exc):
    text = str(exc)
    return ast.literal_eval(text.split("trusted=", 1)[1].split(" (python -m", 1)[0])


def test_one_error_names_every_refused_global(pipeline_file):
    needs = fastjoblib.inspect(pipeline_file)["needs_trusted"]
    assert len(needs) == 3
    with pytest.raises(UntrustedGlobalError) as info:
        fastjoblib.load(pipeline_file, trusted=True)
    exc = info.value
    assert sorted(exc.names) == sorted(needs)
    text = str(exc)
    assert "refused 3 globals" in text
    for name in needs:
        assert name in text
    assert "python -m fastjoblib inspect --trusted" in text and "needs_trusted" in text
    suggested = _suggested(exc)
    assert "sklearn.preprocessing.StandardScaler" in suggested  # the public spelling
    model = fastjoblib.load(pipeline_file, trusted=suggested)
    assert type(model).__name__ == "Pipeline"


def test_one_error_from_file_objects_and_bytes(pipeline_file):
    with open(pipeline_file, "rb") as f:
        data = f.read()
    bio = io.BytesIO(b"junk" + data)
    bio.seek(4)
    with pytest.raises(UntrustedGlobalError) as info:
        fastjoblib.load(bio, trusted=True)
    assert len(info.value.names) == 3
    plain = pickle.dumps(fastjoblib.load(pipeline_file))
    with pytest.raises(UntrustedGlobalError) as info:
        fastjoblib.loads(plain, trusted=True)
    assert len(info.value.names) == 3
    # partly allowed: only the rest is named
    with pytest.raises(UntrustedGlobalError) as info:
        fastjoblib.loads(plain, trusted=["sklearn.pipeline.Pipeline"])
    assert "sklearn.pipeline.Pipeline" not in info.value.names and len(info.value.names) == 2


def test_public_name_accepted(tmp_path):
    path = str(tmp_path / "s.joblib")
    fastjoblib.dump(StandardScaler().fit(np.ones((3, 2))), path)
    with pytest.raises(UntrustedGlobalError):
        fastjoblib.load(path, trusted=True)
    obj = fastjoblib.load(path, trusted=["sklearn.preprocessing.StandardScaler"])
    assert type(obj) is StandardScaler
    # the private path keeps working
    obj = fastjoblib.load(path, trusted=["sklearn.preprocessing._data.StandardScaler"])
    assert type(obj) is StandardScaler
    # a listed public name allows that object only, not its module's neighbours
    other = pickle.dumps(sklearn.preprocessing.MinMaxScaler)
    with pytest.raises(UntrustedGlobalError):
        fastjoblib.loads(other, trusted=["sklearn.preprocessing.StandardScaler"])


def _global(module, name):
    return b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n."


@pytest.fixture
def alias_pkg(tmp_path, monkeypatch):
    """Modules under unique names in tmp_path: fjt_alias (a class claiming another class's
    path), fjt_gadget (an innocent name for os.system), fjt_marker (writes a file on import)."""
    tag = tmp_path.name.replace("-", "_")[-12:]
    names = {k: f"fjt_{k}_{tag}" for k in ("alias", "gadget", "marker")}
    marker = tmp_path / "imported"
    (tmp_path / f"{names['alias']}.py").write_text(
        "class B:\n    pass\n"
        "class A:\n    pass\n"
        f"A.__module__ = {names['alias']!r}\nA.__qualname__ = 'B'\n")
    (tmp_path / f"{names['gadget']}.py").write_text("import os\nrun = os.system\n")
    (tmp_path / f"{names['marker']}.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nclass C:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield names, marker
    for n in names.values():
        sys.modules.pop(n, None)


def test_file_cannot_steer_an_alias(alias_pkg):
    names, _ = alias_pkg
    # A claims to be alias.B; the file names alias.B, a different object: refused (identity)
    with pytest.raises(UntrustedGlobalError):
        fastjoblib.loads(_global(names["alias"], "B"), trusted=[f"{names['alias']}.A"])
    assert fastjoblib.loads(_global(names["alias"], "A"), trusted=[f"{names['alias']}.A"])


def test_denylist_wins_over_an_alias(alias_pkg):
    names, _ = alias_pkg
    # listing an innocent-looking name of os.system does not allow posix.system
    with pytest.raises(UntrustedGlobalError) as info:
        fastjoblib.loads(_global("posix", "system"), trusted=[f"{names['gadget']}.run"])
    assert "denylist" in str(info.value)
    with pytest.raises(UntrustedGlobalError):
        fastjoblib.loads(_global(names["gadget"], "run"), trusted=[f"{names['gadget']}.run"])


def test_listed_names_imported_only_when_needed(alias_pkg):
    names, marker = alias_pkg
    listed = [f"{names['marker']}.C"]
    assert fastjoblib.loads(pickle.dumps([1, 2]), trusted=listed) == [1, 2]
    assert not marker.exists()  # nothing refused: the listed module was not imported
    with pytest.raises(UntrustedGlobalError):
        fastjoblib.loads(_global(names["alias"], "B"), trusted=listed)
    assert not marker.exists()  # another top-level package: not imported either


def test_public_name_is_static(tmp_path, monkeypatch):
    """inspect --trusted's public spellings come from reading the package's __init__.py, never
    from importing it."""
    pkg = tmp_path / f"fjt_pub_{tmp_path.name[-8:].replace('-', '_')}"
    pkg.mkdir()
    marker = tmp_path / "ran"
    (pkg / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                     "from ._impl import Thing\n")
    (pkg / "_impl.py").write_text("class Thing:\n    pass\nclass Hidden:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert public_name(f"{pkg.name}._impl.Thing") == f"{pkg.name}.Thing"
    assert public_name(f"{pkg.name}._impl.Hidden") == f"{pkg.name}._impl.Hidden"
    assert public_name("sklearn.tree._classes.DecisionTreeClassifier") == \
        "sklearn.tree.DecisionTreeClassifier"
    assert not marker.exists()
    sys.modules.pop(pkg.name, None)
