"""Winograd's F(6x6, 3x3): a 3x3, stride-1 convolution with 5x fewer multiplications.

Used by numba_ops for conv2 (3x3 kernel, 32 input channels); numpy_ops keeps im2col, the
reference. Both compute the same convolution: Winograd's formula is exact, only the
float32 rounding differs (it adds and subtracts more terms per output, some of them scaled).

A 6x6 block of outputs reads an 8x8 tile d of the input. For one input channel and one
filter g (3x3), Winograd's minimal filtering algorithm gives that block as

    Y = AT [ (G g GT) * (BT d B) ] A        (6x6)      * is element-wise, over 8x8 = 64 positions

with the small constant matrices below (built on the points 0, 1, -1, 2, -2, 1/2, -1/2 and
infinity). Summing over input channels commutes with AT ... A, so the whole layer becomes,
for each of the 64 positions k, one matrix product over the channels:

    U[k]       = (G g GT)[k]          (C, F)   the kernel, transformed once per call
    V[:, k]    = (BT d B)[k]          (T, C)   every tile t of every image, transformed
    M[:, k]    = V[:, k] @ U[k]       (T, F)   64 BLAS products with inner dimension C
    Y          = AT M[t] A + b        (6, 6) per tile and filter, then the ReLU

(V is stored (T, 64, C), tile by tile, so that a chunk of images is one contiguous slice;
each tile's 8x8 positions are stored transposed, as the tile functions below explain.)

Multiplications per output: 64 C / 36 = 1.8 C, against 9 C for im2col. Each step is linear,
so backward runs them in reverse, each with its transposed matrices:

    dM[t]    = A dY[t] AT              (8, 8) per tile and filter   dY: dout after the ReLU's gradient
    dU[k]    = V[:, k].T @ dM[:, k]    (C, F)   ->  dW = GT dU G
    dV[:, k] = dM[:, k] @ U[k].T       (T, C)   ->  dx = B dV[t] BT per tile; overlapping tiles add

Training keeps V instead of im2col's cols: for the seed model's conv2, 1.5 numbers per input
value instead of 6.4.

Why 6x6 blocks and not 4x4 (F(4x4, 3x3): 6x6 tiles, 36 products)? The seed model's conv2 has
11x11 outputs: 3x3 blocks of 4x4 or 2x2 blocks of 6x6, both covering 12x12. Per image and
channel that is 9 x 36 = 324 transformed values against 4 x 64 = 256, so the products, V and
the other buffers all shrink by a fifth. Measured (one core, 16 images, min of 300): the 64
products took 0.16 ms against 0.20 for the 36 bigger ones, for each of forward, dW and dx.
The price is rounding: the points 2, -2, 1/2 and -1/2 scale some terms by up to 32. Against a float64
reference, a 32-channel sum of ReLU-like inputs came out with a median error of 2.0e-6 of
its largest output (4x4: 0.7e-6), still far below what float32 training notices.

Outputs whose 3x3 window reads only zeros are written as exactly the bias, as im2col gives
them (see output_transform: otherwise a rounding residue would flip the ReLU's gradient).
One difference from im2col stays: a NaN or inf input turns the whole 6x6 block of outputs of
every tile that reads it into NaN, where im2col spoils only the outputs whose 3x3 window
contains it. A model refuses non-finite inputs and stops training when the loss stops being
finite, so this shows only when the layer is called directly on such values.

Each matrix is one small helper below (_bt, _b, _at, _a: the matrix times a column, written
out as additions, sharing the sums that rows with opposite points have in common). A tile
helper (_bt_tile, _b_tile, _at_tile, _a_tile) applies one along the tile's two axes in turn,
one channel (or filter) per iteration of the innermost loop, which the compiler turns into
vector instructions; the kernels at the end loop over tiles. Their constants are float32
(TWO, QUARTER, ...): an integer literal times a float32 makes a float64 in Numba, and the
conversions back and forth cost more than the arithmetic. Every constant of BT and AT is
exact in float32, and float32 times float64 is still float64, so float64 arrays (the gradient
checks) keep their precision.
"""
import numpy as np
from numba import njit

