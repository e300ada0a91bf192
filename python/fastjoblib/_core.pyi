"""Type stub for fastjoblib._core, the C extension (see docs/ARCHITECTURE.md, "The _core contract").

Checked against the compiled module by tests/test_typing.py (mypy.stubtest) so that it cannot drift.
"""
import os
from collections.abc import Callable, Iterable, Mapping
from pickle import PickleBuffer
from typing import Any, Literal, Protocol, type_check_only

from _typeshed import ReadableBuffer, SupportsWrite
from typing_extensions import disjoint_base

@type_check_only
class _ReadableFileobj(Protocol):
    def read(self, n: int, /) -> bytes: ...
    def readline(self) -> bytes: ...

_BufferCallback = Callable[[PickleBuffer], Any] | None
_ReducedType = str | tuple[Any, ...]
# the codec names: fastjoblib._compressors.REGISTRY's, in its order (tests/test_registry.py)
_Codec = Literal["zlib", "gzip", "bz2", "lzma", "xz", "lz4", "zstd"]

# joblib format (NumpyArrayWrapper records for arrays)

def dump(
    obj: object,
    file: int | SupportsWrite[bytes],
    protocol: int,
    *,
    codec: _Codec | str | None = None,
    level: int = -1,
    threads: int = 0,
    progress: Callable[[int, int | None], object] | None = None,
    trailer: Callable[[frozenset[str]], dict[str, str]] | None = None,
    reducers: dict[type, Callable[[Any], Any]] | None = None,
    global_names: dict[Any, tuple[str, str]] | None = None,
) -> None: ...
def load(
    file: int | _ReadableFileobj | ReadableBuffer,
    *,
    mmap_mode: Literal["r", "r+", "c"] | None = None,
    filename: str | None = None,
    ensure_native: bool = False,
    codec: _Codec | str | None = None,
    find_class: Callable[[str, str], Any] | None = None,
    progress: Callable[[int, int | None], object] | None = None,
    trailer: list[Any] | None = None,
    replace_globals: dict[tuple[str, str], Any] | None = None,
    size: int = -1,
) -> Any: ...

# plain pickle streams (stdlib-compatible signatures)

def dumps(
    obj: object,
    protocol: int | None = None,
    *,
    fix_imports: bool = True,
    buffer_callback: _BufferCallback = None,
) -> bytes: ...
def loads(
    data: ReadableBuffer,
    /,
    *,
    fix_imports: bool = True,
    encoding: str = "ASCII",
    errors: str = "strict",
    buffers: Iterable[Any] | None = None,
    find_class: Callable[[str, str], Any] | None = None,
) -> Any: ...
def dump_pickle(
    obj: object,
    file: int | SupportsWrite[bytes],
    protocol: int | None = None,
    *,
    fix_imports: bool = True,
    buffer_callback: _BufferCallback = None,
) -> None: ...
def load_pickle(
    file: int | _ReadableFileobj,
    /,
    *,
    fix_imports: bool = True,
    encoding: str = "ASCII",
    errors: str = "strict",
    buffers: Iterable[Any] | None = None,
    find_class: Callable[[str, str], Any] | None = None,
) -> Any: ...

@disjoint_base
class Pickler:
    bin: int
    fast: bool
    protocol: int
    dispatch_table: Mapping[type, Callable[[Any], _ReducedType]]
    # Unset by default (AttributeError); a callable obj -> reduce value / NotImplemented, or a
    # subclass method. As in stdlib, anything else assigned (None included) fails with TypeError.
    reducer_override: Callable[[Any], Any]
    # Unset by default (AttributeError); a subclass may define it as a method obj -> pid | None.
    persistent_id: Callable[[Any], Any]
    def __init__(
        self,
        file: SupportsWrite[bytes],
        protocol: int | None = None,
        *,
        fix_imports: bool = True,
        buffer_callback: _BufferCallback = None,
    ) -> None: ...
    # a live proxy of the memo (copy() gives {id(obj): (index, obj)}); assignable
    memo: Any
    def dump(self, obj: Any, /) -> None: ...
    def clear_memo(self) -> None: ...

@disjoint_base
class Unpickler:
    # A subclass (or instance) may define persistent_load(self, pid) -> Any.
    def __init__(
        self,
        file: _ReadableFileobj,
        *,
        fix_imports: bool = True,
        encoding: str = "ASCII",
        errors: str = "strict",
        buffers: Iterable[Any] | None = None,
    ) -> None: ...
    # a live proxy of the memo (copy() gives {index: obj}); assignable
    memo: Any
    def load(self) -> Any: ...
    def find_class(self, module_name: str, global_name: str, /) -> Any: ...

# codec test entry points

def _exchange(a: str | bytes | os.PathLike[str] | os.PathLike[bytes], b: str | bytes | os.PathLike[str] | os.PathLike[bytes], /) -> None: ...
def _compress(name: str, data: ReadableBuffer, level: int = -1, threads: int = 0, chunk: int = 0) -> bytes: ...
def _decompress(name: str, data: ReadableBuffer, chunk: int = 0, inner_chunk: int = 0, threads: int = 0) -> bytes: ...
def _ispec_stats() -> dict[str, int]: ...
def _codec_open(name: str, file: _ReadableFileobj, threads: int = 1) -> Any: ...
def _codec_read(reader: Any, n: int, /) -> bytes: ...
def _budget(limit: int, /) -> Any: ...
def _budget_charge(budget: Any, nbytes: int, /) -> None: ...
def _budget_state(budget: Any, /) -> tuple[int, int, int, int]: ...
def _budget_set_limit(budget: Any, limit: int, /) -> None: ...
def _dunder_key(d: dict[Any, Any], /) -> str | None: ...
