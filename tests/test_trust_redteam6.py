"""Red-team round 6 (/work/redteam2): per-name work in the trust policy that grew with the name's
length or with the number of lookups, so that a small file took seconds to load or to refuse.

* dotted global names (8k dots): ``is_denied`` joined every dotted prefix (quadratic);
* many refused names under one private module: ``public_name`` parsed the package's source once
  per name, for the refusal message;
* one allowed global looked up 175k times: ``find_class`` ran the whole check each time.

Each stream runs in a child process (like tests/test_trust_attacks.py); the work is checked by
counting calls or characters, never by timing.
"""
import json
import os
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastjoblib import _trust
from fastjoblib._trust import (DEFAULT_TRUSTED, DENIED_MODULES, DENIED_NAMES,
                               UntrustedGlobalError, is_denied, make_find_class)


def u(text):
    b = text.encode()
    if len(b) < 256:
        return b"\x8c" + bytes([len(b)]) + b
    return b"X" + struct.pack("<I", len(b)) + b


def get(i):
    return b"h" + bytes([i]) if i < 256 else b"j" + struct.pack("<I", i)


MEMO, PROTO = b"\x94", b"\x80\x04"


def dotted_globals(n):
    """gen_dotted_globals.py: names of ~8k dots (module '.'*4096, distinct 4096-char names)."""
    body = PROTO + u("." * 4096) + MEMO + u("." * 4090) + MEMO
    for k in range(n):
        body += get(0) + u("." * 4090 + "%05d" % k) + b"\x930"
    return body + b"N."


def public_names_pickle(module, names):
    """gen_public_names.py: STACK_GLOBALs of module.<name> for each name (module memoised)."""
    b = PROTO + u(module) + MEMO + b"0"
    for name in names:
        b += get(0) + u(name) + b"\x930"
    return b + b"N."


def allowed_globals(module, name, n):
    """gen_allowed_globals.py: one allowed global looked up n times (memoised strings)."""
    b = PROTO + u(module) + b"q\x00" + u(name) + b"q\x01" + b"\x930"
    return b + (get(0) + get(1) + b"\x930") * n + b"N."


