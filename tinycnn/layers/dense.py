"""Dense: every output unit sees every input feature.

Forward:   z = x @ W + b            (N, units)     W (in, units), b (units,)
           out = activation(z)      (N, units)
Backward:  dz = dout * activation'  (N, units)
           dW = x.T @ dz            (in, units)    each weight: its input times its output's error
           db = dz summed over N    (units,)
           dx = dz @ W.T            (N, in)        each input collects the errors it fed
"""
import numpy as np

from .activations import get_activation
from .base import Layer, check_initializer, check_positive_int, initialize, shape_str


class Dense(Layer):
    """A fully connected layer, Keras's Dense.

    Args:
        units: number of outputs.
        activation: "relu", "softmax", "sigmoid", "tanh", "linear" or None.
        use_bias: add a bias per unit.
    Input shape: (N, in). Output shape: (N, units).
    Weights: kernel (in, units), bias (units,).
    """

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.units = check_positive_int(units, "units", self)
        self.activation = get_activation(activation, self)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = check_initializer(kernel_initializer, "kernel_initializer", self)
        self.bias_initializer = check_initializer(bias_initializer, "bias_initializer", self)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 1:
            raise ValueError(f"{self} expects input of rank 2 (batch, features); received shape "
                             f"{shape_str(input_shape)}. Put a Flatten() layer before it.")
        return (self.units,)

    def create_params(self, input_shape):
        n_in = input_shape[0]
        self.params["kernel"] = initialize(self.kernel_initializer, (n_in, self.units), n_in, self.units)
        if self.use_bias:
            self.params["bias"] = initialize(self.bias_initializer, (self.units,), 1, self.units)

    def forward(self, x, training=False):
        """x (N, in) -> out (N, units)."""
        z = x @ self.params["kernel"]                       # (N, units)
        if self.use_bias:
            z = z + self.params["bias"]                     # (N, units)
        out = self.activation.forward(z)                    # (N, units)
        self.cache = (x, out) if training else None
        return out

    def backward(self, dout):
        """dout (N, units) -> dx (N, in); fills grads["kernel"] and grads["bias"]."""
        x, out = self.cached()
        dz = self.activation.backward(dout, out)            # (N, units)
        self.grads["kernel"] = x.T @ dz                     # (in, units)
        if self.use_bias:
            self.grads["bias"] = dz.sum(axis=0)             # (units,)
        return dz @ self.params["kernel"].T                 # (N, in)


class Flatten(Layer):
    """(N, H, W, C) -> (N, H*W*C), in NHWC (row-major) order as Keras. Backward reshapes back."""

    def compute_output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, x, training=False):
        self.cache = x.shape if training else None
        return x.reshape(x.shape[0], int(np.prod(x.shape[1:])))   # (N, H*W*C); -1 is ambiguous when N = 0

    def backward(self, dout):
        return dout.reshape(self.cached())                  # (N, H, W, C)
