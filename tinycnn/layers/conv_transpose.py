"""Conv2DTranspose: a convolution run backwards, to make an image larger (a "deconvolution").

A Conv2D with kernel W (KH, KW, F, C) maps y (N, OH, OW, F) to x (N, H, W, C); its backward
maps an error of x's shape to one of y's shape. Conv2DTranspose IS that input gradient, applied
to x as data: every input pixel paints a KHxKW patch of the output, weighted by W.

Forward (Conv2D's dL/dx, with x in the place of dL/dz):
    dcols = x @ W.T                 (N*H*W, KH*KW*F)   W as (KH*KW*F, C); one patch per input pixel
    z     = col2im(dcols) + b       (N, OH, OW, F)     overlapping patches add up
    out   = activation(z)           (N, OH, OW, F)
Backward (a Conv2D's forward on dz, with the same W, plus the kernel gradient):
    cols  = im2col(dz)              (N*H*W, KH*KW*F)   the output patch each input pixel painted
    dx    = cols @ W                (N*H*W, C)         = conv2d(dz, W)
    dW    = cols.T @ x              (KH*KW*F, C)
    db    = dz summed over N, OH, OW  (F,)
Output size along an axis of size H, kernel k, stride s, output_padding p (Keras's rule):
    "valid": (H-1)*s + max(k, s) if p is None, else (H-1)*s + k + p
    "same":  H*s                 if p is None, else (H-1)*s + k%2 + p
The rows cropped away are the padding TensorFlow's Conv2D "same" would add to an image of the
output's size (the odd one at the bottom/right), so the values are TensorFlow's.
"""
import numpy as np

from ..backend import K
from .activations import get_activation
from .base import (Layer, check_initializer, check_padding, check_positive_int, initialize, pair, serialized,
                   shape_str, window_output)
from .dense import regularizer


def refuse_unsupported(layer, data_format=None, dilation_rate=1, groups=1, activity_regularizer=None,
                       **constraints):
    """Keras arguments tinycnn accepts only at their defaults: anything else is a clear ValueError."""
    if data_format not in (None, "channels_last"):
        raise ValueError(f"{layer}: only data_format='channels_last' is supported; received {data_format!r}")
    rates = dilation_rate if isinstance(dilation_rate, (tuple, list)) else [dilation_rate]
    if any(isinstance(r, bool) or r != 1 for r in rates):
        raise ValueError(f"{layer}: dilation_rate other than 1 is not supported; received {dilation_rate!r}")
    if isinstance(groups, bool) or groups != 1:
        raise ValueError(f"{layer}: groups other than 1 is not supported; received {groups!r}")
    if activity_regularizer is not None:
        raise ValueError(f"{layer}: activity_regularizer is not supported; received {activity_regularizer!r}")
    for arg, value in constraints.items():
        if value is not None:
            raise ValueError(f"{layer}: {arg} is not supported (only None); received {value!r}")


def transpose_output(size, k, s, padding, output_padding):
    """Keras's output length of a transposed convolution along one axis (see the module docstring)."""
    if padding == "valid":
        return (size - 1) * s + (max(k, s) if output_padding is None else k + output_padding)
    return size * s if output_padding is None else (size - 1) * s + k % 2 + output_padding


