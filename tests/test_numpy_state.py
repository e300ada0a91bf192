"""ndarray and dtype states that crash NumPy's own __setstate__ are refused (UnpicklingError).

NumPy (2.4 and earlier) fills an object array from the pickled list without checking the list's
length, so `ndarray.__setstate__((1, (4,), dtype('O'), False, [{}, '@']))` reads past the list and
kills the process (stdlib pickle.loads of the same bytes segfaults). fastjoblib checks the count
before NumPy sees the state, in every loader (plain pickle streams and object arrays inside joblib
files go through the same unpickler). Each case runs in a subprocess, so a regression shows as a failed test with the crash's
return code, not as a dead test run.
"""
import os
import subprocess
import sys
import textwrap

import pytest

import fastjoblib

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(fastjoblib.__file__)))

PRELUDE = textwrap.dedent("""
    import io, pickle, numpy as np, fastjoblib

    class Evil:
        def __init__(self, cls, state):
            self.cls, self.state = cls, state
        def __reduce__(self):
            return (np.ndarray.__new__, (self.cls, (0,), 'b'), self.state)
""")

CASES = {
    "object_short_list": "Evil(np.ndarray, (1, (4,), np.dtype('O'), False, [{}, '@']))",
    "object_4_tuple": "Evil(np.ndarray, ((3, 5), np.dtype('O'), False, [1, 2]))",
    "object_empty_list": "Evil(np.ndarray, (1, (1000,), np.dtype('O'), True, []))",
    "struct_with_object_field": "Evil(np.ndarray, (1, (4,), np.dtype([('a', 'O'), ('b', 'i8')]),"
                                " False, [(1, 2)]))",
    "masked_array": "Evil(np.ma.MaskedArray, (1, (4,), np.dtype('O'), False, [{}], bytes(4), None))",
    "huge_shape": "Evil(np.ndarray, (1, (2**40, 2**40), np.dtype('O'), False, [1]))",
}

# dtype.__setstate__ uses the `fields` item as a dict unchecked (found by tests/test_fuzz.py)
DTYPE_CASES = {
    "fields_int_v3": "(3, '|', None, -1, -1, 63)",
    "fields_int_v1": "(1, '|', None, -1, -1, 63)",
    "fields_str_len8": "(3, '<', None, None, 'x', -1, -1, 0)",
    "fields_list_len5": "('|', None, [1], -1, -1)",
    "datetime_without_unit": ("M8", "(3, '<', None, None, None, -1, -1, 63)"),
    "timedelta_without_unit": ("m8", "('<', None, None, -1, -1)"),
}



def run(body):
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(body)],
                          capture_output=True, text=True, env=env, timeout=120)


def assert_refused_by_every_loader(make_data, message):
    """make_data: code (in the child) that sets `data` to a pickle; both loaders must refuse it
    with an UnpicklingError starting with `message`, without crashing the child."""
    res = run(textwrap.dedent(make_data) + """
for loader in (fastjoblib.loads, lambda d: fastjoblib.load(io.BytesIO(d))):
    try:
        loader(data)
    except pickle.UnpicklingError as exc:
        print("refused:", exc)
    else:
        print("loaded")
""")
    assert res.returncode == 0, (res.returncode, res.stderr[-2000:])
    lines = res.stdout.splitlines()
    assert len(lines) == 2 and all(l.startswith("refused: " + message) for l in lines), \
        res.stdout + res.stderr[-2000:]


@pytest.mark.parametrize("case", sorted(DTYPE_CASES))
def test_bad_dtype_state_is_refused(case):
    spec = DTYPE_CASES[case] if isinstance(DTYPE_CASES[case], tuple) else ("O8", DTYPE_CASES[case])
    assert_refused_by_every_loader("""
        class EvilDtype:
            def __reduce__(self):
                return (np.dtype, (%r, False, True), %s)
        data = pickle.dumps(EvilDtype(), protocol=2)
    """ % spec, "invalid dtype state")


@pytest.mark.parametrize("case", sorted(CASES))
def test_short_object_state_is_refused(case):
    assert_refused_by_every_loader("data = pickle.dumps(%s, protocol=2)" % CASES[case],
                                   "invalid ndarray state")


def test_valid_object_arrays_still_load():
    res = run("""
        a = np.array([{}, '@', None, 3], dtype=object).reshape(2, 2)
        s = np.zeros(3, dtype=[('a', 'O'), ('b', 'i8')]); s['a'] = ['x', 1, None]
        m = np.ma.masked_array(np.array([1, 'a', None], dtype=object), mask=[0, 1, 0])
        nested = np.zeros(2, dtype=[('n', [('x', 'O'), ('y', '<i4')]), ('z', '<f8')])
        nested['n']['x'] = ['p', {}]
        dt = np.array(['2024-01-01T00:00', 'NaT'], dtype='M8[m]')
        td = np.array([1, 2], dtype='m8[ns]')
        for obj in (a, s, m, nested, dt, td, np.array([], dtype=object),
                    np.empty((0, 3), dtype=object)):
            for proto in (2, 4, 5):
                got = fastjoblib.loads(pickle.dumps(obj, protocol=proto))
                assert type(got) is type(obj) and got.shape == obj.shape and got.dtype == obj.dtype
                assert got.tolist() == obj.tolist(), (got, obj)
        print("ok")
    """)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "ok"
