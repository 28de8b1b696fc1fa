"""The course's activations, initializers and regularizers, and Dense on inputs of any rank.

    * elu, gelu (exact erf), silu/swish, leaky_relu, softplus and the LeakyReLU layer: forward and
      gradient against PyTorch (float32 and float64), Keras's documented values, float64 gradient
      checks inside Dense, Conv2D and Activation, and the Numba fast plan against the reference;
    * Dense on (N, ..., in): gradient check, PyTorch parity, both backends;
    * initializers: Keras's fans and formulas, statistics of large draws, seeds, names, errors,
      and the default initialization unchanged bit for bit;
    * regularizers: values, gradients (numerical), configs, names, errors, and training's loss.
"""
import warnings

import numpy as np
import pytest

import tinycnn
from tinycnn import initializers, regularizers
from tinycnn.gradcheck import check_layer, numerical_gradient, rel_error
from tinycnn.layers import Activation, Conv2D, Dense, Flatten, LeakyReLU
from tinycnn.layers.activations import get_activation
from tinycnn.plans import ReferencePlan
from tinycnn.utils import rng

try:
    from tinycnn.kernels.numba_ops import threads
    from tinycnn.kernels.numba_ops.plan import FastPlan
except Exception:                         # numba missing or broken (CI's second environment)
    FastPlan = None

NEW = ["elu", "gelu", "silu", "swish", "leaky_relu", "softplus"]
TOL = 1e-6                      # float64 gradient checks


def random(shape, seed, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def run(activation, z):
    """(a, dz) for dL/da = da: forward, then backward with what a layer keeps for this activation."""
    a = activation.forward(z)
    da = random(z.shape, 1, z.dtype)
    return a, da, activation.backward(da, z if activation.needs_z else a)


# ----------------------------------------------------------------------------------------
# Activations
# ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def torch_fns():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    return torch, {"elu": F.elu, "gelu": F.gelu, "silu": F.silu, "swish": F.silu,
                   "leaky_relu": lambda t: F.leaky_relu(t, 0.2), "softplus": F.softplus}


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_matches_torch(torch_fns, name, dtype):
    """Values and gradients: float32 to round-off over [-30, 30]; float64 to 1e-12 where torch is exact.

    (torch's softplus returns z itself above z = 20, dropping e^-z; tinycnn keeps it, so float64
    compares on [-20, 20].)"""
    torch, fns = torch_fns
    edge = 30 if dtype == np.float32 else 20
    z = np.concatenate([np.linspace(-edge, edge, 1201), random(800, 0, np.float64) * 3]).astype(dtype)
    a, da, dz = run(get_activation(name), z)
    assert a.dtype == dz.dtype == dtype
    zt = torch.tensor(z, requires_grad=True)
    at = fns[name](zt)
    at.backward(torch.tensor(da))
    tol = dict(rtol=2e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a, at.detach().numpy(), **tol)
    np.testing.assert_allclose(dz, zt.grad.numpy(), **tol)


def test_keras_documented_values():
    """Keras 3's docs: gelu (exact) on [-3, -1, 0, 1, 3]; LeakyReLU(negative_slope=0.5); leaky_relu's 0.2.

    Keras prints gelu(-3) = -0.00404951: TensorFlow's float32 1 + erf(-3 / sqrt 2) cancels; the exact
    value is -3 * Phi(-3) = -0.0040496940, which tinycnn gives (within Keras's round-off of 1 + erf)."""
    gelu = get_activation("gelu").forward(np.array([-3.0, -1.0, 0.0, 1.0, 3.0], np.float32))
    np.testing.assert_allclose(gelu, [-0.00404951, -0.15865529, 0.0, 0.8413447, 2.9959507], rtol=1e-6, atol=3e-7)
    assert gelu[0] == np.float32(-3 * 0.0013498980316301)
    x = np.array([[-10, -5, 0.0, 5, 10]], np.float32)
    np.testing.assert_array_equal(LeakyReLU(negative_slope=0.5)(x), [[-5, -2.5, 0, 5, 10]])
    np.testing.assert_allclose(LeakyReLU()(x), [[-3, -1.5, 0, 5, 10]])                 # the layer: 0.3
    np.testing.assert_allclose(Activation("leaky_relu")(x), [[-2, -1, 0, 5, 10]])      # the function: 0.2
    assert get_activation("swish").name == get_activation("SiLU").name == "silu"


