"""Conv1D and MaxPooling1D: Conv2D and MaxPooling2D on sequences, (N, L, C) as (N, 1, L, C) images.

A sequence of L steps with C channels is an image one pixel high, and a (K, C, F) kernel a
(1, K, C, F) one, so both layers run the 2-D kernels (K.conv2d_*, K.maxpool_*) on those views:
the formulas are Conv2D's and MaxPooling2D's (tinycnn/layers/conv.py, pooling.py) with H = 1.

Conv1D:        z[n, i, f] = sum_{k, c} xp[n, i*s + k, c] W[k, c, f] + b[f]    (N, OL, F)
               dW = cols.T @ dz, db = dz summed, dx = col2im(dz @ W.T), as Conv2D's.
Padding along the steps (kernel K, stride s):
    "valid":  none, OL = floor((L - K) / s) + 1
    "same":   TensorFlow's rule, OL = ceil(L / s), the odd zero at the end
    "causal": K - 1 zeros at the start only, OL = floor((L - 1) / s) + 1:
              output step i sees only inputs up to step i*s, never the future (WaveNet's convolution).
MaxPooling1D:  out[n, i, c] = max of the window's steps; backward routes dout to the winner
               (a tie to the earliest step; padded cells never win).
"""

from ..backend import K
from .activations import get_activation
from .base import (Layer, check_initializer, check_padding, check_positive_int, initialize, serialized,
                   shape_str, window_output)
from .conv_transpose import refuse_unsupported
from .dense import regularizer


def single(value, arg, layer):
    """An int or a tuple of one int -> a positive int (Keras's configs write kernel_size=3 as (3,))."""
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    if isinstance(value, (tuple, list)):
        raise ValueError(f"{layer}: {arg} must be an integer or a tuple of 1 integer; received {value!r}")
    return check_positive_int(value, arg, layer)


def steps_shape(layer, input_shape, k, s, padding, arg):
    """Output length and (before, after) padding along the steps of (L, C), or a clear error."""
    if len(input_shape) != 2:
        raise ValueError(f"{layer} expects input of rank 3 (batch, steps, channels); "
                         f"received shape {shape_str(input_shape)}")
    L = input_shape[0]
    if padding == "causal":
        length, pads = (L - 1) // s + 1, (k - 1, 0)
    else:
        length, pads = window_output(L, k, s, padding)
    if k > L + sum(pads):
        raise ValueError(f"{layer}: {arg}={k} is longer than its {padding}-padded input of {L + sum(pads)} "
                         f"steps (input shape {shape_str(input_shape)}); expected a {arg} of at most "
                         f"{L + sum(pads)}. Use a smaller {arg}, padding='same', or a longer input.")
    return length, pads


