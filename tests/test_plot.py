"""tinycnn.plot: every helper returns a Figure that shows the numbers it was given."""
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from tinycnn import plot
from tinycnn.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from tinycnn.models import Sequential


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def small_model():
    model = Sequential([
        Conv2D(4, (3, 3), activation="relu", input_shape=(8, 8, 1)),
        MaxPooling2D((2, 2)),
        Dropout(0.25, seed=1),
        Flatten(),
        Dense(6, activation="relu"),
        Dense(3, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def toy_data(rng, n=48):
    x = rng.random((n, 8, 8, 1)).astype(np.float32)
    labels = (x[:, :4].mean(axis=(1, 2, 3)) * 3).astype(int).clip(0, 2)
    return x, np.eye(3, dtype=np.float32)[labels]


# ----------------------------------------------------------------------------------------
# history (unchanged behaviour)
# ----------------------------------------------------------------------------------------
def test_history_accepts_history_dict_and_draws_both_panels():
    logs = {"loss": [0.5, 0.3], "accuracy": [0.8, 0.9], "val_loss": [0.4, 0.35], "val_accuracy": [0.85, 0.88]}
    fig = plot.history(logs)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    acc, loss = fig.axes
    assert [line.get_label() for line in acc.lines] == ["Training Accuracy", "Validation Accuracy"]
    assert list(loss.lines[1].get_ydata()) == [0.4, 0.35]
    assert acc.get_title() == "Model Accuracy" and loss.get_title() == "Model Loss"


def test_history_rejects_other_things():
    with pytest.raises(TypeError, match="History"):
        plot.history([0.1, 0.2])


# ----------------------------------------------------------------------------------------
# filters and feature maps
# ----------------------------------------------------------------------------------------
def test_filters_shows_every_filter_on_one_symmetric_scale(rng):
    kernel = rng.standard_normal((3, 3, 1, 10))
    fig = plot.filters(kernel, ncols=4)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 10
    np.testing.assert_allclose(images[7].get_array(), kernel[:, :, 0, 7])
    limit = np.abs(kernel).max()
    assert images[0].get_clim() == pytest.approx((-limit, limit))


def test_filters_from_a_layer_and_mean_over_channels(rng):
    layer = Conv2D(5, (2, 3))
    layer.build((6, 6, 3))
    fig = plot.filters(layer, channel="mean")
    first = next(ax for ax in fig.axes if ax.images).images[0]
    np.testing.assert_allclose(first.get_array(), layer.params["kernel"][:, :, :, 0].mean(axis=2), rtol=1e-6)
    assert layer.name in fig._suptitle.get_text()


def test_filters_rejects_bad_input(rng):
    with pytest.raises(ValueError, match=r"\(KH, KW, C, F\)"):
        plot.filters(rng.standard_normal((3, 3, 4)))
    with pytest.raises(ValueError, match="channel"):
        plot.filters(rng.standard_normal((3, 3, 2, 4)), channel=2)
    dense = Dense(3)
    dense.build((4,))
    with pytest.raises(ValueError, match="received shape \\(4, 3\\)"):
        plot.filters(dense)
    with pytest.raises(ValueError, match="has no kernel"):
        plot.filters(Flatten())


def test_feature_maps_one_row_per_layer_with_the_real_outputs(rng):
    model = small_model()
    image = rng.random((8, 8, 1)).astype(np.float32)
    fig = plot.feature_maps(model, image, max_maps=3)
    outputs = dict((layer.name, out) for layer, out in plot.layer_outputs(model, image))
    conv = model.layers[0]
    conv_axes = [ax for ax in fig.axes if ax.get_ylabel().startswith(conv.name)]
    assert len(conv_axes) == 1                             # the label sits on the row's first panel
    conv_images = [ax.images[0].get_array() for ax in fig.axes if ax.images][1:4]   # after the input
    for c, shown in enumerate(conv_images):
        np.testing.assert_allclose(shown, outputs[conv.name][0, :, :, c])
    labels = " ".join(ax.get_ylabel() for ax in fig.axes)
    assert "dropout" not in labels and "flatten" not in labels        # skipped by default
    bars = [ax for ax in fig.axes if ax.patches]
    assert len(bars) == 1                                              # the softmax as 3 bars
    heights = [p.get_height() for p in bars[0].patches]
    np.testing.assert_allclose(heights, outputs[model.layers[-1].name][0], rtol=1e-6)


def test_feature_maps_selected_layers_and_batch_of_one(rng):
    model = small_model()
    image = rng.random((1, 8, 8, 1)).astype(np.float32)
    fig = plot.feature_maps(model, image, layers=[model.layers[1].name], max_maps=2)
    assert len([ax for ax in fig.axes if ax.images]) == 1 + 2
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        plot.feature_maps(model, image, layers=["nope"])
    with pytest.raises(ValueError, match=r"expected one image of shape \(8, 8, 1\)"):
        plot.feature_maps(model, np.zeros((2, 8, 8, 1)))


# ----------------------------------------------------------------------------------------
# confusion matrix and the confident mistakes
# ----------------------------------------------------------------------------------------
def test_confusion_counts():
    counts = plot.confusion_counts([0, 1, 2, 2, 1], [0, 2, 2, 2, 1])
    np.testing.assert_array_equal(counts, [[1, 0, 0], [0, 1, 1], [0, 0, 2]])
    one_hot = np.eye(3)[[0, 1, 2, 2, 1]]
    np.testing.assert_array_equal(plot.confusion_counts(one_hot, [0, 2, 2, 2, 1], num_classes=4)[:3, :3], counts)
    with pytest.raises(ValueError, match="same length"):
        plot.confusion_counts([0, 1], [0])


def test_confusion_matrix_figure_writes_every_count():
    y_true = np.array([0, 0, 1, 1, 1, 2])
    probs = np.eye(3)[[0, 1, 1, 1, 0, 2]] * 0.8 + 0.05
    fig = plot.confusion_matrix(y_true, probs)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["1", "1", "0", "1", "2", "0", "0", "0", "1"]
    assert "4 of 6 right" in ax.get_title()
    assert ax.get_xlabel() == "Predicted class" and ax.get_ylabel() == "True class"
    fig = plot.confusion_matrix(y_true, probs, normalize=True, class_names=["a", "b", "c"])
    assert fig.axes[0].texts[3].get_text() == "0.33"
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["a", "b", "c"]


def test_misclassified_orders_by_confidence():
    images = np.arange(5 * 4 * 4, dtype=np.float32).reshape(5, 4, 4, 1)
    y_true = np.array([0, 1, 1, 0, 1])
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7], [0.95, 0.05]])
    fig = plot.misclassified(images, y_true, probs, n=10)
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert len(titles) == 3                                  # samples 1, 3 and 4 are wrong
    assert titles[0].startswith("true 1, said 0") and "0.950" in titles[0] and "#4" in titles[0]
    assert "#3" in titles[1] and "#1" in titles[2]             # p = 0.7, then 0.6
    np.testing.assert_array_equal(next(ax for ax in fig.axes if ax.images).images[0].get_array(), images[4, :, :, 0])
    fig = plot.misclassified(images, y_true, np.eye(2)[y_true])
    assert "0 most confident mistakes (of 0)" in fig._suptitle.get_text()