BT = np.array([[1, 0, -21 / 4, 0, 21 / 4, 0, -1, 0],
               [0, 1, 1, -17 / 4, -17 / 4, 1, 1, 0],
               [0, -1, 1, 17 / 4, -17 / 4, -1, 1, 0],
               [0, 1 / 2, 1 / 4, -5 / 2, -5 / 4, 2, 1, 0],
               [0, -1 / 2, 1 / 4, 5 / 2, -5 / 4, -2, 1, 0],
               [0, 2, 4, -5 / 2, -5, 1 / 2, 1, 0],
               [0, -2, 4, 5 / 2, -5, -1 / 2, 1, 0],
               [0, -1, 0, 21 / 4, 0, -21 / 4, 0, 1]], dtype=np.float64)     # (8, 8) input transform
G = np.array([[1, 0, 0],
              [-2 / 9, -2 / 9, -2 / 9],
              [-2 / 9, 2 / 9, -2 / 9],
              [1 / 90, 1 / 45, 2 / 45],
              [1 / 90, -1 / 45, 2 / 45],
              [32 / 45, 16 / 45, 8 / 45],
              [32 / 45, -16 / 45, 8 / 45],
              [0, 0, 1]], dtype=np.float64)                                  # (8, 3) kernel transform
AT = np.array([[1, 1, 1, 1, 1, 1, 1, 0],
               [0, 1, -1, 2, -2, 1 / 2, -1 / 2, 0],
               [0, 1, 1, 4, 4, 1 / 4, 1 / 4, 0],
               [0, 1, -1, 8, -8, 1 / 8, -1 / 8, 0],
               [0, 1, 1, 16, 16, 1 / 16, 1 / 16, 0],
               [0, 1, -1, 32, -32, 1 / 32, -1 / 32, 1]], dtype=np.float64)  # (6, 8) output transform
TILE = 6                                                        # outputs per tile side
SIZE = TILE + 2                                                 # inputs per tile side
POSITIONS = SIZE * SIZE                                         # 64 transformed values per tile
OPTS = dict(cache=True, nogil=True)


