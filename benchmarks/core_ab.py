"""A/B of two builds of the C pickler on the save loop's hot path (containers), interleaved in one
process: e.g. main's _core against this checkout's, to check that a change on the error path
(3.14's exception notes) costs the success path nothing.

    git archive main | tar -x -C /tmp/base && (cd /tmp/base && bash tools/devbuild.sh)
    python benchmarks/core_ab.py /tmp/base/python/fastjoblib/_core*.so python/fastjoblib/_core*.so

In memory (dumps, protocol 5): no filesystem involved. Prints per object the medians (ms) and
B / A (< 1: B is faster); both builds must produce the same bytes.
"""
import argparse
import importlib.util
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))


def load(path):
    spec = importlib.util.spec_from_file_location("fastjoblib._core", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("a", help="_core*.so of build A (e.g. main)")
    p.add_argument("b", help="_core*.so of build B (e.g. this branch)")
    p.add_argument("--runs", type=int, default=15)
    args = p.parse_args(argv)
    import fastjoblib  # noqa: F401 - the package the builds import from
    a, b = load(args.a), load(args.b)
    objs = {
        "str_int_dict": {str(i): i for i in range(200000)},
        "list_of_tuples": [(i, str(i), float(i)) for i in range(200000)],
        "small_dicts": [{"a": i, "b": [i, i + 1], "c": (i,)} for i in range(50000)],
        "set_of_ints": set(range(200000)),
    }
    for name, o in objs.items():
        assert a.dumps(o, 5) == b.dumps(o, 5), name
        ta, tb = [], []
        for _ in range(args.runs):
            for mod, acc in ((a, ta), (b, tb)):
                t = time.perf_counter()
                mod.dumps(o, 5)
                acc.append(time.perf_counter() - t)
        ma, mb = statistics.median(ta), statistics.median(tb)
        print(f"{name:16s} A {ma * 1e3:8.2f} ms  B {mb * 1e3:8.2f} ms  B/A {mb / ma:.3f}")


if __name__ == "__main__":
    main()
