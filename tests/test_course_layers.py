"""The course's layers: BatchNormalization, the other poolings, padding, reshaping, rescaling, upsampling.

For each: a float64 numerical gradient check, values computed by hand where Keras's rule is the
point (moving statistics, "same" average pooling, ties), parity with PyTorch (NCHW <-> NHWC),
clear errors, and their place in a model (summary, freezing, both backends).

PyTorch's BatchNorm differs from Keras's in two conventions, mapped here: its momentum is
1 - Keras's, and it updates running_var with the unbiased batch variance (divided by m - 1),
where Keras 3 uses the biased one (divided by m, the variance it normalizes with).
"""
import numpy as np
import pytest

import tinycnn
from tinycnn.gradcheck import check_layer
from tinycnn.layers import (AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout, Flatten,
                            GlobalAveragePooling2D, GlobalMaxPooling2D, Input, MaxPooling2D, Rescaling, Reshape,
                            UpSampling2D, ZeroPadding2D)
from tinycnn.layers.base import window_output
from tinycnn.models import Sequential
from tinycnn.utils import to_categorical

TOL = 1e-6


def random(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def distinct(shape, seed=0):
    """No ties and no near-ties (max pooling's switch must not flip under finite differences)."""
    values = np.random.default_rng(seed).permutation(int(np.prod(shape))).reshape(shape).astype(np.float64)
    return (values - values.size / 2 + 0.5) / values.size * 4


def built(layer, shape):
    layer.build(shape)
    return layer


# ----------------------------------------------------------------------------------------
# Gradient checks (float64)
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 3, 4), (3, 5, 2)])
@pytest.mark.parametrize("center, scale", [(True, True), (False, True), (True, False), (False, False)])
def test_batchnorm_training_gradients(shape, center, scale):
    layer = BatchNormalization(momentum=0.9, center=center, scale=scale)
    layer.build(shape[1:])
    r = np.random.default_rng(5)
    for key in ("gamma", "beta"):
        if key in layer.params:
            layer.params[key] = r.standard_normal(shape[-1]).astype(np.float32) + 1.0
    errors = check_layer(layer, random(shape, 1) * 2 + 0.5, h=1e-4)
    assert set(errors) == {"x"} | ({"gamma"} if scale else set()) | ({"beta"} if center else set())
    assert max(errors.values()) < TOL, errors


def test_frozen_batchnorm_gradients_are_those_of_inference_mode():
    layer = built(BatchNormalization(), (3, 3, 2))
    layer.set_weights([[1.5, -0.5], [0.2, 0.1], [0.3, -0.2], [0.5, 2.0]])
    layer.trainable = False
    errors = check_layer(layer, random((4, 3, 3, 2), 2))
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("layer, shape", [
    (lambda: AveragePooling2D(), (2, 4, 6, 3)),
    (lambda: AveragePooling2D((3, 2), strides=1), (2, 5, 4, 2)),
    (lambda: AveragePooling2D(3, strides=2, padding="same"), (2, 5, 6, 2)),
    (lambda: AveragePooling2D(2, padding="same"), (1, 5, 5, 2)),
    (lambda: GlobalAveragePooling2D(), (2, 3, 4, 3)),
    (lambda: GlobalAveragePooling2D(keepdims=True), (2, 3, 4, 3)),
    (lambda: GlobalMaxPooling2D(), (2, 3, 4, 3)),
    (lambda: GlobalMaxPooling2D(keepdims=True), (2, 3, 4, 3)),
    (lambda: ZeroPadding2D(), (2, 3, 4, 2)),
    (lambda: ZeroPadding2D(((0, 2), (3, 1))), (2, 3, 4, 2)),
    (lambda: Reshape((-1, 3)), (2, 2, 3, 3)),
    (lambda: Rescaling(1 / 255.0, offset=-1.0), (2, 3, 4, 2)),
    (lambda: Rescaling([0.5, -2.0], offset=[1.0, 0.0]), (2, 3, 4, 2)),
    (lambda: UpSampling2D(), (2, 3, 4, 2)),
    (lambda: UpSampling2D((3, 1)), (2, 3, 4, 2)),
    (lambda: UpSampling2D((2, 3), interpolation="bilinear"), (2, 3, 4, 2)),
])
def test_gradients(layer, shape):
    errors = check_layer(layer(), distinct(shape))
    assert set(errors) == {"x"} and errors["x"] < TOL, errors


