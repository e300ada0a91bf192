"""progress=True's display: an estimated total for dumps whose arrays are known up front, the
bar's clock from the first report, the finished bar left on screen, and plain lines (no carriage
returns) on a non-terminal stream."""
import io
import os

import numpy as np
import pytest

import fastjoblib
from fastjoblib import _progress


class _Terminal(io.StringIO):
    """A text stream that says it is a terminal (what the bar checks to pick its display)."""

    def isatty(self):
        return True


def _dump_with_bar(monkeypatch, tmp_path, stream, obj, **kwargs):
    monkeypatch.setattr(_progress, "_DELAY", 0.0)
    monkeypatch.setattr("sys.stderr", stream)
    path = str(tmp_path / "a.pkl")
    fastjoblib.dump(obj, path, progress=True, **kwargs)
    return path


def test_estimate_matches_the_file():
    for obj in (np.zeros(3 << 20), {"a": np.ones(1 << 20), "b": np.arange(10), "n": 3},
                [np.ones((512, 512)), "x", None]):
        bio = io.BytesIO()
        fastjoblib.dump(obj, bio)
        est = _progress.estimate_dump_bytes(obj)
        assert est is not None and abs(est - len(bio.getvalue())) <= 0.01 * est + 4096
    assert _progress.estimate_dump_bytes([{"a": 1}]) is None
    assert _progress.estimate_dump_bytes(np.array([1, "x"], dtype=object)) is None
    assert _progress.estimate_dump_bytes({"a": 1}) is None  # no arrays: nothing to estimate


def test_log_file_gets_a_few_plain_lines(monkeypatch, tmp_path):
    log = io.StringIO()  # not a terminal
    path = _dump_with_bar(monkeypatch, tmp_path, log, np.zeros(6 << 20))  # 48 MiB
    monkeypatch.setattr("sys.stderr", log)
    fastjoblib.load(path, progress=True)
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert 2 <= len(lines) <= 6, lines
    dump_lines = [ln for ln in lines if ln.startswith("fastjoblib dump:")]
    assert dump_lines and "/ ~48.0 MiB" in dump_lines[0]  # the estimated total, marked ~
    assert dump_lines[-1].endswith("MiB/s") and "(100%)" in dump_lines[-1]
    load_lines = [ln for ln in lines if ln.startswith("fastjoblib load:")]
    size = os.path.getsize(path) / (1 << 20)
    assert load_lines and f"/ {size:.1f} MiB (100%)" in load_lines[-1]
    assert len(text) < 1000


def test_terminal_line_without_tqdm(monkeypatch, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "tqdm", None)
    term = _Terminal()
    _dump_with_bar(monkeypatch, tmp_path, term, np.zeros(3 << 20))
    text = term.getvalue()
    assert text.startswith("\rfastjoblib dump:") and text.endswith("\n")  # stays on screen
    assert "(100%)" in text.splitlines()[-1]


def test_tqdm_bar_total_clock_and_leave(monkeypatch, tmp_path):
    pytest.importorskip("tqdm")
    term = _Terminal()
    path = _dump_with_bar(monkeypatch, tmp_path, term, np.zeros(3 << 20))  # 24 MiB
    text = term.getvalue()
    final = text.replace("\r", "\n").strip().splitlines()[-1]
    assert final.startswith("fastjoblib dump (~total): 100%"), final
    assert "24.0M/24.0M" in final
    assert text.endswith("\n")  # leave=True: the finished bar stays
    # compressed: no estimate (the bytes at the target are the compressed ones)
    term2 = _Terminal()
    _dump_with_bar(monkeypatch, tmp_path, term2, np.zeros(3 << 20), compress=3)
    assert "~total" not in term2.getvalue()
    del path
