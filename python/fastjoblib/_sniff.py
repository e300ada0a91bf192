"""Name a file that is not a joblib file or a pickle from its first bytes.

Used only on the error path: when ``load`` (or ``inspect``, or the CLI) fails, the first bytes
are looked at and, when they show another format, the exception's message says what the file is
and what reads it. The exception type does not change. A file that starts like a pickle (a PROTO
opcode, or the opcodes a protocol 0 / 1 pickle starts with) is never re-described: a real but
damaged pickle keeps the unpickler's precise message with its offset.

Recognised: NumPy ``.npy``; zip archives (``.npz``, ``torch.save``, skops, any other zip);
safetensors; HDF5; Parquet; gzip / bz2 / xz / lzma / zlib wrapping something that is not a
pickle (named when it is one of these formats); plain text (JSON and CSV named as such).

Nothing here imports the libraries it names; zip member names are read with ``zipfile`` (the
central directory when the file can seek, else the first local header).
"""
import bz2
import io
import lzma
import os
import re
import struct
import zipfile
import zlib

HEAD = 1 << 16          # bytes looked at directly
WRAPPED_HEAD = 2 << 20  # compressed bytes read to see what a compressed file wraps (a bz2 block)

# How protocol 0 / 1 streams start: MARK, an empty container, STOP, None, INT / LONG / FLOAT with a
# number, a quoted STRING, a UNICODE line followed by a memo PUT or STOP, a GLOBAL's two lines.
# (Protocol 1's binary opcodes are letters too, but what follows them is rarely printable: such a
# pickle is not taken for text.)
_PROTO0 = re.compile(
    rb"(?:[()\]}.]|N\.|I-?\d|I0[01]\n|L-?\d|F[-\d.ni]|S['\"]|V[^\n]*\n(?:p\d|\.)"
    rb"|c[\w.]+\n[\w.]+\n)",
)


def looks_like_pickle(head):
    """True when `head` starts like a pickle stream (any protocol)."""
    if not head:
        return False
    if head[0] == 0x80:
        return len(head) < 2 or head[1] <= 5
    return _PROTO0.match(head) is not None


# ----------------------------------------------------------------------------------------------
# zip archives

def _zip_names(head, opener):
    """Member names: from the central directory when `opener` gives a seekable file, else the
    names of the local headers found in `head`."""
    if opener is not None:
        try:
            with opener() as f, zipfile.ZipFile(f) as z:
                return z.namelist()
        except Exception:  # noqa: BLE001 - a damaged archive: fall back to the local headers
            pass
    names, pos = [], 0
    while pos + 30 <= len(head) and head[pos:pos + 4] == b"PK\x03\x04" and len(names) < 50:
        flags, csize, nlen, xlen = struct.unpack_from("<H10xI4xHH", head, pos + 6)
        names.append(head[pos + 30:pos + 30 + nlen].decode("utf-8", "replace"))
        if flags & 0x08:  # sizes after the data: the next header cannot be found from here
            break
        pos += 30 + nlen + xlen + csize
    return names


def _zip_kind(names):
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return ("a PyTorch file written by torch.save (a zip archive)",
                "torch.load (trusted input only: it unpickles)")
    if "schema.json" in names:
        return "a skops file (a zip archive)", "skops.io.load"
    if names and all(n.endswith(".npy") for n in names):
        return "a NumPy .npz archive", "numpy.load"
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return ("a zip archive (%s)" % shown if names else "a zip archive"), "zipfile.ZipFile"


# ----------------------------------------------------------------------------------------------
# compressed wrappers

_WRAPPERS = (
    # (name, magic, decompressor factory, how to open it)
    ("gzip", b"\x1f\x8b", lambda: zlib.decompressobj(31), "gzip.open"),
    ("bz2", b"BZh", bz2.BZ2Decompressor, "bz2.open"),
    ("xz", b"\xfd7zXZ\x00", lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ), "lzma.open"),
)


def _unwrap(head):
    """(wrapper name, opener, first decompressed bytes) or None."""
    for name, magic, factory, opener in _WRAPPERS:
        if head.startswith(magic):
            try:
                inner = factory().decompress(head, HEAD)
            except Exception:  # noqa: BLE001 - damaged: the loader's own message stands
                return None
            return name, opener, inner
    return None


# ----------------------------------------------------------------------------------------------
# text

def _text_kind(head):
    """(what, reader) for text, else None."""
    if not head or b"\x00" in head:
        return None
    sample = head[:HEAD]
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(sample) - 4:  # not just a character cut by the sample's end
            return None
        text = sample[:exc.start].decode("utf-8")
    if not text:
        return None
    printable = sum(1 for ch in text if ch.isprintable() or ch in "\t\n\r\f\v")
    if printable < 0.97 * len(text):
        return None
    start = text.lstrip()[:1]
    excerpt = text.strip().splitlines()[0][:40] if text.strip() else ""
    if start in ("{", "["):
        what, reader = "JSON or other plain text", "json.load / open()"
    else:
        lines = text.splitlines()[:5]
        if len(lines) >= 2 and lines[0].count(",") >= 1 and \
                all(ln.count(",") == lines[0].count(",") for ln in lines[1:-1] or lines[1:]):
            what, reader = "CSV text", "pandas.read_csv / csv.reader"
        else:
            what, reader = "plain text", "open()"
    return "%s, starting %r" % (what, excerpt), reader


