"""The Numba backend against the NumPy reference, its threads, BLAS control and cache blocks,
and the backend switch. (Plans: tests/test_plans.py; the no-numba fallback: tests/test_platform.py.)"""
import contextlib
import glob
import inspect
import os
import select
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinycnn
from tinycnn import backend, utils
from tinycnn.kernels import numba_ops, numpy_ops
from tinycnn.kernels.numba_ops import blas, blocks, conv, elementwise, threads, winograd
from tinycnn.kernels.numba_ops import winograd_tiles as wt
from tinycnn.kernels.numba_ops.direct import Direct
from tinycnn.kernels.numba_ops.im2col_conv import Im2col
from tinycnn.layers.base import window_output

CONTRACT = list(numpy_ops.__all__)
# threads.parts divides by MIN_FLOPS_PER_SLICE, so 0 itself raises ZeroDivisionError (see
# test_parts_with_no_minimum_slice_splits_one_slice_per_image): a tiny positive value splits any input.
NO_MINIMUM = 1e-12


def cases(n):
    return settings(max_examples=n, deadline=None, derandomize=True)


@contextlib.contextmanager
def split_into(n):
    """TINYCNN_THREADS=n and no minimum slice: every call is cut into min(n, batch) jobs, recorded."""
    jobs, run = [], threads.run

    def spy(batch):
        jobs.append(len(batch))
        return run(batch)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TINYCNN_THREADS", str(n))
        mp.setattr(threads, "MIN_FLOPS_PER_SLICE", NO_MINIMUM)
        mp.setattr(threads, "run", spy)
        yield jobs


def assert_close(got, ref, rel=1e-5):
    """Equal up to round-off: rel relative, and rel of the largest magnitude (at least 1) absolute."""
    assert got.shape == ref.shape and got.dtype == ref.dtype, (got.shape, got.dtype, ref.shape, ref.dtype)
    scale = max(1.0, float(np.abs(ref).max())) if ref.size else 1.0
    np.testing.assert_allclose(got, ref, rtol=rel, atol=rel * scale)


