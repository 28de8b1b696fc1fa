"""The Numba kernels against the NumPy reference, and the backend switch."""
import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinycnn
from tinycnn.kernels import cores, numba_ops, numpy_ops
from tinycnn.layers.base import window_output

F32 = dict(rtol=1e-5, atol=1e-5)     # float32 round-off: the two paths sum in different orders


@contextlib.contextmanager
def chunks(threads):
    """Make the Numba kernels split every job, however small, into `threads` chunks."""
    saved = cores.THREADS, cores.MIN_WORK
    cores.THREADS, cores.MIN_WORK = threads, 0
    try:
        yield
    finally:
        cores.THREADS, cores.MIN_WORK = saved


@st.composite
def window_case(draw, tiled=False, window=None, channels=None):
    """A random NHWC input, window, stride and padding that fit together (batch 1 included).

    tiled=True draws stride = window, the pooling layers' default (windows that tile the image).
    window=(KH, KW) fixes the window's shape, channels the input's channels.
    """
    N, C = draw(st.integers(1, 3)), channels or draw(st.integers(1, 4))
    KH, KW = window or (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    SH, SW = (KH, KW) if tiled else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = draw(st.sampled_from(["valid", "same"]))
    H, W = draw(st.integers(KH, KH + 6)), draw(st.integers(KW, KW + 6))
    (_, (top, bottom)), (_, (left, right)) = window_output(H, KH, SH, padding), window_output(W, KW, SW, padding)
    seed = draw(st.integers(0, 2**16))
    return (N, H, W, C), (KH, KW), (SH, SW), (top, bottom, left, right), seed


@settings(max_examples=80, deadline=None)
@given(st.one_of(window_case(), window_case(window=(3, 3), channels=1)), st.integers(1, 5), st.booleans(),
       st.integers(1, 3))
def test_conv2d_kernels_match(case, F, relu, threads):
    """Every convolution path against the reference: im2col, and the direct loop of a 3x3 kernel
    over one channel (conv1), any stride and padding."""
    shape, (KH, KW), stride, pads, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((KH, KW, shape[-1], F)).astype(np.float32)
    b = rng.standard_normal(F).astype(np.float32)
    with chunks(threads):                                    # 1, 2 or 3 chunks of the batch
        check_conv2d(x, w, b, stride, pads, relu, rng)


def check_conv2d(x, w, b, stride, pads, relu, rng):
    KH, KW = w.shape[:2]
    out_ref, saved_ref = numpy_ops.conv2d_forward(x, w, b, stride, pads, relu=relu)
    out, saved = numba_ops.conv2d_forward(x, w, b, stride, pads, relu=relu)
    np.testing.assert_allclose(out, out_ref, **F32)
    if isinstance(saved, np.ndarray):                        # cols, whichever loop stored them
        np.testing.assert_array_equal(saved, saved_ref)
    for kernels, full in ((numpy_ops, out_ref), (numba_ops, out)):     # inference keeps nothing
        out_only, none = kernels.conv2d_forward(x, w, b, stride, pads, relu=relu, keep=False)
        assert none is None
        np.testing.assert_array_equal(out_only, full)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    relu_out = out_ref if relu else None                     # the ReLU's gradient, fused or not
    for got, ref in zip(numba_ops.conv2d_backward(dout, saved, x.shape, w, stride, pads, relu_out=relu_out),
                        numpy_ops.conv2d_backward(dout, saved_ref, x.shape, w, stride, pads, relu_out=relu_out)):
        assert got.shape == ref.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, ref, **F32)
    # A first layer asks for no dx: thin patches (KH*KW*C <= 16) then take the one-pass dW kernel.
    _, dw_ref, db_ref = numpy_ops.conv2d_backward(dout, saved_ref, x.shape, w, stride, pads, relu_out=relu_out)
    none, dw, db = numba_ops.conv2d_backward(dout, saved, x.shape, w, stride, pads, need_dx=False, relu_out=relu_out)
    assert none is None and dw.shape == w.shape and dw.dtype == db.dtype == np.float32
    np.testing.assert_allclose(dw, dw_ref, **F32)
    np.testing.assert_allclose(db, db_ref, **F32)
    np.testing.assert_array_equal(numba_ops.im2col(x, KH, KW, stride, pads), numpy_ops.im2col(x, KH, KW, stride, pads))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3), st.integers(3, 12), st.integers(3, 12), st.integers(1, 6), st.integers(1, 5),
       st.sampled_from(["valid", "same"]), st.booleans(), st.integers(1, 3), st.sampled_from([1, 5000, 2 << 20]),
       st.integers(0, 2**16))
