"""fastjoblib: fast, joblib-compatible persistence with a C pickler and unpickler.

``dump``/``load`` are drop-in replacements for ``joblib.dump``/``joblib.load`` (same files, both
ways); ``dumps``/``loads``/``Pickler``/``Unpickler``/``dump_pickle``/``load_pickle`` produce and
read plain pickle streams with the same C engine.

Importing the package is cheap: the C core (and numpy with it) is loaded on first use.
"""
from pickle import PicklingError, UnpicklingError

from ._persist import dump, load
from ._provenance import VersionMismatchWarning

__version__ = "0.1.0"

__all__ = [
    "dump", "load", "dumps", "loads", "Pickler", "Unpickler", "dump_pickle", "load_pickle",
    "PicklingError", "UnpicklingError", "UntrustedGlobalError", "BudgetExceededError",
    "VersionMismatchWarning", "inspect", "register_zstd_with_joblib", "register_memory_backend",
    "__version__",
]

_FROM_CORE = ("dumps", "Pickler", "dump_pickle")
_FROM_API = ("loads", "Unpickler", "load_pickle")


def __getattr__(name):
    if name in _FROM_CORE:
        from . import _core

        value = getattr(_core, name)
    elif name in _FROM_API:
        from . import _api

        value = getattr(_api, name)
    elif name == "UntrustedGlobalError":
        from ._trust import UntrustedGlobalError as value
    elif name == "BudgetExceededError":
        from ._guard import BudgetExceededError as value
    elif name == "inspect":
        from ._inspect import inspect as value
    elif name == "register_zstd_with_joblib":
        try:
            from . import _zstd_joblib
        except ImportError as exc:
            raise AttributeError(
                "fastjoblib.register_zstd_with_joblib is not available: %s" % exc) from None
        value = _zstd_joblib.register_zstd_with_joblib
    elif name == "register_memory_backend":
        try:
            from ._memory import register_memory_backend as value
        except ImportError as exc:
            raise ImportError(
                "fastjoblib.register_memory_backend needs joblib (pip install joblib): %s"
                % exc) from exc
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
