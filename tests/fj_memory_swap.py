"""pytest plugin (``-p fj_memory_swap``): joblib's local Memory store backend replaced by
fastjoblib's (python/fastjoblib/_memory.py) before joblib's own test modules are imported, so
that ``joblib/test/test_memory.py`` and ``test_store_backends.py`` run against it. Used by
tests/test_joblib_memory_suite.py."""
import joblib._store_backends
import joblib.memory

from fastjoblib._memory import _backend_class

FastjoblibStoreBackend = _backend_class()
joblib.memory._STORE_BACKENDS["local"] = FastjoblibStoreBackend
joblib._store_backends.FileSystemStoreBackend = FastjoblibStoreBackend
joblib.memory.FileSystemStoreBackend = FastjoblibStoreBackend


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line("joblib Memory store backend: %s.%s" % (
        joblib.memory._STORE_BACKENDS["local"].__module__,
        joblib.memory._STORE_BACKENDS["local"].__name__))
