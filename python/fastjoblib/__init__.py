"""fastjoblib: fast, joblib-compatible persistence with a C pickler and unpickler."""
from . import _core  # noqa: F401

__version__ = "0.1.0"
