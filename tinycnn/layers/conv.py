"""Conv2D: a bank of F small filters slid over the image.

Forward, as one matrix product (im2col), in K.conv2d_forward (tinycnn/kernels/numpy_ops.py):
    cols = im2col(x)                      (N*OH*OW, KH*KW*C)   every patch is a row
    z    = cols @ W + b                   (N*OH*OW, F)         W reshaped to (KH*KW*C, F)
    out  = activation(z)                  (N, OH, OW, F)
Backward, the same product differentiated, then folded back onto the image (K.conv2d_backward):
    dz    = dout * activation'            (N*OH*OW, F)
    dW    = cols.T @ dz                   (KH*KW*C, F)
    db    = dz summed over rows           (F,)
    dcols = dz @ W.T                      (N*OH*OW, KH*KW*C)
    dx    = col2im(dcols)                 (N, H, W, C)         overlapping patches add up
"""
from ..backend import K
from .activations import get_activation
from .base import (Layer, at_defaults, check_initializer, check_padding, check_positive_int, initialize, pair,
                   window_shapes)
from .dense import add_regularizers, weight_config


class Conv2D(Layer):
    """2-D convolution over NHWC images, with Keras's arguments and weight layout.

    Args:
        filters: number of output channels F.
        kernel_size: int or (KH, KW).
        strides: int or (SH, SW), default (1, 1).
        padding: "valid" (no padding) or "same" (output = ceil(input / stride), TensorFlow's rule).
        activation: a name from tinycnn.layers.activations ("relu", "gelu", "softmax", ...) or None.
        use_bias: add a bias per filter.
        kernel_initializer, bias_initializer: a name or an object of tinycnn.initializers.
        kernel_regularizer, bias_regularizer: None, a name or an object of tinycnn.regularizers.
    Input shape: (N, H, W, C). Output shape: (N, OH, OW, F).
    Weights: kernel (KH, KW, C, F), bias (F,).
    """

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, data_format=None, dilation_rate=(1, 1),
                 groups=1, kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = check_positive_int(filters, "filters", self)
        self.kernel_size = pair(kernel_size, "kernel_size", self)
        self.strides = pair(strides, "strides", self)
        self.padding = check_padding(padding, self)
        self.activation = get_activation(activation, self)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = check_initializer(kernel_initializer, "kernel_initializer", self)
        self.bias_initializer = check_initializer(bias_initializer, "bias_initializer", self)
        add_regularizers(self, kernel_regularizer, bias_regularizer)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"{self}: only data_format='channels_last' (NHWC) is supported; received {data_format!r}")
        if pair(dilation_rate, "dilation_rate", self) != (1, 1):
            raise ValueError(f"{self}: dilation_rate other than 1 is not supported; received {dilation_rate!r}")
        at_defaults(self, groups=(groups, 1), kernel_constraint=(kernel_constraint, None),
                    bias_constraint=(bias_constraint, None))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding, "data_format": "channels_last",
                "dilation_rate": (1, 1), "groups": 1, "activation": self.activation.name,
                "use_bias": self.use_bias, **weight_config(self)}

    def compute_output_shape(self, input_shape):
        (OH, OW), self.pads = window_shapes(self, input_shape, self.kernel_size, self.strides, self.padding)
        return (OH, OW, self.filters)

    def create_params(self, input_shape):
        (KH, KW), C, F = self.kernel_size, input_shape[-1], self.filters
        self.params["kernel"] = initialize(self.kernel_initializer, (KH, KW, C, F))   # fans KH*KW*C, KH*KW*F
        if self.use_bias:
            self.params["bias"] = initialize(self.bias_initializer, (F,))

    def forward(self, x, training=False):
        """x (N, H, W, C) -> out (N, OH, OW, F)."""
        z, saved = K.conv2d_forward(x, self.params["kernel"], self.params.get("bias"),
                                    self.strides, self.pads)           # (N, OH, OW, F)
        out = self.activation.forward(z)                                # (N, OH, OW, F)
        self.cache = (saved, z if self.activation.needs_z else out) if training else None
        return out

    def backward(self, dout):
        """dout (N, OH, OW, F) -> dx (N, H, W, C); fills grads["kernel"] and grads["bias"]."""
        saved, kept = self.cached()                                     # kept: out, or z if the activation needs it
        dz = self.activation.backward(dout, kept)                       # (N, OH, OW, F)
        dx, dw, db = K.conv2d_backward(dz, saved)                       # (N, H, W, C), (KH, KW, C, F), (F,)
        self.grads["kernel"] = dw
        if self.use_bias:
            self.grads["bias"] = db
        return dx
