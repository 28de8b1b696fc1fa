"""The Numba kernels: numpy_ops.py's functions, with the same signatures, compiled.

Read numpy_ops.py first: it says what each function computes. This file says how to do
it fast on a CPU. The rules that make the difference here:
  * Padding is done inside the loops (an out-of-image tap reads 0), never by np.pad.
  * The big matrix products stay with NumPy's BLAS (OpenBLAS): a hand-written loop
    cannot beat it. Numba does everything around them: im2col, col2im, the bias + ReLU
    epilogue, pooling, dropout and the Adam step, each in a single pass over memory.
  * Every core works on its own chunk of the batch (cores.py): image n never touches
    image m's output, so chunk k runs im2col, its share of the product (with the BLAS
    held to one thread) and the epilogue on thread k, and the parts of dW and db are
    summed at the end. Measured on 2 cores (seed model, batch 128, 6 x 200 steps
    interleaved): a median training step of 23.9 ms against 26.9 ms with the work on
    one thread and the BLAS threading its products alone. Numba's own parallel=True lost:
    OpenBLAS's idle workers spin after every product and Numba's threads queue behind
    them (112 ms against 24). The loops keep prange over images, so PARALLEL["parallel"]
    = True would still be race-free.
  * Convolutions with a 3x3 kernel, stride 1 and 32 or more input channels (conv2) take
    Winograd's F(6x6, 3x3) instead of im2col (winograd.py): a fifth of the multiplications.
    Each core runs its chunk a few images at a time (cores.blocks), so that the buffers one
    step writes are still in its own cache when the next step reads them.
  * A 3x3 kernel over one input channel (conv1) is computed directly, its nine taps in
    registers: im2col would write them to memory for a product with an inner dimension of 9.
  * Freed memory is kept for the next step (cores.keep_freed_memory): the same big arrays
    are allocated every step, and fresh pages from the system cost a page fault each.
  * MaxPooling2D stores each winner's offset in its window, so backward needs no search.
  * Dropout draws its mask from a counter-based hash (splitmix64) seeded from tinycnn's
    generator: parallel, reproducible with set_random_seed, and no state to share.
Measured choices (seed model, batch 128, 2 cores) are noted where they were made.
"""
import math
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from . import cores, winograd
from .cores import MACS_PER_STEP, blocks, for_each_chunk, n_chunks
from .numpy_ops import offset_dtype, out_size

PARALLEL = dict(parallel=False, cache=True, nogil=True)   # see the note above
cores.keep_freed_memory()          # each step's big arrays reuse the last step's memory: no page faults


# ----------------------------------------------------------------------------------------
# im2col / col2im with the padding folded into the index arithmetic
# ----------------------------------------------------------------------------------------
@njit(**PARALLEL)
def _im2col(x, KH, KW, SH, SW, top, left, OH, OW, cols):
    N, H, W, C = x.shape
    for n in prange(N):
        for i in range(OH):
            for j in range(OW):
                r = (n * OH + i) * OW + j
                for kh in range(KH):
                    row = i * SH + kh - top
                    for kw in range(KW):
                        col = j * SW + kw - left
                        base = (kh * KW + kw) * C
                        inside = 0 <= row < H and 0 <= col < W
                        if C == 1:       # conv1: a loop of length 1 cost more than its body (1.7 -> 1.1 ms)
                            cols[r, base] = x[n, row, col, 0] if inside else 0
                        elif inside:
                            for c in range(C):
                                cols[r, base + c] = x[n, row, col, c]
                        else:
                            for c in range(C):
                                cols[r, base + c] = 0


@njit(**PARALLEL)
def _im2col_t(x, KH, KW, SH, SW, top, left, OH, OW, colsT):
    """_im2col's cols, transposed: colsT (KH*KW*C, N*OH*OW). For thin patches (conv1: one input
    channel), a row of cols gathers 9 single numbers from 3 image rows; a row of colsT takes a
    run of OW neighbours from one image row, which the compiler turns into vector copies.
    Measured (conv1, 64 images, one core, best of 40): 0.30 ms against 0.57 ms for _im2col."""
    N, H, W, C = x.shape
    zero = x.dtype.type(0)
    for n in prange(N):
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


@njit(**PARALLEL)
def _col2im(cols, KH, KW, SH, SW, top, left, OH, OW, dx):
    N, H, W, C = dx.shape
    for n in prange(N):
        dx[n] = 0
        for i in range(OH):
            for j in range(OW):
                r = (n * OH + i) * OW + j
                for kh in range(KH):
                    row = i * SH + kh - top
                    if row < 0 or row >= H:
                        continue
                    for kw in range(KW):
                        col = j * SW + kw - left
                        if col < 0 or col >= W:
                            continue
                        base = (kh * KW + kw) * C
                        for c in range(C):
                            dx[n, row, col, c] += cols[r, base + c]


