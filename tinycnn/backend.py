"""The backend switch: which module computes the kernels.

Layers never compute convolutions or pooling themselves: they call `ops().conv2d_forward(...)`
and friends. `ops()` returns `tinycnn.kernels.numpy_ops` (the readable reference) or
`tinycnn.kernels.numba_ops` (compiled, same functions, same signatures). Switching backend
swaps only those functions; the layer classes stay the same.

    tinycnn.set_backend("numpy")     # or "numba" (the default)
    tinycnn.get_backend()            # -> "numpy"
    TINYCNN_BACKEND=numpy python ...  # the same, from the environment
"""
import importlib
import os

from .utils import clear_session  # noqa: F401  (Keras has backend.clear_session())

BACKENDS = ("numba", "numpy")
DEFAULT_BACKEND = "numba"

_current = None
_module = None


def _check(name):
    if not isinstance(name, str) or name.lower() not in BACKENDS:
        raise ValueError(f"unknown tinycnn backend {name!r}; expected one of {', '.join(map(repr, BACKENDS))}")
    return name.lower()


def set_backend(name):
    """Choose the kernels every layer uses from now on: "numba" or "numpy"."""
    global _current, _module
    name = _check(name)
    _module = importlib.import_module(f"tinycnn.kernels.{name}_ops")
    _current = name


def get_backend():
    """The name of the active backend: "numba" or "numpy"."""
    if _current is None:
        _init_from_env()
    return _current


def ops():
    """The active kernel module (numpy_ops or numba_ops)."""
    if _module is None:
        _init_from_env()
    return _module


def _init_from_env():
    name = os.environ.get("TINYCNN_BACKEND", DEFAULT_BACKEND)
    try:
        name = _check(name)
    except ValueError as err:
        raise ValueError(f"TINYCNN_BACKEND: {err}") from None
    set_backend(name)
