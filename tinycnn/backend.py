"""Which kernels the layers call: the NumPy reference, or the Numba fast path.

A layer computes with plain functions of a kernel module, reached through `K`:

    from ..backend import K
    z, saved = K.conv2d_forward(x, w, b, strides, pads)

`K` forwards each name to the active backend: `tinycnn.kernels.numpy_ops` (the reference,
written to be read) or `tinycnn.kernels.numba_ops` (the same functions with the same
signatures, compiled). A model also asks the backend how to run its layers
(`build_plan`): the reference runs each layer's forward and backward in turn; the fast
backend may fuse neighbouring layers and split the batch across cores (see
tinycnn/kernels/numba_ops/plan.py), and is tested against the reference.

    tinycnn.set_backend("numpy")        # or "numba"
    tinycnn.get_backend()               # -> "numpy"
    TINYCNN_BACKEND=numpy python ...     # the same, from the environment

By default tinycnn uses Numba when it can. If numba is missing or does not work, it runs on
the NumPy backend and says why, once. Nothing is imported or changed until a kernel is needed.
"""
import contextlib
import importlib
import os
import sys
import warnings

from .utils import clear_session  # noqa: F401  (Keras has backend.clear_session())

BACKENDS = ("numba", "numpy")

_state = {"name": None, "module": None, "explicit": False}


class BackendUnavailableError(ImportError):
    """set_backend("numba") where numba cannot be imported or does not work."""

    def __init__(self, reason, hint):
        super().__init__(f"{reason}. {hint}")
        self.reason = reason


class KernelCompileError(RuntimeError):
    """The fast backend could not compile a kernel (a numba or LLVM failure, not a user error)."""


def _check(name):
    if not isinstance(name, str) or name.lower() not in BACKENDS:
        raise ValueError(f"unknown tinycnn backend {name!r}; expected one of {', '.join(map(repr, BACKENDS))}")
    return name.lower()


def _load(name):
    """The kernel module of a backend, or BackendUnavailableError saying why it cannot load."""
    if name == "numpy":
        return importlib.import_module("tinycnn.kernels.numpy_ops")
    try:
        return importlib.import_module("tinycnn.kernels.numba_ops")
    except Exception as err:        # ImportError, or numba failing on an incompatible NumPy or LLVM
        raise BackendUnavailableError(
            f"the numba backend is unavailable: {type(err).__name__}: {err}",
            "Install numba (pip install numba) for the fast path, or use tinycnn.set_backend('numpy')") from err


def set_backend(name):
    """Choose the kernels every layer uses from now on: "numba" or "numpy"."""
    name = _check(name)
    _state.update(name=name, module=_load(name), explicit=True)


def get_backend():
    """The name of the active backend: "numba" or "numpy"."""
    return _active()[0]


def _active():
    if _state["module"] is None:
        setting = os.environ.get("TINYCNN_BACKEND", "").strip()
        if setting:
            try:
                set_backend(setting)
            except ValueError as err:
                raise ValueError(f"TINYCNN_BACKEND: {err}") from None
        else:
            try:
                _state.update(name="numba", module=_load("numba"), explicit=False)
            except BackendUnavailableError as err:
                fall_back(err.reason)
    return _state["name"], _state["module"]


def fall_back(reason):
    """Run on the NumPy backend from now on, after the default fast backend failed; warns once."""
    warnings.warn(f"tinycnn: {reason}. Running on the NumPy backend, about 5x slower. For the fast path, "
                  f"install a numba that works with this Python and NumPy (pip install numba); "
                  f"to choose NumPy and silence this, set TINYCNN_BACKEND=numpy or call "
                  f"tinycnn.set_backend('numpy').", RuntimeWarning, stacklevel=_caller_level())
    _state.update(name="numpy", module=_load("numpy"), explicit=False)


def _caller_level():
    """The stacklevel that points a warning at the first frame outside tinycnn (the user's line)."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        frame, level = frame.f_back, level + 1
    return level


def explicit():
    """True if the user chose the backend (set_backend or TINYCNN_BACKEND), not tinycnn's default."""
    _active()
    return _state["explicit"]


def module():
    """The active kernel module (numpy_ops or numba_ops)."""
    return _active()[1]


@contextlib.contextmanager
def using(name):
    """Run a block on one backend, then restore the previous one: `with using("numpy"): ...`."""
    previous = dict(_state) if _state["module"] is not None else None
    set_backend(name)
    try:
        yield
    finally:
        if previous is None:
            _state.update(name=None, module=None, explicit=False)
        else:
            _state.update(previous)


class _Kernels:
    """K.name is the active backend's function `name`: K.conv2d_forward, K.maxpool_backward, ..."""

    def __getattr__(self, name):
        return getattr(module(), name)

    def __repr__(self):
        return f"<tinycnn kernels: {get_backend()}>"


K = _Kernels()


def build_plan(layers, input_grad=False):
    """How the active backend runs these layers: a plan with forward(x, training) and backward(dout).
    input_grad: backward must return dL/d(input), as a stage inside a graph needs."""
    return module().build_plan(layers, input_grad=input_grad)
