"""A convolution and its epilogue, over a slice of the batch, a block of images at a time.

    algorithm(x_shape, w_shape, strides, pads)   which way to compute it, by its shapes:
        Direct    a 3x3 kernel over one channel (direct.py)
        Winograd  3x3, stride 1, where it needs fewer operations than im2col (winograd.py)
        Im2col    everything else (im2col_conv.py)
    Conv(...)     forward: z = the convolution (no bias), then the epilogue (bias, ReLU, 2x2 max-pool:
                  elementwise.py) while z is still in the core's cache, then the dropout; backward:
                  the epilogue's gradient, then the algorithm's dW and dx, block by block.
Each algorithm has prepare(w) (once per step: a reshaped or transformed kernel), forward,
backward, and finish(dw) (the summed dW of every block, in the kernel's layout).
"""
import math

import numpy as np

from . import blocks, elementwise, winograd
from .direct import Direct
from .im2col_conv import Im2col
from ..numpy_ops import out_size

NO_DROPOUT = (np.uint64(0), np.float32(1), np.uint64(0))     # (threshold, scale, seed): every unit kept
EMPTY = np.zeros((0, 0, 0, 0), dtype=np.uint8)              # no winners kept (inference)


def dropout_args(rate, seed, dtype=np.float32):
    """(threshold, scale, seed) for elementwise.epilogue: keep a unit when its 53 random bits >= threshold."""
    if rate == 0:
        return NO_DROPOUT
    return np.uint64(int(np.ceil(rate * 2.0 ** 53))), np.dtype(dtype).type(1 / (1 - rate)), np.uint64(seed)


def out_hw(x_shape, w_shape, strides, pads):
    H, W = x_shape[:2]
    return (out_size(H, w_shape[0], strides[0], pads[0], pads[1]), out_size(W, w_shape[1], strides[1], pads[2], pads[3]))


def algorithm(x_shape, w_shape, strides, pads):
    """x_shape (H, W, C) of one image."""
    KH, KW, C, F = w_shape
    hw = out_hw(x_shape, w_shape, strides, pads)
    if (KH, KW, C) == (3, 3, 1):
        return Direct(x_shape, w_shape, strides, pads, hw)
    if (KH, KW) == (3, 3) and tuple(strides) == (1, 1) and winograd.pays(C, F):
        return winograd.Winograd(x_shape, w_shape, pads, hw)
    return Im2col(x_shape, w_shape, strides, pads, hw)


def apply_dropout(v, dropout, start):
    """v *= the mask of dropout = (threshold, scale, seed), if any; v's first element is `start` of the batch."""
    if dropout[0]:
        elementwise.dropout(v.reshape(-1), *dropout, np.int64(start))


def gradients(dout, out, relu, dropout, start, g, db):
    """g = dout through the dropout and the ReLU (the epilogue's gradient before the pooling);
    db (F,) float64 += its column sums."""
    F = g.shape[-1]
    elementwise.gradients(dout.reshape(-1, F), out.reshape(-1, F), relu, *dropout, np.int64(start), g.reshape(-1, F),
                          np.empty(F, dtype=g.dtype), db)
    return g


class Conv:
    """out = dropout(pool(relu(conv(x) + b))), any part of the epilogue optional (pool: 2x2, stride 2)."""

    def __init__(self, x_shape, w_shape, strides, pads, relu=False, pool=False):
        self.alg = algorithm(x_shape, w_shape, strides, pads)
        self.OH, self.OW = out_hw(x_shape, w_shape, strides, pads)
        self.F, self.relu, self.pool = w_shape[3], relu, pool
        self.taps = math.prod(w_shape[:3])                   # multiply-adds per output, KH KW C
        self.out_shape = (self.OH // 2, self.OW // 2, self.F) if pool else (self.OH, self.OW, self.F)
        self.per = math.prod(self.out_shape)               # outputs per image
        z_bytes = self.OH * self.OW * self.F * 4
        self.step = blocks.images_per_block(self.alg.bytes_per_image() + z_bytes, self.alg.rows_per_image)

    def forward(self, x, ctx, b, dropout, start, out, argmax, saved, scratch):
        """x (n, H, W, C) -> out (n, *out_shape); argmax (n, *out_shape) or EMPTY; saved: the
        algorithm's own (Winograd's V) or None. `start`: index of out[0, 0, 0, 0] in the batch."""
        for s, e in blocks.split(0, len(x), self.step):
            part = argmax[s:e] if argmax.size else argmax
            if self.alg.fused:                                  # the algorithm does the epilogue itself
                self.alg.forward(x[s:e], ctx, b, self.relu, self.pool, out[s:e], part, self._part(saved, s, e), scratch)
            else:
                z = scratch("z", (e - s, self.OH, self.OW, self.F), x.dtype)
                self.alg.forward(x[s:e], ctx, z, self._part(saved, s, e), scratch)
                elementwise.epilogue(z, b, self.relu, self.pool, out[s:e], part)
        apply_dropout(out, dropout, start)

    def backward(self, dout, x, out, argmax, ctx, saved, dropout, start, dw, db, dx, scratch):
        """dw (the algorithm's dw_shape) and db (F,) float64 += this slice's parts; dx (n, H, W, C) if given."""
        g = gradients(dout, out, self.relu, dropout, start, scratch("g", dout.shape, dout.dtype), db)
        fused = self.alg.fused and (dx is None or self.alg.fused_dx)
        for s, e in blocks.split(0, len(dout), self.step):
            part, dx_part = argmax[s:e] if argmax.size else argmax, None if dx is None else dx[s:e]
            if fused:
                self.alg.backward(g[s:e], part, self.pool, x[s:e], ctx, self._part(saved, s, e), dw, dx_part, scratch)
                continue
            if self.pool:
                dz = scratch("z", (e - s, self.OH, self.OW, self.F), dout.dtype)
                elementwise.unpool(g[s:e], part, dz)
            else:
                dz = g[s:e]
            self.alg.unfused_backward(dz, x[s:e], ctx, self._part(saved, s, e), dw, dx_part, scratch)

    def _part(self, saved, s, e):
        """Images s..e-1 of what the algorithm keeps from forward for backward, if anything."""
        return None if saved is None else saved[s * self.alg.per:e * self.alg.per]
