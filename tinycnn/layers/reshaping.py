"""Layers that move, copy or rescale values: their backward undoes the bookkeeping.

ZeroPadding2D  out = x with rows and columns of zeros around it     dx = dout without them (a crop)
Reshape        out = x.reshape(N, *target_shape)                    dx = dout.reshape(N, *x's shape)
Rescaling      out = x * scale + offset                             dx = dout * scale
UpSampling2D   "nearest":  out[n, i, j, c] = x[n, i // SH, j // SW, c]
                           dx[n, i, j, c] = sum of dout over the SHxSW block that copied x[n, i, j, c]
               "bilinear": out[n, :, :, c] = Ah @ x[n, :, :, c] @ Aw.T
                           dx[n, :, :, c]  = Ah.T @ dout[n, :, :, c] @ Aw
                           Ah (H*SH, H): each output row blends the two input rows nearest to its
                           centre, mapped back with half-pixel centres (TensorFlow's and JAX's resize,
                           which Keras uses, and PyTorch's align_corners=False); Aw likewise.
No layer here has parameters.
"""
import numpy as np

from .base import Layer, pair, shape_str
from .pooling import check_channels_last, check_rank4


def non_negative_pair(value):
    """One entry of ZeroPadding2D's padding: an int v -> (v, v), a pair of ints >= 0 as it is; else None."""
    value = (value, value) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value
    if (isinstance(value, (tuple, list)) and len(value) == 2
            and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0 for v in value)):
        return tuple(int(v) for v in value)
    return None


class ZeroPadding2D(Layer):
    """Adds rows and columns of zeros around every image.

    Args:
        padding: int p (p on every side), (ph, pw) (ph above and below, pw left and right),
                 or ((top, bottom), (left, right)). Default (1, 1).
    Input shape: (N, H, W, C). Output shape: (N, top + H + bottom, left + W + right, C).
    """

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(**kwargs)
        check_channels_last(data_format, self)
        if isinstance(padding, (int, np.integer)) and not isinstance(padding, bool):
            pairs = (non_negative_pair(padding),) * 2                     # p -> ((p, p), (p, p))
        elif isinstance(padding, (tuple, list)) and len(padding) == 2:
            pairs = tuple(non_negative_pair(p) for p in padding)          # (ph, pw) -> ((ph, ph), (pw, pw))
        else:
            pairs = (None,)
        if None in pairs:
            raise ValueError(f"{self}: padding must be an int, a tuple of 2 ints (symmetric height, width) or a "
                             f"tuple of 2 tuples of 2 ints ((top, bottom), (left, right)), all >= 0; "
                             f"received {padding!r}")
        self.padding = pairs                                              # ((top, bottom), (left, right))

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "data_format": "channels_last"}

    def compute_output_shape(self, input_shape):
        check_rank4(self, input_shape)
        (top, bottom), (left, right) = self.padding
        H, W, C = input_shape
        return (top + H + bottom, left + W + right, C)

    def forward(self, x, training=False):
        """x (N, H, W, C) -> out (N, top + H + bottom, left + W + right, C)."""
        self.cache = x.shape if training else None
        return np.pad(x, ((0, 0),) + self.padding + ((0, 0),))

    def backward(self, dout):
        """dout (N, Hp, Wp, C) -> dx (N, H, W, C): the padded zeros are constants, their gradient is dropped."""
        _, H, W, _ = self.cached()
        (top, _), (left, _) = self.padding
        return dout[:, top:top + H, left:left + W, :]


