"""The shared test corpus and a deep-equality check.

Every compatibility test (dump -> joblib.load, joblib.dump -> load, pickle round trips, codecs)
draws its objects from here, so the same broad set is checked in every direction.
"""
import collections
import dataclasses
import datetime
import decimal
import enum
import fractions
import math
import uuid

import numpy as np

# ---------------------------------------------------------------------------------------------
# Module-level classes (picklable by reference).


class Point(collections.namedtuple("Point", "x y")):
    __slots__ = ()


@dataclasses.dataclass
class Config:
    name: str
    lr: float
    layers: list


class Color(enum.Enum):
    RED = 1
    GREEN = 2


class Slotted:
    __slots__ = ("a", "b")

    def __init__(self, a, b):
        self.a = a
        self.b = b

    def __eq__(self, other):
        return type(other) is Slotted and (self.a, self.b) == (other.a, other.b)


class WithGetState:
    def __init__(self, v):
        self.v = v
        self.cache = object()  # dropped by __getstate__

    def __getstate__(self):
        return {"v": self.v}

    def __setstate__(self, state):
        self.v = state["v"]
        self.cache = None

    def __eq__(self, other):
        return type(other) is WithGetState and np.array_equal(self.v, other.v)


class WithReduce:
    def __init__(self, a, b=0):
        self.a = a
        self.b = b

    def __reduce__(self):
        return (WithReduce, (self.a, self.b))

    def __eq__(self, other):
        return type(other) is WithReduce and (self.a, self.b) == (other.a, other.b)


class Plain:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class MyArray(np.ndarray):
    """A user ndarray subclass: not intercepted, goes through its own reduce."""

    def __array_finalize__(self, obj):
        self.info = getattr(obj, "info", "default")


def module_function(x):
    return x + 1


# ---------------------------------------------------------------------------------------------
# Objects.


def _arrays():
    rng = np.random.default_rng(0)
    out = {}
    for dt in ["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
               "float16", "float32", "float64", "longdouble", "complex64", "complex128"]:
        out[dt] = (rng.random(37) * 100).astype(dt)
    out["datetime64"] = np.arange("2020-01-01", "2020-02-01", dtype="datetime64[D]")
    out["timedelta64"] = np.arange(10).astype("timedelta64[ms]")
    out["structured"] = np.array([(1, 2.5, b"ab"), (3, 4.5, b"cd")],
                                 dtype=[("i", "<i4"), ("f", "<f8"), ("s", "S2")])
    out["big_endian_f8"] = np.arange(10, dtype=">f8")
    out["big_endian_i4"] = np.arange(10, dtype=">i4")
    out["zero_d"] = np.array(3.5)
    out["empty"] = np.zeros((0, 3))
    out["f_order"] = np.asfortranarray(rng.random((5, 7)))
    out["strided"] = np.arange(100.0)[::3]
    out["reversed"] = np.arange(20, dtype="int32")[::-1]
    out["transposed_3d"] = rng.random((4, 5, 6)).transpose(1, 2, 0)
    out["broadcast"] = np.broadcast_to(np.arange(4.0), (3, 4))
    out["non_contig_f"] = np.ones((10, 50, 20), order="F")[:, :1, :]
    out["object"] = np.array([1, "abc", {"a": 1}, None, 2.5], dtype=object)
    out["object_2d"] = np.array([[1, "x"], [(1, 2), [3]]], dtype=object)
    out["unicode"] = np.array(["héllo", "wörld"])
    out["bytes_S"] = np.array([b"a", b"bcd"])
    unaligned = np.zeros(8 * 10 + 1, dtype=np.uint8)[1:].view("<f8")
    unaligned[:] = np.arange(10)
    out["unaligned"] = unaligned
    out["matrix"] = np.matrix([[1, 2], [3, 4]])
    out["masked"] = np.ma.masked_array([1.0, 2.0, 3.0], mask=[False, True, False])
    sub = np.arange(6.0).view(MyArray)
    out["user_subclass"] = sub
    out["large_1mib_plus"] = np.arange(2**20 + 100, dtype=np.uint8)
    return out


