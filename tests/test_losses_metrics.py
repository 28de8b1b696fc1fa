"""Losses and metrics: values and float64 gradients against PyTorch and Keras 3, and the model's use of them."""
import os
import warnings

import numpy as np
import pytest

from tinycnn import losses, metrics
from tinycnn.gradcheck import numerical_gradient, rel_error, to_float64
from tinycnn.layers import Dense
from tinycnn.models import Sequential
from tinycnn.plans import ReferencePlan

TOL = 1e-7
N, K = 6, 4


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return pytest.importorskip("keras")


@pytest.fixture(scope="module")
def tf(keras):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("gradients of Keras's losses are taken with TensorFlow")
    return pytest.importorskip("tensorflow")


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def data(kind, seed=0):
    """(y_true, y_pred) of N samples for one kind of loss."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, K, N)
    onehot = np.eye(K)[labels]
    z = 2 * rng.standard_normal((N, K))
    return {
        "probs": (onehot, softmax(z)),
        "unnormalised": (onehot, rng.uniform(0.05, 2.0, (N, K))),       # rows do not sum to 1
        "soft": (rng.uniform(0, 1, (N, K)), rng.uniform(0.05, 2.0, (N, K))),   # soft targets, not summing to 1
        "logits": (onehot, z),
        "sparse probs": (labels, softmax(z)),
        "sparse unnormalised": (labels, rng.uniform(0.05, 0.9, (N, K))),   # see test_..._keras_backends
        "sparse logits": (labels, z),
        "binary": (rng.integers(0, 2, (N, K)).astype(float), 1 / (1 + np.exp(-z))),
        "binary logits": (rng.integers(0, 2, (N, K)).astype(float), z),
        "regression": (rng.standard_normal((N, K)), rng.standard_normal((N, K))),
    }[kind]


# (id, tinycnn loss, the same loss in Keras, data kind)
CASES = [
    ("cce", lambda: losses.CategoricalCrossentropy(), lambda k: k.losses.CategoricalCrossentropy, "probs"),
    ("cce unnormalised", lambda: losses.CategoricalCrossentropy(),
     lambda k: k.losses.CategoricalCrossentropy, "unnormalised"),
    ("cce soft targets", lambda: losses.CategoricalCrossentropy(),
     lambda k: k.losses.CategoricalCrossentropy, "soft"),
    ("cce smoothing", lambda: losses.CategoricalCrossentropy(label_smoothing=0.2),
     lambda k: lambda **kw: k.losses.CategoricalCrossentropy(label_smoothing=0.2, **kw), "unnormalised"),
    ("cce logits", lambda: losses.CategoricalCrossentropy(from_logits=True),
     lambda k: lambda **kw: k.losses.CategoricalCrossentropy(from_logits=True, **kw), "logits"),
    ("cce logits smoothing", lambda: losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
     lambda k: lambda **kw: k.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1, **kw),
     "logits"),
    ("scce", lambda: losses.SparseCategoricalCrossentropy(),
     lambda k: k.losses.SparseCategoricalCrossentropy, "sparse probs"),
    ("scce unnormalised", lambda: losses.SparseCategoricalCrossentropy(),
     lambda k: k.losses.SparseCategoricalCrossentropy, "sparse unnormalised"),
    ("scce logits", lambda: losses.SparseCategoricalCrossentropy(from_logits=True),
     lambda k: lambda **kw: k.losses.SparseCategoricalCrossentropy(from_logits=True, **kw), "sparse logits"),
    ("bce", lambda: losses.BinaryCrossentropy(), lambda k: k.losses.BinaryCrossentropy, "binary"),
    ("bce smoothing", lambda: losses.BinaryCrossentropy(label_smoothing=0.2),
     lambda k: lambda **kw: k.losses.BinaryCrossentropy(label_smoothing=0.2, **kw), "binary"),
    ("bce logits", lambda: losses.BinaryCrossentropy(from_logits=True),
     lambda k: lambda **kw: k.losses.BinaryCrossentropy(from_logits=True, **kw), "binary logits"),
    ("bce logits smoothing", lambda: losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1),
     lambda k: lambda **kw: k.losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1, **kw),
     "binary logits"),
    ("mse", lambda: losses.MeanSquaredError(), lambda k: k.losses.MeanSquaredError, "regression"),
    ("mae", lambda: losses.MeanAbsoluteError(), lambda k: k.losses.MeanAbsoluteError, "regression"),
    ("huber", lambda: losses.Huber(delta=0.5),
     lambda k: lambda **kw: k.losses.Huber(delta=0.5, **kw), "regression"),    # both sides of delta
]
IDS = [c[0] for c in CASES]
WEIGHTS = [None, np.array([0.5, 2.0, 0.0, 1.0, 1.5, 0.25])]


@pytest.mark.parametrize("weights", WEIGHTS, ids=["unweighted", "weighted"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_loss_gradient_is_the_slope_of_the_loss(case, weights):
    _, make, _, kind = case
    loss = make()
    y, p = data(kind)
    numeric = numerical_gradient(lambda: loss(y, p, sample_weight=weights), p)
    assert rel_error(loss.gradient(y, p, sample_weight=weights), numeric) < 1e-6


@pytest.mark.parametrize("weights", WEIGHTS, ids=["unweighted", "weighted"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_loss_value_and_gradient_match_keras(case, weights, keras, tf):
    """Keras's own loss (float64, TensorFlow's gradient tape) gives the same number and dL/dy_pred."""
    _, make, keras_loss, kind = case
    y, p = data(kind)
    ours = make()
    pred = tf.Variable(p)
    with tf.GradientTape() as tape:
        value = keras_loss(keras)(dtype="float64")(y, pred, sample_weight=weights)
    assert ours(y, p, sample_weight=weights) == pytest.approx(float(value), rel=1e-10, abs=1e-12)
    assert rel_error(ours.gradient(y, p, sample_weight=weights), tape.gradient(value, pred).numpy()) < 1e-9


def torch_loss(case_id, F, y, p, ls):
    """The same per-sample losses written with torch.nn.functional (autograd gives the gradient)."""
    torch = pytest.importorskip("torch")
    if case_id.startswith("cce") or case_id.startswith("scce"):
        target = torch.tensor(y) if case_id.startswith("cce") else torch.tensor(y, dtype=torch.long)
        logits = p if "logits" in case_id else torch.log(p / p.sum(-1, keepdim=True))
        if "soft" in case_id:          # torch's probability targets must sum to 1: scale back after
            total = target.sum(-1)
            return F.cross_entropy(logits, target / total[:, None], reduction="none") * total
        return F.cross_entropy(logits, target, label_smoothing=ls, reduction="none")
    if case_id.startswith("bce"):
        target = torch.tensor(y) * (1 - ls) + 0.5 * ls
        if "logits" in case_id:
            return F.binary_cross_entropy_with_logits(p, target, reduction="none").mean(-1)
        return F.binary_cross_entropy(p, target, reduction="none").mean(-1)
    target = torch.tensor(y)
    if case_id == "mse":
        return F.mse_loss(p, target, reduction="none").mean(-1)
    if case_id == "mae":
        return F.l1_loss(p, target, reduction="none").mean(-1)
    return F.huber_loss(p, target, delta=0.5, reduction="none").mean(-1)


@pytest.mark.parametrize("weights", WEIGHTS, ids=["unweighted", "weighted"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_loss_value_and_gradient_match_torch(case, weights):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    case_id, make, _, kind = case
    ours = make()
    y, p = data(kind)
    pred = torch.tensor(p, requires_grad=True)
    per_sample = torch_loss(case_id, F, y, pred, getattr(ours, "label_smoothing", 0.0))
    w = torch.ones(N, dtype=torch.float64) if weights is None else torch.tensor(weights)
    value = (per_sample * w).sum() / N          # Keras's sum_over_batch_size
    value.backward()
    np.testing.assert_allclose(ours.call(y, p), per_sample.detach().numpy(), rtol=1e-10)
    assert ours(y, p, sample_weight=weights) == pytest.approx(value.item(), rel=1e-10)
    assert rel_error(ours.gradient(y, p, sample_weight=weights), pred.grad.numpy()) < 1e-9


def test_categorical_crossentropy_rescales_rows_then_clips_as_keras(keras, tf):
    """A probability below 1e-7 is clipped (no gradient through it); the rescaling still passes one."""
    y = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    p = np.array([[0.5, 1e-12, 0.7], [2.0, 0.0, 1.0]])
    ours = losses.CategoricalCrossentropy()
    pred = tf.Variable(p)
    with tf.GradientTape() as tape:
        value = keras.losses.CategoricalCrossentropy(dtype="float64")(y, pred)
    assert ours(y, p) == pytest.approx(float(value), rel=1e-12)
    assert ours.call(y, p)[0] == pytest.approx(-np.log(1e-7))
    assert rel_error(ours.gradient(y, p), tape.gradient(value, pred).numpy()) < 1e-9


def test_cross_entropies_match_keras_backends_on_outputs_that_are_not_probabilities(keras):
    """Keras's NumPy, JAX and PyTorch backends rescale rows, then clip; tinycnn does the same.

    (Keras's TensorFlow backend clips first for the sparse loss: the same numbers unless an
    output is above 1 - 1e-7 or below 1e-7, so the comparisons with TF use outputs in (0, 1).)
    """
    torch = pytest.importorskip("torch")
    from keras.src.backend.torch import nn as keras_torch     # Keras's own code, run on torch tensors
    y, p = data("unnormalised")                 # entries up to 2: clipping before rescaling would differ
    labels = y.argmax(axis=-1)
    np.testing.assert_allclose(losses.categorical_crossentropy(y, p), keras_torch.categorical_crossentropy(
        torch.tensor(y), torch.tensor(p)).numpy(), rtol=1e-12)
    np.testing.assert_allclose(losses.sparse_categorical_crossentropy(labels, p),
                               keras_torch.sparse_categorical_crossentropy(
                                   torch.tensor(labels), torch.tensor(p)).numpy(), rtol=1e-12)
    yb, pb = data("binary")
    np.testing.assert_allclose(losses.binary_crossentropy(yb, pb), keras_torch.binary_crossentropy(
        torch.tensor(yb), torch.tensor(pb)).numpy().mean(axis=-1), rtol=1e-12)


def test_loss_functions_return_per_sample_losses_as_keras(keras):
    y, p = data("unnormalised")
    labels, sp = data("sparse probs")
    yb, pb = data("binary")
    yr, pr = data("regression")
    pairs = [
        (losses.categorical_crossentropy(y, p), keras.losses.categorical_crossentropy(y, p)),
        (losses.categorical_crossentropy(y, p, label_smoothing=0.3),
         keras.losses.categorical_crossentropy(y, p, label_smoothing=0.3)),
        (losses.categorical_crossentropy(y, 3 * p, from_logits=True),
         keras.losses.categorical_crossentropy(y, 3 * p, from_logits=True)),
        (losses.sparse_categorical_crossentropy(labels, sp), keras.losses.sparse_categorical_crossentropy(labels, sp)),
        (losses.sparse_categorical_crossentropy(labels[:, None], sp, from_logits=True),
         keras.losses.sparse_categorical_crossentropy(labels[:, None], sp, from_logits=True)),
        (losses.binary_crossentropy(yb, pb, label_smoothing=0.1),
         keras.losses.binary_crossentropy(yb, pb, label_smoothing=0.1)),
        (losses.binary_crossentropy(yb, pb, from_logits=True),
         keras.losses.binary_crossentropy(yb, pb, from_logits=True)),
        (losses.mean_squared_error(yr, pr), keras.losses.mean_squared_error(yr, pr)),
        (losses.mse(yr, pr), keras.losses.mean_squared_error(yr, pr)),
        (losses.mean_absolute_error(yr, pr), keras.losses.mean_absolute_error(yr, pr)),
        (losses.mae(yr[:, 0], pr[:, :1]), keras.losses.mean_absolute_error(yr[:, 0], pr[:, :1])),
        (losses.huber(yr, pr, delta=0.7), keras.losses.huber(yr, pr, delta=0.7)),
    ]
    for ours, theirs in pairs:
        assert ours.shape == tuple(theirs.shape)
        np.testing.assert_allclose(ours, np.asarray(theirs), rtol=1e-6, atol=1e-7)


def test_loss_functions_on_keras_docstring_examples():
    y, p = [[0, 1, 0], [0, 0, 1]], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]]
    np.testing.assert_allclose(losses.categorical_crossentropy(y, p), [0.0513, 2.303], atol=1e-3)
    np.testing.assert_allclose(losses.sparse_categorical_crossentropy([1, 2], p), [0.0513, 2.303], atol=1e-3)
    assert losses.categorical_crossentropy(y, p).dtype == np.float32      # lists are computed in float32
    np.testing.assert_allclose(losses.binary_crossentropy([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]]),
                               [0.916, 0.714], atol=1e-3)
    assert losses.huber([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]]).mean() == pytest.approx(0.155)
    assert losses.MeanSquaredError()([[0, 1], [0, 0]], [[1, 1], [1, 0]], sample_weight=[0.7, 0.3]) == \
        pytest.approx(0.25)                                       # Keras's docstring: (0.7*0.5 + 0.3*0.5) / 2


# -- the fused softmax + cross-entropy gradient ------------------------------------------
@pytest.mark.parametrize("loss, kind", [
    (losses.CategoricalCrossentropy(), "probs"),
    (losses.CategoricalCrossentropy(label_smoothing=0.2), "probs"),
    (losses.CategoricalCrossentropy(), "soft"),                 # targets that do not sum to 1
    (losses.SparseCategoricalCrossentropy(), "sparse probs"),
], ids=["cce", "cce smoothing", "cce soft targets", "scce"])
@pytest.mark.parametrize("weights", WEIGHTS, ids=["unweighted", "weighted"])
def test_fused_gradient_is_the_gradient_with_respect_to_the_logits(loss, kind, weights):
    y, _ = data(kind)
    z = np.random.default_rng(3).standard_normal((N, K))
    numeric = numerical_gradient(lambda: loss(y, softmax(z), sample_weight=weights), z)
    assert rel_error(loss.gradient_logits(y, softmax(z), sample_weight=weights), numeric) < 1e-6
    assert loss.fuses_with_softmax


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_fused_gradient_matches_keras_through_a_softmax(keras, tf, label_smoothing):
    """Keras (TensorFlow) takes the logits behind a softmax output: dL/dz is the same as ours."""
    y, _ = data("probs")
    w = WEIGHTS[1]
    z = tf.Variable(np.random.default_rng(4).standard_normal((N, K)))
    with tf.GradientTape() as tape:
        value = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing, dtype="float64")(
            y, keras.activations.softmax(z), sample_weight=w)
    ours = losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
    assert rel_error(ours.gradient_logits(y, softmax(z.numpy()), sample_weight=w),
                     tape.gradient(value, z).numpy()) < 1e-9


def test_fused_gradient_matches_keras_where_the_probabilities_saturate(keras, tf):
    """p_k ~ 1e-35 for the true class: Keras's gradient (from the logits) is p - y, not the clip's 0."""
    y = np.array([[0.0, 0.0, 1.0]])
    z = tf.Variable(np.array([[40.0, 0.0, -40.0]]))
    with tf.GradientTape() as tape:
        value = keras.losses.CategoricalCrossentropy(dtype="float64")(y, keras.activations.softmax(z))
    p = softmax(z.numpy())
    assert rel_error(losses.CategoricalCrossentropy().gradient_logits(y, p), tape.gradient(value, z).numpy()) < 1e-12
    assert float(value) == pytest.approx(80.0)                  # Keras's value, from the logits, is not clipped;
    assert losses.CategoricalCrossentropy()(y, p) == pytest.approx(-np.log(1e-7))   # tinycnn's, from p, is


def model_gradient_errors(model, x, y, weights):
    """Relative errors of every weight's gradient, backprop vs the numerical slope of the weighted loss."""
    plan = ReferencePlan(model.layers)
    for layer in model.layers:
        to_float64(layer)
    plan.backward(model._loss_gradient(y, plan.forward(x, training=True), sample_weight=weights))
    return {f"{layer.name}.{key}": rel_error(layer.grads[key], numerical_gradient(
        lambda: model.loss(y, plan.forward(x, training=True), sample_weight=weights), p))
        for layer in model.layers for key, p in layer.params.items()}