# ----------------------------------------------------------------------------------------
# BatchNormalization: Keras's rules, by hand
# ----------------------------------------------------------------------------------------
def test_batchnorm_defaults_and_weights_in_keras_order():
    layer = built(BatchNormalization(), (5, 5, 3))
    assert (layer.axis, layer.momentum, layer.epsilon, layer.center, layer.scale) == (-1, 0.99, 1e-3, True, True)
    assert list(layer.params) == ["gamma", "beta", "moving_mean", "moving_variance"]
    assert [w.tolist() for w in layer.get_weights()] == [[1, 1, 1], [0, 0, 0], [0, 0, 0], [1, 1, 1]]
    assert all(w.dtype == np.float32 for w in layer.get_weights())
    assert set(layer.grads) == {"gamma", "beta"}                    # the moving statistics have no gradient
    assert [id(w) for w in layer.trainable_weights] == [id(layer.params["gamma"]), id(layer.params["beta"])]
    assert [id(w) for w in layer.non_trainable_weights] == [id(layer.params["moving_mean"]),
                                                            id(layer.params["moving_variance"])]
    assert layer.name == "batch_normalization" and layer.count_params() == 12


def test_batchnorm_training_uses_batch_statistics_and_updates_moving_ones():
    x = np.array([[1.0, 10.0], [2.0, 20.0], [6.0, 30.0]], dtype=np.float32)     # (N=3, C=2)
    layer = BatchNormalization(momentum=0.9, epsilon=0.01)
    out = layer(x, training=True)
    mu, var = np.array([3.0, 20.0]), np.array([14 / 3, 200 / 3])                # var divides by m = 3
    np.testing.assert_allclose(out, (x - mu) / np.sqrt(var + 0.01), rtol=1e-6)
    np.testing.assert_allclose(layer.params["moving_mean"], 0.1 * mu, rtol=1e-6)
    np.testing.assert_allclose(layer.params["moving_variance"], 0.9 + 0.1 * var, rtol=1e-6)   # biased, as Keras 3
    layer(2 * x, training=True)
    np.testing.assert_allclose(layer.params["moving_mean"], 0.9 * 0.1 * mu + 0.1 * 2 * mu, rtol=1e-6)
    np.testing.assert_allclose(layer.params["moving_variance"], 0.9 * (0.9 + 0.1 * var) + 0.1 * 4 * var, rtol=1e-6)
    assert layer.params["moving_mean"].dtype == np.float32


def test_batchnorm_inference_uses_the_moving_statistics_and_changes_nothing():
    layer = built(BatchNormalization(epsilon=0.5), (2, 2, 2))
    weights = [np.array(w, np.float32) for w in ([2.0, 1.0], [0.5, -1.0], [1.0, -2.0], [3.5, 1.5])]
    layer.set_weights(weights)
    x = random((3, 2, 2, 2), 4, np.float32)
    expected = weights[0] * (x - weights[2]) / np.sqrt(weights[3] + 0.5) + weights[1]
    np.testing.assert_allclose(layer(x), expected, rtol=1e-6)
    assert all(np.array_equal(a, b) for a, b in zip(layer.get_weights(), weights))
    assert layer.cache is None


