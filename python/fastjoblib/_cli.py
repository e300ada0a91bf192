"""The command line: ``python -m fastjoblib {inspect,convert,bench}``.

Exit codes: 0 success, 1 error (a one-line message on stderr saying what to do; no traceback for
expected failures such as a missing or corrupt file; ``--traceback`` shows it anyway), 130 on
Ctrl-C. Usage errors (unknown option, missing argument) also exit 1, after argparse's message.
"""
from __future__ import annotations

import argparse
import json
import os
import pprint
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TextIO

PROG = "python -m fastjoblib"


class CLIError(Exception):
    """An expected failure: its message is printed as the one-line error."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message} (see --help)\n")


# ------------------------------------------------------------------------------------------------
# formatting helpers


def human_size(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover


def _table(rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> list[str]:
    """Left-aligned columns (right-aligned for the indexes in `right`), two spaces apart."""
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(r, widths))]
        out.append("  ".join(cells).rstrip())
    return out


def _shape(shape: Any) -> str:
    if isinstance(shape, (tuple, list)):
        if len(shape) == 1:
            return f"({shape[0]},)"
        return "(" + ", ".join(str(s) for s in shape) + ")"
    return str(shape)


def _dtype(dt: Any, width: int = 28) -> str:
    text = dt if isinstance(dt, str) else json.dumps(dt, default=str)
    if text.startswith("[(") or text.startswith("[["):  # structured: its field count
        fields = text.count("(") if text.startswith("[(") else text.count("[") - 1
        text = f"struct({fields} fields)" if len(text) > width else text
    return text if len(text) <= width else text[: width - 3] + "..."


# ------------------------------------------------------------------------------------------------
# inspect


WIDTH = 120      # the text report's line width
_LARGEST = 5     # array records shown on the first screen


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 3, 0)] + "..."


def _wrap_list(prefix: str, items: Sequence[str], indent: str, width: int = WIDTH) -> list[str]:
    """`prefix` + repr(list(items)), wrapped between items at `width`."""
    out: list[str] = []
    line = prefix + "["
    for i, item in enumerate(items):
        cell = repr(item) + ("," if i < len(items) - 1 else "]")
        if len(line) + len(cell) + 1 > width and line.strip() not in ("", prefix.strip() + "["):
            out.append(line.rstrip())
            line = indent
        line += cell + " "
    if not items:
        line += "]"
    out.append(_cut(line.rstrip(), width))
    return out


def _provenance_text(rec: Any) -> str:
    if not isinstance(rec, dict):
        return "none (not written by fastjoblib, or an older version)"
    parts = []
    for key in ("python", "numpy", "fastjoblib"):
        if rec.get(key):
            parts.append(f"{key} {rec[key]}")
    for key, value in rec.items():
        if isinstance(key, str) and key.startswith("pkg:"):
            parts.append(f"{key[4:]} {value}")
    if rec.get("byteorder"):
        parts.append(f"{rec['byteorder']}-endian")
    if rec.get("created"):
        created = str(rec["created"])
        parts.append("created " + (created[:16].replace("T", " ") + " UTC"
                                   if created.endswith("+00:00") else created))
    return ", ".join(str(p) for p in parts) or "empty record"


def _array_rows(arrays: Sequence[dict[str, Any]], indexes: Sequence[int]) -> list[str]:
    rows = [("#", "dtype", "shape", "order", "offset", "size", "mmap", "class")]
    for i in indexes:
        a = arrays[i]
        cls = str(a.get("subclass") or "")
        if cls == "numpy.ndarray":
            cls = ""
        if a.get("object"):
            cls = (cls + " " if cls else "") + "(object: nested pickle)"
        if a.get("torch_storage"):
            cls = (cls + " " if cls else "") + "(torch storage)"
        rows.append((str(i), _dtype(a.get("dtype")), _cut(_shape(a.get("shape")), 24),
                     str(a.get("order", "")), str(a.get("offset", "")),
                     human_size(a.get("nbytes")), "yes" if a.get("mmap") else "no",
                     _cut(cls, 40)))
    return ["  " + _cut(r, WIDTH - 2) for r in _table(rows, right=(0, 4, 5))]


def format_report(report: dict[str, Any], path: str | None = None,
                  arrays_detail: bool = False) -> str:
    """The human-readable rendering of an ``_inspect.inspect`` report: a first screen (what
    the file is, where it comes from, what a restricted load needs, globals, a summary of the
    array records); with `arrays_detail`, every array record. Lines are at most WIDTH chars."""
    lines: list[str] = []
    dangerous = set(report.get("dangerous", []))
    needs = list(report.get("needs_trusted", []))
    needs_set = set(needs)  # (membership for each of possibly 80,000 globals)
    container = report.get("container", "?")
    shown = path if path is not None else "FILE"
    proto = report.get("protocol")
    head = []
    if path is not None:
        try:
            head.append(("file", f"{path} ({human_size(os.path.getsize(path))})"))
        except OSError:
            head.append(("file", path))
    head.append(("container", f"{container} "
                 f"({'compressed' if report.get('compressed') else 'uncompressed'}), "
                 f"protocol {proto if proto is not None else '0/1'}, "
                 f"format {report.get('format')}, "
                 f"stream {human_size(report.get('stream_size'))}"
                 + (", TRAILING DATA after STOP" if report.get("trailing_data") else "")))
    head.append(("provenance", _provenance_text(report.get("provenance"))))
    for key, values in sorted(report.get("versions", {}).items()):
        head.append(("version", f"{key} = {', '.join(str(v) for v in values)}"))
    for key, label in (("persistent_ids", "persistent ids"),
                       ("out_of_band_buffers", "out-of-band buffers")):
        if report.get(key):
            head.append((label, str(report[key])))
    if report.get("companion_files"):
        head.append(("companions", ", ".join(map(str, report["companion_files"]))))
    lines += [_cut(r, WIDTH) for r in _table([(k, v) for k, v in head])]

    # what a restricted load needs: the line a user came for, on the first screen
    lines.append("")
    if dangerous:
        lines.append(_cut("DANGEROUS: " + ", ".join(sorted(dangerous)), WIDTH))
        lines.append("  loading this file runs code it names; a restricted load refuses it. "
                     "Do not load it unless you wrote it.")
    if needs:
        from ._trust import public_names

        names = [n if len(n) <= 200 else n[:197] + "..." for n in public_names(needs[:40])]
        lines += _wrap_list("needs trusted=", names, "               ")
        shown = shown if len(shown) <= 40 else "FILE"
        more = f"{len(needs) - 40} more; " if len(needs) > 40 else ""
        lines.append(f"  ({more}review them first; {PROG} inspect --trusted {shown} prints the "
                     "list)")
    elif not dangerous:
        lines.append("trusted=True loads it: every global is in the default trusted set")

    globs: dict[str, int] = report.get("globals", {})
    lines.append("")
    lines.append(f"globals ({len(globs)}):  ! = dangerous (refused), ? = needs trusted=[...]")
    rows: list[tuple[str, ...]] = []
    for name, count in globs.items():
        mark = "!" if name in dangerous else "?" if name in needs_set else ""
        rows.append((mark, str(count), _cut(name, WIDTH - 16)))
    for name in sorted(dangerous - set(globs)):
        rows.append(("!", "", _cut(name, WIDTH - 16)))
    limit = 30
    lines += ["  " + r for r in _table(rows[:limit], right=(1,))]
    if len(rows) > limit:
        lines.append(f"  ... {len(rows) - limit} more (--json lists them all)")

    arrays: list[dict[str, Any]] = report.get("arrays", [])
    total = sum(int(a.get("nbytes") or 0) for a in arrays)
    lines.append("")
    if not arrays:
        lines.append("array records: none")
    else:
        mappable = sum(1 for a in arrays if a.get("mmap"))
        kinds: dict[str, int] = {}
        for a in arrays:
            key = _dtype(a.get("dtype"))
            kinds[key] = kinds.get(key, 0) + 1
        dtypes = ", ".join(f"{k} x{v}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]))
        lines.append(_cut(f"array records: {len(arrays)}, {human_size(total)} of payload, "
                          f"{mappable} memory-mappable; dtypes: {dtypes}", WIDTH))
        if arrays_detail:
            lines += _array_rows(arrays, range(len(arrays)))
        else:
            largest = sorted(range(len(arrays)), key=lambda i: -int(arrays[i].get("nbytes") or 0))
            largest = sorted(largest[:_LARGEST])
            if len(arrays) > len(largest):
                lines.append(f"  the {len(largest)} largest:")
            lines += _array_rows(arrays, largest)
            if len(arrays) > len(largest):
                lines.append(f"  (--arrays lists all {len(arrays)} records, --json the full "
                             "report)")
    if report.get("torch"):
        lines.append("")
        lines += _torch_lines(report["torch"], arrays_detail)
    return "\n".join(lines)


# A structured dtype's description or a class name can be kilobytes, and thousands of array
# records of a small file can share one (through the pickle memo): --json gives each such text
# once, in "texts", and the records name it ("texts[3]"): output linear in the file's size.
_JSON_INLINE = 256
_JSON_NAME = 1024  # global names (composed of memoised strings: 16,384 of 6 KB from 868 KB)


def _json_report(report: dict[str, Any]) -> dict[str, Any]:
    texts: list[str] = []
    index: dict[str, int] = {}

    def ref(v: Any) -> Any:
        if isinstance(v, str) and len(v) > _JSON_INLINE:
            k = index.get(v)
            if k is None:
                k = index[v] = len(texts)
                texts.append(v)
            return f"texts[{k}]"
        return v

    def long(r: dict[str, Any]) -> bool:
        return any(type(v) is str and len(v) > _JSON_INLINE for v in r.values())

    def cut(name: Any) -> Any:  # (no real module.qualname is this long)
        return name if not isinstance(name, str) or len(name) <= _JSON_NAME else \
            name[:_JSON_NAME] + f"...[{len(name)} characters]"

    out = dict(report)
    if any(len(str(n)) > _JSON_NAME for n in report.get("globals", ())):
        out["globals"] = {cut(n): c for n, c in report["globals"].items()}
        for key in ("needs_trusted", "dangerous"):
            if isinstance(report.get(key), list):
                out[key] = [cut(n) for n in report[key]]
    for key, value in report.items():
        if isinstance(value, list) and any(isinstance(r, dict) for r in value):
            out[key] = [{f: ref(v) for f, v in r.items()} if isinstance(r, dict) and long(r)
                        else r for r in value]
    if texts:
        out["texts"] = texts
    return out


def _write_json(report: dict[str, Any], out: TextIO) -> None:
    """The report as JSON: a top-level key per line, a list's items one per line, each written by
    json's C encoder (json.dump with indent= runs in Python: seconds for a 10 MB report)."""
    enc = json.JSONEncoder(default=str).encode
    out.write("{")
    for i, (key, value) in enumerate(report.items()):
        out.write(("," if i else "") + "\n  " + enc(str(key)) + ": ")
        if isinstance(value, list) and value:
            out.write("[\n    " + ",\n    ".join(map(enc, value)) + "\n  ]")
        else:
            out.write(enc(value))
    out.write("\n}\n")