@pytest.mark.parametrize("activation, loss, kind, fused", [
    ("softmax", losses.CategoricalCrossentropy(label_smoothing=0.1), "probs", True),
    ("softmax", "sparse_categorical_crossentropy", "sparse probs", True),
    (None, losses.CategoricalCrossentropy(from_logits=True), "probs", False),
    (None, losses.SparseCategoricalCrossentropy(from_logits=True), "sparse probs", False),
    ("sigmoid", "binary_crossentropy", "binary", False),
    (None, losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1), "binary", False),
    (None, "huber", "regression", False),
    ("tanh", "mae", "regression", False),
])
@pytest.mark.parametrize("weights", WEIGHTS, ids=["unweighted", "weighted"])
def test_model_gradients_with_each_loss(activation, loss, kind, fused, weights):
    y, _ = data(kind)
    x = np.random.default_rng(5).standard_normal((N, 3))
    model = Sequential([Dense(K, activation=activation, input_shape=(3,))])
    model.compile("sgd", loss)
    assert model._softmax_into_crossentropy is fused
    y = model.loss.check_targets(y, model.output_shape)            # the targets as fit sees them
    errors = model_gradient_errors(model, x, y.astype(np.float64) if y.dtype.kind == "f" else y, weights)
    assert max(errors.values()) < 1e-6, errors