def test_frozen_batchnorm_runs_in_inference_mode_even_when_training():
    layer = built(BatchNormalization(), (4,))
    layer.set_weights([[2, 1, 1, 1], [0, 1, 0, 0], [1, 2, 3, 4], [4, 3, 2, 1]])
    layer.trainable = False
    x = random((5, 4), 6, np.float32)
    np.testing.assert_array_equal(layer(x, training=True), layer(x, training=False))
    assert layer.get_weights()[2].tolist() == [1, 2, 3, 4] and layer.get_weights()[3].tolist() == [4, 3, 2, 1]


# ----------------------------------------------------------------------------------------
# The poolings, padding, reshaping and upsampling: Keras's rules, by hand
# ----------------------------------------------------------------------------------------
def test_average_pooling_same_leaves_the_padding_out_of_the_mean():
    x = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1)      # 0 1 2 / 3 4 5 / 6 7 8
    out = AveragePooling2D(2, padding="same")(x)               # padded after: one row below, one column right
    assert out[0, :, :, 0].tolist() == [[2.0, 3.5], [6.5, 8.0]]   # (0+1+3+4)/4, (2+5)/2, (6+7)/2, 8/1
    assert AveragePooling2D(2)(x)[0, :, :, 0].tolist() == [[2.0]]
    assert AveragePooling2D(2, strides=1)(x)[0, :, :, 0].tolist() == [[2.0, 3.0], [5.0, 6.0]]


def test_global_poolings_values_and_shapes():
    x = random((2, 3, 4, 5), 7, np.float32)
    np.testing.assert_allclose(GlobalAveragePooling2D()(x), x.mean(axis=(1, 2)), rtol=1e-6)
    np.testing.assert_array_equal(GlobalMaxPooling2D()(x), x.max(axis=(1, 2)))
    assert GlobalAveragePooling2D(keepdims=True)(x).shape == GlobalMaxPooling2D(keepdims=True)(x).shape == (2, 1, 1, 5)


def test_global_max_pooling_ties_go_to_the_first_cell_like_max_pooling():
    x = np.array([[1, 3, 3], [3, 0, 3]], dtype=np.float32).reshape(1, 2, 3, 1)   # the max, 3, four times
    dout = np.array([[[[5.0]]]], dtype=np.float32)
    g = GlobalMaxPooling2D(keepdims=True)
    g(x, training=True)
    dx = g.backward(dout)
    assert dx[0, :, :, 0].tolist() == [[0, 5, 0], [0, 0, 0]]       # the first 3 in row-major order
    m = MaxPooling2D((2, 3))
    m(x, training=True)
    np.testing.assert_array_equal(m.backward(dout), dx)           # the same rule as MaxPooling2D


def test_zero_padding_forms_as_keras():
    x = np.ones((1, 2, 3, 1), dtype=np.float32)
    assert ZeroPadding2D().padding == ((1, 1), (1, 1))
    assert ZeroPadding2D(2).padding == ((2, 2), (2, 2))
    assert ZeroPadding2D((1, 0)).padding == ((1, 1), (0, 0))
    assert ZeroPadding2D(((0, 1), (2, 3))).padding == ((0, 1), (2, 3))
    out = ZeroPadding2D(((0, 1), (2, 0)))(x)
    assert out[0, :, :, 0].tolist() == [[0, 0, 1, 1, 1], [0, 0, 1, 1, 1], [0, 0, 0, 0, 0]]


def test_reshape_infers_the_minus_one():
    x = np.arange(24, dtype=np.float32).reshape(2, 12)
    layer = Reshape((-1, 2, 2))
    out = layer(x)
    assert layer.out_shape == (3, 2, 2) and out.shape == (2, 3, 2, 2)
    np.testing.assert_array_equal(out.reshape(2, 12), x)          # row-major order kept


def test_rescaling_values_and_integer_inputs():
    x = np.array([[0, 255], [51, 102]], dtype=np.uint8)
    out = Rescaling(1 / 127.5, offset=-1)(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[-1, 1], [-0.6, -0.2]], rtol=1e-6, atol=1e-6)
    per_channel = Rescaling([1.0, 10.0])(np.ones((2, 3, 2), np.float32))
    assert per_channel[..., 0].tolist() == [[1] * 3] * 2 and per_channel[..., 1].tolist() == [[10] * 3] * 2