class Conv1D(Layer):
    """1-D convolution over (N, L, C) sequences, Keras's Conv1D.

    Args:
        filters: number of output channels F.
        kernel_size: int K.  strides: int s.
        padding: "valid", "same" or "causal" (see the module docstring).
        activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
        bias_regularizer: as Conv2D's.
    Input shape: (N, L, C). Output shape: (N, OL, F).
    Weights: kernel (K, C, F), bias (F,).
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 groups=1, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        refuse_unsupported(self, data_format=data_format, dilation_rate=dilation_rate, groups=groups,
                           activity_regularizer=activity_regularizer, kernel_constraint=kernel_constraint,
                           bias_constraint=bias_constraint)
        self.filters = check_positive_int(filters, "filters", self)
        self.kernel_size = single(kernel_size, "kernel_size", self)
        self.strides = single(strides, "strides", self)
        if isinstance(padding, str) and padding.lower() == "causal":
            self.padding = "causal"
        else:
            try:
                self.padding = check_padding(padding, self)
            except ValueError:
                raise ValueError(f"{self}: padding must be 'valid', 'same' or 'causal'; received {padding!r}") from None
        self.activation = get_activation(activation, self)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = check_initializer(kernel_initializer, "kernel_initializer", self)
        self.bias_initializer = check_initializer(bias_initializer, "bias_initializer", self)
        self.kernel_regularizer = regularizer(self, "kernel_regularizer", kernel_regularizer, "kernel")
        self.bias_regularizer = regularizer(self, "bias_regularizer", bias_regularizer, "bias")

    def compute_output_shape(self, input_shape):
        length, self.pads = steps_shape(self, input_shape, self.kernel_size, self.strides, self.padding,
                                        "kernel_size")
        return (length, self.filters)

    def create_params(self, input_shape):
        k, C, F = self.kernel_size, input_shape[-1], self.filters
        self.params["kernel"] = initialize(self.kernel_initializer, (k, C, F))     # fans K*C, K*F
        if self.use_bias:
            self.params["bias"] = initialize(self.bias_initializer, (F,))

    def forward(self, x, training=False):
        """x (N, L, C) -> out (N, OL, F), as a Conv2D on the (N, 1, L, C) view."""
        z, saved = K.conv2d_forward(x[:, None], self.params["kernel"][None], self.params.get("bias"),
                                    (1, self.strides), (0, 0) + self.pads)     # (N, 1, OL, F)
        z = z[:, 0]                                                             # (N, OL, F)
        out = self.activation.forward(z)                                        # (N, OL, F)
        self.cache = (saved, z if self.activation.needs_z else out) if training else None
        return out

    def backward(self, dout):
        """dout (N, OL, F) -> dx (N, L, C); fills grads["kernel"] and grads["bias"]."""
        saved, kept = self.cached()
        dz = self.activation.backward(dout, kept)                               # (N, OL, F)
        dx, dw, db = K.conv2d_backward(dz[:, None], saved)                      # (N, 1, L, C), (1, K, C, F), (F,)
        self.grads["kernel"] = dw[0]                                            # (K, C, F)
        if self.use_bias:
            self.grads["bias"] = db
        return dx[:, 0]                                                         # (N, L, C)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": (self.kernel_size,),
                "strides": (self.strides,), "padding": self.padding, "data_format": "channels_last",
                "dilation_rate": (1,), "groups": 1, "activation": self.activation.name, "use_bias": self.use_bias,
                "kernel_initializer": serialized(self.kernel_initializer),
                "bias_initializer": serialized(self.bias_initializer),
                "kernel_regularizer": serialized(self.kernel_regularizer),
                "bias_regularizer": serialized(self.bias_regularizer), "activity_regularizer": None,
                "kernel_constraint": None, "bias_constraint": None}


class MaxPooling1D(Layer):
    """Max pooling over (N, L, C) sequences, Keras's MaxPooling1D.

    Args:
        pool_size: int P, default 2.
        strides: int; None means pool_size (non-overlapping windows).
        padding: "valid" or "same" (TensorFlow's rule; padded cells never win).
    Input shape: (N, L, C). Output shape: (N, OL, C).
    """

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        refuse_unsupported(self, data_format=data_format)
        self.pool_size = single(pool_size, "pool_size", self)
        self.strides = self.pool_size if strides is None else single(strides, "strides", self)
        self.padding = check_padding(padding, self)

    def compute_output_shape(self, input_shape):
        length, self.pads = steps_shape(self, input_shape, self.pool_size, self.strides, self.padding, "pool_size")
        return (length, input_shape[-1])

    def forward(self, x, training=False):
        """x (N, L, C) -> out (N, OL, C), as a MaxPooling2D on the (N, 1, L, C) view."""
        out, saved = K.maxpool_forward(x[:, None], (1, self.pool_size), (1, self.strides),
                                       (0, 0) + self.pads)                      # (N, 1, OL, C); saved: the winners
        self.cache = saved if training else None
        return out[:, 0]                                                        # (N, OL, C)

    def backward(self, dout):
        """dout (N, OL, C) -> dx (N, L, C), non-zero only at each window's winner."""
        return K.maxpool_backward(dout[:, None], self.cached())[:, 0]

    def get_config(self):
        return {**super().get_config(), "pool_size": (self.pool_size,), "padding": self.padding,
                "strides": (self.strides,), "data_format": "channels_last"}
