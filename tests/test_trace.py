"""model.trace(x, y): one training step's tensors, consistent with itself, with the real step and
with finite differences, and leaving the model as it was (tinycnn/trace.py)."""
import numpy as np
import pytest
from matplotlib.figure import Figure

import tinycnn
from tinycnn import layers as L
from tinycnn.gradcheck import numerical_gradient, rel_error, to_float64
from tinycnn.models import NotCompiledError
from tinycnn.utils import rng, to_categorical


@pytest.fixture(autouse=True)
def numpy_backend():
    tinycnn.set_backend("numpy")          # the real steps compared here run the reference (conftest restores)


def cnn():
    """The seed CNN's shape, small: conv, BatchNorm, pool, dropout, dense with L2, dropout, softmax."""
    model = tinycnn.Sequential([
        L.Conv2D(4, 3, activation="relu", input_shape=(10, 10, 1)), L.BatchNormalization(), L.MaxPooling2D(2),
        L.Dropout(0.25), L.Flatten(), L.Dense(16, activation="relu", kernel_regularizer="l2"), L.Dropout(0.5),
        L.Dense(5, activation="softmax")])
    model.compile("adam", "categorical_crossentropy", ["accuracy"])
    return model


def forked():
    """A functional model with a fork (conv's output read by the shared layer and by Add) and a
    layer called twice."""
    inputs = tinycnn.Input(shape=(6, 6, 2))
    c = L.Conv2D(3, 3, padding="same", activation="relu")(inputs)
    shared = L.Conv2D(3, 3, padding="same", activation="tanh", name="shared")
    s = L.Add()([c, shared(shared(c))])
    outputs = L.Dense(4, activation="softmax", kernel_regularizer="l2")(L.Flatten()(s))
    model = tinycnn.Model(inputs, outputs)
    model.compile("sgd", "categorical_crossentropy")
    return model


def batch(shape, classes, n=6):
    r = np.random.default_rng(1)
    return r.random((n,) + shape).astype(np.float32), to_categorical(np.arange(n) % classes, classes)


def test_sequential_trace_is_consistent_with_itself():
    model = cnn()
    x, y = batch((10, 10, 1), 5)
    t = model.trace(x, y)
    names = [layer.name for layer in model.layers]
    assert [f.layer for f in t.forward] == names and [b.layer for b in t.backward] == names[::-1]
    assert np.array_equal(t.forward[0].input, x)
    for a, b in zip(t.forward, t.forward[1:]):
        assert a.output is b.input                                  # one layer's output is the next's input
    for a, b in zip(t.backward, t.backward[1:]):
        assert np.array_equal(a.dx, b.dout)                         # one layer's dx is the previous layer's dout
    for f, b in zip(t.forward, t.backward[::-1]):
        assert b.dout.shape == f.output.shape and b.dx.shape == f.input.shape
    assert t.backward[0].logits and not any(b.logits for b in t.backward[1:])
    p = t.forward[-1].output                                        # softmax + cross-entropy: dout is dL/dz
    np.testing.assert_allclose(t.backward[0].dout, (p - y) / len(x), rtol=1e-6)
    assert t.input_grad is t.backward[-1].dx and t.input_grad.shape == x.shape
    conv = model.layers[0]
    assert set(t.grads[conv.name]) == {"kernel", "bias"}
    assert all(g.shape == conv.params[k].shape for k, g in t.grads[conv.name].items())
    assert set(t.grads[model.layers[1].name]) == {"gamma", "beta"}  # no gradient for the moving statistics


def test_loss_and_gradients_are_the_real_steps():
    model = cnn()
    x, y = batch((10, 10, 1), 5)
    model.train_on_batch(x, y)                                      # the optimizer has state now
    tinycnn.set_random_seed(7)
    t = model.trace(x, y)
    loss, _ = model.train_on_batch(x, y)                            # the trace left the random stream alone:
    assert loss == pytest.approx(t.loss, rel=1e-6)                  # this step draws the same masks
    assert t.penalty > 0 and t.loss == pytest.approx(t.data_loss + t.penalty)
    for layer in model.layers:                                      # the grads the optimizer just applied
        for key in layer.trained_keys():
            np.testing.assert_allclose(t.grads[layer.name][key], layer.grads[key], rtol=1e-5, atol=1e-8)
    dropout = model.layers[3]
    np.testing.assert_array_equal(t.forward[3].output, t.forward[3].input * dropout.cache)   # the same mask