def run_child(code, timeout=300, extra_path=()):
    """Run `code` in a child (4 GiB address space); it prints one JSON line last."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*extra_path, *(p for p in sys.path if p)])
    prelude = textwrap.dedent("""
        import json, os, resource, sys
        if "asan" not in os.environ.get("LD_PRELOAD", ""):
            resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
        import fastjoblib
        from fastjoblib import _trust
        def outcome(f, *a, **k):
            try:
                r = f(*a, **k)
                return "returned " + type(r).__name__
            except Exception as exc:
                return f"{type(exc).__name__}: {exc}"
    """)
    p = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                       capture_output=True, timeout=timeout, env=env, text=True)
    assert p.returncode == 0, (p.returncode, p.stderr[-3000:])
    return json.loads(p.stdout.splitlines()[-1])


# ------------------------------------------------------------------------------------------------
# 1. Dotted names: is_denied / _module_denied are linear in the name

def _is_denied_reference(fullname):
    """The former is_denied (every dotted prefix joined): the decisions must not change."""
    if fullname in _trust._DENY_EXEMPT:
        return False
    if fullname in DENIED_NAMES:
        return True
    parts = fullname.split(".")
    for k in range(1, len(parts) + 1):
        prefix = ".".join(parts[:k])
        if (prefix in DENIED_MODULES or prefix in _trust._DENIED_MODULE_PREFIX_NAMES
                or prefix in DENIED_NAMES):
            return True
    if parts[0] == "types":
        return True
    if fullname not in _trust._DUNDER_OK and any(p.startswith("__") and p.endswith("__")
                                                 for p in parts[1:]):
        return True
    if any(p in _trust._GADGET_COMPONENTS for p in parts[1:]):
        return True
    return parts[-1] in _trust._GADGET_LEAVES or parts[-1].startswith(_trust._GADGET_LEAF_PREFIXES)


def _sample_names():
    entries = sorted(DEFAULT_TRUSTED | DENIED_NAMES | DENIED_MODULES
                     | _trust._DENIED_MODULE_PREFIX_NAMES | _trust._DENY_EXEMPT)
    names = set(entries)
    for e in entries:
        for tail in ("x", "Thing", "load", "a.b", "__init__", "os.system", "_x.y"):
            names.add(f"{e}.{tail}")
        names.add(f"pkg.{e}")
        names.add(f"{e}.")
        names.add(f"{e}..x")
        names.add(e.rpartition(".")[0] or e)
    names.update(["", ".", "..", "os", "osx.y", "numpy.lib.formatx.y", "numpy.lib.format",
                  "." * 100 + "os", "os" + "." * 100, "a" * 300 + ".b", "torch._C._x",
                  "types", "typesx.y", "numpy.ndarray." + "a." * 50 + "b"])
    return sorted(names)


def test_is_denied_decisions_unchanged():
    names = _sample_names()
    assert len(names) > 2000
    for n in names:
        assert is_denied(n) == _is_denied_reference(n), n


def test_module_denied_decisions_unchanged():
    for n in _sample_names():
        parts = n.split(".")
        ref = any(".".join(parts[:k]) in DENIED_MODULES
                  or ".".join(parts[:k]) in _trust._DENIED_MODULE_PREFIX_NAMES
                  for k in range(1, len(parts) + 1))
        assert _trust._module_denied(n) == ref, n


class _CountingStr(str):
    """A str that counts the characters of every slice taken of it."""
    sliced = 0

    def __getitem__(self, key):
        out = str.__getitem__(self, key)
        _CountingStr.sliced += len(out)
        return out


@pytest.mark.parametrize("check", ["is_denied", "_module_denied"])
def test_dotted_prefix_work_is_bounded(check):
    """The prefixes looked at are at most as long as the longest denylist entry: the characters
    sliced do not grow with the name (the former code joined ~16M chars for an 8k-dot name)."""
    f = getattr(_trust, check)
    counts = []
    for dots in (100, 1000, 8000):
        for name in ("." * dots + "x", "a." * dots + "b", "numpy." + "x." * dots + "y"):
            _CountingStr.sliced = 0
            f(_CountingStr(name))
            counts.append(_CountingStr.sliced)
    bound = (_trust._DENY_PREFIX_MAX + 1) * (_trust._DENY_PREFIX_MAX + 2) // 2
    assert max(counts) <= bound, counts
    assert counts[:3] == counts[3:6] == counts[6:], counts  # the same for 100 and 8000 dots


def test_dotted_globals_poc(tmp_path):
    """The red team's file (gen_dotted_globals.py 20): inspect returns, load refuses all 20."""
    path = tmp_path / "dotted_globals.pkl"
    path.write_bytes(dotted_globals(20))
    res = run_child(f"""
        path = {str(path)!r}
        r = fastjoblib.inspect(path)
        ins = [len(r["needs_trusted"]), r["dangerous"]]
        print(json.dumps([ins, outcome(fastjoblib.load, path, trusted=True)]))
    """)
    (needs, dangerous), load = res
    assert needs == 20 and dangerous == []
    assert load.startswith("UntrustedGlobalError: refused 20 globals not in the trusted set"), \
        load[:200]


# ------------------------------------------------------------------------------------------------
# 2. Public names: one parse per package, a bounded number of names resolved per message

@pytest.fixture
def public_pkg(tmp_path):
    """A package whose __init__.py re-exports T0..T99 from its private module _impl (and is
    large: 2,000 extra statements), on a path the child adds to sys.path."""
    name = f"fjt_pub6_{tmp_path.name[-8:].replace('-', '_')}"
    pkg = tmp_path / name
    pkg.mkdir()
    init = [f"from ._impl import T{k}" for k in range(100)]
    init += [f"v{k} = {k}" for k in range(2000)]
    (pkg / "__init__.py").write_text("\n".join(init) + "\n")
    (pkg / "_impl.py").write_text("".join(f"class T{k}:\n    pass\n" for k in range(100)))
    return tmp_path, name


