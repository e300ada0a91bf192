"""Type stub for the public API of fastjoblib (the package imports its C core lazily, through a
module __getattr__, which type checkers cannot follow). Checked against the runtime by
tests/test_typing.py (mypy.stubtest)."""
import os
from pickle import PicklingError as PicklingError, UnpicklingError as UnpicklingError
from typing import IO, Any, Callable, Iterable, Literal, overload

from _typeshed import SupportsWrite

from ._api import Unpickler as Unpickler, load_pickle as load_pickle, loads as loads
from ._core import (
    Pickler as Pickler,
    _Codec,
    _ReadableFileobj,
    dump_pickle as dump_pickle,
    dumps as dumps,
)
from ._provenance import VersionMismatchWarning as VersionMismatchWarning
from ._guard import BudgetExceededError as BudgetExceededError
from ._trust import UntrustedGlobalError as UntrustedGlobalError

__version__: str
__all__ = [
    "dump", "load", "dumps", "loads", "Pickler", "Unpickler", "dump_pickle", "load_pickle",
    "PicklingError", "UnpicklingError", "UntrustedGlobalError", "BudgetExceededError",
    "VersionMismatchWarning", "inspect", "register_zstd_with_joblib", "register_memory_backend",
    "__version__",
]

_Trusted = bool | Iterable[str] | None
_Progress = bool | Callable[[int, int | None], object] | None

_Compress = (
    int
    | bool
    | None
    | _Codec
    | str
    | tuple[str, int | None]
)
_MmapMode = Literal["r", "r+", "w+", "c", "readonly", "readwrite", "write", "copyonwrite"]

@overload
def dump(
    value: Any,
    filename: str | os.PathLike[str],
    compress: _Compress = 0,
    protocol: int | None = None,
    *,
    threads: int | None = None,
    progress: _Progress = None,
    provenance: bool = True,
    durable: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> list[str]: ...
@overload
def dump(
    value: Any,
    filename: SupportsWrite[bytes],
    compress: _Compress = 0,
    protocol: int | None = None,
    *,
    threads: int | None = None,
    progress: _Progress = None,
    provenance: bool = True,
    durable: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> None: ...
def load(
    filename: str | bytes | os.PathLike[str] | os.PathLike[bytes] | int | IO[bytes] | _ReadableFileobj,
    mmap_mode: _MmapMode | None = None,
    ensure_native_byte_order: bool | Literal["auto"] = "auto",
    *,
    trusted: _Trusted = None,
    progress: _Progress = None,
    max_bytes: int | None = None,
    storage_options: dict[str, Any] | None = None,
) -> Any: ...
def inspect(source: Any, max_bytes: int | None = None) -> dict[str, Any]: ...

def register_zstd_with_joblib(force: bool = False) -> bool: ...
def register_memory_backend(name: str = "fastjoblib") -> type[Any]: ...
