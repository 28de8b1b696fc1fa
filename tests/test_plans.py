"""The fast plan (Numba backend) held to the reference plan (tinycnn/plans.py), the definition.

    * random small models (hypothesis): outputs, dL/dx and every layer's grads, with dropout
      on (the same seeds, so the same units dropped), the batch cut into 1 to 3 slices, each
      convolution algorithm (Direct, Winograd, im2col) and the general pooling path;
    * layers the fast plan does not know run as themselves (LayerStep), between the slices;
    * BatchNormalization and the ReLU after it (BatchNormStep), in random models and the benchmark's
      course model, moving statistics included;
    * the seed tutorial's model on MNIST: one step, and a short training run on both backends;
    * predict and evaluate do not depend on how the batch is cut;
    * warm_up changes nothing it must not; float64 runs on the reference; outputs are fresh.
"""
import contextlib
import copy
import os
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinycnn
from tinycnn import seed as tutorial
from tinycnn.layers import (Activation, BatchNormalization, Conv2D, Dense, Dropout, Flatten, GlobalAveragePooling2D,
                            Input, Layer, MaxPooling2D, ReLU)
from tinycnn.plans import ReferencePlan
from tinycnn.utils import rng, to_categorical

try:                                      # the whole file is about the numba backend's plan
    from tinycnn.kernels.numba_ops import threads, winograd
    from tinycnn.kernels.numba_ops.plan import FastPlan
except Exception as err:                  # numba missing or broken (CI's second environment)
    pytest.skip(f"the numba backend is not importable here ({type(err).__name__}: {err})", allow_module_level=True)

ALWAYS_SPLIT = 0        # MIN_FLOPS_PER_SLICE: no minimum, every batch of n images is cut into min(threads, n) slices
REL = 1e-5              # float32 round-off, relative to the largest value compared
COMPILE_NOTES = ("loading the fast kernels", "compiling the fast kernels, first run only")

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# ----------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------
@contextlib.contextmanager
def split(n_threads, min_flops=ALWAYS_SPLIT, force_winograd=False):
    """TINYCNN_THREADS=n_threads and MIN_FLOPS_PER_SLICE=min_flops (optionally Winograd for every 3x3)."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.dict(os.environ, {"TINYCNN_THREADS": str(n_threads)}))
        stack.enter_context(mock.patch.object(threads, "MIN_FLOPS_PER_SLICE", min_flops))
        if force_winograd:
            stack.enter_context(mock.patch.object(winograd, "pays", lambda C, F: True))
        yield


def assert_close(actual, ref, what, rel=REL):
    """actual == ref up to float32 round-off: |actual - ref| <= rel * (max|ref| + 1), same shape and dtype."""
    assert actual is not None, f"{what}: None"
    actual, ref = np.asarray(actual), np.asarray(ref)
    assert actual.shape == ref.shape, f"{what}: shape {actual.shape} != reference {ref.shape}"
    assert actual.dtype == ref.dtype, f"{what}: dtype {actual.dtype} != reference {ref.dtype}"
    atol = rel * (float(np.abs(ref).max(initial=0.0)) + 1.0)
    np.testing.assert_allclose(actual, ref, rtol=0, atol=atol, err_msg=what)


def one_step(plan, model, x, seed, dout=None, y=None):
    """Seed, forward(training=True), backward, then inference: copies of everything, and the next random draw."""
    tinycnn.set_random_seed(seed)
    out = plan.forward(x, training=True)
    out_copy = np.array(out, copy=True)
    dx = plan.backward(model._loss_gradient(y, out) if dout is None else dout)
    grads = {(layer.name, key): np.array(g, copy=True) for layer in model.layers for key, g in layer.grads.items()}
    next_draw = int(rng().integers(2**62))
    infer = np.array(plan.forward(x, training=False), copy=True)
    return {"out": out_copy, "dx": None if dx is None else np.array(dx, copy=True), "grads": grads,
            "infer": infer, "next_draw": next_draw}


def reference_step(model, x, seed, **kw):
    with tinycnn.backend.using("numpy"):
        return one_step(ReferencePlan(model.layers), model, x, seed, **kw)


def assert_same_step(fast, ref, plan, rel=REL):
    assert_close(fast["out"], ref["out"], "forward(training=True)", rel)
    assert_close(fast["infer"], ref["infer"], "forward(training=False)", rel)
    assert fast["grads"].keys() == ref["grads"].keys()
    for key in ref["grads"]:
        assert_close(fast["grads"][key], ref["grads"][key], f"grads{key}", rel)
    if plan.steps[0].parallel:
        assert fast["dx"] is None, "the first step computes no dL/dx"
    else:
        assert_close(fast["dx"], ref["dx"], "dL/dx", rel)
    assert fast["next_draw"] == ref["next_draw"], "the plans drew a different number of dropout seeds"


def assert_covers(plan, layers):
    """Every layer is in exactly one step, in order."""
    assert [layer for step in plan.steps for layer in step.layers] == list(layers)


def mnist_like(n, seed=0):
    """n images like MNIST's (mostly 0, strokes in (0, 1]) and one-hot labels."""
    r = np.random.default_rng(seed)
    x = (r.random((n, 28, 28, 1)) * (r.random((n, 28, 28, 1)) < 0.2)).astype(np.float32)
    return x, to_categorical(r.integers(0, 10, n), 10)


