"""Dense: every output unit sees every input feature, along the last axis.

Forward:   z = x @ W + b            (N, ..., units)   W (in, units), b (units,)
           out = activation(z)      (N, ..., units)
Backward:  dz = dout * activation'  (N, ..., units)
           dW = x.T @ dz            (in, units)       each weight: its input times its output's error,
           db = dz summed over N    (units,)          summed over the batch (and every other axis but the last)
           dx = dz @ W.T            (N, ..., in)      each input collects the errors it fed
Input of rank > 2, (N, ..., in), is Keras's too: the same W applied at every position, e.g. to
every pixel's channels of (N, H, W, C).
"""
import numpy as np

from .. import regularizers
from .activations import get_activation
from .base import Layer, at_defaults, check_initializer, check_positive_int, initialize, serialized, shape_str


def check_regularizer(value, arg, layer):
    """The regularizer for a name ('l2'), a Regularizer object or None, or a clear error naming the layer."""
    try:
        return regularizers.get(value)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{layer}: {arg}: {err}") from None


def regularizer(layer, arg, value, key):
    """The `arg` regularizer (e.g. kernel_regularizer) of weight `key`, checked and put in layer.regularizers."""
    penalty = check_regularizer(value, arg, layer)
    if penalty is not None and (key != "bias" or layer.use_bias):
        layer.regularizers[key] = penalty
    return penalty


def add_regularizers(layer, kernel_regularizer, bias_regularizer):
    """layer.regularizers = {"kernel": ..., "bias": ...}, the ones given (Dense's and Conv2D's arguments)."""
    regularizer(layer, "kernel_regularizer", kernel_regularizer, "kernel")
    regularizer(layer, "bias_regularizer", bias_regularizer, "bias")


def weight_config(layer):
    """The initializer and regularizer entries of a Dense or Conv2D config, as Keras writes them."""
    return {"kernel_initializer": serialized(layer.kernel_initializer),
            "bias_initializer": serialized(layer.bias_initializer),
            "kernel_regularizer": serialized(layer.regularizers.get("kernel")),
            "bias_regularizer": serialized(layer.regularizers.get("bias")),
            "kernel_constraint": None, "bias_constraint": None}


class Dense(Layer):
    """A fully connected layer, Keras's Dense.

    Args:
        units: number of outputs.
        activation: a name from tinycnn.layers.activations ("relu", "gelu", "softmax", ...) or None.
        use_bias: add a bias per unit.
        kernel_initializer, bias_initializer: a name or an object of tinycnn.initializers.
        kernel_regularizer, bias_regularizer: None, a name or an object of tinycnn.regularizers.
    Input shape: (N, ..., in). Output shape: (N, ..., units).
    Weights: kernel (in, units), bias (units,).
    """

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, quantization_config=None, **kwargs):
        super().__init__(**kwargs)
        at_defaults(self, kernel_constraint=(kernel_constraint, None), bias_constraint=(bias_constraint, None),
                    quantization_config=(quantization_config, None))
        self.units = check_positive_int(units, "units", self)
        self.activation = get_activation(activation, self)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = check_initializer(kernel_initializer, "kernel_initializer", self)
        self.bias_initializer = check_initializer(bias_initializer, "bias_initializer", self)
        add_regularizers(self, kernel_regularizer, bias_regularizer)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation.name,
                "use_bias": self.use_bias, **weight_config(self)}

    def compute_output_shape(self, input_shape):
        if len(input_shape) < 1:
            raise ValueError(f"{self} expects input of rank 2 or more (batch, ..., features); received shape "
                             f"{shape_str(input_shape)}")
        return tuple(input_shape[:-1]) + (self.units,)

    def create_params(self, input_shape):
        self.params["kernel"] = initialize(self.kernel_initializer, (input_shape[-1], self.units))
        if self.use_bias:
            self.params["bias"] = initialize(self.bias_initializer, (self.units,))

    def forward(self, x, training=False):
        """x (N, ..., in) -> out (N, ..., units)."""
        z = x @ self.params["kernel"]                       # (N, ..., units)
        if self.use_bias:
            z = z + self.params["bias"]                     # (N, ..., units)
        out = self.activation.forward(z)                    # (N, ..., units)
        self.cache = (x, z if self.activation.needs_z else out) if training else None
        return out

    def backward(self, dout):
        """dout (N, ..., units) -> dx (N, ..., in); fills grads["kernel"] and grads["bias"]."""
        x, kept = self.cached()                             # kept: out, or z if the activation needs it
        dz = self.activation.backward(dout, kept)           # (N, ..., units)
        rows, dz_rows = x.reshape(-1, x.shape[-1]), dz.reshape(-1, self.units)   # every position a row
        self.grads["kernel"] = rows.T @ dz_rows             # (in, units)
        if self.use_bias:
            self.grads["bias"] = dz_rows.sum(axis=0)        # (units,)
        return dz @ self.params["kernel"].T                 # (N, ..., in)


class Flatten(Layer):
    """(N, H, W, C) -> (N, H*W*C), in NHWC (row-major) order as Keras. Backward reshapes back."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        at_defaults(self, data_format=(data_format or "channels_last", "channels_last"))

    def get_config(self):
        return {**super().get_config(), "data_format": "channels_last"}

    def compute_output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, x, training=False):
        self.cache = x.shape if training else None
        return x.reshape(x.shape[0], int(np.prod(x.shape[1:])))   # (N, H*W*C); -1 is ambiguous when N = 0

    def backward(self, dout):
        return dout.reshape(self.cached())                  # (N, H, W, C)