class Reshape(Layer):
    """Gives each sample a new shape with the same number of values, in row-major (NHWC) order.

    Args:
        target_shape: tuple of positive ints, batch excluded; one of them may be -1 (inferred).
    Input shape: any of the same size. Output shape: (N, *target_shape).
    """

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        dims_ok = isinstance(target_shape, (tuple, list)) and len(target_shape) > 0 and all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) and (d > 0 or d == -1) for d in target_shape)
        if not dims_ok:
            raise ValueError(f"{self}: target_shape must be a tuple of positive ints (batch excluded), one of them "
                             f"possibly -1; received {target_shape!r}")
        if list(target_shape).count(-1) > 1:
            raise ValueError(f"{self}: target_shape may contain at most one -1; received {tuple(target_shape)}")
        self.target_shape = tuple(int(d) for d in target_shape)

    def get_config(self):
        return {**super().get_config(), "target_shape": self.target_shape}

    def compute_output_shape(self, input_shape):
        size, known = int(np.prod(input_shape)), int(np.prod([d for d in self.target_shape if d != -1]))
        if (-1 in self.target_shape and size % known) or (-1 not in self.target_shape and size != known):
            raise ValueError(f"{self}: cannot reshape input of shape {shape_str(input_shape)} ({size} values per "
                             f"sample) to target_shape {self.target_shape}; expected a shape of {size} values")
        return tuple(size // known if d == -1 else d for d in self.target_shape)

    def forward(self, x, training=False):
        """x (N, *in_shape) -> out (N, *target_shape)."""
        self.cache = x.shape if training else None
        return x.reshape((x.shape[0],) + self.out_shape)

    def backward(self, dout):
        """dout (N, *target_shape) -> dx (N, *in_shape)."""
        return dout.reshape(self.cached())


class Rescaling(Layer):
    """out = x * scale + offset, e.g. Rescaling(1 / 255) for pixels in [0, 255].

    Args:
        scale, offset: numbers, or arrays that broadcast against one sample (e.g. one per channel).
    Input shape: any. Output shape: the same.
    """

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale, self.offset = self._constant(scale, "scale"), self._constant(offset, "offset")
        self.given = (scale, offset)                  # for the config: not rounded to float32

    def get_config(self):
        plain = [float(v) if np.ndim(v) == 0 else np.asarray(v).tolist() for v in self.given]   # JSON numbers
        return {**super().get_config(), "scale": plain[0], "offset": plain[1]}

    def _constant(self, value, arg):
        numeric = isinstance(value, (int, float, np.number, list, tuple, np.ndarray)) and not isinstance(value, bool)
        array = np.asarray(value) if numeric else None
        if array is None or array.dtype.kind not in "iuf":
            raise TypeError(f"{self}: {arg} must be a number or an array of numbers; received {value!r}")
        if not np.isfinite(array).all():
            raise ValueError(f"{self}: {arg} must be finite; received {value!r}")
        return array.astype(np.float32)

    def compute_output_shape(self, input_shape):
        for arg, array in (("scale", self.scale), ("offset", self.offset)):
            try:
                fits = np.broadcast_shapes(array.shape, input_shape) == tuple(input_shape)
            except ValueError:
                fits = False
            if not fits:
                raise ValueError(f"{self}: {arg} of shape {array.shape} does not broadcast to the input's shape "
                                 f"{shape_str(input_shape)}; expected a number or e.g. one value per channel "
                                 f"(shape ({input_shape[-1]},))")
        return input_shape

    def forward(self, x, training=False):
        """x (N, ...) -> out (N, ...)."""
        self.cache = x.shape if training else None
        return x * self.scale + self.offset

    def backward(self, dout):
        """dout (N, ...) -> dx (N, ...): the offset is a constant; each value was multiplied by its scale."""
        self.cached()
        return dout * self.scale


def bilinear_matrix(n, s):
    """(n*s, n): row o blends the two input cells nearest to o's centre mapped back, (o + 0.5) / s - 0.5."""
    src = np.maximum((np.arange(n * s) + 0.5) / s - 0.5, 0)     # past an edge: the edge cell itself
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    t = src - lo                                                 # how far from lo towards hi
    A = np.zeros((n * s, n))
    A[np.arange(n * s), lo] += 1 - t
    A[np.arange(n * s), hi] += t
    return A.astype(np.float32)


class UpSampling2D(Layer):
    """Makes every image SH times taller and SW times wider.

    Args:
        size: int or (SH, SW), default (2, 2).
        interpolation: "nearest" (repeat each pixel) or "bilinear".
    Input shape: (N, H, W, C). Output shape: (N, H*SH, W*SW, C).
    """

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        check_channels_last(data_format, self)
        self.size = pair(size, "size", self)
        if not isinstance(interpolation, str) or interpolation.lower() not in ("nearest", "bilinear"):
            raise ValueError(f"{self}: interpolation must be 'nearest' or 'bilinear' (tinycnn has not Keras's "
                             f"'bicubic', 'lanczos3' or 'lanczos5'); received {interpolation!r}")
        self.interpolation = interpolation.lower()

    def get_config(self):
        return {**super().get_config(), "size": self.size, "data_format": "channels_last",
                "interpolation": self.interpolation}

    def compute_output_shape(self, input_shape):
        check_rank4(self, input_shape)
        (H, W, C), (SH, SW) = input_shape, self.size
        if self.interpolation == "bilinear":
            self.Ah, self.Aw = bilinear_matrix(H, SH), bilinear_matrix(W, SW)      # (H*SH, H), (W*SW, W)
        return (H * SH, W * SW, C)

    def forward(self, x, training=False):
        """x (N, H, W, C) -> out (N, H*SH, W*SW, C)."""
        self.cache = x.shape if training else None
        if self.interpolation == "bilinear":
            return np.einsum("ph,nhwc,qw->npqc", self.Ah, x, self.Aw, optimize=True)
        return x.repeat(self.size[0], axis=1).repeat(self.size[1], axis=2)

    def backward(self, dout):
        """dout (N, H*SH, W*SW, C) -> dx (N, H, W, C): each input pixel collects the gradient of its copies."""
        N, H, W, C = self.cached()
        if self.interpolation == "bilinear":
            return np.einsum("ph,npqc,qw->nhwc", self.Ah, dout, self.Aw, optimize=True)
        return dout.reshape(N, H, self.size[0], W, self.size[1], C).sum(axis=(2, 4))