def test_winograd_matches_im2col(N, H, W, C, F, padding, relu, threads, block_bytes, seed):
    """Winograd's F(6x6, 3x3) against the im2col reference: the same convolution, rounded differently.
    Each chunk of the batch runs in blocks of one image, a few, or all at once (block_bytes).

    Inputs are half zeros, as after a ReLU: outputs whose window reads only zeros must come out
    exactly as im2col's (bias alone), or the ReLU's gradient would differ there."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, H, W, C)).astype(np.float32)
    x[rng.random((N, H, W)) < 0.5] = 0                    # whole pixels of zeros
    x[:, :max(3, H // 2), :max(3, W // 2)] = 0             # and a zero region at least a window wide
    w = rng.standard_normal((3, 3, C, F)).astype(np.float32)
    b = np.zeros(F, np.float32) if relu else rng.standard_normal(F).astype(np.float32)
    (_, (top, bottom)), (_, (left, right)) = window_output(H, 3, 1, padding), window_output(W, 3, 1, padding)
    pads = (top, bottom, left, right)
    out_ref, cols = numpy_ops.conv2d_forward(x, w, b, (1, 1), pads, relu=relu)
    with chunks(threads), mock.patch.object(numba_ops, "WINOGRAD_MIN_CHANNELS", 1), \
            mock.patch.object(cores, "BLOCK_BYTES", block_bytes):
        out, saved = numba_ops.conv2d_forward(x, w, b, (1, 1), pads, relu=relu)
        assert isinstance(saved, numba_ops.WinogradSaved)
        out_only, none = numba_ops.conv2d_forward(x, w, b, (1, 1), pads, relu=relu, keep=False)
        assert none is None                                  # inference: V lives one block at a time
        np.testing.assert_array_equal(out_only, out)
        scale = np.abs(out_ref).max() + 1
        np.testing.assert_allclose(out, out_ref, rtol=0, atol=1e-5 * scale)     # float32 round-off, norm-wise
        silent = ~np.any(cols.reshape(*out.shape[:3], -1) != 0, axis=-1)      # windows that read only zeros
        assert silent.any()
        np.testing.assert_array_equal(out[silent], out_ref[silent])            # there: exact
        dout = rng.standard_normal(out.shape).astype(np.float32)
        relu_out = out_ref if relu else None
        got = numba_ops.conv2d_backward(dout, saved, x.shape, w, (1, 1), pads, relu_out=relu_out)
        ref = numpy_ops.conv2d_backward(dout, cols, x.shape, w, (1, 1), pads, relu_out=relu_out)
        for g, r in zip(got, ref):
            assert g.shape == r.shape and g.dtype == np.float32
            np.testing.assert_allclose(g, r, rtol=0, atol=1e-5 * (np.abs(r).max() + 1))
        none, dw, db = numba_ops.conv2d_backward(dout, saved, x.shape, w, (1, 1), pads, need_dx=False, relu_out=relu_out)
        assert none is None
        np.testing.assert_allclose(dw, ref[1], rtol=0, atol=1e-5 * (np.abs(ref[1]).max() + 1))


def test_winograd_is_chosen_for_the_seed_models_conv2_only():
    """conv2 (3x3, 32 -> 64 channels, stride 1) takes Winograd; conv1 (1 channel) and strided
    or non-3x3 convolutions keep im2col."""
    rng = np.random.default_rng(0)
    cases = [((2, 13, 13, 32), (3, 3, 32, 64), (1, 1), True), ((2, 28, 28, 1), (3, 3, 1, 32), (1, 1), False),
             ((2, 13, 13, 32), (3, 3, 32, 8), (2, 2), False), ((2, 13, 13, 32), (5, 5, 32, 8), (1, 1), False)]
    for x_shape, w_shape, stride, winograd in cases:
        x = rng.random(x_shape, dtype=np.float32)
        w = rng.standard_normal(w_shape).astype(np.float32)
        out, saved = numba_ops.conv2d_forward(x, w, None, stride, (0, 0, 0, 0))
        assert isinstance(saved, numba_ops.WinogradSaved) == winograd, (x_shape, w_shape, stride)
        np.testing.assert_allclose(out, numpy_ops.conv2d_forward(x, w, None, stride, (0, 0, 0, 0))[0],
                                   rtol=0, atol=1e-5 * np.abs(out).max())


def test_a_3x3_kernel_over_one_channel_takes_the_direct_loop():
    """conv1's shape (and any 3x3 kernel over one channel, strided or padded) skips im2col."""
    rng = np.random.default_rng(8)
    for stride, pads in [((1, 1), (0, 0, 0, 0)), ((2, 1), (1, 1, 1, 1))]:
        x = rng.random((2, 9, 8, 1), dtype=np.float32)
        w = rng.standard_normal((3, 3, 1, 4)).astype(np.float32)
        with mock.patch.object(numba_ops, "_im2col_t", side_effect=AssertionError), \
                mock.patch.object(numba_ops, "_im2col", side_effect=AssertionError):
            out, cols = numba_ops.conv2d_forward(x, w, None, stride, pads, relu=True)
        ref, cols_ref = numpy_ops.conv2d_forward(x, w, None, stride, pads, relu=True)
        np.testing.assert_allclose(out, ref, **F32)
        np.testing.assert_array_equal(cols, cols_ref)


