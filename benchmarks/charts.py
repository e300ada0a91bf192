"""Charts from benchmark results: time and peak memory per workload, fastjoblib vs joblib vs pickle.

    python -m fastjoblib bench --json results.json      # or benchmarks/ratios.py's JSON output
    python benchmarks/charts.py results.json [--out docs/img]

Writes bench_time.png (dump and load time per workload, log scale) and bench_memory.png (extra
peak memory of dump and load per workload), and the same two for the compressed cases
(bench_*_compressed.png) when there are any, with matplotlib's Agg backend (no display needed).

Input: the ``fastjoblib-bench/1`` schema (see fastjoblib/_bench.py). Other layouts are adapted by
``normalize``: a list of rows, or {"results": [...]}, whose rows carry a workload name, an
implementation, an operation and a time under any of the usual key spellings.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

IMPL_ORDER = ("fastjoblib", "joblib", "pickle", "pickle-5", "pickle-4",
              "fastjoblib.dump_pickle-5", "raw floor")
COLORS = {"fastjoblib": "#1f77b4", "joblib": "#ff7f0e", "pickle": "#7f7f7f", "pickle-5": "#7f7f7f",
          "pickle-4": "#bcbcbc", "fastjoblib.dump_pickle-5": "#17becf", "raw floor": "#2ca02c"}
DEFAULT_IMPLS = ("fastjoblib", "joblib", "pickle", "pickle-5")
OPS = ("dump", "load")

_KEYS = {
    "workload": ("workload", "name", "case", "benchmark"),
    "impl": ("impl", "implementation", "library", "lib", "engine"),
    "op": ("op", "operation", "kind", "direction"),
    "seconds": ("seconds_min", "min", "seconds", "time", "best", "seconds_median", "median"),
    "peak": ("peak_bytes", "peak_memory", "peak", "mem_bytes", "memory"),
    "compress": ("compress", "compression", "codec"),
}


def _pick(row: dict[str, Any], field: str) -> Any:
    for key in _KEYS[field]:
        if key in row and row[key] is not None:
            return row[key]
    return None


def normalize(data: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows with keys workload, compress, impl, op, seconds, peak (bytes or None); and meta."""
    meta: dict[str, Any] = {}
    if isinstance(data, dict):
        meta = dict(data.get("meta", {}))
        rows = data.get("results", data.get("rows", []))
    else:
        rows = data
    out = []
    for row in rows:
        if not isinstance(row, dict):
            continue
        wl, impl, op = _pick(row, "workload"), _pick(row, "impl"), _pick(row, "op")
        seconds = _pick(row, "seconds")
        if wl is None or impl is None or op is None or seconds is None:
            continue
        compress = _pick(row, "compress") or "none"
        out.append({"workload": str(wl), "compress": str(compress), "impl": str(impl),
                    "variant": row.get("variant"), "op": str(op), "seconds": float(seconds),
                    "best": row.get("seconds_min") is not None,
                    "peak": None if _pick(row, "peak") is None else float(_pick(row, "peak"))})
    if not out:
        raise ValueError("no benchmark rows found (expected a 'results' list with workload, "
                         "impl, op and seconds_min fields)")
    return out, meta


def _cases(rows: list[dict[str, Any]]) -> list[str]:
    cases: list[str] = []
    for r in rows:
        label = r["workload"]
        if r["compress"] not in ("none", "0", ""):
            label += f" [{r['compress']}]"
        if r.get("variant"):
            label += f" [{r['variant']}]"
        r["case"] = label
        if label not in cases:
            cases.append(label)
    return cases


def _impls(rows: list[dict[str, Any]]) -> list[str]:
    present = {r["impl"] for r in rows}
    return [i for i in IMPL_ORDER if i in present] + sorted(present - set(IMPL_ORDER))


