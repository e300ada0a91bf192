"""The benchmark workloads, shared by ratios.py, codec_table.py, fs_table.py and the
pytest-benchmark suites: defined once in fastjoblib/_bench.py (``python -m fastjoblib bench``
runs the same ones), re-exported here.

Each builder takes a `scale` (1.0 = the full sizes; --quick uses 1/64) and returns a fresh,
deterministic object. full sizes:
  big_array        one float64 array of 512 MiB
  dict_of_arrays   2,000 float32 arrays of 4-256 KiB each
  random_forest    RandomForestClassifier, 200 trees
  small_dicts      a list of 300,000 small dicts
  smooth_array     a compressible 512 MiB float64 array: a smooth signal rounded to 2 decimals
  f_order_array    a 128 MiB Fortran-ordered float64 array
  strided_array    a 128 MiB strided view (every other column of a 256 MiB array)
  dataframe        a pandas DataFrame, 2,000,000 rows, numeric and string columns
  str_int_dict     a dict of 1,000,000 short str keys to ints
"""
from fastjoblib._bench import (  # noqa: F401
    ARRAY_WORKLOADS, DEFAULT_WORKLOADS, MiB, WORKLOADS, big_array, dataframe, dict_of_arrays,
    f_order_array, random_forest, small_dicts, smooth_array, str_int_dict, strided_array)


def warm_ram(gib, say=print):
    """Touch `gib` GiB of fresh memory once, then free it (benchmarks' --warm-ram).

    On a virtual machine whose memory the host backs lazily (this one: a Firecracker guest), the
    first touch of a guest page costs a host page fault: writing a 256 MiB file into page-cache
    pages never touched before runs at ~400 MB/s instead of ~4 GB/s (300-800 ms stalls inside
    write(2), for whichever contender the kernel handed those pages). benchmarks/page_stall.py
    shows it: on this machine 4 of 20 rounds of a plain 256 MiB write stalled, 0 of 40 after
    touching 12 GiB once. Touching the free memory once turns such a guest into what a
    laptop or server is: the benchmark then measures the filesystem, not the hypervisor. Capped at
    MemAvailable - 2 GiB.
    """
    import time
    import numpy as np
    if gib <= 0:
        return
    with open("/proc/meminfo") as f:
        avail = next(int(ln.split()[1]) << 10 for ln in f if ln.startswith("MemAvailable:"))
    n = min(int(gib * (1 << 30)), max(0, avail - (2 << 30))) >> 30
    t = time.perf_counter()
    held = []
    for _ in range(n):
        held.append(np.ones(1 << 30, dtype=np.uint8))  # written: every page touched
    del held
    say("# warmed %d GiB of memory in %.1f s (--warm-ram)" % (n, time.perf_counter() - t))