def test_a_non_finite_input_stays_inside_the_winograd_tiles_that_read_it():
    """As winograd.py documents: an inf spoils whole 6x6 output blocks, never anything further."""
    rng = np.random.default_rng(4)
    x = rng.random((2, 13, 13, 32), dtype=np.float32)
    x[1, 9, 9, 3] = np.inf                                  # row and column 9: read only by tile 1 (inputs 6-13)
    w = rng.standard_normal((3, 3, 32, 8)).astype(np.float32)
    out, saved = numba_ops.conv2d_forward(x, w, None, (1, 1), (0, 0, 0, 0))
    assert isinstance(saved, numba_ops.WinogradSaved)
    ref = numpy_ops.conv2d_forward(x, w, None, (1, 1), (0, 0, 0, 0))[0]
    bad = ~np.isfinite(out)
    tile = np.zeros((11, 11, 8), dtype=bool)
    tile[6:12, 6:12] = True                                 # the 6x6 outputs of tile (1, 1), cut at 11
    assert not bad[0].any() and (bad[1] == tile).all()     # image 0 untouched, image 1 only there
    np.testing.assert_allclose(out[~bad], ref[~bad], rtol=0, atol=1e-5 * np.abs(ref[np.isfinite(ref)]).max())


def test_winograd_transforms_are_the_matrices():
    """The hand-expanded transforms are the matrices: G g GT and its adjoint, written with einsum,
    and each one-axis helper applied to the columns of the identity."""
    from tinycnn.kernels import winograd
    rng = np.random.default_rng(2)
    w = rng.standard_normal((3, 3, 5, 7))
    U = np.einsum("ai,ijcf,bj->bacf", winograd.G, w, winograd.G).reshape(64, 5, 7)      # stored transposed
    np.testing.assert_allclose(winograd.kernel_transform(w), U, rtol=1e-13, atol=1e-14)
    dU = rng.standard_normal((64, 5, 7))
    dW = np.einsum("ai,bacf,bj->ijcf", winograd.G, dU.reshape(8, 8, 5, 7), winograd.G)
    np.testing.assert_allclose(winograd.kernel_transform_backward(dU), dW, rtol=1e-13, atol=1e-14)
    # each one-axis helper is its matrix (or the matrix's transpose), column by column
    for helper, matrix in ((winograd._bt, winograd.BT), (winograd._b, winograd.BT.T), (winograd._at, winograd.AT),
                           (winograd._a, winograd.AT.T), (winograd._g, winograd.G), (winograd._gt, winograd.G.T)):
        for column in np.eye(matrix.shape[1]):
            np.testing.assert_allclose(helper(*column), matrix @ column, rtol=1e-15, atol=1e-15)
    # and the three matrices compute a 3x3 correlation of an 8x8 tile exactly (float64)
    d, g = rng.standard_normal((8, 8)), rng.standard_normal((3, 3))
    Y = winograd.AT @ ((winograd.G @ g @ winograd.G.T) * (winograd.BT @ d @ winograd.BT.T)) @ winograd.AT.T
    direct = np.array([[np.sum(d[i:i + 3, j:j + 3] * g) for j in range(6)] for i in range(6)])
    np.testing.assert_allclose(Y, direct, rtol=1e-12, atol=1e-12)


