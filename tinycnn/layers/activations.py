"""Activation functions, and the layers that apply them on their own.

Each activation is a pair: forward(z) -> a, and backward(da, kept) -> dz = da * f'(z), where
`kept` is what the layer kept from forward for it: the output a, or, for the few whose
derivative needs it (needs_z = True), the input z. So most layers keep only their output.

    through a = f(z):
    relu        a = max(z, 0)                dz = da * (a > 0)
    leaky_relu  a = z if z > 0 else s z      dz = da * (1 if a > 0 else s)   (s >= 0; "leaky_relu": s = 0.2)
    sigmoid     a = 1 / (1 + e^-z)           dz = da * a * (1 - a)
    tanh        a = tanh(z)                  dz = da * (1 - a^2)
    softplus    a = log(1 + e^z)             dz = da * (1 - e^-a)             (= da * sigmoid(z))
    softmax     a_i = e^z_i / sum e^z        dz = a * (da - sum(da * a))      (the Jacobian-vector product)
    linear      a = z                        dz = da
    through z (needs_z):
    elu         a = z if z > 0 else e^z - 1  dz = da * (1 if z > 0 else e^z)
    gelu        a = z * Phi(z)               dz = da * (Phi(z) + z * phi(z))  Phi, phi: N(0, 1)'s cdf and density,
                                                                              Phi(z) = erfc(-z / sqrt 2) / 2 (exact erf)
    silu/swish  a = z * s(z), s = sigmoid    dz = da * s * (1 + z * (1 - s))

Softmax's Jacobian rarely runs in training: followed by cross-entropy, the loss computes
dL/dz = (p - y) / N itself and hands it over as a LogitsGradient, which softmax's backward
passes on unchanged (see tinycnn.losses).
"""
import math
import warnings

import numpy as np

from .base import Layer, at_defaults


class LogitsGradient:
    """dL/dz for a softmax's input z, computed by the loss that follows it: (p - y) / N.

    A wrapper, not an array: only a softmax may receive it, and any other layer that did
    would fail loudly instead of treating it as dL/d(output).
    """

    def __init__(self, dz):
        self.dz = dz


class Function:
    """An activation function. needs_z = False: backward(da, a) gets the output; True: backward(da, z) the input."""
    name = None
    needs_z = False


class Linear(Function):
    name = "linear"

    def forward(self, z):
        return z

    def backward(self, da, a):
        return da


class Relu(Function):
    name = "relu"

    def forward(self, z):
        return np.maximum(z, 0)

    def backward(self, da, a):
        return da * (a > 0)                      # passes where the unit was active, stops elsewhere


class Sigmoid(Function):
    name = "sigmoid"

    def forward(self, z):
        return 0.5 * (1.0 + np.tanh(0.5 * z))   # = 1/(1+e^-z), without overflow for large |z|

    def backward(self, da, a):
        return da * a * (1 - a)


class Tanh(Function):
    name = "tanh"

    def forward(self, z):
        return np.tanh(z)

    def backward(self, da, a):
        return da * (1 - a * a)


class SoftmaxFn(Function):
    name = "softmax"

    def forward(self, z):
        with np.errstate(over="ignore"):                 # z - max may be -inf: exp gives 0, as it should
            e = np.exp(z - z.max(axis=-1, keepdims=True))   # shifting by the max keeps exp() <= 1
        return e / e.sum(axis=-1, keepdims=True)

    def backward(self, da, a):
        if isinstance(da, LogitsGradient):       # cross-entropy already took softmax's gradient
            return da.dz
        return a * (da - (da * a).sum(axis=-1, keepdims=True))


class LeakyRelu(Function):
    name = "leaky_relu"

    def __init__(self, negative_slope=0.2):
        self.negative_slope = negative_slope           # >= 0 (checked by LeakyReLU): then a > 0 exactly when z > 0

    def forward(self, z):
        return np.where(z > 0, z, z * self.negative_slope).astype(z.dtype)

    def backward(self, da, a):
        return da * np.where(a > 0, 1, self.negative_slope).astype(a.dtype)


class Softplus(Function):
    name = "softplus"

    def forward(self, z):
        return np.logaddexp(0, z)                      # log(1 + e^z) without overflow for large z

    def backward(self, da, a):
        return da * -np.expm1(-a)                      # 1 - e^-a = sigmoid(z), accurate for small a too


class Elu(Function):
    name, needs_z = "elu", True                        # e^z from a = e^z - 1 would lose digits near a = -1

    def forward(self, z):
        return np.where(z > 0, z, np.expm1(np.minimum(z, 0)))    # min: no overflow in the unused branch

    def backward(self, da, z):
        return da * np.where(z > 0, 1, np.exp(np.minimum(z, 0))).astype(z.dtype)


