"""Conv2D: a bank of F small filters slid over the image.

Forward, as one matrix product (im2col):
    cols = im2col(x)                      (N*OH*OW, KH*KW*C)   every patch is a row
    z    = cols @ W + b                   (N*OH*OW, F)         W reshaped to (KH*KW*C, F)
    out  = activation(z)                  (N, OH, OW, F)
Backward, the same product differentiated, then folded back onto the image:
    dz    = dout * activation'            (N*OH*OW, F)
    dW    = cols.T @ dz                   (KH*KW*C, F)
    db    = dz summed over rows           (F,)
    dcols = dz @ W.T                      (N*OH*OW, KH*KW*C)
    dx    = col2im(dcols)                 (N, H, W, C)         overlapping patches add up
The arithmetic lives in tinycnn/kernels/numpy_ops.py (conv2d_forward, conv2d_backward) so
that the Numba backend can swap in faster kernels (for 3x3 kernels with many channels, the
same sums by Winograd's algorithm); this class owns the weights and shapes.
"""
from ..backend import ops
from .activations import get_activation
from .base import (Layer, check_initializer, check_padding, check_positive_int, initialize, pair,
                   window_shapes)


class Conv2D(Layer):
    """2-D convolution over NHWC images, with Keras's arguments and weight layout.

    Args:
        filters: number of output channels F.
        kernel_size: int or (KH, KW).
        strides: int or (SH, SW), default (1, 1).
        padding: "valid" (no padding) or "same" (output = ceil(input / stride), TensorFlow's rule).
        activation: "relu", "softmax", "sigmoid", "tanh", "linear" or None.
        use_bias: add a bias per filter.
    Input shape: (N, H, W, C). Output shape: (N, OH, OW, F).
    Weights: kernel (KH, KW, C, F), bias (F,).
    """

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 data_format=None, dilation_rate=(1, 1), **kwargs):
        super().__init__(**kwargs)
        self.filters = check_positive_int(filters, "filters", self)
        self.kernel_size = pair(kernel_size, "kernel_size", self)
        self.strides = pair(strides, "strides", self)
        self.padding = check_padding(padding, self)
        self.activation = get_activation(activation, self)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = check_initializer(kernel_initializer, "kernel_initializer", self)
        self.bias_initializer = check_initializer(bias_initializer, "bias_initializer", self)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"{self}: only data_format='channels_last' (NHWC) is supported; received {data_format!r}")
        if pair(dilation_rate, "dilation_rate", self) != (1, 1):
            raise ValueError(f"{self}: dilation_rate other than 1 is not supported; received {dilation_rate!r}")

    def compute_output_shape(self, input_shape):
        (OH, OW), self.pads = window_shapes(self, input_shape, self.kernel_size, self.strides, self.padding)
        return (OH, OW, self.filters)

    def create_params(self, input_shape):
        (KH, KW), C, F = self.kernel_size, input_shape[-1], self.filters
        self.params["kernel"] = initialize(self.kernel_initializer, (KH, KW, C, F), KH * KW * C, KH * KW * F)
        if self.use_bias:
            self.params["bias"] = initialize(self.bias_initializer, (F,), 1, F)

    def forward(self, x, training=False):
        kernels = ops()
        fuse_relu = self.activation.name == "relu"    # the kernel applies max(z, 0) in the same pass
        z, saved = kernels.conv2d_forward(x, self.params["kernel"], self.params.get("bias"),
                                          self.strides, self.pads, relu=fuse_relu, keep=training)  # (N, OH, OW, F)
        out = z if fuse_relu else self.activation.forward(z)                  # (N, OH, OW, F)
        if training:
            self.cache = {"kernels": kernels, "saved": saved, "x_shape": x.shape, "out": out}
        return out

    def backward(self, dout, skip_activation=False):
        """dout (N, OH, OW, F) -> dx (N, H, W, C); fills grads["kernel"] and grads["bias"].

        With a ReLU, the kernel applies its gradient dz = dout * (out > 0) in the same pass
        (relu_out=out); any other activation's gradient is applied here first.
        """
        cache = self.cached()
        fuse_relu = self.activation.name == "relu" and not skip_activation
        if skip_activation or fuse_relu:
            dz = dout                                                         # (N, OH, OW, F)
        else:
            dz = self.activation.backward(dout, cache["out"])                 # (N, OH, OW, F)
        dx, dw, db = cache["kernels"].conv2d_backward(dz, cache["saved"], cache["x_shape"],
                                                      self.params["kernel"], self.strides, self.pads,
                                                      need_dx=self.input_grad,
                                                      relu_out=cache["out"] if fuse_relu else None)
        self.grads["kernel"] = dw                                             # (KH, KW, C, F)
        if self.use_bias:
            self.grads["bias"] = db                                           # (F,)
        return dx                                                             # (N, H, W, C)