def compiled(model):
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


# ----------------------------------------------------------------------------------------
# 1. Random small models
# ----------------------------------------------------------------------------------------
def one_of(*values):
    return st.sampled_from(values)      # drawn uniformly (st.integers favours its small end)


blocks = st.fixed_dictionaries({
    "filters": one_of(1, 2, 3, 4, 5, 6),
    "kernel": one_of(3, 3, 3, 1, 2),    # mostly 3x3: Direct (one channel), Winograd (stride 1), im2col
    "strides": one_of(1, 1, 1, 2),
    "padding": one_of("valid", "same"),
    "activation": one_of("relu", "linear", "tanh"),
    "pool": one_of("2x2", "2x2", None, "3x3/2 same"),
    "dropout": one_of(0.3, None, 0.0),
})
specs = st.fixed_dictionaries({
    "n": one_of(*range(1, 10)), "h": one_of(*range(4, 13)), "w": one_of(*range(4, 13)), "c": one_of(1, 2, 3),
    "blocks": st.lists(blocks, min_size=1, max_size=2),
    "head": st.booleans(), "units": one_of(*range(1, 9)), "head_dropout": one_of(0.3, 0.0),
    "classes": one_of(2, 3, 4, 5),
    "threads": one_of(2, 3, 1, 2, 3), "force_winograd": one_of(True, False, True), "seed": st.integers(0, 2**16),
})


def add_if_fits(model, layer):
    """Add the layer, or skip it when it does not fit its input (a window larger than the image)."""
    try:
        model.add(layer)
    except ValueError:
        pass


def build(spec):
    model = tinycnn.Sequential([Input((spec["h"], spec["w"], spec["c"]))])
    for b in spec["blocks"]:
        add_if_fits(model, Conv2D(b["filters"], b["kernel"], strides=b["strides"], padding=b["padding"],
                                  activation=b["activation"]))
        if b["pool"] == "2x2":
            add_if_fits(model, MaxPooling2D())
        elif b["pool"]:
            add_if_fits(model, MaxPooling2D(3, strides=2, padding="same"))
        if b["dropout"] is not None:
            add_if_fits(model, Dropout(b["dropout"]))
    if spec["head"] or not model.layers:
        for layer in (Flatten(), Dense(spec["units"], activation="relu"), Dropout(spec["head_dropout"]),
                      Dense(spec["classes"], activation="softmax")):
            model.add(layer)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    return model