def test_from_logits_after_a_softmax_is_warned_about_and_not_fused():
    model = Sequential([Dense(3, activation="softmax", input_shape=(2,))])
    with pytest.warns(UserWarning, match="from_logits=True.*softmax"):
        model.compile("sgd", losses.CategoricalCrossentropy(from_logits=True))
    assert not model._softmax_into_crossentropy


@pytest.mark.parametrize("name, cls", [
    ("mse", losses.MeanSquaredError), ("MSE", losses.MeanSquaredError), ("mae", losses.MeanAbsoluteError),
    ("mean_absolute_error", losses.MeanAbsoluteError), ("huber", losses.Huber), ("Huber", losses.Huber),
    ("binary_crossentropy", losses.BinaryCrossentropy), ("bce", losses.BinaryCrossentropy),
    ("CategoricalCrossentropy", losses.CategoricalCrossentropy),
    ("sparse_categorical_crossentropy", losses.SparseCategoricalCrossentropy),
])
def test_compile_accepts_keras_loss_names(name, cls):
    model = Sequential([Dense(2, input_shape=(2,))])
    model.compile("sgd", name)
    assert type(model.loss) is cls


def test_losses_get_takes_classes_functions_and_configs():
    assert type(losses.get(losses.Huber)) is losses.Huber
    assert type(losses.get(losses.mse)) is losses.MeanSquaredError
    loss = losses.get({"class_name": "CategoricalCrossentropy", "config": {"from_logits": True}})
    assert loss.from_logits and not loss.fuses_with_softmax
    assert losses.Huber().name == "huber_loss" and losses.BinaryCrossentropy().name == "binary_crossentropy"


