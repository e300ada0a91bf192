"""Red-team round 9 (given docs/SECURITY.md's claims, the diff of the guard's speed-up and an
interpreter, not these tests), each stream in a child under a 4 GiB address-space limit:

* a reused ``Unpickler(trusted=True)``: load 1 refused after BUILD gave a Categorical bad codes,
  load 3 returned it by BINGET from the memo once the speed-up's release step had forgotten it
  (np.asarray of it: a crash); now a reused Unpickler keeps what its loads made under watch;
* a DataFrame of 1M zero-row columns re-checked (np.unique over 1M placements, 0.7 s each, not
  counted): 4 s for 97 bytes, 73 s for 413;
* a dateutil zone inside a dtype string (``Series([], None, 'datetime64[ns, dateutil//etc/passwd]')``
  opened the file);
* ``numpy.matrix('1 1 ... 1')`` (31 characters, 88 us, 0 units) repeated: 11.9 s;
* ``DataFrame({0: [0], ..., 9999: [0]})`` repeated: 80 ms a call for one unit (8.3 s for 50 KB);
* ``Period('2020 , , ...', Day)`` parsed by dateutil, 75 us for one unit: 4.2 s;
* 170,000 6-byte calls of pyarrow's ``_restore_array`` of an empty array: 1.1-1.5 s.
"""
import io
import pickle
import pickletools
import struct

import numpy as np
import pytest

from test_trust_attacks import assert_refused, run_child
from test_trust_keys import get, glob, put
from test_trust_redteam8 import _repeat, x

pd = pytest.importorskip("pandas")

import fastjoblib  # noqa: E402
from fastjoblib import _guard  # noqa: E402


def test_a_reused_unpickler_does_not_hand_out_a_refused_object():
    c = pd.Categorical(pd.Index(list(range(200)), dtype=object))
    raw = pickle.dumps(c, 4)
    memo, red, cat_idx = -1, 0, None
    for op, _, _ in pickletools.genops(raw):
        if op.name == "MEMOIZE":
            memo += 1
            if red == 1 and cat_idx is None:
                cat_idx = memo
        if op.name == "REDUCE":
            red += 1
    good = c.codes.tobytes()
    i = raw.rfind(good)
    bad = np.full(200, 32000, dtype=np.int16).tobytes()
    stream = raw[:i] + bad + raw[i + len(good):-1] + b"\x80\x04h" + bytes([cat_idx]) + b"."
    u = fastjoblib.Unpickler(io.BytesIO(stream), trusted=True)
    with pytest.raises(pickle.UnpicklingError, match="codes outside"):
        u.load()
    with pytest.raises(pickle.UnpicklingError):
        u.load()  # (the junk byte after the first STOP)
    with pytest.raises(pickle.UnpicklingError, match="without its data|codes outside"):
        u.load()


def test_dateutil_zones_inside_dtype_strings_are_refused():
    z = b"\x8c$datetime64[ns, dateutil//etc/passwd]"
    cases = {"series": ("loads", b"\x80\x04\x8c\x06pandas\x8c\x06Series\x93]N" + z + b"\x87R.",
                        {"trusted": True}),
             "index": ("loads", b"\x80\x04\x8c\x06pandas\x8c\x05Index\x93]" + z + b"\x86R.",
                       {"trusted": True})}
    assert_refused(run_child(cases), "dateutil zones are read from files")


def test_repeated_parsing_and_wide_calls_are_counted():
    # (174,000 calls fill 1 MiB; the DataFrame stream is 50 KB)
    cols = b"}(" + b"".join(b"J" + struct.pack("<i", i) + (b"]K\x00a" + put(2) if i == 0
                                                           else get(2))
                            for i in range(10_000)) + b"u"
    day = glob("pandas._libs.tslibs.offsets", "Day") + b"(K\x01\x89tR"
    cases = {
        "matrix": ("loads", _repeat(glob("numpy", "matrix"), x("1 " * 15 + "1"), 174_000),
                   {"trusted": True}),
        "wide-dict": ("loads", _repeat(glob("pandas", "DataFrame"), cols, 100),
                      {"trusted": True}),
        "period-text": ("loads", _repeat(glob("pandas", "Period"),
                                         x("2020" + " ," * 13 + " ") + day, 170_000),
                        {"trusted": True}),
    }
    assert_refused(run_child(cases), "pandas constructor calls")


def test_repeated_arrow_restores_are_counted():
    head = (b"\x80\x04\x8c\x0bpyarrow.lib\x8c\x0e_restore_array\x93\x94\x8c\x0bpyarrow.lib"
            b"\x8c\tpy_buffer\x93\x94\x8c\x0bpyarrow.lib\x8c\x0etype_for_alias\x93\x8c\x06string"
            b"\x85\x94R\x940(h\x03K\x00K\x00K\x00(Nh\x01C\x04\x00\x00\x00\x00\x85Rh\x01C\x00\x85Rl"
            b"]Nt\x85\x94")
    pytest.importorskip("pyarrow")
    stream = head + b"h\x00h\x04R0" * 170_000 + b"N."
    assert_refused(run_child({"restore": ("loads", stream, {"trusted": True})}),
                   "pandas constructor calls")


def test_a_wide_frame_recheck_counts_its_placements():
    wide = b"\x80\x04\x8c\x05numpy\x8c\x07ndarray\x93K\x00J@B\x0f\x00\x86\x85R\x85\x94" \
           b"\x8c\x06pandas\x8c\tDataFrame\x93\x940](" + b"h\x01h\x00R" * 8 + b"e."
    out = fastjoblib.loads(wide, trusted=True)
    assert len(out) == 8 and out[0].shape == (0, 10 ** 6)
    assert _guard._pd_recheck_cost(pd, out[0]) >= _guard._RECHECK_ITEM_COST * 10 ** 6
    # the same frame given to 64 calls is refused once its re-checks have walked 4 x the budget
    chain = wide[:-2] + b"\x94\x85\x94\x8c\x0bcollections\x8c\x08ChainMap\x93\x94" + b"0" \
        + (get(4) + get(3) + b"R0") * 64 + b"N."
    res = run_child({"chain": ("loads", chain, {"trusted": True})})
    assert_refused(res, "re-checked after more calls")