def test_gelu_and_silu_are_accurate_in_the_tails():
    """Against tables of the normal cdf: Phi from erfc keeps the left tail; sigmoid from e^-|z| keeps both."""
    z = np.array([-12.0, -8.0, -5.0, 5.0])
    phi = np.array([1.7764821120777e-33, 6.2209605742718e-16, 2.8665157187919e-07, 1 - 2.8665157187919e-07])
    np.testing.assert_allclose(get_activation("gelu").forward(z), z * phi, rtol=1e-12)
    silu = get_activation("silu").forward(np.array([-100.0, 100.0]))
    np.testing.assert_allclose(silu, [-100 * np.exp(-100), 100.0], rtol=1e-12)


@pytest.mark.parametrize("name", NEW)
def test_gradients_inside_dense_conv2d_and_activation(name):
    x = random((3, 5, 5, 2), 3, np.float64) * 1.5          # no z within 1e-4 of leaky_relu's kink at 0
    errors = check_layer(Conv2D(3, 3, padding="same", activation=name), x, seed=3)
    assert max(errors.values()) < TOL, errors
    errors = check_layer(Dense(4, activation=name), x.reshape(3, -1)[:, :7], seed=4)
    assert max(errors.values()) < TOL, errors
    assert check_layer(Activation(name), x, seed=5)["x"] < TOL


def test_leaky_relu_layer(torch_fns):
    torch, _ = torch_fns
    x = random((4, 3, 3, 2), 6)
    layer = LeakyReLU(negative_slope=0.1)
    out = layer(x, training=True)
    dout = random(out.shape, 7)
    xt = torch.tensor(x, requires_grad=True)
    outt = torch.nn.functional.leaky_relu(xt, 0.1)
    outt.backward(torch.tensor(dout))
    np.testing.assert_array_equal(out, outt.detach().numpy())
    np.testing.assert_array_equal(layer.backward(dout), xt.grad.numpy())
    assert check_layer(LeakyReLU(), x.astype(np.float64), seed=8)["x"] < TOL
    np.testing.assert_array_equal(LeakyReLU(negative_slope=0)(x), np.maximum(x, 0))
    tinycnn.backend.clear_session()
    assert LeakyReLU().name == "leaky_re_lu" and LeakyReLU().negative_slope == 0.3       # Keras's name and default
    with pytest.warns(UserWarning, match="alpha.*deprecated.*negative_slope"):
        assert LeakyReLU(alpha=0.2).negative_slope == 0.2


@pytest.mark.parametrize("make, error, fragments", [
    (lambda: LeakyReLU(negative_slope=-0.1), ValueError, ["LeakyReLU 'leaky_re_lu'", "negative_slope", ">= 0", "-0.1"]),
    (lambda: LeakyReLU(negative_slope=None), TypeError, ["negative_slope must be a number", "None"]),
    (lambda: LeakyReLU(negative_slope="0.2"), TypeError, ["negative_slope", "'0.2'"]),
    (lambda: LeakyReLU(negative_slope=float("nan")), ValueError, ["finite", "nan"]),
    (lambda: Dense(3, activation="gelu_tanh"), ValueError, ["Dense 'dense'", "unknown activation 'gelu_tanh'", "'gelu'"]),
    (lambda: Conv2D(3, 3, activation="prelu"), ValueError, ["Conv2D 'conv2d'", "unknown activation", "'leaky_relu'"]),
])
def test_activation_errors(make, error, fragments):
    with pytest.raises(error) as info:
        make()
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