def test_public_name_parses_each_package_once(public_pkg, monkeypatch):
    import ast
    root, name = public_pkg
    monkeypatch.syspath_prepend(str(root))
    parsed = []
    real = ast.parse
    monkeypatch.setattr(ast, "parse", lambda *a, **k: parsed.append(a[1:2]) or real(*a, **k))
    for k in range(100):
        assert _trust.public_name(f"{name}._impl.T{k}") == f"{name}.T{k}"
        assert _trust.public_name(f"{name}._impl.U{k}") == f"{name}._impl.U{k}"
    assert len(parsed) == 1, parsed
    # an edited file is parsed again (the cache is keyed by the file's mtime and size)
    init = root / name / "__init__.py"
    init.write_text(init.read_text() + "from ._impl import U0\n")
    os.utime(init, ns=(1, 1))
    assert _trust.public_name(f"{name}._impl.U0") == f"{name}.U0"
    assert len(parsed) == 2


def test_public_names_bounded(public_pkg, monkeypatch):
    root, name = public_pkg
    monkeypatch.syspath_prepend(str(root))
    names = [f"{name}._impl.T{k}" for k in range(100)]
    out = _trust.public_names(names)
    cap = _trust._PUBLIC_NAMES_MAX
    assert out == [f"{name}.T{k}" for k in range(cap)] + names[cap:]
    # a parse budget smaller than the file: not parsed, the names stay as they are
    _trust._PUBLIC_IMPORTS.clear()
    monkeypatch.setattr(_trust, "_PUBLIC_PARSE_BUDGET", 100)
    assert _trust.public_names(names[:3]) == names[:3]


def test_public_names_poc(public_pkg):
    """gen_public_names.py 300 (here: 300 refused names under one private module, of which 100
    have a public spelling): load(trusted=True) refuses, the message lists all 300 names and a
    trusted=[...] suggestion that loads the file; the package is parsed once."""
    root, name = public_pkg
    names = [f"T{k}" for k in range(100)] + [f"a{k}" for k in range(200)]
    path = root / "public_names.pkl"
    path.write_bytes(public_names_pickle(f"{name}._impl", names))
    res = run_child(f"""
        import ast
        parsed = []
        real = ast.parse
        ast.parse = lambda *a, **k: parsed.append(1) or real(*a, **k)
        try:
            fastjoblib.load({str(path)!r}, trusted=True)
            err = None
        except _trust.UntrustedGlobalError as exc:
            err = [str(exc), exc.names]
        print(json.dumps([err, len(parsed)]))
    """, extra_path=[str(root)])
    (text, refused), n_parsed = res
    assert n_parsed == 1
    assert sorted(refused) == sorted(f"{name}._impl.{n}" for n in names)
    assert text.startswith("refused 300 globals not in the trusted set")
    assert all(n in text for n in refused)
    cap = _trust._PUBLIC_NAMES_MAX
    suggest = [(f"{name}.{n.rpartition('.')[2]}" if n.rpartition(".")[2].startswith("T") else n)
               for n in refused[:cap]] + refused[cap:]
    assert f"trusted={suggest!r}" in text
    # the suggestion is correct: the file loads with it (a class of another module to be sure
    # the private spellings are needed: the public ones alone resolve through the alias rule)
    res = run_child(f"""
        import pickle
        bad = {[n for n in names if n.startswith("a")]!r}
        src = {str(root / name / "_impl.py")!r}
        with open(src, "a") as f:
            f.write("".join(f"class {{n}}:\\n    pass\\n" for n in bad))
        print(json.dumps(outcome(fastjoblib.load, {str(path)!r}, trusted={suggest!r})))
    """, extra_path=[str(root)])
    assert res == "returned NoneType", res


# ------------------------------------------------------------------------------------------------
# 3. find_class: one full check per distinct (module, name)

