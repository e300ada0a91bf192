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
