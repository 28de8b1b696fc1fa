"""The NumPy reference kernels: what every layer computes, written to be read.

A kernel only computes. It gets arrays and plain integers, returns arrays, and knows
nothing of layers, names or training. `numba_ops.py` has the same functions with the
same signatures; `tinycnn.set_backend()` picks which module the layers call.

Conventions (the same in both modules):
    x      input, NHWC: (N, H, W, C)
    w      conv kernel, Keras layout: (KH, KW, C, F)
    stride (SH, SW)
    pads   (top, bottom, left, right) zero rows/columns added around x
    OH, OW output height and width
A forward kernel returns (out, saved); the layer keeps `saved` and hands it back to the
matching backward kernel of the same module. Nothing here keeps state between calls.
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided


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


def windows(xp, KH, KW, stride):
    """A read-only view of every KHxKW window of the (already padded) input. No copy.

    Returns shape (N, OH, OW, KH, KW, C): windows[n, i, j] is the patch whose top-left
    corner sits at row i*SH, column j*SW. Moving one step along the OH axis jumps SH rows
    in memory, moving along KH jumps one row: that is the whole stride trick.
    """
    N, Hp, Wp, C = xp.shape
    SH, SW = stride
    OH, OW = (Hp - KH) // SH + 1, (Wp - KW) // SW + 1
    sN, sH, sW, sC = xp.strides
    return as_strided(xp, shape=(N, OH, OW, KH, KW, C),
                      strides=(sN, sH * SH, sW * SW, sH, sW, sC), writeable=False)


def im2col(x, KH, KW, stride, pads):
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
    patches = windows(pad_nhwc(x, pads), KH, KW, stride)   # (N, OH, OW, KH, KW, C), a view
    _, OH, OW = patches.shape[:3]
    return patches.reshape(N * OH * OW, KH * KW * C)        # the copy happens here


def col2im(cols, x_shape, KH, KW, stride, pads):
    """The adjoint (transpose) of im2col, NOT its inverse: overlapping windows add up.

    cols (N*OH*OW, KH*KW*C) -> dx (N, H, W, C). Each entry of cols is sent back to the
    pixel it was copied from, and a pixel that appeared in several windows receives the
    sum. That sum is exactly the chain rule: a pixel used k times gets k gradient terms.
    So <im2col(x), c> == <x, col2im(c)> for any x and c, while col2im(im2col(x)) != x.
    """
    N, H, W, C = x_shape
    SH, SW = stride
    top, bottom, left, right = pads
    Hp, Wp = H + top + bottom, W + left + right
    OH, OW = out_size(H, KH, SH, top, bottom), out_size(W, KW, SW, left, right)
    cols = cols.reshape(N, OH, OW, KH, KW, C)
    dxp = np.zeros((N, Hp, Wp, C), dtype=cols.dtype)                 # padded gradient
    for i in range(KH):                                               # loop over the kernel
        for j in range(KW):                                           # window, not the pixels
            dxp[:, i:i + SH * OH:SH, j:j + SW * OW:SW, :] += cols[:, :, :, i, j, :]
    return dxp[:, top:top + H, left:left + W, :]                      # drop the padding


# ----------------------------------------------------------------------------------------
# Conv2D: one matrix product each way
# ----------------------------------------------------------------------------------------
def conv2d_forward(x, w, b, stride, pads, relu=False, keep=True):
    """out = im2col(x) @ W + b.  x (N,H,W,C), w (KH,KW,C,F), b (F,) or None -> out (N,OH,OW,F).

    relu=True also applies max(out, 0), in place. saved = cols, the unrolled input, which
    the weight gradient needs. keep=False (inference: no backward will come): saved is None.
    """
    N, H, W, _ = x.shape
    KH, KW, C, F = w.shape
    OH, OW = out_size(H, KH, stride[0], pads[0], pads[1]), out_size(W, KW, stride[1], pads[2], pads[3])
    cols = im2col(x, KH, KW, stride, pads)                 # (N*OH*OW, KH*KW*C)
    out = cols @ w.reshape(KH * KW * C, F)                 # (N*OH*OW, F)
    if b is not None:
        out += b                                           # (N*OH*OW, F)
    if relu:
        np.maximum(out, 0, out=out)                        # (N*OH*OW, F)
    return out.reshape(N, OH, OW, F), cols if keep else None


def conv2d_backward(dout, saved, x_shape, w, stride, pads, need_dx=True, relu_out=None):
    """Gradients of out = cols @ W + b, then col2im to fold dcols back onto the image.

    dout (N,OH,OW,F), saved = cols (N*OH*OW, KH*KW*C) -> dx (N,H,W,C) or None, dw, db.
    relu_out: the forward's output when a ReLU was fused; its gradient is applied first.
    """
    KH, KW, C, F = w.shape
    cols = saved
    if relu_out is not None:
        dout = relu_backward(dout, relu_out)                           # (N, OH, OW, F)
    dout2 = dout.reshape(-1, F)                                        # (N*OH*OW, F)
    dw = (cols.T @ dout2).reshape(KH, KW, C, F)                        # (KH, KW, C, F)
    db = dout2.sum(axis=0)                                             # (F,)
    if not need_dx:
        return None, dw, db
    dcols = dout2 @ w.reshape(KH * KW * C, F).T                        # (N*OH*OW, KH*KW*C)
    dx = col2im(dcols, x_shape, KH, KW, stride, pads)                  # (N, H, W, C)
    return dx, dw, db


# ----------------------------------------------------------------------------------------
# MaxPooling2D: remember the winner of every window, route the gradient to it
# ----------------------------------------------------------------------------------------
def offset_dtype(pool):
    """The smallest integer type that holds every offset k = i*PW + j of a PHxPW window."""
    return np.uint8 if pool[0] * pool[1] <= 256 else np.int32


def maxpool_forward(x, pool, stride, pads, track=True):
    """x (N,H,W,C) -> out (N,OH,OW,C), saved = argmax (N,OH,OW,C), each window's winner.

    A loop over the PH*PW offsets inside a window (4 for 2x2), never over pixels: offset
    (i, j) of every window at once is the strided slice xp[:, i::SH, j::SW]. A running max
    keeps the best value so far and which offset k = i*PW + j gave it. Strict ">" means a
    tie goes to the first offset. Padding ("same") uses -inf, so a padded cell never wins.
    track=False (inference: no backward will come): saved is None, and no winner is kept.
    """
    PH, PW = pool
    SH, SW = stride
    N, H, W, C = x.shape
    top, bottom, left, right = pads
    OH, OW = out_size(H, PH, SH, top, bottom), out_size(W, PW, SW, left, right)
    xp = pad_nhwc(x, pads, value=-np.inf)
    out = np.full((N, OH, OW, C), -np.inf, dtype=x.dtype)              # (N, OH, OW, C) best so far
    argmax = np.zeros((N, OH, OW, C), dtype=offset_dtype(pool)) if track else None   # its offset
    for i in range(PH):
        for j in range(PW):
            v = xp[:, i:i + SH * OH:SH, j:j + SW * OW:SW, :]           # (N, OH, OW, C) offset (i, j)
            better = v > out
            np.copyto(out, v, where=better)
            if track:
                argmax[better] = i * PW + j
    return out, argmax


def maxpool_backward(dout, saved, x_shape, pool, stride, pads):
    """Each window passes its whole gradient to its winner; the other cells get 0.

    dout (N,OH,OW,C), saved = argmax (N,OH,OW,C) -> dx (N,H,W,C). The same loop over window
    offsets as forward: offset (i, j) receives dout where it was the winner. Where windows
    overlap (stride < pool) a cell can win several windows and its gradients add up.
    """
    argmax = saved
    N, H, W, C = x_shape
    PH, PW = pool
    SH, SW = stride
    top, bottom, left, right = pads
    _, OH, OW, _ = dout.shape
    dxp = np.zeros((N, H + top + bottom, W + left + right, C), dtype=dout.dtype)   # padded dx
    for i in range(PH):
        for j in range(PW):
            won = argmax == i * PW + j                                 # (N, OH, OW, C)
            dxp[:, i:i + SH * OH:SH, j:j + SW * OW:SW, :] += dout * won
    return dxp[:, top:top + H, left:left + W, :]


# ----------------------------------------------------------------------------------------
# Dense: a plain matrix product
# ----------------------------------------------------------------------------------------
def matmul(a, b):
    """a (M, K) @ b (K, N) -> (M, N). Here, NumPy's own product (its BLAS may use threads)."""
    return a @ b