def test_upsampling_nearest_repeats_rows_and_columns():
    x = np.arange(4, dtype=np.float32).reshape(1, 2, 2, 1)
    out = UpSampling2D((1, 2))(x)
    assert out[0, :, :, 0].tolist() == [[0, 0, 1, 1], [2, 2, 3, 3]]
    assert UpSampling2D(2)(x).shape == (1, 4, 4, 1)


# ----------------------------------------------------------------------------------------
# Parity with PyTorch
# ----------------------------------------------------------------------------------------
def torch_mod():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


def to_torch(a, torch):
    """NHWC -> NCHW (rank 4); rank 2 stays (N, C). A leaf that collects its gradient."""
    a = a.transpose(0, 3, 1, 2) if a.ndim == 4 else a
    return torch.tensor(np.ascontiguousarray(a), requires_grad=True)


def from_torch(t):
    a = t.detach().numpy()
    return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a


def close(ours, theirs, rtol=1e-5, atol=1e-5):
    np.testing.assert_allclose(ours, from_torch(theirs) if not isinstance(theirs, np.ndarray) else theirs,
                               rtol=rtol, atol=atol)


def forward_backward(layer, x, dout, training=True):
    out = layer(x, training=training)
    return out, layer.backward(dout)


def torch_forward_backward(f, x, dout, torch):
    t = to_torch(x, torch)
    out = f(t)
    (out * to_torch(dout, torch).detach()).sum().backward()
    return out, t.grad


@pytest.mark.parametrize("shape", [(8, 5), (4, 6, 5, 3)])
def test_batchnorm_matches_torch_in_training_and_inference(shape):
    torch = torch_mod()
    C, momentum, eps = shape[-1], 0.9, 1e-3
    ours = built(BatchNormalization(momentum=momentum, epsilon=eps), shape[1:])
    bn_class = torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d
    theirs = bn_class(C, eps=eps, momentum=1 - momentum)              # torch's momentum = 1 - Keras's
    gamma, beta = random(C, 1, np.float32) + 1, random(C, 2, np.float32)
    ours.set_weights([gamma, beta, np.zeros(C), np.ones(C)])
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(gamma))
        theirs.bias.copy_(torch.tensor(beta))
    theirs.train()
    m = int(np.prod(shape)) // C                                        # values per channel
    for step in range(3):                                               # a few training steps' statistics
        x = random(shape, 10 + step, np.float32) * (step + 1) + step
        dout = random(shape, 20 + step, np.float32)
        out, dx = forward_backward(ours, x, dout)
        theirs.zero_grad()
        t_out, t_dx = torch_forward_backward(theirs, x, dout, torch)
        close(out, t_out)
        close(dx, t_dx, atol=1e-4)
        close(ours.grads["gamma"], theirs.weight.grad.numpy(), rtol=1e-4, atol=1e-4)
        close(ours.grads["beta"], theirs.bias.grad.numpy(), rtol=1e-4, atol=1e-4)
    mm, mv = ours.params["moving_mean"], ours.params["moving_variance"]
    close(mm, theirs.running_mean.numpy())
    # both start at 1: mv - M^k = (1 - M) sum M^(k-j) var_j, and torch's is the same with m/(m-1) var_j
    Mk = momentum ** 3
    close(mv, Mk + (m - 1) / m * (theirs.running_var.numpy() - Mk), rtol=1e-5)
    # inference: the same moving statistics on both sides
    with torch.no_grad():
        theirs.running_var.copy_(torch.tensor(mv))
    theirs.eval()
    x, dout = random(shape, 30, np.float32), random(shape, 31, np.float32)
    t_out, t_dx = torch_forward_backward(theirs, x, dout, torch)
    close(ours(x), t_out)
    ours.trainable = False                                             # frozen: inference mode, in training
    out, dx = forward_backward(ours, x, dout)
    close(out, t_out)
    close(dx, t_dx)