def _tensor_rows(tensors: Sequence[dict[str, Any]], indexes: Sequence[int]) -> list[str]:
    rows = [("#", "dtype", "shape", "stride", "offset", "size", "grad", "storage", "class")]
    for i in indexes:
        t = tensors[i]
        st = t.get("storage")
        where = "" if st is None else f"#{st}" + (
            f" (array {t['array']})" if t.get("array") is not None else "")
        rg = t.get("requires_grad")
        rows.append((str(i), str(t.get("dtype") or "?"), _cut(_shape(t.get("shape")), 24),
                     _cut(_shape(t.get("stride")), 20), str(t.get("offset", "")),
                     human_size(t.get("nbytes")), "yes" if rg else "?" if rg is None else "no",
                     where, "nn.Parameter" if t.get("parameter") else ""))
    return ["  " + _cut(r, WIDTH - 2) for r in _table(rows, right=(0, 4, 5))]


def _torch_lines(info: dict[str, Any], detail: bool) -> list[str]:
    """The PyTorch part of the first screen: tensors as tensors (inspect's "torch" entry)."""
    lines = []
    n = int(info.get("tensors") or 0)
    dtypes = ", ".join(f"{k} x{v}" for k, v in info.get("dtypes", {}).items())
    extra = [f"{info.get('parameters', 0)} nn.Parameter", f"{info.get('requires_grad', 0)} "
             "requires_grad"]
    size = human_size(info.get("nbytes"))
    if info.get("nbytes_unknown"):
        size += f" + {info['nbytes_unknown']} of unknown size"
    lines.append(_cut(f"torch tensors: {n} ({', '.join(extra)}), {size}"
                      + (f"; dtypes: {dtypes}" if dtypes else ""), WIDTH))
    forms = info.get("forms", {})
    shared = info.get("shared_storages", 0)
    share = (f", {shared} of them shared by {info.get('tensors_on_shared', 0)} tensors"
             if shared else ", none shared")
    if forms.get("array records"):
        sb = info.get("storage_nbytes")
        lines.append(_cut(f"  {forms['array records']} as array records (fastjoblib): "
                          f"{info.get('storages', 0)} storages"
                          + (f" ({human_size(sb)})" if sb is not None else "") + share,
                          WIDTH))
    own = forms.get("torch's reduce")
    if own:
        lines.append(_cut(f"  {own} by torch's own "
                          "reduce (pickle, joblib.dump): storages are torch.save bytes, not "
                          "memory-mappable" + ("" if forms.get("array records") else share),
                          WIDTH))
    others = info.get("other_rebuilds") or {}
    if others:
        lines.append(_cut("  other torch rebuilds (devices, sparse, quantized, nested, "
                          "subclasses): " + ", ".join(f"{k} x{v}" for k, v in others.items()),
                          WIDTH))
    if info.get("out_of_bounds"):
        lines.append(f"  {info['out_of_bounds']} tensor views run past their storage: "
                     "loading this file raises")
    tensors: list[dict[str, Any]] = info.get("list") or []
    if not tensors:
        return lines
    if detail:
        lines += _tensor_rows(tensors, range(len(tensors)))
        if n > len(tensors):
            lines.append(f"  (the first {len(tensors)} of {n}; --json has the same)")
    else:
        largest = sorted(range(len(tensors)), key=lambda i: -int(tensors[i].get("nbytes") or 0))
        largest = sorted(largest[:_LARGEST])
        if n > len(largest):
            lines.append(f"  the {len(largest)} largest:")
        lines += _tensor_rows(tensors, largest)
        if n > len(largest):
            lines.append(f"  (--arrays lists all {n} tensors, --json the full report)")
    return lines


