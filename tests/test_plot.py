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