# ----------------------------------------------------------------------------------------
# Dense on any rank
# ----------------------------------------------------------------------------------------
def test_dense_on_rank_3_and_4_inputs(torch_fns):
    torch, _ = torch_fns
    layer = Dense(4, activation="tanh")
    x = random((2, 3, 5), 9)
    out = layer(x, training=True)
    assert layer.out_shape == (3, 4) and out.shape == (2, 3, 4) and layer.params["kernel"].shape == (5, 4)
    dout = random(out.shape, 10)
    dx = layer.backward(dout)
    kernel, bias = layer.get_weights()
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, kernel, bias))
    outt = torch.tanh(xt @ wt + bt)
    outt.backward(torch.tensor(dout))
    for ours, theirs in ((out, outt), (dx, xt.grad), (layer.grads["kernel"], wt.grad), (layer.grads["bias"], bt.grad)):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-5, atol=1e-5)
    errors = check_layer(Dense(3, activation="gelu"), random((2, 2, 3, 4), 11, np.float64), seed=12)
    assert max(errors.values()) < TOL, errors
    head = Dense(2, name="head")
    head(x)
    with pytest.raises(ValueError, match=r"Dense 'head' expects input of shape \(None, 3, 5\); received \(2, 3, 6\)"):
        head(random((2, 3, 6), 0))


# ----------------------------------------------------------------------------------------
# The fast plan: the new activations and rank > 2 Dense run correctly on the Numba backend
# ----------------------------------------------------------------------------------------
def one_step(plan, layers, x, dout):
    out = np.array(plan.forward(x, training=True))
    dx = plan.backward(dout)
    grads = {(layer.name, k): np.array(g) for layer in layers for k, g in layer.grads.items()}
    return out, None if dx is None else np.array(dx), grads, np.array(plan.forward(x, training=False))


@pytest.mark.skipif(FastPlan is None, reason="the numba backend is not importable here")
@pytest.mark.parametrize("n_threads", ["1", "2"])
def test_fast_plan_matches_reference(n_threads, monkeypatch):
    monkeypatch.setenv("TINYCNN_THREADS", n_threads)
    monkeypatch.setattr(threads, "MIN_FLOPS_PER_SLICE", 0)           # cut even this small batch into slices
    tinycnn.set_backend("numba")
    model = tinycnn.Sequential([
        Conv2D(3, 3, activation="gelu", input_shape=(7, 7, 2)), Conv2D(4, 3, activation="leaky_relu"),
        Activation("swish"), LeakyReLU(), Dense(5, activation="elu"), Flatten(),
        Dense(6, activation="softplus"), Dense(5, activation="silu"), Dense(4, activation="leaky_relu"),
        Dense(3, activation="relu")])
    x = random((5, 7, 7, 2), 13)
    dout = random((5, 3), 14)
    with tinycnn.backend.using("numpy"):
        ref = one_step(ReferencePlan(model.layers), model.layers, x, dout)
    plan = FastPlan(model.layers)
    kinds = [type(step).__name__ for step in plan.steps]
    assert kinds == ["LayerStep", "LayerStep", "LayerStep", "ActivationStep", "LayerStep", "ReshapeStep",
                     "DenseStep", "LayerStep", "DenseStep", "DenseStep"]
    fast = one_step(plan, model.layers, x, dout)
    for name, a, b in (("out", fast[0], ref[0]), ("dx", fast[1], ref[1]), ("inference", fast[3], ref[3])):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * (np.abs(b).max() + 1), err_msg=name)
    assert fast[2].keys() == ref[2].keys()
    for key in ref[2]:
        np.testing.assert_allclose(fast[2][key], ref[2][key], rtol=0, atol=1e-5 * (np.abs(ref[2][key]).max() + 1),
                                   err_msg=str(key))


