"""A 3x3 convolution over one input channel (conv1 of an MNIST model), computed as written, with
its epilogue: out = dropout(pool(relu(conv(x) + b))) and its weight gradients in one pass each.

im2col would write each pixel's nine taps to memory for a product with an inner dimension of
only 9. Here the taps stay in registers and every filter takes its products from there; the
convolution's output z is never stored, only the pooled result. The taps must be named: a loop
over them was not kept in registers (see benchmarks/DECISIONS.md, "conv1"). A 2x2 window at
stride 1 reads a 4x4 patch of 16 pixels, which serve its four outputs at once (conv3x3_pool_s1);
other strides take the window's outputs one at a time (conv3x3_pool). When dL/dx is needed
(not the first layer), backward is im2col's.
"""
import numpy as np
from numba import njit

from .im2col_conv import Im2col

OPTS = dict(cache=True, nogil=True, error_model="numpy")


@njit(**OPTS)
def tap(x, n, row, col):
    """x[n, row, col, 0], or 0 outside the image (the padding)."""
    inside = 0 <= row < x.shape[1] and 0 <= col < x.shape[2]
    return x[n, row, col, 0] if inside else x.dtype.type(0)


@njit(**OPTS)
def taps(x, n, r0, c0):
    """The nine taps of the 3x3 window whose top-left input is (r0, c0)."""
    return (tap(x, n, r0, c0), tap(x, n, r0, c0 + 1), tap(x, n, r0, c0 + 2),
            tap(x, n, r0 + 1, c0), tap(x, n, r0 + 1, c0 + 1), tap(x, n, r0 + 1, c0 + 2),
            tap(x, n, r0 + 2, c0), tap(x, n, r0 + 2, c0 + 1), tap(x, n, r0 + 2, c0 + 2))


@njit(**OPTS)
def row4(x, n, r, c0):
    """x[n, r, c0 .. c0 + 3, 0], zeros outside the image."""
    zero = x.dtype.type(0)
    if not 0 <= r < x.shape[1]:
        return zero, zero, zero, zero
    if 0 <= c0 and c0 + 3 < x.shape[2]:
        return x[n, r, c0, 0], x[n, r, c0 + 1, 0], x[n, r, c0 + 2, 0], x[n, r, c0 + 3, 0]
    return tap(x, n, r, c0), tap(x, n, r, c0 + 1), tap(x, n, r, c0 + 2), tap(x, n, r, c0 + 3)


@njit(**OPTS)
def pick(k, v0, v1, v2, v3):
    """v_k: the tap seen by the window's winner k."""
    return v0 if k == 0 else (v1 if k == 1 else (v2 if k == 2 else v3))


@njit(**OPTS)
def conv3x3_pool_s1(x, w9, b, top, left, relu, out, argmax):
    """Stride 1, 2x2 pool: each window's four outputs from its 4x4 patch; out, argmax (N, PH, PW, F)."""
    N, PH, PW, F = out.shape
    zero = out.dtype.type(0)
    track = argmax.size > 0
    for n in range(N):
        for i in range(PH):
            for j in range(PW):
                r0, c0 = 2 * i - top, 2 * j - left
                a0, a1, a2, a3 = row4(x, n, r0, c0)
                b0, b1, b2, b3 = row4(x, n, r0 + 1, c0)
                c0_, c1, c2, c3 = row4(x, n, r0 + 2, c0)
                d0, d1, d2, d3 = row4(x, n, r0 + 3, c0)
                for f in range(F):
                    w0, w1, w2, w3, w4 = w9[0, f], w9[1, f], w9[2, f], w9[3, f], w9[4, f]
                    w5, w6, w7, w8 = w9[5, f], w9[6, f], w9[7, f], w9[8, f]
                    z0 = b[f] + a0 * w0 + a1 * w1 + a2 * w2 + b0 * w3 + b1 * w4 + b2 * w5 + c0_ * w6 + c1 * w7 + c2 * w8
                    z1 = b[f] + a1 * w0 + a2 * w1 + a3 * w2 + b1 * w3 + b2 * w4 + b3 * w5 + c1 * w6 + c2 * w7 + c3 * w8
                    z2 = b[f] + b0 * w0 + b1 * w1 + b2 * w2 + c0_ * w3 + c1 * w4 + c2 * w5 + d0 * w6 + d1 * w7 + d2 * w8
                    z3 = b[f] + b1 * w0 + b2 * w1 + b3 * w2 + c1 * w3 + c2 * w4 + c3 * w5 + d1 * w6 + d2 * w7 + d3 * w8
                    if relu:
                        z0, z1, z2, z3 = max(z0, zero), max(z1, zero), max(z2, zero), max(z3, zero)
                    best, k = z0, 0                             # strict: a tie keeps the first
                    if z1 > best:
                        best, k = z1, 1
                    if z2 > best:
                        best, k = z2, 2
                    if z3 > best:
                        best, k = z3, 3
                    out[n, i, j, f] = best
                    if track:
                        argmax[n, i, j, f] = k