def cmd_inspect(args: argparse.Namespace, out: TextIO) -> int:
    from ._inspect import inspect

    path = args.file
    source: Any = path
    if path == "-":
        source, path = sys.stdin.buffer, "<stdin>"
    elif os.path.isdir(path):
        raise CLIError(f"{path} is a directory; give a file written by joblib.dump or pickle")
    try:
        report = inspect(source)
    except FileNotFoundError:
        raise CLIError(f"{path}: no such file") from None
    except PermissionError:
        raise CLIError(f"{path}: permission denied") from None
    except ImportError as exc:  # a codec's package: the one missing-package wording
        raise CLIError(f"{path}: {exc}") from None
    except ValueError as exc:
        raise CLIError(f"{path} is not a readable joblib file or pickle ({_strip(exc)})") from None
    except (MemoryError, RecursionError) as exc:
        raise CLIError(f"{path}: too big or too deep to inspect ({type(exc).__name__})") from None
    if args.json:
        _write_json(_json_report(report), out)
        return 0
    if args.trusted:
        from ._trust import public_names

        # public spellings (sklearn.preprocessing.StandardScaler) where the package has them:
        # trusted= accepts them for the object they name
        out.write(_printable(pprint.pformat(public_names(report["needs_trusted"]), width=100))
                  + "\n")
        if report["dangerous"]:
            print(f"fastjoblib: {path} also names dangerous globals that no trusted= list "
                  f"allows: {', '.join(report['dangerous'])}", file=sys.stderr)
            return 1
        return 0
    out.write(_printable(format_report(report, None if source is not path else path,
                                       arrays_detail=args.arrays)) + "\n")
    return 0


