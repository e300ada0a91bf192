"""Hostile 1 MiB streams of pandas calls under ``trusted=True``: how long until they load or are
refused (the pandas call limit: 8192 + one unit per 32 bytes of input, see docs/SECURITY.md).

* "repeated": one call memoised once and repeated, ``BINGET func, BINGET args, REDUCE, POP``
  (6 bytes a call);
* "fresh dict": ``_new_Index(cls, {'data': values})`` with a new 1-item dict at each call
  (the class, the key and the values memoised: 25 bytes a call, no call repeats another's
  argument objects).

    PYTHONPATH=python python benchmarks/trusted_pandas_worst.py [--runs 3] [NAME ...]

Prints the median CPU time of ``fastjoblib.loads(stream, trusted=True)`` and its outcome.
"""
import argparse
import gc
import pickle
import statistics
import struct
import time

import pandas as pd

import fastjoblib


def _global(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _put(i):
    return b"r" + struct.pack("<I", i)


def _get(i):
    return b"j" + struct.pack("<I", i)


def _text(t):
    b = t.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _fill(head, body, size):
    return head + body * ((size - len(head) - 2) // len(body)) + b"N."


def repeated(func, args_ops, size=1 << 20):
    """func memo 0, the args tuple memo 1, then the 6-byte call again and again."""
    head = b"\x80\x02" + func + b"q\x00(" + args_ops + b"tq\x01"
    return _fill(head, b"h\x00h\x01R0", size)


def repeated_reduce(obj, size=1 << 20):
    """obj.__reduce__()'s callable and arguments (pickled at protocol 2), the call repeated."""
    f, a = obj.__reduce__()[:2]
    args = pickle.dumps(a, protocol=2)[2:-1]  # (the tuple's own memo entries come first)
    head = b"\x80\x02" + args + _put(1 << 20) + _global(f.__module__, f.__name__) + _put(1 << 20 | 1)
    return _fill(head, _get(1 << 20 | 1) + _get(1 << 20) + b"R0", size)


def fresh_dict(index, size=1 << 20):
    values = pickle.dumps(index._values, protocol=2)[2:-1]
    cls = type(index)
    head = (b"\x80\x02" + values + _put(1 << 20) + _text("data") + _put(1 << 20 | 1)
            + _global(cls.__module__, cls.__name__) + _put(1 << 20 | 2)
            + _global("pandas.core.indexes.base", "_new_Index") + _put(1 << 20 | 3))
    body = _get(1 << 20 | 3) + _get(1 << 20 | 2) + b"}" + _get(1 << 20 | 1) + _get(1 << 20) \
        + b"s\x86R0"
    return _fill(head, body, size)


CASES = {
    "repeated Day(1)": lambda: repeated(_global("pandas._libs.tslibs.offsets", "Day"), b"K\x01"),
    "repeated StringDtype()": lambda: repeated(_global("pandas", "StringDtype"), b""),
    "repeated _unpickle_timestamp": lambda: repeated(
        _global("pandas._libs.tslibs.timestamps", "_unpickle_timestamp"),
        b"\x8a\x08" + struct.pack("<q", 1_600_000_000_000_000_000) + b"NNK\x0a"),
    "repeated Categorical([1])": lambda: repeated(_global("pandas", "Categorical"), b"]K\x01a"),
    "repeated Series([1])": lambda: repeated(_global("pandas", "Series"), b"]K\x01a"),
    "repeated _new_Index(MultiIndex)": lambda: repeated_reduce(
        pd.MultiIndex.from_arrays([[1, 2], ["a", "b"]])),
    "repeated _new_Index(CategoricalIndex)": lambda: repeated_reduce(
        pd.CategoricalIndex(["a", "b"])),
    "repeated _new_IntervalIndex": lambda: repeated_reduce(pd.IntervalIndex.from_breaks([0, 1, 2])),
    "repeated numpy _reconstruct": lambda: repeated(
        _global("numpy._core.multiarray", "_reconstruct"),
        _global("numpy", "ndarray") + b"K\x00\x85C\x01b"),
    "fresh dict _new_Index(Index of int64)": lambda: fresh_dict(pd.Index([1, 2])),
    "fresh dict _new_Index(Index of str)": lambda: fresh_dict(pd.Index(["a", "b"])),
    "fresh dict _new_Index(CategoricalIndex)": lambda: fresh_dict(pd.CategoricalIndex(["a", "b"])),
    "fresh dict _new_Index(DatetimeIndex)": lambda: fresh_dict(
        pd.DatetimeIndex(["2020-01-01", "2020-01-02"])),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("names", nargs="*", help="cases to run (default: all)")
    args = ap.parse_args()
    print(f"pandas {pd.__version__}; CPU time, median of {args.runs}")
    print("| stream | size | CPU | outcome |")
    print("|---|---|---|---|")
    for name, make in CASES.items():
        if args.names and name not in args.names:
            continue
        data = make()
        times, outcome = [], None
        for _ in range(args.runs):
            gc.collect()
            t = time.process_time()
            try:
                fastjoblib.loads(data, trusted=True)
                outcome = "loaded"
            except pickle.UnpicklingError as exc:
                outcome = "refused: " + str(exc).split(":", 1)[-1].strip()[:60]
            times.append(time.process_time() - t)
        print(f"| {name} | {len(data)} B | {statistics.median(times):.2f} s | {outcome} |")


if __name__ == "__main__":
    main()
