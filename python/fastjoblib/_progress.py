"""Progress reporting for long dumps and loads.

The C core calls ``callback(done_bytes, total_bytes)`` every few MiB of bytes written to or read
from the target (``total_bytes`` is None for dumps). ``progress=True`` shows a bar for jobs that
run longer than a second:

* dumps get a total when the object's arrays are known up front (an array, or a dict / list /
  tuple of them, uncompressed): the sum of their payloads plus the pickle's estimated overhead,
  shown as an estimate ("~");
* the bar's clock starts at the first report (its rate is the job's, not diluted or inflated by
  a late start) and the finished bar stays on screen;
* on a terminal: tqdm when installed, else one self-rewriting stderr line; on a non-terminal
  stream (a log file): a few plain lines (at most one per ``_LOG_EVERY`` seconds, plus the last),
  never carriage returns.
"""
from __future__ import annotations

import importlib
import sys
import time
from typing import Any, Callable, Optional

_DELAY = 1.0       # seconds before anything is shown: short jobs stay silent
_LOG_EVERY = 10.0  # seconds between two lines on a non-terminal stream
_MiB = 1024 * 1024
_SCAN_ITEMS = 10_000  # container items looked at for the dump estimate


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def estimate_dump_bytes(obj: Any) -> Optional[int]:
    """The uncompressed dump's size when the object's arrays are known up front: exact NumPy
    arrays (no object dtype), alone or as the values of one dict / list / tuple level (plus
    small scalars and strings there). None otherwise (the bar shows bytes without a total)."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a requirement
        return None

    def array_bytes(a: Any) -> Optional[int]:
        if type(a) is np.ndarray and not a.dtype.hasobject:
            return int(a.nbytes) + 256  # + the record: wrapper, dtype, shape, padding
        return None

    single = array_bytes(obj)
    if single is not None:
        return single + 64
    if isinstance(obj, dict):
        values: Any = obj.values()
    elif isinstance(obj, (list, tuple)):
        values = obj
    else:
        return None
    if len(values) > _SCAN_ITEMS:
        return None
    total, arrays = 64, 0
    for v in values:
        n = array_bytes(v)
        if n is not None:
            total += n + 64
            arrays += 1
        elif v is None or isinstance(v, (bool, int, float)):
            total += 16
        elif isinstance(v, (str, bytes)) and len(v) < 4096:
            total += len(v) + 16
        else:
            return None
    if isinstance(obj, dict):
        for k in obj:
            if not isinstance(k, (str, int)):
                return None
            total += len(k) + 16 if isinstance(k, str) else 16
    return total if arrays else None


class _Bar:
    """Callable handed to the core; close() ends the display."""

    def __init__(self, op: str, estimate: Optional[int] = None,
                 stream: Any = None) -> None:
        self.op = op
        self.start = time.monotonic()
        self.estimate = estimate
        self.stream = stream
        self.tqdm: Any = None
        self.first: Optional[float] = None  # time of the first report: the bar's clock
        self.shown = False
        self.last = 0
        self.total: Optional[int] = None
        self.logged_at = 0.0
        self.lines = 0

    def _out(self) -> Any:
        return self.stream if self.stream is not None else sys.stderr

    def _label(self, total: Optional[int], done: int) -> tuple[Optional[int], bool]:
        """(total to show, whether it is an estimate)."""
        if total is not None:
            return total, False
        if self.estimate is not None:
            return max(self.estimate, done), True
        return None, False

    def __call__(self, done: int, total: Optional[int]) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = now
        if not self.shown:
            if now - self.start < _DELAY:
                self.last = done
                self.total = total
                return
            self.shown = True
            if _isatty(self._out()):
                try:
                    tqdm: Any = importlib.import_module("tqdm").tqdm
                except ImportError:
                    tqdm = None
                if tqdm is not None:
                    shown_total, est = self._label(total, done)
                    self.tqdm = tqdm(total=shown_total, unit="B", unit_scale=True,
                                     unit_divisor=1024, leave=True, file=self._out(),
                                     desc="fastjoblib " + self.op + (" (~total)" if est else ""))
                    # the clock of the bar: the first report, not the moment it appeared
                    self.tqdm.start_t = self.tqdm.last_print_t = self.first
                    self.tqdm.update(self.last)
        self.total = total
        if self.tqdm is not None:
            shown_total, _ = self._label(total, done)
            if shown_total is not None and self.tqdm.total != shown_total:
                self.tqdm.total = shown_total
            self.tqdm.update(done - self.last)
        elif _isatty(self._out()):
            self._out().write("\r" + self._text(done, total))
            self._out().flush()
        elif now - self.logged_at >= _LOG_EVERY:
            self._line(done, total, now)
        self.last = done

    def _text(self, done: int, total: Optional[int]) -> str:
        shown_total, est = self._label(total, done)
        elapsed = max(time.monotonic() - (self.first or self.start), 1e-9)
        rate = "%.0f MiB/s" % (done / _MiB / elapsed)
        if shown_total:
            return "fastjoblib %s: %.1f / %s%.1f MiB (%d%%), %s" % (
                self.op, done / _MiB, "~" if est else "", shown_total / _MiB,
                100 * done // shown_total, rate)
        return "fastjoblib %s: %.1f MiB, %s" % (self.op, done / _MiB, rate)

    def _line(self, done: int, total: Optional[int], now: float) -> None:
        self._out().write(self._text(done, total) + "\n")
        self._out().flush()
        self.logged_at = now
        self.lines += 1

    def close(self) -> None:
        if not self.shown:
            return
        if self.tqdm is not None:
            if self.estimate is not None and self.total is None:
                self.tqdm.total = self.last  # the estimate becomes the exact size
                self.tqdm.refresh()
            self.tqdm.close()
        elif _isatty(self._out()):
            self._out().write("\r" + self._text(self.last, self.total or self.last) + "\n")
            self._out().flush()
        else:
            self._line(self.last, self.total or self.last, time.monotonic())


def make_progress(progress: Any, op: str, obj: Any = None,
                  compressed: bool = False) -> Callable[[int, Optional[int]], None]:
    """progress=True -> a bar (for a dump of `obj`, uncompressed: with an estimated total when
    its arrays are known up front); a callable -> itself; anything else -> TypeError."""
    if progress is True:
        estimate = None
        if op == "dump" and not compressed and obj is not None:
            estimate = estimate_dump_bytes(obj)
        return _Bar(op, estimate)
    if callable(progress):
        return progress
    raise TypeError("progress must be None, a bool or a callable(done_bytes, total_bytes), "
                    "not %r" % (progress,))


def close_progress(callback: Any) -> None:
    close = getattr(callback, "close", None)
    if isinstance(callback, _Bar) and close is not None:
        close()