@pytest.mark.parametrize("pool, strides, padding, size", [
    ((2, 2), None, "valid", (6, 8)), ((3, 3), (2, 2), "valid", (7, 7)), ((2, 3), (1, 2), "valid", (5, 7)),
    ((2, 2), None, "same", (5, 7)), ((3, 3), (1, 1), "same", (5, 6)), ((3, 2), (2, 1), "same", (6, 5)),
])
def test_average_pooling_matches_torch(pool, strides, padding, size):
    torch = torch_mod()
    F = torch.nn.functional
    x = random((2,) + size + (3,), 1, np.float32)
    layer = AveragePooling2D(pool, strides, padding)
    out = layer(x, training=True)
    dout = random(out.shape, 2, np.float32)
    dx = layer.backward(dout)
    s = layer.strides

    def torch_avg(t):
        if padding == "valid":
            return F.avg_pool2d(t, pool, s)
        (_, (top, bottom)), (_, (left, right)) = (window_output(size[0], pool[0], s[0], "same"),
                                                  window_output(size[1], pool[1], s[1], "same"))
        total = F.avg_pool2d(F.pad(t, (left, right, top, bottom)), pool, s, divisor_override=1)
        count = F.avg_pool2d(F.pad(torch.ones_like(t), (left, right, top, bottom)), pool, s, divisor_override=1)
        return total / count                                           # TensorFlow's mean over real cells only
    t_out, t_dx = torch_forward_backward(torch_avg, x, dout, torch)
    close(out, t_out)
    close(dx, t_dx)


@pytest.mark.parametrize("keepdims", [False, True])
def test_global_poolings_match_torch_adaptive_pools(keepdims):
    torch = torch_mod()
    x = distinct((3, 4, 5, 6)).astype(np.float32)
    for ours, theirs in ((GlobalAveragePooling2D(keepdims=keepdims), torch.nn.AdaptiveAvgPool2d(1)),
                         (GlobalMaxPooling2D(keepdims=keepdims), torch.nn.AdaptiveMaxPool2d(1))):
        out = ours(x, training=True)
        dout = random(out.shape, 3, np.float32)
        dx = ours.backward(dout)
        t_out, t_dx = torch_forward_backward(theirs, x, dout.reshape(3, 1, 1, 6), torch)
        close(out.reshape(3, 1, 1, 6), t_out)
        close(dx, t_dx)


@pytest.mark.parametrize("padding", [1, (2, 0), ((0, 1), (3, 2))])
def test_zero_padding_matches_torch(padding):
    torch = torch_mod()
    x = random((2, 3, 4, 2), 1, np.float32)
    layer = ZeroPadding2D(padding)
    (top, bottom), (left, right) = layer.padding
    out = layer(x, training=True)
    dout = random(out.shape, 2, np.float32)
    t_out, t_dx = torch_forward_backward(torch.nn.ZeroPad2d((left, right, top, bottom)), x, dout, torch)
    close(out, t_out, rtol=0, atol=0)
    close(layer.backward(dout), t_dx, rtol=0, atol=0)


@pytest.mark.parametrize("size, interpolation", [((2, 2), "nearest"), ((3, 2), "nearest"),
                                                 ((2, 2), "bilinear"), ((3, 4), "bilinear")])
def test_upsampling_matches_torch(size, interpolation):
    torch = torch_mod()
    x = random((2, 3, 5, 2), 1, np.float32)
    layer = UpSampling2D(size, interpolation=interpolation)
    out = layer(x, training=True)
    dout = random(out.shape, 2, np.float32)
    extra = {"align_corners": False} if interpolation == "bilinear" else {}
    upsample = torch.nn.Upsample(scale_factor=size, mode=interpolation, **extra)
    t_out, t_dx = torch_forward_backward(upsample, x, dout, torch)
    close(out, t_out)
    close(layer.backward(dout), t_dx)