def test_a_model_with_the_new_pieces_trains(backend):
    """fit on either backend: GELU convolutions, a LeakyReLU layer, a rank-4 Dense, He init, L2."""
    model = tinycnn.Sequential([
        Conv2D(4, 3, activation="gelu", kernel_initializer="he_normal", kernel_regularizer="l2",
               input_shape=(6, 6, 1)),
        LeakyReLU(), Dense(3, activation="swish"), Flatten(), Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    r = np.random.default_rng(15)
    x = r.standard_normal((32, 6, 6, 1)).astype(np.float32)
    y = tinycnn.to_categorical((x.mean(axis=(1, 2, 3)) > 0).astype(int), 2)
    history = model.fit(x, y, epochs=8, batch_size=8, verbose=0).history["loss"]
    assert np.all(np.isfinite(history)) and history[-1] < history[0]


# ----------------------------------------------------------------------------------------
# Initializers
# ----------------------------------------------------------------------------------------
def test_fans_are_keras():
    assert initializers.compute_fans((3, 3, 16, 32)) == (3 * 3 * 16, 3 * 3 * 32)    # receptive field * channels
    assert initializers.compute_fans((20, 7)) == (20, 7)
    assert initializers.compute_fans((7,)) == (7, 7)
    assert initializers.compute_fans(()) == (1, 1)
    assert initializers.compute_fans((2, 3, 4, 5, 6)) == (2 * 3 * 4 * 5, 2 * 3 * 4 * 6)


SHAPE = (5, 5, 40, 100)                           # fans 1000 and 2500: 100,000 values
FAN_IN, FAN_OUT = 1000, 2500


@pytest.mark.parametrize("name, limit", [
    ("glorot_uniform", np.sqrt(6 / (FAN_IN + FAN_OUT))), ("he_uniform", np.sqrt(6 / FAN_IN)),
    ("lecun_uniform", np.sqrt(3 / FAN_IN))])
def test_uniform_statistics(name, limit):
    w = initializers.get(name)(SHAPE)
    assert w.dtype == np.float32 and w.shape == SHAPE
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.999 * limit
    assert abs(w.mean()) < 0.01 * limit and abs(w.std() - limit / np.sqrt(3)) < 0.01 * limit


@pytest.mark.parametrize("name, std", [
    ("glorot_normal", np.sqrt(2 / (FAN_IN + FAN_OUT))), ("he_normal", np.sqrt(2 / FAN_IN)),
    ("lecun_normal", np.sqrt(1 / FAN_IN))])
def test_truncated_normal_statistics(name, std):
    """After truncation at 2 s the std is sqrt(scale / n): s = sqrt(scale / n) / 0.8796..."""
    w = initializers.get(name)(SHAPE)
    s = std / 0.87962566103423978
    assert np.abs(w).max() <= 2 * s and np.abs(w).max() > 1.99 * s
    assert abs(w.mean()) < 0.01 * std and abs(w.std() - std) < 0.01 * std


def test_random_and_constant_initializers():
    w = initializers.RandomNormal()((400, 250))
    assert abs(w.mean()) < 0.001 and abs(w.std() - 0.05) < 0.001 and np.abs(w).max() > 0.1   # not truncated
    w = initializers.RandomNormal(mean=1.0, stddev=2.0)((400, 250))
    assert abs(w.mean() - 1) < 0.02 and abs(w.std() - 2) < 0.02
    w = initializers.TruncatedNormal(stddev=0.1)((400, 250))
    assert np.abs(w).max() <= 0.2 and abs(w.std() - 0.1 * 0.87962566103423978) < 0.002
    w = initializers.RandomUniform()((400, 250))
    assert w.min() >= -0.05 and w.max() < 0.05 and w.max() > 0.0499 and abs(w.mean()) < 0.001
    w = initializers.RandomUniform(minval=2, maxval=3)((1000,))
    assert w.min() >= 2 and w.max() < 3
    w = initializers.VarianceScaling(scale=3.0, mode="fan_out", distribution="untruncated_normal")((200, 300))
    assert abs(w.std() - np.sqrt(3 / 300)) < 0.002
    np.testing.assert_array_equal(initializers.Zeros()((2, 3)), np.zeros((2, 3), np.float32))
    np.testing.assert_array_equal(initializers.Ones()((4,)), np.ones(4, np.float32))
    np.testing.assert_array_equal(initializers.Constant(2.5)((2, 2)), np.full((2, 2), 2.5, np.float32))
    assert initializers.GlorotUniform()((3, 4), dtype="float64").dtype == np.float64


def test_seeds():
    """An integer seed: the same values at every call. No seed: tinycnn's generator, reset by set_random_seed."""
    a, b = initializers.HeNormal(seed=3), initializers.HeNormal(seed=3)
    np.testing.assert_array_equal(a((30, 20)), a((30, 20)))
    np.testing.assert_array_equal(a((30, 20)), b((30, 20)))
    assert not np.array_equal(a((30, 20)), initializers.HeNormal(seed=4)((30, 20)))
    unseeded = initializers.GlorotNormal()
    tinycnn.set_random_seed(7)
    first = unseeded((30, 20)), Dense(5, kernel_initializer="lecun_uniform")(np.ones((1, 3)))
    second_call = unseeded((30, 20))
    assert not np.array_equal(first[0], second_call)
    tinycnn.set_random_seed(7)
    again = unseeded((30, 20)), Dense(5, kernel_initializer="lecun_uniform")(np.ones((1, 3)))
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])


