"""MaxPooling2D: keep the largest value of every window.

Forward:   out[n, i, j, c] = max of x[n, window(i, j), c]        (N, OH, OW, C)
           and, when training, remember which cell won (argmax)  (N, OH, OW, C)
Backward:  the max is a switch: the winner's gradient is dout, every other cell's is 0.
           dx = zeros (N, H, W, C); dx[winner of (n,i,j,c)] += dout[n, i, j, c]
No parameters. The loops are K.maxpool_forward / K.maxpool_backward (tinycnn/kernels/numpy_ops.py).
"""
from ..backend import K
from .base import Layer, check_padding, pair, window_shapes


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