@pytest.mark.parametrize("make, error, fragment", [
    (lambda: losses.get("hinge"), ValueError, "unknown loss 'hinge'"),
    (lambda: losses.get(lambda y, p: 0), ValueError, "no gradient for backprop"),
    (lambda: losses.CategoricalCrossentropy(label_smoothing=1.5), ValueError,
     "label_smoothing must be a number in [0.0, 1.0]"),
    (lambda: losses.BinaryCrossentropy(from_logits="yes"), TypeError, "from_logits must be True or False"),
    (lambda: losses.Huber(delta=-1), ValueError, "huber_loss: delta"),
    (lambda: losses.MeanSquaredError(reduction="sum"), ValueError, "only reduction='sum_over_batch_size'"),
    (lambda: losses.SparseCategoricalCrossentropy(ignore_class=0), ValueError, "ignore_class is not supported"),
    (lambda: losses.MeanSquaredError()(np.ones((3, 2)), np.ones((3, 2)), sample_weight=np.ones(4)),
     ValueError, "one weight per sample, shape (3,); received shape (4,)"),
    (lambda: losses.categorical_crossentropy(np.ones((3, 2)), np.ones((3, 4))), ValueError,
     "same shape; received y_true of shape (3, 2) and y_pred of shape (3, 4)"),
    (lambda: losses.sparse_categorical_crossentropy([0, 5], np.ones((2, 3))), ValueError, "labels must lie in [0, 2]"),
    (lambda: losses.sparse_categorical_crossentropy([0.5, 1], np.ones((2, 3))), ValueError, "integer class labels"),
])
def test_loss_errors(make, error, fragment):
    with pytest.raises(error) as info:
        make()
    assert fragment in str(info.value)