def _normal_cdf(z):
    """Phi(z) = erfc(-z / sqrt 2) / 2 in float64, with math.erfc elementwise: NumPy has no erf, and
    erfc keeps every digit in the left tail, where 1 + erf(z / sqrt 2) would cancel."""
    t = -np.asarray(z, dtype=np.float64) / math.sqrt(2)
    return 0.5 * np.fromiter(map(math.erfc, t.ravel().tolist()), np.float64, t.size).reshape(t.shape)


class Gelu(Function):
    name, needs_z = "gelu", True                       # the exact form, Keras 3's default (approximate=False)

    def forward(self, z):
        return (z * _normal_cdf(z)).astype(z.dtype)

    def backward(self, da, z):
        pdf = np.exp(-0.5 * np.square(z, dtype=np.float64)) / math.sqrt(2 * math.pi)     # phi(z)
        return da * (_normal_cdf(z) + z * pdf).astype(z.dtype)


def _sigmoid(z):
    """1 / (1 + e^-z), accurate for large |z| on both sides: e^-|z| never overflows."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1, e) / (1 + e)


class Silu(Function):
    name, needs_z = "silu", True

    def forward(self, z):
        return z * _sigmoid(z)

    def backward(self, da, z):
        s = _sigmoid(z)
        return da * s * (1 + z * (1 - s))


ACTIVATIONS = {"linear": Linear, "relu": Relu, "sigmoid": Sigmoid, "tanh": Tanh, "softmax": SoftmaxFn,
               "elu": Elu, "gelu": Gelu, "silu": Silu, "swish": Silu, "leaky_relu": LeakyRelu, "softplus": Softplus}


def get_activation(identifier, layer="activation"):
    """'relu' -> a Relu(); None -> Linear(). Unknown names get a clear ValueError."""
    if identifier is None:
        return Linear()
    if isinstance(identifier, str) and identifier.lower() in ACTIVATIONS:
        return ACTIVATIONS[identifier.lower()]()
    if isinstance(identifier, Function):
        return identifier
    raise ValueError(f"{layer}: unknown activation {identifier!r}; expected one of "
                     f"{', '.join(map(repr, ACTIVATIONS))} or None")


class Activation(Layer):
    """Applies an activation function: Activation('relu'), Activation('softmax'), ...

    Input shape: any. Output shape: the same.
    """

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = get_activation(activation, self)

    def get_config(self):
        return {**super().get_config(), "activation": self.activation.name}

    def forward(self, x, training=False):
        out = self.activation.forward(x)
        self.cache = (x if self.activation.needs_z else out) if training else None
        return out

    def backward(self, dout):
        return self.activation.backward(dout, self.cached())


class ReLU(Activation):
    """max(x, 0) as a layer."""

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__("relu", **kwargs)
        at_defaults(self, max_value=(max_value, None), negative_slope=(negative_slope, 0.0),
                    threshold=(threshold, 0.0))

    def get_config(self):
        config = {**super().get_config(), "max_value": None, "negative_slope": 0.0, "threshold": 0.0}
        del config["activation"]
        return config


class Softmax(Activation):
    """Softmax over the last axis as a layer."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__("softmax", **kwargs)
        at_defaults(self, axis=(axis, -1))

    def get_config(self):
        config = {**super().get_config(), "axis": -1}
        del config["activation"]
        return config


class LeakyReLU(Activation):
    """x if x > 0 else negative_slope * x, as a layer (Keras's default slope here is 0.3)."""

    def __init__(self, negative_slope=0.3, **kwargs):
        alpha = kwargs.pop("alpha", None)              # Keras 3 still takes the old name, with a warning
        super().__init__("leaky_relu", **kwargs)
        if alpha is not None:
            warnings.warn(f"{self}: argument `alpha` is deprecated; use `negative_slope` instead.", stacklevel=2)
            negative_slope = alpha
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float, np.integer, np.floating)):
            raise TypeError(f"{self}: negative_slope must be a number >= 0; received {negative_slope!r}")
        if not np.isfinite(negative_slope) or negative_slope < 0:
            raise ValueError(f"{self}: negative_slope must be a finite number >= 0; received {negative_slope!r}")
        self.negative_slope = float(negative_slope)
        self.activation = LeakyRelu(self.negative_slope)

    def get_config(self):
        config = {**super().get_config(), "negative_slope": self.negative_slope}
        del config["activation"]
        return config