@SETTINGS
@given(spec=specs)
def test_random_models_match_reference(spec):
    """Fast plan == reference plan (outputs, grads, dropout masks, inference) over random small float32 models."""
    tinycnn.set_backend("numba")
    model = build(spec)
    r = np.random.default_rng(spec["seed"])
    x = r.standard_normal((spec["n"], spec["h"], spec["w"], spec["c"])).astype(np.float32)
    out_shape = (spec["n"],) + model.layers[-1].out_shape
    if getattr(model.layers[-1], "activation", None).__class__.__name__ == "SoftmaxFn":
        kw = {"y": to_categorical(r.integers(0, out_shape[-1], spec["n"]), out_shape[-1])}
    else:                                   # no softmax head: a random dL/d(out)
        kw = {"dout": r.standard_normal(out_shape).astype(np.float32)}
    ref = reference_step(model, x, spec["seed"], **kw)
    with split(spec["threads"], force_winograd=spec["force_winograd"]):
        plan = FastPlan(model.layers)
        assert_covers(plan, model.layers)
        fast = one_step(plan, model, x, spec["seed"], **kw)
        if plan.steps[0].parallel:
            assert len(plan.bounds[0]) == min(spec["threads"], spec["n"])
    assert_same_step(fast, ref, plan)


@pytest.mark.parametrize("c, strides, force_winograd, alg", [
    (1, 1, False, "Direct"), (1, 2, False, "Direct"), (3, 1, True, "Winograd"), (3, 1, False, "Im2col"),
    (2, 2, True, "Im2col")])
def test_each_conv_algorithm_matches_reference(c, strides, force_winograd, alg):
    """Each 3x3 convolution algorithm the fast plan picks (Direct, Winograd, im2col) gives the reference's numbers."""
    tinycnn.set_backend("numba")
    model = compiled(tinycnn.Sequential([Conv2D(5, 3, strides=strides, padding="same", activation="relu",
                                                input_shape=(13, 11, c)),
                                         MaxPooling2D(), Dropout(0.3), Conv2D(4, 3, activation="linear"),
                                         Flatten(), Dense(6, activation="relu"), Dense(3, activation="softmax")]))
    r = np.random.default_rng(5)
    x = r.standard_normal((7, 13, 11, c)).astype(np.float32)
    y = to_categorical(r.integers(0, 3, 7), 3)
    ref = reference_step(model, x, 11, y=y)
    with split(3, force_winograd=force_winograd):
        plan = FastPlan(model.layers)
        assert type(plan.steps[0].conv.alg).__name__ == alg
        fast = one_step(plan, model, x, 11, y=y)
    assert_same_step(fast, ref, plan)


def test_min_flops_per_slice_zero_splits_every_batch():
    """MIN_FLOPS_PER_SLICE = 0 (no minimum) splits every batch, with the reference's numbers."""
    tinycnn.set_backend("numba")
    model = compiled(tinycnn.Sequential([Conv2D(3, 3, activation="relu", input_shape=(8, 8, 2)), MaxPooling2D(),
                                         Flatten(), Dense(4, activation="softmax")]))
    x = np.random.default_rng(0).standard_normal((4, 8, 8, 2)).astype(np.float32)
    y = to_categorical([0, 1, 2, 3], 4)
    ref = reference_step(model, x, 1, y=y)
    with split(2, min_flops=0):
        plan = FastPlan(model.layers)
        fast = one_step(plan, model, x, 1, y=y)
        assert len(plan.bounds[0]) == 2
    assert_same_step(fast, ref, plan)


# ----------------------------------------------------------------------------------------
# 2. Layers the fast plan does not know
# ----------------------------------------------------------------------------------------
class Scale(Layer):
    """out = alpha * x: a layer written the textbook way, unknown to the fast plan."""

    def __init__(self, alpha, **kwargs):
        super().__init__(**kwargs)
        self.alpha = np.float32(alpha)

    def forward(self, x, training=False):
        self.cache = True if training else None
        return x * self.alpha

    def backward(self, dout):
        self.cached()
        return dout * self.alpha