# ----------------------------------------------------------------------------------------
# Clear errors
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("make, error, words", [
    (lambda: BatchNormalization(axis="last"), TypeError, "axis must be an integer"),
    (lambda: BatchNormalization(momentum=1.5), ValueError, "momentum must be in [0, 1]"),
    (lambda: BatchNormalization(momentum="high"), TypeError, "momentum must be a number"),
    (lambda: BatchNormalization(epsilon=0), ValueError, "epsilon must be > 0"),
    (lambda: BatchNormalization(gamma_initializer="glorot_uniform"), ValueError, "gamma_initializer must be"),
    (lambda: BatchNormalization(beta_regularizer="l2"), ValueError, "beta_regularizer is not supported"),
    (lambda: BatchNormalization(gamma_constraint="non_neg"), ValueError, "gamma_constraint is not supported"),
    (lambda: BatchNormalization(synchronized=True), ValueError, "synchronized=True"),
    (lambda: BatchNormalization(renorm=True), ValueError, r"renorm=True is not supported"),
    (lambda: AveragePooling2D(padding="full"), ValueError, "padding must be 'valid' or 'same'"),
    (lambda: AveragePooling2D(pool_size=0), ValueError, "pool_size must be a positive integer"),
    (lambda: AveragePooling2D(data_format="channels_first"), ValueError, "only data_format='channels_last'"),
    (lambda: GlobalMaxPooling2D(keepdims="yes"), TypeError, "keepdims must be True or False"),
    (lambda: GlobalAveragePooling2D(data_format="channels_first"), ValueError, "only data_format='channels_last'"),
    (lambda: ZeroPadding2D(-1), ValueError, "padding must be an int"),
    (lambda: ZeroPadding2D((1, 2, 3)), ValueError, "received (1, 2, 3)"),
    (lambda: ZeroPadding2D(((1, 2), (3,))), ValueError, "((top, bottom), (left, right))"),
    (lambda: ZeroPadding2D("same"), ValueError, "padding must be an int"),
    (lambda: Reshape((2, -1, -1)), ValueError, "at most one -1"),
    (lambda: Reshape((0, 3)), ValueError, "target_shape must be a tuple of positive ints"),
    (lambda: Reshape(12), ValueError, "target_shape must be a tuple"),
    (lambda: Rescaling("1/255"), TypeError, "scale must be a number or an array of numbers"),
    (lambda: Rescaling(1.0, offset=None), TypeError, "offset must be a number"),
    (lambda: Rescaling(float("nan")), ValueError, "scale must be finite"),
    (lambda: UpSampling2D(interpolation="bicubic"), ValueError, "interpolation must be 'nearest' or 'bilinear'"),
    (lambda: UpSampling2D(size=(2, 0)), ValueError, "size must be a positive integer"),
])
def test_bad_arguments_are_refused_clearly(make, error, words):
    with pytest.raises(error) as info:
        make()
    assert words in str(info.value)


@pytest.mark.parametrize("make, shape, words", [
    (lambda: BatchNormalization(axis=1), (5, 5, 3), "only axis=-1"),
    (lambda: BatchNormalization(axis=-2), (4,), "only axis=-1"),
    (lambda: AveragePooling2D(), (10,), "expects input of rank 4"),
    (lambda: AveragePooling2D(4), (3, 3, 1), "window 4x4 is larger than"),
    (lambda: GlobalAveragePooling2D(), (10,), "expects input of rank 4"),
    (lambda: GlobalMaxPooling2D(), (4, 4), "expects input of rank 4"),
    (lambda: ZeroPadding2D(), (4, 4), "expects input of rank 4"),
    (lambda: UpSampling2D(), (4,), "expects input of rank 4"),
    (lambda: Reshape((5, -1)), (3, 4), "cannot reshape input of shape (None, 3, 4) (12 values"),
    (lambda: Reshape((5,)), (3, 4), "to target_shape (5,)"),
    (lambda: Rescaling([1.0, 2.0, 3.0]), (4, 4, 2), "scale of shape (3,) does not broadcast"),
])
def test_bad_input_shapes_are_refused_clearly(make, shape, words):
    with pytest.raises(ValueError) as info:
        make().build(shape)
    assert words in str(info.value)


