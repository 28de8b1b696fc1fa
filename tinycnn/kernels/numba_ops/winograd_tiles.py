"""Winograd's F(6x6, 3x3), the maths: its matrices, and each one applied to one tile.

A 6x6 block of outputs reads an 8x8 tile d of the input. For one input channel and one
filter g (3x3), Winograd's minimal filtering algorithm gives that block as

    Y = AT [ (G g GT) * (BT d B) ] A        (6x6)      * is element-wise, over 8x8 = 64 positions

with the constant matrices below (built on the points 0, 1, -1, 2, -2, 1/2, -1/2 and infinity).
Each matrix is one helper (_bt, _b, _at, _a: the matrix times a column, written out as
additions that share the sums of rows with opposite points). The kernels of
winograd.py apply one along a tile's two axes in two passes, one channel (or filter) per
iteration of the innermost loop, which the compiler turns into vector instructions. The
second pass writes its result transposed, so the transformed tiles and kernel are stored
transposed: position k = a + 8 b holds entry [a, b] (see benchmarks/DECISIONS.md, "Winograd
transforms"). Transposing every factor of an element-wise product changes nothing:
    input transform            (BT d B)T      -> V
    output transform           (AT MT A)T     =  AT M A, the upright 6x6 outputs
    its backward               (A u AT)T      -> dM
    input transform backward   (B dVT BT)T    =  B dV BT, the upright 8x8 input gradient
The kernel's transform is done once per step with NumPy (kernel_transform). The constants of
the others are float32 (TWO, QUARTER, ...): a Python float times a float32 makes a float64
in Numba. Every constant of BT and AT is exact in float32, so float64 arrays keep their
precision.
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
OPTS = dict(cache=True, nogil=True, error_model="numpy")


GG = np.kron(G, G)        # (64, 9): GG[8b + a, 3j + i] = G[b, j] G[a, i], the kernel transform as one matrix


def kernel_transform(w):
    """U (64, C, F): U[a + 8b, c, f] = (G g GT)[a, b] for g = w[:, :, c, f], computed in float64 and
    stored transposed like the tiles: one product with GG, once per step."""
    _, _, C, F = w.shape
    taps = w.transpose(1, 0, 2, 3).reshape(9, C * F).astype(np.float64)  # row 3j + i: g[i, j]
    return (GG @ taps).reshape(64, C, F).astype(w.dtype)


def kernel_transform_backward(dU):
    """dW (3, 3, C, F) = GT dU G, the adjoint of kernel_transform, in float64."""
    _, C, F = dU.shape
    dW = GG.T @ dU.reshape(64, C * F).astype(np.float64)                  # row 3j + i
    return dW.reshape(3, 3, C, F).transpose(1, 0, 2, 3).astype(dU.dtype)


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