class Counting:
    """Mixed into a layer: its own forward counts its calls, so the fast plan must run it, not fuse it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = 0

    def forward(self, x, training=False):
        self.calls += 1
        return super().forward(x, training)


class CountingDense(Counting, Dense):
    """A Dense that counts its forward calls."""


class CountingDropout(Counting, Dropout):
    """A Dropout that counts its forward calls (and draws its own seed, in the layers' order)."""


CUSTOM_MODELS = {
    "scale between conv and pool, dense subclass in the head": lambda: [
        Conv2D(4, 3, activation="relu", input_shape=(10, 10, 2)), Scale(0.5), MaxPooling2D(), Dropout(0.3),
        Flatten(), CountingDense(6, activation="relu"), Dropout(0.3), Dense(3, activation="softmax")],
    "scale first (the plan returns its dL/dx)": lambda: [
        Scale(2.0, input_shape=(9, 9, 1)), Conv2D(3, 3, activation="relu"), MaxPooling2D(), Dropout(0.3),
        Flatten(), Dense(3, activation="softmax")],
    "dropout subclass and scale between dense layers": lambda: [
        Conv2D(3, 2, strides=2, activation="linear", input_shape=(8, 8, 3)), Dropout(0.3), Flatten(),
        Dense(5, activation="relu"), CountingDropout(0.3), Scale(-1.5), CountingDense(4, activation="tanh"),
        Dropout(0.3), Dense(3, activation="softmax")],
    "scale last (the loss gradient is not a LogitsGradient)": lambda: [
        Conv2D(3, 3, activation="relu", input_shape=(8, 8, 1)), MaxPooling2D(), Flatten(),
        Dense(4, activation="softmax"), Scale(3.0)],
}


@pytest.mark.parametrize("n_threads", [1, 3])
@pytest.mark.parametrize("name", list(CUSTOM_MODELS))
def test_unknown_layers_run_as_themselves(name, n_threads):
    """Custom layers and subclasses overriding forward run as themselves (LayerStep), with the reference's numbers."""
    tinycnn.set_backend("numba")
    model = compiled(tinycnn.Sequential(CUSTOM_MODELS[name]()))
    customs = [layer for layer in model.layers if isinstance(layer, (Scale, CountingDense, CountingDropout))]
    r = np.random.default_rng(3)
    x = r.standard_normal((7,) + model.layers[0].in_shape).astype(np.float32)
    y = to_categorical(r.integers(0, model.layers[-1].out_shape[-1], 7), model.layers[-1].out_shape[-1])
    y = y / 2 + 0.1           # targets in (0, 1): a finite dL/dp when the softmax is not last
    ref = reference_step(model, x, 4, y=y)
    calls = [getattr(layer, "calls", None) for layer in customs]
    with split(n_threads):
        plan = FastPlan(model.layers)
        assert_covers(plan, model.layers)
        for layer in customs:
            (step,) = [s for s in plan.steps if layer in s.layers]
            assert type(step).__name__ == "LayerStep" and step.layers == [layer]
        fast = one_step(plan, model, x, 4, y=y)
    for layer, before in zip(customs, calls):
        if before is not None:
            assert layer.calls == before + 2, f"{layer} did not run its own forward (training and inference)"
    assert_same_step(fast, ref, plan)


# ----------------------------------------------------------------------------------------
# 2b. BatchNormalization (and the ReLU after it): BatchNormStep
# ----------------------------------------------------------------------------------------
def same_start_step(model, x, seed, **kw):
    """The reference step, then the fast plan's from the same weights and moving statistics:
    both results, and each BN layer's moving statistics after each."""
    start = [w.copy() for w in model.get_weights()]
    ref = reference_step(model, x, seed, **kw)
    ref["weights"] = [w.copy() for w in model.get_weights()]
    model.set_weights(start)
    return ref


bn_specs = st.fixed_dictionaries({
    "n": one_of(1, 2, 3, 5, 8), "hw": one_of(3, 4, 6), "c": one_of(1, 2, 3), "filters": one_of(1, 3, 5),
    "conv_activation": one_of("linear", "relu"), "center": st.booleans(), "scale": st.booleans(),
    "frozen": one_of(False, False, True), "after": one_of("ReLU", "relu", "tanh", None),
    "pool": st.booleans(), "head": one_of("gap", "flatten", "dense_bn"), "threads": one_of(1, 2, 3),
    "seed": st.integers(0, 2**16)})


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(spec=bn_specs)
def test_batchnorm_models_match_reference(spec):
    """Conv2D - BatchNormalization (center, scale, frozen or not) - ReLU layer, Activation("relu"),
    another activation or none - pooling - a head, with BN on (N, units) too: outputs, dL/dx, grads,
    inference and the moving statistics are the reference's."""
    tinycnn.set_backend("numba")
    layers = [Conv2D(spec["filters"], 3, padding="same", activation=spec["conv_activation"],
                     input_shape=(spec["hw"], spec["hw"], spec["c"])),
              BatchNormalization(center=spec["center"], scale=spec["scale"], momentum=0.9)]
    layers[1].trainable = not spec["frozen"]
    if spec["after"] == "ReLU":
        layers.append(ReLU())
    elif spec["after"]:
        layers.append(Activation(spec["after"]))
    if spec["pool"]:
        layers.append(MaxPooling2D())
    if spec["head"] == "gap":
        layers.append(GlobalAveragePooling2D())
    elif spec["head"] == "flatten":
        layers.append(Flatten())
    else:
        layers += [GlobalAveragePooling2D(), Dense(4), BatchNormalization(), ReLU()]
    model = compiled(tinycnn.Sequential(layers + [Dense(3, activation="softmax")]))
    r = np.random.default_rng(spec["seed"])
    for layer in model.layers:             # moving statistics away from their initial 0 and 1
        if isinstance(layer, BatchNormalization):
            C = layer.params["moving_mean"].shape[0]
            layer.params["moving_mean"][:] = r.standard_normal(C)
            layer.params["moving_variance"][:] = r.random(C) + 0.5
    x = (r.standard_normal((spec["n"], spec["hw"], spec["hw"], spec["c"])) * 2 + 1).astype(np.float32)
    y = to_categorical(r.integers(0, 3, spec["n"]), 3)
    ref = same_start_step(model, x, spec["seed"], y=y)
    with split(spec["threads"]):
        plan = FastPlan(model.layers)
        assert_covers(plan, model.layers)
        bn_steps = [s for s in plan.steps if type(s).__name__ == "BatchNormStep"]
        assert len(bn_steps) == sum(isinstance(layer, BatchNormalization) for layer in model.layers)
        fused = bn_steps[0].layers[1:]
        assert [type(layer).__name__ for layer in fused] == (["ReLU"] if spec["after"] == "ReLU" else
                                                            ["Activation"] if spec["after"] == "relu" else [])
        fast = one_step(plan, model, x, spec["seed"], y=y)
    assert_same_step(fast, ref, plan, rel=2e-5)
    for got, want in zip(model.get_weights(), ref["weights"]):
        assert_close(got, want, "weights after the step (moving statistics)")


@pytest.mark.parametrize("n_threads", [1, 2])
def test_course_model_step_matches_reference(n_threads):
    """The benchmark's course model (Conv-BN-ReLU x2, pool, Conv-BN-ReLU, GAP, Dense) on 6 CIFAR-shaped
    images: the expected steps, and the reference's numbers."""
    import sys
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))    # the repository's benchmarks/
    from benchmarks import course
    tinycnn.set_backend("numba")
    tinycnn.set_random_seed(0)
    model = compiled(course.tinycnn_model())
    x, y = course.data(6)
    ref = same_start_step(model, x, 3, y=y)
    with split(n_threads):
        plan = FastPlan(model.layers)
        assert [type(s).__name__ for s in plan.steps] == [
            "ConvStep", "BatchNormStep", "ConvStep", "BatchNormStep", "PoolStep", "ConvStep", "BatchNormStep",
            "LayerStep", "DenseStep"]
        fast = one_step(plan, model, x, 3, y=y)
    assert_same_step(fast, ref, plan, rel=2e-5)
    for got, want in zip(model.get_weights(), ref["weights"]):
        assert_close(got, want, "weights after the step (moving statistics)")