def _printable(text: str) -> str:
    """Text from a file may hold lone surrogates (names and strings are decoded with
    'surrogatepass'): shown as \\udXXX escapes, so a strict UTF-8 stream can write them."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _strip(exc: BaseException) -> str:
    text = str(exc)
    prefix = "fastjoblib.inspect: "
    return text[len(prefix):] if text.startswith(prefix) else text or type(exc).__name__


# ------------------------------------------------------------------------------------------------
# convert


def parse_compress(text: str | None) -> Any:
    """``NAME[:LEVEL]`` / ``LEVEL`` / ``none`` -> the ``compress`` argument of ``dump``.

    ``zstd:3`` -> ('zstd', 3); ``zstd`` -> 'zstd' (its default level); ``3`` -> 3 (level 3 of the
    method the output's extension names, zlib otherwise, as joblib); ``none`` / ``0`` -> no
    compression whatever the extension says; None (option absent) -> 0, i.e. joblib's
    extension inference on OUT.
    """
    from ._compressors import COMPRESSORS

    if text is None:
        return 0
    t = text.strip().lower()
    if t in ("none", "0", "raw", "off"):
        return ("zlib", 0)
    name, sep, level_text = t.partition(":")
    if name.isdigit() and not sep:
        level = int(name)
        if not 0 <= level <= 9:
            raise CLIError(f"--compress level must be 0-9, got {level}")
        return level
    if name not in COMPRESSORS:
        raise CLIError(f"unknown compressor {name!r} in --compress; choose one of "
                       f"{', '.join(sorted(COMPRESSORS))} (optionally NAME:LEVEL, LEVEL 0-9)")
    if not sep:
        return name
    if not level_text.isdigit() or not 0 <= int(level_text) <= 9:
        raise CLIError(f"--compress {text}: the level after ':' must be 0-9")
    return (name, int(level_text))


def _container_of(path: str) -> str:
    from ._compressors import MAX_PREFIX_LEN, detect

    with open(path, "rb") as f:
        kind: str = detect(f.read(MAX_PREFIX_LEN))
    return {"not-compressed": "uncompressed", "compat": "joblib<0.10 z-file"}.get(kind, kind)


def _show_warnings(caught: list[warnings.WarningMessage]) -> None:
    seen = set()
    for w in caught:
        text = str(w.message)
        if text not in seen:
            seen.add(text)
            print(f"fastjoblib: warning: {text}", file=sys.stderr)


def cmd_convert(args: argparse.Namespace, out: TextIO) -> int:
    import fastjoblib

    src, dst = args.input, args.output
    compress = parse_compress(args.compress)
    if args.threads is not None and args.threads < 1:
        raise CLIError("--threads must be >= 1")
    if os.path.isdir(src):
        raise CLIError(f"{src} is a directory; give a file written by joblib.dump or pickle")
    try:
        in_size = os.path.getsize(src)
        in_kind = _container_of(src)
    except FileNotFoundError:
        raise CLIError(f"{src}: no such file") from None
    except OSError as exc:
        raise CLIError(f"cannot read {src}: {exc.strerror or exc}") from None
    if os.path.isdir(dst):
        raise CLIError(f"{dst} is a directory; give the output file's name")

    # The whole object is in memory (mmap_mode=None: no array refers to the input file) before
    # anything is written, and dump replaces OUT atomically: converting in place is safe.
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            obj = fastjoblib.load(src)
        except MemoryError:
            raise CLIError(f"not enough memory to load {src}") from None
        except (ModuleNotFoundError, ImportError, ValueError) as exc:
            if getattr(exc, "fastjoblib_format", None):  # not a pickle: load named the format
                raise CLIError(f"cannot load {exc}") from None
            if "pip install" in str(exc):  # a codec's package: the one missing-package wording
                raise CLIError(f"{src}: {exc}") from None
            if isinstance(exc, ValueError):
                raise CLIError(
                    f"cannot load {src}: {type(exc).__name__}: {exc}. Is it a complete joblib "
                    f"file or pickle? Try '{PROG} inspect {src}'") from None
            raise CLIError(f"{src} needs a module that is not installed here ({exc}); install "
                           "it in this environment and retry") from None
        except Exception as exc:
            if getattr(exc, "fastjoblib_format", None):  # not a pickle: load named the format
                raise CLIError(f"cannot load {exc}") from None
            raise CLIError(
                f"cannot load {src}: {type(exc).__name__}: {exc}. Is it a complete joblib file "
                f"or pickle? Try '{PROG} inspect {src}'") from None
    _show_warnings(caught)
    t1 = time.perf_counter()
    try:
        fastjoblib.dump(obj, dst, compress=compress, protocol=args.protocol,
                        threads=args.threads, durable=args.durable)
    except (OSError, ValueError, TypeError, ImportError) as exc:
        raise CLIError(f"cannot write {dst}: {exc}") from None
    except Exception as exc:
        raise CLIError(f"cannot write {dst}: {type(exc).__name__}: {exc}") from None
    t2 = time.perf_counter()
    del obj
    out_size = os.path.getsize(dst)
    out_kind = _container_of(dst)
    ratio = f"{out_size / in_size:.1%} of input" if in_size else ""
    out.write(f"{src}: {human_size(in_size)} ({in_kind}) -> {dst}: {human_size(out_size)} "
              f"({out_kind}{', ' + ratio if ratio else ''}); load {t1 - t0:.3f} s, "
              f"dump {t2 - t1:.3f} s\n")
    return 0


# ------------------------------------------------------------------------------------------------
# bench


def cmd_bench(args: argparse.Namespace, out: TextIO) -> int:
    from . import _bench

    argv = getattr(args, "argv", None)
    try:
        return _bench.run_command(args, out, f"{PROG} bench", argv)
    except _bench.BenchError as exc:
        raise CLIError(str(exc)) from None


# ------------------------------------------------------------------------------------------------
# parser and entry point


def build_parser() -> argparse.ArgumentParser:
    from ._compressors import CODEC_NAMES

    p = _Parser(
        prog=PROG,
        description="fastjoblib: fast, joblib-compatible dump/load. Inspect files without "
                    "loading them, convert between joblib formats and compressors, benchmark.",
        epilog="Exit status: 0 success, 1 error (message on stderr).")
    p.add_argument("--traceback", action="store_true",
                   help="on an error, show the Python traceback too")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    pi = sub.add_parser(
        "inspect", help="describe a joblib file or pickle without loading it",
        description="Describe a joblib file or pickle stream (any compressor, old formats) "
                    "WITHOUT importing or running anything from it: container, protocol, "
                    "format generation, globals it names (dangerous ones flagged), array "
                    "records (dtype, shape, order, offset, nbytes, memory-mappable), versions.")
    pi.add_argument("file", metavar="FILE", help="the file ('-': read standard input)")
    mode = pi.add_mutually_exclusive_group()
    mode.add_argument("--json", action="store_true", help="print the full report as JSON")
    mode.add_argument("--trusted", action="store_true",
                      help="print the trusted=[...] list the file needs beyond the default "
                           "trusted set, as a Python list literal (review it before use); "
                           "exits 1 if the file also names dangerous globals")
    pi.add_argument("--arrays", action="store_true",
                    help="list every array record (the first screen shows the largest few)")
    pi.set_defaults(func=cmd_inspect)

    pc = sub.add_parser(
        "convert", help="rewrite a joblib file / pickle with another compressor or protocol",
        description="Load IN (any joblib file, any compressor, old formats, or a plain "
                    "pickle) and write it to OUT in joblib's format, readable by stock "
                    "joblib.load ('.zst' after fastjoblib.register_zstd_with_joblib()). IN may "
                    "equal OUT: the input is fully loaded first and OUT is replaced atomically. "
                    "Loading runs code the file names, exactly like joblib.load: convert only "
                    "files you trust (check them with 'inspect' first).")
    pc.add_argument("input", metavar="IN")
    pc.add_argument("output", metavar="OUT")
    pc.add_argument("--compress", metavar="NAME[:LEVEL]",
                    help=f"{', '.join(CODEC_NAMES[:-1])} or {CODEC_NAMES[-1]}, optionally with a "
                         "level 0-9 (zstd:3); a bare LEVEL uses OUT's extension's method (zlib "
                         "otherwise); 'none' writes uncompressed whatever the extension. "
                         "Default: inferred from OUT's extension, as joblib.dump does")
    pc.add_argument("--threads", type=int, metavar="N",
                    help="compression threads (default: all cores)")
    pc.add_argument("--protocol", type=int, metavar="P",
                    help="pickle protocol (default: pickle.DEFAULT_PROTOCOL)")
    pc.add_argument("--durable", action="store_true",
                    help="fsync OUT before it replaces the old file and its directory after, "
                         "so that OUT survives a power cut once convert returns (default: "
                         "left to the kernel's writeback, like joblib)")
    pc.set_defaults(func=cmd_convert)

    pb = sub.add_parser(
        "bench", help="time fastjoblib against pickle and joblib",
        description="Run the benchmark workloads (the README's table; benchmarks/ratios.py runs "
                    "the same definition) with fastjoblib, pickle and joblib (those installed), "
                    "interleaved in one process, and print ratios of medians and of peak "
                    "memory, with the machine, filesystem and versions. Numbers on a busy "
                    "machine are noisy.")
    from ._bench import add_arguments

    add_arguments(pb)
    pb.set_defaults(func=cmd_bench)
    return p


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "command", None) == "bench":
        shown = list(sys.argv[1:] if argv is None else argv)
        args.argv = shown[shown.index("bench") + 1:] if "bench" in shown else shown
    stream = out if out is not None else sys.stdout
    func: Callable[[argparse.Namespace, TextIO], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help(stream)
        return 1
    try:
        return func(args, stream)
    except CLIError as exc:
        if args.traceback:
            traceback.print_exc()
        print(f"fastjoblib {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"fastjoblib {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # stdout closed early (| head): not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