def _dims(x_shape, KH, KW, stride, pads):
    N, H, W, C = x_shape
    return out_size(H, KH, stride[0], pads[0], pads[1]), out_size(W, KW, stride[1], pads[2], pads[3])


def im2col(x, KH, KW, stride, pads):
    """Same as numpy_ops.im2col: x (N,H,W,C) -> cols (N*OH*OW, KH*KW*C)."""
    x = np.ascontiguousarray(x)
    N, H, W, C = x.shape
    OH, OW = _dims(x.shape, KH, KW, stride, pads)
    cols = np.empty((N * OH * OW, KH * KW * C), dtype=x.dtype)
    per = OH * OW                                       # rows of cols per image

    def chunk(k, lo, hi):
        _im2col(x[lo:hi], KH, KW, stride[0], stride[1], pads[0], pads[2], OH, OW, cols[lo * per:hi * per])
    for_each_chunk(N, chunk, work=cols.size)
    return cols


def col2im(cols, x_shape, KH, KW, stride, pads):
    """Same as numpy_ops.col2im: cols (N*OH*OW, KH*KW*C) -> dx (N,H,W,C), overlaps added."""
    OH, OW = _dims(x_shape, KH, KW, stride, pads)
    dx = np.empty(x_shape, dtype=cols.dtype)
    cols = np.ascontiguousarray(cols)
    per = OH * OW

    def chunk(k, lo, hi):
        _col2im(cols[lo * per:hi * per], KH, KW, stride[0], stride[1], pads[0], pads[2], OH, OW, dx[lo:hi])
    for_each_chunk(x_shape[0], chunk, work=cols.size)
    return dx


# ----------------------------------------------------------------------------------------
# Conv2D
# ----------------------------------------------------------------------------------------
@njit(**PARALLEL)
def _bias_relu(out, b, relu):
    """out (M, F) += b, then max(., 0) if relu: one pass instead of two."""
    M, F = out.shape
    for r in prange(M):
        for f in range(F):
            v = out[r, f] + b[f]
            out[r, f] = 0 if relu and v < 0 else v


@njit(**PARALLEL)
def _relu(out):
    M, F = out.shape
    for r in prange(M):
        for f in range(F):
            if out[r, f] < 0:
                out[r, f] = 0


@njit(**PARALLEL)
def _relu_grad_and_bias(dout, out, relu, dz, db):
    """dz = dout * (out > 0) (or a copy of dout), and db = column sums of dz, in one pass."""
    M, F = dout.shape
    db64 = np.zeros(F, dtype=np.float64)
    for r in range(M):
        for f in range(F):
            g = dout[r, f] if (not relu or out[r, f] > 0) else 0
            dz[r, f] = g
            db64[f] += g
    db[:] = db64


ROWS = 8                 # _relu_grad_bias_and_dw reads this many rows of dz per pass over dW


@njit(**PARALLEL)
def _relu_grad_bias_and_dw(dout, out, relu, cols, dw, db):
    """For a thin patch (conv1: KH*KW*C = 9) and no dx: dz, db and dW = cols.T @ dz in one
    pass, without ever storing dz. ROWS rows of dz at a time go into a small buffer g, and
    each element of dW takes all ROWS of its products before it is stored again: one load
    and one store of dW per ROWS rows instead of per row (1.0 -> 0.7 ms for 64 images, one
    core, min of 100). Products add up in dout's type over blocks of 256 rows, and the blocks
    in float64, so the error stays at the BLAS product's level. (With the block in float64,
    every multiply-add went through a float32 -> float64 conversion and none was vectorised:
    1.5 ms against 1.0 ms.)"""
    M, F = dout.shape
    P = cols.shape[1]
    zero = dout.dtype.type(0)
    dw64 = np.zeros((P, F), dtype=np.float64)
    db64 = np.zeros(F, dtype=np.float64)
    block = np.zeros((P, F), dtype=dout.dtype)                  # this block's part of dW
    block_db = np.zeros(F, dtype=dout.dtype)                    # and of db
    g = np.zeros((ROWS, F), dtype=dout.dtype)                   # ROWS rows of dz
    a = np.zeros(ROWS, dtype=dout.dtype)                        # column p of those rows of cols
    for r0 in range(0, M, 256):
        block[:] = 0
        block_db[:] = 0
        for r in range(r0, min(r0 + 256, M), ROWS):
            n = min(ROWS, M - r)                                # the last group may be short:
            for i in range(n):
                for f in range(F):
                    g[i, f] = dout[r + i, f] if (not relu or out[r + i, f] > 0) else zero
            g[n:] = 0                                           # its missing rows count as 0
            for f in range(F):
                s = block_db[f]
                for i in range(ROWS):
                    s += g[i, f]
                block_db[f] = s
            for p in range(P):
                for i in range(ROWS):
                    a[i] = cols[r + i, p] if i < n else zero
                for f in range(F):
                    s = block[p, f]
                    for i in range(ROWS):
                        s += a[i] * g[i, f]
                    block[p, f] = s
        dw64 += block
        db64 += block_db
    dw[:] = dw64
    db[:] = db64