# ----------------------------------------------------------------------------------------
# 3-4. The seed tutorial's model
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_threads", [1, 2])
def test_seed_model_step_matches_reference(mnist_prepared, n_threads):
    """The tutorial's model on 64 MNIST images: the expected fused steps; outputs and grads (dropout on) = reference."""
    tinycnn.set_backend("numba")
    (x_train, y_train), _ = mnist_prepared
    x, y = x_train[:64], y_train[:64]
    model = compiled(tutorial.build_model())
    ref = reference_step(model, x, 21, y=y)
    with split(n_threads, min_flops=threads.MIN_FLOPS_PER_SLICE):
        plan = FastPlan(model.layers)
        assert [(type(s).__name__, [layer.name for layer in s.layers]) for s in plan.steps] == [
            ("ConvStep", ["conv2d", "max_pooling2d", "dropout"]),
            ("ConvStep", ["conv2d_1", "max_pooling2d_1", "dropout_1"]),
            ("ReshapeStep", ["flatten"]),
            ("DenseStep", ["dense", "dropout_2"]),
            ("DenseStep", ["dense_1"])]
        fast = one_step(plan, model, x, 21, y=y)
        assert len(plan.bounds[0]) == n_threads
    assert fast["dx"] is None, "the first step's backward gives None"
    assert_same_step(fast, ref, plan)
    assert not np.allclose(ref["out"], ref["infer"], atol=1e-3), "dropout was off in training"