def test_default_initialization_is_unchanged():
    """glorot_uniform kernels and zero biases, drawn exactly as before initializers existed."""
    tinycnn.set_random_seed(0)
    conv, dense = Conv2D(8, (3, 5)), Dense(7)
    conv.build((10, 12, 3))
    dense.build((20,))
    tinycnn.set_random_seed(0)
    expected_conv = rng().uniform(-np.sqrt(6.0 / (45 + 120)), np.sqrt(6.0 / (45 + 120)), (3, 5, 3, 8))
    expected_dense = rng().uniform(-np.sqrt(6.0 / 27), np.sqrt(6.0 / 27), (20, 7))
    np.testing.assert_array_equal(conv.params["kernel"], expected_conv.astype(np.float32))
    np.testing.assert_array_equal(dense.params["kernel"], expected_dense.astype(np.float32))
    assert not conv.params["bias"].any() and not dense.params["bias"].any()
    assert isinstance(conv.kernel_initializer, initializers.GlorotUniform)


def test_layers_take_names_objects_and_functions():
    layer = Conv2D(6, 3, kernel_initializer=initializers.HeUniform(seed=1), bias_initializer=initializers.Constant(0.1))
    layer.build((8, 8, 4))
    np.testing.assert_array_equal(layer.params["kernel"], initializers.HeUniform(seed=1)((3, 3, 4, 6)))
    assert np.all(layer.params["bias"] == np.float32(0.1))
    assert np.abs(layer.params["kernel"]).max() <= np.sqrt(6 / 36)
    dense = Dense(3, kernel_initializer="Ones", bias_initializer=lambda shape, dtype=None: np.arange(3.0))
    dense.build((2,))
    assert dense.params["kernel"].tolist() == [[1, 1, 1], [1, 1, 1]] and dense.params["bias"].tolist() == [0, 1, 2]
    assert dense.params["bias"].dtype == np.float32
    for name in ("GlorotUniform", "glorot_uniform", "he_normal", "lecun_normal", "random_normal", "uniform",
                 "normal", "zero", "one", "constant", "truncated_normal", "variance_scaling"):
        assert isinstance(initializers.get(name), initializers.Initializer), name
    config = initializers.get({"class_name": "VarianceScaling", "config": {"scale": 2.0, "mode": "fan_out"}})
    assert (config.scale, config.mode, config.distribution) == (2.0, "fan_out", "truncated_normal")
    assert initializers.get(None) is None and isinstance(initializers.get(initializers.Zeros), initializers.Zeros)
    assert initializers.HeNormal(seed=2).get_config() == {"seed": 2}