@njit(**OPTS)
def conv3x3_pool(x, w9, b, SH, SW, top, left, relu, pool, best, won, out, argmax):
    """Any stride, pooled (2x2) or not: a window's outputs one at a time. best, won (F,): scratch."""
    N, PH, PW, F = out.shape
    zero = out.dtype.type(0)
    P = 2 if pool else 1                                        # outputs per window side
    track = argmax.size > 0
    for n in range(N):
        for i in range(PH):
            for j in range(PW):
                for f in range(F):
                    best[f] = -np.inf
                for o in range(P * P):                          # the window's outputs, in the reference's order
                    x0, x1, x2, x3, x4, x5, x6, x7, x8 = taps(x, n, (P * i + o // P) * SH - top, (P * j + o % P) * SW - left)
                    for f in range(F):
                        v = (b[f] + x0 * w9[0, f] + x1 * w9[1, f] + x2 * w9[2, f] + x3 * w9[3, f] + x4 * w9[4, f]
                             + x5 * w9[5, f] + x6 * w9[6, f] + x7 * w9[7, f] + x8 * w9[8, f])
                        if relu:
                            v = max(v, zero)
                        better = v > best[f]                    # strict: a tie keeps the first
                        best[f] = v if better else best[f]
                        won[f] = o if better else won[f]
                for f in range(F):
                    out[n, i, j, f] = best[f]
                    if track:
                        argmax[n, i, j, f] = np.uint8(won[f])


@njit(**OPTS)
def conv3x3_pool_s1_backward(x, g, argmax, top, left, image_dw, dw):
    """dw (9, F) += the kernel's gradient under conv3x3_pool_s1: each window's gradient g (N, PH, PW, F)
    times the taps its winner read. image_dw (9, F): one image's sums, in g's type."""
    N, PH, PW, F = g.shape
    for n in range(N):
        for k in range(9):
            for f in range(F):
                image_dw[k, f] = 0
        for i in range(PH):
            for j in range(PW):
                r0, c0 = 2 * i - top, 2 * j - left
                a0, a1, a2, a3 = row4(x, n, r0, c0)
                b0, b1, b2, b3 = row4(x, n, r0 + 1, c0)
                c0_, c1, c2, c3 = row4(x, n, r0 + 2, c0)
                d0, d1, d2, d3 = row4(x, n, r0 + 3, c0)
                for f in range(F):
                    v, k = g[n, i, j, f], argmax[n, i, j, f]
                    image_dw[0, f] += v * pick(k, a0, a1, b0, b1)
                    image_dw[1, f] += v * pick(k, a1, a2, b1, b2)
                    image_dw[2, f] += v * pick(k, a2, a3, b2, b3)
                    image_dw[3, f] += v * pick(k, b0, b1, c0_, c1)
                    image_dw[4, f] += v * pick(k, b1, b2, c1, c2)
                    image_dw[5, f] += v * pick(k, b2, b3, c2, c3)
                    image_dw[6, f] += v * pick(k, c0_, c1, d0, d1)
                    image_dw[7, f] += v * pick(k, c1, c2, d1, d2)
                    image_dw[8, f] += v * pick(k, c2, c3, d2, d3)
        for k in range(9):
            for f in range(F):
                dw[k, f] += image_dw[k, f]


@njit(**OPTS)
def conv3x3_pool_backward(x, g, argmax, SH, SW, top, left, pool, image_dw, dw):
    """conv3x3_pool's kernel gradient, one window output at a time."""
    N, PH, PW, F = g.shape
    zero = g.dtype.type(0)
    P = 2 if pool else 1
    for n in range(N):
        for k in range(9):
            for f in range(F):
                image_dw[k, f] = zero
        for i in range(PH):
            for j in range(PW):
                for o in range(P * P):                          # each output's gradient to its taps
                    x0, x1, x2, x3, x4, x5, x6, x7, x8 = taps(x, n, (P * i + o // P) * SH - top, (P * j + o % P) * SW - left)
                    for f in range(F):
                        v = g[n, i, j, f] if not pool or argmax[n, i, j, f] == o else zero
                        image_dw[0, f] += x0 * v
                        image_dw[1, f] += x1 * v
                        image_dw[2, f] += x2 * v
                        image_dw[3, f] += x3 * v
                        image_dw[4, f] += x4 * v
                        image_dw[5, f] += x5 * v
                        image_dw[6, f] += x6 * v
                        image_dw[7, f] += x7 * v
                        image_dw[8, f] += x8 * v
        for k in range(9):
            for f in range(F):
                dw[k, f] += image_dw[k, f]


class Direct(Im2col):
    """The kernels above, a block of images at a time (see conv.py); im2col's backward when
    dL/dx is wanted."""

    name = "direct 3x3, one channel"

    def __init__(self, *args):
        super().__init__(*args)
        self.s1 = (self.SH, self.SW) == (1, 1)
        self.kernels = ((conv3x3_pool_s1, conv3x3_pool_s1_backward) if self.s1 else
                        (conv3x3_pool, conv3x3_pool_backward)) + (self.kernels[1],)

    fused, fused_dx = True, False    # the epilogue in registers; dx by im2col (unfused_backward)

    def forward(self, x, ctx, b, relu, pool, out, argmax, saved, scratch):
        if self.s1 and pool:
            return conv3x3_pool_s1(x, ctx[0], b, self.top, self.left, relu, out, argmax)
        F = out.shape[3]
        conv3x3_pool(x, ctx[0], b, self.SH, self.SW, self.top, self.left, relu, pool,
                     scratch("best", (F,), out.dtype), scratch("won", (F,), out.dtype), out, argmax)

    def backward(self, g, argmax, pool, x, ctx, saved, dw, dx, scratch):
        """dw (9, F) += this block's part, from g, the gradient at the (pooled) outputs; no dx."""
        image_dw = scratch("image_dw", (9, g.shape[3]), g.dtype)
        if self.s1 and pool:
            return conv3x3_pool_s1_backward(x, g, argmax, self.top, self.left, image_dw, dw)
        conv3x3_pool_backward(x, g, argmax, self.SH, self.SW, self.top, self.left, pool, image_dw, dw)
