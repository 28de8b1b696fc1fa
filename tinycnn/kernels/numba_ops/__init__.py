"""The Numba backend: numpy_ops's functions with the same signatures, compiled, and a fast plan.

Read tinycnn/kernels/numpy_ops.py first: it says what each function computes. Here:
    conv2d_forward, conv2d_backward      conv.py: direct.py, winograd.py or im2col_conv.py, by shape
    maxpool_forward, maxpool_backward    pooling.py (2x2 windows: elementwise.py)
    batchnorm_stats, batchnorm_forward,  normalization.py
    batchnorm_backward
    im2col, col2im                       im2col_conv.py
    adam_update                          elementwise.py
    build_plan(layers)                   plan.py: how a model runs its layers here (steps.py,
                                         norm_steps.py)
    threads.py, blas.py, blocks.py       every core at work, the BLAS held to one thread meanwhile,
                                         a few images at a time so that buffers stay in cache
Called on its own, each function cuts the batch into one slice per core; called from inside a
plan's slice, it runs whole. Importing this package changes nothing in the process: the threads
start, and the BLAS is probed, on first use. Choices made by measurement are logged, with their
figures, in benchmarks/DECISIONS.md.
"""
import math

import numpy as np

from .. import numpy_ops
from . import blocks, elementwise, im2col_conv as im2col_kernels, threads
from .conv import EMPTY, NO_DROPOUT, Conv, out_hw
from .normalization import batchnorm_backward, batchnorm_forward, batchnorm_stats
from .plan import FastPlan
from .pooling import maxpool, maxpool_backward as _maxpool_backward

__all__ = list(numpy_ops.__all__)


def _split(n, flops, job):
    """job(lo, hi, scratch) on one slice of range(n) per core (per threads.parts)."""
    bounds = threads.bounds(n, threads.parts(n, flops))
    threads.run([lambda lo=lo, hi=hi: job(lo, hi, blocks.Scratch()) for lo, hi in bounds])
    return len(bounds)


def im2col(x, KH, KW, strides, pads):
    """Same as numpy_ops.im2col: x (N, H, W, C) -> cols (N*OH*OW, KH*KW*C)."""
    x = np.ascontiguousarray(x)
    OH, OW = out_hw(x.shape[1:], (KH, KW), strides, pads)
    cols = np.empty((len(x) * OH * OW, KH * KW * x.shape[3]), dtype=x.dtype)
    per = OH * OW
    _split(len(x), cols.size, lambda lo, hi, _: im2col_kernels.im2col(
        x[lo:hi], KH, KW, strides[0], strides[1], pads[0], pads[2], OH, OW, cols[lo * per:hi * per]))
    return cols


def col2im(cols, x_shape, KH, KW, strides, pads):
    """Same as numpy_ops.col2im: cols (N*OH*OW, KH*KW*C) -> dx (N, H, W, C), overlaps added."""
    cols = np.ascontiguousarray(cols)
    OH, OW = out_hw(x_shape[1:], (KH, KW), strides, pads)
    dx = np.empty(x_shape, dtype=cols.dtype)
    per = OH * OW
    _split(x_shape[0], cols.size, lambda lo, hi, _: im2col_kernels.col2im(
        cols[lo * per:hi * per], KH, KW, strides[0], strides[1], pads[0], pads[2], OH, OW, dx[lo:hi]))
    return dx


def conv2d_forward(x, w, b, strides, pads):
    """Same as numpy_ops.conv2d_forward; saved holds what this backend's conv2d_backward needs."""
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    conv = Conv(x.shape[1:], w.shape, strides, pads)
    ctx = conv.alg.prepare(w)
    bias = np.zeros(w.shape[3], dtype=x.dtype) if b is None else np.ascontiguousarray(b, dtype=x.dtype)
    out = np.empty((len(x),) + conv.out_shape, dtype=x.dtype)
    shape = conv.alg.saved_shape(len(x))
    saved = None if shape is None else np.empty(shape, dtype=x.dtype)
    per = conv.alg.per if saved is not None else 0

    def job(lo, hi, scratch):
        conv.forward(x[lo:hi], ctx, bias, NO_DROPOUT, 0, out[lo:hi], EMPTY,
                     None if saved is None else saved[lo * per:hi * per], scratch)
    _split(len(x), out.size * w[..., 0].size * 2, job)
    return out, (conv, x, ctx, saved)


