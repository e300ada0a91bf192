from typing import Any, Iterable

from _typeshed import ReadableBuffer

from ._core import Unpickler as _CoreUnpickler, _ReadableFileobj

_Trusted = bool | Iterable[str] | None

def loads(
    data: ReadableBuffer, /, *, fix_imports: bool = True, encoding: str = "ASCII",
    errors: str = "strict", buffers: Iterable[Any] | None = None, trusted: _Trusted = None,
    max_bytes: int | None = None,
) -> Any: ...
def load_pickle(
    file: int | _ReadableFileobj, /, *, fix_imports: bool = True, encoding: str = "ASCII",
    errors: str = "strict", buffers: Iterable[Any] | None = None, trusted: _Trusted = None,
    max_bytes: int | None = None,
) -> Any: ...

class Unpickler(_CoreUnpickler):
    def __init__(
        self, file: _ReadableFileobj, *, fix_imports: bool = True, encoding: str = "ASCII",
        errors: str = "strict", buffers: Iterable[Any] | None = None, trusted: _Trusted = None,
    ) -> None: ...