@pytest.mark.parametrize("make, error, fragments", [
    (lambda: Dense(3, kernel_initializer="xavier"), ValueError,
     ["Dense 'dense'", "kernel_initializer", "'xavier'", "'glorot_uniform'"]),
    (lambda: Conv2D(3, 3, bias_initializer=None), ValueError, ["Conv2D 'conv2d'", "bias_initializer", "None"]),
    (lambda: Dense(3, kernel_initializer=3), ValueError, ["kernel_initializer", "3"]),
    (lambda: initializers.VarianceScaling(mode="fan_sum"), ValueError, ["mode", "'fan_sum'", "'fan_avg'"]),
    (lambda: initializers.VarianceScaling(distribution="cauchy"), ValueError, ["distribution", "'cauchy'"]),
    (lambda: initializers.VarianceScaling(scale=0), ValueError, ["scale", "positive", "0"]),
    (lambda: initializers.HeNormal(seed="a"), ValueError, ["seed", "integer", "'a'"]),
    (lambda: initializers.Constant([1, 2]), TypeError, ["Constant", "value", "number", "[1, 2]"]),
    (lambda: initializers.RandomUniform(maxval="1"), TypeError, ["maxval", "'1'"]),
    (lambda: initializers.get({"class_name": "Nope"}), ValueError, ["Could not interpret", "Nope"]),
    (lambda: initializers.Zeros()((2, -1)), ValueError, ["shape", "(2, -1)"]),
    (lambda: Dense(3, kernel_initializer=lambda shape, dtype=None: np.zeros(2)).build((4,)), ValueError,
     ["returned an array of shape (2,)", "expected", "(4, 3)"]),
])
def test_initializer_errors(make, error, fragments):
    with pytest.raises(error) as info:
        make()
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


# ----------------------------------------------------------------------------------------
# Regularizers
# ----------------------------------------------------------------------------------------
def test_regularizer_values_and_defaults():
    w = np.array([[1.0, -2.0], [0.5, 0.0]], np.float32)
    assert regularizers.L1()(w) == pytest.approx(0.01 * 3.5)
    assert regularizers.L2()(w) == pytest.approx(0.01 * 5.25)                # l2 * sum w^2: no 1/2
    assert regularizers.L1L2()(w) == 0.0                                      # Keras 3: l1 = l2 = 0 by default
    assert regularizers.L1L2(l1=0.1, l2=0.2)(w) == pytest.approx(0.1 * 3.5 + 0.2 * 5.25)
    assert isinstance(regularizers.L2(0.1)(w), float)
    assert regularizers.L2(2.0)(np.ones((5, 5))) == 50.0                      # Keras's docstring example
    assert regularizers.l1 is regularizers.L1 and regularizers.l2 is regularizers.L2
    assert regularizers.l1_l2 is regularizers.L1L2
    assert regularizers.L1(None).l1 == 0.01 and regularizers.L1L2(l1=None).l1 == 0.0
    np.testing.assert_array_equal(regularizers.L1(0.5).gradient(w), 0.5 * np.sign(w))    # 0 at w = 0
    assert regularizers.L2().gradient(w).dtype == np.float32


@pytest.mark.parametrize("penalty", [regularizers.L1(0.3), regularizers.L2(0.7), regularizers.L1L2(0.2, 0.4)])
def test_regularizer_gradients_are_the_penalties_slopes(penalty):
    w = random((4, 5), 16, np.float64)
    w[np.abs(w) < 1e-3] = 0.5                                                 # |w|'s kink stays out of reach
    assert rel_error(penalty.gradient(w), numerical_gradient(lambda: penalty(w), w)) < 1e-7


