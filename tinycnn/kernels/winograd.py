"""Winograd's F(4x4, 3x3): a 3x3, stride-1 convolution with 4x fewer multiplications.

Used by numba_ops for conv2 (3x3 kernel, 32 input channels); numpy_ops keeps im2col, the
reference. Both compute the same convolution: Winograd's formula is exact, only the
float32 rounding differs (it adds and subtracts a few more terms per output).

A 4x4 block of outputs reads a 6x6 tile d of the input. For one input channel and one
filter g (3x3), Winograd's minimal filtering algorithm gives that block as

    Y = AT [ (G g GT) * (BT d B) ] A        (4x4)      * is element-wise, over 6x6 = 36 positions

with the small constant matrices below (built on the points 0, 1, -1, 2, -2 and infinity).
Summing over input channels commutes with AT ... A, so the whole layer becomes, for each of
the 36 positions k, one matrix product over the channels:

    U[k]       = (G g GT)[k]          (C, F)   the kernel, transformed once per call
    V[:, k]    = (BT d B)[k]          (T, C)   every tile t of every image, transformed
    M[:, k]    = V[:, k] @ U[k]       (T, F)   36 BLAS products with inner dimension C
    Y          = AT M[t] A + b        (4, 4) per tile and filter, then the ReLU

(V is stored (T, 36, C), tile by tile, so that a chunk of images is one contiguous slice.)

Multiplications per output: 36 C / 16 = 2.25 C, against 9 C for im2col. Each step is linear,
so backward runs them in reverse, each with its transposed matrices:

    dM[t]    = A dY[t] AT              (6, 6) per tile and filter   dY: dout after the ReLU's gradient
    dU[k]    = V[:, k].T @ dM[:, k]    (C, F)   ->  dW = GT dU G
    dV[:, k] = dM[:, k] @ U[k].T       (T, C)   ->  dx = B dV[t] BT per tile; overlapping tiles add

Training keeps V (1.3 numbers per input value) instead of im2col's cols (9 per value).

Outputs whose 3x3 window reads only zeros are written as exactly the bias, as im2col gives
them (see output_transform: otherwise a rounding residue would flip the ReLU's gradient).
One difference from im2col stays: a NaN or inf input turns the whole 4x4 block of outputs of
every tile that reads it into NaN, where im2col spoils only the outputs whose 3x3 window
contains it. A model refuses non-finite inputs and stops training when the loss stops being
finite, so this shows only when the layer is called directly on such values.

Each matrix is one small helper below (_bt, _b, _at, _a: the matrix times a column, written
out as additions). A tile helper (_bt_tile, _b_tile, _at_tile, _a_tile) applies one along the
tile's two axes in turn, one channel (or filter) per iteration of the innermost loop, which
the compiler turns into vector instructions; the kernels at the end loop over tiles. Their
constants are float32 (TWO, FOUR, ...): an integer literal times a float32 makes a float64 in
Numba, and the conversions back and forth cost more than the arithmetic. Small integers are
exact in float32, and float32 times float64 is still float64, so float64 arrays (the gradient
checks) keep their precision.
"""
import numpy as np
from numba import njit

BT = np.array([[4, 0, -5, 0, 1, 0],
               [0, -4, -4, 1, 1, 0],
               [0, 4, -4, -1, 1, 0],
               [0, -2, -1, 2, 1, 0],
               [0, 2, -1, -2, 1, 0],
               [0, 4, 0, -5, 0, 1]], dtype=np.float64)          # (6, 6) input transform
G = np.array([[1 / 4, 0, 0],
              [-1 / 6, -1 / 6, -1 / 6],
              [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6],
              [1 / 24, -1 / 12, 1 / 6],
              [0, 0, 1]], dtype=np.float64)                     # (6, 3) kernel transform
AT = np.array([[1, 1, 1, 1, 1, 0],
               [0, 1, -1, 2, -2, 0],
               [0, 1, 1, 4, 4, 0],
               [0, 1, -1, 8, -8, 1]], dtype=np.float64)         # (4, 6) output transform
TILE = 4                                                        # outputs per tile side
OPTS = dict(cache=True, nogil=True)


