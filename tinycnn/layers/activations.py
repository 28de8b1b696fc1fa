"""Activation functions, and the layers that apply them on their own.

Each activation is a pair written from its output a = f(z):
    forward(z)          -> a
    backward(da, a)     -> dz = da * f'(z), with f'(z) expressed through a
so a layer only has to keep its output for backward.

    relu      a = max(z, 0)          dz = da * (a > 0)
    sigmoid   a = 1 / (1 + e^-z)     dz = da * a * (1 - a)
    tanh      a = tanh(z)            dz = da * (1 - a^2)
    softmax   a_i = e^z_i / sum e^z  dz = a * (da - sum(da * a))   (the Jacobian-vector product)
    linear    a = z                  dz = da

Softmax's Jacobian rarely runs in training: followed by cross-entropy, the loss computes
dL/dz = (p - y) / N itself and hands it over as a LogitsGradient, which softmax's backward
passes on unchanged (see tinycnn.losses).
"""
import numpy as np

from .base import Layer


class LogitsGradient:
    """dL/dz for a softmax's input z, computed by the loss that follows it: (p - y) / N.

    A wrapper, not an array: only a softmax may receive it, and any other layer that did
    would fail loudly instead of treating it as dL/d(output).
    """

    def __init__(self, dz):
        self.dz = dz


class Linear:
    name = "linear"

    def forward(self, z):
        return z

    def backward(self, da, a):
        return da


class Relu:
    name = "relu"

    def forward(self, z):
        return np.maximum(z, 0)

    def backward(self, da, a):
        return da * (a > 0)                      # passes where the unit was active, stops elsewhere


class Sigmoid:
    name = "sigmoid"

    def forward(self, z):
        return 0.5 * (1.0 + np.tanh(0.5 * z))   # = 1/(1+e^-z), without overflow for large |z|

    def backward(self, da, a):
        return da * a * (1 - a)


class Tanh:
    name = "tanh"

    def forward(self, z):
        return np.tanh(z)

    def backward(self, da, a):
        return da * (1 - a * a)


class SoftmaxFn:
    name = "softmax"

    def forward(self, z):
        with np.errstate(over="ignore"):                 # z - max may be -inf: exp gives 0, as it should
            e = np.exp(z - z.max(axis=-1, keepdims=True))   # shifting by the max keeps exp() <= 1
        return e / e.sum(axis=-1, keepdims=True)

    def backward(self, da, a):
        if isinstance(da, LogitsGradient):       # cross-entropy already took softmax's gradient
            return da.dz
        return a * (da - (da * a).sum(axis=-1, keepdims=True))


ACTIVATIONS = {"linear": Linear, "relu": Relu, "sigmoid": Sigmoid, "tanh": Tanh, "softmax": SoftmaxFn}


def get_activation(identifier, layer="activation"):
    """'relu' -> a Relu(); None -> Linear(). Unknown names get a clear ValueError."""
    if identifier is None:
        return Linear()
    if isinstance(identifier, str) and identifier.lower() in ACTIVATIONS:
        return ACTIVATIONS[identifier.lower()]()
    if isinstance(identifier, tuple(ACTIVATIONS.values())):
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

    def forward(self, x, training=False):
        out = self.activation.forward(x)
        self.cache = out if training else None
        return out

    def backward(self, dout):
        return self.activation.backward(dout, self.cached())


class ReLU(Activation):
    """max(x, 0) as a layer."""

    def __init__(self, **kwargs):
        super().__init__("relu", **kwargs)


class Softmax(Activation):
    """Softmax over the last axis as a layer."""

    def __init__(self, **kwargs):
        super().__init__("softmax", **kwargs)