def _containers():
    shared = [1, 2, 3]
    rec_list = [1, 2]
    rec_list.append(rec_list)
    rec_dict = {"k": 1}
    rec_dict["self"] = rec_dict
    a = np.arange(5.0)
    return {
        "none": None,
        "bools": [True, False],
        "ints": [0, 1, -1, 255, 256, 65535, 2**31 - 1, -2**31, 2**63, -2**70, 10**40],
        "floats": [0.0, -0.0, 1.5, math.inf, -math.inf, 1e308],
        "complex": 3 + 4j,
        "str": "C'est l'été ! \U0001f600",
        "long_str": "x" * 100_000,
        "bytes": bytes(range(256)),
        "big_bytes": b"\x01" * 200_000,
        "bytearray": bytearray(b"abc"),
        "tuple": (1, (2, (3,)), ()),
        "list": [1, [2, [3]], []],
        "dict": {"a": 1, 2: "b", (1, 2): [3]},
        "set": {1, 2, 3},
        "frozenset": frozenset({"a", "b"}),
        "shared": [shared, shared],
        "recursive_list": rec_list,
        "recursive_dict": rec_dict,
        "same_array_twice": [a, a],
        "namedtuple": Point(1, 2),
        "dataclass": Config("net", 0.1, [64, 32]),
        "enum": Color.GREEN,
        "slots": Slotted(1, [2]),
        "getstate": WithGetState(np.arange(3)),
        "reduce": WithReduce(1, "x"),
        "plain_with_arrays": Plain(w=np.ones((3, 3)), b=np.zeros(3), name="layer"),
        "datetime": datetime.datetime(2024, 5, 6, 7, 8, 9, 10),
        "date": datetime.date(2020, 1, 1),
        "timedelta": datetime.timedelta(days=3),
        "decimal": decimal.Decimal("1.25"),
        "fraction": fractions.Fraction(1, 3),
        "uuid": uuid.UUID(int=12345),
        "ordered_dict": collections.OrderedDict([("b", 1), ("a", 2)]),
        "defaultdict": collections.defaultdict(list, {"a": [1]}),
        "deque": collections.deque([1, 2, 3]),
        "counter": collections.Counter("hello"),
        "builtin_function": len,
        "module_function": module_function,
        "class": Config,
        "type": type,
        "range": range(10),
        "slice": slice(1, 10, 2),
        "np_scalars": [np.float64(1.5), np.int32(7), np.bool_(True)],
        "np_dtype": np.dtype("<f4"),
        "dict_of_arrays": {f"w{i}": np.full(i + 1, i, dtype="float32") for i in range(50)},
    }


def _sklearn():
    try:
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
    except ImportError:
        return {}
    rng = np.random.default_rng(1)
    X = rng.random((60, 4))
    y = (X[:, 0] > 0.5).astype(int)
    rf = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    return {"random_forest": rf, "pipeline": pipe}


def _pandas():
    try:
        import pandas as pd
    except ImportError:
        return {}
    df = pd.DataFrame({
        "a": np.arange(20),
        "b": np.linspace(0, 1, 20),
        "s": [f"row{i}" for i in range(20)],
        "c": pd.Categorical(["x", "y"] * 10),
        "t": pd.date_range("2020-01-01", periods=20),
    })
    return {"dataframe": df, "series": pd.Series([1.0, 2.0, None], name="v")}


def corpus():
    """name -> object. Fresh objects on each call."""
    out = {}
    out.update({"array_" + k: v for k, v in _arrays().items()})
    out.update(_containers())
    out.update(_sklearn())
    out.update(_pandas())
    return out


CORPUS_NAMES = sorted(corpus())