def test_thin_patch_dw_over_many_rows():
    """conv1's one-pass dW sums 16*26*26 = 10,816 rows in blocks: compare with a float64 product."""
    rng = np.random.default_rng(5)
    x = rng.random((16, 28, 28, 1), dtype=np.float32)
    w = rng.standard_normal((3, 3, 1, 32)).astype(np.float32)
    out, cols = numba_ops.conv2d_forward(x, w, np.zeros(32, np.float32), (1, 1), (0, 0, 0, 0), relu=True)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    _, dw, db = numba_ops.conv2d_backward(dout, cols, x.shape, w, (1, 1), (0, 0, 0, 0), need_dx=False, relu_out=out)
    dz = (dout * (out > 0)).reshape(-1, 32).astype(np.float64)
    np.testing.assert_allclose(dw.reshape(9, 32), cols.astype(np.float64).T @ dz, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(db, dz.sum(axis=0), rtol=1e-5, atol=1e-4)


@settings(max_examples=80, deadline=None)
@given(st.one_of(window_case(), window_case(tiled=True), window_case(tiled=True, window=(2, 2))), st.integers(1, 3))
def test_maxpool_kernels_match(case, threads):
    shape, pool, stride, pads, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    x[0, 0, :, 0] = x[0, :, 0, -1] = 1.0                  # ties along a row and a column,
    x[-1, :4, :4, :] = 0.5                                # and whole windows of one value:
    out_ref, saved_ref = numpy_ops.maxpool_forward(x, pool, stride, pads)   # all must pick the first
    dout = rng.standard_normal(out_ref.shape).astype(np.float32)
    with chunks(threads):                                 # 1, 2 or 3 chunks of the batch
        out, saved = numba_ops.maxpool_forward(x, pool, stride, pads)
        dx = numba_ops.maxpool_backward(dout, saved, x.shape, pool, stride, pads)
    np.testing.assert_array_equal(out, out_ref)
    np.testing.assert_array_equal(saved, saved_ref)       # the same winners, stored the same way
    np.testing.assert_allclose(dx, numpy_ops.maxpool_backward(dout, saved_ref, x.shape, pool, stride, pads), **F32)
    for kernels in (numpy_ops, numba_ops):                # inference: the same maxima, no winners kept
        with chunks(threads):
            out_only, none = kernels.maxpool_forward(x, pool, stride, pads, track=False)
        np.testing.assert_array_equal(out_only, out_ref)
        assert none is None


def test_maxpool_2x2_takes_its_own_kernel():
    """2x2 windows at stride 2 that all lie inside the input (the seed model's two pools, odd
    sizes included) take the register kernel; padding that a window would read does not."""
    rng = np.random.default_rng(6)
    general = numba_ops._maxpool_forward
    for shape, pads, fast in [((2, 26, 26, 32), (0, 0, 0, 0), True), ((2, 11, 11, 64), (0, 0, 0, 0), True),
                              ((2, 11, 11, 3), (0, 1, 0, 1), False)]:
        x = rng.standard_normal(shape).astype(np.float32)
        with mock.patch.object(numba_ops, "_maxpool_forward", side_effect=AssertionError) if fast else \
                mock.patch.object(numba_ops, "_maxpool_forward_2x2", side_effect=AssertionError):
            out, saved = numba_ops.maxpool_forward(x, (2, 2), (2, 2), pads)
        out_ref, saved_ref = numpy_ops.maxpool_forward(x, (2, 2), (2, 2), pads)
        np.testing.assert_array_equal(out, out_ref)
        np.testing.assert_array_equal(saved, saved_ref)
    assert numba_ops._maxpool_forward is general


@pytest.mark.parametrize("kernels", [numpy_ops, numba_ops], ids=["numpy", "numba"])
def test_maxpool_large_window_offsets(kernels):
    """A 17x17 window has 289 offsets, more than a byte holds: the winner must still be found."""
    x = np.zeros((2, 17, 17, 3), dtype=np.float32)
    x[0, 16, 16, 0] = x[1, 8, 15, 2] = 1.0                # winners at offsets 288 and 151
    out, saved = kernels.maxpool_forward(x, (17, 17), (17, 17), (0, 0, 0, 0))
    assert saved[0, 0, 0, 0] == 288 and saved[1, 0, 0, 2] == 151
    dx = kernels.maxpool_backward(np.full(out.shape, 2.0, np.float32), saved, x.shape, (17, 17), (17, 17),
                                  (0, 0, 0, 0))
    assert dx[0, 16, 16, 0] == 2.0 and dx[1, 8, 15, 2] == 2.0 and dx[0, 0, 0, 1] == 2.0
    assert dx.sum() == 2.0 * out.size                     # one winner per window, nothing else


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 2000), st.floats(0.0, 0.9), st.integers(0, 2**16))
def test_elementwise_kernels_match(n, rate, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n).astype(np.float32)
    out, mask = numba_ops.dropout_forward(x, rate, np.random.default_rng(seed))
    kept = out != 0
    np.testing.assert_allclose(out[kept], x[kept] / np.float32(1 - rate), rtol=1e-6)
    dout = rng.standard_normal(n).astype(np.float32)
    np.testing.assert_allclose(numba_ops.dropout_backward(dout, mask), dout * kept / np.float32(1 - rate), rtol=1e-6)
    again, _ = numba_ops.dropout_forward(x, rate, np.random.default_rng(seed))
    np.testing.assert_array_equal(out, again)             # reproducible from the generator
    np.testing.assert_array_equal(numba_ops.relu_forward(x), numpy_ops.relu_forward(x))
    np.testing.assert_array_equal(numba_ops.relu_backward(dout, np.maximum(x, 0)),
                                  numpy_ops.relu_backward(dout, np.maximum(x, 0)))
    states = [[a.copy() for a in (x, dout, np.abs(x) * 0.1, dout ** 2)] for _ in range(2)]
    for kernels, (p, g, m, v) in zip((numba_ops, numpy_ops), states):
        kernels.adam_update(p, g, m, v, *map(np.float32, (0.01, 0.9, 0.999, 1e-7)))
    for a, b in zip(*states):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_dropout_mask_does_not_depend_on_the_split(threads):
    """Each element's draw depends on its place in the whole batch, not on its chunk."""
    x = np.random.default_rng(0).standard_normal((7, 5, 4, 3)).astype(np.float32)
    whole, _ = numba_ops.dropout_forward(x, 0.5, np.random.default_rng(3))
    with chunks(threads):
        split, (keep, scale) = numba_ops.dropout_forward(x, 0.5, np.random.default_rng(3))
        dx = numba_ops.dropout_backward(np.ones_like(x), (keep, scale))
    np.testing.assert_array_equal(split, whole)
    np.testing.assert_array_equal(dx, (whole != 0) * np.float32(2))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_matmul_matches_numpy(threads):
    """Dense's three products, with the rows of the left operand split (a transposed one included)."""
    rng = np.random.default_rng(threads)
    x, w, dz = rng.standard_normal((7, 10)), rng.standard_normal((10, 4)), rng.standard_normal((7, 4))
    with chunks(threads):
        products = numba_ops.matmul(x, w), numba_ops.matmul(x.T, dz), numba_ops.matmul(dz, w.T)
    for got, ref in zip(products, (x @ w, x.T @ dz, dz @ w.T)):
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, ref, rtol=1e-12)
    np.testing.assert_array_equal(numpy_ops.matmul(x, w), x @ w)