def test_set_random_seed_reproduces_a_trace_and_the_step_after_it():
    model = cnn()
    x, y = batch((10, 10, 1), 5)
    tinycnn.set_random_seed(3)
    a = model.trace(x, y)
    tinycnn.set_random_seed(3)
    b = model.trace(x, y)
    assert a.loss == b.loss
    for fa, fb in zip(a.forward, b.forward):
        np.testing.assert_array_equal(fa.output, fb.output)
    tinycnn.set_random_seed(4)
    assert not np.array_equal(model.trace(x, y).forward[3].output, a.forward[3].output)   # another mask
    tinycnn.set_random_seed(3)
    assert model.train_on_batch(x, y)[0] == pytest.approx(a.loss, rel=1e-6)


def test_trace_changes_nothing():
    model = cnn()
    x, y = batch((10, 10, 1), 5)
    model.train_on_batch(x, y)
    weights = [w.copy() for w in model.get_weights()]               # moving statistics included
    objects = [dict(layer.params) for layer in model.layers]
    grads = [{k: g.copy() for k, g in layer.grads.items()} for layer in model.layers]
    caches = [layer.cache for layer in model.layers]
    opt = model.optimizer
    iterations, state = opt.iterations, {k: {s: a.copy() for s, a in v.items()} for k, v in opt.state.items()}
    random_state = rng().bit_generator.state
    model.trace(x, y)
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)
    for layer, params, g, cache in zip(model.layers, objects, grads, caches):
        assert all(layer.params[k] is params[k] for k in params)    # the same arrays, not copies
        assert layer.cache is cache
        for k in g:
            np.testing.assert_array_equal(layer.grads[k], g[k])
    assert opt.iterations == iterations and opt.state.keys() == state.keys()
    for k, v in state.items():
        for s, a in v.items():
            np.testing.assert_array_equal(opt.state[k][s], a)
    assert rng().bit_generator.state == random_state


def test_gradients_agree_with_finite_differences():
    penalty = tinycnn.regularizers.L2(0.05)
    model = tinycnn.Sequential([L.Conv2D(2, 3, input_shape=(5, 5, 1), activation="tanh"), L.BatchNormalization(),
                                L.Flatten(), L.Dense(3, activation="softmax", kernel_regularizer=penalty)])
    model.compile("sgd", "categorical_crossentropy")
    for layer in model.layers:
        to_float64(layer)
    x, y = batch((5, 5, 1), 3, n=4)
    t = model.trace(x, y)
    for layer in model.layers:
        for key in layer.trained_keys():
            numeric = numerical_gradient(lambda: model.trace(x, y).loss, layer.params[key])
            assert rel_error(t.grads[layer.name][key], numeric) < 1e-5, (layer.name, key)


def test_functional_model_with_a_fork_and_a_shared_layer():
    model = forked()
    x, y = batch((6, 6, 2), 4, n=5)
    t = model.trace(x, y)
    assert [(f.layer, f.call) for f in t.forward] == [("conv2d", 0), ("shared", 0), ("shared", 1), ("add", 0),
                                                      ("flatten", 0), ("dense", 0)]
    f = {(r.layer, r.call): r for r in t.forward}
    b = {(r.layer, r.call): r for r in t.backward}
    assert isinstance(f["add", 0].input, list) and isinstance(b["add", 0].dx, list) and len(b["add", 0].dx) == 2
    assert f["add", 0].input[0] is f["conv2d", 0].output and f["add", 0].input[1] is f["shared", 1].output
    # the fork: conv2d's output is read by the shared layer's first call and by Add: its dout is the sum
    np.testing.assert_allclose(b["conv2d", 0].dout, b["shared", 0].dx + b["add", 0].dx[0], rtol=1e-6)
    np.testing.assert_array_equal(b["shared", 0].dout, b["shared", 1].dx)
    # the shared layer: one dL/dW, the sum of its calls' shares
    for key in ("kernel", "bias"):
        np.testing.assert_allclose(b["shared", 0].grads[key],
                                   b["shared", 0].call_grads[key] + b["shared", 1].call_grads[key], rtol=1e-6)
    assert b["conv2d", 0].call_grads is None
    loss = model.train_on_batch(x, y)                              # the real step through the graph
    assert loss == pytest.approx(t.loss, rel=1e-6)
    for layer in model.layers:
        for key in layer.trained_keys():
            np.testing.assert_allclose(t.grads[layer.name][key], layer.grads[key], rtol=1e-5, atol=1e-8)


