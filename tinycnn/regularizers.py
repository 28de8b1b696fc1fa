"""Weight penalties, with Keras 3's names, defaults and formulas.

A regularizer is given to a layer, `Dense(64, kernel_regularizer=L2(0.01))`, and the model adds
its penalty on that weight to the loss, and the penalty's gradient to the weight's gradient:

    L1(l1=0.01)              penalty = l1 * sum |w|                 gradient = l1 * sign(w)
    L2(l2=0.01)              penalty = l2 * sum w^2  (no 1/2)       gradient = 2 * l2 * w
    L1L2(l1=0.0, l2=0.0)     the sum of both

`l1`, `l2` and `l1_l2` are the same classes under Keras 3's lower-case names. By name, as
Keras 3: get('l1') = L1(), get('l2') = L2(), get('l1l2') = L1L2() (Keras 3 does not know the
string 'l1_l2', and neither does tinycnn).
"""
import math

import numpy as np

from .utils import Configurable


def _factor(value, arg, owner):
    """A penalty factor: a finite number >= 0 (None means the default, as in Keras)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{owner}: {arg} must be a non-negative number; received {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{owner}: {arg} must be a finite non-negative number; received {arg}={value!r}")
    return float(value)


class Regularizer(Configurable):
    """Base class: __call__(w) -> the penalty (a float), gradient(w) -> d penalty / dw (w's shape)."""

    def __call__(self, w):
        return 0.0

    def gradient(self, w):
        return np.zeros_like(w)


class L1L2(Regularizer):
    """l1 * sum |w| + l2 * sum w^2."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _factor(0.0 if l1 is None else l1, "l1", type(self).__name__)
        self.l2 = _factor(0.0 if l2 is None else l2, "l2", type(self).__name__)

    def __call__(self, w):
        w = np.asarray(w, dtype=np.float64)             # the sum in float64: a float32 sum drifts on large kernels
        return self.l1 * float(np.abs(w).sum()) + self.l2 * float(np.square(w).sum())

    def gradient(self, w):
        w = np.asarray(w)
        return (self.l1 * np.sign(w) + 2 * self.l2 * w).astype(w.dtype)    # sign(0) = 0: |w|'s subgradient at 0

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    """l1 * sum |w|."""

    def __init__(self, l1=0.01):
        super().__init__(l1=0.01 if l1 is None else l1)

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    """l2 * sum w^2."""

    def __init__(self, l2=0.01):
        super().__init__(l2=0.01 if l2 is None else l2)

    def get_config(self):
        return {"l2": self.l2}


l1, l2, l1_l2 = L1, L2, L1L2          # Keras 3 exports the classes under these names too

NAMES = {"L1": L1, "l1": L1, "L2": L2, "l2": L2, "L1L2": L1L2, "l1l2": L1L2}


def get(identifier):
    """A regularizer from a name ('l2'), a class, a dict {'class_name': ..., 'config': {...}} or a
    Regularizer object (returned as it is); None -> None."""
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, dict):
        name, config = identifier.get("class_name"), identifier.get("config") or {}
        if isinstance(name, str) and name in NAMES and isinstance(config, dict):
            return NAMES[name].from_config(config)
    elif isinstance(identifier, str) and identifier in NAMES:
        return NAMES[identifier]()
    elif isinstance(identifier, type) and issubclass(identifier, Regularizer):
        return identifier()
    elif callable(identifier):
        raise TypeError(f"regularizer {identifier!r}: a plain function has no gradient; tinycnn needs a "
                        f"Regularizer object with __call__(w) and gradient(w) (subclass "
                        f"tinycnn.regularizers.Regularizer)")
    hint = " (Keras 3 does not accept it either: use L1L2(l1=..., l2=...))" if identifier == "l1_l2" else ""
    raise ValueError(f"Could not interpret regularizer identifier {identifier!r}{hint}; expected None, a "
                     f"Regularizer object, or one of the names {', '.join(map(repr, NAMES))}")