# ----------------------------------------------------------------------------------------
# gradient flow
# ----------------------------------------------------------------------------------------
def test_record_gradient_norms_during_fit_then_restores_the_model(rng):
    model = small_model()
    x, y = toy_data(rng)
    with plot.record_gradient_norms(model) as norms:
        model.fit(x, y, epochs=2, batch_size=16, verbose=0)
        last = {layer.name: plot.gradient_norm(layer) for layer in model.layers if layer.params}
    conv, dense, out = (layer.name for layer in model.layers if layer.params)
    assert list(norms) == [conv, dense, out]
    assert norms.steps == 6 and all(len(v) == 6 for v in norms.values())    # 48 / 16 * 2 epochs
    for name, values in norms.items():
        assert values[-1] == pytest.approx(last[name])          # the norm of the grads left behind
        assert all(v > 0 and np.isfinite(v) for v in values)
    assert model._gradient_hooks == []                          # the model as it was
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert norms.steps == 6                                     # nothing recorded after the block


def test_gradient_norm_is_the_l2_norm_of_all_grads(rng):
    model = small_model()
    x, y = toy_data(rng, 8)
    model.train_on_batch(x, y)
    dense = model.layers[4]
    expected = np.sqrt(np.sum(dense.grads["kernel"].astype(np.float64) ** 2) +
                       np.sum(dense.grads["bias"].astype(np.float64) ** 2))
    assert plot.gradient_norm(dense) == pytest.approx(expected)