def test_regularizer_configs_and_names():
    for penalty in (regularizers.L1(0.3), regularizers.L2(0.7), regularizers.L1L2(0.2, 0.4)):
        again = type(penalty).from_config(penalty.get_config())
        assert type(again) is type(penalty) and again.get_config() == penalty.get_config()
    assert regularizers.L1L2(0.2, 0.4).get_config() == {"l1": 0.2, "l2": 0.4}
    assert regularizers.L2(0.7).get_config() == {"l2": 0.7}
    assert [type(regularizers.get(n)).__name__ for n in ("l1", "L1", "l2", "L2", "l1l2", "L1L2")] == \
        ["L1", "L1", "L2", "L2", "L1L2", "L1L2"]
    assert regularizers.get({"class_name": "L2", "config": {"l2": 0.3}}).l2 == 0.3
    assert regularizers.get(None) is None and isinstance(regularizers.get(regularizers.L1), regularizers.L1)
    penalty = regularizers.L2(0.1)
    assert regularizers.get(penalty) is penalty


def test_layers_keep_their_regularizers():
    dense = Dense(3, kernel_regularizer="l2", bias_regularizer=regularizers.L1(0.2))
    assert set(dense.regularizers) == {"kernel", "bias"} and dense.regularizers["kernel"].l2 == 0.01
    conv = Conv2D(2, 3, use_bias=False, kernel_regularizer=regularizers.L1L2(0.1, 0.1), bias_regularizer="l1")
    assert set(conv.regularizers) == {"kernel"}                               # no bias, no bias penalty
    assert Dense(3).regularizers == {}


@pytest.mark.parametrize("make, error, fragments", [
    (lambda: Dense(3, kernel_regularizer="l3"), ValueError, ["Dense 'dense'", "kernel_regularizer", "'l3'", "'l2'"]),
    (lambda: Dense(3, bias_regularizer="l1_l2"), ValueError, ["bias_regularizer", "'l1_l2'", "L1L2(l1=..., l2=...)"]),
    (lambda: Conv2D(3, 3, kernel_regularizer=lambda w: 0.0), TypeError, ["Conv2D 'conv2d'", "gradient"]),
    (lambda: regularizers.L2(-0.1), ValueError, ["L2", "l2", "non-negative", "-0.1"]),
    (lambda: regularizers.L1(float("inf")), ValueError, ["l1", "inf"]),
    (lambda: regularizers.L1L2(l2="0.1"), TypeError, ["L1L2", "l2", "'0.1'"]),
])
def test_regularizer_errors(make, error, fragments):
    with pytest.raises(error) as info:
        make()
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_training_adds_the_penalty_to_the_loss_and_its_gradient():
    """One SGD step by hand: loss = mse + l2 * sum w^2, w -= lr * (dmse/dw + 2 l2 w)."""
    x = np.array([[1.0, 2.0], [0.5, -1.0]], np.float32)
    y = np.array([[1.0], [0.0]], np.float32)
    model = tinycnn.Sequential([Dense(1, use_bias=False, kernel_initializer=initializers.Constant(0.5),
                                      kernel_regularizer=regularizers.L2(0.1), input_shape=(2,))])
    model.compile(optimizer=tinycnn.optimizers.SGD(learning_rate=0.1), loss="mse")
    w = np.full((2, 1), 0.5)
    mse, grad = np.mean((x @ w - y) ** 2), 2 * x.T @ (x @ w - y) / len(x)
    assert model.evaluate(x, y, verbose=0) == pytest.approx(mse + 0.1 * 0.5, rel=1e-6)
    loss = model.train_on_batch(x, y)
    assert loss == pytest.approx(mse + 0.1 * np.sum(w ** 2), rel=1e-6)
    np.testing.assert_allclose(model.get_weights()[0], w - 0.1 * (grad + 2 * 0.1 * w), rtol=1e-6)
