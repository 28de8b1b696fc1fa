"""DepthwiseConv2D and SeparableConv2D: a convolution per channel, then (Separable) a 1x1 mix.

DepthwiseConv2D, kernel W (KH, KW, C, M) with M = depth_multiplier. Channel c is convolved with
its own M filters W[:, :, c, :] and sees no other channel; output channel c*M + m (Keras's order).
Forward, with im2col's patch (kh, kw, c) viewed as (t = kh*KW + kw, c):
    cols = im2col(x)                       (R, T, C)       R = N*OH*OW patches, T = KH*KW taps
    z[r, c, m] = sum_t cols[r, t, c] W[t, c, m]            (R, C, M) -> (N, OH, OW, C*M)
    z = z + b; out = activation(z)         (N, OH, OW, C*M)
Backward:
    dz = dout * activation'                (R, C, M)
    dW[t, c, m]    = sum_r cols[r, t, c] dz[r, c, m]       (T, C, M)  -> (KH, KW, C, M)
    dcols[r, t, c] = sum_m dz[r, c, m] W[t, c, m]          (R, T, C)
    dx = col2im(dcols)                     (N, H, W, C)    overlapping patches add up
    db = dz summed over r                  (C*M,)

SeparableConv2D = the depthwise step (no bias) then a pointwise (1x1) convolution P (C*M, F):
    d = depthwise(x)                       (N, OH, OW, C*M)
    z = d @ P + b; out = activation(z)     (N, OH, OW, F)
Backward:  dP = d.T @ dz (C*M, F); db = dz summed (F,); dd = dz @ P.T, then the depthwise backward.
Far fewer weights than a Conv2D: KH*KW*C*M + C*M*F instead of KH*KW*C*F.
"""
import numpy as np

from ..backend import K
from .activations import get_activation
from .base import (Layer, check_initializer, check_padding, check_positive_int, initialize, pair, serialized,
                   window_shapes)
from .conv_transpose import refuse_unsupported
from .dense import regularizer


def depthwise_forward(x, w, strides, pads, out_shape):
    """x (N, H, W, C), w (KH, KW, C, M) -> z (N, OH, OW, C*M), and cols (R, T, C) for backward."""
    KH, KW, C, M = w.shape
    OH, OW = out_shape[:2]
    cols = K.im2col(x, KH, KW, strides, pads).reshape(-1, KH * KW, C)         # (R, T, C)
    z = np.einsum("rtc,tcm->rcm", cols, w.reshape(KH * KW, C, M))             # (R, C, M): no sum over c
    return z.reshape(x.shape[0], OH, OW, C * M), cols


def depthwise_backward(dz, cols, w, x_shape, strides, pads):
    """dz (N, OH, OW, C*M) -> dx (N, H, W, C), dw (KH, KW, C, M)."""
    KH, KW, C, M = w.shape
    dz = dz.reshape(-1, C, M)                                                  # (R, C, M)
    dw = np.einsum("rtc,rcm->tcm", cols, dz).reshape(KH, KW, C, M)             # (KH, KW, C, M)
    dcols = np.einsum("rcm,tcm->rtc", dz, w.reshape(KH * KW, C, M))           # (R, T, C)
    dx = K.col2im(dcols.reshape(-1, KH * KW * C), x_shape, KH, KW, strides, pads)   # (N, H, W, C)
    return dx, dw