def training_curve(backend_name, x, y, steps=15):
    """The losses of `steps` Adam updates of the tutorial's model on one batch, dropout on, from seed 7."""
    tinycnn.set_backend(backend_name)
    tinycnn.backend.clear_session()
    tinycnn.set_random_seed(7)
    model = tutorial.build_model()
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    curve = [model.train_on_batch(x, y) for _ in range(steps)]
    return np.array(curve), model._plan()


@pytest.mark.parametrize("conv_2", ["im2col", "winograd"])
def test_seed_model_training_curve_same_on_both_backends(mnist_prepared, conv_2):
    """15 Adam steps on 64 MNIST images, dropout on (same masks): the same decreasing loss curve on numba and numpy."""
    (x_train, y_train), _ = mnist_prepared
    x, y = x_train[:64], y_train[:64]
    pays = winograd.pays if conv_2 == "winograd" else (lambda C, F: False)
    with split(2, min_flops=threads.MIN_FLOPS_PER_SLICE), mock.patch.object(winograd, "pays", pays):
        numba, plan = training_curve("numba", x, y)
    assert isinstance(plan, FastPlan) and type(plan.steps[1].conv.alg).__name__.lower() == conv_2
    numpy, plan = training_curve("numpy", x, y)
    assert isinstance(plan, ReferencePlan)
    assert numba[-1] < 0.8 * numba[0] and numpy[-1] < 0.8 * numpy[0]
    if conv_2 == "im2col":
        np.testing.assert_allclose(numba, numpy, rtol=1e-4)
    else:
        # Winograd's float32 round-off is about 10x im2col's (relative to the largest value:
        # ~7e-6 against ~7e-7, while its float64 results agree to 1e-14), and Adam's normalised
        # steps turn round-off in small gradients into whole steps of the learning rate: the
        # curves agree to 1e-4 for the first steps and drift apart to about 5e-4 by step 15.
        np.testing.assert_allclose(numba[:5], numpy[:5], rtol=1e-4)
        np.testing.assert_allclose(numba, numpy, rtol=2e-3)


