"""The NumPy reference kernels: what the layers compute, written to be read.

A kernel only computes. It gets arrays and plain numbers, returns arrays, and knows
nothing of layers, names or training. `numba_ops` exports the same functions with the same
signatures (tests/test_backends.py checks it); `tinycnn.set_backend()` picks which one the
layers call through `tinycnn.backend.K`.

Conventions (the same in both backends):
    x        input, NHWC: (N, H, W, C)
    w        conv kernel, Keras layout: (KH, KW, C, F)
    strides  (SH, SW)
    pads     (top, bottom, left, right) zero rows/columns added around x
    OH, OW   output height and width
A forward kernel returns (out, saved); the layer keeps `saved` and hands it back to the
matching backward kernel. Nothing here keeps state between calls.
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided

__all__ = ["im2col", "col2im", "conv2d_forward", "conv2d_backward", "maxpool_forward", "maxpool_backward",
           "batchnorm_stats", "batchnorm_forward", "batchnorm_backward", "adam_update", "build_plan"]


# ----------------------------------------------------------------------------------------
# im2col / col2im
# ----------------------------------------------------------------------------------------
def out_size(size, k, s, pad_before, pad_after):
    """How many windows of size k, stride s fit along an axis of `size` after padding."""
    return (size + pad_before + pad_after - k) // s + 1


def pad_nhwc(x, pads, value=0.0):
    """Add `pads` = (top, bottom, left, right) rows/columns of `value` around each image."""
    top, bottom, left, right = pads
    if top == bottom == left == right == 0:
        return x
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def windows(xp, KH, KW, strides):
    """A read-only view of every KHxKW window of the (already padded) input. No copy.

    Returns shape (N, OH, OW, KH, KW, C): windows[n, i, j] is the patch whose top-left
    corner sits at row i*SH, column j*SW. Moving one step along the OH axis jumps SH rows
    in memory, moving along KH jumps one row: that is the whole stride trick.
    """
    N, Hp, Wp, C = xp.shape
    SH, SW = strides
    OH, OW = (Hp - KH) // SH + 1, (Wp - KW) // SW + 1
    sN, sH, sW, sC = xp.strides
    return as_strided(xp, shape=(N, OH, OW, KH, KW, C),
                      strides=(sN, sH * SH, sW * SW, sH, sW, sC), writeable=False)


def im2col(x, KH, KW, strides, pads):
    """Unroll every receptive field of x into one row of a matrix.

    x (N, H, W, C) -> cols (N*OH*OW, KH*KW*C). Row r = (n, i, j) holds the patch under
    output pixel (i, j) of image n, ordered (kh, kw, c) like a Keras kernel, so that
    cols @ w.reshape(KH*KW*C, F) is the convolution.

    Tiny example, one 3x3 single-channel image, 2x2 kernel, stride 1, no padding:

        x = a b c        cols = a b d e     <- window at (0, 0)
            d e f               b c e f     <- window at (0, 1)
            g h i               d e g h     <- window at (1, 0)
                                e f h i     <- window at (1, 1)

    Each pixel appears in as many rows as there are windows covering it (e appears 4 times).
    """
    N, H, W, C = x.shape
    patches = windows(pad_nhwc(x, pads), KH, KW, strides)   # (N, OH, OW, KH, KW, C), a view
    _, OH, OW = patches.shape[:3]
    return patches.reshape(N * OH * OW, KH * KW * C)         # the copy happens here


def col2im(cols, x_shape, KH, KW, strides, pads):
    """The adjoint (transpose) of im2col, NOT its inverse: overlapping windows add up.

    cols (N*OH*OW, KH*KW*C) -> dx (N, H, W, C). Each entry of cols is sent back to the
    pixel it was copied from, and a pixel that appeared in several windows receives the
    sum. That sum is exactly the chain rule: a pixel used k times gets k gradient terms.
    So <im2col(x), c> == <x, col2im(c)> for any x and c, while col2im(im2col(x)) != x.
    """
    N, H, W, C = x_shape
    SH, SW = strides
    top, bottom, left, right = pads
    OH, OW = out_size(H, KH, SH, top, bottom), out_size(W, KW, SW, left, right)
    cols = cols.reshape(N, OH, OW, KH, KW, C)
    dxp = np.zeros((N, H + top + bottom, W + left + right, C), dtype=cols.dtype)   # padded gradient
    for i in range(KH):                                               # loop over the kernel
        for j in range(KW):                                           # window, not the pixels
            dxp[:, i:i + SH * OH:SH, j:j + SW * OW:SW, :] += cols[:, :, :, i, j, :]
    return dxp[:, top:top + H, left:left + W, :]                      # drop the padding


# ----------------------------------------------------------------------------------------
# Conv2D: one matrix product each way
# ----------------------------------------------------------------------------------------
def conv2d_forward(x, w, b, strides, pads):
    """out = im2col(x) @ W + b.  x (N, H, W, C), w (KH, KW, C, F), b (F,) or None -> out (N, OH, OW, F).

    saved = (cols, x's shape, w, strides, pads): the unrolled input is what dW needs.
    """
    N, H, W, _ = x.shape
    KH, KW, C, F = w.shape
    OH, OW = out_size(H, KH, strides[0], pads[0], pads[1]), out_size(W, KW, strides[1], pads[2], pads[3])
    cols = im2col(x, KH, KW, strides, pads)            # (N*OH*OW, KH*KW*C)
    out = cols @ w.reshape(KH * KW * C, F)             # (N*OH*OW, F)
    if b is not None:
        out += b                                       # (N*OH*OW, F)
    return out.reshape(N, OH, OW, F), (cols, x.shape, w, strides, pads)


def conv2d_backward(dout, saved):
    """The product out = cols @ W + b differentiated, then col2im folds dcols back onto the image.

    dout (N, OH, OW, F) -> dx (N, H, W, C), dw (KH, KW, C, F), db (F,).
    """
    cols, x_shape, w, strides, pads = saved
    KH, KW, C, F = w.shape
    dz = dout.reshape(-1, F)                                  # (N*OH*OW, F): one row per patch
    dw = (cols.T @ dz).reshape(KH, KW, C, F)                  # (KH, KW, C, F)
    db = dz.sum(axis=0)                                       # (F,)
    dcols = dz @ w.reshape(KH * KW * C, F).T                  # (N*OH*OW, KH*KW*C)
    dx = col2im(dcols, x_shape, KH, KW, strides, pads)        # (N, H, W, C): overlaps add up
    return dx, dw, db


# ----------------------------------------------------------------------------------------
# MaxPooling2D: remember the winner of every window, route the gradient to it
# ----------------------------------------------------------------------------------------
def offset_dtype(pool):
    """The smallest integer type that holds every offset k = i*PW + j of a PHxPW window."""
    return np.uint8 if pool[0] * pool[1] <= 256 else np.int32


def maxpool_forward(x, pool, strides, pads):
    """x (N, H, W, C) -> out (N, OH, OW, C), the max of every window.

    saved = (argmax, x's shape, pool, strides, pads), argmax (N, OH, OW, C) holding each
    window's winner as its offset k = i*PW + j. A loop over the PH*PW offsets inside a window
    (4 for 2x2), never over pixels: offset (i, j) of every window at once is the strided slice
    xp[:, i::SH, j::SW]. A running max keeps the best value so far and which offset gave it.
    Strict ">" means a tie goes to the first offset. Padding ("same") uses -inf: it never wins.
    """
    PH, PW = pool
    SH, SW = strides
    N, H, W, C = x.shape
    top, bottom, left, right = pads
    OH, OW = out_size(H, PH, SH, top, bottom), out_size(W, PW, SW, left, right)
    xp = pad_nhwc(x, pads, value=-np.inf)
    out = np.full((N, OH, OW, C), -np.inf, dtype=x.dtype)              # (N, OH, OW, C) best so far
    argmax = np.zeros((N, OH, OW, C), dtype=offset_dtype(pool))        # (N, OH, OW, C) its offset
    for i in range(PH):
        for j in range(PW):
            v = xp[:, i:i + SH * OH:SH, j:j + SW * OW:SW, :]           # (N, OH, OW, C) offset (i, j)
            better = v > out
            np.copyto(out, v, where=better)
            np.copyto(argmax, i * PW + j, where=better)
    return out, (argmax, x.shape, pool, strides, pads)


def maxpool_backward(dout, saved):
    """Each window passes its whole gradient to its winner; the other cells get 0.

    dout (N, OH, OW, C) -> dx (N, H, W, C). The same loop over window offsets as forward:
    offset (i, j) receives dout where it won. Where windows overlap (stride < pool) a cell
    can win several windows, and its gradients add up.
    """
    argmax, (N, H, W, C), (PH, PW), (SH, SW), (top, bottom, left, right) = saved
    _, OH, OW, _ = dout.shape
    dxp = np.zeros((N, H + top + bottom, W + left + right, C), dtype=dout.dtype)   # padded dx
    for i in range(PH):
        for j in range(PW):
            won = argmax == i * PW + j                                 # (N, OH, OW, C)
            dxp[:, i:i + SH * OH:SH, j:j + SW * OW:SW, :] += dout * won
    return dxp[:, top:top + H, left:left + W, :]


# ----------------------------------------------------------------------------------------
# BatchNormalization: per-channel statistics over every axis but the last
# ----------------------------------------------------------------------------------------
def batchnorm_stats(x):
    """x (N, ..., C) -> mean (C,), var (C,): over every value of each channel, var biased (/ m)."""
    axes = tuple(range(x.ndim - 1))
    mu = x.mean(axis=axes)                                    # (C,)
    return mu, ((x - mu) ** 2).mean(axis=axes)                # (C,)


def batchnorm_forward(x, mean, var, gamma, beta, eps):
    """out = gamma * (x - mean) / sqrt(var + eps) + beta.  x (N, ..., C); mean, var (C,);
    gamma, beta (C,) or None (scale 1, shift 0) -> out like x.

    saved = (xhat, inv_std, gamma): what batchnorm_backward needs.
    """
    inv_std = 1.0 / np.sqrt(var + x.dtype.type(eps))          # (C,)
    xhat = (x - mean) * inv_std                               # like x
    out = xhat if gamma is None else xhat * gamma             # like x
    if beta is not None:
        out = out + beta
    return out, (xhat, inv_std, gamma)


def batchnorm_backward(dout, saved, batch_stats):
    """dout like x -> dx like x, dgamma (C,), dbeta (C,).

    batch_stats: were mean and var the batch's own (training)? Then they depend on every x, and
    dx = scale / m * (m * dout - dbeta - xhat * dgamma); else dx = dout * scale, with
    scale = gamma / sqrt(var + eps) and m the values per channel.
    """
    xhat, inv_std, gamma = saved
    axes = tuple(range(dout.ndim - 1))
    dbeta = dout.sum(axis=axes)                               # (C,)
    dgamma = (dout * xhat).sum(axis=axes)                     # (C,)
    scale = inv_std if gamma is None else gamma * inv_std     # (C,)
    if not batch_stats:
        return dout * scale, dgamma, dbeta                    # like x
    m = dout.size // dout.shape[-1]                           # values per channel
    return scale / m * (m * dout - dbeta - xhat * dgamma), dgamma, dbeta


# ----------------------------------------------------------------------------------------
# The Adam step
# ----------------------------------------------------------------------------------------
def adam_update(p, g, m, v, lr_t, beta_1, beta_2, epsilon, write=True):
    """One Adam step on weights p with gradient g (Keras's form, bias correction folded into lr_t):

        m <- m + (1 - beta_1) (g - m)          running mean of g
        v <- v + (1 - beta_2) (g^2 - v)        running mean of g^2
        p <- p - lr_t * m / (sqrt(v) + eps)    lr_t = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)

    Returns True if every new weight is finite. p, m and v are changed (in place) only with
    write=True: an optimizer first checks a step with write=False, then takes it.
    """
    m_new = m + (1 - beta_1) * (g - m)                         # like p
    v_new = v + (1 - beta_2) * (g * g - v)                     # like p
    p_new = p - lr_t * m_new / (np.sqrt(v_new) + epsilon)      # like p
    if write:
        p[...], m[...], v[...] = p_new, m_new, v_new
    return bool(np.isfinite(p_new).all())


# ----------------------------------------------------------------------------------------
# How a model runs its layers on this backend
# ----------------------------------------------------------------------------------------
def build_plan(layers, input_grad=False):
    """The reference plan (tinycnn/plans.py): each layer's forward in order, backward in reverse.
    input_grad: backward must return dL/d(input) (a stage inside a graph); else it may return None."""
    from ..plans import ReferencePlan
    return ReferencePlan(layers)