# Which algorithm for which shape? Winograd F(6x6, 3x3) for 3x3 stride-1 kernels with at least
# 32 input channels (conv2: see the Winograd section below), a direct loop for a 3x3 kernel
# over one channel (conv1: see _direct_forward), im2col + BLAS for the rest. A direct loop
# that runs over the taps (a running sum per output and filter, one tap at a time, with
# rank-1 updates of whole output rows) lost to im2col + BLAS: conv1 3.2 against 2.5 ms, conv2
# (patch 3x3x32) 52 against 5.9 ms (seed model, batch 128, before the batch was split across
# cores). Only with the nine taps named, in registers, did the direct loop win.
THIN_PATCH = 16          # KH*KW*C at most this: cols stored transposed, dW in one Numba pass


def conv2d_forward(x, w, b, stride, pads, relu=False, keep=True):
    """Same as numpy_ops.conv2d_forward: im2col (Numba) @ W (BLAS), bias + ReLU fused (Numba),
    or Winograd's algorithm where it fits (see _winograd_fits), or the direct loop for a 3x3
    kernel over one channel (_conv3x3_one_channel). saved: cols, or WinogradSaved; None if
    not keep."""
    x = np.ascontiguousarray(x)
    N = x.shape[0]
    KH, KW, C, F = w.shape
    OH, OW = _dims(x.shape, KH, KW, stride, pads)
    if _winograd_fits(w.shape, stride):
        return _winograd_forward(x, w, b, pads, OH, OW, relu, keep)
    if (KH, KW, C) == (3, 3, 1):
        return _direct_forward(x, w, b, stride, pads, relu, keep, OH, OW)
    per, K = OH * OW, KH * KW * C
    w2 = np.ascontiguousarray(w).reshape(K, F)
    thin = K <= THIN_PATCH                                   # then cols is stored transposed
    cols = np.empty((K, N * per), dtype=x.dtype).T if thin else np.empty((N * per, K), dtype=x.dtype)
    out = np.empty((N * per, F), dtype=x.dtype)              # (N*OH*OW, F)

    def chunk(k, lo, hi):                                    # images lo..hi-1
        c, o = cols[lo * per:hi * per], out[lo * per:hi * per]   # (rows, K), (rows, F)
        if thin:
            _im2col_t(x[lo:hi], KH, KW, stride[0], stride[1], pads[0], pads[2], OH, OW, c.T)
        else:
            _im2col(x[lo:hi], KH, KW, stride[0], stride[1], pads[0], pads[2], OH, OW, c)
        np.matmul(c, w2, out=o)
        if b is not None:
            _bias_relu(o, b, relu)
        elif relu:
            _relu(o)
    for_each_chunk(N, chunk, work=cols.size + out.size + cols.size * F // MACS_PER_STEP)
    return out.reshape(N, OH, OW, F), cols if keep else None


@njit(**PARALLEL)
def _tap(x, n, row, col):
    """x[n, row, col, 0], or 0 outside the image (the padding)."""
    inside = 0 <= row < x.shape[1] and 0 <= col < x.shape[2]
    return x[n, row, col, 0] if inside else x.dtype.type(0)


@njit(**PARALLEL)
def _conv3x3_one_channel(x, w9, b, SH, SW, top, left, relu, out, colsT, keep):
    """A 3x3 convolution of a one-channel image, as written: each output pixel's nine taps go
    into registers and every filter f takes b[f] + the nine products, then the ReLU. With
    keep, the taps are also stored as im2col's transposed cols (colsT (9, N*OH*OW)), which
    conv2d_backward's one-pass dW kernel reads. w9 (9, F): the kernel, taps row by row."""
    _, H, W, _ = x.shape
    N, OH, OW, F = out.shape
    zero = out.dtype.type(0)
    for n in prange(N):
        for i in range(OH):
            r0 = i * SH - top                                   # the window's top row and left column
            for j in range(OW):
                c0 = j * SW - left
                if 0 <= r0 and r0 + 2 < H and 0 <= c0 and c0 + 2 < W:      # inside: no checks per tap
                    x0, x1, x2 = x[n, r0, c0, 0], x[n, r0, c0 + 1, 0], x[n, r0, c0 + 2, 0]
                    x3, x4, x5 = x[n, r0 + 1, c0, 0], x[n, r0 + 1, c0 + 1, 0], x[n, r0 + 1, c0 + 2, 0]
                    x6, x7, x8 = x[n, r0 + 2, c0, 0], x[n, r0 + 2, c0 + 1, 0], x[n, r0 + 2, c0 + 2, 0]
                else:                                           # on the padding: taps outside read 0
                    x0, x1, x2 = _tap(x, n, r0, c0), _tap(x, n, r0, c0 + 1), _tap(x, n, r0, c0 + 2)
                    x3, x4, x5 = _tap(x, n, r0 + 1, c0), _tap(x, n, r0 + 1, c0 + 1), _tap(x, n, r0 + 1, c0 + 2)
                    x6, x7, x8 = _tap(x, n, r0 + 2, c0), _tap(x, n, r0 + 2, c0 + 1), _tap(x, n, r0 + 2, c0 + 2)
                if keep:
                    r = (n * OH + i) * OW + j
                    colsT[0, r], colsT[1, r], colsT[2, r], colsT[3, r], colsT[4, r] = x0, x1, x2, x3, x4
                    colsT[5, r], colsT[6, r], colsT[7, r], colsT[8, r] = x5, x6, x7, x8
                for f in range(F):
                    v = (b[f] + x0 * w9[0, f] + x1 * w9[1, f] + x2 * w9[2, f] + x3 * w9[3, f] + x4 * w9[4, f]
                         + x5 * w9[5, f] + x6 * w9[6, f] + x7 * w9[7, f] + x8 * w9[8, f])
                    out[n, i, j, f] = max(v, zero) if relu else v


# conv1 (3x3 kernel, one input channel). im2col + BLAS writes the 9 taps of every pixel to
# memory, multiplies with an inner dimension of only 9, and makes a third pass for the bias and
# the ReLU. The direct loop keeps the taps in registers and writes each output once. Measured
# (64 images, one core, min of 200): 0.45-0.56 ms without cols (inference) and 0.58-0.63 ms
# storing them (training), against 0.81-0.83 ms for im2col (0.30) + product (0.41) + bias
# and ReLU (0.10). Written for any number of taps, the same loop (a running sum per filter,
# one tap at a time) took 1.8 ms: the nine taps must be named for the compiler to keep them.
def _direct_forward(x, w, b, stride, pads, relu, keep, OH, OW):
    N, F = x.shape[0], w.shape[3]
    per = OH * OW
    w9 = np.ascontiguousarray(w).reshape(9, F)
    bias = np.zeros(F, dtype=x.dtype) if b is None else b
    colsT = np.empty((9, N * per) if keep else (9, 0), dtype=x.dtype)   # cols, transposed
    out = np.empty((N, OH, OW, F), dtype=x.dtype)

    def chunk(k, lo, hi):                                    # images lo..hi-1
        c = colsT[:, lo * per:hi * per] if keep else colsT
        _conv3x3_one_channel(x[lo:hi], w9, bias, stride[0], stride[1], pads[0], pads[2], relu,
                             out[lo:hi], c, keep)
    for_each_chunk(N, chunk, work=out.size * 9 // MACS_PER_STEP + out.size)
    return out, colsT.T if keep else None


# Measured (seed model, batch 128, median of 40): conv1's backward (no dx; patch of 9) took
# 3.0 ms as a ReLU-gradient pass + the BLAS product cols.T @ dz (1.15 ms of it, a thin
# product), and 2.4 ms fused into one Numba pass. conv2's dW (patch of 288) is left to BLAS,
# as (dz.T @ cols).T: 3.7 ms against 4.0-4.9 ms for cols.T @ dz. (For conv1's shape the
# second order was faster, 1.15 against 1.45 ms: BLAS speed depends on the shape.)


def conv2d_backward(dout, saved, x_shape, w, stride, pads, need_dx=True, relu_out=None):
    """Same as numpy_ops.conv2d_backward; the ReLU's gradient and the bias sum share one pass.
    Each chunk of images adds its own part of dW and db; the parts are summed at the end."""
    if isinstance(saved, WinogradSaved):
        return _winograd_backward(dout, saved, x_shape, pads, need_dx, relu_out)
    N = x_shape[0]
    KH, KW, C, F = w.shape
    K = KH * KW * C
    OH, OW = _dims(x_shape, KH, KW, stride, pads)
    per = OH * OW
    cols = saved                                                       # (N*OH*OW, K)
    dout = np.ascontiguousarray(dout).reshape(-1, F)                   # (N*OH*OW, F)
    relu = relu_out is not None
    out = np.ascontiguousarray(relu_out).reshape(-1, F) if relu else dout   # (placeholder without ReLU)
    work = dout.size + cols.size * (1 + 2 * F // MACS_PER_STEP)       # ReLU', col2im, 2 products
    parts = n_chunks(N, work)
    db_parts = np.empty((parts, F), dtype=np.float64)                  # (parts, F)
    thin = not need_dx and K <= THIN_PATCH
    dw_parts = np.empty((parts, K, F) if thin else (parts, F, K), dtype=np.float64 if thin else dout.dtype)
    dx = np.empty(x_shape, dtype=dout.dtype) if need_dx else None
    wT = np.ascontiguousarray(w.reshape(K, F).T)                       # (F, K)

    def chunk(k, lo, hi):
        rows = slice(lo * per, hi * per)
        if thin:
            _relu_grad_bias_and_dw(dout[rows], out[rows], relu, cols[rows], dw_parts[k], db_parts[k])
            return
        dz = np.empty_like(dout[rows])                                 # (rows, F)
        _relu_grad_and_bias(dout[rows], out[rows], relu, dz, db_parts[k])
        np.matmul(dz.T, cols[rows], out=dw_parts[k])                   # (F, K), BLAS
        if need_dx:
            dcols = dz @ wT                                            # (rows, K), BLAS
            _col2im(dcols, KH, KW, stride[0], stride[1], pads[0], pads[2], OH, OW, dx[lo:hi])
    for_each_chunk(N, chunk, work)
    db = db_parts.sum(axis=0).astype(dout.dtype)                       # (F,)
    dw = dw_parts.sum(axis=0) if thin else dw_parts.sum(axis=0).T      # (K, F)
    return dx, np.ascontiguousarray(dw, dtype=dout.dtype).reshape(KH, KW, C, F), db


# ----------------------------------------------------------------------------------------
# Conv2D by Winograd's F(6x6, 3x3) (winograd.py): the same convolution with 5x fewer products
# ----------------------------------------------------------------------------------------
# Backward reuses the transformed input V for dW and the transformed gradient dM for dx, so
# all three products shrink, and V is under a quarter of the size of im2col's cols. Measured
# with the F(4x4, 3x3) used before (batch 128 at 13x13 or 64 at 28x28, both cores, 3
# interleaved rounds, forward + backward in ms):
#     C -> F        13x13: im2col   Winograd      28x28: im2col   Winograd
#     4 -> 64              1.2+2.1   2.6+2.4
#     8 -> 64              1.6+3.1   2.9+3.3             3.0+5.7   5.8+8.7   (8 -> 32)
#    16 -> 64              3.0+5.5   3.7+3.9             6.0+10.2  6.9+8.8   (16 -> 32)
#    32 -> 32              3.3+5.3   2.8+3.8             15.0+19.3 11.8+14.2
#    64 -> 64             11.2+16.3  7.3+10.3            17.9+27.1 13.4+19.5 (32 -> 64)
# With few channels the transforms cost more than the products save, hence the threshold.
# The seed model's training step, interleaved in one process: 23.2 -> 19.3 ms (median of 6 x 100).
WINOGRAD_MIN_CHANNELS = 32


class WinogradSaved(NamedTuple):
    """What a Winograd forward keeps for backward."""
    V: np.ndarray        # (T, 64, C) the transformed input tiles
    U: np.ndarray        # (64, C, F) the transformed kernel


def _winograd_fits(w_shape, stride):
    KH, KW, C, F = w_shape
    return (KH, KW) == (3, 3) and tuple(stride) == (1, 1) and C >= WINOGRAD_MIN_CHANNELS


def _winograd_forward(x, w, b, pads, OH, OW, relu, keep):
    """V for the whole batch if keep (backward reads it), else one block's worth per chunk."""
    N, C, F = x.shape[0], w.shape[2], w.shape[3]
    TH, TW = winograd.tiles(OH, OW)
    per = TH * TW                                            # tiles per image
    P = winograd.POSITIONS                                   # 64 values per transformed tile
    U = winograd.kernel_transform(w)                         # (64, C, F)
    V = np.empty((N * per, P, C) if keep else (0, P, C), dtype=x.dtype)    # (T, 64, C)
    out = np.empty((N, OH, OW, F), dtype=x.dtype)            # (N, OH, OW, F)
    bias = np.zeros(F, dtype=x.dtype) if b is None else b

    def chunk(k, lo, hi):                                    # images lo..hi-1, a few at a time
        parts = blocks(lo, hi, per * P * (C + F) * x.itemsize)
        most = max((e - s for s, e in parts), default=0) * per
        support = np.empty((most, winograd.TILE, winograd.TILE), dtype=np.bool_)   # which outputs read a nonzero
        m = np.empty((most, P, F), dtype=x.dtype)                                  # (t, 64, F)
        v_block = None if keep else np.empty((most, P, C), dtype=x.dtype)          # (t, 64, C)
        for s, e in parts:
            t = (e - s) * per
            v = V[s * per:e * per] if keep else v_block[:t]
            winograd.input_transform(x[s:e], pads[0], pads[2], TH, TW, v, support[:t])
            np.matmul(v.transpose(1, 0, 2), U, out=m[:t].transpose(1, 0, 2))   # 64 x (t, C) @ (C, F), BLAS
            winograd.output_transform(m[:t], bias, relu, TH, TW, support[:t], out[s:e])
    for_each_chunk(N, chunk, work=N * per * P * (C + C * F // MACS_PER_STEP) + out.size)
    return out, WinogradSaved(V, U) if keep else None


def _winograd_backward(dout, saved, x_shape, pads, need_dx, relu_out):
    N = x_shape[0]
    V, U = saved
    C, F = U.shape[1:]
    OH, OW = dout.shape[1:3]
    TH, TW = winograd.tiles(OH, OW)
    per, P = TH * TW, winograd.POSITIONS                               # tiles per image, values per tile
    dout = np.ascontiguousarray(dout)
    relu = relu_out is not None
    out = np.ascontiguousarray(relu_out) if relu else dout
    work = V.size * (1 + 2 * F // MACS_PER_STEP)                       # transforms, 2 products
    parts = n_chunks(N, work)
    dU_parts = np.empty((parts, P, C, F), dtype=dout.dtype)            # (parts, 64, C, F)
    db_parts = np.empty((parts, F), dtype=np.float64)                  # (parts, F)
    dx = np.empty(x_shape, dtype=dout.dtype) if need_dx else None
    UT = np.ascontiguousarray(U.transpose(0, 2, 1))                    # (64, F, C)

    def chunk(k, lo, hi):                                              # a few images at a time
        parts = blocks(lo, hi, per * P * (2 * C + F) * dout.itemsize)
        most = max((e - s for s, e in parts), default=0) * per
        dM = np.empty((most, P, F), dtype=dout.dtype)                  # (t, 64, F)
        dV = np.empty((most, P, C), dtype=dout.dtype) if need_dx else None     # (t, 64, C)
        dU, db = np.empty((P, C, F), dtype=dout.dtype), np.empty(F)   # one block's parts
        dU_parts[k], db_parts[k] = 0, 0
        for s, e in parts:
            t = (e - s) * per
            winograd.output_transform_backward(dout[s:e], out[s:e], relu, TH, TW, dM[:t], db)
            dMk = dM[:t].transpose(1, 0, 2)                            # (64, t, F)
            np.matmul(V[s * per:e * per].transpose(1, 2, 0), dMk, out=dU)   # 64 x (C, t) @ (t, F)
            dU_parts[k] += dU
            db_parts[k] += db
            if need_dx:
                np.matmul(dMk, UT, out=dV[:t].transpose(1, 0, 2))      # 64 x (t, F) @ (F, C)
                winograd.input_transform_backward(dV[:t], pads[0], pads[2], TH, TW, dx[s:e])
    for_each_chunk(N, chunk, work)
    dw = winograd.kernel_transform_backward(dU_parts.sum(axis=0))     # (3, 3, C, F)
    db = db_parts.sum(axis=0)                                          # (F,)
    return dx, dw.astype(dout.dtype), db.astype(dout.dtype)


# ----------------------------------------------------------------------------------------
# MaxPooling2D: the winner's offset in its window is stored, so backward needs no search
# ----------------------------------------------------------------------------------------
@njit(**PARALLEL)
def _maxpool_forward(x, PH, PW, SH, SW, top, left, out, argmax, track):
    N, H, W, C = x.shape
    _, OH, OW, _ = out.shape
    for n in prange(N):
        for i in range(OH):
            for j in range(OW):
                first = True
                for kh in range(PH):
                    row = i * SH + kh - top
                    if row < 0 or row >= H:
                        continue
                    for kw in range(PW):
                        col = j * SW + kw - left
                        if col < 0 or col >= W:
                            continue
                        for c in range(C):                       # channels innermost: contiguous
                            v = x[n, row, col, c]
                            if first or v > out[n, i, j, c]:     # strict: a tie keeps the first
                                out[n, i, j, c] = v
                                if track:
                                    argmax[n, i, j, c] = kh * PW + kw
                        first = False


@njit(**PARALLEL)
def _maxpool_forward_2x2(x, out, argmax, track):
    """_maxpool_forward for 2x2 windows at stride 2 that all lie inside x (no padding): the four
    taps of a window are compared in registers, in the order (0, 0), (0, 1), (1, 0), (1, 1),
    and each output is stored once. The general loop above reads and writes each output once
    per tap, in four short loops over channels; this takes a quarter of its time (seed
    model's pool1, 64 images, one core, min of 200: 0.10-0.13 ms against 0.39-0.47)."""
    N, OH, OW, C = out.shape
    for n in prange(N):
        for i in range(OH):
            for j in range(OW):
                for c in range(C):
                    best, k = x[n, 2 * i, 2 * j, c], 0
                    v = x[n, 2 * i, 2 * j + 1, c]
                    if v > best:                                 # strict: a tie keeps the first
                        best, k = v, 1
                    v = x[n, 2 * i + 1, 2 * j, c]
                    if v > best:
                        best, k = v, 2
                    v = x[n, 2 * i + 1, 2 * j + 1, c]
                    if v > best:
                        best, k = v, 3
                    out[n, i, j, c] = best
                    if track:
                        argmax[n, i, j, c] = k


@njit(**PARALLEL)
def _maxpool_backward(dout, argmax, PH, PW, SH, SW, top, left, dx):
    N, H, W, C = dx.shape
    _, OH, OW, _ = dout.shape
    tiled = SH == PH and SW == PW      # windows tile the image: a cell lies in at most one window
    for n in prange(N):
        if tiled:                      # every covered cell is written below, so zero only the rest
            dx[n, max(OH * PH - top, 0):] = 0
            dx[n, :, max(OW * PW - left, 0):] = 0
        else:                          # overlapping windows: accumulate onto zeros
            dx[n] = 0
        for i in range(OH):
            for j in range(OW):
                for kh in range(PH):
                    row = i * SH + kh - top
                    if row < 0 or row >= H:
                        continue
                    for kw in range(PW):
                        col = j * SW + kw - left
                        if col < 0 or col >= W:
                            continue
                        k = kh * PW + kw
                        for c in range(C):
                            won = argmax[n, i, j, c] == k
                            if tiled:
                                dx[n, row, col, c] = dout[n, i, j, c] if won else 0
                            elif won:
                                dx[n, row, col, c] += dout[n, i, j, c]


# Inference needs no winners (track=False): pool1's forward for 64 images, one core, min of
# 200, takes 0.24 ms without them against 0.36 ms with them.
def maxpool_forward(x, pool, stride, pads, track=True):
    """Same as numpy_ops.maxpool_forward, saved included (each winner's offset in its window)."""
    x = np.ascontiguousarray(x)
    N, H, W, C = x.shape
    OH, OW = _dims(x.shape, pool[0], pool[1], stride, pads)
    out = np.empty((N, OH, OW, C), dtype=x.dtype)
    argmax = np.empty((N, OH, OW, C) if track else (0, 0, 0, 0), dtype=offset_dtype(pool))

    two_by_two = (tuple(pool) == tuple(stride) == (2, 2) and pads[0] == pads[2] == 0
                  and 2 * OH <= H and 2 * OW <= W)                  # every window inside x

    def chunk(k, lo, hi):
        if two_by_two:
            _maxpool_forward_2x2(x[lo:hi], out[lo:hi], argmax[lo:hi], track)
        else:
            _maxpool_forward(x[lo:hi], pool[0], pool[1], stride[0], stride[1], pads[0], pads[2],
                             out[lo:hi], argmax[lo:hi], track)
    for_each_chunk(N, chunk, work=x.size)
    return out, argmax if track else None


# Measured (seed model's pool1, batch 128, median of 30): storing the winner's row*W + col as
# int32 and scattering onto a zeroed dx took 2.9 ms; the offset as uint8, with each cell of
# non-overlapping windows written once and no zeroing pass, takes 0.7 ms.
def maxpool_backward(dout, saved, x_shape, pool, stride, pads):
    """Same as numpy_ops.maxpool_backward: each window's gradient goes to its winner."""
    dx = np.empty(x_shape, dtype=dout.dtype)
    dout = np.ascontiguousarray(dout)

    def chunk(k, lo, hi):
        _maxpool_backward(dout[lo:hi], saved[lo:hi], pool[0], pool[1], stride[0], stride[1],
                          pads[0], pads[2], dx[lo:hi])
    for_each_chunk(x_shape[0], chunk, work=dx.size)
    return dx


# ----------------------------------------------------------------------------------------
# Matrix product (Dense)
# ----------------------------------------------------------------------------------------
def matmul(a, b):
    """Same as numpy_ops.matmul, a @ b, with the rows of a split across the cores."""
    M, K = a.shape
    out = np.empty((M, b.shape[1]), dtype=np.result_type(a, b))

    def chunk(k, lo, hi):
        np.matmul(a[lo:hi], b, out=out[lo:hi])
    for_each_chunk(M, chunk, work=out.size * K // MACS_PER_STEP)
    return out


# A whole forward pass per core, for inference: one hand-off per batch instead of one per
# kernel. Measured (seed model, predict 10k images at batch 32, 3 runs interleaved): 0.53-0.62 s
# against 0.63-0.76 s with the kernels splitting themselves, and the same outputs bit for bit.
MIN_SAMPLES_PER_CHUNK = 4


def map_batch(fn, x):
    """Same as numpy_ops.map_batch: fn on slices of the batch, one per core, joined in order.
    fn must treat every sample on its own and change no shared state (a forward pass with
    training=False). Kernels that fn calls run whole inside their chunk."""
    parts = {}

    def chunk(k, lo, hi):
        parts[k] = fn(x[lo:hi])
    for_each_chunk(len(x), chunk, work=cores.MIN_WORK if len(x) >= 2 * MIN_SAMPLES_PER_CHUNK else 0)
    return parts[0] if len(parts) == 1 else np.concatenate([parts[k] for k in sorted(parts)])


# ----------------------------------------------------------------------------------------
# Dropout, ReLU, Adam
# ----------------------------------------------------------------------------------------
@njit(**PARALLEL)
def _dropout(x, out, keep, threshold, scale, seed, start):
    """Element i of this slice is element start + i of the whole batch: its draw is the same
    however the batch is split. A unit is kept when its uniform draw u = z / 2**53 (z: 53
    random bits) is >= rate, that is when z >= threshold = ceil(rate * 2**53): the same test
    in integers, with no conversion to float and no branch (0.15 -> 0.11 ms for conv1's
    pooled output of 64 images, one core, min of 300; the same masks)."""
    zero = out.dtype.type(0)
    for i in prange(x.size):
        z = np.uint64(seed) + np.uint64(start + i + 1) * np.uint64(0x9E3779B97F4A7C15)   # splitmix64
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
        kept = (z >> np.uint64(11)) >= threshold
        keep[i] = kept
        out[i] = x[i] * scale if kept else zero


@njit(**PARALLEL)
def _dropout_backward(dout, keep, scale, dx):
    for i in prange(dout.size):
        dx[i] = dout[i] * scale if keep[i] else 0


def dropout_forward(x, rate, generator):
    """Same contract as numpy_ops.dropout_forward; mask = (keep flags as uint8, scale)."""
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    keep = np.empty(x.shape, dtype=np.uint8)
    scale = x.dtype.type(1.0 / (1.0 - rate))
    threshold = np.uint64(math.ceil(rate * 2.0**53))          # rate * 2**53 is exact in float64
    seed = int(generator.integers(0, 2**63 - 1))
    flat_x, flat_out, flat_keep = x.reshape(-1), out.reshape(-1), keep.reshape(-1)
    per = x.size // x.shape[0] if x.shape[0] else 0          # elements per sample

    def chunk(k, lo, hi):
        rows = slice(lo * per, hi * per)
        _dropout(flat_x[rows], flat_out[rows], flat_keep[rows], threshold, scale, seed, lo * per)
    for_each_chunk(x.shape[0], chunk, work=x.size)
    return out, (keep, scale)


def dropout_backward(dout, mask):
    keep, scale = mask
    dout = np.ascontiguousarray(dout)
    dx = np.empty_like(dout)
    flat_dout, flat_keep, flat_dx = dout.reshape(-1), keep.reshape(-1), dx.reshape(-1)
    per = dout.size // dout.shape[0] if dout.shape[0] else 0

    def chunk(k, lo, hi):
        rows = slice(lo * per, hi * per)
        _dropout_backward(flat_dout[rows], flat_keep[rows], scale, flat_dx[rows])
    for_each_chunk(dout.shape[0], chunk, work=dout.size)
    return dx


@njit(**PARALLEL)
def _relu_backward(dout, out, dz):
    for i in prange(dout.size):
        dz[i] = dout[i] if out[i] > 0 else 0


def relu_forward(z):
    out = np.array(z, order="C")                  # one C-ordered copy, which _relu then edits in place
    _relu(out.reshape(-1, out.shape[-1]))
    return out


def relu_backward(dout, out):
    dout = np.ascontiguousarray(dout)
    dz = np.empty_like(dout)
    _relu_backward(dout.reshape(-1), np.ascontiguousarray(out).reshape(-1), dz.reshape(-1))
    return dz


# error_model="numpy": a division by zero gives inf instead of raising, so Numba drops the
# zero test that stopped the loop from being vectorised (0.54 -> 0.10 ms for 205k weights,
# bitwise the same result; the denominator is never 0 anyway, epsilon > 0).
@njit(error_model="numpy", **PARALLEL)
def _adam(p, g, m, v, lr_t, beta_1, beta_2, epsilon):
    one = p.dtype.type(1)
    for i in prange(p.size):
        m[i] += (one - beta_1) * (g[i] - m[i])
        v[i] += (one - beta_2) * (g[i] * g[i] - v[i])
        p[i] -= lr_t * m[i] / (np.sqrt(v[i]) + epsilon)


def adam_update(p, g, m, v, lr_t, beta_1, beta_2, epsilon):
    """Same as numpy_ops.adam_update, in one parallel pass over each weight array."""
    _adam(p.reshape(-1), np.ascontiguousarray(g).reshape(-1), m.reshape(-1), v.reshape(-1),
          lr_t, beta_1, beta_2, epsilon)
