"""The other convolutions: Conv2DTranspose, DepthwiseConv2D, SeparableConv2D, Conv1D, MaxPooling1D.

For each: a float64 numerical gradient check over strides and paddings, parity with PyTorch
(forward and every gradient; NCHW <-> NHWC and kernel layouts mapped), parity with Keras on its
own weights where Keras is installed, output shapes by hand, the config round trip, clear errors,
and training in a Sequential on both backends.
"""
import json
import os

import numpy as np
import pytest

import tinycnn
from tinycnn.gradcheck import check_layer
from tinycnn.layers import (Conv1D, Conv2DTranspose, Dense, DepthwiseConv2D, Flatten, Input, MaxPooling1D,
                            SeparableConv2D)
from tinycnn.models import Sequential
from tinycnn.utils import to_categorical

TOL = 1e-6


def random(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def distinct(shape, seed=0):
    """No ties and no near-ties (max pooling's switch must not flip under finite differences)."""
    values = np.random.default_rng(seed).permutation(int(np.prod(shape))).reshape(shape).astype(np.float64)
    return (values - values.size / 2 + 0.5) / values.size * 4


def built(layer, shape, seed=1):
    """A layer built for `shape` with random (not glorot/zero) weights, so every bias matters."""
    layer.build(shape)
    r = np.random.default_rng(seed)
    layer.set_weights([r.standard_normal(w.shape) for w in layer.get_weights()])
    return layer


# ----------------------------------------------------------------------------------------
# Gradient checks (float64)
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("make, shape", [
    (lambda: Conv2DTranspose(3, 3), (2, 3, 4, 2)),
    (lambda: Conv2DTranspose(3, 3, strides=2, padding="same"), (2, 3, 4, 2)),
    (lambda: Conv2DTranspose(2, (2, 3), strides=(3, 2), output_padding=(2, 1), activation="tanh"), (2, 3, 3, 2)),
    (lambda: Conv2DTranspose(2, 4, strides=3, padding="same", use_bias=False), (1, 3, 2, 3)),
    (lambda: Conv2DTranspose(2, 1, strides=2), (2, 2, 3, 2)),             # stride > kernel: gaps of bias only
    (lambda: DepthwiseConv2D(3), (2, 5, 5, 3)),
    (lambda: DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2), (2, 5, 6, 3)),
    (lambda: DepthwiseConv2D((2, 3), strides=(1, 2), depth_multiplier=3, activation="gelu"), (2, 4, 5, 2)),
    (lambda: SeparableConv2D(4, 3), (2, 5, 5, 3)),
    (lambda: SeparableConv2D(3, 3, strides=2, padding="same", depth_multiplier=2, activation="elu"), (2, 5, 6, 2)),
    (lambda: SeparableConv2D(2, (3, 2), use_bias=False), (2, 4, 4, 3)),
    (lambda: Conv1D(3, 3), (2, 7, 2)),
    (lambda: Conv1D(3, 4, strides=2, padding="same"), (2, 7, 2)),
    (lambda: Conv1D(3, 3, strides=2, padding="causal", activation="tanh"), (2, 8, 2)),
    (lambda: Conv1D(2, 5, padding="causal", use_bias=False), (2, 6, 3)),
])
def test_gradients(make, shape):
    layer = built(make(), shape[1:])
    errors = check_layer(layer, random(shape, 2))
    assert set(errors) == {"x"} | set(layer.params)
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("make, shape", [
    (lambda: MaxPooling1D(), (2, 8, 3)),
    (lambda: MaxPooling1D(3, strides=1), (2, 7, 2)),
    (lambda: MaxPooling1D(3, strides=2, padding="same"), (2, 8, 2)),
    (lambda: MaxPooling1D(2, padding="same"), (2, 7, 3)),
])
def test_max_pooling1d_gradients(make, shape):
    errors = check_layer(make(), distinct(shape))
    assert set(errors) == {"x"} and errors["x"] < TOL, errors


# ----------------------------------------------------------------------------------------
# Parity with PyTorch: forward and every gradient
# ----------------------------------------------------------------------------------------
def torch_mod():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


def leaf(a, torch):
    return torch.tensor(np.ascontiguousarray(a), requires_grad=True)


def nchw(a):
    return a.transpose(0, 3, 1, 2) if a.ndim == 4 else a.transpose(0, 2, 1)      # NHWC / NLC -> NCHW / NCL


