"""The pickle-compatible API with the ``trusted=`` option on the reading side.

``dumps``/``dump_pickle``/``Pickler`` are the C core's own; ``loads``/``load_pickle``/``Unpickler``
add ``trusted=`` (see ``fastjoblib.load``) on top of the C core's signatures.
"""
from . import _core


def _policy(trusted):
    if trusted is None or trusted is False:
        return None
    from ._trust import make_find_class
    return make_find_class(trusted)


def loads(data, /, *, fix_imports=True, encoding="ASCII", errors="strict", buffers=None,
          trusted=None):
    """Like ``pickle.loads``; ``trusted=`` restricts the globals the stream may import."""
    return _core.loads(data, fix_imports=fix_imports, encoding=encoding, errors=errors,
                       buffers=buffers, find_class=_policy(trusted))


def load_pickle(file, /, *, fix_imports=True, encoding="ASCII", errors="strict", buffers=None,
                trusted=None):
    """Like ``pickle.load``; ``trusted=`` restricts the globals the stream may import."""
    return _core.load_pickle(file, fix_imports=fix_imports, encoding=encoding, errors=errors,
                             buffers=buffers, find_class=_policy(trusted))


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