def test_record_gradient_norms_needs_a_built_model():
    with pytest.raises(ValueError, match="not built"):
        with plot.record_gradient_norms(Sequential([Dense(3)])):
            pass


def test_gradient_flow_one_line_per_layer_smoothed():
    norms = {"conv2d": [1.0, 2.0, 3.0, 4.0], "dense": [0.1, 0.1, 0.3, 0.3]}
    fig = plot.gradient_flow(norms)
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.lines] == ["conv2d", "dense"]
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "Training step"
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [1, 2, 3, 4])
    fig = plot.gradient_flow(norms, steps_per_epoch=2, smooth=2, log_scale=False)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [1.5, 2.5, 3.5])
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [1.0, 1.5, 2.0])
    assert ax.get_xlabel() == "Epoch" and "2-step average" in ax.get_title()
    with pytest.raises(ValueError, match="layer name"):
        plot.gradient_flow({})


# ----------------------------------------------------------------------------------------
# dL/dx per layer
# ----------------------------------------------------------------------------------------
def tiny_dense_model():
    model = Sequential([Dense(3, activation="relu", input_shape=(4,)), Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    return model


def hand_dx_norms(model, x, y):
    """||dL/dx|| of each Dense by the chain rule, in float64: what record_gradient_norms must see."""
    (w1, b1), (w2, b2) = [(layer.params["kernel"].astype(np.float64), layer.params["bias"].astype(np.float64))
                          for layer in model.layers]
    z1 = x @ w1 + b1                                        # (N, 3)
    z2 = np.maximum(z1, 0) @ w2 + b2                        # (N, 2)
    p = np.exp(z2 - z2.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    dz2 = (p - y) / len(x)                                  # softmax + cross-entropy, mean over the batch
    dx2 = dz2 @ w2.T                                        # dL/d(input of the second Dense)
    dx1 = (dx2 * (z1 > 0)) @ w1.T                           # through the ReLU, then the first kernel
    return np.linalg.norm(dx1), np.linalg.norm(dx2)


def test_dx_norms_equal_the_chain_rule_by_hand_and_the_model_is_left_as_it_was(rng):
    import tinycnn
    model = tiny_dense_model()
    x = rng.standard_normal((5, 4)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[[0, 1, 1, 0, 1]]
    expected = hand_dx_norms(model, x.astype(np.float64), y)
    backend_before = tinycnn.get_backend()
    with plot.record_gradient_norms(model, dx=True) as norms:
        model.train_on_batch(x, y)
        second = hand_dx_norms(model, x.astype(np.float64), y)   # after the first update
        model.train_on_batch(x, y)
    first, last = (layer.name for layer in model.layers)
    assert list(norms.dx) == [first, last]
    np.testing.assert_allclose([norms.dx[first][0], norms.dx[last][0]], expected, rtol=1e-5)
    np.testing.assert_allclose([norms.dx[first][1], norms.dx[last][1]], second, rtol=1e-5)
    assert tinycnn.get_backend() == backend_before                     # the reference path for the block only
    assert all("backward" not in vars(layer) for layer in model.layers)  # the wrappers are gone
    assert model._gradient_hooks == []
    with plot.record_gradient_norms(model) as plain:                   # dx=False: weight norms only
        model.train_on_batch(x, y)
    assert plain.dx == {} and plain.steps == 1


def test_dx_norms_of_a_functional_model_match_the_same_sequential(rng):
    import tinycnn
    inputs = tinycnn.Input(shape=(4,))
    outputs = Dense(2, activation="softmax")(Dense(3, activation="relu")(inputs))
    functional = tinycnn.Model(inputs, outputs)
    functional.compile(optimizer="sgd", loss="categorical_crossentropy")
    sequential = tiny_dense_model()
    sequential.set_weights(functional.get_weights())
    x = rng.standard_normal((6, 4)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[[0, 1, 1, 0, 1, 0]]
    with plot.record_gradient_norms(functional, dx=True) as norms:
        functional.train_on_batch(x, y)
    expected = hand_dx_norms(sequential, x.astype(np.float64), y)
    np.testing.assert_allclose([v[0] for v in norms.dx.values()], expected, rtol=1e-5)


def test_dx_of_a_fork_is_recorded_for_every_layer(rng):
    import tinycnn
    from tinycnn.layers import Add
    inputs = tinycnn.Input(shape=(4,))
    h = Dense(3, activation="relu")(inputs)
    outputs = Dense(2, activation="softmax")(Add()([Dense(3)(h), Dense(3)(h)]))
    model = tinycnn.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    x = rng.standard_normal((6, 4)).astype(np.float32)
    with plot.record_gradient_norms(model, dx=True) as norms:
        model.train_on_batch(x, np.eye(2, dtype=np.float32)[[0, 1, 1, 0, 1, 0]])
    assert list(norms.dx) == [layer.name for layer in model.layers]
    assert all(len(v) == 1 and np.isfinite(v[0]) and v[0] > 0 for v in norms.dx.values())


def test_gradient_flow_draws_the_dx_profile_by_layer():
    norms = plot.GradientNorms({"conv2d": [1.0, 2.0], "dense": [0.5, 0.5]})
    norms.dx = {"conv2d": [1e-4, 1e-3], "flatten": [1e-2, 2e-2], "dense": [0.1, 0.3]}
    fig = plot.gradient_flow(norms)
    assert len(fig.axes) == 2
    profile = fig.axes[1]
    assert [t.get_text() for t in profile.get_xticklabels()] == ["conv2d", "flatten", "dense"]
    assert [line.get_label() for line in profile.lines] == ["step 1", "step 2"]
    np.testing.assert_allclose(profile.lines[0].get_ydata(), [1e-4, 1e-2, 0.1])
    np.testing.assert_allclose(profile.lines[1].get_ydata(), [1e-3, 2e-2, 0.3])
    assert "dL/dx" in profile.get_title() and profile.get_yscale() == "log"
    smoothed = plot.gradient_flow(norms, smooth=2).axes[1]
    np.testing.assert_allclose(smoothed.lines[0].get_ydata(), [5.5e-4, 1.5e-2, 0.2])


# ----------------------------------------------------------------------------------------
# update-to-weight ratios
# ----------------------------------------------------------------------------------------
def test_update_ratios_are_lr_times_gradient_over_weight_for_sgd(rng):
    from tinycnn.optimizers import SGD
    model = tiny_dense_model()
    model.compile(optimizer=SGD(learning_rate=0.1), loss="categorical_crossentropy")
    x = rng.standard_normal((5, 4)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[[0, 1, 1, 0, 1]]
    expected = []
    with plot.record_update_ratios(model) as ratios:
        for _ in range(2):
            before = {layer.name: [p.astype(np.float64) for p in layer.params.values()] for layer in model.layers}
            model.train_on_batch(x, y)
            expected.append({layer.name: 0.1 * plot.gradient_norm(layer) /
                             np.sqrt(sum(np.sum(w ** 2) for w in before[layer.name])) for layer in model.layers})
    assert ratios.steps == 2
    for name, values in ratios.items():
        np.testing.assert_allclose(values, [e[name] for e in expected], rtol=1e-4)
    assert "apply" not in vars(model.optimizer)                      # the optimizer as it was
    model.train_on_batch(x, y)
    assert ratios.steps == 2


def test_update_ratios_skip_frozen_layers_and_need_a_compiled_model(rng):
    model = tiny_dense_model()
    model.layers[0].trainable = False
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    with plot.record_update_ratios(model) as ratios:
        model.train_on_batch(rng.standard_normal((3, 4)).astype(np.float32), np.eye(2)[[0, 1, 0]])
    assert list(ratios) == [model.layers[1].name] and ratios.steps == 1
    uncompiled = Sequential([Dense(2, input_shape=(3,))])
    with pytest.raises(ValueError, match="not compiled"):
        with plot.record_update_ratios(uncompiled):
            pass


def test_update_ratios_plot_has_the_guide_line():
    fig = plot.update_ratios({"conv2d": [1e-3, 2e-3, 3e-3], "dense": [1e-4, 1e-4, 1e-4]}, smooth=2)
    ax = fig.axes[0]
    guide, conv, dense = ax.lines
    assert guide.get_label().startswith("0.001") and list(guide.get_ydata()) == [1e-3, 1e-3]
    np.testing.assert_allclose(conv.get_ydata(), [1.5e-3, 2.5e-3])
    assert dense.get_label() == "dense" and ax.get_yscale() == "log"
    with pytest.raises(ValueError, match="ratio per step"):
        plot.update_ratios({})


# ----------------------------------------------------------------------------------------
# activation histograms and dead ReLUs
# ----------------------------------------------------------------------------------------
def dead_half_model():
    """Units 1 and 2 never fire on positive inputs: one by its kernel, one by its bias."""
    model = Sequential([Dense(4, activation="relu", input_shape=(2,)), Dense(3, activation="softmax")])
    model.layers[0].set_weights([np.array([[1, -1, 0, 0], [1, -1, 0, 0]], np.float32),
                                 np.array([0, 0, -1, 1], np.float32)])
    return model


def test_dead_relu_fraction_of_a_constructed_layer(rng):
    model = dead_half_model()
    x = rng.random((20, 2)).astype(np.float32) + 0.1
    relu = model.layers[0].name
    assert plot.dead_relu_fractions(model, x) == {relu: 0.5}
    fig, dead = plot.activation_histograms(model, x)
    assert dead == {relu: 0.5}                                  # the softmax layer is not a ReLU
    titles = [ax.get_title() for ax in fig.axes if ax.patches]
    assert len(titles) == 2 and "dead 50.0%" in titles[0] and "dead" not in titles[1]
    out = model.layers[0].forward(x, training=False)
    counts = [p.get_height() for p in fig.axes[0].patches]
    assert sum(counts) == out.size                              # every activation of the batch is counted
    assert f"std {out.std():.2g}" in titles[0]


def test_dead_fraction_counts_conv_units_per_position_and_relu_layers():
    import tinycnn
    from tinycnn.layers import ReLU
    out = np.zeros((3, 2, 2, 2), np.float32)
    out[0, 0, 0, 0] = 1.0                                        # one of 8 positions fires, once
    out[2, 1, 1, 1] = 0.5
    assert plot.dead_fraction(out) == 6 / 8
    inputs = tinycnn.Input(shape=(2,))
    outputs = ReLU()(Dense(2, use_bias=False)(inputs))
    model = tinycnn.Model(inputs, outputs)
    model.layers[0].set_weights([np.array([[1, -1], [1, -1]], np.float32)])
    dead = plot.dead_relu_fractions(model, np.ones((4, 2), np.float32))
    assert dead == {model.layers[1].name: 0.5}


def test_activations_in_training_mode_leave_the_moving_statistics(rng):
    from tinycnn.layers import BatchNormalization
    model = Sequential([Dense(4, activation="relu", input_shape=(3,)), BatchNormalization(), Dropout(0.5),
                        Dense(2, activation="softmax")])
    before = [w.copy() for w in model.get_weights()]
    x = rng.standard_normal((32, 3)).astype(np.float32)
    records = plot.activations(model, x, training=True)
    bn = records[1][2]
    np.testing.assert_allclose(bn.mean(axis=0), 0, atol=1e-5)    # the batch's statistics were used
    for w, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(w, b)
    fig, _ = plot.activation_histograms(model, x, training=True, layers=[model.layers[1].name])
    assert "training mode" in fig._suptitle.get_text()
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        plot.activation_histograms(model, x, layers=["nope"])


# ----------------------------------------------------------------------------------------
# colour bars and channel numbers
# ----------------------------------------------------------------------------------------
def test_feature_maps_have_colour_bars_and_channel_numbers(rng):
    model = small_model()
    fig = plot.feature_maps(model, rng.random((8, 8, 1)).astype(np.float32), max_maps=3)
    colorbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(colorbars) == 4                                  # input, conv, pool rows and the Dense strip
    conv = [ax for ax in fig.axes if ax.images and ax.get_ylabel().startswith(model.layers[0].name)][0]
    row = fig.axes[fig.axes.index(conv):fig.axes.index(conv) + 3]
    assert [ax.get_title() for ax in row] == ["ch 0", "ch 1", "ch 2"]
    assert len({ax.images[0].get_clim() for ax in row}) == 1     # one scale per row, as its colour bar says


def test_filters_colour_bar_is_labelled(rng):
    fig = plot.filters(rng.standard_normal((3, 3, 1, 4)))
    colorbar = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(colorbar) == 1 and "weight" in colorbar[0].get_ylabel()
