"""Property tests (hypothesis), on both backends, over random shapes, strides and paddings.

    * Conv2D and MaxPooling2D forward equal plain loops written from the definitions,
      with TensorFlow's "same" padding: out = ceil(in / stride),
      pad_total = max((out - 1) * stride + k - in, 0), pad_before = pad_total // 2.
    * im2col and col2im are adjoint: <im2col(x), c> == <x, col2im(c)> for every x and c.
    * backward agrees with central differences (float64) on random small layers.
"""
import importlib
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import tinycnn
from tinycnn.backend import BACKENDS
from tinycnn.gradcheck import check_layer
from tinycnn.layers import Activation, Conv2D, Dense, Dropout, MaxPooling2D

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

on_both_backends = pytest.mark.parametrize("backend_name", BACKENDS)


# ----------------------------------------------------------------------------------------
# The references: loops over every output cell, straight from the definitions
# ----------------------------------------------------------------------------------------
def tf_padding(size, k, s, padding):
    """(output length, pad before, pad after) along one axis, as TensorFlow does it."""
    if padding == "valid":
        return (size - k) // s + 1, 0, 0
    out = math.ceil(size / s)
    total = max((out - 1) * s + k - size, 0)
    return out, total // 2, total - total // 2


def loop_conv2d(x, kernel, bias, strides, padding):
    """out[n, i, j, f] = bias[f] + sum over (a, b, c) of x[n, i*s + a - top, j*s + b - left, c] * kernel[a, b, c, f]
    where x outside the image counts as 0."""
    N, H, W, C = x.shape
    KH, KW, _, F = kernel.shape
    OH, top, _ = tf_padding(H, KH, strides[0], padding)
    OW, left, _ = tf_padding(W, KW, strides[1], padding)
    out = np.zeros((N, OH, OW, F))
    for n in range(N):
        for i in range(OH):
            for j in range(OW):
                for f in range(F):
                    total = bias[f]
                    for a in range(KH):
                        for b in range(KW):
                            row, col = i * strides[0] + a - top, j * strides[1] + b - left
                            if 0 <= row < H and 0 <= col < W:
                                total += float(np.dot(x[n, row, col, :], kernel[a, b, :, f]))
                    out[n, i, j, f] = total
    return out


def loop_maxpool(x, pool, strides, padding):
    """out[n, i, j, c] = max of the window's cells that lie inside the image (padding never wins)."""
    N, H, W, C = x.shape
    OH, top, _ = tf_padding(H, pool[0], strides[0], padding)
    OW, left, _ = tf_padding(W, pool[1], strides[1], padding)
    out = np.zeros((N, OH, OW, C))
    for n in range(N):
        for i in range(OH):
            for j in range(OW):
                for c in range(C):
                    cells = [x[n, row, col, c]
                             for row in range(i * strides[0] - top, i * strides[0] - top + pool[0])
                             for col in range(j * strides[1] - left, j * strides[1] - left + pool[1])
                             if 0 <= row < H and 0 <= col < W]
                    out[n, i, j, c] = max(cells)
    return out


# ----------------------------------------------------------------------------------------
# Random configurations
# ----------------------------------------------------------------------------------------
@st.composite
def window_config(draw, max_size=7):
    """Image size, window, strides and padding such that the window fits the padded input."""
    H, W = draw(st.integers(1, max_size)), draw(st.integers(1, max_size))
    padding = draw(st.sampled_from(["valid", "same"]))
    limit_h, limit_w = (H, W) if padding == "valid" else (4, 4)
    window = (draw(st.integers(1, min(4, limit_h))), draw(st.integers(1, min(4, limit_w))))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    return H, W, window, strides, padding


def values(draw, shape, distinct=False):
    """Random float32 values; distinct=True spaces them at least 0.05 apart (no max-pool ties)."""
    size = int(np.prod(shape))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if distinct:
        return ((rng.permutation(size) - size / 2) * 0.05).reshape(shape).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


# ----------------------------------------------------------------------------------------
# Forward against the loops
# ----------------------------------------------------------------------------------------
@on_both_backends
@SETTINGS
@given(config=window_config(), N=st.integers(1, 2), C=st.integers(1, 3), F=st.integers(1, 3),
       use_bias=st.booleans(), data=st.data())
def test_conv2d_forward_equals_the_loops(backend_name, config, N, C, F, use_bias, data):
    tinycnn.set_backend(backend_name)
    H, W, kernel_size, strides, padding = config
    layer = Conv2D(F, kernel_size, strides=strides, padding=padding, use_bias=use_bias)
    layer.build((H, W, C))
    kernel = values(data.draw, kernel_size + (C, F))
    bias = values(data.draw, (F,)) if use_bias else np.zeros(F, np.float32)
    layer.set_weights([kernel, bias] if use_bias else [kernel])
    x = values(data.draw, (N, H, W, C))
    out = layer(x)
    expected = loop_conv2d(x.astype(np.float64), kernel.astype(np.float64), bias, strides, padding)
    assert out.shape == expected.shape == (N,) + layer.out_shape
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(layer.forward(x, training=True), out)


@on_both_backends
@SETTINGS
@given(config=window_config(), N=st.integers(1, 2), C=st.integers(1, 3), default_strides=st.booleans(),
       data=st.data())