# ----------------------------------------------------------------------------------------
# 5. Inference: however the batch is cut
# ----------------------------------------------------------------------------------------
def test_predict_and_evaluate_independent_of_threads():
    """predict and evaluate give the same numbers with 1, 2 and 3 threads and a short last batch (and match NumPy)."""
    x, y = mnist_like(11, seed=2)
    tinycnn.set_backend("numba")
    model = compiled(tutorial.build_model())
    results = {}
    for n_threads in (1, 2, 3):
        with split(n_threads):
            results[n_threads] = (model.predict(x, batch_size=4, verbose=0),
                                  model.evaluate(x, y, batch_size=4, verbose=0))
            assert model._plan().bounds[0] == threads.bounds(3, min(n_threads, 3))     # the short last batch, split
    p1, (loss1, acc1) = results[1]
    for n_threads in (2, 3):
        p, (loss, acc) = results[n_threads]
        np.testing.assert_allclose(p, p1, rtol=1e-6, atol=1e-7, err_msg=f"predict, {n_threads} threads")
        np.testing.assert_allclose(loss, loss1, rtol=1e-6, err_msg=f"evaluate, {n_threads} threads")
        assert acc == acc1
    with tinycnn.backend.using("numpy"):
        assert_close(model.predict(x, batch_size=4, verbose=0), p1, "predict on numpy")


# ----------------------------------------------------------------------------------------
# 6. warm_up
# ----------------------------------------------------------------------------------------
def small_model(dropout_seed=None):
    """Two blocks (the second with the general pooling path) and a head; one dropout may have its own generator."""
    return compiled(tinycnn.Sequential([
        Conv2D(4, 3, activation="relu", input_shape=(10, 10, 3)), MaxPooling2D(), Dropout(0.3, seed=dropout_seed),
        Conv2D(4, 3, padding="same", activation="linear"), MaxPooling2D(3, strides=2, padding="same"),
        Flatten(), Dense(6, activation="relu"), Dropout(0.3), Dense(3, activation="softmax")]))


@pytest.mark.parametrize("grads_from", ["reference", "fast plan"])
def test_warm_up_touches_no_weights_grads_or_random_state(grads_from):
    """warm_up leaves weights, grads (arrays and values) and every random generator untouched; then nothing compiles."""
    tinycnn.set_backend("numba")
    model = small_model(dropout_seed=5)
    r = np.random.default_rng(0)
    x = r.standard_normal((5, 10, 10, 3)).astype(np.float32)
    y = to_categorical(r.integers(0, 3, 5), 3)
    with split(2):
        plan = FastPlan(model.layers)
        assert plan.compile_note in COMPILE_NOTES
        if grads_from == "reference":
            reference_step(model, x, 0, y=y)
        else:
            one_step(plan, model, x, 0, y=y)
        params = [(layer, key, p, p.copy()) for layer in model.layers for key, p in layer.params.items()]
        grads = [(layer, key, g, g.copy()) for layer in model.layers for key, g in layer.grads.items()]
        own_generator = copy.deepcopy(model.layers[2].generator.bit_generator.state)

        tinycnn.set_random_seed(9)
        plan.warm_up(x[:2])
        after_warm_up = int(rng().integers(2**62))
        tinycnn.set_random_seed(9)
        assert after_warm_up == int(rng().integers(2**62)), "warm_up drew from tinycnn's generator"
        assert model.layers[2].generator.bit_generator.state == own_generator, "warm_up drew from a layer's generator"
        assert not plan.compiles
        assert plan.compile_note in COMPILE_NOTES
        for (layer, key, g, values) in grads:
            assert layer.grads[key] is g, f"warm_up replaced {layer.name}.grads[{key!r}]"
            np.testing.assert_array_equal(g, values, err_msg=f"warm_up changed {layer.name}.grads[{key!r}]")
        for (layer, key, p, values) in params:
            assert layer.params[key] is p, f"warm_up replaced {layer.name}.params[{key!r}]"
            np.testing.assert_array_equal(p, values, err_msg=f"warm_up changed {layer.name}.params[{key!r}]")