def _counting(monkeypatch, *funcs):
    calls = {f: 0 for f in funcs}
    for f in funcs:
        real = getattr(_trust, f)

        def wrapper(*a, _real=real, _f=f, **k):
            calls[_f] += 1
            return _real(*a, **k)
        monkeypatch.setattr(_trust, f, wrapper)
    return calls


def test_find_class_checks_each_global_once(monkeypatch):
    calls = _counting(monkeypatch, "_resolve", "is_denied", "_compat_name", "_identity_denied")
    policy = make_find_class(True)
    first = policy("numpy", "ndarray")
    assert first is np.ndarray
    assert all(policy("numpy", "ndarray") is first for _ in range(1000))
    assert calls == {"_resolve": 1, "is_denied": 1, "_compat_name": 1, "_identity_denied": 1}
    # refused answers are kept too, with the same name and reason each time
    for mod, name, why in (("os", "system", "denylist"), ("mypkg", "Thing", "not in the trusted")):
        reasons = set()
        for _ in range(100):
            with pytest.raises(UntrustedGlobalError) as info:
                policy(mod, name)
            reasons.add((info.value.name, info.value.reason))
        assert len(reasons) == 1 and why in reasons.pop()[1]
    assert calls["is_denied"] == 3 and calls["_compat_name"] == 3
    assert len(policy.checked) == 3


def test_find_class_cache_keeps_decisions():
    """Every name answered the same on a fresh policy and from the cache (second call)."""
    cached = make_find_class(True)
    for full in sorted(DEFAULT_TRUSTED) + ["os.system", "numpy.load", "builtins.eval",
                                           "mypkg.Thing", "numpy.ndarray.__init__"]:
        module, _, name = full.rpartition(".")
        answers = []
        for policy in (make_find_class(True), cached, cached):
            try:
                answers.append(("ok", policy(module, name)))
            except UntrustedGlobalError as exc:
                answers.append(("refused", exc.name, exc.reason))
        if answers[0][0] == "ok":
            assert answers[1][0] == answers[2][0] == "ok", full
            # shims and resolved objects are the same objects (per-load arrow stand-ins aside)
            if full not in _trust._ARROW_NAMES:
                assert answers[0][1] is answers[1][1] is answers[2][1], full
            assert answers[1][1] is answers[2][1], full
        else:
            assert answers[0] == answers[1] == answers[2], full


def test_find_class_cache_bounded_and_exact_str(monkeypatch):
    calls = _counting(monkeypatch, "is_denied")
    policy = make_find_class(True)
    n = _trust._CHECKED_MAX + 10
    for k in range(n):
        with pytest.raises(UntrustedGlobalError):
            policy("mypkg", f"T{k}")
    assert len(policy.checked) == _trust._CHECKED_MAX
    with pytest.raises(UntrustedGlobalError):
        policy("mypkg", f"T{n - 1}")  # beyond the bound: checked in full again
    assert calls["is_denied"] == n + 1

    class S(str):
        pass
    assert policy(S("numpy"), S("ndarray")) is np.ndarray
    assert policy(np.str_("numpy"), "dtype") is np.dtype
    assert len(policy.checked) == _trust._CHECKED_MAX  # subclasses of str are never keys


def test_allowed_globals_poc(tmp_path):
    """gen_allowed_globals.py pandas._libs.tslibs.offsets BusinessMonthEnd (here 20,000 lookups
    instead of 175k): loads; the full check ran once."""
    path = tmp_path / "allowed_globals.pkl"
    path.write_bytes(allowed_globals("pandas._libs.tslibs.offsets", "BusinessMonthEnd", 20000))
    res = run_child(f"""
        calls = {{"_resolve": 0, "is_denied": 0}}
        for f in list(calls):
            def wrap(*a, _real=getattr(_trust, f), _f=f, **k):
                calls[_f] += 1
                return _real(*a, **k)
            setattr(_trust, f, wrap)
        out = outcome(fastjoblib.load, {str(path)!r}, trusted=True)
        print(json.dumps([out, calls]))
    """)
    assert res == ["returned NoneType", {"_resolve": 1, "is_denied": 1}]