def tiles(OH, OW):
    """Tiles per image side: enough 6x6 blocks to cover the output (the last ones cut off)."""
    return -(-OH // TILE), -(-OW // TILE)


# G's entries, as float64 constants.
TWO_NINTHS, ONE_90TH, ONE_45TH, TWO_45THS, EIGHT_45THS, SIXTEEN_45THS, THIRTYTWO_45THS = (
    2 / 9, 1 / 90, 1 / 45, 2 / 45, 8 / 45, 16 / 45, 32 / 45)


@njit(**OPTS)
def _g(v0, v1, v2):
    """G @ (v0, v1, v2): one column of a 3x3 kernel -> 8 values."""
    e2, o2 = ONE_90TH * v0 + TWO_45THS * v2, ONE_45TH * v1                       # rows 3 and 4
    e3, o3 = THIRTYTWO_45THS * v0 + EIGHT_45THS * v2, SIXTEEN_45THS * v1         # rows 5 and 6
    return v0, -TWO_NINTHS * (v0 + v1 + v2), -TWO_NINTHS * (v0 - v1 + v2), e2 + o2, e2 - o2, e3 + o3, e3 - o3, v2


@njit(**OPTS)
def _gt(v0, v1, v2, v3, v4, v5, v6, v7):
    """GT @ (v0, ..., v7) = G.T @ v: the adjoint of _g, 8 values -> 3."""
    p1, p2, p3 = v1 + v2, v3 + v4, v5 + v6
    return (v0 - TWO_NINTHS * p1 + ONE_90TH * p2 + THIRTYTWO_45THS * p3,
            TWO_NINTHS * (v2 - v1) + ONE_45TH * (v3 - v4) + SIXTEEN_45THS * (v5 - v6),
            -TWO_NINTHS * p1 + TWO_45THS * p2 + EIGHT_45THS * p3 + v7)


@njit(**OPTS)
def _kernel_transform(w, U):
    """U[a + 8b, c, f] = (G g GT)[a, b] for g = w[:, :, c, f], in float64, filters innermost.
    (Stored transposed, as the tiles are: see the tile functions below.)"""
    _, _, C, F = w.shape
    t = np.empty((SIZE, 3, F))                                  # G g
    for c in range(C):
        for j in range(3):
            for f in range(F):
                (t[0, j, f], t[1, j, f], t[2, j, f], t[3, j, f], t[4, j, f], t[5, j, f], t[6, j, f],
                 t[7, j, f]) = _g(np.float64(w[0, j, c, f]), np.float64(w[1, j, c, f]), np.float64(w[2, j, c, f]))
        for a in range(SIZE):                                   # (G g) GT, row a
            for f in range(F):
                (U[a, c, f], U[a + 8, c, f], U[a + 16, c, f], U[a + 24, c, f], U[a + 32, c, f], U[a + 40, c, f],
                 U[a + 48, c, f], U[a + 56, c, f]) = _g(t[a, 0, f], t[a, 1, f], t[a, 2, f])


@njit(**OPTS)
def _kernel_transform_backward(dU, dW):
    """dW[i, j, c, f] = (GT dU G)[i, j], the adjoint of _kernel_transform, in float64."""
    _, C, F = dU.shape
    s = np.empty((3, SIZE, F))                                  # GT dU
    for c in range(C):
        for b in range(SIZE):                                   # column b of dU: entries 8b .. 8b + 7
            k = SIZE * b
            for f in range(F):
                s[0, b, f], s[1, b, f], s[2, b, f] = _gt(
                    np.float64(dU[k, c, f]), np.float64(dU[k + 1, c, f]), np.float64(dU[k + 2, c, f]),
                    np.float64(dU[k + 3, c, f]), np.float64(dU[k + 4, c, f]), np.float64(dU[k + 5, c, f]),
                    np.float64(dU[k + 6, c, f]), np.float64(dU[k + 7, c, f]))
        for i in range(3):                                      # (GT dU) G
            for f in range(F):
                dW[i, 0, c, f], dW[i, 1, c, f], dW[i, 2, c, f] = _gt(
                    s[i, 0, f], s[i, 1, f], s[i, 2, f], s[i, 3, f], s[i, 4, f], s[i, 5, f], s[i, 6, f], s[i, 7, f])


def kernel_transform(w):
    """w (3, 3, C, F) -> U (64, C, F): U = G g GT for every (c, f), computed in float64, transposed."""
    U = np.empty((POSITIONS,) + w.shape[2:], dtype=w.dtype)
    _kernel_transform(np.ascontiguousarray(w), U)
    return U


def kernel_transform_backward(dU):
    """dU (64, C, F) -> dW (3, 3, C, F) = GT dU G, the kernel transform run backwards."""
    dW = np.empty((3, 3) + dU.shape[1:], dtype=dU.dtype)
    _kernel_transform_backward(np.ascontiguousarray(dU), dW)
    return dW


f32 = np.float32
HALF, QUARTER, EIGHTH, SIXTEENTH, THIRTYSECOND = f32(1 / 2), f32(1 / 4), f32(1 / 8), f32(1 / 16), f32(1 / 32)
ONE_AND_A_QUARTER, TWO_AND_A_HALF, FOUR_AND_A_QUARTER, FIVE_AND_A_QUARTER = f32(1.25), f32(2.5), f32(4.25), f32(5.25)
TWO, FOUR, FIVE, EIGHT, SIXTEEN, THIRTYTWO = f32(2), f32(4), f32(5), f32(8), f32(16), f32(32)


# Rows of BT and AT come in pairs whose points are opposite (1 and -1, 2 and -2, 1/2 and -1/2):
# the pair's even and odd parts are computed once, then added and subtracted.
@njit(**OPTS)
def _bt(d0, d1, d2, d3, d4, d5, d6, d7):
    """BT @ (d0, ..., d7): the input transform along one axis of a tile."""
    e1, o1 = d2 + d6 - FOUR_AND_A_QUARTER * d4, d1 + d5 - FOUR_AND_A_QUARTER * d3
    e2, o2 = QUARTER * d2 - ONE_AND_A_QUARTER * d4 + d6, HALF * d1 - TWO_AND_A_HALF * d3 + TWO * d5
    e3, o3 = FOUR * d2 - FIVE * d4 + d6, TWO * d1 - TWO_AND_A_HALF * d3 + HALF * d5
    return (d0 - d6 + FIVE_AND_A_QUARTER * (d4 - d2), e1 + o1, e1 - o1, e2 + o2, e2 - o2, e3 + o3, e3 - o3,
            d7 - d1 + FIVE_AND_A_QUARTER * (d3 - d5))


@njit(**OPTS)
def _b(v0, v1, v2, v3, v4, v5, v6, v7):
    """B @ (v0, ..., v7) = BT.T @ v: the adjoint of _bt, for backward."""
    p1, m1, p2, m2, p3, m3 = v1 + v2, v1 - v2, v3 + v4, v3 - v4, v5 + v6, v5 - v6
    return (v0,
            m1 + HALF * m2 + TWO * m3 - v7,
            p1 + QUARTER * p2 + FOUR * p3 - FIVE_AND_A_QUARTER * v0,
            FIVE_AND_A_QUARTER * v7 - FOUR_AND_A_QUARTER * m1 - TWO_AND_A_HALF * (m2 + m3),
            FIVE_AND_A_QUARTER * v0 - FOUR_AND_A_QUARTER * p1 - ONE_AND_A_QUARTER * p2 - FIVE * p3,
            m1 + TWO * m2 + HALF * m3 - FIVE_AND_A_QUARTER * v7,
            p1 + p2 + p3 - v0,
            v7)


@njit(**OPTS)
def _at(m0, m1, m2, m3, m4, m5, m6, m7):
    """AT @ (m0, ..., m7): the output transform along one axis, 8 values -> 6."""
    p1, q1, p2, q2, p3, q3 = m1 + m2, m1 - m2, m3 + m4, m3 - m4, m5 + m6, m5 - m6
    return (m0 + p1 + p2 + p3, q1 + TWO * q2 + HALF * q3, p1 + FOUR * p2 + QUARTER * p3,
            q1 + EIGHT * q2 + EIGHTH * q3, p1 + SIXTEEN * p2 + SIXTEENTH * p3,
            q1 + THIRTYTWO * q2 + THIRTYSECOND * q3 + m7)


@njit(**OPTS)
def _a(u0, u1, u2, u3, u4, u5):
    """A @ (u0, ..., u5) = AT.T @ u: the adjoint of _at, 6 values -> 8."""
    e1, o1 = u0 + u2 + u4, u1 + u3 + u5
    e2, o2 = u0 + FOUR * u2 + SIXTEEN * u4, TWO * u1 + EIGHT * u3 + THIRTYTWO * u5
    e3, o3 = u0 + QUARTER * u2 + SIXTEENTH * u4, HALF * u1 + EIGHTH * u3 + THIRTYSECOND * u5
    return u0, e1 + o1, e1 - o1, e2 + o2, e2 - o2, e3 + o3, e3 - o3, u5


# One tile's transforms, each on (8, 8, C) or (6, 6, F) arrays, in functions of their own. The
# loops over tiles below hand them V[t], M[t], ... seen as (8, 8, C). Each applies its matrix
# along one axis, then along the other, and every store goes along the first axis: the second
# pass writes its result transposed. Measured (one core, 256 tiles, min of 300): AT applied to
# 8x8x64 values took 0.30 us per tile writing y[0..5, i, f] and 1.54 us writing y[i, 0..5, f]
# (the compiler's vector code for six stores along the middle axis was 5x slower), and the
# 8x8x32 input transform 0.32 against 1.23 us. So the transformed tiles V, M, dM, dV and the
# kernel U are all stored transposed: position k = a + 8 b holds entry [a, b]. Transposing
# every factor of an elementwise product changes nothing, and the two ends come out upright:
#     _bt_tile(d) = (BT d B)T      -> V
#     _at_tile(M) = (AT MT A)T     =  AT M A, the upright 6x6 outputs
#     _a_tile(u)  = (A u AT)T      -> dM
#     _b_tile(dV) = (B dVT BT)T    =  B dV BT, the upright 8x8 input gradient
@njit(**OPTS)
def _bt_tile(d, r, v):
    """v = (BT d B)T for one 8x8 tile: d, r (scratch), v (8, 8, C)."""
    C = d.shape[2]
    for b in range(SIZE):                                       # r = BT d, column by column
        for c in range(C):
            r[0, b, c], r[1, b, c], r[2, b, c], r[3, b, c], r[4, b, c], r[5, b, c], r[6, b, c], r[7, b, c] = _bt(
                d[0, b, c], d[1, b, c], d[2, b, c], d[3, b, c], d[4, b, c], d[5, b, c], d[6, b, c], d[7, b, c])
    for a in range(SIZE):                                       # v = (r B)T, row a of r B -> column a of v
        for c in range(C):
            v[0, a, c], v[1, a, c], v[2, a, c], v[3, a, c], v[4, a, c], v[5, a, c], v[6, a, c], v[7, a, c] = _bt(
                r[a, 0, c], r[a, 1, c], r[a, 2, c], r[a, 3, c], r[a, 4, c], r[a, 5, c], r[a, 6, c], r[a, 7, c])


@njit(**OPTS)
def _b_tile(dv, r, s):
    """s = (B dv BT)T for one tile, the adjoint of _bt_tile: dv, r (scratch), s (8, 8, C)."""
    C = dv.shape[2]
    for b in range(SIZE):                                       # r = B dv, column by column
        for c in range(C):
            r[0, b, c], r[1, b, c], r[2, b, c], r[3, b, c], r[4, b, c], r[5, b, c], r[6, b, c], r[7, b, c] = _b(
                dv[0, b, c], dv[1, b, c], dv[2, b, c], dv[3, b, c], dv[4, b, c], dv[5, b, c], dv[6, b, c], dv[7, b, c])
    for a in range(SIZE):                                       # s = (r BT)T
        for c in range(C):
            s[0, a, c], s[1, a, c], s[2, a, c], s[3, a, c], s[4, a, c], s[5, a, c], s[6, a, c], s[7, a, c] = _b(
                r[a, 0, c], r[a, 1, c], r[a, 2, c], r[a, 3, c], r[a, 4, c], r[a, 5, c], r[a, 6, c], r[a, 7, c])


@njit(**OPTS)
def _at_tile(m, r, y):
    """y = (AT m A)T for one tile: m (8, 8, F), r (scratch, 6, 8, F), y (6, 6, F)."""
    F = m.shape[2]
    for q in range(SIZE):                                       # r = AT m, column by column
        for f in range(F):
            r[0, q, f], r[1, q, f], r[2, q, f], r[3, q, f], r[4, q, f], r[5, q, f] = _at(
                m[0, q, f], m[1, q, f], m[2, q, f], m[3, q, f], m[4, q, f], m[5, q, f], m[6, q, f], m[7, q, f])
    for i in range(TILE):                                       # y = (r A)T
        for f in range(F):
            y[0, i, f], y[1, i, f], y[2, i, f], y[3, i, f], y[4, i, f], y[5, i, f] = _at(
                r[i, 0, f], r[i, 1, f], r[i, 2, f], r[i, 3, f], r[i, 4, f], r[i, 5, f], r[i, 6, f], r[i, 7, f])


@njit(**OPTS)
def _a_tile(u, r, dm):
    """dm = (A u AT)T for one tile, the adjoint of _at_tile: u (6, 6, F), r (scratch, 8, 6, F), dm (8, 8, F)."""
    F = u.shape[2]
    for j in range(TILE):                                       # r = A u, column by column
        for f in range(F):
            r[0, j, f], r[1, j, f], r[2, j, f], r[3, j, f], r[4, j, f], r[5, j, f], r[6, j, f], r[7, j, f] = _a(
                u[0, j, f], u[1, j, f], u[2, j, f], u[3, j, f], u[4, j, f], u[5, j, f])
    for a in range(SIZE):                                       # dm = (r AT)T
        for f in range(F):
            (dm[0, a, f], dm[1, a, f], dm[2, a, f], dm[3, a, f], dm[4, a, f], dm[5, a, f], dm[6, a, f],
             dm[7, a, f]) = _a(r[a, 0, f], r[a, 1, f], r[a, 2, f], r[a, 3, f], r[a, 4, f], r[a, 5, f])


@njit(**OPTS)
def input_transform(x, top, left, TH, TW, V, support):
    """V[t] = BT d B for every 8x8 tile d of x (N, H, W, C). Tile t = (n, ty, tx) starts
    at row 6 ty - top and column 6 tx - left; out-of-image taps read 0 (the padding).
    V: (N*TH*TW, 64, C), entry [a, b] at position k = a + 8 b (tiles are kept transposed:
    see the tile functions above). support (N*TH*TW, 6, 6): 1 where the output's 3x3 window
    reads a nonzero input, 0 where it reads only zeros (see output_transform)."""
    N, H, W, C = x.shape
    tiles = V.reshape(V.shape[0], SIZE, SIZE, C)                # V[t] as (8, 8, C)
    d = np.empty((SIZE, SIZE, C), dtype=x.dtype)                # the tile
    r = np.empty((SIZE, SIZE, C), dtype=x.dtype)                # scratch for _bt_tile
    nonzero = np.empty((SIZE, SIZE), dtype=np.bool_)            # which of the tile's pixels are not all 0
    for n in range(N):
        for ty in range(TH):
            for tx in range(TW):
                t = (n * TH + ty) * TW + tx
                for a in range(SIZE):
                    row = TILE * ty + a - top
                    for b in range(SIZE):
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
    """out = AT M A (+ b, then max(., 0) if relu) for every tile: M (N*TH*TW, 64, F) ->
    out (N, OH, OW, F). Rows and columns of a tile past the output's edge are dropped.

    An output whose window reads only zeros (support 0) is exactly b, as with im2col. Winograd's
    sum would leave a rounding residue of about 1e-9 there (the tile's other inputs cancel
    out in floating point), and the ReLU's gradient would then count it as active. That is
    common: a ReLU feeds this layer, and MNIST's background is zero. At the seed model's first
    step, the residue flipped 25,211 of conv2's ReLU decisions and moved its bias gradient by 22%."""
    N, OH, OW, F = out.shape
    zero = out.dtype.type(0)
    tiles = M.reshape(M.shape[0], SIZE, SIZE, F)                # M[t] as (8, 8, F)
    r = np.empty((TILE, SIZE, F), dtype=out.dtype)              # scratch for _at_tile
    y = np.empty((TILE, TILE, F), dtype=out.dtype)              # AT M A, the tile's 6x6 outputs
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
    db = dz summed (float64). dout, out (N, OH, OW, F) -> dM (N*TH*TW, 64, F), db (F,)."""
    N, OH, OW, F = dout.shape
    zero = dout.dtype.type(0)
    tiles = dM.reshape(dM.shape[0], SIZE, SIZE, F)              # dM[t] as (8, 8, F)
    db64 = np.zeros(F, dtype=np.float64)
    u = np.empty((TILE, TILE, F), dtype=dout.dtype)             # dz on this tile (0 past the edge)
    r = np.empty((SIZE, TILE, F), dtype=dout.dtype)             # scratch for _a_tile
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
                # of 2.5, and ran 0.74 ms instead of 0.55. The tile's 36 terms add up in dout's type first:
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
    """dx = the sum over tiles of B dV BT, each 8x8 tile added where input_transform read it
    (taps in the padding are dropped). dV (N*TH*TW, 64, C) -> dx (N, H, W, C)."""
    N, H, W, C = dx.shape
    tiles = dV.reshape(dV.shape[0], SIZE, SIZE, C)              # dV[t] as (8, 8, C)
    r = np.empty((SIZE, SIZE, C), dtype=dx.dtype)               # scratch for _b_tile
    s = np.empty((SIZE, SIZE, C), dtype=dx.dtype)               # B dV BT: what the tile adds to dx
    for n in range(N):
        dx[n] = 0
        for ty in range(TH):
            for tx in range(TW):
                _b_tile(tiles[(n * TH + ty) * TW + tx], r, s)
                for a in range(SIZE):
                    row = TILE * ty + a - top
                    if row < 0 or row >= H:
                        continue
                    for b in range(SIZE):
                        col = TILE * tx + b - left
                        if col < 0 or col >= W:
                            continue
                        for c in range(C):
                            dx[n, row, col, c] += s[a, b, c]
