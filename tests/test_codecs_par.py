"""Parallel zlib/gzip/bz2 reader (csrc/codec_par.c) and the marked, independent deflate blocks.

The parallel reader must give exactly the serial reader's output and errors for every input (ours,
joblib's, hand-made streams with false markers or back-references across markers, truncated or
corrupted ones); only speed may differ. `threads` of _core._decompress: 1 = the serial reader,
>= 2 = the parallel one (even on a one-core machine).
"""
import bz2
import gzip
import io
import threading
import zlib

import numpy as np
import pytest

from fastjoblib import _core

KIB, MIB = 1024, 1024 * 1024
BS = 512 * KIB                      # deflate writer block
MARKER = b"\x00\x00\xff\xff\x00\x00\x00\xff\xff"
BZ2_BS = {1: 200_000, 9: 1_800_000}  # bz2 writer block (2 x level x 100 kB)
STD = {"zlib": zlib.decompress, "gzip": gzip.decompress, "bz2": bz2.decompress}


def rand_bytes(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def mixed(n, seed=0):
    """Compressible and random halves."""
    rng = np.random.default_rng(seed)
    walk = np.round(np.cumsum(rng.standard_normal(n // 16 + 1)), 1).tobytes()[: n // 2]
    return (walk + rng.integers(0, 256, n - len(walk), dtype=np.uint8).tobytes())[:n]


def outcome(name, blob, threads, **kw):
    """(value, (exception type, text)) of _decompress, run in a thread so a hang fails the test."""
    box = {}

    def target():
        try:
            box["value"] = _core._decompress(name, blob, threads=threads, **kw)
        except Exception as exc:  # noqa: BLE001 - compared below
            box["error"] = (type(exc), str(exc))

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "decoder hung"
    return box.get("value"), box.get("error")


def assert_same_as_serial(name, blob, threads=(2, 3), **kw):
    ref = outcome(name, blob, 1, **kw)
    for th in threads:
        assert outcome(name, blob, th, **kw) == ref, (name, th)
    return ref


def marked_stream(parts, wbits=15, level=6, extra=True):
    """A zlib (wbits 15) / gzip (31) stream of `parts` compressed by ONE compressobj (so later parts
    may reference earlier ones), each part but the last ended by Z_SYNC_FLUSH + an empty stored
    block: the boundaries carry our 9-byte marker although blocks are not independent. Like our
    writer's output it starts with an empty stored block (the reader's cue to look for markers)."""
    c = zlib.compressobj(level, zlib.DEFLATED, wbits)
    out = [c.flush(zlib.Z_SYNC_FLUSH)]
    assert out[0].endswith(b"\x00\x00\x00\xff\xff") and len(out[0]) == (7 if wbits == 15 else 15)
    for i, p in enumerate(parts):
        out.append(c.compress(p))
        if i < len(parts) - 1:
            out.append(c.flush(zlib.Z_SYNC_FLUSH))
            if extra:
                out.append(b"\x00\x00\x00\xff\xff")
    out.append(c.flush())
    return b"".join(out)


# ---------------------------------------------------------------------------------------------
# the writer: independent blocks, markers, standard streams


def test_deflate_blocks_are_independent_and_marked():
    data = mixed(3 * BS + 1000, seed=1)
    comp = _core._compress("zlib", data, level=6, threads=2)
    assert comp[:2] == zlib.compress(b"", 6)[:2]  # zlib's exact header bytes
    assert comp[2:7] == b"\x00\x00\x00\xff\xff"  # then an empty stored block: "has markers"
    assert comp.count(MARKER) == 3
    # every block between markers inflates alone (raw, no dictionary) to exactly BS bytes
    body = comp[2:-4]
    starts = [0] + [i + len(MARKER) for i in range(len(body)) if body.startswith(MARKER, i)]
    for k, s in enumerate(starts):
        d = zlib.decompressobj(-15)
        end = starts[k + 1] if k + 1 < len(starts) else len(body)
        out = d.decompress(body[s:end])
        assert out == data[k * BS:(k + 1) * BS]
    gz = _core._compress("gzip", data, threads=2)
    assert gzip.decompress(gz) == data
    dd = zlib.decompressobj(31)
    assert dd.decompress(gz) == data and dd.eof and dd.unused_data == b""  # one member


@pytest.mark.parametrize("name,hdr", [("zlib", 2), ("gzip", 10)])
def test_marker_cue_only_on_multi_block_streams(name, hdr):
    cue = b"\x00\x00\x00\xff\xff"
    # a full block is followed by at least an empty final one: BS bytes make two blocks
    for size in (0, 1000, BS - 1, BS, BS + 1, 3 * BS):
        comp = _core._compress(name, mixed(size, seed=3), threads=2)
        assert (comp[hdr:hdr + 5] == cue) == (size >= BS), size
        assert comp.count(MARKER) == size // BS, size


@pytest.mark.parametrize("name", ["zlib", "gzip"])
def test_independent_blocks_cost_under_one_percent(name):
    n = 3 * MIB
    x = np.linspace(0, 200 * np.pi * n / (16 * MIB), n // 8)
    smooth = np.round(np.sin(x) * 100 + np.linspace(0, 50, n // 8), 2).tobytes()
    for data in (smooth, mixed(n, seed=2)):
        ref = len(zlib.compress(data, 3))
        assert len(_core._compress(name, data, level=3, threads=2)) <= ref * 1.01


# ---------------------------------------------------------------------------------------------
# round trips around block boundaries, writer threads x reader threads


@pytest.mark.parametrize("name", ["zlib", "gzip"])
@pytest.mark.parametrize("size", [0, 1, BS - 1, BS, BS + 1, 2 * BS, 5 * BS + 77])
def test_deflate_round_trip_sizes(name, size):
    data = mixed(size, seed=size)
    for wt in (1, 2, 4):
        comp = _core._compress(name, data, threads=wt)
        assert STD[name](comp) == data
        for rt in (1, 2, 4):
            assert _core._decompress(name, comp, threads=rt) == data, (wt, rt)
    comp = _core._compress(name, data, threads=2)
    assert _core._decompress(name, comp, threads=2, chunk=4099, inner_chunk=333) == data
    assert _core._decompress(name, comp, threads=2, chunk=1 + BS // 3) == data


@pytest.mark.parametrize("size", [0, 1, BZ2_BS[1] - 1, BZ2_BS[1], BZ2_BS[1] + 1, 4 * BZ2_BS[1] + 5])
def test_bz2_round_trip_sizes(size):
    data = mixed(size, seed=size)
    for wt in (1, 2, 4):
        comp = _core._compress("bz2", data, level=1, threads=wt)
        assert bz2.decompress(comp) == data
        for rt in (1, 2, 4):
            assert _core._decompress("bz2", comp, threads=rt) == data, (wt, rt)
    assert _core._decompress("bz2", comp, threads=2, chunk=777, inner_chunk=1000) == data


# ---------------------------------------------------------------------------------------------
# false markers and markers that are not independent boundaries


@pytest.mark.parametrize("level", [0, 1])
@pytest.mark.parametrize("name", ["zlib", "gzip"])
def test_marker_bytes_in_stored_data(name, level):
    # random bytes with the marker (and int16 0/-1 runs) inside: stored blocks carry false markers
    rng = np.random.default_rng(level)
    pieces = []
    for i in range(600):
        pieces.append(rng.integers(0, 256, int(rng.integers(1, 6000)), dtype=np.uint8).tobytes())
        pieces.append(MARKER if i % 3 else np.array([0, -1] * 5, dtype=np.int16).tobytes() + MARKER)
    data = b"".join(pieces)
    assert len(data) > 2 * BS
    comp = _core._compress(name, data, level=level, threads=2)
    assert comp.count(MARKER) > len(data) // BS + 20  # mostly false ones
    assert STD[name](comp) == data
    value, error = assert_same_as_serial(name, comp, threads=(2, 4))
    assert error is None and value == data


@pytest.mark.parametrize("wbits,name", [(15, "zlib"), (31, "gzip")])
def test_back_references_across_markers(wbits, name):
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, 20 * KIB, dtype=np.uint8).tobytes()
    b = rng.integers(0, 256, 3 * KIB, dtype=np.uint8).tobytes()
    # later parts repeat earlier content within 32 KiB: matches reach across the markers
    parts = [a, a + b, b + a[:9000], rand_bytes(40 * KIB, 6), a[:5000] * 3, b]
    comp = marked_stream(parts, wbits=wbits)
    data = b"".join(parts)
    assert comp.count(MARKER) == len(parts) - 1
    assert STD[name](comp) == data
    value, error = assert_same_as_serial(name, comp, threads=(2, 3, 4))
    assert error is None and value == data
    # the same with only some parts referencing back, and with bigger parts
    parts = [rand_bytes(300 * KIB, 7), rand_bytes(200 * KIB, 8)] * 3
    comp = marked_stream(parts, wbits=wbits, level=1)
    value, error = assert_same_as_serial(name, comp)
    assert error is None and value == b"".join(parts)


def test_streams_without_the_cue_or_without_markers():
    # Z_SYNC_FLUSH alone (no extra empty block): no marker
    parts = [rand_bytes(100 * KIB, i) for i in range(5)]
    comp = marked_stream(parts, extra=False)
    value, error = assert_same_as_serial("zlib", comp)
    assert error is None and value == b"".join(parts)
    # markers but no leading empty stored block (another producer): read serially, same result
    parts = [rand_bytes(300 * KIB, i) for i in range(4)]
    comp = marked_stream(parts)
    assert comp[2:7] == b"\x00\x00\x00\xff\xff"
    for blob in (comp[:2] + comp[7:], comp):
        value, error = assert_same_as_serial("zlib", blob)
        assert error is None and value == b"".join(parts)


def test_long_stretch_without_markers_and_huge_segments():
    # a marker, then > 4 MiB of compressed data without one (cut for length), then markers again
    big = rand_bytes(5 * MIB, 9)
    parts = [rand_bytes(BS, 10), big, rand_bytes(BS, 11), rand_bytes(1000, 12)]
    comp = marked_stream(parts, level=1)
    value, error = assert_same_as_serial("zlib", comp, threads=(2,))
    assert error is None and value == b"".join(parts)
    # a segment inflating to more than a worker's output cap (zeros): decoded serially
    parts = [rand_bytes(BS, 13), bytes(40 * MIB), rand_bytes(BS, 14), b"tail"]
    for name, wbits in (("zlib", 15), ("gzip", 31)):
        comp = marked_stream(parts, wbits=wbits, level=1)
        value, error = outcome(name, comp, 2)
        assert error is None and value == b"".join(parts)


# ---------------------------------------------------------------------------------------------
# concatenation and trailing bytes


def test_concatenated_members_and_trailing_bytes():
    a, b = mixed(3 * BS, seed=20), mixed(2 * BS + 5, seed=21)
    ga, gb = _core._compress("gzip", a, threads=2), _core._compress("gzip", b, threads=2)
    std_b = gzip.compress(b, 6, mtime=0)
    for blob, want in ((ga + gb, a + b), (ga + std_b, a + b), (std_b + ga, b + a),
                       (ga + b"\x00junk" + gb, a), (ga + ga[:10], None)):
        value, error = assert_same_as_serial("gzip", blob)
        if want is not None:
            assert error is None and value == want
        else:
            assert error is not None
    za = _core._compress("zlib", a, threads=2)
    for blob in (za + za, za + b"garbage" * 1000, za + MARKER * 50):
        value, error = assert_same_as_serial("zlib", blob)
        assert error is None and value == a
    ba, bb = (_core._compress("bz2", x, level=1, threads=2) for x in (a[:900_000], b[:700_000]))
    for blob, want in ((ba + bb, a[:900_000] + b[:700_000]), (ba + b"xx" + bb, a[:900_000]),
                       (ba + b"B", a[:900_000]), (ba + bz2.compress(b"hello"), a[:900_000] + b"hello")):
        value, error = assert_same_as_serial("bz2", blob)
        assert error is None and value == want


# ---------------------------------------------------------------------------------------------
# truncation and corruption: the serial reader's errors, never a crash or a hang


@pytest.mark.parametrize("wbits,name", [(15, "zlib"), (31, "gzip")])
def test_truncation_at_every_position(wbits, name):
    rng = np.random.default_rng(30)
    a = rng.integers(0, 4, 3000, dtype=np.uint8).tobytes()
    parts = [a, a[::-1], rand_bytes(500, 31), a[:1000], b"x" * 2000]
    comp = marked_stream(parts, wbits=wbits, level=6)
    assert comp.count(MARKER) == 4
    for cut in range(len(comp)):
        value, error = assert_same_as_serial(name, comp[:cut], threads=(2,))
        assert error is not None, cut


@pytest.mark.parametrize("name", ["zlib", "gzip", "bz2"])
def test_truncation_of_our_files(name):
    data = mixed(3 * (BS if name != "bz2" else BZ2_BS[1]), seed=32)
    comp = _core._compress(name, data, level=1, threads=2)
    cuts = sorted(set(list(range(0, 40)) + list(range(len(comp) - 40, len(comp))) +
                      [i for i in range(len(comp)) if comp.startswith(MARKER, i)] +
                      list(np.random.default_rng(33).integers(0, len(comp), 40))))
    for cut in cuts:
        value, error = assert_same_as_serial(name, comp[:int(cut)], threads=(2,))
        assert error is not None, cut
        assert error[0] in (EOFError, zlib.error, OSError), error


@pytest.mark.parametrize("name", ["zlib", "gzip", "bz2"])
def test_bit_flips_give_the_serial_errors(name):
    data = mixed(3 * (BS if name != "bz2" else BZ2_BS[1]), seed=34)
    comp = _core._compress(name, data, level=1, threads=2)
    rng = np.random.default_rng(35)
    marks = [i for i in range(len(comp)) if comp.startswith(MARKER, i)] or [len(comp) // 2]
    positions = list(rng.integers(0, len(comp), 25)) + [m + j for m in marks for j in (0, 4, 8, 9)]
    positions += list(range(0, 12)) + list(range(len(comp) - 8, len(comp)))
    errors = 0
    for pos in positions:
        pos = int(pos) % len(comp)
        bad = bytearray(comp)
        bad[pos] ^= 1 << int(rng.integers(0, 8))
        value, error = assert_same_as_serial(name, bytes(bad), threads=(2,))
        errors += error is not None  # a flip in padding bits may go unnoticed (by both)
    assert errors > len(positions) * 3 // 4


def test_hand_made_streams_with_corruption():
    rng = np.random.default_rng(36)
    a = rng.integers(0, 8, 4000, dtype=np.uint8).tobytes()
    comp = bytearray(marked_stream([a, a, rand_bytes(3000, 37), a], level=9))
    for pos in range(0, len(comp), 7):
        bad = bytearray(comp)
        bad[pos] ^= 0x40
        assert_same_as_serial("zlib", bytes(bad), threads=(2,))


# ---------------------------------------------------------------------------------------------
# joblib interplay


@pytest.mark.parametrize("name,ext", [("zlib", "z"), ("gzip", "gz"), ("bz2", "bz2")])
def test_joblib_reads_ours_and_we_read_joblib(tmp_path, name, ext):
    import joblib

    import fastjoblib

    obj = {"a": np.random.default_rng(40).random(300_000), "b": list(range(1000)),
           "c": np.round(np.sin(np.arange(200_000) / 50.0), 2)}
    ours = tmp_path / f"ours.{ext}"
    fastjoblib.dump(obj, ours, compress=(name, 1))
    theirs = tmp_path / f"theirs.{ext}"
    joblib.dump(obj, theirs, compress=(name, 1))
    for path in (ours, theirs):
        for loader in (joblib.load, fastjoblib.load):
            got = loader(path)
            np.testing.assert_array_equal(got["a"], obj["a"])
            np.testing.assert_array_equal(got["c"], obj["c"])
            assert got["b"] == obj["b"]
    raw = ours.read_bytes()
    assert STD[name](raw) == _core._decompress(name, raw, threads=2)
    if name != "bz2":
        assert raw.count(MARKER) >= 2


def test_file_object_reads_in_parallel(tmp_path):
    import fastjoblib

    arr = np.random.default_rng(41).random(400_000)
    path = tmp_path / "x.gz"
    fastjoblib.dump(arr, path, compress="gzip")
    with open(path, "rb") as f:
        np.testing.assert_array_equal(fastjoblib.load(f), arr)
    with open(path, "rb") as f:
        np.testing.assert_array_equal(fastjoblib.load(io.BytesIO(f.read())), arr)


@pytest.mark.parametrize("seed", range(4))
def test_segments_of_varying_size(seed):
    # segment outputs differ from the first one's size: the direct placement into the caller's
    # buffer mispredicts and must be undone (also with small reads and with back-references)
    rng = np.random.default_rng(50 + seed)
    sizes = [int(x) for x in rng.choice([3000, 40_000, 150_000, 600_000], size=14)]
    parts = []
    for i, n in enumerate(sizes):
        if i and rng.random() < 0.3:  # repeats recent content: references across the marker
            parts.append((parts[-1] * (n // max(len(parts[-1]), 1) + 1))[:n])
        else:
            parts.append(mixed(n, seed=seed * 100 + i))
    data = b"".join(parts)
    for wbits, name in ((15, "zlib"), (31, "gzip")):
        comp = marked_stream(parts, wbits=wbits, level=int(rng.integers(1, 7)))
        for kw in ({}, {"chunk": int(rng.integers(1000, 400_000))}):
            value, error = assert_same_as_serial(name, comp, threads=(2, 3), **kw)
            assert error is None and value == data
