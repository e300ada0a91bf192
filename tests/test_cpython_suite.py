"""CPython's own pickle test suite (test.pickletester) run against fastjoblib's C engine.

The abstract classes are the ones CPython's Lib/test/test_pickle.py binds to `_pickle` and to the
pure-Python `pickle._Pickler`; here they are bound to `fastjoblib.Pickler` / `Unpickler` /
`dumps` / `loads` / `dump_pickle` / `load_pickle`, in both directions against stdlib pickle too.
Divergences we accept are listed in KNOWN_DIVERGENCES with the reason, and are not skipped silently:
they run as strict xfails, so a fix makes them fail loudly until the entry is removed.
"""
import collections
import io
import pickle
import struct

import pytest

try:
    from test import pickletester as pt
except ImportError:  # pragma: no cover - some distributions strip the test package
    pytest.skip("CPython's test.pickletester is not installed", allow_module_level=True)

import unittest

from fastjoblib import _core

# test name -> reason. Keep this list short and honest.
KNOWN_DIVERGENCES = {
}




def _mark_divergences(cls):
    for name, reason in KNOWN_DIVERGENCES.items():
        owner, _, test = name.rpartition(".")
        if owner in ("", cls.__name__) and hasattr(cls, test):
            orig = getattr(cls, test)
            setattr(cls, test, unittest.expectedFailure(orig))
    return cls


def _bytes_dumps(pickler_cls):
    def dumps(self, arg, proto=None, **kwargs):
        f = io.BytesIO()
        p = pickler_cls(f, proto, **kwargs)
        p.dump(arg)
        f.seek(0)
        return bytes(f.read())
    return dumps


def _bytes_loads(unpickler_cls):
    def loads(self, buf, **kwds):
        f = io.BytesIO(buf)
        u = unpickler_cls(f, **kwds)
        return u.load()
    return loads


TRUNCATED = (pickle.UnpicklingError, EOFError, AttributeError, ValueError, struct.error,
             IndexError, ImportError)


@_mark_divergences
class FJPickleModuleTests(pt.AbstractPickleModuleTests, unittest.TestCase):
    dump = staticmethod(_core.dump_pickle)
    dumps = staticmethod(_core.dumps)
    load = staticmethod(_core.load_pickle)
    loads = staticmethod(_core.loads)
    Pickler = _core.Pickler
    Unpickler = _core.Unpickler


@_mark_divergences
class FJUnpicklerTests(pt.AbstractUnpickleTests, unittest.TestCase):
    unpickler = _core.Unpickler
    bad_stack_errors = (pickle.UnpicklingError, IndexError)
    truncated_errors = TRUNCATED
    loads = _bytes_loads(_core.Unpickler)


@_mark_divergences
class FJPicklerTests(pt.AbstractPickleTests, unittest.TestCase):
    pickler = _core.Pickler
    unpickler = _core.Unpickler
    dumps = _bytes_dumps(_core.Pickler)
    loads = _bytes_loads(_core.Unpickler)


@_mark_divergences
class FJInMemoryTests(pt.AbstractPickleTests, pt.AbstractUnpickleTests, unittest.TestCase):
    """dumps()/loads() (no file object): the in-memory fast paths."""
    bad_stack_errors = (pickle.UnpicklingError, IndexError)
    truncated_errors = TRUNCATED

    def dumps(self, arg, protocol=None, **kwargs):
        return _core.dumps(arg, protocol, **kwargs)

    def loads(self, buf, **kwds):
        return _core.loads(buf, **kwds)

    # as stdlib's own InMemoryPickleTests: these need an Unpickler class (FJUnpicklerTests has them)
    test_framed_write_sizes_with_delayed_writer = None
    test_find_class = None
    test_custom_find_class = None


# 3.13+: the pickler's error types and texts; on 3.14 also the exception notes ("when serializing
# list item 1") attached to nested failures and the reworded reduce-protocol errors (pyver.h
# FJ_PICKLE_NOTES / FJ_PICKLE_314_ERRORS).
if hasattr(pt, "AbstractPicklingErrorTests"):
    @_mark_divergences
    class FJPicklingErrorTests(pt.AbstractPicklingErrorTests, unittest.TestCase):
        pickler = _core.Pickler
        dumps = _bytes_dumps(_core.Pickler)

    @_mark_divergences
    class FJPicklingErrorTestsInMemory(pt.AbstractPicklingErrorTests, unittest.TestCase):
        """dumps() (no file object)."""
        pickler = _core.Pickler

        def dumps(self, arg, protocol=None, **kwargs):
            return _core.dumps(arg, protocol, **kwargs)


@_mark_divergences
class FJDump_StdlibLoad(pt.AbstractPickleTests, unittest.TestCase):
    """fastjoblib writes, stdlib's C unpickler reads."""
    pickler = _core.Pickler
    unpickler = pickle.Unpickler
    dumps = _bytes_dumps(_core.Pickler)
    loads = _bytes_loads(pickle.Unpickler)


@_mark_divergences
class StdlibDump_FJLoad(pt.AbstractPickleTests, unittest.TestCase):
    """stdlib's C pickler writes, fastjoblib reads."""
    pickler = pickle.Pickler
    unpickler = _core.Unpickler
    dumps = _bytes_dumps(pickle.Pickler)
    loads = _bytes_loads(_core.Unpickler)


class _PersMixin:
    def dumps(self, arg, proto=None):
        class PersPickler(self.pickler):
            def persistent_id(subself, obj):
                return self.persistent_id(obj)
        f = io.BytesIO()
        p = PersPickler(f, proto)
        p.dump(arg)
        return f.getvalue()

    def loads(self, buf, **kwds):
        class PersUnpickler(self.unpickler):
            def persistent_load(subself, obj):
                return self.persistent_load(obj)
        f = io.BytesIO(buf)
        u = PersUnpickler(f, **kwds)
        return u.load()


@_mark_divergences
class FJPersPicklerTests(pt.AbstractPersistentPicklerTests, _PersMixin, unittest.TestCase):
    pickler = _core.Pickler
    unpickler = _core.Unpickler


@_mark_divergences
class FJIdPersPicklerTests(pt.AbstractIdentityPersistentPicklerTests, _PersMixin,
                           unittest.TestCase):
    pickler = _core.Pickler
    unpickler = _core.Unpickler


@_mark_divergences
class FJPicklerUnpicklerObjectTests(pt.AbstractPicklerUnpicklerObjectTests, unittest.TestCase):
    pickler_class = _core.Pickler
    unpickler_class = _core.Unpickler


@_mark_divergences
class FJDispatchTableTests(pt.AbstractDispatchTableTests, unittest.TestCase):
    pickler_class = _core.Pickler

    def get_dispatch_table(self):
        return pickle.dispatch_table.copy()


@_mark_divergences
class FJChainDispatchTableTests(pt.AbstractDispatchTableTests, unittest.TestCase):
    pickler_class = _core.Pickler

    def get_dispatch_table(self):
        return collections.ChainMap({}, pickle.dispatch_table)


@_mark_divergences
class FJPicklerHookTests(pt.AbstractHookTests, unittest.TestCase):
    class CustomFJPicklerClass(_core.Pickler, pt.AbstractCustomPicklerClass):
        pass
    pickler_class = CustomFJPicklerClass
