"""BatchNormalization's kernels: numpy_ops.batchnorm_stats, batchnorm_forward and
batchnorm_backward, each one pass over x (or dout and x) per core, on rows of C channels.

    batchnorm_stats(x)                                   -> mean, var (C,)
    batchnorm_forward(x, mean, var, gamma, beta, eps)    -> out, saved
    normalize(x, mean, var, gamma, beta, eps, relu)      -> the same, then max(out, 0) if relu
    batchnorm_backward(dout, saved, batch_stats)         -> dx, dgamma, dbeta (through the ReLU if any)

x (N, ..., C) is seen as rows (N*...*C / C, C); the rows are cut into one slice per core
(threads.py), and each slice's per-channel sums (float64) are added in the slices' order.
The statistics are one pass: sums of x - shift and its square, shift = the first row (so that
var = E[(x - shift)^2] - E[x - shift]^2 loses no digits when the mean is large against the
spread). Nothing keeps xhat: saved holds x itself, and backward computes xhat from it again
(one array fewer written and read), and the ReLU's gate is recomputed from x the same way (see
benchmarks/DECISIONS.md, "BatchNormalization kernels").
"""
import numpy as np
from numba import njit

from . import threads
from .elementwise import OPTS

# These passes are memory traffic, not arithmetic: a value read and written costs about what 16
# floating-point operations do on one core, for threads.parts' minimum slice.
FLOPS_PER_VALUE = 16


@njit(**OPTS)
def _sums(x, shift, s1, s2):
    """s1 += column sums of x - shift, s2 += of (x - shift)^2; x (rows, C), the sums float64."""
    for r in range(x.shape[0]):
        for c in range(x.shape[1]):
            d = np.float64(x[r, c]) - shift[c]
            s1[c] += d
            s2[c] += d * d


@njit(**OPTS)
def _normalize(x, mean, a, b, relu, out):
    """out = (x - mean) * a + b per column, then max(., 0) if relu; x, out (rows, C)."""
    zero = out.dtype.type(0)
    for r in range(x.shape[0]):
        for c in range(x.shape[1]):
            y = (x[r, c] - mean[c]) * a[c] + b[c]
            out[r, c] = max(y, zero) if relu else y


@njit(**OPTS)
def _gate(g, x, mean, a, b, relu):
    """g, or 0 where relu and (x - mean) * a + b <= 0 (the ReLU's gradient, its input recomputed)."""
    if relu and (x - mean) * a + b <= 0:
        return g * 0
    return g


@njit(**OPTS)
def _grad_sums(dout, x, mean, inv_std, a, b, relu, dbeta, dgamma):
    """With g = dout through the ReLU (if relu): dbeta += column sums of g, dgamma += of
    g * xhat, xhat = (x - mean) * inv_std (float64 sums)."""
    for r in range(x.shape[0]):
        for c in range(x.shape[1]):
            g = np.float64(_gate(dout[r, c], x[r, c], mean[c], a[c], b[c], relu))
            dbeta[c] += g
            dgamma[c] += g * ((x[r, c] - mean[c]) * inv_std[c])


@njit(**OPTS)
def _dx(dout, x, mean, a, b, relu, k1, k0, k2, dx):
    """dx = k1 * g - k0 - (x - mean) * k2 per column, g = dout through the ReLU (if relu)."""
    for r in range(x.shape[0]):
        for c in range(x.shape[1]):
            g = _gate(dout[r, c], x[r, c], mean[c], a[c], b[c], relu)
            dx[r, c] = k1[c] * g - k0[c] - (x[r, c] - mean[c]) * k2[c]


def _rows(a):
    a = np.ascontiguousarray(a)
    return a.reshape(-1, a.shape[-1])


def _each_slice(rows, job):
    """[job(lo, hi)] over one slice of range(rows) per core, in the slices' order."""
    n = len(rows)
    bounds = threads.bounds(n, threads.parts(n, rows.size * FLOPS_PER_VALUE))
    return threads.run([lambda lo=lo, hi=hi: job(lo, hi) for lo, hi in bounds])


