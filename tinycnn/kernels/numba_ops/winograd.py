"""Convolution by Winograd's F(6x6, 3x3): a 3x3, stride-1 convolution with 5x fewer multiplications.

Summing over input channels commutes with AT ... A (winograd_tiles.py), so a whole layer is,
for each of the 64 positions k of a transformed tile, one matrix product over the channels:

    U[k]       = (G g GT)[k]          (C, F)   the kernel, transformed once per step
    V[:, k]    = (BT d B)[k]          (T, C)   every tile t of every image, transformed
    M[:, k]    = V[:, k] @ U[k]       (T, F)   64 BLAS products with inner dimension C
    z          = AT M[t] A            (6, 6) per tile and filter
Backward runs the same linear steps in reverse, each with its transposed matrices:
    dM[t]      = A dz[t] AT           (8, 8) per tile and filter
    dU[k]      = V[:, k].T @ dM[:, k] (C, F)   ->  dW = GT dU G   (V transformed again, block by block)
    dV[:, k]   = dM[:, k] @ U[k].T    (T, C)   ->  dx = B dV[t] BT per tile; overlapping tiles add
Multiplications per output: 64 C / 36 = 1.8 C, against 9 C for im2col. It is the same
convolution as numpy_ops.conv2d_forward's, rounded differently. Outputs whose 3x3 window reads
only zeros come out exactly 0 (then exactly the bias), as with im2col: otherwise a rounding
residue of about 1e-9 would flip a ReLU's gradient there, which happens often, since a ReLU
feeds this layer and MNIST's background is zero. A NaN or inf input spoils the whole 6x6 block
of every tile that reads it, where im2col spoils only the outputs whose window holds it.
"""
import numpy as np
from numba import njit

from . import winograd_tiles as tiles_
from .winograd_tiles import POSITIONS, SIZE, TILE, _a, _at, _b, _bt

OPTS = dict(cache=True, nogil=True, error_model="numpy")