class Conv2DTranspose(Layer):
    """Transposed 2-D convolution over NHWC images, Keras's Conv2DTranspose.

    Args:
        filters: number of output channels F.
        kernel_size: int or (KH, KW).
        strides: int or (SH, SW): the upsampling factor.
        padding: "valid" or "same" (output = input * stride when output_padding is None).
        output_padding: None, int or (PH, PW), each < its stride: extra rows/columns at the bottom/right.
        activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
        bias_regularizer: as Conv2D's.
    Input shape: (N, H, W, C). Output shape: (N, OH, OW, F).
    Weights: kernel (KH, KW, F, C) (note: filters before input channels, as Keras), bias (F,).
    """

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", output_padding=None,
                 data_format=None, dilation_rate=(1, 1), activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 **kwargs):
        super().__init__(**kwargs)
        refuse_unsupported(self, data_format=data_format, dilation_rate=dilation_rate,
                           activity_regularizer=activity_regularizer, kernel_constraint=kernel_constraint,
                           bias_constraint=bias_constraint)
        self.filters = check_positive_int(filters, "filters", self)
        self.kernel_size = pair(kernel_size, "kernel_size", self)
        self.strides = pair(strides, "strides", self)
        self.padding = check_padding(padding, self)
        self.output_padding = None if output_padding is None else self.check_output_padding(output_padding)
        self.activation = get_activation(activation, self)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = check_initializer(kernel_initializer, "kernel_initializer", self)
        self.bias_initializer = check_initializer(bias_initializer, "bias_initializer", self)
        self.kernel_regularizer = regularizer(self, "kernel_regularizer", kernel_regularizer, "kernel")
        self.bias_regularizer = regularizer(self, "bias_regularizer", bias_regularizer, "bias")

    def check_output_padding(self, value):
        pads = (value, value) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value
        if (not isinstance(pads, (tuple, list)) or len(pads) != 2
                or not all(isinstance(p, (int, np.integer)) and not isinstance(p, bool) and 0 <= p < s
                           for p, s in zip(pads, self.strides))):
            raise ValueError(f"{self}: output_padding must be None, or an integer or a tuple of 2 integers, each "
                             f">= 0 and less than its stride (strides={self.strides}); received {value!r}")
        return tuple(int(p) for p in pads)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{self} expects input of rank 4 (batch, height, width, channels); "
                             f"received shape {shape_str(input_shape)}")
        out, pads = [], []
        for axis, (size, k, s) in enumerate(zip(input_shape[:2], self.kernel_size, self.strides)):
            op = None if self.output_padding is None else self.output_padding[axis]
            size_out = transpose_output(size, k, s, self.padding, op)
            back, pad = window_output(size_out, k, s, self.padding)    # the Conv2D this layer is the gradient of
            if back != size:
                raise ValueError(f"{self}: kernel_size={self.kernel_size}, strides={self.strides}, padding="
                                 f"'{self.padding}', output_padding={self.output_padding} on input shape "
                                 f"{shape_str(input_shape)} give an output of {size_out} along axis {axis + 1}, "
                                 f"whose Conv2D would give back {back}, not {size}; expected settings where they "
                                 f"agree (TensorFlow refuses these too): change output_padding or kernel_size")
            out.append(size_out)
            pads.extend(pad)
        self.pads = tuple(pads)                                        # (top, bottom, left, right) of the output
        return (out[0], out[1], self.filters)

    def create_params(self, input_shape):
        (KH, KW), C, F = self.kernel_size, input_shape[-1], self.filters
        self.params["kernel"] = initialize(self.kernel_initializer, (KH, KW, F, C))   # fans KH*KW*F, KH*KW*C
        if self.use_bias:
            self.params["bias"] = initialize(self.bias_initializer, (F,))

    def forward(self, x, training=False):
        """x (N, H, W, C) -> out (N, OH, OW, F): Conv2D's input gradient, with x as dL/dz."""
        (KH, KW), (OH, OW, F), (N, H, W, C) = self.kernel_size, self.out_shape, x.shape
        w = self.params["kernel"].reshape(KH * KW * F, C)                       # (KH*KW*F, C)
        dcols = x.reshape(N * H * W, C) @ w.T                                    # (N*H*W, KH*KW*F)
        z = K.col2im(dcols, (N, OH, OW, F), KH, KW, self.strides, self.pads)    # (N, OH, OW, F)
        if self.use_bias:
            z = z + self.params["bias"]                                          # (N, OH, OW, F)
        out = self.activation.forward(z)                                         # (N, OH, OW, F)
        self.cache = (x, z if self.activation.needs_z else out) if training else None
        return out

    def backward(self, dout):
        """dout (N, OH, OW, F) -> dx (N, H, W, C) = conv2d(dz, W); fills grads["kernel"] and grads["bias"]."""
        x, kept = self.cached()                                                  # kept: out, or z if needed
        (KH, KW), (N, H, W, C), F = self.kernel_size, x.shape, self.filters
        dz = self.activation.backward(dout, kept)                                # (N, OH, OW, F)
        cols = K.im2col(dz, KH, KW, self.strides, self.pads)                     # (N*H*W, KH*KW*F)
        self.grads["kernel"] = (cols.T @ x.reshape(N * H * W, C)).reshape(KH, KW, F, C)
        if self.use_bias:
            self.grads["bias"] = dz.sum(axis=(0, 1, 2))                          # (F,)
        return (cols @ self.params["kernel"].reshape(KH * KW * F, C)).reshape(N, H, W, C)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding, "output_padding": self.output_padding,
                "data_format": "channels_last", "dilation_rate": (1, 1), "activation": self.activation.name,
                "use_bias": self.use_bias, "kernel_initializer": serialized(self.kernel_initializer),
                "bias_initializer": serialized(self.bias_initializer),
                "kernel_regularizer": serialized(self.kernel_regularizer),
                "bias_regularizer": serialized(self.bias_regularizer), "activity_regularizer": None,
                "kernel_constraint": None, "bias_constraint": None}
