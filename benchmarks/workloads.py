"""The benchmark workloads, shared by ratios.py and the pytest-benchmark suites.

Each builder takes a `scale` (1.0 = the full sizes below; ratios.py --quick and the pytest suites
use small scales) and returns a fresh object. Everything is deterministic (fixed seeds).

full sizes:
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
import numpy as np

MiB = 1 << 20


def big_array(scale=1.0):
    n = max(int(512 * MiB * scale) // 8, 1)
    return np.random.default_rng(0).random(n)


def smooth_array(scale=1.0):
    """A smooth signal (slow sine plus a ramp) rounded to 2 decimals: compressible, like sensor
    data; zlib-3 packs it about 6.8x."""
    n = max(int(512 * MiB * scale) // 8, 1)
    t = np.linspace(0.0, 1.0, n)
    return np.round(np.sin(t * (800 * np.pi)) * 100.0 + t * 50.0, 2)


def dict_of_arrays(scale=1.0):
    rng = np.random.default_rng(1)
    count = max(int(2000 * scale), 10)
    out = {}
    for i in range(count):
        nbytes = int(rng.integers(4 * 1024, 256 * 1024 + 1))
        out["layer_%04d" % i] = rng.random(nbytes // 4, dtype=np.float32)
    return out


def random_forest(scale=1.0):
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(2)
    n_trees = max(int(200 * scale), 5)
    n_samples = max(int(10_000 * min(1.0, scale * 4)), 500)
    X = rng.random((n_samples, 20))
    y = (X[:, 0] + 0.3 * rng.random(n_samples) > 0.6).astype(int) + (X[:, 1] > 0.5)
    return RandomForestClassifier(n_estimators=n_trees, random_state=0, n_jobs=2).fit(X, y)


def small_dicts(scale=1.0):
    n = max(int(300_000 * scale), 100)
    return [{"id": i, "name": "user%d" % i, "score": i * 0.5, "active": bool(i & 1),
             "tags": ["a", "b"] if i % 3 else []} for i in range(n)]


def f_order_array(scale=1.0):
    n = max(int(128 * MiB * scale) // 8, 64)
    cols = 256
    rows = max(n // cols, 1)
    return np.asfortranarray(np.random.default_rng(3).random((rows, cols)))


def strided_array(scale=1.0):
    n = max(int(256 * MiB * scale) // 8, 128)
    cols = 512
    rows = max(n // cols, 1)
    return np.random.default_rng(4).random((rows, cols))[:, ::2]


def dataframe(scale=1.0):
    import pandas as pd

    n = max(int(2_000_000 * scale), 100)
    rng = np.random.default_rng(5)
    cities = np.array(["Paris", "Lyon", "Berlin", "Madrid", "Roma", "Oslo", "Lisboa", "Wien"])
    return pd.DataFrame({
        "id": np.arange(n, dtype=np.int64),
        "x": rng.random(n),
        "y": rng.random(n).astype(np.float32),
        "city": cities[rng.integers(0, len(cities), n)].astype(object),
        "label": ["item-%d" % i for i in range(n)],
    })


def str_int_dict(scale=1.0):
    n = max(int(1_000_000 * scale), 100)
    return {"k%d" % i: i for i in range(n)}


WORKLOADS = {
    "big_array": big_array,
    "smooth_array": smooth_array,
    "dict_of_arrays": dict_of_arrays,
    "random_forest": random_forest,
    "small_dicts": small_dicts,
    "f_order_array": f_order_array,
    "strided_array": strided_array,
    "dataframe": dataframe,
    "str_int_dict": str_int_dict,
}

# Workloads made of arrays (mmap loads are measured on these).
ARRAY_WORKLOADS = {"big_array", "smooth_array", "dict_of_arrays", "f_order_array", "strided_array"}

# ratios.py's default set (smooth_array is for the compressed table: benchmarks/codec_table.py).
DEFAULT_WORKLOADS = [w for w in WORKLOADS if w != "smooth_array"]