def tiles(OH, OW):
    """Tiles per image side: enough 4x4 blocks to cover the output (the last ones cut off)."""
    return -(-OH // TILE), -(-OW // TILE)


SIXTH, TWELFTH, TWENTYFOURTH = 1 / 6, 1 / 12, 1 / 24


@njit(**OPTS)
def _g(v0, v1, v2):
    """G @ (v0, v1, v2): one column of a 3x3 kernel -> 6 values."""
    return (0.25 * v0, -SIXTH * (v0 + v1 + v2), -SIXTH * (v0 - v1 + v2),
            TWENTYFOURTH * v0 + TWELFTH * v1 + SIXTH * v2, TWENTYFOURTH * v0 - TWELFTH * v1 + SIXTH * v2, v2)


@njit(**OPTS)
def _gt(v0, v1, v2, v3, v4, v5):
    """GT @ (v0, ..., v5) = G.T @ v: the adjoint of _g, 6 values -> 3."""
    return (0.25 * v0 - SIXTH * (v1 + v2) + TWENTYFOURTH * (v3 + v4),
            SIXTH * (v2 - v1) + TWELFTH * (v3 - v4),
            SIXTH * (v3 + v4 - v1 - v2) + v5)


@njit(**OPTS)
def _kernel_transform(w, U):
    """U[6a + b, c, f] = (G g GT)[a, b] for g = w[:, :, c, f], in float64, filters innermost."""
    _, _, C, F = w.shape
    t = np.empty((6, 3, F))                                     # G g
    for c in range(C):
        for j in range(3):
            for f in range(F):
                t[0, j, f], t[1, j, f], t[2, j, f], t[3, j, f], t[4, j, f], t[5, j, f] = _g(
                    np.float64(w[0, j, c, f]), np.float64(w[1, j, c, f]), np.float64(w[2, j, c, f]))
        for a in range(6):                                      # (G g) GT
            k = 6 * a
            for f in range(F):
                U[k, c, f], U[k + 1, c, f], U[k + 2, c, f], U[k + 3, c, f], U[k + 4, c, f], U[k + 5, c, f] = _g(
                    t[a, 0, f], t[a, 1, f], t[a, 2, f])


@njit(**OPTS)
def _kernel_transform_backward(dU, dW):
    """dW[i, j, c, f] = (GT dU G)[i, j], the adjoint of _kernel_transform, in float64."""
    _, C, F = dU.shape
    s = np.empty((3, 6, F))                                     # GT dU
    for c in range(C):
        for b in range(6):
            for f in range(F):
                s[0, b, f], s[1, b, f], s[2, b, f] = _gt(
                    np.float64(dU[b, c, f]), np.float64(dU[6 + b, c, f]), np.float64(dU[12 + b, c, f]),
                    np.float64(dU[18 + b, c, f]), np.float64(dU[24 + b, c, f]), np.float64(dU[30 + b, c, f]))
        for i in range(3):                                      # (GT dU) G
            for f in range(F):
                dW[i, 0, c, f], dW[i, 1, c, f], dW[i, 2, c, f] = _gt(
                    s[i, 0, f], s[i, 1, f], s[i, 2, f], s[i, 3, f], s[i, 4, f], s[i, 5, f])


def kernel_transform(w):
    """w (3, 3, C, F) -> U (36, C, F): U = G g GT for every (c, f), computed in float64."""
    U = np.empty((36,) + w.shape[2:], dtype=w.dtype)
    _kernel_transform(np.ascontiguousarray(w), U)
    return U


def kernel_transform_backward(dU):
    """dU (36, C, F) -> dW (3, 3, C, F) = GT dU G, the kernel transform run backwards."""
    dW = np.empty((3, 3) + dU.shape[1:], dtype=dU.dtype)
    _kernel_transform_backward(np.ascontiguousarray(dU), dW)
    return dW


TWO, FOUR, FIVE, EIGHT = np.float32(2), np.float32(4), np.float32(5), np.float32(8)


@njit(**OPTS)
def _bt(d0, d1, d2, d3, d4, d5):
    """BT @ (d0, ..., d5): the input transform along one axis of a tile."""
    return (FOUR * d0 - FIVE * d2 + d4, -FOUR * (d1 + d2) + d3 + d4, FOUR * (d1 - d2) - d3 + d4,
            TWO * (d3 - d1) - d2 + d4, TWO * (d1 - d3) - d2 + d4, FOUR * d1 - FIVE * d3 + d5)


@njit(**OPTS)
def _b(v0, v1, v2, v3, v4, v5):
    """B @ (v0, ..., v5) = BT.T @ v: the adjoint of _bt, for backward."""
    return (FOUR * v0, FOUR * (v2 - v1 + v5) + TWO * (v4 - v3), -FIVE * v0 - FOUR * (v1 + v2) - v3 - v4,
            v1 - v2 + TWO * (v3 - v4) - FIVE * v5, v0 + v1 + v2 + v3 + v4, v5)


@njit(**OPTS)
def _at(m0, m1, m2, m3, m4, m5):
    """AT @ (m0, ..., m5): the output transform along one axis, 6 values -> 4."""
    return (m0 + m1 + m2 + m3 + m4, m1 - m2 + TWO * (m3 - m4), m1 + m2 + FOUR * (m3 + m4),
            m1 - m2 + EIGHT * (m3 - m4) + m5)


@njit(**OPTS)
def _a(u0, u1, u2, u3):
    """A @ (u0, ..., u3) = AT.T @ u: the adjoint of _at, 4 values -> 6."""
    return (u0, u0 + u1 + u2 + u3, u0 - u1 + u2 - u3, u0 + TWO * u1 + FOUR * u2 + EIGHT * u3,
            u0 - TWO * u1 + FOUR * u2 - EIGHT * u3, u3)


# One tile's transforms, each on (6, 6, C) or (4, 4, F) arrays, in functions of their own. The
# loops over tiles below hand them V[t], M[t], ... seen as (6, 6, C): position k = 6 a + b is
# [a, b]. Measured (64 images, one core, min of 200): with the same arithmetic written inline,
# indexing V's rows as 6 a + b, the input transform took 0.47 ms instead of 0.26: the compiler
# vectorised the loops over channels worse.
@njit(**OPTS)
def _bt_tile(d, r, v):
    """v = BT d B for one 6x6 tile: d, r (scratch), v (6, 6, C)."""
    C = d.shape[2]
    for b in range(6):                                          # r = BT d, column by column
        for c in range(C):
            r[0, b, c], r[1, b, c], r[2, b, c], r[3, b, c], r[4, b, c], r[5, b, c] = _bt(
                d[0, b, c], d[1, b, c], d[2, b, c], d[3, b, c], d[4, b, c], d[5, b, c])
    for a in range(6):                                          # v = r B, row by row
        for c in range(C):
            v[a, 0, c], v[a, 1, c], v[a, 2, c], v[a, 3, c], v[a, 4, c], v[a, 5, c] = _bt(
                r[a, 0, c], r[a, 1, c], r[a, 2, c], r[a, 3, c], r[a, 4, c], r[a, 5, c])


@njit(**OPTS)
def _b_tile(dv, r, s):
    """s = B dv BT for one tile, the adjoint of _bt_tile: dv, r (scratch), s (6, 6, C)."""
    C = dv.shape[2]
    for a in range(6):                                          # r = dv BT, row by row
        for c in range(C):
            r[a, 0, c], r[a, 1, c], r[a, 2, c], r[a, 3, c], r[a, 4, c], r[a, 5, c] = _b(
                dv[a, 0, c], dv[a, 1, c], dv[a, 2, c], dv[a, 3, c], dv[a, 4, c], dv[a, 5, c])
    for b in range(6):                                          # s = B r, column by column
        for c in range(C):
            s[0, b, c], s[1, b, c], s[2, b, c], s[3, b, c], s[4, b, c], s[5, b, c] = _b(
                r[0, b, c], r[1, b, c], r[2, b, c], r[3, b, c], r[4, b, c], r[5, b, c])


@njit(**OPTS)
def _at_tile(m, r, y):
    """y = AT m A for one tile: m (6, 6, F), r (scratch, 4, 6, F), y (4, 4, F)."""
    F = m.shape[2]
    for q in range(6):                                          # r = AT m, column by column
        for f in range(F):
            r[0, q, f], r[1, q, f], r[2, q, f], r[3, q, f] = _at(
                m[0, q, f], m[1, q, f], m[2, q, f], m[3, q, f], m[4, q, f], m[5, q, f])
    for i in range(TILE):                                       # y = r A, row by row
        for f in range(F):
            y[i, 0, f], y[i, 1, f], y[i, 2, f], y[i, 3, f] = _at(
                r[i, 0, f], r[i, 1, f], r[i, 2, f], r[i, 3, f], r[i, 4, f], r[i, 5, f])


@njit(**OPTS)
def _a_tile(u, r, dm):
    """dm = A u AT for one tile, the adjoint of _at_tile: u (4, 4, F), r (scratch, 4, 6, F), dm (6, 6, F)."""
    F = u.shape[2]
    for i in range(TILE):                                       # r = u AT, row by row
        for f in range(F):
            r[i, 0, f], r[i, 1, f], r[i, 2, f], r[i, 3, f], r[i, 4, f], r[i, 5, f] = _a(
                u[i, 0, f], u[i, 1, f], u[i, 2, f], u[i, 3, f])
    for q in range(6):                                          # dm = A r, column by column
        for f in range(F):
            dm[0, q, f], dm[1, q, f], dm[2, q, f], dm[3, q, f], dm[4, q, f], dm[5, q, f] = _a(
                r[0, q, f], r[1, q, f], r[2, q, f], r[3, q, f])


@njit(**OPTS)
def input_transform(x, top, left, TH, TW, V, support):
    """V[t] = BT d B for every 6x6 tile d of x (N, H, W, C). Tile t = (n, ty, tx) starts
    at row 4 ty - top and column 4 tx - left; out-of-image taps read 0 (the padding).
    V: (N*TH*TW, 36, C), position k = 6 a + b. support (N*TH*TW, 4, 4): 1 where the output's
    3x3 window reads a nonzero input, 0 where it reads only zeros (see output_transform)."""
    N, H, W, C = x.shape
    tiles = V.reshape(V.shape[0], 6, 6, C)                      # V[t] as (6, 6, C)
    d = np.empty((6, 6, C), dtype=x.dtype)                      # the tile
    r = np.empty((6, 6, C), dtype=x.dtype)                      # scratch for _bt_tile
    nonzero = np.empty((6, 6), dtype=np.bool_)                  # which of the tile's pixels are not all 0
    for n in range(N):
        for ty in range(TH):
            for tx in range(TW):
                t = (n * TH + ty) * TW + tx
                for a in range(6):
                    row = TILE * ty + a - top
                    for b in range(6):
                        col = TILE * tx + b - left
                        count = 0                               # channels that are not 0 (a sum, not a search
                        if 0 <= row < H and 0 <= col < W:       # that stops early: that one is not vectorised)
                            for c in range(C):
                                v = x[n, row, col, c]
                                d[a, b, c] = v
                                count += v != 0
                        else:
                            for c in range(C):
                                d[a, b, c] = 0
                        nonzero[a, b] = count > 0
                for i in range(TILE):
                    for j in range(TILE):
                        support[t, i, j] = nonzero[i:i + 3, j:j + 3].any()
                _bt_tile(d, r, tiles[t])


@njit(**OPTS)
def output_transform(M, b, relu, TH, TW, support, out):
    """out = AT M A (+ b, then max(., 0) if relu) for every tile: M (N*TH*TW, 36, F) ->
    out (N, OH, OW, F). Rows and columns of a tile past the output's edge are dropped.

    An output whose window reads only zeros (support 0) is exactly b, as with im2col. Winograd's
    sum would leave a rounding residue of about 1e-9 there (the tile's other inputs cancel
    out in floating point), and the ReLU's gradient would then count it as active. That is
    common: a ReLU feeds this layer, and MNIST's background is zero. At the seed model's first
    step, the residue flipped 25,211 of conv2's ReLU decisions and moved its bias gradient by 22%."""
    N, OH, OW, F = out.shape
    zero = out.dtype.type(0)
    tiles = M.reshape(M.shape[0], 6, 6, F)                      # M[t] as (6, 6, F)
    r = np.empty((TILE, 6, F), dtype=out.dtype)                 # scratch for _at_tile
    y = np.empty((TILE, TILE, F), dtype=out.dtype)              # AT M A, the tile's 4x4 outputs
    for n in range(N):
        for ty in range(TH):
            for tx in range(TW):
                t = (n * TH + ty) * TW + tx
                _at_tile(tiles[t], r, y)
                # The outputs inside the image, + b and the ReLU. A separate pass: with the edge and
                # support tests inside the loops above, this kernel ran 3-4x slower.
                for i in range(min(TILE, OH - TILE * ty)):
                    for j in range(min(TILE, OW - TILE * tx)):
                        reads_nonzero = support[t, i, j]
                        for f in range(F):
                            v = y[i, j, f] + b[f] if reads_nonzero else b[f]
                            out[n, TILE * ty + i, TILE * tx + j, f] = max(v, zero) if relu else v


@njit(**OPTS)
def output_transform_backward(dout, out, relu, TH, TW, dM, db):
    """dM = A dz AT for every tile, with dz = dout * (out > 0) if relu else dout, and
    db = dz summed (float64). dout, out (N, OH, OW, F) -> dM (N*TH*TW, 36, F), db (F,)."""
    N, OH, OW, F = dout.shape
    zero = dout.dtype.type(0)
    tiles = dM.reshape(dM.shape[0], 6, 6, F)                    # dM[t] as (6, 6, F)
    db64 = np.zeros(F, dtype=np.float64)
    u = np.empty((TILE, TILE, F), dtype=dout.dtype)             # dz on this tile (0 past the edge)
    r = np.empty((TILE, 6, F), dtype=dout.dtype)                # scratch for _a_tile
    tile_sum = np.empty(F, dtype=dout.dtype)                    # dz summed over the tile
    for n in range(N):
        for ty in range(TH):
            for tx in range(TW):
                t = (n * TH + ty) * TW + tx
                u[:] = 0
                for i in range(min(TILE, OH - TILE * ty)):
                    row = TILE * ty + i
                    for j in range(min(TILE, OW - TILE * tx)):
                        col = TILE * tx + j
                        for f in range(F):
                            g = dout[n, row, col, f]
                            if relu and out[n, row, col, f] <= 0:
                                g = zero
                            u[i, j, f] = g
                # db in its own pass: summed inside the loop above, the kernel took 6.1 s to compile instead
                # of 2.5, and ran 0.74 ms instead of 0.55. The tile's 16 terms add up in dout's type first:
                # a float32 -> float64 conversion for each of them kept the loop from being vectorised.
                tile_sum[:] = 0
                for i in range(TILE):
                    for j in range(TILE):
                        for f in range(F):
                            tile_sum[f] += u[i, j, f]
                for f in range(F):
                    db64[f] += tile_sum[f]
                _a_tile(u, r, tiles[t])
    db[:] = db64


@njit(**OPTS)
def input_transform_backward(dV, top, left, TH, TW, dx):
    """dx = the sum over tiles of B dV BT, each 6x6 tile added where input_transform read it
    (taps in the padding are dropped). dV (N*TH*TW, 36, C) -> dx (N, H, W, C)."""
    N, H, W, C = dx.shape
    tiles = dV.reshape(dV.shape[0], 6, 6, C)                    # dV[t] as (6, 6, C)
    r = np.empty((6, 6, C), dtype=dx.dtype)                     # scratch for _b_tile
    s = np.empty((6, 6, C), dtype=dx.dtype)                     # B dV BT: what the tile adds to dx
    for n in range(N):
        dx[n] = 0
        for ty in range(TH):
            for tx in range(TW):
                _b_tile(tiles[(n * TH + ty) * TW + tx], r, s)
                for a in range(6):
                    row = TILE * ty + a - top
                    if row < 0 or row >= H:
                        continue
                    for b in range(6):
                        col = TILE * tx + b - left
                        if col < 0 or col >= W:
                            continue
                        for c in range(C):
                            dx[n, row, col, c] += s[a, b, c]