def test_model_errors_for_losses():
    model = Sequential([Dense(2, input_shape=(2,))])
    with pytest.raises(ValueError, match="sequential.*compile: unknown loss 'crossentropy'"):
        model.compile("sgd", "crossentropy")
    model.compile("sgd", "binary_crossentropy")
    with pytest.raises(ValueError, match=r"binary_crossentropy expects targets of shape \(None, 2\)"):
        model.fit(np.ones((4, 2)), np.ones((4, 3)), verbose=0)


# -- metrics -------------------------------------------------------------------------------
def test_metrics_on_hand_computed_values():
    """Keras's docstring examples, weighted and not."""
    def value(metric, *args, **kwargs):
        metric.update_state(*args, **kwargs)
        return metric.result()

    assert value(metrics.Accuracy(), [[1, 2], [3, 4]], [[1, 2], [0, 4]]) == 0.75
    y, p = [[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]]
    assert value(metrics.CategoricalAccuracy(), y, p) == 0.5
    assert value(metrics.CategoricalAccuracy(), y, p, sample_weight=[0.7, 0.3]) == pytest.approx(0.3)
    assert value(metrics.SparseCategoricalAccuracy(), [[2], [1]], p) == 0.5
    assert value(metrics.SparseCategoricalAccuracy(), [2, 1], p, sample_weight=[0.7, 0.3]) == pytest.approx(0.3)
    assert value(metrics.BinaryAccuracy(), [[1], [1], [0], [0]], [[0.98], [1], [0], [0.6]]) == 0.75
    assert value(metrics.BinaryAccuracy(threshold=0.7), [[1], [1], [0], [0]], [[0.98], [1], [0], [0.6]]) == 1.0
    assert value(metrics.BinaryAccuracy(), [[1], [1], [0], [0]], [[0.98], [1], [0], [0.6]],
                 sample_weight=[1, 0, 0, 1]) == 0.5
    assert value(metrics.TopKCategoricalAccuracy(k=1), y, p) == 0.5
    assert value(metrics.TopKCategoricalAccuracy(k=2), y, p) == 1.0
    assert value(metrics.SparseTopKCategoricalAccuracy(k=1), [2, 1], p, sample_weight=[0.7, 0.3]) == pytest.approx(0.3)
    assert value(metrics.SparseTopKCategoricalAccuracy(k=1), [1], [[0.5, 0.5, 0.0]]) == 1.0      # a tie counts
    assert value(metrics.SparseTopKCategoricalAccuracy(k=1, from_sorted_ids=True), [2, 1], [[2, 0], [0, 1]]) == 0.5
    assert value(metrics.Precision(), [0, 1, 1, 1], [1, 0, 1, 1]) == pytest.approx(2 / 3)
    assert value(metrics.Precision(), [0, 1, 1, 1], [1, 0, 1, 1], sample_weight=[0, 0, 1, 0]) == 1.0
    assert value(metrics.Precision(top_k=1), [[1, 0, 0, 0]], [[1, 1, 1, 1]]) == 1.0             # ties: first kept
    assert value(metrics.Recall(), [0, 1, 1, 1], [1, 0, 1, 1]) == pytest.approx(2 / 3)
    assert value(metrics.Recall(), [0, 1, 1, 1], [1, 0, 1, 1], sample_weight=[0, 0, 1, 0]) == 1.0
    mean = metrics.Mean()
    assert mean.result() == 0.0                                 # nothing seen yet
    assert mean([1, 3, 5, 7]) == 4.0
    mean.reset_state()
    assert value(mean, [1, 3, 5, 7], sample_weight=[1, 1, 0, 0]) == 2.0
    assert value(mean, 5.0) == 3.0                              # a scalar is one more value: 9 / 3
    assert metrics.Precision(thresholds=[0.0, 0.5, 0.99])([0, 1, 1], [0.4, 0.6, 0.995]).tolist() == \
        pytest.approx([2 / 3, 1.0, 1.0])