# ----------------------------------------------------------------------------------------
# 7. Not float32: the reference plan
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("what", ["float64 input", "float64 weight"])
def test_non_float32_runs_on_reference(what):
    """float64 inputs (or a float64 weight) run on the reference plan, with the reference's numbers."""
    tinycnn.set_backend("numba")
    model = small_model()
    r = np.random.default_rng(1)
    x = r.standard_normal((5, 10, 10, 3))
    y = to_categorical(r.integers(0, 3, 5), 3)
    if what == "float64 weight":       # (set_weights would cast it to float32)
        x = x.astype(np.float32)
        model.layers[0].params["kernel"] = model.layers[0].params["kernel"].astype(np.float64)
    ref = reference_step(model, x, 2, y=y)
    with split(2):
        plan = FastPlan(model.layers)
        fast = one_step(plan, model, x, 2, y=y)
        assert plan.on_reference
    if what == "float64 input":
        assert fast["out"].dtype == np.float64
        same = assert_close
    else:   # the numba kernels keep x's float32 where NumPy promotes to float64: compare the values
        def same(actual, ref, what):
            assert_close(np.asarray(actual, dtype=np.float64), np.asarray(ref, dtype=np.float64), what)
    same(fast["dx"], ref["dx"], "dL/dx (the reference computes it)")
    for key in ("out", "infer"):
        same(fast[key], ref[key], key)
    for key in ref["grads"]:
        same(fast["grads"][key], ref["grads"][key], f"grads{key}")
    assert fast["next_draw"] == ref["next_draw"]


# ----------------------------------------------------------------------------------------
# 8. Fresh outputs
# ----------------------------------------------------------------------------------------
FRESH_MODELS = {
    "conv, pool, dropout": lambda: [Conv2D(4, 3, activation="relu", input_shape=(8, 8, 2)), MaxPooling2D(),
                                    Dropout(0.3)],
    "flatten last": lambda: [Conv2D(4, 3, activation="relu", input_shape=(8, 8, 2)), MaxPooling2D(), Flatten()],
    "dense relu last": lambda: [Conv2D(4, 3, activation="relu", input_shape=(8, 8, 2)), Flatten(),
                                Dense(5, activation="relu")],
    "softmax last": lambda: [Conv2D(4, 3, activation="relu", input_shape=(8, 8, 2)), Flatten(),
                             Dense(5, activation="softmax")],
    "custom layer last, passing its input on": lambda: [Conv2D(4, 3, activation="relu", input_shape=(8, 8, 2)),
                                                        MaxPooling2D(), CountingDropout(0.3)],
}


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("name", list(FRESH_MODELS))
def test_outputs_are_fresh_arrays(name, n_threads, training):
    """A returned output is the caller's: a second forward call does not overwrite the first result."""
    tinycnn.set_backend("numba")
    model = tinycnn.Sequential(FRESH_MODELS[name]())
    r = np.random.default_rng(4)
    x1, x2 = (r.standard_normal((4, 8, 8, 2)).astype(np.float32) for _ in range(2))
    with split(n_threads):
        plan = FastPlan(model.layers)
        first = plan.forward(x1, training=training)
        kept = first.copy()
        second = plan.forward(x2, training=training)
    assert not np.shares_memory(first, second)
    np.testing.assert_array_equal(first, kept, err_msg="the second forward call overwrote the first result")
    assert not np.array_equal(first, second)