def test_batchnorm_axis_that_names_the_last_axis_is_accepted():
    assert built(BatchNormalization(axis=3), (4, 4, 2)).out_shape == (4, 4, 2)


@pytest.mark.parametrize("layer", [BatchNormalization, AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D,
                                   ZeroPadding2D, lambda: Reshape((-1,)), lambda: Rescaling(2.0), UpSampling2D])
def test_backward_before_a_training_forward_says_so(layer):
    layer = built(layer(), (4, 4, 2))
    layer(np.ones((1, 4, 4, 2), np.float32))                       # inference keeps nothing
    with pytest.raises(RuntimeError, match="backward\\(\\) called before forward"):
        layer.backward(np.ones((1,) + layer.out_shape, np.float32))


def test_batchnorm_refuses_an_empty_training_batch():
    with pytest.raises(ValueError, match="at least one sample"):
        BatchNormalization()(np.zeros((0, 3), np.float32), training=True)


# ----------------------------------------------------------------------------------------
# In a model: summary, freezing, both backends
# ----------------------------------------------------------------------------------------
def course_model():
    return Sequential([
        Input((8, 8, 3)), Rescaling(1 / 4.0, offset=-0.5), ZeroPadding2D(1), Conv2D(4, 3, activation="relu"),
        BatchNormalization(), AveragePooling2D(2, padding="same"), UpSampling2D(2), MaxPooling2D(),
        Reshape((4, 4, 4)), GlobalMaxPooling2D(keepdims=True), Flatten(), Dense(6),
        BatchNormalization(), Dense(3, activation="softmax")])


def summary_lines(model):
    lines = []
    model.summary(print_fn=lines.append)
    return lines


def test_summary_shows_output_shapes_and_keras_param_counts():
    lines = summary_lines(course_model())
    shapes = [line[29:54].strip() for line in lines[4:-4]]
    params = [int(line[54:].strip()) for line in lines[4:-4]]
    assert shapes == ["(None, 8, 8, 3)", "(None, 10, 10, 3)", "(None, 8, 8, 4)", "(None, 8, 8, 4)",
                      "(None, 4, 4, 4)", "(None, 8, 8, 4)", "(None, 4, 4, 4)", "(None, 4, 4, 4)",
                      "(None, 1, 1, 4)", "(None, 4)", "(None, 6)", "(None, 6)", "(None, 3)"]
    assert params == [0, 0, 112, 16, 0, 0, 0, 0, 0, 0, 30, 24, 21]
    assert lines[-3:] == ["Total params: 203", "Trainable params: 183", "Non-trainable params: 20"]
    assert "batch_normalization (BatchN" in lines[7] and "global_max_pooling2d (Globa" in lines[12]


def compiled(model, lr=0.05):
    model.compile(tinycnn.optimizers.SGD(learning_rate=lr), "categorical_crossentropy", metrics=["accuracy"])
    return model


def data(n=16, seed=0):
    r = np.random.default_rng(seed)
    return r.uniform(0, 4, (n, 8, 8, 3)).astype(np.float32), to_categorical(r.integers(0, 3, n), 3)