def test_summary_names_every_layer_with_its_shapes(capsys):
    model = cnn()
    x, y = batch((10, 10, 1), 5)
    t = model.trace(x, y)
    lines = []
    text = t.summary(print_fn=lines.append)
    assert "\n".join(lines) == text and capsys.readouterr().out == ""
    for layer in model.layers:
        assert f"{layer.name} ({type(layer).__name__})" in text
    assert "(6, 10, 10, 1)" in text and "(6, 8, 8, 4)" in text and "(6, 5)" in text
    assert "kernel (3, 3, 1, 4)" in text and "gamma (4,)" in text and f"{t.loss:.6g}" in text
    t.summary()
    assert capsys.readouterr().out.strip() == text.strip()          # printed by default
    shared = forked().trace(*batch((6, 6, 2), 4, n=5)).summary(print_fn=lambda s: None)
    assert "shared (call 2) (Conv2D)" in shared and "(5, 6, 6, 3), (5, 6, 6, 3)" in shared


def test_plot_is_a_figure():
    import matplotlib.pyplot as plt
    for model, data in ((cnn(), batch((10, 10, 1), 5)), (forked(), batch((6, 6, 2), 4, n=5))):
        fig = model.trace(*data).plot()
        assert isinstance(fig, Figure)
        texts = [t.get_text() for t in fig.axes[0].texts]
        assert any("(Conv2D)\n" in t for t in texts) and any(t.startswith("|g|") for t in texts)
        plt.close(fig)


def test_steps_walk_every_forward_then_every_backward():
    model = cnn()
    x, y = batch((10, 10, 1), 5)
    t = model.trace(x, y)
    steps = list(t.steps())
    assert len(steps) == 2 * len(model.layers)
    assert [s.kind for s in steps] == ["forward"] * 8 + ["backward"] * 8
    for s, f in zip(steps, t.forward + t.backward):
        assert s.layer == f.layer and f.layer in str(s)
    first, dense_back = str(steps[0]), str(steps[8])
    assert "(6, 10, 10, 1)" in first and "(6, 8, 8, 4)" in first and "out = max(z, 0)" in first
    assert "dz = (p - y) / N" in dense_back and "dW = x^T @ dz" in dense_back and "(6, 5)" in dense_back
    assert repr(steps[0]) == first
    html = steps[8]._repr_html_()
    assert "<img src='data:image/png;base64," in html and "dense_1" in html
    assert "mask" in str(steps[3]) and "dx = dout * mask" in str(steps[12])
    add = [s for s in forked().trace(*batch((6, 6, 2), 4, n=5)).steps() if s.layer == "add"]
    assert "out = x1 + x2" in str(add[0]) and "dx_k = dout" in str(add[1]) and "dx2" in str(add[1])


def test_clear_errors():
    model = cnn()
    x, y = batch((10, 10, 1), 5)
    with pytest.raises(ValueError, match=r"trace: expected x of shape \(None, 10, 10, 1\)"):
        model.trace(x[:, :8], y)
    with pytest.raises(ValueError, match="trace: x and y must have the same length"):
        model.trace(x, y[:3])
    with pytest.raises(ValueError, match="trace: x contains NaN"):
        model.trace(np.full_like(x, np.nan), y)
    raw = tinycnn.Sequential([L.Dense(2, input_shape=(3,))])
    with pytest.raises(NotCompiledError, match=r"compile\(.*\) before trace\(\)"):
        raw.trace(np.zeros((2, 3)), np.zeros((2, 2)))


def test_trace_is_the_reference_step_on_either_backend(backend):
    """The trace always runs the NumPy reference; the active backend's real step agrees with it,
    dropout masks included (both backends draw the same masks for a seed)."""
    model = tinycnn.Sequential([L.Dense(8, activation="relu", input_shape=(6,)), L.Dropout(0.5),
                                L.Dense(3, activation="softmax")])
    model.compile("sgd", "categorical_crossentropy")
    x, y = batch((6,), 3, n=8)
    t = model.trace(x, y)
    assert tinycnn.get_backend() == backend                         # left as it was
    assert model.train_on_batch(x, y) == pytest.approx(t.loss, rel=1e-5)
    for layer in model.layers:
        for key in layer.trained_keys():
            np.testing.assert_allclose(t.grads[layer.name][key], layer.grads[key], rtol=1e-4, atol=1e-7)