@st.composite
def window_case(draw, kernel=None, channels=None, strides=None):
    """(N, H, W, C), (KH, KW), (SH, SW), pads from "valid" or "same" (TensorFlow's rule), a seed."""
    N, C = draw(st.integers(1, 4)), channels or draw(st.integers(1, 4))
    KH, KW = kernel or (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    SH, SW = strides or (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = draw(st.sampled_from(["valid", "same"]))
    low = (KH, KW) if padding == "valid" else (1, 1)
    H, W = draw(st.integers(low[0], KH + 7)), draw(st.integers(low[1], KW + 7))
    (_, (top, bottom)), (_, (left, right)) = window_output(H, KH, SH, padding), window_output(W, KW, SW, padding)
    return (N, H, W, C), (KH, KW), (SH, SW), (top, bottom, left, right), draw(st.integers(0, 2**32 - 1))


def pads_of(H, W, padding):
    (_, (top, bottom)), (_, (left, right)) = window_output(H, 3, 1, padding), window_output(W, 3, 1, padding)
    return top, bottom, left, right


# ----------------------------------------------------------------------------------------
# 1. The contract
# ----------------------------------------------------------------------------------------
def test_both_backends_export_the_same_functions_with_the_same_signatures():
    """The layers call either module through K: same names, same order, same signatures."""
    assert numpy_ops.__all__ == numba_ops.__all__
    assert "conv2d_forward" in CONTRACT and "adam_update" in CONTRACT
    for name in CONTRACT:
        ref, fast = getattr(numpy_ops, name), getattr(numba_ops, name)
        assert callable(ref) and callable(fast), name
        assert inspect.signature(fast) == inspect.signature(ref), name


# ----------------------------------------------------------------------------------------
# 2. Every contract function against the reference, split across 1, 2 and 3 threads
# ----------------------------------------------------------------------------------------
def check_conv(x, w, b, strides, pads, threads_n, rel=1e-5, rng=None):
    """Forward and backward of both backends agree; each call is split into min(threads, N) jobs."""
    rng = rng or np.random.default_rng(0)
    out_ref, saved_ref = numpy_ops.conv2d_forward(x, w, b, strides, pads)
    with split_into(threads_n) as jobs:
        out, saved = numba_ops.conv2d_forward(x, w, b, strides, pads)
        dout = rng.standard_normal(out_ref.shape).astype(x.dtype)
        grads = numba_ops.conv2d_backward(dout, saved)
    assert jobs == [min(threads_n, len(x))] * 2
    assert_close(out, out_ref, rel)
    for got, ref in zip(grads, numpy_ops.conv2d_backward(dout, saved_ref)):
        assert_close(got, ref, rel)
    return out, out_ref, saved_ref


def conv_inputs(shape, kernel, F, seed, bias, dtype=np.float32):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(kernel + (shape[3], F)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype) if bias else None
    return x, w, b, rng


@cases(50)
@given(window_case(kernel=(3, 3), channels=1), st.integers(1, 5), st.booleans(), st.sampled_from([1, 2, 3]))
def test_direct_conv_matches_the_reference(case, F, bias, threads_n):
    """A 3x3 kernel over one channel takes the direct loop, at any stride and padding."""
    shape, kernel, strides, pads, seed = case
    assert type(conv.algorithm(shape[1:], kernel + (1, F), strides, pads)) is Direct
    x, w, b, rng = conv_inputs(shape, kernel, F, seed, bias)
    check_conv(x, w, b, strides, pads, threads_n, rng=rng)


@cases(60)
@given(window_case(), st.integers(1, 5), st.booleans(), st.sampled_from([1, 2, 3]), st.booleans())
def test_im2col_conv_matches_the_reference(case, F, bias, threads_n, transposed):
    """Any other kernel, stride and padding takes im2col (thin patches of <= 16 taps transposed)."""
    shape, kernel, strides, pads, seed = case
    if kernel == (3, 3) and shape[3] == 1:
        kernel = (2, 3)                                         # (3, 3, 1) is the direct loop's
    alg = conv.algorithm(shape[1:], kernel + (shape[3], F), strides, pads)
    assert type(alg) is Im2col and alg.thin == (kernel[0] * kernel[1] * shape[3] <= 16)
    x, w, b, rng = conv_inputs(shape, kernel, F, seed, bias)
    if transposed:                                              # a non-contiguous input
        x = np.asfortranarray(x)
    check_conv(x, w, b, strides, pads, threads_n, rng=rng)


@pytest.mark.parametrize("kernel, C, strides, thin", [((1, 1), 5, (1, 1), True), ((2, 2), 4, (1, 2), True),
                                                      ((1, 3), 5, (2, 1), True), ((4, 4), 1, (1, 1), True),
                                                      ((3, 3), 2, (1, 1), False), ((1, 17), 1, (1, 1), False),
                                                      ((4, 2), 3, (3, 2), False)])
@pytest.mark.parametrize("threads_n", [1, 2, 3])
def test_im2col_conv_thin_and_wide_patches(kernel, C, strides, thin, threads_n):
    """Both unrollings of im2col, around the 16-tap boundary, padded "same", against the reference."""
    H, W = 9, 19
    (_, (top, bottom)), (_, (left, right)) = (window_output(H, kernel[0], strides[0], "same"),
                                              window_output(W, kernel[1], strides[1], "same"))
    pads = (top, bottom, left, right)
    alg = conv.algorithm((H, W, C), kernel + (C, 3), strides, pads)
    assert type(alg) is Im2col and alg.thin == thin
    x, w, b, rng = conv_inputs((3, H, W, C), kernel, 3, 7, True)
    check_conv(x, w, b, strides, pads, threads_n, rng=rng)


def half_zero(x, rng):
    """Zero whole pixels (as after a ReLU) and a corner at least one window wide."""
    N, H, W, _ = x.shape
    x[rng.random((N, H, W)) < 0.5] = 0
    x[:, :max(3, H // 2), :max(3, W // 2)] = 0
    return x


def silent_windows(cols_ref, out_shape):
    """(N, OH, OW): True where the output's window reads only zeros (from the reference's cols)."""
    return ~np.any(cols_ref.reshape(*out_shape[:3], -1) != 0, axis=-1)


@cases(50)
@given(st.integers(1, 3), st.integers(1, 14), st.integers(1, 14), st.integers(2, 6), st.integers(1, 5),
       st.sampled_from(["valid", "same"]), st.sampled_from([1, 2, 3]), st.integers(0, 2**32 - 1))
def test_winograd_conv_matches_the_reference_in_float32(N, H, W, C, F, padding, threads_n, seed):
    """Winograd forced on 2+ channels (1 is Direct's): float32 round-off; the bias exactly where windows read zeros."""
    if padding == "valid":
        H, W = H + 2, W + 2
    pads = pads_of(H, W, padding)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(winograd, "pays", lambda C, F: True)
        assert isinstance(conv.algorithm((H, W, C), (3, 3, C, F), (1, 1), pads), winograd.Winograd)
        x, w, b, rng = conv_inputs((N, H, W, C), (3, 3), F, seed, True)
        # F(6x6, 3x3)'s transforms amplify float32 round-off a few times (measured: up to 1.2e-5 of the
        # largest value); the float64 test below holds the maths to 1e-9.
        out, out_ref, saved_ref = check_conv(half_zero(x, rng), w, b, (1, 1), pads, threads_n, rel=5e-5, rng=rng)
    silent = silent_windows(saved_ref[0], out.shape)
    assert silent.any()
    np.testing.assert_array_equal(out[silent], out_ref[silent])
    np.testing.assert_array_equal(out[silent], np.broadcast_to(b, out.shape)[silent])


@pytest.mark.parametrize("x_shape, w_shape, strides, pays, expected", [
    ((13, 13, 32), (3, 3, 32, 64), (1, 1), None, winograd.Winograd),     # the seed model's conv2: it pays
    ((13, 13, 2), (3, 3, 2, 3), (1, 1), None, Im2col),                  # too few channels to pay
    ((13, 13, 2), (3, 3, 2, 3), (1, 1), True, winograd.Winograd),
    ((13, 13, 32), (3, 3, 32, 64), (2, 2), True, Im2col),               # strided: never Winograd
    ((13, 13, 32), (5, 5, 32, 64), (1, 1), True, Im2col),               # not 3x3
    ((28, 28, 1), (3, 3, 1, 32), (1, 1), True, Direct),                 # one channel: the direct loop
    ((28, 28, 1), (3, 3, 1, 32), (2, 1), None, Direct)])
def test_the_algorithm_is_chosen_by_shape(monkeypatch, x_shape, w_shape, strides, pays, expected):
    """Direct for 3x3 over one channel, Winograd for 3x3 stride 1 where it pays, im2col otherwise."""
    if pays is not None:
        monkeypatch.setattr(winograd, "pays", lambda C, F: pays)
    assert type(conv.algorithm(x_shape, w_shape, strides, (0, 0, 0, 0))) is expected


@cases(80)
@given(st.one_of(window_case(), window_case(strides=(2, 2), kernel=(2, 2)), window_case(kernel=(3, 3), strides=(3, 3))),
       st.sampled_from([1, 2, 3]), st.booleans())
def test_maxpool_matches_the_reference_ties_included(case, threads_n, integers):
    """Same maxima and the same saved winners (a tie goes to the first offset), then the same dx."""
    shape, pool, strides, pads, seed = case
    rng = np.random.default_rng(seed)
    if integers:                                                # few values: ties everywhere
        x = rng.integers(-2, 3, shape).astype(np.float32)
    else:
        x = rng.standard_normal(shape).astype(np.float32)
        x[0, 0, :, 0] = x[0, :, 0, -1] = 1.0                    # ties along a row and a column
    out_ref, saved_ref = numpy_ops.maxpool_forward(x, pool, strides, pads)
    dout = rng.integers(-4, 5, out_ref.shape).astype(np.float32)     # integers: dx sums exactly
    with split_into(threads_n) as jobs:
        out, saved = numba_ops.maxpool_forward(x, pool, strides, pads)
        dx = numba_ops.maxpool_backward(dout, saved)
    assert jobs == [min(threads_n, shape[0])] * 2
    assert out.dtype == out_ref.dtype
    np.testing.assert_array_equal(out, out_ref)
    assert saved[0].dtype == saved_ref[0].dtype
    np.testing.assert_array_equal(saved[0], saved_ref[0])
    assert tuple(saved[1:]) == tuple(map(tuple, saved_ref[1:]))
    dx_ref = numpy_ops.maxpool_backward(dout, saved_ref)
    assert dx.dtype == dx_ref.dtype
    np.testing.assert_array_equal(dx, dx_ref)


@pytest.mark.parametrize("threads_n", [1, 3])
def test_maxpool_windows_of_more_than_256_offsets(threads_n):
    """A 17x17 window has 289 offsets, more than a byte holds: winners are still found and routed."""
    x = np.zeros((3, 17, 17, 3), dtype=np.float32)
    x[0, 16, 16, 0] = x[1, 8, 15, 2] = 1.0                      # offsets 288 and 151
    out_ref, saved_ref = numpy_ops.maxpool_forward(x, (17, 17), (17, 17), (0, 0, 0, 0))
    with split_into(threads_n):
        out, saved = numba_ops.maxpool_forward(x, (17, 17), (17, 17), (0, 0, 0, 0))
        dx = numba_ops.maxpool_backward(np.full(out.shape, 2.0, np.float32), saved)
    assert saved[0].dtype == saved_ref[0].dtype == np.int32
    assert saved[0][0, 0, 0, 0] == 288 and saved[0][1, 0, 0, 2] == 151
    np.testing.assert_array_equal(saved[0], saved_ref[0])
    np.testing.assert_array_equal(out, out_ref)
    assert dx[0, 16, 16, 0] == 2.0 and dx[1, 8, 15, 2] == 2.0 and dx.sum() == 2.0 * out.size


@st.composite
def unroll_case(draw):
    """Any window, stride and padding (up to 2 each side, windows in the padding alone included)."""
    KH, KW = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    H = draw(st.integers(max(1, KH - pads[0] - pads[1]), KH + 6))
    W = draw(st.integers(max(1, KW - pads[2] - pads[3]), KW + 6))
    shape = (draw(st.integers(1, 4)), H, W, draw(st.integers(1, 4)))
    return shape, (KH, KW), (draw(st.integers(1, 3)), draw(st.integers(1, 3))), pads, draw(st.integers(0, 2**32 - 1))


@cases(60)
@given(unroll_case(), st.sampled_from([1, 2, 3]), st.sampled_from([np.float32, np.float64]), st.booleans())
def test_im2col_and_col2im_match_the_reference_exactly(case, threads_n, dtype, transposed):
    """The unrolling is a copy and its adjoint sums small integers: both must be bit for bit the reference's."""
    shape, (KH, KW), strides, pads, seed = case
    rng = np.random.default_rng(seed)
    x = rng.integers(-8, 9, shape).astype(dtype)
    if transposed:
        x = np.asfortranarray(x)
    cols_ref = numpy_ops.im2col(x, KH, KW, strides, pads)
    c = rng.integers(-8, 9, cols_ref.shape).astype(dtype)
    dx_ref = numpy_ops.col2im(c, shape, KH, KW, strides, pads)
    with split_into(threads_n) as jobs:
        cols = numba_ops.im2col(x, KH, KW, strides, pads)
        dx = numba_ops.col2im(c, shape, KH, KW, strides, pads)
    assert jobs == [min(threads_n, shape[0])] * 2
    assert cols.dtype == cols_ref.dtype and dx.dtype == dx_ref.dtype and dx.shape == shape
    np.testing.assert_array_equal(cols, cols_ref)
    np.testing.assert_array_equal(dx, dx_ref)


@st.composite
def batchnorm_case(draw):
    """x (N, ..., C) of rank 2 to 4, with a mean far from 0 at times; gamma, beta or None."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = tuple(draw(st.integers(1, 6)) for _ in range(draw(st.integers(1, 3)))) + (draw(st.integers(1, 9)),)
    x = (rng.standard_normal(shape) * draw(st.sampled_from([1.0, 3.0])) + draw(st.sampled_from([0.0, 5.0])))
    C = shape[-1]
    gamma = rng.standard_normal(C).astype(np.float32) if draw(st.booleans()) else None
    beta = rng.standard_normal(C).astype(np.float32) if draw(st.booleans()) else None
    return x.astype(np.float32), gamma, beta, rng.standard_normal(shape).astype(np.float32)


@cases(60)
@given(batchnorm_case(), st.booleans(), st.sampled_from([1, 2, 3]))
def test_batchnorm_kernels_match_the_reference(case, batch_stats, threads_n):
    """Statistics, forward and backward (batch or moving statistics) agree with the reference computed in
    float64, to float32 round-off, however the rows are cut over the threads."""
    x, gamma, beta, dout = case
    f64 = [None if a is None else a.astype(np.float64) for a in (x, gamma, beta, dout)]
    mean_ref, var_ref = numpy_ops.batchnorm_stats(f64[0])
    with split_into(threads_n) as jobs:
        mean, var = numba_ops.batchnorm_stats(x)
    assert jobs == [min(threads_n, x.size // x.shape[-1])]           # rows cut over the threads
    assert_close(mean, mean_ref.astype(np.float32))
    assert_close(var, var_ref.astype(np.float32))
    if not batch_stats:                          # moving statistics: any mean, any positive variance
        mean, var = dout[(0,) * (x.ndim - 1)] * 2, np.abs(dout.reshape(-1, x.shape[-1])[-1]) + 0.5
    mean_ref, var_ref = mean.astype(np.float64), var.astype(np.float64)
    out_ref, saved_ref = numpy_ops.batchnorm_forward(f64[0], mean_ref, var_ref, f64[1], f64[2], 1e-3)
    with split_into(threads_n):
        out, saved = numba_ops.batchnorm_forward(x, mean, var, gamma, beta, 1e-3)
        grads = numba_ops.batchnorm_backward(dout, saved, batch_stats)
    assert_close(out, out_ref.astype(np.float32))
    for got, ref in zip(grads, numpy_ops.batchnorm_backward(f64[3], saved_ref, batch_stats)):
        assert_close(got, ref.astype(np.float32), 2e-5)


def test_batchnorm_forward_with_relu_is_the_relu_of_its_output():
    """The fast plan's BN + ReLU kernel: relu(batchnorm_forward), and its backward gates dout by out > 0 first."""
    from tinycnn.kernels.numba_ops import normalization
    rng = np.random.default_rng(3)
    x, dout = rng.standard_normal((2, 5, 4, 6)).astype(np.float32), rng.standard_normal((2, 5, 4, 6)).astype(np.float32)
    mean, var = numpy_ops.batchnorm_stats(x)
    gamma, beta = rng.standard_normal(6).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    plain, saved_plain = numba_ops.batchnorm_forward(x, mean, var, gamma, beta, 1e-3)
    out, saved = normalization.normalize(x, mean, var, gamma, beta, 1e-3, True)
    np.testing.assert_array_equal(out, np.maximum(plain, 0))
    assert (out == 0).any() and (out > 0).any()
    for batch_stats in (True, False):
        for got, ref in zip(numba_ops.batchnorm_backward(dout, saved, batch_stats),
                            numba_ops.batchnorm_backward(dout * (plain > 0), saved_plain, batch_stats)):
            np.testing.assert_array_equal(got, ref)


ADAM = (0.01, 0.9, 0.999, 1e-7)


@cases(50)
@given(st.integers(1, 300), st.integers(0, 2**32 - 1), st.sampled_from([float, np.float32]), st.booleans())
def test_adam_update_matches_the_reference(n, seed, scalar, two_d):
    """write=False leaves p, m and v untouched and returns the reference's verdict; write=True takes the step."""
    rng = np.random.default_rng(seed)
    shape = (n, 3) if two_d else (n,)
    p, g = rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape).astype(np.float32)
    m, v = (rng.standard_normal(shape) * 0.1).astype(np.float32), (rng.random(shape) * 0.1).astype(np.float32)
    args = tuple(map(scalar, ADAM))
    states = {name: [a.copy() for a in (p, m, v)] for name in ("numpy", "numba")}
    assert numba_ops.adam_update(states["numba"][0], g, states["numba"][1], states["numba"][2], *args, write=False) \
        is numpy_ops.adam_update(states["numpy"][0], g, states["numpy"][1], states["numpy"][2], *args, write=False) \
        is True
    for kept, before in zip(states["numba"], (p, m, v)):
        np.testing.assert_array_equal(kept, before)
    for name, kernels in (("numpy", numpy_ops), ("numba", numba_ops)):
        p_, m_, v_ = states[name]
        assert kernels.adam_update(p_, g, m_, v_, *args) is True
    assert not np.array_equal(states["numba"][0], p)
    for got, ref in zip(states["numba"], states["numpy"]):
        assert_close(got, ref, 1e-6)


@pytest.mark.parametrize("scalar", [np.float32, float])
@pytest.mark.parametrize("write", [False, True])
def test_adam_update_says_when_a_weight_would_become_inf(scalar, write):
    """A step past float32's largest number makes the weight inf: both backends must return False."""
    p, g = np.array([3e38, 1.0], np.float32), np.array([1.0, 1.0], np.float32)
    m, v = np.zeros(2, np.float32), np.zeros(2, np.float32)
    args = tuple(map(scalar, (-1e38, 0.9, 0.999, 1e-7)))        # lr_t < 0: the step adds ~1e38 to 3e38
    with np.errstate(over="ignore"):
        assert numpy_ops.adam_update(p.copy(), g, m.copy(), v.copy(), *args, write=write) is False
    p_fast = p.copy()
    assert numba_ops.adam_update(p_fast, g, m.copy(), v.copy(), *args, write=write) is False
    if write:
        assert np.isinf(p_fast[0])
    else:
        np.testing.assert_array_equal(p_fast, p)


# ----------------------------------------------------------------------------------------
# 3. Winograd in float64: the same convolution, only rounded differently
# ----------------------------------------------------------------------------------------
@cases(40)
@given(st.integers(1, 2), st.integers(1, 15), st.integers(1, 15), st.integers(2, 5), st.integers(1, 4),
       st.sampled_from(["valid", "same"]), st.sampled_from([1, 2]), st.booleans(), st.integers(0, 2**32 - 1))
def test_winograd_matches_the_reference_in_float64(N, H, W, C, F, padding, threads_n, bias, seed):
    """In float64 Winograd's round-off is ~1e-9 relative, and windows that read only zeros give the bias exactly."""
    if padding == "valid":
        H, W = H + 2, W + 2
    pads = pads_of(H, W, padding)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(winograd, "pays", lambda C, F: True)
        assert isinstance(conv.algorithm((H, W, C), (3, 3, C, F), (1, 1), pads), winograd.Winograd)
        x, w, b, rng = conv_inputs((N, H, W, C), (3, 3), F, seed, bias, np.float64)
        out, out_ref, saved_ref = check_conv(half_zero(x, rng), w, b, (1, 1), pads, threads_n, rel=1e-9, rng=rng)
    silent = silent_windows(saved_ref[0], out.shape)
    assert silent.any()
    np.testing.assert_array_equal(out[silent], out_ref[silent])
    np.testing.assert_array_equal(out[silent], np.broadcast_to(0.0 if b is None else b, out.shape)[silent])


def tile_blocks(r, c, top, left, OH, OW):
    """(OH, OW): True on the 6x6 output blocks of every tile whose 8x8 input reads pixel (r, c)."""
    blocks_ = np.zeros((OH, OW), dtype=bool)
    TH, TW = winograd.tiles(OH, OW)
    for ty in range(TH):
        for tx in range(TW):
            if 6 * ty - top <= r < 6 * ty - top + 8 and 6 * tx - left <= c < 6 * tx - left + 8:
                blocks_[6 * ty:6 * ty + 6, 6 * tx:6 * tx + 6] = True
    return blocks_


@pytest.mark.filterwarnings("ignore:invalid value encountered in matmul:RuntimeWarning")
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("pixel", [(9, 9), (6, 7), (7, 12), (0, 0), (13, 13), (3, 10)])
@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_a_non_finite_input_spoils_only_the_winograd_blocks_that_read_it(monkeypatch, padding, pixel, bad):
    """A NaN or inf reaches every output whose window reads it, and nothing outside its tiles' 6x6 blocks."""
    monkeypatch.setattr(winograd, "pays", lambda C, F: True)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 14, 14, 4))
    w, b = rng.standard_normal((3, 3, 4, 3)), rng.standard_normal(3)
    x[1, pixel[0], pixel[1], 2] = bad
    pads = pads_of(14, 14, padding)
    with np.errstate(invalid="ignore"):
        out_ref = numpy_ops.conv2d_forward(x, w, b, (1, 1), pads)[0]
    with split_into(2):                      # (np.errstate is per thread: the workers' matmul still warns)
        out, saved = numba_ops.conv2d_forward(x, w, b, (1, 1), pads)
    assert isinstance(saved[0].alg, winograd.Winograd)
    spoiled, must = ~np.isfinite(out), ~np.isfinite(out_ref)
    region = tile_blocks(*pixel, pads[0], pads[2], *out.shape[1:3])[..., None]
    assert not spoiled[0].any()                                  # the other image is untouched
    assert must[1].any() and (spoiled[1] >= must[1]).all()       # every window that reads it
    assert (spoiled[1] <= region).all()                          # only the tiles that read it
    if pixel == (9, 9) and padding == "valid":                   # inside one tile: its whole block
        np.testing.assert_array_equal(spoiled[1], np.broadcast_to(region, spoiled[1].shape))
    assert_close(out[~spoiled], out_ref[~spoiled], 1e-9)


@pytest.mark.parametrize("helper, matrix", [(wt._bt, wt.BT), (wt._b, wt.BT.T), (wt._at, wt.AT), (wt._a, wt.AT.T)],
                         ids=["_bt", "_b", "_at", "_a"])
def test_the_one_axis_transforms_are_their_matrices(helper, matrix):
    """Each hand-expanded helper applied to the columns of the identity gives its matrix, and it is linear."""
    columns = np.array([helper(*column) for column in np.eye(matrix.shape[1])]).T
    np.testing.assert_array_equal(columns, matrix)                # every constant is exact in binary
    v = np.random.default_rng(1).standard_normal(matrix.shape[1])
    np.testing.assert_allclose(helper(*v), matrix @ v, rtol=1e-13, atol=1e-13)


def test_the_kernel_transform_and_its_adjoint_are_the_einsum_formulas():
    """U[a + 8b] = (G g GT)[a, b] (stored transposed like the tiles) and dW = GT dU G, its adjoint."""
    rng = np.random.default_rng(2)
    w, dU = rng.standard_normal((3, 3, 5, 7)), rng.standard_normal((64, 5, 7))
    U = np.einsum("ai,ijcf,bj->bacf", wt.G, w, wt.G).reshape(64, 5, 7)
    np.testing.assert_allclose(wt.kernel_transform(w), U, rtol=1e-13, atol=1e-14)
    dW = np.einsum("ai,bacf,bj->ijcf", wt.G, dU.reshape(8, 8, 5, 7), wt.G)
    np.testing.assert_allclose(wt.kernel_transform_backward(dU), dW, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(np.vdot(wt.kernel_transform(w), dU), np.vdot(w, wt.kernel_transform_backward(dU)),
                               rtol=1e-12)
    w32 = w.astype(np.float32)                                      # float32 in, float32 out
    assert wt.kernel_transform(w32).dtype == np.float32
    np.testing.assert_allclose(wt.kernel_transform(w32), U, rtol=1e-6, atol=1e-6)


def test_the_matrices_compute_a_3x3_correlation_of_an_8x8_tile():
    """Y = AT [(G g GT) * (BT d B)] A is the 6x6 correlation of d with g, to float64 round-off."""
    rng = np.random.default_rng(3)
    for _ in range(5):
        d, g = rng.standard_normal((8, 8)), rng.standard_normal((3, 3))
        Y = wt.AT @ ((wt.G @ g @ wt.G.T) * (wt.BT @ d @ wt.BT.T)) @ wt.AT.T
        direct = np.array([[np.sum(d[i:i + 3, j:j + 3] * g) for j in range(6)] for i in range(6)])
        np.testing.assert_allclose(Y, direct, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------
# 4. The dropout kernel draws utils.uniform's mask, any slice on its own
# ----------------------------------------------------------------------------------------
RATES = st.one_of(st.just(0.0), st.floats(0.0, 0.99), st.sampled_from([0.5, 0.9, 0.999, 1 - 1e-6, 1 - 2.0**-40]))


@cases(80)
@given(st.integers(1, 3000), st.data(), RATES, st.integers(0, 2**63 - 1))
def test_dropout_kernel_draws_utils_uniforms_mask_on_any_slice(n, data, rate, seed):
    """elementwise.dropout on x[start:stop] is exactly that slice of x * (uniform(seed) >= rate) / (1 - rate)."""
    start = data.draw(st.integers(0, n - 1))
    stop = data.draw(st.integers(start + 1, n))
    x = np.random.default_rng(seed % 2**32).standard_normal(n).astype(np.float32)
    expected = x * ((utils.uniform(seed, (n,)) >= rate) * np.float32(1 / (1 - rate)))
    assert expected.dtype == np.float32
    threshold, scale, seed_ = conv.dropout_args(rate, seed)
    v = x[start:stop].copy()
    elementwise.dropout(v, threshold, scale, seed_, np.int64(start))
    assert v.dtype == np.float32
    np.testing.assert_array_equal(v, expected[start:stop])


@pytest.mark.parametrize("rate", [0.0, 0.25, 0.5, 0.9, 0.999])
def test_dropout_kernel_slices_make_up_the_whole_batch(rate):
    """Consecutive slices, each drawn on its own, give the whole batch's mask; the rate is about right."""
    n, seed = 200_003, 2**62 + 12345
    x = np.ones(n, np.float32)
    args = conv.dropout_args(rate, seed)
    whole = x.copy()
    elementwise.dropout(whole, *args, np.int64(0))
    pieces = []
    for lo, hi in threads.bounds(n, 7):
        part = x[lo:hi].copy()
        elementwise.dropout(part, *args, np.int64(lo))
        pieces.append(part)
    np.testing.assert_array_equal(np.concatenate(pieces), whole)
    np.testing.assert_array_equal(whole, x * ((utils.uniform(seed, (n,)) >= rate) * np.float32(1 / (1 - rate))))
    assert abs((whole == 0).mean() - rate) < 0.005


# ----------------------------------------------------------------------------------------
# 5. threads.py
# ----------------------------------------------------------------------------------------
def in_a_thread(target, timeout=30):
    """target() on a daemon thread, joined with a timeout: a deadlock fails the test instead of hanging it."""
    result = {}

    def body():
        try:
            result["value"] = target()
        except BaseException as error:
            result["error"] = error
    runner = threading.Thread(target=body, daemon=True)
    runner.start()
    runner.join(timeout)
    assert not runner.is_alive(), "deadlocked"
    if "error" in result:
        raise result["error"]
    return result["value"]


@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_run_returns_results_in_order_and_runs_every_job_once(n):
    """Each job runs once, on its own thread (the first on the caller's), and results come back in order."""
    calls = [0] * n
    where = [None] * n

    def job(k):
        calls[k] += 1
        where[k] = threading.get_ident()
        time.sleep(0.01)
        return k * k
    assert threads.run([lambda k=k: job(k) for k in range(n)]) == [k * k for k in range(n)]
    assert calls == [1] * n
    assert where[0] == threading.get_ident() and len(set(where)) == n


def test_one_job_and_nested_runs_stay_on_the_calling_thread():
    """One job, or a run from inside a job, runs serially where it is called (a nested split would deadlock)."""
    me = threading.get_ident()
    assert threads.run([threading.get_ident]) == [me]
    assert not threads.inside()

    def outer():
        assert threads.inside()
        return threading.get_ident(), threads.run([threading.get_ident] * 3)
    results = in_a_thread(lambda: threads.run([outer] * 3))
    assert len({ident for ident, _ in results}) == 3
    for ident, inner in results:
        assert inner == [ident] * 3
    assert not threads.inside()


@pytest.mark.parametrize("failing", [0, 1, 2])
def test_an_error_reaches_the_caller_after_every_job_finished(failing):
    """The error of any job (the caller's or a worker's) is raised once all jobs are done; the pool works on."""
    finished = []

    def job(k):
        if k == failing:
            raise ValueError(f"job {k} failed")
        time.sleep(0.2)
        finished.append(k)
        return k
    with pytest.raises(ValueError, match=f"job {failing} failed"):
        threads.run([lambda k=k: job(k) for k in range(3)])
    assert sorted(finished) == [k for k in range(3) if k != failing]
    assert not threads.inside()
    assert in_a_thread(lambda: threads.run([lambda k=k: k + 1 for k in range(3)])) == [1, 2, 3]


def test_two_user_threads_can_run_at_once():
    """While one thread's jobs have the workers, another thread's run completes, its jobs one after the other."""
    started, release = threading.Event(), threading.Event()

    def first_job():
        started.set()
        assert release.wait(30)
        return threading.get_ident()
    first = {}
    jobs = [first_job] + [threading.get_ident] * 2
    holder = threading.Thread(target=lambda: first.setdefault("result", threads.run(jobs)), daemon=True)
    holder.start()
    try:
        assert started.wait(30)
        second = in_a_thread(lambda: (threading.get_ident(), threads.run([threading.get_ident] * 3)), timeout=20)
        assert second[1] == [second[0]] * 3
    finally:
        release.set()
        holder.join(30)
    assert not holder.is_alive()
    assert first["result"][0] == holder.ident and len(set(first["result"])) == 3


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_workers_of_its_own():
    """A child inherits none of its parent's threads: its run must start its own workers, not wait forever."""
    assert len(set(threads.run([threading.get_ident] * 3))) == 3          # the parent's workers exist
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            idents = threads.run([threading.get_ident] * 3)
            ok = len(set(idents)) == 3 and idents[0] == threading.get_ident()
            os.write(write, b"ok" if ok else b"no")
        finally:
            os._exit(0)
    os.close(write)
    try:
        ready, _, _ = select.select([read], [], [], 60)
        if not ready:
            os.kill(pid, signal.SIGKILL)
        answer = os.read(read, 2) if ready else b"hung"
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert answer == b"ok"


def test_idle_workers_hold_no_core():
    """After a run, the workers sleep on their queues: the process's CPU time hardly grows while it waits."""
    def work():
        np.sort(np.random.default_rng(0).random(200_000))
    threads.run([work] * 3)
    threads.run([work] * 3)
    before = time.process_time()
    time.sleep(0.5)
    assert time.process_time() - before < 0.15     # one spinning worker alone would burn about 0.5 s


def test_count_honours_tinycnn_threads(monkeypatch):
    """TINYCNN_THREADS sets the thread count, read at each call; unset, it is the usable cores."""
    monkeypatch.delenv("TINYCNN_THREADS", raising=False)
    assert threads.count() == threads.usable_cores() >= 1
    for setting, expected in (("3", 3), (" 2 ", 2), ("1", 1), ("", threads.usable_cores())):
        monkeypatch.setenv("TINYCNN_THREADS", setting)
        assert threads.count() == expected


@pytest.mark.parametrize("setting", ["two", "0", "-1", "1.5", "²"])
def test_count_rejects_what_is_not_a_whole_number(monkeypatch, setting):
    """A bad TINYCNN_THREADS raises a ValueError that names the variable."""
    monkeypatch.setenv("TINYCNN_THREADS", setting)
    with pytest.raises(ValueError, match="TINYCNN_THREADS"):
        threads.count()


def test_a_bad_tinycnn_threads_fails_at_the_call_not_at_import():
    """Importing tinycnn and its kernels with TINYCNN_THREADS=two works; only asking for the count fails."""
    code = ("import tinycnn, tinycnn.kernels.numba_ops\n"
            "from tinycnn.kernels.numba_ops import threads\n"
            "try:\n    threads.count()\nexcept ValueError as error:\n    print('raised:', error)\n")
    result = subprocess.run([sys.executable, "-c", code], env={**os.environ, "TINYCNN_THREADS": "two"},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "raised: TINYCNN_THREADS" in result.stdout


def test_usable_cores_falls_back_to_cpu_count(monkeypatch):
    """Without os.sched_getaffinity (macOS, Windows) or when it fails, the cores are os.cpu_count(), at least 1."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    assert threads.usable_cores() == 3
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: 7)
    assert threads.usable_cores() == 7
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert threads.usable_cores() == 1

    def refuse(pid):
        raise OSError("no affinity here")
    monkeypatch.setattr(os, "sched_getaffinity", refuse, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert threads.usable_cores() == 4


def test_parts_and_bounds(monkeypatch):
    """One slice per thread, at most one per image, none below MIN_FLOPS_PER_SLICE; bounds cover range(n) evenly."""
    monkeypatch.setenv("TINYCNN_THREADS", "3")
    least = threads.MIN_FLOPS_PER_SLICE
    assert threads.parts(10, 0) == 1 and threads.parts(10, least - 1) == 1
    assert threads.parts(10, 2 * least) == 2 and threads.parts(10, 100 * least) == 3
    assert threads.parts(2, 100 * least) == 2 and threads.parts(1, 100 * least) == 1
    for n in range(0, 12):
        for k in range(1, 5):
            parts = threads.bounds(n, k)
            assert len(parts) == k and [i for lo, hi in parts for i in range(lo, hi)] == list(range(n))
            assert max(hi - lo for lo, hi in parts) - min(hi - lo for lo, hi in parts) <= 1


def test_parts_with_no_minimum_slice_splits_one_slice_per_image(monkeypatch):
    """MIN_FLOPS_PER_SLICE = 0 means no minimum: one slice per thread, at most one per image."""
    monkeypatch.setenv("TINYCNN_THREADS", "3")
    monkeypatch.setattr(threads, "MIN_FLOPS_PER_SLICE", 0)
    assert [threads.parts(n, 1000) for n in (1, 2, 3, 10)] == [1, 2, 3, 3]


# ----------------------------------------------------------------------------------------
# 6. blas.py
# ----------------------------------------------------------------------------------------
@pytest.fixture
def blas_at_two_threads():
    """(get, set) of NumPy's BLAS, set to 2 threads for the test and given back its count after."""
    found = blas.control()
    if found is None:
        pytest.skip("tinycnn cannot reach this BLAS's thread count")
    get, set_, _ = found
    original = get()
    set_(2)
    if get() != 2:
        set_(original)
        pytest.skip("this BLAS cannot run 2 threads")
    yield get, set_
    set_(original)


def test_one_thread_holds_the_blas_to_one_thread_and_restores_it(blas_at_two_threads):
    """Nested blocks, blocks overlapping across threads, and run's jobs: 1 inside, the old count after the last."""
    get, _ = blas_at_two_threads
    with blas.one_thread():
        assert get() == 1
        with blas.one_thread():
            assert get() == 1
        assert get() == 1
    assert get() == 2
    entered, leave, seen = threading.Event(), threading.Event(), []

    def other():
        with blas.one_thread():
            entered.set()
            assert leave.wait(30)
            seen.append(get())
    helper = threading.Thread(target=other, daemon=True)
    helper.start()
    assert entered.wait(30)
    with blas.one_thread():                       # overlaps the helper's block: enters after, leaves before
        assert get() == 1
    assert get() == 1                             # the helper is still inside
    leave.set()
    helper.join(30)
    assert seen == [1] and get() == 2
    assert threads.run([get] * 3) == [1, 1, 1] and get() == 2
    with pytest.raises(ZeroDivisionError):
        threads.run([lambda: 1 / 0, get])
    assert get() == 2


def test_describe_says_which_blas_control_was_found(monkeypatch):
    """describe() is a sentence for bug reports, whether or not a control was found."""
    text = blas.describe()
    assert isinstance(text, str) and text
    if blas.control() is not None:
        assert text == blas.control()[2]
    monkeypatch.setattr(blas, "_control", None)
    assert "not reachable" in blas.describe()
    with blas.one_thread():                       # nothing to hold: the block runs all the same
        pass


# ----------------------------------------------------------------------------------------
# 7. blocks.py
# ----------------------------------------------------------------------------------------
@cases(60)
@given(st.integers(0, 50), st.integers(0, 80), st.integers(1, 20))
def test_split_covers_the_range_in_blocks_of_step(lo, length, step):
    """[lo, hi) as consecutive blocks of `step` images (the last one shorter), each index once."""
    hi = lo + length
    parts = blocks.split(lo, hi, step)
    assert [i for s, e in parts for i in range(s, e)] == list(range(lo, hi))
    assert all(e - s == step for s, e in parts[:-1]) and all(0 < e - s <= step for s, e in parts)
    assert len(parts) == -(-length // step)


@cases(60)
@given(st.integers(0, 1 << 31), st.integers(0, 5000), st.sampled_from([1 << 18, 1 << 20, 3 << 20]))
def test_images_per_block_respects_min_rows_and_the_cache_budget(nbytes, rows, cache):
    """Enough images for MIN_ROWS rows per product; beyond that, as many as fit in two L2s, and no more."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(blocks, "cache_bytes", lambda: cache)
        k = blocks.images_per_block(nbytes, rows)
    assert isinstance(k, int) and k >= 1
    assert k * max(rows, 1) >= blocks.MIN_ROWS                  # long enough for the BLAS
    if (k - 1) * max(rows, 1) >= blocks.MIN_ROWS and k > 1:     # more than MIN_ROWS asks for: in budget
        assert k * max(nbytes, 1) <= 2 * cache
    assert (k + 1) * max(nbytes, 1) > 2 * cache                 # and no smaller than the budget allows


@pytest.fixture
def fake_sysfs(tmp_path, monkeypatch):
    """make(*(level, size)) lays out cpu0's cache folders in tmp_path and points blocks' glob at them."""
    def make(*caches):
        for k, (level, size) in enumerate(caches):
            folder = tmp_path / f"index{k}"
            folder.mkdir()
            if level is not None:
                (folder / "level").write_text(f"{level}\n")
            if size is not None:
                (folder / "size").write_text(f"{size}\n")

    def fake_glob(pattern):
        assert pattern == "/sys/devices/system/cpu/cpu0/cache/index*"
        return [str(p) for p in tmp_path.glob("index*")]
    monkeypatch.setattr(glob, "glob", fake_glob)
    blocks.cache_bytes.cache_clear()
    yield make
    blocks.cache_bytes.cache_clear()


@pytest.mark.parametrize("caches, expected", [
    ([(1, "32K"), (1, "32K"), (2, "1024K"), (3, "32768K")], 1 << 20),
    ([(1, "48K"), (2, "2M"), (3, "30M")], 2 << 20),
    ([(2, "512k")], 512 << 10),
    ([(1, "32K"), (2, "262144")], 262144),
    ([(3, "8M"), (2, "1280K"), (1, "48K")], 1280 << 10)])
def test_cache_bytes_reads_the_l2_size_from_sysfs(fake_sysfs, caches, expected):
    """Sizes as Linux writes them, "1024K" or "2M" (or plain bytes), of the level-2 cache."""
    fake_sysfs(*caches)
    assert blocks.cache_bytes() == expected


@pytest.mark.parametrize("caches", [[], [(2, None)], [(None, "1024K")], [(2, "big")], [(2, "")], [("two", "1M")]])
def test_cache_bytes_falls_back_to_the_default_when_nothing_is_readable(fake_sysfs, caches):
    """No sysfs, a missing file or a size in a format it does not know: DEFAULT_CACHE, no error."""
    fake_sysfs(*caches)
    assert blocks.cache_bytes() == blocks.DEFAULT_CACHE == 1 << 20


def test_cache_bytes_is_read_once(fake_sysfs):
    """cache_bytes is cached: a second call does not read sysfs again."""
    fake_sysfs((2, "2M"))
    assert blocks.cache_bytes() == 2 << 20
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(glob, "glob", lambda pattern: pytest.fail("read again"))
        assert blocks.cache_bytes() == 2 << 20


def test_scratch_keeps_one_growing_buffer_per_name_and_dtype():
    """scratch(name, shape) is a view of the one buffer kept under that name, grown when too small."""
    scratch = blocks.Scratch()
    a = scratch("z", (4, 5))
    assert a.shape == (4, 5) and a.dtype == np.float32
    a[...] = 7
    b = scratch("z", (2, 3))                                     # smaller: the same memory
    assert b.shape == (2, 3) and np.shares_memory(a, b) and (b == 7).all()
    c = scratch("z", (10, 10))                                   # larger: a new, larger buffer
    assert c.shape == (10, 10) and not np.shares_memory(a, c)
    assert np.shares_memory(scratch("z", (4, 5)), c)             # which is kept from now on
    d = scratch("z", (3,), np.float64)                           # another dtype, another buffer
    assert d.dtype == np.float64 and not np.shares_memory(c, d)
    e = scratch("cols", (4, 5))                                  # another name, another buffer
    assert not np.shares_memory(c, e)
    assert set(scratch.buffers) == {("z", np.dtype(np.float32)), ("z", np.dtype(np.float64)),
                                    ("cols", np.dtype(np.float32))}
    assert scratch.buffers[("z", np.dtype(np.float32))].size == 100
    assert blocks.Scratch().buffers == {}                        # one per slice: nothing shared


# ----------------------------------------------------------------------------------------
# 8. backend.py
# ----------------------------------------------------------------------------------------
def test_set_backend_and_get_backend():
    """Either name (any case) switches the kernels; an unknown one raises, listing both."""
    tinycnn.set_backend("numpy")
    assert tinycnn.get_backend() == "numpy" and backend.module() is numpy_ops and backend.explicit()
    tinycnn.set_backend("NUMBA")
    assert tinycnn.get_backend() == "numba" and backend.module() is numba_ops
    for wrong in ("cuda", 3, None):
        with pytest.raises(ValueError, match="expected one of 'numba', 'numpy'"):
            tinycnn.set_backend(wrong)
    assert tinycnn.get_backend() == "numba"


def run_python(code, **env):
    environ = {k: v for k, v in os.environ.items() if k != "TINYCNN_BACKEND"}
    return subprocess.run([sys.executable, "-c", code], env={**environ, **env}, capture_output=True, text=True,
                          timeout=120)


def test_tinycnn_backend_chooses_the_backend_from_the_environment():
    """TINYCNN_BACKEND=numpy picks the reference; an unknown value fails naming the variable."""
    code = "import tinycnn; print(tinycnn.get_backend(), tinycnn.backend.explicit())"
    result = run_python(code, TINYCNN_BACKEND="numpy")
    assert result.returncode == 0 and result.stdout.split() == ["numpy", "True"], result.stderr
    result = run_python(code, TINYCNN_BACKEND="fortran")
    assert result.returncode != 0 and "TINYCNN_BACKEND" in result.stderr and "'fortran'" in result.stderr


def test_using_restores_the_previous_backend():
    """with using("numpy") switches for the block only, nested or left by an error."""
    tinycnn.set_backend("numba")
    with backend.using("numpy"):
        assert tinycnn.get_backend() == "numpy"
        with backend.using("numba"):
            assert backend.module() is numba_ops
        assert tinycnn.get_backend() == "numpy"
    assert tinycnn.get_backend() == "numba"
    with pytest.raises(RuntimeError), backend.using("numpy"):
        raise RuntimeError("inside")
    assert tinycnn.get_backend() == "numba"
    with pytest.raises(ValueError), backend.using("cobol"):
        pass
    assert tinycnn.get_backend() == "numba"


def test_using_before_any_backend_was_chosen_leaves_none_chosen(monkeypatch):
    """If no backend was resolved yet, using() leaves it unresolved, to be chosen later as usual."""
    for key, value in (("name", None), ("module", None), ("explicit", False)):
        monkeypatch.setitem(backend._state, key, value)
    with backend.using("numpy"):
        assert tinycnn.get_backend() == "numpy"
    assert backend._state["module"] is None and backend._state["name"] is None


def test_k_forwards_to_the_active_module():
    """K.name is the active backend's function, looked up at each use."""
    rng = np.random.default_rng(0)
    (x, w), b = (rng.standard_normal(shape).astype(np.float32) for shape in ((2, 5, 5, 2), (3, 3, 2, 4))), None
    for name, module in (("numpy", numpy_ops), ("numba", numba_ops)):
        tinycnn.set_backend(name)
        assert backend.K.conv2d_forward is module.conv2d_forward and name in repr(backend.K)
        out, saved = backend.K.conv2d_forward(x, w, b, (1, 1), (1, 1, 1, 1))
        np.testing.assert_array_equal(out, module.conv2d_forward(x, w, b, (1, 1), (1, 1, 1, 1))[0])
        assert backend.K.conv2d_backward(np.ones_like(out), saved)[1].shape == w.shape
    with pytest.raises(AttributeError):
        backend.K.no_such_kernel
