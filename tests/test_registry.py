"""The codec registry (fastjoblib._compressors.REGISTRY) is the one declaration: the C dispatch
table (generated from it by setup.py), the stubs' Literal lists, the CLI, bench and inspect all
follow it."""
import ast
import io
import os

import pytest

import fastjoblib
from fastjoblib import _cli, _compressors, _core
from fastjoblib._compressors import CODEC_NAMES, REGISTRY
from fastjoblib._inspect import inspect

PKG = os.path.dirname(os.path.abspath(fastjoblib.__file__))


def _literal_lists(stub):
    with open(os.path.join(PKG, stub)) as f:
        tree = ast.parse(f.read())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and getattr(node.value, "id", None) == "Literal":
            elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            values = [e.value for e in elts if isinstance(e, ast.Constant)]
            if "zlib" in values:
                found.append(values)
    return found


def test_stub_literals_follow_the_registry():
    """One Literal of codec names (_core.pyi's _Codec), equal to the registry's names in its
    order; __init__.pyi reuses it instead of a list of its own."""
    lists = _literal_lists("_core.pyi")
    assert len(lists) == 1, lists
    assert tuple(lists[0]) == CODEC_NAMES, (
        "python/fastjoblib/_core.pyi: set _Codec = Literal[%s]"
        % ", ".join(repr(n) for n in CODEC_NAMES))
    assert _literal_lists("__init__.pyi") == []
    with open(os.path.join(PKG, "__init__.pyi")) as f:
        text = f.read()
    assert "| _Codec" in text and "_Codec," in text


def test_registry_is_consistent():
    assert len(set(CODEC_NAMES)) == len(CODEC_NAMES)
    for c in REGISTRY:
        assert c.name.isidentifier() and c.c_name.isidentifier()
        assert c.min_level <= c.default_level <= c.max_level
        assert c.extension.startswith(".") and c.prefix
        assert (c.package is None) == (c.pip_name is None)
        assert _compressors.detect(c.prefix + b"\0" * 8) == c.name


def test_c_dispatch_is_the_registry_table():
    with pytest.raises(ValueError) as info:
        _core._compress("nosuchcodec", b"x")
    listed = str(info.value).split("Possible values are ")[1]
    assert ast.literal_eval(listed.rstrip(".")) == list(CODEC_NAMES)
    data = bytes(range(256)) * 1000
    for c in REGISTRY:
        if _compressors.missing_package(c.name):
            continue
        blob = _core._compress(c.name, data)
        assert blob.startswith(c.prefix), c.name
        assert _core._decompress(c.name, blob) == data


def test_inspect_decodes_through_the_load_readers(tmp_path):
    """Each codec's file is inspected through _core's reader (the one load uses)."""
    obj = {"a": list(range(100)), "b": "x" * 1000}
    for c in REGISTRY:
        if _compressors.missing_package(c.name):
            continue
        path = str(tmp_path / ("f" + c.extension))
        fastjoblib.dump(obj, path, compress=c.name)
        report = inspect(path)
        assert report["container"] == c.name and report["compressed"]
        with open(path, "rb") as f:
            raw = f.read()
        # a damaged stream is a ValueError from inspect, as from any damaged input
        with pytest.raises(ValueError):
            inspect(io.BytesIO(raw[: len(raw) // 2]))


def test_cli_follows_the_registry():
    help_text = _cli.build_parser()._subparsers._group_actions[0].choices["convert"].format_help()
    flat = " ".join(help_text.split())
    for name in CODEC_NAMES:
        assert name in flat