def conv2d_backward(dout, saved):
    """Same as numpy_ops.conv2d_backward: dx (N, H, W, C), dw (KH, KW, C, F), db (F,)."""
    conv, x, ctx, kept = saved
    dout = np.ascontiguousarray(dout)
    dx = np.empty(x.shape, dtype=dout.dtype)
    parts = {}
    per = conv.alg.per if kept is not None else 0

    def job(lo, hi, scratch):
        dw, db = np.zeros(conv.alg.dw_shape(), dtype=dout.dtype), np.zeros(conv.F)
        conv.backward(dout[lo:hi], x[lo:hi], dout[lo:hi], EMPTY, ctx, None if kept is None else kept[lo * per:hi * per],
                      NO_DROPOUT, 0, dw, db, dx[lo:hi], scratch)
        parts[lo] = dw, db
    _split(len(dout), dout.size * conv.taps * 4, job)                  # two products: dx and dw
    parts = [parts[lo] for lo in sorted(parts)]       # summed in the batch's order: the same bits every time
    dw = conv.alg.finish(sum(p[0] for p in parts))
    return dx, dw.astype(dout.dtype, copy=False), sum(p[1] for p in parts).astype(dout.dtype)


def maxpool_forward(x, pool, strides, pads):
    """Same as numpy_ops.maxpool_forward, saved included (each winner's offset in its window)."""
    x = np.ascontiguousarray(x)
    (OH, OW), (PH, PW) = out_hw(x.shape[1:], pool, strides, pads), pool
    out = np.empty((len(x), OH, OW, x.shape[3]), dtype=x.dtype)
    argmax = np.empty(out.shape, dtype=numpy_ops.offset_dtype(pool))
    fast = tuple(pool) == tuple(strides) == (2, 2) and tuple(pads) == (0, 0, 0, 0)
    zeros = np.zeros(x.shape[3], dtype=x.dtype)

    def job(lo, hi, _):
        if fast:
            elementwise.epilogue(x[lo:hi], zeros, False, True, out[lo:hi], argmax[lo:hi])
        else:
            maxpool(x[lo:hi], PH, PW, strides[0], strides[1], pads[0], pads[2], out[lo:hi], argmax[lo:hi])
    _split(len(x), x.size, job)
    return out, (argmax, x.shape, tuple(pool), tuple(strides), tuple(pads))


def maxpool_backward(dout, saved):
    """Same as numpy_ops.maxpool_backward: each window's gradient goes to its winner."""
    argmax, x_shape, (PH, PW), (SH, SW), pads = saved
    dout = np.ascontiguousarray(dout)
    dx = np.empty(x_shape, dtype=dout.dtype)
    _split(x_shape[0], dx.size, lambda lo, hi, _: _maxpool_backward(
        dout[lo:hi], argmax[lo:hi], PH, PW, SH, SW, pads[0], pads[2], dx[lo:hi]))
    return dx


def adam_update(p, g, m, v, lr_t, beta_1, beta_2, epsilon, write=True):
    """Same as numpy_ops.adam_update, in one pass over the weight array."""
    f = p.dtype.type                                  # scalars in p's type, so an overflow shows as in NumPy
    return bool(elementwise.adam(p.reshape(-1), np.ascontiguousarray(g).reshape(-1), m.reshape(-1), v.reshape(-1),
                                 f(lr_t), f(beta_1), f(beta_2), f(epsilon), write))


def build_plan(layers, input_grad=False):
    """How a model runs its layers on this backend: plan.FastPlan. input_grad: backward must
    return dL/d(input) (a stage inside a graph); else the first layer computes none."""
    return FastPlan(layers, input_grad=input_grad)