def test_maxpooling2d_forward_equals_the_loops(backend_name, config, N, C, default_strides, data):
    tinycnn.set_backend(backend_name)
    H, W, pool_size, strides, padding = config
    if default_strides:                           # Keras: strides=None means strides = pool_size
        strides = pool_size
        assume(padding == "same" or (pool_size[0] <= H and pool_size[1] <= W))
    layer = MaxPooling2D(pool_size, strides=None if default_strides else strides, padding=padding)
    x = values(data.draw, (N, H, W, C)) - 3       # all negative: a padded zero would wrongly win
    out = layer(x)
    expected = loop_maxpool(x, pool_size, strides, padding)
    assert out.shape == expected.shape == (N,) + layer.out_shape
    np.testing.assert_array_equal(out, expected)  # a max is exact


# ----------------------------------------------------------------------------------------
# im2col and col2im are adjoint
# ----------------------------------------------------------------------------------------
@on_both_backends
@SETTINGS
@given(H=st.integers(1, 6), W=st.integers(1, 6), N=st.integers(1, 2), C=st.integers(1, 3),
       KH=st.integers(1, 4), KW=st.integers(1, 4), SH=st.integers(1, 3), SW=st.integers(1, 3),
       pads=st.tuples(*[st.integers(0, 2)] * 4), seed=st.integers(0, 2**32 - 1))
def test_im2col_and_col2im_are_adjoint(backend_name, H, W, N, C, KH, KW, SH, SW, pads, seed):
    kernels = importlib.import_module(f"tinycnn.kernels.{backend_name}_ops")
    top, bottom, left, right = pads
    assume(KH <= H + top + bottom and KW <= W + left + right)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, H, W, C))
    cols = kernels.im2col(x, KH, KW, (SH, SW), pads)
    OH, OW = (H + top + bottom - KH) // SH + 1, (W + left + right - KW) // SW + 1
    assert cols.shape == (N * OH * OW, KH * KW * C)
    c = rng.standard_normal(cols.shape)
    back = kernels.col2im(c, x.shape, KH, KW, (SH, SW), pads)
    assert back.shape == x.shape
    lhs, rhs = float(np.sum(cols * c)), float(np.sum(x * back))
    assert lhs == pytest.approx(rhs, rel=1e-10, abs=1e-10)


@on_both_backends
def test_col2im_is_not_the_inverse_of_im2col(backend_name):
    """Overlapping windows add up: every pixel comes back times the number of windows covering it."""
    kernels = importlib.import_module(f"tinycnn.kernels.{backend_name}_ops")
    x = np.ones((1, 3, 3, 1))
    back = kernels.col2im(kernels.im2col(x, 2, 2, (1, 1), (0, 0, 0, 0)), x.shape, 2, 2, (1, 1), (0, 0, 0, 0))
    assert back[0, :, :, 0].tolist() == [[1, 2, 1], [2, 4, 2], [1, 2, 1]]


# ----------------------------------------------------------------------------------------
# Gradient checks on random small layers (float64, central differences)
# ----------------------------------------------------------------------------------------
SMOOTH = [None, "tanh", "sigmoid", "linear"]      # no ReLU: its kink breaks finite differences
TOL = 1e-6


@on_both_backends
@SETTINGS
@given(config=window_config(max_size=5), N=st.integers(1, 2), C=st.integers(1, 2), F=st.integers(1, 3),
       activation=st.sampled_from(SMOOTH), use_bias=st.booleans(), seed=st.integers(0, 1000))
def test_conv2d_gradients(backend_name, config, N, C, F, activation, use_bias, seed):
    tinycnn.set_backend(backend_name)
    H, W, kernel_size, strides, padding = config
    layer = Conv2D(F, kernel_size, strides=strides, padding=padding, activation=activation, use_bias=use_bias)
    x = np.random.default_rng(seed).standard_normal((N, H, W, C))
    errors = check_layer(layer, x, seed=seed)
    assert set(errors) == {"x", "kernel"} | ({"bias"} if use_bias else set())
    assert max(errors.values()) < TOL, errors


@on_both_backends
@SETTINGS
@given(config=window_config(max_size=6), N=st.integers(1, 2), C=st.integers(1, 2), data=st.data())
def test_maxpooling2d_gradients(backend_name, config, N, C, data):
    tinycnn.set_backend(backend_name)
    H, W, pool_size, strides, padding = config
    layer = MaxPooling2D(pool_size, strides=strides, padding=padding)
    x = values(data.draw, (N, H, W, C), distinct=True)     # no ties: the winner is unambiguous
    errors = check_layer(layer, x.astype(np.float64), seed=data.draw(st.integers(0, 1000)))
    assert errors["x"] < TOL, errors


@on_both_backends
@SETTINGS
@given(N=st.integers(1, 4), n_in=st.integers(1, 6), units=st.integers(1, 5),
       activation=st.sampled_from(SMOOTH + ["softmax"]), use_bias=st.booleans(), seed=st.integers(0, 1000))
def test_dense_and_activation_gradients(backend_name, N, n_in, units, activation, use_bias, seed):
    tinycnn.set_backend(backend_name)
    x = np.random.default_rng(seed).standard_normal((N, n_in))
    errors = check_layer(Dense(units, activation=activation, use_bias=use_bias), x, seed=seed)
    assert max(errors.values()) < TOL, errors
    if activation is not None:
        assert check_layer(Activation(activation), x, seed=seed)["x"] < TOL


@on_both_backends
@SETTINGS
@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=4).map(tuple),
       rate=st.floats(0, 0.9), seed=st.integers(0, 1000))
def test_dropout_gradients(backend_name, shape, rate, seed):
    tinycnn.set_backend(backend_name)
    x = np.random.default_rng(seed).standard_normal(shape)
    assert check_layer(Dropout(rate, seed=seed), x, seed=seed)["x"] < TOL