def metric_pairs(keras):
    """(ours, Keras's) for each metric, and the kind of data it takes."""
    km = keras.metrics
    return [
        (metrics.Accuracy(), km.Accuracy(), "labels-equal"),
        (metrics.CategoricalAccuracy(), km.CategoricalAccuracy(), "probs"),
        (metrics.SparseCategoricalAccuracy(), km.SparseCategoricalAccuracy(), "sparse probs"),
        (metrics.BinaryAccuracy(threshold=0.4), km.BinaryAccuracy(threshold=0.4), "binary"),
        (metrics.TopKCategoricalAccuracy(k=2), km.TopKCategoricalAccuracy(k=2), "probs"),
        (metrics.SparseTopKCategoricalAccuracy(k=2), km.SparseTopKCategoricalAccuracy(k=2), "sparse probs"),
        (metrics.Precision(), km.Precision(), "binary"),
        (metrics.Recall(), km.Recall(), "binary"),
        (metrics.Precision(thresholds=[0.2, 0.5, 0.8]), km.Precision(thresholds=[0.2, 0.5, 0.8]), "binary"),
        (metrics.Recall(top_k=2), km.Recall(top_k=2), "binary"),
        (metrics.Precision(class_id=1), km.Precision(class_id=1), "binary"),
        (metrics.Recall(thresholds=0.3, class_id=2), km.Recall(thresholds=0.3, class_id=2), "binary"),
        (metrics.MeanSquaredError(), km.MeanSquaredError(), "regression"),
        (metrics.MeanAbsoluteError(), km.MeanAbsoluteError(), "regression"),
        (metrics.CategoricalCrossentropy(label_smoothing=0.1), km.CategoricalCrossentropy(label_smoothing=0.1),
         "unnormalised"),
        (metrics.SparseCategoricalCrossentropy(from_logits=True),
         km.SparseCategoricalCrossentropy(from_logits=True), "sparse logits"),
        (metrics.BinaryCrossentropy(), km.BinaryCrossentropy(), "binary"),
    ]


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_metrics_match_keras_over_several_batches(keras, weighted):
    for ours, theirs, kind in metric_pairs(keras):
        for seed in range(3):                       # three batches, accumulated
            if kind == "labels-equal":
                rng = np.random.default_rng(seed)
                y, p = rng.integers(0, 3, (N, 2)), rng.integers(0, 3, (N, 2))
            else:
                y, p = (a.astype(np.float32) for a in data(kind, seed))     # TensorFlow's in_top_k takes float32
            w = np.random.default_rng(10 + seed).uniform(0, 2, N) if weighted else None
            ours.update_state(y, p, sample_weight=w)
            theirs.update_state(y, p, sample_weight=w)
        np.testing.assert_allclose(ours.result(), np.asarray(theirs.result()), rtol=2e-6, atol=1e-7,
                                   err_msg=ours.name)
        ours.reset_state()
        assert np.all(np.asarray(ours.result()) == 0)


