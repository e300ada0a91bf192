"""Progress reporting for long dumps and loads.

The C core calls ``callback(done_bytes, total_bytes)`` every few MiB of bytes written to or read
from the target (``total_bytes`` is None for dumps). ``progress=True`` shows a bar once the job has
run for more than a second: tqdm when it is installed, otherwise one self-rewriting stderr line.
"""
from __future__ import annotations

import importlib
import sys
import time
from typing import Any, Callable, Optional

_DELAY = 1.0  # seconds before anything is shown: short jobs stay silent
_MiB = 1024 * 1024


class _Bar:
    """Callable handed to the core; close() ends the display."""

    def __init__(self, op: str) -> None:
        self.op = op
        self.start = time.monotonic()
        self.tqdm: Any = None
        self.shown = False
        self.last = 0

    def __call__(self, done: int, total: Optional[int]) -> None:
        if not self.shown:
            if time.monotonic() - self.start < _DELAY:
                return
            self.shown = True
            try:
                tqdm: Any = importlib.import_module("tqdm").tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.tqdm = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                                 desc="fastjoblib " + self.op, leave=False)
        if self.tqdm is not None:
            if total is not None and self.tqdm.total != total:
                self.tqdm.total = total
            self.tqdm.update(done - self.last)
        else:
            if total:
                text = "\rfastjoblib %s: %.1f / %.1f MiB (%d%%)" % (
                    self.op, done / _MiB, total / _MiB, 100 * done // total)
            else:
                text = "\rfastjoblib %s: %.1f MiB" % (self.op, done / _MiB)
            sys.stderr.write(text)
            sys.stderr.flush()
        self.last = done

    def close(self) -> None:
        if not self.shown:
            return
        if self.tqdm is not None:
            self.tqdm.close()
        else:
            sys.stderr.write("\n")
            sys.stderr.flush()


def make_progress(progress: Any, op: str) -> Callable[[int, Optional[int]], None]:
    """progress=True -> a bar; a callable -> itself; anything else -> TypeError."""
    if progress is True:
        return _Bar(op)
    if callable(progress):
        return progress
    raise TypeError("progress must be None, a bool or a callable(done_bytes, total_bytes), "
                    "not %r" % (progress,))


def close_progress(callback: Any) -> None:
    close = getattr(callback, "close", None)
    if isinstance(callback, _Bar) and close is not None:
        close()