def _fmt_seconds(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def _title(impls: list[str], what: str) -> str:
    """'fastjoblib vs joblib vs pickle-5: what': only the contenders drawn."""
    return " vs ".join(impls) + ": " + what


def _subtitle(meta: dict[str, Any]) -> str:
    versions = meta.get("versions", {}) or {}
    parts = [f"{k} {v}" for k, v in versions.items() if v and k in ("fastjoblib", "joblib", "numpy")]
    if meta.get("python"):
        parts.append(f"Python {meta['python']}")
    if meta.get("cpus"):
        parts.append(f"{meta['cpus']} CPUs")
    if meta.get("size"):
        parts.append(f"size {meta['size']}")
    if meta.get("directory"):
        fs = meta.get("filesystem")
        parts.append(f"files in {meta['directory']}" + (f" ({fs})" if fs and fs != "?" else ""))
    return ", ".join(parts)


def _grouped_barh(ax: Any, cases: list[str], impls: list[str], values: dict[tuple[str, str], float],
                  fmt: Any, log: bool) -> None:
    import numpy as np

    n = len(impls)
    height = 0.8 / n
    y = np.arange(len(cases))
    top = max(values.values(), default=1.0)
    positive = [v for v in values.values() if v is not None and v > 0]
    lo = min(positive, default=1e-3) / 2 if log else 0.0
    for k, impl in enumerate(impls):
        ys, xs, zeros = [], [], []
        for i, case in enumerate(cases):
            v = values.get((case, impl))
            if v is None:
                continue  # not measured: no bar, no label
            pos = y[i] - 0.4 + height * (k + 0.5)
            if v > 0:
                ys.append(pos)
                xs.append(v)
            else:
                zeros.append(pos)
        bars = ax.barh(ys, xs, height=height * 0.92, color=COLORS.get(impl), label=impl)
        # every measured value is labelled, a zero one too (at the axis, where its bar would be)
        for bar, v in zip(bars, xs):
            ax.text(bar.get_width() * (1.04 if log else 1.0) + (0 if log else top * 0.01),
                    bar.get_y() + bar.get_height() / 2, fmt(v), va="center", fontsize=7)
        for pos in zeros:
            ax.text(lo * (1.04 if log else 1.0) + (0 if log else top * 0.01), pos, fmt(0.0),
                    va="center", fontsize=7, color=COLORS.get(impl))
    ax.set_yticks(y)
    ax.set_yticklabels(cases, fontsize=9)
    if not ax.yaxis_inverted():  # shared y axes: invert once (first case at the top)
        ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
        ax.set_xlim(lo, top * 8)
    else:
        ax.set_xlim(0, top * 1.25)
    ax.grid(axis="x", alpha=0.3)


def time_chart(rows: list[dict[str, Any]], meta: dict[str, Any], path: str,
               what: str = "time per workload") -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return False
    cases, impls = _cases(rows), _impls(rows)
    fig, axes = plt.subplots(1, 2, figsize=(14, 1.8 + 0.3 * len(cases) * len(impls)),
                             sharey=True, layout="constrained")
    for ax, op in zip(axes, OPS):
        values = {(r["case"], r["impl"]): r["seconds"] for r in rows if r["op"] == op}
        _grouped_barh(ax, cases, impls, values, _fmt_seconds, log=True)
        ax.set_title(f"{op} time (lower is better)")
        which = "fastest repeat" if all(r["best"] for r in rows) else "median of the repeats"
        ax.set_xlabel(f"seconds (log scale, {which})")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(_title(impls, what) + "\n" + _subtitle(meta), fontsize=11)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def memory_chart(rows: list[dict[str, Any]], meta: dict[str, Any], path: str,
                 what: str = "peak memory per workload") -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["peak"] is not None]
    if not rows:
        return False
    cases, impls = _cases(rows), _impls(rows)
    fig, axes = plt.subplots(1, 2, figsize=(14, 1.8 + 0.3 * len(cases) * len(impls)),
                             sharey=True, layout="constrained")
    for ax, op in zip(axes, OPS):
        values = {(r["case"], r["impl"]): r["peak"] / (1 << 20) for r in rows if r["op"] == op}
        _grouped_barh(ax, cases, impls, values, lambda v: f"{v:.1f}", log=False)
        ax.set_title(f"{op}: extra peak memory (lower is better)")
        ax.set_xlabel("MiB")
    axes[0].legend(loc="lower right", fontsize=8)
    method = meta.get("memory_method", "")
    how = {"rss-fork": "peak RSS above the starting RSS, one forked run each",
           "rss-subprocess": "peak RSS above the starting RSS, in a fresh process per workload",
           "tracemalloc": "tracemalloc peak"}.get(method, method)
    fig.suptitle(_title(impls, what) + (f"\n({how})" if how else "") + "\n" + _subtitle(meta),
                 fontsize=11)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", help="JSON written by 'python -m fastjoblib bench --json' "
                                   "or benchmarks/ratios.py")
    p.add_argument("--out", default=os.path.join(os.path.dirname(here), "docs", "img"),
                   help="output directory (default: docs/img)")
    p.add_argument("--impls", default=",".join(DEFAULT_IMPLS),
                   help="comma-separated implementations to draw (those present), or 'all' "
                        "(default: %(default)s)")
    args = p.parse_args(argv)
    try:
        with open(args.results) as f:
            data = json.load(f)
        rows, meta = normalize(data)
    except (OSError, ValueError) as exc:
        print(f"charts.py: error: {args.results}: {exc}", file=sys.stderr)
        return 1
    if args.impls != "all":
        keep = [i for i in args.impls.split(",") if i]
        rows = [r for r in rows if r["impl"] in keep]
    # a load variant (mmap_mode=r) dumps exactly like the plain case: its rows carry loads only
    rows = [r for r in rows if not (r.get("variant") and r["op"] == "dump")]
    os.makedirs(args.out, exist_ok=True)
    plain = [r for r in rows if r["compress"] in ("none", "0", "")]
    packed = [r for r in rows if r["compress"] not in ("none", "0", "")]
    written = []
    for name, make, subset, what in (
            ("bench_time.png", time_chart, plain, "time per workload (uncompressed)"),
            ("bench_memory.png", memory_chart, plain, "peak memory per workload (uncompressed)"),
            ("bench_time_compressed.png", time_chart, packed, "time per workload, compressed"),
            ("bench_memory_compressed.png", memory_chart, packed,
             "peak memory per workload, compressed")):
        path = os.path.join(args.out, name)
        if make(subset, meta, path, what):
            written.append(path)
    for w in written:
        print(w)
    return 0


if __name__ == "__main__":
    sys.exit(main())