def test_metric_names_and_get_are_keras():
    assert metrics.Precision().name.startswith("precision") and metrics.Mean().name == "mean"
    assert metrics.TopKCategoricalAccuracy().name == "top_k_categorical_accuracy"
    assert metrics.SparseTopKCategoricalAccuracy().name == "sparse_top_k_categorical_accuracy"
    assert type(metrics.get("accuracy")) is metrics.Accuracy          # exact match outside compile, as Keras
    assert type(metrics.get("categorical_accuracy")) is metrics.CategoricalAccuracy
    assert type(metrics.get("CategoricalAccuracy")) is metrics.CategoricalAccuracy
    assert type(metrics.get("top_k_categorical_accuracy")) is metrics.TopKCategoricalAccuracy
    assert type(metrics.get("mse")) is metrics.MeanSquaredError and type(metrics.get("recall")) is metrics.Recall
    assert type(metrics.get(metrics.Recall)) is metrics.Recall
    assert metrics.get(metrics.binary_accuracy) is metrics.binary_accuracy
    assert metrics.get({"class_name": "BinaryAccuracy", "config": {"threshold": 0.3}}).threshold == 0.3
    assert metrics.get(None) is None


@pytest.mark.parametrize("make, error, fragment", [
    (lambda: metrics.get("f1"), ValueError, "unknown metric 'f1'; expected one of 'accuracy', 'acc'"),
    (lambda: metrics.get(len), ValueError, "unknown metric <built-in function len>"),
    (lambda: metrics.Precision(thresholds=1.5), ValueError, "thresholds must be a number or a list"),
    (lambda: metrics.TopKCategoricalAccuracy(k=0), ValueError, "k must be a positive integer; received 0"),
    (lambda: metrics.BinaryAccuracy(threshold="high"), ValueError, "threshold must be a number"),
    (lambda: metrics.Mean()([1, 2, 3], sample_weight=[1, 2]), ValueError, "sample_weight of shape (2,)"),
    (lambda: metrics.Precision()([1, 0], [[0.5, 0.2, 0.1]]), ValueError, "same shape"),
    (lambda: metrics.SparseTopKCategoricalAccuracy(k=1)([3], [[0.5, 0.5, 0.0]]), ValueError,
     "labels must lie in [0, 2]"),
    (lambda: metrics.CompileMetrics("accuracy"), TypeError, "metrics must be a list"),
    (lambda: metrics.CompileMetrics([], weighted_metrics="acc"), TypeError, "weighted_metrics must be a list"),
])
def test_metric_errors(make, error, fragment):
    with pytest.raises(error) as info:
        make()
    assert fragment in str(info.value)