def _total(parts, C):
    s = [np.zeros(C) for _ in parts[0]]
    for part in parts:
        for acc, p in zip(s, part):
            acc += p
    return s


def batchnorm_stats(x):
    """Same as numpy_ops.batchnorm_stats: x (N, ..., C) -> mean (C,), var (C,) biased."""
    x2 = _rows(x)
    m, C = x2.shape
    if m == 0:
        return np.full(C, np.nan, x.dtype), np.full(C, np.nan, x.dtype)      # as NumPy's mean of nothing
    shift = x2[0].astype(np.float64)

    def job(lo, hi):
        s1, s2 = np.zeros(C), np.zeros(C)
        _sums(x2[lo:hi], shift, s1, s2)
        return s1, s2
    s1, s2 = _total(_each_slice(x2, job), C)
    d = s1 / m                                                  # E[x - shift]
    return (shift + d).astype(x.dtype), np.maximum(s2 / m - d * d, 0).astype(x.dtype)


def batchnorm_forward(x, mean, var, gamma, beta, eps):
    """Same as numpy_ops.batchnorm_forward; saved = (x, mean, inv_std, a, b, relu) (see normalize)."""
    return normalize(x, mean, var, gamma, beta, eps, False)


def normalize(x, mean, var, gamma, beta, eps, relu):
    """batchnorm_forward, then max(out, 0) if relu (the fast plan's BatchNormalization + ReLU).
    saved = (x, mean, inv_std, a, b, relu), a = gamma * inv_std and b = beta per channel:
    batchnorm_backward gets dL/dx through the ReLU too."""
    x = np.ascontiguousarray(x)
    x2, f = _rows(x), x.dtype.type
    mean, var = np.asarray(mean, x.dtype), np.asarray(var, x.dtype)
    inv_std = f(1) / np.sqrt(var + f(eps))                                    # (C,)
    a = inv_std if gamma is None else (inv_std * gamma).astype(x.dtype)      # (C,)
    b = np.zeros_like(a) if beta is None else np.asarray(beta, x.dtype)      # (C,)
    out = np.empty_like(x)
    o2 = out.reshape(x2.shape)
    _each_slice(x2, lambda lo, hi: _normalize(x2[lo:hi], mean, a, b, relu, o2[lo:hi]))
    return out, (x, mean, inv_std, a, b, relu)


def batchnorm_backward(dout, saved, batch_stats):
    """Same as numpy_ops.batchnorm_backward (through the ReLU too, if forward had relu):
    dx like x, dgamma (C,), dbeta (C,)."""
    x, mean, inv_std, a, b, relu = saved
    d2, x2 = _rows(dout).astype(x.dtype, copy=False), _rows(x)
    m, C = x2.shape

    def sums(lo, hi):
        db, dg = np.zeros(C), np.zeros(C)
        _grad_sums(d2[lo:hi], x2[lo:hi], mean, inv_std, a, b, relu, db, dg)
        return db, dg
    dbeta, dgamma = _total(_each_slice(x2, sums), C) if m else (np.zeros(C), np.zeros(C))
    if batch_stats:                  # dx = scale * (g - dbeta / m - xhat * dgamma / m), scale = a
        k0, k2 = (a * dbeta / m).astype(x.dtype), (a * inv_std.astype(np.float64) * dgamma / m).astype(x.dtype)
    else:
        k0, k2 = np.zeros(C, x.dtype), np.zeros(C, x.dtype)
    dx = np.empty_like(x)
    g2 = dx.reshape(x2.shape)
    _each_slice(x2, lambda lo, hi: _dx(d2[lo:hi], x2[lo:hi], mean, a, b, relu, a, k0, k2, g2[lo:hi]))
    return dx, dgamma.astype(x.dtype), dbeta.astype(x.dtype)
