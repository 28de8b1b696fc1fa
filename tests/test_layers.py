"""Every layer's backward against numerical gradients (float64), and forward against naive loops."""
import numpy as np
import pytest

from tinycnn import losses
from tinycnn.gradcheck import check_layer, check_model, rel_error
from tinycnn.layers import Activation, Conv2D, Dense, Dropout, Flatten, MaxPooling2D, ReLU, Softmax
from tinycnn.models import Sequential

TOL = 1e-6


def distinct(shape, rng):
    """Inputs with no ties and no values near 0 (ReLU kinks, max-pool ties break finite differences)."""
    values = rng.permutation(np.prod(shape)).reshape(shape).astype(np.float64)
    return (values - values.size / 2 + 0.5) / values.size * 4


def naive_conv2d(x, w, b, stride, padding):
    """Four loops, TensorFlow padding: the definition of a convolution, for tiny inputs."""
    N, H, W, C = x.shape
    KH, KW, _, F = w.shape
    SH, SW = stride
    if padding == "same":
        OH, OW = -(-H // SH), -(-W // SW)
        ph, pw = max((OH - 1) * SH + KH - H, 0), max((OW - 1) * SW + KW - W, 0)
        x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    else:
        OH, OW = (H - KH) // SH + 1, (W - KW) // SW + 1
    out = np.zeros((N, OH, OW, F))
    for n in range(N):
        for i in range(OH):
            for j in range(OW):
                patch = x[n, i * SH:i * SH + KH, j * SW:j * SW + KW, :]
                for f in range(F):
                    out[n, i, j, f] = np.sum(patch * w[..., f]) + b[f]
    return out


def naive_maxpool(x, pool, stride):
    N, H, W, C = x.shape
    OH, OW = (H - pool[0]) // stride[0] + 1, (W - pool[1]) // stride[1] + 1
    out = np.zeros((N, OH, OW, C))
    for n in range(N):
        for i in range(OH):
            for j in range(OW):
                for c in range(C):
                    out[n, i, j, c] = x[n, i * stride[0]:i * stride[0] + pool[0],
                                        j * stride[1]:j * stride[1] + pool[1], c].max()
    return out


@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_conv2d_forward_matches_naive_loops(backend, rng, strides, padding):
    x = rng.standard_normal((2, 7, 8, 3)).astype(np.float32)
    layer = Conv2D(4, (3, 2), strides=strides, padding=padding)
    layer.build(x.shape[1:])
    layer.params["bias"] = rng.standard_normal(4).astype(np.float32)
    expected = naive_conv2d(x, layer.params["kernel"], layer.params["bias"], layer.strides, padding)
    out = layer(x)
    assert out.shape == expected.shape == (2,) + layer.out_shape
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pool,strides", [((2, 2), None), ((3, 3), (2, 2)), ((2, 3), (1, 2))])
def test_maxpool_forward_matches_naive_loops(backend, rng, pool, strides):
    x = rng.standard_normal((2, 9, 8, 3)).astype(np.float32)
    layer = MaxPooling2D(pool, strides)
    np.testing.assert_array_equal(layer(x), naive_maxpool(x, layer.pool_size, layer.strides))


@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("activation", [None, "relu", "tanh"])
@pytest.mark.parametrize("channels", [3, 1], ids=["3ch", "1ch"])      # 1: the Numba backend's direct 3x3 loop
def test_conv2d_gradients(backend, rng, strides, padding, activation, channels):
    x = distinct((2, 6, 7, channels), rng)
    errors = check_layer(Conv2D(4, 3, strides=strides, padding=padding, activation=activation), x)
    assert set(errors) == {"x", "kernel", "bias"}
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("pool,strides,padding", [((2, 2), None, "valid"), ((3, 3), (2, 2), "same"),
                                                  ((2, 2), (1, 1), "valid")])
def test_maxpool_gradients(backend, rng, pool, strides, padding):
    x = distinct((2, 7, 6, 3), rng)
    errors = check_layer(MaxPooling2D(pool, strides, padding), x)
    assert errors["x"] < TOL, errors


@pytest.mark.parametrize("activation", [None, "relu", "sigmoid", "tanh", "softmax"])
def test_dense_gradients(rng, activation):
    errors = check_layer(Dense(5, activation=activation), distinct((4, 6), rng))
    assert set(errors) == {"x", "kernel", "bias"}
    assert max(errors.values()) < TOL, errors


def test_dropout_gradient_with_fixed_mask(backend, rng):
    layer = Dropout(0.4, seed=3)
    errors = check_layer(layer, rng.standard_normal((3, 5, 4)))
    assert errors["x"] < TOL
    out = layer.forward(np.ones((200, 50)), training=True)
    kept = out != 0
    assert 0.5 < kept.mean() < 0.7                                       # about 60% kept
    np.testing.assert_allclose(out[kept], 1 / 0.6)                       # inverted: scaled up
    assert np.array_equal(layer.forward(np.ones((4, 4)), training=False), np.ones((4, 4)))


@pytest.mark.parametrize("layer", [Flatten(), ReLU(), Softmax(), Activation("sigmoid"), Activation("linear")])
def test_shape_and_activation_layer_gradients(rng, layer):
    assert check_layer(layer, distinct((3, 2, 3, 4), rng))["x"] < TOL


def test_fused_softmax_crossentropy_gradient(rng):
    """(p - y)/N is the gradient of the cross-entropy of softmax(z), with respect to z."""
    z = rng.standard_normal((5, 4))
    y = np.eye(4)[rng.integers(0, 4, 5)]
    loss = losses.CategoricalCrossentropy()
    softmax = Softmax()
    p = softmax.forward(z)
    numeric = np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        zp, zm = z.copy(), z.copy()
        zp[idx] += 1e-6
        zm[idx] -= 1e-6
        numeric[idx] = (loss(y, softmax.forward(zp)) - loss(y, softmax.forward(zm))) / 2e-6
    assert rel_error(loss.gradient_logits(y, p), numeric) < TOL
    # and the unfused path (dL/dp through softmax's Jacobian) gives the same numbers
    softmax.forward(z, training=True)
    assert rel_error(softmax.backward(loss.gradient(y, p)), loss.gradient_logits(y, p)) < TOL


def test_softmax_and_loss_stay_finite_for_huge_logits():
    z = np.array([[1e4, -1e4, 0.0], [3e38, 0.0, -3e38]], dtype=np.float32)
    p = Softmax().forward(z)
    assert np.isfinite(p).all() and np.allclose(p.sum(axis=1), 1)
    y = np.array([[0, 1, 0], [1, 0, 0]], dtype=np.float32)
    loss = losses.CategoricalCrossentropy()
    assert np.isfinite(loss(y, p)) and np.isfinite(loss.gradient_logits(y, p)).all()


def test_whole_sequential_gradients(backend, rng):
    model = Sequential([
        Conv2D(3, 3, padding="same", activation="relu", input_shape=(6, 6, 2)),
        MaxPooling2D(),
        Dropout(0.3, seed=1),
        Conv2D(4, 2, strides=2, activation="tanh"),
        Flatten(),
        Dense(5, activation="relu"),
        Dense(3, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    x = distinct((4, 6, 6, 2), rng)
    y = np.eye(3)[[0, 2, 1, 2]]
    errors = check_model(model, x, y)
    assert len(errors) == 8
    assert max(errors.values()) < TOL, errors


def test_backward_overwrites_gradients_and_never_mutates_inputs(backend, rng):
    layer = Conv2D(2, 3, activation="relu")
    x = rng.standard_normal((2, 5, 5, 3)).astype(np.float32)
    x_copy = x.copy()
    out = layer(x, training=True)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    dout_copy = dout.copy()
    layer.backward(dout)
    first = {k: g.copy() for k, g in layer.grads.items()}
    layer.backward(dout)                                    # a second call: same grads, not doubled
    for key in first:
        np.testing.assert_array_equal(layer.grads[key], first[key])
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(dout, dout_copy)


def test_backward_before_forward_is_a_clear_error():
    with pytest.raises(RuntimeError, match="dense.*backward\\(\\) called before forward"):
        Dense(3).backward(np.zeros((1, 3)))


def test_same_padding_puts_the_odd_pixel_at_the_bottom_right():
    layer = Conv2D(1, 2, padding="same", use_bias=False)
    layer.build((3, 3, 1))
    assert layer.pads == (0, 1, 0, 1)                       # TensorFlow: extra row/col after
    layer.set_weights([np.ones((2, 2, 1, 1))])
    out = layer(np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1))[0, :, :, 0]
    np.testing.assert_array_equal(out, [[8, 12, 7], [20, 24, 13], [13, 15, 8]])


def test_keras_layouts_and_initializers():
    conv, dense = Conv2D(8, (3, 5)), Dense(7)
    conv.build((10, 12, 3))
    dense.build((20,))
    kernel, bias = conv.get_weights()
    assert kernel.shape == (3, 5, 3, 8) and bias.shape == (8,) and kernel.dtype == np.float32
    limit = np.sqrt(6 / (3 * 5 * 3 + 3 * 5 * 8))             # glorot_uniform
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.8 * limit
    assert not bias.any()
    assert [w.shape for w in dense.get_weights()] == [(20, 7), (7,)]
    assert Flatten().get_weights() == [] and MaxPooling2D().get_weights() == []


def test_set_weights_checks_shapes():
    layer = Dense(3)
    layer.build((4,))
    with pytest.raises(ValueError, match=r"'kernel' must have shape \(4, 3\); received \(3, 4\)"):
        layer.set_weights([np.zeros((3, 4)), np.zeros(3)])
    with pytest.raises(ValueError, match="expects 2 arrays"):
        layer.set_weights([np.zeros((4, 3))])
    layer.set_weights([np.ones((4, 3)), np.arange(3)])
    assert layer.params["bias"].dtype == np.float32 and layer.params["bias"][2] == 2


@pytest.mark.parametrize("layer,shape", [
    (lambda: Conv2D(8, 3, activation="relu"), (13, 13, 32)),     # Winograd on the Numba backend
    (lambda: Conv2D(8, 3, strides=2, padding="same"), (9, 9, 1)),
    (lambda: MaxPooling2D(), (26, 26, 8)), (lambda: Dropout(0.5), (5, 5, 2)),
    (lambda: Flatten(), (5, 5, 2)), (lambda: Dense(3, activation="softmax"), (7,))])
def test_an_empty_batch_gives_empty_outputs_and_zero_gradients(backend, layer, shape):
    """A layer called directly on 0 samples (the model refuses empty data with its own message)."""
    layer = layer()
    out = layer(np.zeros((0, *shape), np.float32), training=True)
    assert out.shape == (0, *layer.out_shape)
    dx = layer.backward(np.zeros_like(out))
    assert dx.shape == (0, *shape)
    for key, grad in layer.grads.items():
        assert grad.shape == layer.params[key].shape and not grad.any(), key