@pytest.mark.parametrize("threads", [2, 3])
def test_predict_and_evaluate_give_the_same_numbers_however_the_batch_is_split(threads):
    """Inference runs a whole forward pass per core (map_batch): the outputs must not change."""
    from tinycnn.seed import build_model
    tinycnn.set_backend("numba")
    tinycnn.set_random_seed(0)
    model = build_model()
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.random((45, 28, 28, 1), dtype=np.float32)          # batches of 20, 20 and 5 images
    y = tinycnn.to_categorical(rng.integers(0, 10, 45), 10)
    with chunks(1):
        whole, whole_eval = model.predict(x, batch_size=20, verbose=0), model.evaluate(x, y, batch_size=20, verbose=0)
    with chunks(threads):
        split, split_eval = model.predict(x, batch_size=20, verbose=0), model.evaluate(x, y, batch_size=20, verbose=0)
    assert split.shape == (45, 10) and split.dtype == np.float32
    np.testing.assert_allclose(split, whole, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(split_eval, whole_eval, rtol=1e-6)
    parts = []
    with chunks(threads):
        joined = numba_ops.map_batch(lambda part: parts.append(len(part)) or part * 2, x[:20])
    assert sorted(parts) == sorted(np.diff(np.linspace(0, 20, threads + 1).astype(int)).tolist())
    np.testing.assert_array_equal(joined, x[:20] * 2)           # joined in order
    assert numpy_ops.map_batch(lambda part: part + 1, x[:3]).tolist() == (x[:3] + 1).tolist()


@pytest.mark.parametrize("threads", [1, 2, 3, 5])
@pytest.mark.parametrize("n", [1, 2, 3, 10])
def test_for_each_chunk_covers_every_index_once(threads, n):
    seen = np.zeros(n, dtype=int)
    calls = []

    def body(k, lo, hi):
        seen[lo:hi] += 1
        calls.append(k)
    with chunks(threads):
        cores.for_each_chunk(n, body, work=1)
        parts = cores.n_chunks(n, work=1)
    assert seen.tolist() == [1] * n
    assert sorted(calls) == list(range(parts)) and parts == min(threads, n)
    assert cores.n_chunks(n, work=cores.MIN_WORK - 1) == 1         # small jobs stay on one thread


@pytest.mark.parametrize("lo, hi", [(0, 0), (0, 1), (3, 10), (0, 64)])
@pytest.mark.parametrize("bytes_each", [1, 300_000, 1 << 21, 1 << 30])
def test_blocks_cut_a_chunk_into_consecutive_blocks_of_the_right_size(lo, hi, bytes_each):
    parts = cores.blocks(lo, hi, bytes_each)
    assert [i for s, e in parts for i in range(s, e)] == list(range(lo, hi))   # in order, each once
    most = max(1, cores.BLOCK_BYTES // bytes_each)
    assert all(1 <= e - s <= most for s, e in parts)
    assert len(parts) == -(-(hi - lo) // most)                                  # no smaller blocks than needed


def test_an_error_in_any_chunk_reaches_the_caller():
    def body(k, lo, hi):
        if k == 2:
            raise ValueError(f"chunk {k} failed")
    with chunks(3), pytest.raises(ValueError, match="chunk 2 failed"):
        cores.for_each_chunk(9, body, work=1)
    done = []
    with chunks(3):
        cores.for_each_chunk(9, lambda k, lo, hi: done.append(k), work=1)   # the pool still works
    assert sorted(done) == [0, 1, 2]


def test_a_split_inside_a_chunk_runs_whole_instead_of_waiting_forever():
    seen = []

    def inner(k, lo, hi):
        seen.append((k, lo, hi))

    def outer(k, lo, hi):
        cores.for_each_chunk(4, inner, work=1)
    with chunks(2):
        runner = threading.Thread(target=cores.for_each_chunk, args=(2, outer, 1), daemon=True)
        runner.start()
        runner.join(timeout=60)                          # a deadlock fails here instead of hanging
        assert not runner.is_alive(), "a split inside a chunk deadlocked"
        assert seen == [(0, 0, 4), (0, 0, 4)]             # each outer chunk ran the inner job whole
        seen.clear()
        cores.for_each_chunk(4, inner, work=1)           # outside a chunk, the job is split again
    assert sorted(seen) == [(0, 0, 2), (1, 2, 4)]


def test_splits_from_two_threads_at_once_each_cover_their_own_job():
    """While one thread's split has the workers, another thread's split runs its chunks itself."""
    started, release = threading.Event(), threading.Event()
    seen = {"slow": np.zeros(6, dtype=int), "other": np.zeros(6, dtype=int)}
    threads_used = {"slow": set(), "other": set()}

    def body(job):
        def run(k, lo, hi):
            seen[job][lo:hi] += 1
            threads_used[job].add(threading.get_ident())
            if job == "slow" and k == 0:
                started.set()
                assert release.wait(timeout=60)
        return run
    with chunks(3):
        slow = threading.Thread(target=cores.for_each_chunk, args=(6, body("slow"), 1), daemon=True)
        slow.start()
        assert started.wait(timeout=60)
        other = threading.Thread(target=cores.for_each_chunk, args=(6, body("other"), 1), daemon=True)
        other.start()
        other.join(timeout=20)                           # finishes while "slow" still holds the workers
        assert not other.is_alive(), "a second split waited for the first one"
        release.set()
        slow.join(timeout=60)
    assert seen["slow"].tolist() == [1] * 6 and seen["other"].tolist() == [1] * 6
    assert len(threads_used["slow"]) == 3 and len(threads_used["other"]) == 1


def test_yielding_sees_another_threads_count_and_gives_up_after_its_rounds():
    """The wait before sleeping on a lock: it must see a count that another thread changes
    (re-reading it after every yield), and return False once its rounds are used up."""
    counts = np.zeros(2, dtype=np.int64)
    assert cores._yield_while(counts, 0, 0, 50) is False           # nothing changed: gives up
    assert cores._yield_while(counts, 1, 5, 50) is True            # already different
    threading.Timer(0.05, counts.__setitem__, (0, 1)).start()       # changed after 0.05 s,
    threading.Timer(1.0, counts.__setitem__, (0, 0)).start()        # back after 1 s: only a loop that
    assert cores._yield_while(counts, 0, 0, 10**7) is True          # re-reads it (~5 s of rounds) sees it


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_worker_threads_of_its_own():
    with chunks(2):
        cores.for_each_chunk(4, lambda k, lo, hi: None, work=1)        # the parent's workers exist
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:                                                    # the child: its workers must run
            try:
                done = []
                cores.for_each_chunk(4, lambda k, lo, hi: done.append((k, threading.get_ident())), work=1)
                ok = sorted(k for k, _ in done) == [0, 1] and len({t for _, t in done}) == 2
                os.write(write, b"ok" if ok else b"no")
            finally:
                os._exit(0)
        os.close(write)
        ready, _, _ = select.select([read], [], [], 60)
        if not ready:                                                   # the child hangs: it waits on
            os.kill(pid, signal.SIGKILL)                                # threads it does not have
        answer = os.read(read, 2) if ready else b"hung"
        os.close(read)
        os.waitpid(pid, 0)
    assert answer == b"ok"


def test_conv2d_backward_inside_a_chunk_sums_only_the_parts_it_computed():
    """Called from inside a chunk, the kernel runs whole: dW and db must still be right."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 6, 6, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 5)).astype(np.float32)
    out, cols = numpy_ops.conv2d_forward(x, w, None, (1, 1), (0, 0, 0, 0))
    dout = rng.standard_normal(out.shape).astype(np.float32)
    ref = numpy_ops.conv2d_backward(dout, cols, x.shape, w, (1, 1), (0, 0, 0, 0))
    got = {}
    with chunks(2):
        cores.for_each_chunk(2, lambda k, lo, hi: got.setdefault(k, numba_ops.conv2d_backward(
            dout, cols, x.shape, w, (1, 1), (0, 0, 0, 0))), work=1)
    assert sorted(got) == [0, 1]
    for result in got.values():
        for a, b in zip(result, ref):
            np.testing.assert_allclose(a, b, **F32)


@pytest.mark.skipif(cores._blas is None, reason="NumPy's BLAS is not an OpenBLAS that tinycnn can reach")
def test_the_blas_runs_single_threaded_inside_a_split_and_gets_its_threads_back():
    get, set_ = cores._blas
    set_(2)
    inside = []
    with chunks(2):
        cores.for_each_chunk(4, lambda k, lo, hi: inside.append(get()), work=1)
        with cores.one_blas_thread():
            with cores.one_blas_thread():                              # nested blocks
                inside.append(get())
            inside.append(get())
    assert inside == [1, 1, 1, 1] and get() == 2


def test_tinycnn_threads_must_be_a_whole_number():
    env = dict(os.environ, TINYCNN_THREADS="two")
    result = subprocess.run([sys.executable, "-c", "import tinycnn.kernels.cores"], env=env,
                            capture_output=True, text=True)
    assert result.returncode != 0 and "TINYCNN_THREADS must be a whole number" in result.stderr


FAULTS_PER_STEP = """
import resource, sys
from concurrent.futures import ThreadPoolExecutor
import numpy as np
if sys.argv[1] == "keep":
    from tinycnn.kernels import cores
    assert cores.keep_freed_memory()
def step():                      # two arrays the size of conv1's output at batch 128, freed again
    a, b = np.ones((128, 26, 26, 32), np.float32), np.ones((128, 26, 26, 32), np.float32)
    return a[0, 0, 0, 0] + b[-1, -1, -1, -1]
pool = ThreadPoolExecutor(1)     # a second thread allocates too, from its own arena
for _ in range(3):
    step(), pool.submit(step).result()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step(), pool.submit(step).result()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="page-fault counts from getrusage, glibc's mallopt")
def test_keep_freed_memory_stops_each_step_from_page_faulting_its_arrays_back_in():
    def faults(mode):
        result = subprocess.run([sys.executable, "-c", FAULTS_PER_STEP, mode], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        return float(result.stdout)
    pages = 4 * 128 * 26 * 26 * 32 // 4096                # 2,704 pages per array
    default, kept = faults("default"), faults("keep")
    if default < pages / 10:
        pytest.skip(f"this C library keeps freed memory by itself ({default} faults per step)")
    assert kept < pages / 100, (default, kept)


def test_dropout_rate_is_about_right():
    out, _ = numba_ops.dropout_forward(np.ones(100_000, np.float32), 0.25, np.random.default_rng(0))
    assert abs((out == 0).mean() - 0.25) < 0.01


def test_set_backend_and_get_backend():
    tinycnn.set_backend("numpy")
    assert tinycnn.get_backend() == "numpy" and tinycnn.backend.ops() is numpy_ops
    tinycnn.set_backend("NUMBA")
    assert tinycnn.get_backend() == "numba" and tinycnn.backend.ops() is numba_ops
    with pytest.raises(ValueError, match="unknown tinycnn backend 'cuda'; expected one of 'numba', 'numpy'"):
        tinycnn.set_backend("cuda")


def test_environment_variable_chooses_the_backend():
    code = "import tinycnn; print(tinycnn.get_backend())"
    env = {**os.environ, "TINYCNN_BACKEND": "numpy"}
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip() == "numpy"
    env["TINYCNN_BACKEND"] = "fortran"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "TINYCNN_BACKEND: unknown tinycnn backend 'fortran'" in result.stderr
    del env["TINYCNN_BACKEND"]
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip() == "numba"


def test_a_short_training_gives_the_same_loss_curve_on_both_backends(mnist_prepared):
    from tinycnn import seed
    (x, y), _ = mnist_prepared
    curves = {}
    for name in ("numpy", "numba"):
        tinycnn.set_backend(name)
        tinycnn.set_random_seed(3)
        model = seed.build_model()
        for layer in model.layers:             # no dropout: the two backends draw different masks
            if hasattr(layer, "rate"):
                layer.rate = 0.0
        model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
        curves[name] = [model.train_on_batch(x[i:i + 64], y[i:i + 64])[0] for i in range(0, 64 * 15, 64)]
    # Measured: the curves agree to 2e-7 (conv2 on Winograd, the rest bit for bit); a 1% error in
    # conv2's dW moves them by 2e-3, so 1e-4 leaves room for round-off and still catches that.
    np.testing.assert_allclose(curves["numba"], curves["numpy"], rtol=1e-4)
    assert curves["numpy"][-1] < 0.7 * curves["numpy"][0]      # and it does learn
