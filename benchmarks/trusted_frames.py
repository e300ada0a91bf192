"""Restricted loads of many small pandas objects: the slowest legitimate files of about 1 MiB
under ``trusted=True`` (each pandas object costs its constructors and the checks of their
arguments and results).

    python benchmarks/trusted_frames.py [--runs 7] [--frames 2000]

Prints, for each file: its size, and the median wall / CPU time of ``fastjoblib.loads`` with
and without ``trusted=True`` (interleaved, in this process, the originals freed first so the
cyclic collector walks only what a loading process holds), and the ratio.
"""
import argparse
import gc
import statistics
import time

import pandas as pd

import fastjoblib


def frames(n, text_dtype):
    return [pd.DataFrame({"a": [i, i + 1], "b": [float(i), 2.0],
                          "c": pd.array(["x", "y"], dtype=text_dtype)}) for i in range(n)]


def series(n):
    return [pd.Series([float(i), 2.0], index=["p", "q"], name=f"s{i}") for i in range(n)]


def mi_series(n):
    return [pd.Series([float(i), 2.0], index=pd.MultiIndex.from_arrays([[i, i + 1], ["a", "b"]]))
            for i in range(n)]


def mi_frames(n):
    return [pd.DataFrame({"v": [float(i), 2.0]},
                         index=pd.MultiIndex.from_arrays([[i, i + 1], ["a", "b"]]))
            for i in range(n)]


def cat_frames(n):
    return [pd.DataFrame({"c": pd.Categorical(["a", "b"]), "v": [i, 2]}) for i in range(n)]


def period_series(n):
    return [pd.Series(pd.period_range("2020", periods=2, freq="M")) for _ in range(n)]


def ci_frames(n):
    return [pd.DataFrame({"v": [i, 2]}, index=pd.CategoricalIndex(["a", "b"])) for i in range(n)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--frames", type=int, default=2000)
    args = ap.parse_args()
    cases = {
        f"{args.frames} two-row DataFrames, str column (pandas' default)":
            lambda: frames(args.frames, None),
        f"{args.frames} two-row DataFrames, object column":
            lambda: frames(args.frames, object),
        f"{args.frames * 6 // 5} two-row Series with a text index": lambda: series(args.frames * 6 // 5),
        f"{args.frames * 3 // 4} two-row Series with a MultiIndex": lambda: mi_series(args.frames * 3 // 4),
        f"{args.frames * 3 // 4} one-column DataFrames with a MultiIndex":
            lambda: mi_frames(args.frames * 3 // 4),
        f"{args.frames * 3 // 4} DataFrames with a categorical column":
            lambda: cat_frames(args.frames * 3 // 4),
        f"{args.frames * 3 // 4} DataFrames with a CategoricalIndex":
            lambda: ci_frames(args.frames * 3 // 4),
        f"{args.frames * 2} two-row period Series": lambda: period_series(args.frames * 2),
    }
    print(f"pandas {pd.__version__}; medians of {args.runs} interleaved loads")
    print("| file | size | unrestricted | trusted=True | x |")
    print("|---|---|---|---|---|")
    for name, make in cases.items():
        data = fastjoblib.dumps(make())
        gc.collect()
        walls = {None: [], True: []}
        cpus = {None: [], True: []}
        for _ in range(args.runs):
            for trusted in (None, True):
                c0, t0 = time.process_time(), time.perf_counter()
                fastjoblib.loads(data, trusted=trusted)
                walls[trusted].append(time.perf_counter() - t0)
                cpus[trusted].append(time.process_time() - c0)
        u, r = statistics.median(walls[None]), statistics.median(walls[True])
        print(f"| {name} | {len(data) / 1e6:.2f} MB | {u:.3f} s (cpu {statistics.median(cpus[None]):.3f}) "
              f"| {r:.3f} s (cpu {statistics.median(cpus[True]):.3f}) | {r / u:.1f} |")


if __name__ == "__main__":
    main()