# ----------------------------------------------------------------------------------------------

def identify(head, opener=None):
    """(what the bytes are, what reads them) for a foreign format, or None (a pickle, a joblib
    file, or unknown). head: the first bytes (up to WRAPPED_HEAD help for compressed files);
    opener: None or a callable returning a new seekable binary file over the whole file."""
    head = bytes(head)
    if not head:
        return None
    if head.startswith(b"\x93NUMPY"):
        return "a NumPy .npy file", "numpy.load"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _zip_kind(_zip_names(head, opener))
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "an HDF5 file", "h5py.File / pandas.read_hdf"
    if head.startswith(b"PAR1"):
        return "a Parquet file", "pandas.read_parquet / pyarrow.parquet.read_table"
    if len(head) >= 10 and head[8:10] in (b'{"', b"{'", b"{ ", b"{}"):
        (n,) = struct.unpack_from("<Q", head)
        if 2 <= n <= 100 << 20:
            return "a safetensors file", "safetensors.safe_open / safetensors.numpy.load_file"
    if looks_like_pickle(head):
        return None
    wrapped = _unwrap(head)
    if wrapped is not None:
        name, opener_name, inner = wrapped
        if not inner or looks_like_pickle(inner):
            return None
        kind = identify(inner)
        if kind is None:
            return ("%s-compressed data that is not a pickle (it starts with %r)"
                    % (name, inner[:16]), opener_name)
        what = kind[0]
        article = ""
        for a in ("a ", "an "):
            if what.startswith(a):
                what, article = what[len(a):], ("an " if name == "xz" else "a ")
        return ("%s%s-compressed %s" % (article, name, what),
                "%s, then %s" % (opener_name, kind[1]))
    return _text_kind(head)


def message(name, kind, original=None):
    """The new exception text."""
    what, reader = kind
    text = "%s is %s, not a joblib file or a pickle: read it with %s" % (
        repr(name) if name else "the input", what, reader)
    if original and ("text" in what):
        # (text is named heuristically: the unpickler's own words stay available)
        text += " (the unpickler stopped with: %s)" % original
    return text


# ----------------------------------------------------------------------------------------------
# sources

def _read_head(read_at):
    head = read_at(HEAD)
    if head and any(head.startswith(w[1]) for w in _WRAPPERS):
        head = read_at(WRAPPED_HEAD)
    return head


def from_path(path):
    """identify() for a path (None when it cannot be read)."""
    try:
        with open(path, "rb") as f:
            head = _read_head(lambda n: os.pread(f.fileno(), n, 0))
    except OSError:
        return None
    return identify(head, lambda: open(path, "rb"))


def from_fd(fd, start):
    """identify() for an fd whose data starts at `start` (pread: the offset is not moved)."""
    try:
        head = _read_head(lambda n: os.pread(fd, n, start))
    except OSError:
        return None

    return identify(head, lambda: open(os.dup(fd), "rb"))


def from_bytes(data):
    """identify() for bytes-like data."""
    data = memoryview(data).cast("B")
    return identify(bytes(data[:WRAPPED_HEAD]), lambda: io.BytesIO(data))


def from_file(fobj, start):
    """identify() for a seekable binary file object whose data started at `start`; restores the
    position. None when it cannot seek back."""
    try:
        pos = fobj.tell()
        fobj.seek(start)
        head = fobj.read(WRAPPED_HEAD)
        fobj.seek(pos)
    except Exception:  # noqa: BLE001 - not seekable or not readable any more
        return None
    if not isinstance(head, (bytes, bytearray)):
        return None
    return identify(head)


def rewrite(exc, name, kind):
    """A new exception of exc's type with the message naming `kind`, or None when the type cannot
    be built from a message. The result carries `fastjoblib_format` = (what, reader)."""
    try:
        new = type(exc)(message(name, kind, str(exc)))
    except Exception:  # noqa: BLE001 - a type with another constructor: keep the original
        return None
    try:
        new.fastjoblib_format = kind
    except AttributeError:
        pass
    return new


def tell(source):
    """The start position of a file object source (None for other sources or when unknown)."""
    if isinstance(source, (str, bytes, bytearray, memoryview, os.PathLike)) or \
            not hasattr(source, "read"):
        return None
    try:
        return source.tell()
    except Exception:  # noqa: BLE001
        return None


def for_source(source, start=None):
    """identify() for what inspect() takes: a path, bytes-like data or a file object (seekable,
    data from `start`)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return from_bytes(source)
    if isinstance(source, (str, os.PathLike)):
        return from_path(source)
    if start is not None:
        return from_file(source, start)
    return None
