"""Element-wise kernels: what comes after a product (bias, ReLU, 2x2 max-pool, dropout), its
gradient, and the Adam step.

    epilogue(z, b, relu, pool, out, argmax)      out = pool(relu(z + b)), argmax the winners
    dropout(v, threshold, scale, seed, start)    v *= Dropout's mask, in place
    gradients(dout, out, relu, ..., g, part, db) g = dout through the mask and the ReLU; db += its sums
    unpool(g, argmax, dz)                        dz = g at each window's winner, 0 elsewhere
    adam(p, g, m, v, lr_t, beta_1, beta_2, epsilon, write)   -> True if every new weight is finite

The layers' reference is each step on its own: z + b, then np.maximum(., 0), then
numpy_ops.maxpool_forward (ties go to the first of (0, 0), (0, 1), (1, 0), (1, 1)), then
Dropout's mask. Here z is read once and only the pooled output is written. The dropout mask is
the one tinycnn.utils.uniform draws: element i is kept when splitmix64(seed, i) >= rate, tested
in integers (threshold = ceil(rate * 2**53); 0 means no dropout), and `start` is the index of
v's first element in the whole batch, so that any slice of a batch draws its own part of the
batch's mask. Nothing is kept for the ReLU or the dropout: backward draws the mask again and
reads the ReLU's gate from `out` (where a unit was kept, out > 0 exactly when relu(z + b) > 0;
where it was dropped, the gradient is 0 either way). Each pass is a loop of its own: the hash's
64-bit products, mixed into the arithmetic of another loop, kept the compiler from vectorising
either (see benchmarks/DECISIONS.md, "Epilogue").
"""
import numpy as np
from numba import njit

from ...utils import GOLDEN, MIX1, MIX2

# error_model="numpy": a division by zero gives inf instead of raising, so no test for it stops a
# loop from being vectorised (see benchmarks/DECISIONS.md, "Adam").
OPTS = dict(cache=True, nogil=True, error_model="numpy")


@njit(**OPTS)
def kept(seed, i, threshold):
    """Is element i kept? The integer form of uniform(seed, ...)[i] >= rate (see tinycnn.utils)."""
    z = seed + np.uint64(i + 1) * GOLDEN
    z = (z ^ (z >> np.uint64(30))) * MIX1
    z = (z ^ (z >> np.uint64(27))) * MIX2
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)) >= threshold


@njit(**OPTS)
def dropout(v, threshold, scale, seed, start):
    """v (flat) *= the mask: element i of v is element start + i of the batch."""
    zero = v.dtype.type(0)
    for i in range(v.size):
        v[i] = v[i] * scale if kept(seed, start + i, threshold) else zero


@njit(**OPTS)
def epilogue(z, b, relu, pool, out, argmax):
    """z (N, OH, OW, F) -> out (N, OH//2, OW//2, F) if pool else (N, OH, OW, F); argmax like out
    (or empty: winners not kept). Each output: relu(z + b), the max of its 2x2 window if pool."""
    N, PH, PW, F = out.shape
    zero = out.dtype.type(0)
    track = argmax.size > 0
    for n in range(N):
        for i in range(PH):
            for j in range(PW):
                for f in range(F):
                    if pool:
                        r, c = 2 * i, 2 * j
                        best, k = z[n, r, c, f] + b[f], 0
                        if relu and best < zero:
                            best = zero
                        v = z[n, r, c + 1, f] + b[f]
                        v = max(v, zero) if relu else v
                        if v > best:                                # strict: a tie keeps the first
                            best, k = v, 1
                        v = z[n, r + 1, c, f] + b[f]
                        v = max(v, zero) if relu else v
                        if v > best:
                            best, k = v, 2
                        v = z[n, r + 1, c + 1, f] + b[f]
                        v = max(v, zero) if relu else v
                        if v > best:
                            best, k = v, 3
                        if track:
                            argmax[n, i, j, f] = k
                    else:
                        best = z[n, i, j, f] + b[f]
                        if relu and best < zero:
                            best = zero
                    out[n, i, j, f] = best


@njit(**OPTS)
def gradients(dout, out, relu, threshold, scale, seed, start, g, part, db):
    """g (rows, F) = dout through the dropout's mask and the ReLU's gate (out > 0, if relu), and
    db (F,) float64 += its column sums, added up in g's type (in part, (F,)) a few rows at a time.
    dout, out (rows, F); row r, column f is element start + r * F + f of the batch."""
    rows, F = g.shape
    zero = g.dtype.type(0)
    for r in range(rows):                                           # the ReLU's gate
        for f in range(F):
            g[r, f] = zero if relu and out[r, f] <= zero else dout[r, f]
    if threshold > 0:                                               # the dropout's mask, a loop of its own
        dropout(g.reshape(-1), threshold, scale, seed, start)
    for f in range(F):
        part[f] = zero
    for r in range(rows):
        for f in range(F):
            part[f] += g[r, f]
        if r % 256 == 255 or r == rows - 1:
            for f in range(F):
                db[f] += part[f]
                part[f] = zero


@njit(**OPTS)
def unpool(g, argmax, dz):
    """dz (N, OH, OW, F) = g (N, PH, PW, F) at each 2x2 window's winner, 0 elsewhere. The four cells
    are written in four loops of their own: stores to four rows in one loop were vectorised badly."""
    N, PH, PW, F = g.shape
    _, OH, OW, _ = dz.shape
    zero = dz.dtype.type(0)
    for n in range(N):
        for r in range(OH):                                         # rows and columns no window covers
            for c in range(2 * PW if r < 2 * PH else 0, OW):
                for f in range(F):
                    dz[n, r, c, f] = zero
        for i in range(PH):
            for j in range(PW):
                for f in range(F):
                    dz[n, 2 * i, 2 * j, f] = g[n, i, j, f] if argmax[n, i, j, f] == 0 else zero
                for f in range(F):
                    dz[n, 2 * i, 2 * j + 1, f] = g[n, i, j, f] if argmax[n, i, j, f] == 1 else zero
                for f in range(F):
                    dz[n, 2 * i + 1, 2 * j, f] = g[n, i, j, f] if argmax[n, i, j, f] == 2 else zero
                for f in range(F):
                    dz[n, 2 * i + 1, 2 * j + 1, f] = g[n, i, j, f] if argmax[n, i, j, f] == 3 else zero


@njit(**OPTS)
def adam(p, g, m, v, lr_t, beta_1, beta_2, epsilon, write):
    """numpy_ops.adam_update on flat arrays: True if every new weight is finite; writes only if `write`."""
    one = p.dtype.type(1)
    bad = 0
    for i in range(p.size):
        m_new = m[i] + (one - beta_1) * (g[i] - m[i])
        v_new = v[i] + (one - beta_2) * (g[i] * g[i] - v[i])
        p_new = p[i] - lr_t * m_new / (np.sqrt(v_new) + epsilon)
        bad += not np.isfinite(p_new)
        if write:
            m[i], v[i], p[i] = m_new, v_new, p_new
    return bad == 0