def nchw_back(a):
    return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a.transpose(0, 2, 1)      # NCHW / NCL -> NHWC / NLC


def close(ours, theirs, rtol=1e-4, atol=1e-4):
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol)


def run_both(layer, shape, torch_fn, seed=3):
    """Our forward and backward against torch's autograd on the same x, dout and weights.

    torch_fn(t_x, t_weights) -> the NCHW (or NCL) output; t_weights are our arrays, in our layouts.
    """
    torch = torch_mod()
    layer = built(layer, shape[1:], seed)
    x = random(shape, seed + 1, np.float32)
    out = layer(x, training=True)
    dout = random(out.shape, seed + 2, np.float32)
    dx = layer.backward(dout)
    tx = leaf(nchw(x), torch)
    tw = {k: leaf(w, torch) for k, w in layer.params.items()}
    t_out = torch_fn(tx, tw)
    (t_out * torch.tensor(np.ascontiguousarray(nchw(dout)))).sum().backward()
    close(out, nchw_back(t_out.detach().numpy()))
    close(dx, nchw_back(tx.grad.numpy()))
    for key, g in layer.grads.items():
        close(g, tw[key].grad.numpy(), atol=1e-3)


def tf_same(size, k, s):
    """TensorFlow's "same" padding (before, after) along one axis: the odd one after."""
    total = max((-(-size // s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


@pytest.mark.parametrize("kwargs, size", [
    (dict(kernel_size=3), (4, 5)), (dict(kernel_size=3, strides=2, padding="same"), (4, 5)),
    (dict(kernel_size=(2, 3), strides=(3, 2), output_padding=(2, 1)), (3, 4)),
    (dict(kernel_size=4, strides=3, padding="same"), (3, 4)),
    (dict(kernel_size=3, strides=2, padding="same", output_padding=1), (3, 4)),
    (dict(kernel_size=2, strides=3), (3, 3)),
])
def test_conv2d_transpose_matches_torch(kwargs, size):
    F = torch_mod().nn.functional
    layer = Conv2DTranspose(3, **kwargs)
    (KH, KW), (SH, SW) = layer.kernel_size, layer.strides

    def theirs(tx, tw):
        # Keras's kernel (KH, KW, F, C) is torch's (C, F, KH, KW); torch gives the full (H-1)*s + k output
        full = F.conv_transpose2d(tx, tw["kernel"].permute(3, 2, 0, 1), stride=(SH, SW))
        (OH, OW, _), (fh, fw) = layer.out_shape, full.shape[2:]
        top = max((size[0] - 1) * SH + KH - OH, 0) // 2 if layer.padding == "same" else 0   # TF's "same" crop
        left = max((size[1] - 1) * SW + KW - OW, 0) // 2 if layer.padding == "same" else 0
        cropped = F.pad(full, (-left, OW - fw + left, -top, OH - fh + top))      # crop, or extend with zeros
        return cropped + tw["bias"].view(1, -1, 1, 1)                            # the bias everywhere, as TF
    run_both(layer, (2,) + size + (2,), theirs)


@pytest.mark.parametrize("kwargs, size", [
    (dict(kernel_size=3), (5, 5)), (dict(kernel_size=3, strides=2, padding="same", depth_multiplier=2), (5, 6)),
    (dict(kernel_size=(2, 3), strides=(2, 1), padding="same", depth_multiplier=3), (4, 5)),
])
@pytest.mark.parametrize("separable", [False, True])
def test_depthwise_and_separable_match_torch_grouped_convolutions(kwargs, size, separable):
    F = torch_mod().nn.functional
    C = 3
    layer = SeparableConv2D(4, **kwargs) if separable else DepthwiseConv2D(**kwargs)
    (KH, KW), strides, M = layer.kernel_size, layer.strides, layer.depth_multiplier

    def theirs(tx, tw):
        if layer.padding == "same":
            (top, bottom), (left, right) = tf_same(size[0], KH, strides[0]), tf_same(size[1], KW, strides[1])
            tx = F.pad(tx, (left, right, top, bottom))
        dw = tw["depthwise_kernel" if separable else "kernel"]                    # (KH, KW, C, M)
        # torch's groups=C: output channel c*M + m uses weight[c*M + m, 0] = W[:, :, c, m], Keras's order
        d = F.conv2d(tx, dw.permute(2, 3, 0, 1).reshape(C * M, 1, KH, KW), stride=strides, groups=C)
        if not separable:
            return d + tw["bias"].view(1, -1, 1, 1)
        return F.conv2d(d, tw["pointwise_kernel"].permute(3, 2, 0, 1), tw["bias"])   # (1, 1, C*M, F) -> (F, C*M, 1, 1)
    run_both(layer, (2,) + size + (C,), theirs)


@pytest.mark.parametrize("kwargs", [dict(kernel_size=3), dict(kernel_size=4, strides=2, padding="same"),
                                    dict(kernel_size=3, padding="causal"), dict(kernel_size=4, strides=3,
                                                                                padding="causal")])
def test_conv1d_matches_torch(kwargs):
    F = torch_mod().nn.functional
    L, layer = 8, Conv1D(3, **kwargs)
    k, s = layer.kernel_size, layer.strides

    def theirs(tx, tw):
        pads = {"valid": (0, 0), "same": tf_same(L, k, s), "causal": (k - 1, 0)}[layer.padding]   # causal: left only
        return F.conv1d(F.pad(tx, pads), tw["kernel"].permute(2, 1, 0), tw["bias"], stride=s)   # (K, C, F) -> (F, C, K)
    run_both(layer, (2, L, 2), theirs)


@pytest.mark.parametrize("pool, strides, padding", [(2, None, "valid"), (3, 1, "valid"), (3, 2, "same"),
                                                    (2, None, "same")])
def test_max_pooling1d_matches_torch(pool, strides, padding):
    torch = torch_mod()
    layer, L = MaxPooling1D(pool, strides, padding), 7
    x = distinct((2, L, 3)).astype(np.float32)
    out = layer(x, training=True)
    dout = random(out.shape, 1, np.float32)
    tx = leaf(nchw(x), torch)
    pads = tf_same(L, pool, layer.strides) if padding == "same" else (0, 0)
    t_out = torch.nn.functional.max_pool1d(torch.nn.functional.pad(tx, pads, value=-np.inf), pool, layer.strides)
    (t_out * torch.tensor(np.ascontiguousarray(nchw(dout)))).sum().backward()
    close(out, nchw_back(t_out.detach().numpy()), rtol=0, atol=0)
    close(layer.backward(dout), nchw_back(tx.grad.numpy()), rtol=0, atol=0)


# ----------------------------------------------------------------------------------------
# Parity with Keras: its output shapes and values, on the same weights; its configs accepted
# ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return pytest.importorskip("keras")


@pytest.mark.parametrize("cls, kwargs, shape", [
    (Conv2DTranspose, dict(filters=3, kernel_size=3, strides=2, padding="same", output_padding=1), (4, 5, 2)),
    (Conv2DTranspose, dict(filters=3, kernel_size=(2, 3), strides=(3, 2), activation="relu"), (4, 5, 2)),
    (DepthwiseConv2D, dict(kernel_size=3, strides=2, padding="same", depth_multiplier=2), (5, 6, 3)),
    (SeparableConv2D, dict(filters=4, kernel_size=3, strides=(1, 2), padding="same", depth_multiplier=2), (5, 6, 3)),
    (Conv1D, dict(filters=4, kernel_size=3, strides=2, padding="causal"), (7, 3)),
    (MaxPooling1D, dict(pool_size=3, strides=2, padding="same"), (8, 3)),
])
def test_keras_gives_the_same_shapes_values_and_configs(keras, cls, kwargs, shape):
    ours = built(cls(**kwargs), shape)
    theirs = getattr(keras.layers, cls.__name__)(**kwargs)
    theirs.build((None,) + shape)
    assert [w.shape for w in ours.get_weights()] == [tuple(w.shape) for w in theirs.get_weights()]
    assert [w.path.split("/")[-1] for w in theirs.weights] == list(ours.params)      # names and order
    theirs.set_weights(ours.get_weights())
    x = random((2,) + shape, 4, np.float32)
    np.testing.assert_allclose(ours(x), np.asarray(theirs(x)), rtol=1e-5, atol=1e-5)
    config = theirs.get_config()                         # every key Keras writes is accepted
    assert set(ours.get_config()) == set(config)
    again = cls.from_config(config)
    assert again.get_config() == {**ours.get_config(), "name": config["name"]}


# ----------------------------------------------------------------------------------------
# Output shapes and weights, by hand
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("layer, in_shape, out_shape", [
    (Conv2DTranspose(4, 3), (5, 6, 2), (7, 8, 4)),                                  # (H-1)*s + k
    (Conv2DTranspose(4, 3, strides=2), (5, 6, 2), (11, 13, 4)),
    (Conv2DTranspose(4, 2, strides=3), (5, 6, 2), (15, 18, 4)),                     # (H-1)*s + max(k, s)
    (Conv2DTranspose(4, 3, strides=2, padding="same"), (5, 6, 2), (10, 12, 4)),     # H*s
    (Conv2DTranspose(4, 3, strides=2, output_padding=1), (5, 6, 2), (12, 14, 4)),   # (H-1)*s + k + p
    (Conv2DTranspose(4, 3, strides=2, padding="same", output_padding=0), (5, 6, 2), (9, 11, 4)),  # + k%2 + p
    (DepthwiseConv2D(3, depth_multiplier=2), (5, 6, 3), (3, 4, 6)),
    (DepthwiseConv2D(3, strides=2, padding="same"), (5, 6, 3), (3, 3, 3)),
    (SeparableConv2D(7, 3, padding="same"), (5, 6, 3), (5, 6, 7)),
    (Conv1D(4, 3), (10, 2), (8, 4)),
    (Conv1D(4, 3, strides=2, padding="same"), (10, 2), (5, 4)),
    (Conv1D(4, 3, strides=3, padding="causal"), (10, 2), (4, 4)),                   # floor((L-1)/s) + 1
    (MaxPooling1D(), (9, 2), (4, 2)),
    (MaxPooling1D(padding="same"), (9, 2), (5, 2)),
    (MaxPooling1D(3, strides=1), (9, 2), (7, 2)),
])
def test_output_shapes(layer, in_shape, out_shape):
    layer.build(in_shape)
    assert layer.out_shape == out_shape
    assert layer(np.zeros((2,) + in_shape, np.float32)).shape == (2,) + out_shape


def test_weights_in_keras_layouts_and_order():
    shapes = {
        Conv2DTranspose(5, (2, 3)): {"kernel": (2, 3, 5, 4), "bias": (5,)},               # (KH, KW, filters, C)
        DepthwiseConv2D((2, 3), depth_multiplier=2): {"kernel": (2, 3, 4, 2), "bias": (8,)},
        SeparableConv2D(5, 3, depth_multiplier=2): {"depthwise_kernel": (3, 3, 4, 2),
                                                    "pointwise_kernel": (1, 1, 8, 5), "bias": (5,)},
        Conv1D(5, 3): {"kernel": (3, 4, 5), "bias": (5,)},
        Conv1D(5, 3, use_bias=False): {"kernel": (3, 4, 5)},
        MaxPooling1D(): {},
    }
    for layer, expected in shapes.items():
        layer.build((6, 4) if isinstance(layer, (Conv1D, MaxPooling1D)) else (6, 6, 4))
        assert {k: w.shape for k, w in layer.params.items()} == expected, layer
        assert list(layer.params) == list(expected) and list(layer.grads) == list(expected)
        assert all(w.dtype == np.float32 for w in layer.get_weights())
        assert not any(np.any(w) for k, w in layer.params.items() if k == "bias")   # zeros by default


def test_depthwise_output_channel_c_times_m_plus_m_uses_only_channel_c():
    layer = DepthwiseConv2D(1, depth_multiplier=2, use_bias=False)
    layer.build((1, 1, 2))
    layer.set_weights([np.array([[[[1.0, 10.0], [100.0, 1000.0]]]])])              # (1, 1, C=2, M=2)
    assert layer(np.array([[[[2.0, 3.0]]]], np.float32))[0, 0, 0].tolist() == [2.0, 20.0, 300.0, 3000.0]


def test_causal_conv1d_never_sees_the_future():
    layer = built(Conv1D(2, 3, padding="causal"), (6, 1))
    x = random((1, 6, 1), 5, np.float32)
    later = x.copy()
    later[:, 4:] += 100.0                                      # change steps 4 and 5 only
    np.testing.assert_array_equal(layer(x)[:, :4], layer(later)[:, :4])
    assert not np.allclose(layer(x)[:, 4:], layer(later)[:, 4:])


def test_conv2d_transpose_is_the_input_gradient_of_conv2d():
    """<conv2d(y), x> == <y, conv2d_transpose(x)>: the two maps are each other's adjoint."""
    from tinycnn.layers import Conv2D
    ct = built(Conv2DTranspose(3, 3, strides=2, padding="same", use_bias=False), (4, 5, 2))
    conv = Conv2D(2, 3, strides=2, padding="same", use_bias=False)
    conv.build(ct.out_shape)
    conv.set_weights(ct.get_weights())                                # the same (KH, KW, 3, 2) array
    x, y = random((2, 4, 5, 2), 1), random((2,) + ct.out_shape, 2)
    assert np.sum(conv(y) * x) == pytest.approx(np.sum(y * ct(x)), rel=1e-5)


# ----------------------------------------------------------------------------------------
# Config round trip
# ----------------------------------------------------------------------------------------
KERAS_KEYS = {
    Conv2DTranspose: "filters kernel_size strides padding output_padding data_format dilation_rate activation use_bias "
                     "kernel_initializer bias_initializer kernel_regularizer bias_regularizer activity_regularizer "
                     "kernel_constraint bias_constraint",
    DepthwiseConv2D: "depth_multiplier kernel_size strides padding data_format dilation_rate activation use_bias "
                     "depthwise_initializer bias_initializer depthwise_regularizer bias_regularizer "
                     "activity_regularizer depthwise_constraint bias_constraint",
    SeparableConv2D: "depth_multiplier filters kernel_size strides padding data_format dilation_rate activation "
                     "use_bias depthwise_initializer pointwise_initializer bias_initializer depthwise_regularizer "
                     "pointwise_regularizer bias_regularizer activity_regularizer depthwise_constraint "
                     "pointwise_constraint bias_constraint",
    Conv1D: "filters kernel_size strides padding data_format dilation_rate groups activation use_bias "
            "kernel_initializer bias_initializer kernel_regularizer bias_regularizer activity_regularizer "
            "kernel_constraint bias_constraint",
    MaxPooling1D: "pool_size padding strides data_format",
}


@pytest.mark.parametrize("layer", [
    lambda: Conv2DTranspose(3, (2, 3), strides=2, padding="same", output_padding=(1, 0), activation="relu",
                            kernel_initializer="he_normal", kernel_regularizer=tinycnn.regularizers.L2(0.01),
                            name="up", trainable=False),
    lambda: Conv2DTranspose(3, 3),
    lambda: DepthwiseConv2D(3, depth_multiplier=2, depthwise_regularizer="l2", bias_initializer="ones"),
    lambda: SeparableConv2D(4, 3, use_bias=False, pointwise_initializer="lecun_normal", pointwise_regularizer="l1",
                            activation="gelu"),
    lambda: Conv1D(4, 5, strides=2, padding="causal", bias_regularizer="l2", kernel_initializer="glorot_normal"),
    lambda: MaxPooling1D(3, padding="same"),
])
def test_config_round_trip(layer):
    layer = layer()
    config = layer.get_config()
    assert set(config) == {"name", "trainable", "dtype"} | set(KERAS_KEYS[type(layer)].split())
    json.dumps(config)                                                  # plain JSON
    again = type(layer).from_config(config)
    assert again.get_config() == config
    assert again.regularizers.keys() == layer.regularizers.keys()


def test_config_values_are_keras_s():
    assert Conv1D(4, 5).get_config()["kernel_size"] == (5,)
    assert Conv1D(4, 5).get_config()["activation"] == "linear"
    assert MaxPooling1D().get_config()["strides"] == (2,)
    assert Conv2DTranspose(2, 3).get_config()["output_padding"] is None
    assert Conv2DTranspose(2, 3, output_padding=1, strides=2).get_config()["output_padding"] == (1, 1)
    config = SeparableConv2D(2, 3, depthwise_regularizer=tinycnn.regularizers.L2(0.5)).get_config()
    assert config["depthwise_regularizer"]["class_name"] == "L2" and config["depthwise_regularizer"]["config"] == {
        "l2": 0.5}
    assert config["pointwise_initializer"]["class_name"] == "GlorotUniform"


def test_regularizers_go_to_the_weights_keras_names():
    assert list(DepthwiseConv2D(3, depthwise_regularizer="l2").regularizers) == ["kernel"]
    assert list(SeparableConv2D(2, 3, depthwise_regularizer="l2", pointwise_regularizer="l1",
                                bias_regularizer="l2").regularizers) == ["depthwise_kernel", "pointwise_kernel", "bias"]
    no_bias = Conv1D(2, 3, use_bias=False, bias_regularizer="l2")          # no bias: no penalty, but in the config
    assert no_bias.regularizers == {} and no_bias.get_config()["bias_regularizer"]["class_name"] == "L2"


# ----------------------------------------------------------------------------------------
# Clear errors
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("make, error, words", [
    (lambda: Conv2DTranspose(2, 3, dilation_rate=2), ValueError, "Conv2DTranspose 'conv2d_transpose"),
    (lambda: Conv2DTranspose(2, 3, dilation_rate=(1, 2)), ValueError, "dilation_rate other than 1 is not supported"),
    (lambda: Conv2DTranspose(2, 3, data_format="channels_first"), ValueError, "only data_format='channels_last'"),
    (lambda: Conv2DTranspose(2, 3, kernel_constraint="non_neg"), ValueError, "kernel_constraint is not supported"),
    (lambda: Conv2DTranspose(2, 3, activity_regularizer="l2"), ValueError, "activity_regularizer is not supported"),
    (lambda: Conv2DTranspose(2, 3, strides=2, output_padding=2), ValueError, "less than its stride"),
    (lambda: Conv2DTranspose(2, 3, output_padding=(0, 0, 0)), ValueError, "received (0, 0, 0)"),
    (lambda: Conv2DTranspose(2, 3, padding="causal"), ValueError, "padding must be 'valid' or 'same'"),
    (lambda: Conv2DTranspose(0, 3), ValueError, "filters must be a positive integer"),
    (lambda: DepthwiseConv2D(3, depth_multiplier=0), ValueError, "depth_multiplier must be a positive integer"),
    (lambda: DepthwiseConv2D(3, depthwise_constraint="non_neg"), ValueError, "depthwise_constraint is not supported"),
    (lambda: DepthwiseConv2D(3, depthwise_initializer="nope"), ValueError, "depthwise_initializer"),
    (lambda: DepthwiseConv2D(3, groups=2), TypeError, "unexpected keyword argument(s) groups"),
    (lambda: SeparableConv2D(2, 3, pointwise_constraint="non_neg"), ValueError, "pointwise_constraint is not"),
    (lambda: SeparableConv2D(2, 3, pointwise_regularizer="l3"), ValueError, "pointwise_regularizer"),
    (lambda: SeparableConv2D(2, 3, dtype="float16"), ValueError, "only dtype='float32'"),
    (lambda: Conv1D(2, 3, groups=2), ValueError, "groups other than 1 is not supported"),
    (lambda: Conv1D(2, 3, dilation_rate=(2,)), ValueError, "dilation_rate other than 1"),
    (lambda: Conv1D(2, (3, 3)), ValueError, "kernel_size must be an integer or a tuple of 1 integer"),
    (lambda: Conv1D(2, 3, padding="full"), ValueError, "padding must be 'valid', 'same' or 'causal'"),
    (lambda: Conv1D(2, 3, bias_constraint="non_neg"), ValueError, "bias_constraint is not supported"),
    (lambda: MaxPooling1D(padding="causal"), ValueError, "padding must be 'valid' or 'same'"),
    (lambda: MaxPooling1D(0), ValueError, "pool_size must be a positive integer"),
    (lambda: MaxPooling1D(data_format="channels_first"), ValueError, "MaxPooling1D 'max_pooling1d"),
])
def test_bad_arguments_are_refused_clearly(make, error, words):
    with pytest.raises(error) as info:
        make()
    assert words in str(info.value)


@pytest.mark.parametrize("make, shape, words", [
    (lambda: Conv2DTranspose(2, 3), (5, 5), "Conv2DTranspose 'conv2d_transpose' expects input of rank 4 (batch, "
                                            "height, width, channels); received shape (None, 5, 5)"),
    (lambda: Conv2DTranspose(2, 2, padding="same", output_padding=0), (4, 4, 1), "whose Conv2D would give back 3"),
    (lambda: DepthwiseConv2D(3), (5, 5), "expects input of rank 4"),
    (lambda: DepthwiseConv2D(4), (3, 3, 1), "window 4x4 is larger than"),
    (lambda: SeparableConv2D(2, 3), (5, 5, 5, 1), "received shape (None, 5, 5, 5, 1)"),
    (lambda: Conv1D(2, 3), (5, 5, 1), "Conv1D 'conv1d' expects input of rank 3 (batch, steps, channels); "
                                      "received shape (None, 5, 5, 1)"),
    (lambda: Conv1D(2, 6), (5, 1), "kernel_size=6 is longer than its valid-padded input of 5 steps"),
    (lambda: MaxPooling1D(), (5,), "expects input of rank 3"),
    (lambda: MaxPooling1D(4), (3, 2), "pool_size=4 is longer than"),
])
def test_bad_input_shapes_are_refused_clearly(make, shape, words):
    with pytest.raises(ValueError) as info:
        make().build(shape)
    assert words in str(info.value)


def test_a_call_on_the_wrong_shape_after_building_names_both_shapes():
    layer = Conv1D(2, 3)
    layer(np.zeros((1, 6, 2), np.float32))
    with pytest.raises(ValueError, match=r"expects input of shape \(None, 6, 2\); received \(1, 6, 3\)"):
        layer(np.zeros((1, 6, 3), np.float32))


@pytest.mark.parametrize("layer", [lambda: Conv2DTranspose(2, 3), lambda: DepthwiseConv2D(3),
                                   lambda: SeparableConv2D(2, 3), lambda: Conv1D(2, 3), MaxPooling1D])
def test_backward_before_a_training_forward_says_so(layer):
    layer = layer()
    x = np.ones((1, 6, 2) if isinstance(layer, (Conv1D, MaxPooling1D)) else (1, 6, 6, 2), np.float32)
    out = layer(x)                                                     # inference keeps nothing
    with pytest.raises(RuntimeError, match="backward\\(\\) called before forward"):
        layer.backward(np.ones_like(out))


# ----------------------------------------------------------------------------------------
# In a Sequential, on both backends
# ----------------------------------------------------------------------------------------
def numba_available():
    try:
        import tinycnn.kernels.numba_ops  # noqa: F401
    except Exception:
        return False
    return True


def image_model():
    return Sequential([Input((6, 6, 2)), DepthwiseConv2D(3, depth_multiplier=2, activation="relu"),
                       Conv2DTranspose(3, 3, strides=2, padding="same", kernel_regularizer="l2"),
                       SeparableConv2D(4, 3, strides=2, activation="relu", depthwise_regularizer="l2"),
                       Flatten(), Dense(3, activation="softmax")])


def sequence_model():
    return Sequential([Input((12, 2)), Conv1D(4, 3, padding="causal", activation="relu"), MaxPooling1D(),
                       Conv1D(3, 3, strides=2, padding="same", kernel_regularizer="l2"),
                       MaxPooling1D(2, strides=1, padding="same"), Flatten(), Dense(3, activation="softmax")])


@pytest.mark.parametrize("make, x_shape", [(image_model, (16, 6, 6, 2)), (sequence_model, (16, 12, 2))])
def test_they_train_in_a_sequential_with_the_same_results_on_both_backends(make, x_shape):
    r = np.random.default_rng(0)
    x, y = r.standard_normal(x_shape).astype(np.float32), to_categorical(r.integers(0, 3, x_shape[0]), 3)
    model = make()
    model.compile(tinycnn.optimizers.SGD(learning_rate=0.1), "categorical_crossentropy")
    start = model.get_weights()
    results = {}
    for name in ("numpy", "numba") if numba_available() else ("numpy",):
        model.set_weights(start)
        with tinycnn.backend.using(name):
            losses = [float(model.train_on_batch(x[i:i + 8], y[i:i + 8])) for i in (0, 8, 0, 8, 0, 8)]
            results[name] = losses, model.get_weights()
    losses, weights = results["numpy"]
    assert losses[-1] < losses[0] and all(np.isfinite(losses))         # it learns
    assert not any(np.array_equal(a, b) for a, b in zip(weights, start) if a.size)   # every weight moved
    if "numba" not in results:
        pytest.skip("numba is not importable here: the NumPy backend trained, the comparison is skipped")
    np.testing.assert_allclose(results["numba"][0], losses, rtol=1e-5)
    for a, b in zip(results["numba"][1], weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
