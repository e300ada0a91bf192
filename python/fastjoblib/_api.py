"""The pickle-compatible API with the ``trusted=`` option on the reading side.

``dumps``/``dump_pickle``/``Pickler`` are the C core's own; ``loads``/``load_pickle``/``Unpickler``
add ``trusted=`` (see ``fastjoblib.load``) on top of the C core's signatures.
"""
import pickle

from . import _core


def _policy(trusted, max_bytes=None, source=None):
    if trusted is None or trusted is False:
        if max_bytes is not None:
            raise ValueError("max_bytes= bounds restricted loads: pass it with trusted=")
        return None
    from ._guard import input_size
    from ._trust import make_find_class
    policy = make_find_class(trusted, max_bytes=max_bytes)
    policy.budget_obj.set_input_size(input_size(source))
    return policy


def rereadable(source):
    """What the static inspector can read again after a refused restricted load: a path, a
    bytes-like object, or a seekable binary file (a reader rewinding it to where the load
    started); else None."""
    import os

    if isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)):
        return source  # (bytes: the data itself; _persist turns a bytes path into str first)
    try:
        if hasattr(source, "read") and source.seekable():
            return _Rewind(source, source.tell())
    except (AttributeError, OSError, ValueError):
        pass
    return None


class _Rewind:
    """A file object seen from a saved position (the inspector reads it after a failed load)."""

    def __init__(self, f, pos):
        self._f, self._pos = f, pos

    def source(self):
        self._f.seek(self._pos)
        return self._f


def explain_refusal(exc, policy, again):
    from ._trust import explain_refusal as explain

    if again is None:
        return exc
    if isinstance(again, _Rewind):
        try:
            again = again.source()
        except (OSError, ValueError):
            return exc
    return explain(exc, policy, again)


def _run(fn, source, policy, **kwargs):
    again = rereadable(source) if policy is not None else None
    try:
        try:
            obj = fn(source, find_class=policy, **kwargs)
        except pickle.UnpicklingError as exc:
            full = explain_refusal(exc, policy, again) if again is not None else exc
            if full is exc:
                raise
            raise full from None
        except MemoryError as exc:
            if policy is not None:
                from ._guard import reraise_budget
                reraise_budget(policy, exc)
            raise
        if policy is not None:
            policy.finish()
        return obj
    finally:
        if policy is not None:
            from ._guard import release
            release(policy)


def loads(data, /, *, fix_imports=True, encoding="ASCII", errors="strict", buffers=None,
          trusted=None, max_bytes=None):
    """Like ``pickle.loads``; ``trusted=`` restricts what the stream may import and do
    (docs/SECURITY.md), ``max_bytes=`` bounds the memory it may take under ``trusted=``."""
    return _run(_core.loads, data, _policy(trusted, max_bytes, data), fix_imports=fix_imports,
                encoding=encoding, errors=errors, buffers=buffers)


def load_pickle(file, /, *, fix_imports=True, encoding="ASCII", errors="strict", buffers=None,
                trusted=None, max_bytes=None):
    """Like ``pickle.load``; ``trusted=`` and ``max_bytes=`` as in ``loads``."""
    return _run(_core.load_pickle, file, _policy(trusted, max_bytes, file),
                fix_imports=fix_imports, encoding=encoding, errors=errors, buffers=buffers)


class Unpickler(_core.Unpickler):
    """Like ``pickle.Unpickler``; ``trusted=`` restricts the globals the stream may import.

    Subclasses may still override ``find_class`` / ``persistent_load`` as with stdlib pickle.
    """

    def __init__(self, file, *, fix_imports=True, encoding="ASCII", errors="strict",
                 buffers=None, trusted=None):
        super().__init__(file, fix_imports=fix_imports, encoding=encoding, errors=errors,
                         buffers=buffers)
        policy = _policy(trusted)
        if policy is not None:
            self.find_class = policy

    def load(self):
        policy = getattr(self, "find_class", None)
        guarded = getattr(policy, "budget_obj", None) is not None
        try:
            try:
                obj = super().load()
            except MemoryError as exc:
                if guarded:
                    from ._guard import reraise_budget
                    reraise_budget(policy, exc)
                raise
            if guarded:
                policy.finish()
            return obj
        finally:
            if guarded:
                from ._guard import release
                release(policy, objects=False)
