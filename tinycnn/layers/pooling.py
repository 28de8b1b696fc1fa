"""Pooling: summarize every window (or the whole image) of each channel by its max or its mean.

MaxPooling2D
Forward:   out[n, i, j, c] = max of x[n, window(i, j), c]        (N, OH, OW, C)
           and, when training, remember which cell won (argmax)  (N, OH, OW, C)
Backward:  the max is a switch: the winner's gradient is dout, every other cell's is 0.
           dx = zeros (N, H, W, C); dx[winner of (n,i,j,c)] += dout[n, i, j, c]
           The loops are K.maxpool_forward / K.maxpool_backward (tinycnn/kernels/numpy_ops.py).
           A tie goes to the first cell in row-major order (top-left first).

AveragePooling2D
Forward:   out[n, i, j, c] = sum of x[n, window(i, j), c] / count(i, j)   (N, OH, OW, C)
           count = the window's cells inside the image: PH*PW, fewer at a "same"-padded edge
           (padded zeros are not counted, as Keras/TensorFlow do)
Backward:  every cell of a window receives dout / count; overlapping windows add up.

GlobalAveragePooling2D:  out = mean of x over (H, W)   (N, C);  dx = dout / (H*W), everywhere
GlobalMaxPooling2D:      out = max of x over (H, W)    (N, C);  dx = dout at the winner, 0 elsewhere
                         (a tie goes to the first cell in row-major order, as in MaxPooling2D;
                         Keras's backends share it equally among the tied cells instead)
keepdims=True gives (N, 1, 1, C) instead of (N, C). No layer here has parameters.
"""
import numpy as np

from ..backend import K
from .base import Layer, check_padding, pair, shape_str, window_shapes


def window_config(layer):
    """A 2-D pooling's config, as Keras writes it."""
    return {**Layer.get_config(layer), "pool_size": layer.pool_size, "padding": layer.padding,
            "strides": layer.strides, "data_format": "channels_last"}


class MaxPooling2D(Layer):
    """Max pooling over NHWC images.

    Args:
        pool_size: int or (PH, PW), default (2, 2).
        strides: int or (SH, SW); None means pool_size (non-overlapping windows).
        padding: "valid" or "same" (TensorFlow's rule; padded cells never win).
    Input shape: (N, H, W, C). Output shape: (N, OH, OW, C).
    """

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = pair(pool_size, "pool_size", self)
        self.strides = self.pool_size if strides is None else pair(strides, "strides", self)
        self.padding = check_padding(padding, self)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"{self}: only data_format='channels_last' (NHWC) is supported; received {data_format!r}")

    def get_config(self):
        return window_config(self)

    def compute_output_shape(self, input_shape):
        (OH, OW), self.pads = window_shapes(self, input_shape, self.pool_size, self.strides, self.padding,
                                            arg="pool_size")
        return (OH, OW, input_shape[-1])

    def forward(self, x, training=False):
        """x (N, H, W, C) -> out (N, OH, OW, C)."""
        out, saved = K.maxpool_forward(x, self.pool_size, self.strides, self.pads)   # saved: the winners
        self.cache = saved if training else None
        return out

    def backward(self, dout):
        """dout (N, OH, OW, C) -> dx (N, H, W, C), non-zero only at each window's winner."""
        return K.maxpool_backward(dout, self.cached())


def check_channels_last(data_format, layer):
    if data_format not in (None, "channels_last"):
        raise ValueError(f"{layer}: only data_format='channels_last' (NHWC) is supported; received {data_format!r}")


def check_rank4(layer, input_shape):
    if len(input_shape) != 3:
        raise ValueError(f"{layer} expects input of rank 4 (batch, height, width, channels); "
                         f"received shape {shape_str(input_shape)}")


def window_sums(xp, pool, strides, out_hw):
    """The sum of every PHxPW window of the padded xp (N, Hp, Wp, C) -> (N, OH, OW, C).

    As in K.maxpool_forward, a loop over the window's offsets: offset (i, j) of every window
    at once is the strided slice xp[:, i::SH, j::SW].
    """
    (PH, PW), (SH, SW), (OH, OW) = pool, strides, out_hw
    out = np.zeros((xp.shape[0], OH, OW, xp.shape[3]), dtype=xp.dtype)
    for i in range(PH):
        for j in range(PW):
            out += xp[:, i:i + SH * OH:SH, j:j + SW * OW:SW, :]
    return out