def tiles(OH, OW):
    """Tiles per image side: enough 6x6 blocks to cover the output (the last ones cut off)."""
    return -(-OH // TILE), -(-OW // TILE)


def pays(C, F):
    """Does Winograd need less time than im2col for C input channels and F filters? A count of
    operations per 6x6 block, each transform operation weighed as 20 of BLAS's (see
    benchmarks/DECISIONS.md, "Winograd: when it pays")."""
    products, transforms, im2col = 128 * C * F, 384 * C + 280 * F, 648 * C * F
    return products + 20 * transforms < im2col


@njit(**OPTS)
def reads_nonzero(x, top, left, support):
    """support (n, OH, OW) = True where the output's 3x3 window reads an input pixel that is not
    all 0 (a NaN is not 0); pixel (i, j) is read by outputs (i + top - 2 .. i + top, likewise j)."""
    N, H, W, C = x.shape
    OH, OW = support.shape[1], support.shape[2]
    support[:] = False
    for n in range(N):
        for i in range(H):
            for j in range(W):
                nonzero = False
                for c in range(C):
                    if x[n, i, j, c] != 0:
                        nonzero = True
                        break
                if nonzero:
                    for oi in range(max(i + top - 2, 0), min(i + top + 1, OH)):
                        for oj in range(max(j + left - 2, 0), min(j + left + 1, OW)):
                            support[n, oi, oj] = True


@njit(**OPTS)
def input_transform(x, top, left, TH, TW, d, r, V):
    """V[t] = BT d B for every 8x8 tile d of x (N, H, W, C); tile t = (n, ty, tx) starts at row
    6 ty - top and column 6 tx - left, and taps outside x read 0 (the padding).
    d, r (8, 8, C): scratch; V (T, 64, C)."""
    N, H, W, C = x.shape
    zero = x.dtype.type(0)
    tiles = V.reshape(V.shape[0], SIZE, SIZE, C)                # V[t] as (8, 8, C)
    for n in range(N):
        for ty in range(TH):
            for tx in range(TW):
                t = (n * TH + ty) * TW + tx
                for a in range(SIZE):
                    row = TILE * ty + a - top
                    for b in range(SIZE):
                        col = TILE * tx + b - left
                        if 0 <= row < H and 0 <= col < W:
                            for c in range(C):
                                d[a, b, c] = x[n, row, col, c]
                        else:
                            for c in range(C):
                                d[a, b, c] = zero
                v = tiles[t]                                            # v = (BT d B)T:
                for b in range(SIZE):                                   # r = BT d, column by column
                    for c in range(C):
                        r[0, b, c], r[1, b, c], r[2, b, c], r[3, b, c], r[4, b, c], r[5, b, c], r[6, b, c], r[7, b, c] = _bt(
                            d[0, b, c], d[1, b, c], d[2, b, c], d[3, b, c], d[4, b, c], d[5, b, c], d[6, b, c], d[7, b, c])
                for a in range(SIZE):                                   # v = (r B)T: row a of r B is column a of v
                    for c in range(C):
                        v[0, a, c], v[1, a, c], v[2, a, c], v[3, a, c], v[4, a, c], v[5, a, c], v[6, a, c], v[7, a, c] = _bt(
                            r[a, 0, c], r[a, 1, c], r[a, 2, c], r[a, 3, c], r[a, 4, c], r[a, 5, c], r[a, 6, c], r[a, 7, c])


@njit(**OPTS)
def output_transform(M, TH, TW, support, b, relu, pool, r, y, out, argmax):
    """out = the epilogue of z = AT M A for every tile: M (T, 64, F) -> out (N, PH, PW, F), z + b,
    then the ReLU (if relu) and the 2x2 max-pool (if pool; argmax keeps the winners if not empty).
    z is 0 where support (N, OH, OW) is False, so such outputs are exactly b. A tile's 6x6 outputs hold 3x3 whole
    windows; rows and columns past the output's edge are dropped. r (6, 8, F), y (6, 6, F): scratch."""
    N, PH, PW, F = out.shape
    zero = out.dtype.type(0)
    track = argmax.size > 0
    tiles = M.reshape(M.shape[0], SIZE, SIZE, F)                # M[t] as (8, 8, F)
    P = 2 if pool else 1                                        # outputs per window side
    W_ = TILE // P                                              # windows per tile side
    for n in range(N):
        for ty in range(TH):
            for tx in range(TW):
                t = (n * TH + ty) * TW + tx
                m = tiles[t]                                            # y = (AT m A)T = AT M A:
                for q in range(SIZE):                                   # r = AT m, column by column
                    for f in range(F):
                        r[0, q, f], r[1, q, f], r[2, q, f], r[3, q, f], r[4, q, f], r[5, q, f] = _at(
                            m[0, q, f], m[1, q, f], m[2, q, f], m[3, q, f], m[4, q, f], m[5, q, f], m[6, q, f], m[7, q, f])
                for i in range(TILE):                                   # y = (r A)T
                    for f in range(F):
                        y[0, i, f], y[1, i, f], y[2, i, f], y[3, i, f], y[4, i, f], y[5, i, f] = _at(
                            r[i, 0, f], r[i, 1, f], r[i, 2, f], r[i, 3, f], r[i, 4, f], r[i, 5, f], r[i, 6, f], r[i, 7, f])
                for pi in range(min(W_, PH - W_ * ty)):         # a pass of its own: the edge and support
                    for pj in range(min(W_, PW - W_ * tx)):     # tests slow the transform down
                        for o in range(P * P):                  # the window's outputs, in the reference's order
                            i, j = P * pi + o // P, P * pj + o % P
                            reads = support[n, TILE * ty + i, TILE * tx + j]
                            for f in range(F):
                                v = (y[i, j, f] if reads else zero) + b[f]
                                if relu and v < zero:
                                    v = zero
                                if o == 0 or v > out[n, W_ * ty + pi, W_ * tx + pj, f]:    # a tie keeps the first
                                    out[n, W_ * ty + pi, W_ * tx + pj, f] = v
                                    if track:
                                        argmax[n, W_ * ty + pi, W_ * tx + pj, f] = o


@njit(**OPTS)
def output_transform_backward(g, argmax, pool, TH, TW, u, r, dM):
    """dM = A dz AT for every tile, dz the gradient at z: g (N, PH, PW, F) at each window's winner
    (if pool), else g itself; 0 past the edge. u (6, 6, F), r (8, 6, F): scratch; dM (T, 64, F)."""
    N, PH, PW, F = g.shape
    zero = g.dtype.type(0)
    tiles = dM.reshape(dM.shape[0], SIZE, SIZE, F)              # dM[t] as (8, 8, F)
    P = 2 if pool else 1
    W_ = TILE // P
    for n in range(N):
        for ty in range(TH):
            for tx in range(TW):
                for i in range(TILE):
                    for j in range(TILE):
                        pi, pj, o = W_ * ty + i // P, W_ * tx + j // P, (i % P) * P + j % P
                        if pi < PH and pj < PW:
                            for f in range(F):
                                u[i, j, f] = g[n, pi, pj, f] if not pool or argmax[n, pi, pj, f] == o else zero
                        else:
                            for f in range(F):
                                u[i, j, f] = zero
                dm = tiles[(n * TH + ty) * TW + tx]                     # dm = (A u AT)T:
                for j in range(TILE):                                   # r = A u, column by column
                    for f in range(F):
                        r[0, j, f], r[1, j, f], r[2, j, f], r[3, j, f], r[4, j, f], r[5, j, f], r[6, j, f], r[7, j, f] = _a(
                            u[0, j, f], u[1, j, f], u[2, j, f], u[3, j, f], u[4, j, f], u[5, j, f])
                for a in range(SIZE):                                   # dm = (r AT)T
                    for f in range(F):
                        (dm[0, a, f], dm[1, a, f], dm[2, a, f], dm[3, a, f], dm[4, a, f], dm[5, a, f], dm[6, a, f],
                         dm[7, a, f]) = _a(r[a, 0, f], r[a, 1, f], r[a, 2, f], r[a, 3, f], r[a, 4, f], r[a, 5, f])


@njit(**OPTS)
def input_transform_backward(dV, top, left, TH, TW, r, s, dx):
    """dx = the sum over tiles of B dV BT, each 8x8 tile added where input_transform read it
    (taps in the padding are dropped). dV (T, 64, C) -> dx (N, H, W, C); r, s (8, 8, C): scratch."""
    N, H, W, C = dx.shape
    zero = dx.dtype.type(0)
    tiles = dV.reshape(dV.shape[0], SIZE, SIZE, C)              # dV[t] as (8, 8, C)
    for n in range(N):
        for row in range(H):
            for col in range(W):
                for c in range(C):
                    dx[n, row, col, c] = zero
        for ty in range(TH):
            for tx in range(TW):
                dv = tiles[(n * TH + ty) * TW + tx]                     # s = (B dv BT)T = B dV BT:
                for b in range(SIZE):                                   # r = B dv, column by column
                    for c in range(C):
                        r[0, b, c], r[1, b, c], r[2, b, c], r[3, b, c], r[4, b, c], r[5, b, c], r[6, b, c], r[7, b, c] = _b(
                            dv[0, b, c], dv[1, b, c], dv[2, b, c], dv[3, b, c], dv[4, b, c], dv[5, b, c], dv[6, b, c],
                            dv[7, b, c])
                for a in range(SIZE):                                   # s = (r BT)T
                    for c in range(C):
                        s[0, a, c], s[1, a, c], s[2, a, c], s[3, a, c], s[4, a, c], s[5, a, c], s[6, a, c], s[7, a, c] = _b(
                            r[a, 0, c], r[a, 1, c], r[a, 2, c], r[a, 3, c], r[a, 4, c], r[a, 5, c], r[a, 6, c], r[a, 7, c])
                for a in range(SIZE):
                    row = TILE * ty + a - top
                    if 0 <= row < H:
                        for b in range(SIZE):
                            col = TILE * tx + b - left
                            if 0 <= col < W:
                                for c in range(C):
                                    dx[n, row, col, c] += s[a, b, c]


class Winograd:
    """The algorithm for one layer's shapes, a block of images at a time (see conv.py)."""

    name = "winograd"
    kernels = (reads_nonzero, input_transform, output_transform, output_transform_backward, input_transform_backward)

    def __init__(self, x_shape, w_shape, pads, out_hw):
        (self.H, self.W, self.C), self.F = x_shape, w_shape[3]
        self.pads, self.out_hw, (self.top, self.left) = tuple(pads), tuple(out_hw), (pads[0], pads[2])
        self.TH, self.TW = tiles(*out_hw)
        self.per = self.TH * self.TW                                     # tiles per image
        self.rows_per_image = self.per                                   # rows of each of the 64 products

    def bytes_per_image(self):
        """What one image's block buffers take: V, M (or dM) and dV (no z: the epilogue is fused)."""
        return self.per * POSITIONS * (2 * self.C + self.F) * 4

    def prepare(self, w):
        """U (64, C, F) and its transpose (64, F, C), once per step."""
        U = tiles_.kernel_transform(w)
        return U, np.ascontiguousarray(U.transpose(0, 2, 1))

    def saved_shape(self, n):
        """Nothing kept: backward transforms each block's x again (see benchmarks/DECISIONS.md,
        "Course convolutions"), cheaper in the core's cache than V written out and read back."""
        return None

    def transform(self, x, scratch):
        """V (t, 64, C) of a block x (n, H, W, C), in the block's buffer."""
        V = scratch("V", (len(x) * self.per, POSITIONS, self.C), x.dtype)
        input_transform(x, self.top, self.left, self.TH, self.TW, scratch("d", (SIZE, SIZE, self.C), x.dtype),
                        scratch("r", (SIZE, SIZE, self.C), x.dtype), V)
        return V

    fused = fused_dx = True          # computes the epilogue itself (see conv.py)

    def forward(self, x, ctx, b, relu, pool, out, argmax, saved, scratch):
        """out (n, PH, PW, F) = the epilogue of the convolution of x (n, H, W, C)."""
        U, _ = ctx
        t, F = len(x) * self.per, self.F
        V = self.transform(x, scratch)
        support = scratch("support", (len(x),) + self.out_hw, np.bool_)
        reads_nonzero(x, self.top, self.left, support)
        M = scratch("M", (t, POSITIONS, F), x.dtype)
        np.matmul(V.transpose(1, 0, 2), U, out=M.transpose(1, 0, 2))    # 64 x (t, C) @ (C, F)
        output_transform(M, self.TH, self.TW, support, b, relu, pool, scratch("ry", (TILE, SIZE, F), x.dtype),
                         scratch("y", (TILE, TILE, F), x.dtype), out, argmax)

    def backward(self, g, argmax, pool, x, ctx, saved, dw, dx, scratch):
        """dw (64, C, F) += dU of this block, from g, the gradient at the epilogue's (pooled) outputs
        past its ReLU; dx (n, H, W, C) = dL/dx, if dx is given."""
        _, UT = ctx
        t, C, F = len(g) * self.per, self.C, self.F
        dM = scratch("M", (t, POSITIONS, F), g.dtype)
        output_transform_backward(g, argmax, pool, self.TH, self.TW, scratch("u", (TILE, TILE, F), g.dtype),
                                  scratch("ru", (SIZE, TILE, F), g.dtype), dM)
        dMk = dM.transpose(1, 0, 2)                                        # (64, t, F)
        V = self.transform(x, scratch)
        dU = scratch("dU", (POSITIONS, C, F), g.dtype)
        np.matmul(V.transpose(1, 2, 0), dMk, out=dU)                       # 64 x (C, t) @ (t, F)
        dw += dU
        if dx is not None:
            dV = scratch("V", (t, POSITIONS, C), g.dtype)                  # V's buffer: dU is done
            np.matmul(dMk, UT, out=dV.transpose(1, 0, 2))                  # 64 x (t, F) @ (F, C)
            input_transform_backward(dV, self.top, self.left, self.TH, self.TW, scratch("d", (SIZE, SIZE, C), g.dtype),
                                     scratch("r", (SIZE, SIZE, C), g.dtype), dx)

    def dw_shape(self):
        return (POSITIONS, self.C, self.F)

    def finish(self, dU):
        """dW (3, 3, C, F) = GT dU G, from the summed dU of every block."""
        return tiles_.kernel_transform_backward(dU)