def map_batch(fn, x):
    """fn(x), for an fn that treats every sample on its own (inference). Here: just fn(x);
    numba_ops hands slices of the batch to different cores."""
    return fn(x)


# ----------------------------------------------------------------------------------------
# Dropout, ReLU and the Adam step: element-wise work
# ----------------------------------------------------------------------------------------
def dropout_forward(x, rate, generator):
    """Inverted dropout: zero each unit with probability `rate`, scale the rest by 1/(1-rate).

    Returns (out, mask) with mask in {0, 1/(1-rate)}, so that out = x * mask and the
    expected value of out equals x: nothing needs rescaling at inference.
    """
    keep = generator.random(x.shape, dtype=np.float32) >= rate         # (same shape as x)
    mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - rate))
    return x * mask, mask


def dropout_backward(dout, mask):
    """d(x * mask)/dx = mask."""
    return dout * mask


def relu_forward(z):
    """max(z, 0)."""
    return np.maximum(z, 0)


def relu_backward(dout, out):
    """The gradient passes where the unit was active (out > 0) and stops elsewhere."""
    return dout * (out > 0)


def adam_update(p, g, m, v, lr_t, beta_1, beta_2, epsilon):
    """One Adam step, in place on p, m and v (Keras's form, bias correction folded into lr_t).

        m <- m + (1 - beta_1) (g - m)          running mean of g
        v <- v + (1 - beta_2) (g^2 - v)        running mean of g^2
        p <- p - lr_t * m / (sqrt(v) + eps)    lr_t = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
    """
    m += (1 - beta_1) * (g - m)
    v += (1 - beta_2) * (g * g - v)
    p -= lr_t * m / (np.sqrt(v) + epsilon)