# ---------------------------------------------------------------------------------------------
# Deep equality.


def _native(dt):
    return dt.newbyteorder("=") if dt.byteorder not in ("|", "=") else dt


def assert_deep_equal(a, b, path="obj", check_type=True, native_ok=False):
    """Assert `a` (expected) equals `b` (actual) deeply: types, dtypes, shapes, values.

    `check_type` may be relaxed by callers only for documented joblib differences (np.matrix and
    np.memmap load back as ndarray in joblib on NumPy 2). `native_ok` accepts an array that came
    back in native byte order (joblib's default `ensure_native_byte_order`, and NumPy's own
    pickling on NumPy 2.4).
    """
    kw = dict(check_type=check_type, native_ok=native_ok)
    if check_type:
        assert type(a) is type(b), f"{path}: type {type(a)!r} != {type(b)!r}"
    if isinstance(a, np.ma.MaskedArray):
        np.testing.assert_array_equal(np.ma.getmaskarray(a), np.ma.getmaskarray(b), err_msg=path)
        np.testing.assert_array_equal(a.filled(0) if a.dtype != object else a.data,
                                      b.filled(0) if b.dtype != object else b.data, err_msg=path)
        return
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), f"{path}: {type(b)!r} is not an ndarray"
        if native_ok and not a.dtype.fields:
            assert _native(a.dtype) == _native(b.dtype), f"{path}: dtype {a.dtype} != {b.dtype}"
        else:
            assert a.dtype == b.dtype, f"{path}: dtype {a.dtype} != {b.dtype}"
        assert a.shape == b.shape, f"{path}: shape {a.shape} != {b.shape}"
        if a.dtype.hasobject:
            for idx in np.ndindex(a.shape):
                assert_deep_equal(a[idx], b[idx], f"{path}[{idx}]", **kw)
        else:
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=path)
        if hasattr(a, "info"):
            assert a.info == b.info, path
        return
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover
        pd = None
    if pd is not None and isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b)
        return
    if pd is not None and isinstance(a, pd.Series):
        pd.testing.assert_series_equal(a, b)
        return
    if isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), path
        return
    if isinstance(a, (list, tuple, collections.deque)):
        assert len(a) == len(b), f"{path}: len {len(a)} != {len(b)}"
        if isinstance(a, tuple) and hasattr(a, "_fields"):
            assert a == b, path
            return
        for i, (x, y) in enumerate(zip(a, b)):
            if x is a:  # recursive reference
                assert y is b, f"{path}[{i}]: recursion not preserved"
                continue
            assert_deep_equal(x, y, f"{path}[{i}]", **kw)
        return
    if isinstance(a, dict):
        assert list(a.keys()) == list(b.keys()), f"{path}: keys {list(a)} != {list(b)}"
        for k in a:
            if a[k] is a:
                assert b[k] is b, f"{path}[{k!r}]: recursion not preserved"
                continue
            assert_deep_equal(a[k], b[k], f"{path}[{k!r}]", **kw)
        if isinstance(a, collections.defaultdict):
            assert a.default_factory is b.default_factory, path
        return
    if hasattr(a, "get_params") and hasattr(a, "__dict__"):  # scikit-learn estimator
        assert_deep_equal(vars(a), vars(b), f"{path}.__dict__", **kw)
        return
    if type(a).__eq__ is object.__eq__ and not callable(a) and a is not None:
        if hasattr(a, "__dict__"):
            assert_deep_equal(vars(a), vars(b), f"{path}.__dict__", **kw)
        else:  # extension types (e.g. sklearn's Cython Tree): compare what they pickle as
            assert_deep_equal(a.__reduce_ex__(4)[1:], b.__reduce_ex__(4)[1:], f"{path}.reduce", **kw)
        return
    if isinstance(a, (np.generic,)):
        assert a == b or (a != a and b != b), path
        return
    assert a == b, f"{path}: {a!r} != {b!r}"