class DepthwiseConv2D(Layer):
    """Depthwise 2-D convolution over NHWC images, Keras's DepthwiseConv2D.

    Args:
        kernel_size: int or (KH, KW).  strides: int or (SH, SW).  padding: "valid" or "same".
        depth_multiplier: M, the filters per input channel.
        activation, use_bias: as Conv2D's.
        depthwise_initializer, bias_initializer: a name or an object of tinycnn.initializers.
        depthwise_regularizer, bias_regularizer: None, a name or an object of tinycnn.regularizers.
    Input shape: (N, H, W, C). Output shape: (N, OH, OW, C*M).
    Weights: kernel (KH, KW, C, M) (Keras 3 names it "kernel"), bias (C*M,).
    """

    def __init__(self, kernel_size, strides=(1, 1), padding="valid", depth_multiplier=1, data_format=None,
                 dilation_rate=(1, 1), activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, depthwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        refuse_unsupported(self, data_format=data_format, dilation_rate=dilation_rate,
                           activity_regularizer=activity_regularizer, depthwise_constraint=depthwise_constraint,
                           bias_constraint=bias_constraint)
        self.kernel_size = pair(kernel_size, "kernel_size", self)
        self.strides = pair(strides, "strides", self)
        self.padding = check_padding(padding, self)
        self.depth_multiplier = check_positive_int(depth_multiplier, "depth_multiplier", self)
        self.activation = get_activation(activation, self)
        self.use_bias = bool(use_bias)
        self.depthwise_initializer = check_initializer(depthwise_initializer, "depthwise_initializer", self)
        self.bias_initializer = check_initializer(bias_initializer, "bias_initializer", self)
        self.depthwise_regularizer = regularizer(self, "depthwise_regularizer", depthwise_regularizer, "kernel")
        self.bias_regularizer = regularizer(self, "bias_regularizer", bias_regularizer, "bias")

    def compute_output_shape(self, input_shape):
        (OH, OW), self.pads = window_shapes(self, input_shape, self.kernel_size, self.strides, self.padding)
        return (OH, OW, input_shape[-1] * self.depth_multiplier)

    def create_params(self, input_shape):
        (KH, KW), C, M = self.kernel_size, input_shape[-1], self.depth_multiplier
        self.params["kernel"] = initialize(self.depthwise_initializer, (KH, KW, C, M))   # fans KH*KW*C, KH*KW*M
        if self.use_bias:
            self.params["bias"] = initialize(self.bias_initializer, (C * M,))

    def forward(self, x, training=False):
        """x (N, H, W, C) -> out (N, OH, OW, C*M)."""
        z, cols = depthwise_forward(x, self.params["kernel"], self.strides, self.pads, self.out_shape)
        if self.use_bias:
            z = z + self.params["bias"]                                        # (N, OH, OW, C*M)
        out = self.activation.forward(z)                                       # (N, OH, OW, C*M)
        self.cache = (cols, x.shape, z if self.activation.needs_z else out) if training else None
        return out

    def backward(self, dout):
        """dout (N, OH, OW, C*M) -> dx (N, H, W, C); fills grads["kernel"] and grads["bias"]."""
        cols, x_shape, kept = self.cached()
        dz = self.activation.backward(dout, kept)                              # (N, OH, OW, C*M)
        dx, self.grads["kernel"] = depthwise_backward(dz, cols, self.params["kernel"], x_shape,
                                                      self.strides, self.pads)
        if self.use_bias:
            self.grads["bias"] = dz.sum(axis=(0, 1, 2))                        # (C*M,)
        return dx

    def get_config(self):
        return {**super().get_config(), "depth_multiplier": self.depth_multiplier, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding, "data_format": "channels_last",
                "dilation_rate": (1, 1), "activation": self.activation.name, "use_bias": self.use_bias,
                "depthwise_initializer": serialized(self.depthwise_initializer),
                "bias_initializer": serialized(self.bias_initializer),
                "depthwise_regularizer": serialized(self.depthwise_regularizer),
                "bias_regularizer": serialized(self.bias_regularizer), "activity_regularizer": None,
                "depthwise_constraint": None, "bias_constraint": None}


class SeparableConv2D(Layer):
    """Depthwise-separable 2-D convolution over NHWC images, Keras's SeparableConv2D.

    Args:
        filters: number of output channels F.
        kernel_size, strides, padding, depth_multiplier: as DepthwiseConv2D's.
        activation, use_bias: as Conv2D's.
        depthwise_initializer, pointwise_initializer, bias_initializer: names or tinycnn.initializers objects.
        depthwise_regularizer, pointwise_regularizer, bias_regularizer: None, names or tinycnn.regularizers objects.
    Input shape: (N, H, W, C). Output shape: (N, OH, OW, F).
    Weights: depthwise_kernel (KH, KW, C, M), pointwise_kernel (1, 1, C*M, F), bias (F,).
    """

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), depth_multiplier=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, pointwise_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, depthwise_constraint=None,
                 pointwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        refuse_unsupported(self, data_format=data_format, dilation_rate=dilation_rate,
                           activity_regularizer=activity_regularizer, depthwise_constraint=depthwise_constraint,
                           pointwise_constraint=pointwise_constraint, bias_constraint=bias_constraint)
        self.filters = check_positive_int(filters, "filters", self)
        self.kernel_size = pair(kernel_size, "kernel_size", self)
        self.strides = pair(strides, "strides", self)
        self.padding = check_padding(padding, self)
        self.depth_multiplier = check_positive_int(depth_multiplier, "depth_multiplier", self)
        self.activation = get_activation(activation, self)
        self.use_bias = bool(use_bias)
        self.depthwise_initializer = check_initializer(depthwise_initializer, "depthwise_initializer", self)
        self.pointwise_initializer = check_initializer(pointwise_initializer, "pointwise_initializer", self)
        self.bias_initializer = check_initializer(bias_initializer, "bias_initializer", self)
        self.depthwise_regularizer = regularizer(self, "depthwise_regularizer", depthwise_regularizer,
                                                 "depthwise_kernel")
        self.pointwise_regularizer = regularizer(self, "pointwise_regularizer", pointwise_regularizer,
                                                 "pointwise_kernel")
        self.bias_regularizer = regularizer(self, "bias_regularizer", bias_regularizer, "bias")

    def compute_output_shape(self, input_shape):
        (OH, OW), self.pads = window_shapes(self, input_shape, self.kernel_size, self.strides, self.padding)
        return (OH, OW, self.filters)

    def create_params(self, input_shape):
        (KH, KW), C, M, F = self.kernel_size, input_shape[-1], self.depth_multiplier, self.filters
        self.params["depthwise_kernel"] = initialize(self.depthwise_initializer, (KH, KW, C, M))
        self.params["pointwise_kernel"] = initialize(self.pointwise_initializer, (1, 1, C * M, F))
        if self.use_bias:
            self.params["bias"] = initialize(self.bias_initializer, (F,))

    def forward(self, x, training=False):
        """x (N, H, W, C) -> out (N, OH, OW, F)."""
        w, p = self.params["depthwise_kernel"], self.params["pointwise_kernel"][0, 0]   # p (C*M, F)
        d, cols = depthwise_forward(x, w, self.strides, self.pads, self.out_shape)      # (N, OH, OW, C*M)
        z = d @ p                                                                # (N, OH, OW, F)
        if self.use_bias:
            z = z + self.params["bias"]                                          # (N, OH, OW, F)
        out = self.activation.forward(z)                                         # (N, OH, OW, F)
        self.cache = (cols, x.shape, d, z if self.activation.needs_z else out) if training else None
        return out

    def backward(self, dout):
        """dout (N, OH, OW, F) -> dx (N, H, W, C); fills the grads of both kernels and the bias."""
        cols, x_shape, d, kept = self.cached()
        p = self.params["pointwise_kernel"][0, 0]                                # (C*M, F)
        dz = self.activation.backward(dout, kept)                                # (N, OH, OW, F)
        dz_rows, d_rows = dz.reshape(-1, self.filters), d.reshape(-1, p.shape[0])
        self.grads["pointwise_kernel"] = (d_rows.T @ dz_rows)[None, None]        # (1, 1, C*M, F)
        if self.use_bias:
            self.grads["bias"] = dz_rows.sum(axis=0)                             # (F,)
        dd = dz @ p.T                                                            # (N, OH, OW, C*M)
        dx, self.grads["depthwise_kernel"] = depthwise_backward(dd, cols, self.params["depthwise_kernel"],
                                                                x_shape, self.strides, self.pads)
        return dx

    def get_config(self):
        return {**super().get_config(), "depth_multiplier": self.depth_multiplier, "filters": self.filters,
                "kernel_size": self.kernel_size, "strides": self.strides, "padding": self.padding,
                "data_format": "channels_last", "dilation_rate": (1, 1), "activation": self.activation.name,
                "use_bias": self.use_bias, "depthwise_initializer": serialized(self.depthwise_initializer),
                "pointwise_initializer": serialized(self.pointwise_initializer),
                "bias_initializer": serialized(self.bias_initializer),
                "depthwise_regularizer": serialized(self.depthwise_regularizer),
                "pointwise_regularizer": serialized(self.pointwise_regularizer),
                "bias_regularizer": serialized(self.bias_regularizer), "activity_regularizer": None,
                "depthwise_constraint": None, "pointwise_constraint": None, "bias_constraint": None}