@pytest.mark.parametrize("y, p, cls, expected", [
    (np.array([[1.0], [0.0]]), np.array([[0.7], [0.2]]), metrics.BinaryAccuracy, 1.0),
    (np.array([2, 0]), np.eye(3)[[2, 1]], metrics.SparseCategoricalAccuracy, 0.5),
    (np.array([[2], [0]]), np.eye(3)[[2, 1]], metrics.SparseCategoricalAccuracy, 0.5),
    (np.eye(3)[[2, 0]], np.eye(3)[[2, 1]], metrics.CategoricalAccuracy, 0.5),
])
def test_compile_resolves_accuracy_from_the_data_as_keras(y, p, cls, expected):
    compiled = metrics.CompileMetrics(["accuracy", "acc"])
    assert compiled.names == ["accuracy", "acc"] and not compiled.built
    compiled.update_state(y, p)
    assert [type(m) for m in compiled.metrics] == [cls, cls]
    assert compiled.result() == {"accuracy": expected, "acc": expected}


def test_compile_metrics_names_and_weights_match_keras(keras):
    from keras.src.trainers.compile_utils import CompileMetrics
    y, p = data("probs")
    w = WEIGHTS[1]
    ours = metrics.CompileMetrics(["acc", "acc", metrics.Precision(name="p"), "mse", "categorical_accuracy"],
                                  ["acc", "acc", "mse"])
    theirs = CompileMetrics(["acc", "acc", keras.metrics.Precision(name="p"), "mse", "categorical_accuracy"],
                            ["acc", "acc", "mse"])
    for _ in range(2):
        ours.update_state(y, p, sample_weight=w)
        theirs.update_state(y, p, sample_weight=w)
    expected = {name: float(v) for name, v in theirs.result().items()}
    assert ours.names == ["acc", "acc_1", "p", "mse", "categorical_accuracy", "weighted_acc",
                          "weighted_acc_1", "weighted_mse"]
    assert set(ours.names) == set(expected)
    assert ours.result() == pytest.approx(expected, rel=2e-6)
    assert ours.result()["acc"] != ours.result()["weighted_acc"]     # only weighted_metrics use the weights


def test_compile_with_metric_objects_then_fit_and_evaluate():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    model = Sequential([Dense(1, activation="sigmoid", input_shape=(5,))])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.compile("adam", "binary_crossentropy",
                      metrics=["accuracy", metrics.BinaryAccuracy(name="bin_acc"), metrics.Precision()])
    assert model.metrics == ["accuracy", "bin_acc", model._compile_metrics.metrics[-1].name]
    history = model.fit(x, y, epochs=2, batch_size=8, validation_split=0.25, verbose=0)
    assert set(history.history) == {"loss", "val_loss", *model.metrics, *("val_" + m for m in model.metrics)}
    result = model.evaluate(x, y, verbose=0, return_dict=True)
    expected = metrics.BinaryAccuracy()(y[:, None], model.predict(x, verbose=0))
    assert result["accuracy"] == pytest.approx(expected) and result["bin_acc"] == pytest.approx(expected)
    assert result[model.metrics[-1]] == pytest.approx(metrics.Precision()(y, model.predict(x, verbose=0)))
    assert result["loss"] == pytest.approx(losses.BinaryCrossentropy()(y, model.predict(x, verbose=0)), rel=1e-5)


def test_compile_metric_errors_name_the_model():
    model = Sequential([Dense(2, input_shape=(2,))])
    with pytest.raises(ValueError, match="sequential.*compile: unknown metric 'f1_score'"):
        model.compile("sgd", "mse", metrics=["f1_score"])
    with pytest.raises(TypeError, match="sequential.*compile: metrics must be a list"):
        model.compile("sgd", "mse", metrics="accuracy")
    model.compile("sgd", "mse", metrics=[losses.mean_squared_error])     # a function, named by its name
    assert model.metrics == ["mean_squared_error"]
