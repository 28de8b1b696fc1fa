"""Convolution by im2col: every patch a row of a matrix, then one BLAS product.

    im2col(x, KH, KW, SH, SW, top, left, OH, OW, cols)     x (N, H, W, C) -> cols (N*OH*OW, KH*KW*C)
    im2col_t(x, KH, KW, SH, SW, top, left, OH, OW, colsT)  the same, transposed: (KH*KW*C, N*OH*OW)
    col2im(cols, KH, KW, SH, SW, top, left, OH, OW, dx)    the adjoint: overlapping windows add up
numpy_ops.im2col and col2im say what these compute; here the padding is folded into the index
arithmetic (an out-of-image tap reads 0) instead of copying the input into a padded one.
Thin patches (conv1's 9 taps) are unrolled transposed: a row of colsT is a run of neighbouring
pixels of one image row, which the compiler copies with vector instructions.
"""
import numpy as np
from numba import njit

OPTS = dict(cache=True, nogil=True, error_model="numpy")
THIN = 16                # patches of at most this many taps are unrolled transposed


@njit(**OPTS)
def im2col(x, KH, KW, SH, SW, top, left, OH, OW, cols):
    N, H, W, C = x.shape
    zero = x.dtype.type(0)
    for n in range(N):
        for i in range(OH):
            for j in range(OW):
                r = (n * OH + i) * OW + j
                for kh in range(KH):
                    row = i * SH + kh - top
                    for kw in range(KW):
                        col = j * SW + kw - left
                        base = (kh * KW + kw) * C
                        if 0 <= row < H and 0 <= col < W:
                            for c in range(C):
                                cols[r, base + c] = x[n, row, col, c]
                        else:
                            for c in range(C):
                                cols[r, base + c] = zero


@njit(**OPTS)
def im2col_t(x, KH, KW, SH, SW, top, left, OH, OW, colsT):
    N, H, W, C = x.shape
    zero = x.dtype.type(0)
    for n in range(N):
        for i in range(OH):
            r = (n * OH + i) * OW
            for kh in range(KH):
                row = i * SH + kh - top
                for kw in range(KW):
                    for c in range(C):
                        p = (kh * KW + kw) * C + c
                        for j in range(OW):
                            col = j * SW + kw - left
                            inside = 0 <= row < H and 0 <= col < W
                            colsT[p, r + j] = x[n, row, col, c] if inside else zero


@njit(**OPTS)
def col2im(cols, KH, KW, SH, SW, top, left, OH, OW, dx):
    N, H, W, C = dx.shape
    zero = dx.dtype.type(0)
    for n in range(N):
        for row in range(H):
            for col in range(W):
                for c in range(C):
                    dx[n, row, col, c] = zero
        for i in range(OH):
            for j in range(OW):
                r = (n * OH + i) * OW + j
                for kh in range(KH):
                    row = i * SH + kh - top
                    if 0 <= row < H:
                        for kw in range(KW):
                            col = j * SW + kw - left
                            if 0 <= col < W:
                                base = (kh * KW + kw) * C
                                for c in range(C):
                                    dx[n, row, col, c] += cols[r, base + c]


class Im2col:
    """The algorithm for one layer's shapes, a block of images at a time (see conv.py).
    Backward unrolls the block's input again rather than keeping cols: in the core's cache,
    redoing it costs less than storing it for the whole batch."""

    name = "im2col"
    fused = False                    # the epilogue is elementwise.epilogue's (see conv.py)

    def __init__(self, x_shape, w_shape, strides, pads, out_hw):
        self.KH, self.KW, self.C, self.F = w_shape
        self.K = self.KH * self.KW * self.C                      # taps per patch
        (self.SH, self.SW), (self.top, self.left) = strides, (pads[0], pads[2])
        self.OH, self.OW = out_hw
        self.rows_per_image = self.OH * self.OW                  # rows of cols
        self.thin = self.K <= THIN
        self.kernels = (im2col_t if self.thin else im2col, col2im)

    def bytes_per_image(self):
        return self.OH * self.OW * self.K * 4 * 2                # cols, and dcols in backward

    def prepare(self, w):
        w2 = np.ascontiguousarray(w).reshape(self.K, self.F)      # (K, F)
        return w2, np.ascontiguousarray(w2.T)                     # and (F, K)

    def saved_shape(self, n):
        return None                                               # nothing kept: cols is redone

    def cols(self, x, scratch):
        """cols (n*OH*OW, K) of a block (a transposed array's view, for thin patches)."""
        rows = len(x) * self.OH * self.OW
        if self.thin:
            colsT = scratch("cols", (self.K, rows), x.dtype)
            im2col_t(x, self.KH, self.KW, self.SH, self.SW, self.top, self.left, self.OH, self.OW, colsT)
            return colsT.T
        cols = scratch("cols", (rows, self.K), x.dtype)
        im2col(x, self.KH, self.KW, self.SH, self.SW, self.top, self.left, self.OH, self.OW, cols)
        return cols

    def forward(self, x, ctx, z, saved, scratch):
        """z (n, OH, OW, F) = cols @ W, without bias."""
        np.matmul(self.cols(x, scratch), ctx[0], out=z.reshape(-1, self.F))

    def unfused_backward(self, dz, x, ctx, saved, dw, dx, scratch):
        """dw (K, F) += cols.T @ dz; dx (n, H, W, C) = col2im(dz @ W.T), if dx is given."""
        cols, dz2 = self.cols(x, scratch), dz.reshape(-1, self.F)
        part = scratch("dw", (self.K, self.F), dz.dtype)
        np.matmul(cols.T, dz2, out=part)
        dw += part
        if dx is not None:
            dcols = scratch("dcols", (len(dz2), self.K), dz.dtype)
            np.matmul(dz2, ctx[1], out=dcols)
            col2im(dcols, self.KH, self.KW, self.SH, self.SW, self.top, self.left, self.OH, self.OW, dx)

    def dw_shape(self):
        return (self.K, self.F)

    def finish(self, dw):
        return dw.reshape(self.KH, self.KW, self.C, self.F)