class AveragePooling2D(Layer):
    """Average pooling over NHWC images.

    Args:
        pool_size: int or (PH, PW), default (2, 2).
        strides: int or (SH, SW); None means pool_size (non-overlapping windows).
        padding: "valid" or "same" (TensorFlow's rule; padded cells are left out of the mean).
    Input shape: (N, H, W, C). Output shape: (N, OH, OW, C).
    """

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = pair(pool_size, "pool_size", self)
        self.strides = self.pool_size if strides is None else pair(strides, "strides", self)
        self.padding = check_padding(padding, self)
        check_channels_last(data_format, self)

    def get_config(self):
        return window_config(self)

    def compute_output_shape(self, input_shape):
        (OH, OW), self.pads = window_shapes(self, input_shape, self.pool_size, self.strides, self.padding,
                                            arg="pool_size")
        top, bottom, left, right = self.pads
        inside = np.pad(np.ones((1,) + input_shape[:2] + (1,), np.float32),                # 1 in the image,
                        ((0, 0), (top, bottom), (left, right), (0, 0)))                    # 0 in the padding
        self.count = window_sums(inside, self.pool_size, self.strides, (OH, OW))   # (1, OH, OW, 1) real cells
        return (OH, OW, input_shape[-1])

    def forward(self, x, training=False):
        """x (N, H, W, C) -> out (N, OH, OW, C)."""
        top, bottom, left, right = self.pads
        xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))               # (N, Hp, Wp, C)
        self.cache = x.shape if training else None
        return window_sums(xp, self.pool_size, self.strides, self.out_shape[:2]) / self.count

    def backward(self, dout):
        """dout (N, OH, OW, C) -> dx (N, H, W, C): each window's cells share its gradient equally."""
        N, H, W, C = self.cached()
        (PH, PW), (SH, SW), (top, bottom, left, right) = self.pool_size, self.strides, self.pads
        _, OH, OW, _ = dout.shape
        share = dout / self.count                                 # (N, OH, OW, C)
        dxp = np.zeros((N, H + top + bottom, W + left + right, C), dtype=dout.dtype)  # padded dx
        for i in range(PH):
            for j in range(PW):
                dxp[:, i:i + SH * OH:SH, j:j + SW * OW:SW, :] += share
        return dxp[:, top:top + H, left:left + W, :]


class GlobalPooling2D(Layer):
    """The shared part of the global poolings: (N, H, W, C) -> (N, C), or (N, 1, 1, C) with keepdims."""

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        check_channels_last(data_format, self)
        if not isinstance(keepdims, (bool, np.bool_)):
            raise TypeError(f"{self}: keepdims must be True or False; received {keepdims!r}")
        self.keepdims = bool(keepdims)

    def get_config(self):
        return {**super().get_config(), "data_format": "channels_last", "keepdims": self.keepdims}

    def compute_output_shape(self, input_shape):
        check_rank4(self, input_shape)
        return (1, 1, input_shape[-1]) if self.keepdims else (input_shape[-1],)


class GlobalAveragePooling2D(GlobalPooling2D):
    """The mean of each channel over the whole image."""

    def forward(self, x, training=False):
        """x (N, H, W, C) -> out (N, C), or (N, 1, 1, C) with keepdims."""
        self.cache = x.shape if training else None
        return x.mean(axis=(1, 2), keepdims=self.keepdims)

    def backward(self, dout):
        """dout (N, C) or (N, 1, 1, C) -> dx (N, H, W, C) = dout / (H*W) at every pixel."""
        N, H, W, C = self.cached()
        return np.broadcast_to(dout.reshape(N, 1, 1, C) / (H * W), (N, H, W, C)).copy()


class GlobalMaxPooling2D(GlobalPooling2D):
    """The max of each channel over the whole image."""

    def forward(self, x, training=False):
        """x (N, H, W, C) -> out (N, C), or (N, 1, 1, C) with keepdims."""
        N, H, W, C = x.shape
        flat = x.reshape(N, H * W, C)                                    # (N, H*W, C) pixels in row-major order
        winner = flat.argmax(axis=1)[:, None, :]                         # (N, 1, C) the first max
        out = np.take_along_axis(flat, winner, axis=1)                   # (N, 1, C)
        self.cache = (winner, x.shape) if training else None
        return out.reshape((N,) + self.out_shape)

    def backward(self, dout):
        """dout (N, C) or (N, 1, 1, C) -> dx (N, H, W, C), dout at each channel's winner, 0 elsewhere."""
        winner, (N, H, W, C) = self.cached()
        dx = np.zeros((N, H * W, C), dtype=dout.dtype)
        np.put_along_axis(dx, winner, dout.reshape(N, 1, C), axis=1)
        return dx.reshape(N, H, W, C)