def test_frozen_layers_keep_their_weights_in_fit():
    model = compiled(course_model())
    dense, bn = model.layers[-3], model.layers[-2]
    dense.trainable = bn.trainable = False
    assert summary_lines(model)[-3:] == ["Total params: 203", "Trainable params: 141", "Non-trainable params: 62"]
    bn.set_weights([[1.5] * 6, [0.5] * 6, [0.2] * 6, [2.0] * 6])
    frozen = [w.copy() for w in dense.get_weights() + bn.get_weights()]
    conv_bn_before = model.layers[3].get_weights()
    model.fit(*data(), batch_size=8, epochs=2, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(dense.get_weights() + bn.get_weights(), frozen))
    after = model.layers[3].get_weights()
    # the other BN (not frozen): gamma and beta trained, the moving statistics updated
    assert len(after) == 4 and all(not np.array_equal(a, b) for a, b in zip(after, conv_bn_before))
    dense.trainable = bn.trainable = True
    model.fit(*data(), batch_size=8, epochs=1, verbose=0)
    assert all(not np.array_equal(a, b) for a, b in zip(dense.get_weights() + bn.get_weights(), frozen))


def test_model_trainable_freezes_every_layer():
    model = compiled(course_model())
    assert model.trainable is True
    n_weights = len(model.weights)
    assert [id(w) for w in model.weights] == [id(p) for layer in model.layers for p in layer.params.values()]
    assert len(model.trainable_weights) == n_weights - 4 and len(model.non_trainable_weights) == 4
    model.trainable = False
    assert model.trainable is False and not any(layer.trainable for layer in model.layers)
    assert model.trainable_weights == [] and len(model.non_trainable_weights) == n_weights
    before = model.get_weights()
    model.fit(*data(), batch_size=8, epochs=1, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), before))
    assert summary_lines(model)[-2:] == ["Trainable params: 0", "Non-trainable params: 203"]
    model.trainable = True
    assert all(layer.trainable for layer in model.layers) and len(model.trainable_weights) == n_weights - 4


def numba_available():
    try:
        import tinycnn.kernels.numba_ops  # noqa: F401
    except Exception:
        return False
    return True


@pytest.mark.skipif(not numba_available(), reason="the numba backend is not importable here")
def test_same_loss_and_gradients_on_both_backends():
    model = compiled(Sequential([
        Input((8, 8, 3)), Rescaling(0.5), ZeroPadding2D(1), Conv2D(4, 3, activation="relu"), BatchNormalization(),
        MaxPooling2D(), Dropout(0.2, seed=3), AveragePooling2D(2, strides=1, padding="same"), UpSampling2D(2),
        Conv2D(3, 3, activation="relu"), GlobalAveragePooling2D(), Reshape((3,)), Dense(5, activation="relu"),
        BatchNormalization(), Dense(3, activation="softmax")]))
    x, y = data(12, 4)
    start = model.get_weights()
    results = {}
    for name in ("numpy", "numba"):
        model.set_weights(start)
        for layer in model.layers:
            if isinstance(layer, Dropout):
                layer.generator = np.random.default_rng(layer.seed)     # the same mask on both
        with tinycnn.backend.using(name):
            plan = model._ready_plan(x)
            out = plan.forward(x, training=True)
            loss = model.loss(y, out)
            plan.backward(model._loss_gradient(y, out))
            grads = {(layer.name, k): g.copy() for layer in model.layers for k, g in layer.grads.items()}
            results[name] = (loss, grads, model.get_weights())
    (loss_a, grads_a, w_a), (loss_b, grads_b, w_b) = results["numpy"], results["numba"]
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) == 12
    for key in grads_a:
        scale = max(np.abs(grads_a[key]).max(), 1e-6)
        np.testing.assert_allclose(grads_b[key], grads_a[key], atol=1e-4 * scale, rtol=1e-4, err_msg=str(key))
    for a, b in zip(w_a, w_b):                                   # the moving statistics moved the same way
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_moving_statistics_are_saved_and_loaded_with_the_weights(tmp_path):
    model = compiled(course_model())
    model.fit(*data(), batch_size=8, epochs=1, verbose=0)
    model.save_weights(tmp_path / "course.weights.npz")
    again = course_model()
    again.load_weights(tmp_path / "course.weights.npz")
    x, _ = data(4, 9)
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))
    assert again.layers[3].get_weights()[3].tolist() == model.layers[3].get_weights()[3].tolist() != [1] * 4
