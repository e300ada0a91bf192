"""Ratio tables: fastjoblib against pickle (protocols 4 and 5) and joblib, same process, interleaved.

    python benchmarks/ratios.py            # full sizes (needs ~6 GiB RAM, a few GiB of disk)
    python benchmarks/ratios.py --quick    # small sizes, a minute or so
    python benchmarks/ratios.py --workloads big_array,small_dicts --runs 7 --codecs zlib,lz4

The same benchmark as ``python -m fastjoblib bench`` (same options, workloads, method, report):
both run fastjoblib/_bench.py, where the method is described. This script exists so that the
README's commands keep working from a source checkout; it also re-exports the helpers other
benchmark scripts use (codec_table.py, fs_table.py).
"""
import os
import sys

from fastjoblib._bench import (  # noqa: F401  (re-exported for the other benchmark scripts)
    _reset_peak, _settle, _status_kib, fstype, main, measure_memory, memory_child, report,
    resolve, time_workload)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import workloads as W  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(main(prog="python benchmarks/ratios.py"))
