"""Sequential's Keras API: summary, counts, fit/evaluate/predict, weights, seeds, progress bar."""
import contextlib
import io
import pathlib

import numpy as np
import pytest

import tinycnn
from tinycnn import optimizers, plot, seed
from tinycnn.layers import Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D
from tinycnn.models import History, Sequential
from tinycnn.progress import ProgressBar

TUTORIAL = pathlib.Path(__file__).resolve().parents[2] / "shared" / "seed-tutorial.md"


def small_model(**compile_kwargs):
    model = Sequential([
        Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1)),
        MaxPooling2D(),
        Flatten(),
        Dense(3, activation="softmax"),
    ])
    model.compile(**{"optimizer": optimizers.Adam(0.01), "loss": "categorical_crossentropy", "metrics": ["accuracy"],
                     **compile_kwargs})
    return model


def toy_data(n=64, rng=None):
    """Three classes told apart by which third of the image is bright."""
    rng = rng or np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    x = rng.random((n, 8, 8, 1)).astype(np.float32) * 0.3
    for k in range(3):
        x[y == k, :, 3 * k:3 * k + 2, 0] += 1
    return x, tinycnn.to_categorical(y, 3)


def test_seed_model_counts_and_summary_match_the_tutorial():
    model = seed.build_model()
    assert model.count_params() == 225_034
    assert [layer.count_params() for layer in model.layers] == [320, 0, 0, 18_496, 0, 0, 0, 204_928, 0, 1_290]
    assert len(model.layers) == 10
    lines = []
    model.summary(print_fn=lines.append)
    if TUTORIAL.exists():                                   # ../shared is beside the checkout in CI
        text = TUTORIAL.read_text().splitlines()
        start = text.index('Model: "sequential"')
        assert lines == text[start:start + len(lines)]
    assert lines[0] == 'Model: "sequential"'
    assert "conv2d_1 (Conv2D)            (None, 11, 11, 64)       18496" in [line.rstrip() for line in lines]
    assert lines[-3:] == ["Total params: 225,034", "Trainable params: 225,034", "Non-trainable params: 0"]


def test_keras_automatic_names():
    names = [layer.name for layer in seed.build_model().layers]
    assert names == ["conv2d", "max_pooling2d", "dropout", "conv2d_1", "max_pooling2d_1", "dropout_1",
                     "flatten", "dense", "dropout_2", "dense_1"]
    assert Sequential().name == "sequential_1"


def test_built_at_once_so_predict_and_weights_work_before_compile():
    model = seed.build_model()
    assert model.input_shape == (None, 28, 28, 1) and model.output_shape == (None, 10)
    assert [w.shape for w in model.get_weights()][:2] == [(3, 3, 1, 32), (32,)]
    assert all(w.dtype == np.float32 for w in model.get_weights())
    probs = model.predict(np.zeros((3, 28, 28, 1), np.float32), verbose=0)
    assert probs.shape == (3, 10) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)


def test_input_layer_and_add():
    model = Sequential([Input((8, 8, 1))])
    model.add(Conv2D(2, 3))
    model.add(Flatten())
    assert len(model.layers) == 2 and model.output_shape == (None, 72)


def test_a_kernel_larger_than_its_input_fails_when_built():
    with pytest.raises(ValueError, match=r"conv2d.*window 5x5 is larger than its valid-padded input 4x4"):
        Sequential([Conv2D(1, 5, input_shape=(4, 4, 1))])


def test_fit_returns_history_and_learns():
    x, y = toy_data(96)
    model = small_model()
    history = model.fit(x, y, batch_size=16, epochs=6, validation_data=(x[:32], y[:32]), verbose=0)
    assert isinstance(history, History)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 6 for v in history.history.values())
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["accuracy"][-1] > 0.9
    loss, accuracy = model.evaluate(x, y, verbose=0)
    assert isinstance(loss, float) and 0 <= accuracy <= 1 and accuracy > 0.9


def test_evaluate_without_metrics_returns_the_loss_alone():
    x, y = toy_data(20)
    model = small_model(metrics=None)
    result = model.evaluate(x, y, verbose=0)
    assert isinstance(result, float) and result > 0


def test_every_accuracy_name_given_to_compile_is_logged():
    """metrics=["accuracy", "acc"]: fit's history, its progress bar and evaluate all report both names."""
    x, y = toy_data(40)
    model = small_model(metrics=["accuracy", "acc"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        history = model.fit(x, y, epochs=2, batch_size=8, validation_data=(x[:10], y[:10]), verbose=1)
    logs = history.history
    assert set(logs) == {"loss", "accuracy", "acc", "val_loss", "val_accuracy", "val_acc"}
    assert logs["accuracy"] == logs["acc"] and logs["val_accuracy"] == logs["val_acc"]
    assert " - acc: " in out.getvalue() and " - val_acc: " in out.getvalue()
    result = model.evaluate(x, y, verbose=0, return_dict=True)
    assert set(result) == {"loss", "accuracy", "acc"} and result["accuracy"] == result["acc"]


def test_validation_split_holds_out_the_last_samples():
    x, y = toy_data(50)
    history = small_model().fit(x, y, epochs=1, validation_split=0.2, verbose=0, batch_size=8)
    assert "val_loss" in history.history


def test_train_on_batch_reports_the_loss_before_the_update():
    x, y = toy_data(16)
    model = small_model()
    expected_loss, expected_acc = model.evaluate(x, y, verbose=0, batch_size=16)   # no dropout here
    loss, acc = model.train_on_batch(x, y)
    assert loss == pytest.approx(expected_loss, rel=1e-5) and acc == pytest.approx(expected_acc)
    assert model.train_on_batch(x, y)[0] < loss


def test_sparse_labels_and_other_optimizers():
    x, y = toy_data(64)
    for optimizer in ["sgd", "rmsprop", optimizers.SGD(0.1, momentum=0.9, nesterov=True)]:
        model = small_model(loss="sparse_categorical_crossentropy", optimizer=optimizer)
        before = model.evaluate(x, y.argmax(1), verbose=0)[0]
        model.fit(x, y.argmax(1), epochs=3, batch_size=8, verbose=0)
        assert model.evaluate(x, y.argmax(1), verbose=0)[0] < before


def test_adam_follows_keras_update_rule():
    p = np.array([1.0, -2.0], np.float32)
    g = np.array([0.5, 0.25], np.float32)
    adam = optimizers.Adam(learning_rate=0.1)
    m = v = np.zeros(2)
    expected = p.astype(np.float64)
    for t in (1, 2):
        adam.apply([("w", p, g)])
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        expected = expected - 0.1 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * m / (np.sqrt(v) + 1e-7)
    np.testing.assert_allclose(p, expected, rtol=1e-5)   # float32 round-off


def test_save_load_round_trip_gives_identical_predictions(tmp_path):
    x, y = toy_data(32)
    model = small_model()
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "toy.weights.npz"
    model.save_weights(path)
    assert path.exists() and list(tmp_path.iterdir()) == [path]      # exactly the path given
    other = small_model()
    assert not np.array_equal(other.predict(x, verbose=0), model.predict(x, verbose=0))
    other.load_weights(path)
    np.testing.assert_array_equal(other.predict(x, verbose=0), model.predict(x, verbose=0))


def test_same_seed_gives_identical_weights():
    def build(s):
        tinycnn.set_random_seed(s)
        return seed.build_model().get_weights()
    a, b, c = build(7), build(7), build(8)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.array_equal(a[0], c[0])


def test_dropout_is_off_at_inference():
    model = Sequential([Dropout(0.5, input_shape=(10,))])
    x = np.ones((4, 10), np.float32)
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)


def test_progress_bar_draws_keras_lines():
    stream = io.StringIO()
    bar = ProgressBar(469, verbose=1, stream=stream)
    bar.update(469, {"loss": 0.2615, "accuracy": 0.9196, "val_loss": 0.0537, "val_accuracy": 0.9827})
    line = stream.getvalue()
    assert line.startswith("469/469 [==============================] - ")
    assert line.rstrip("\n").endswith("/step - loss: 0.2615 - accuracy: 0.9196 - val_loss: 0.0537 - val_accuracy: 0.9827")
    assert ProgressBar(469).bar(57) == " 57/469 [==>...........................]"
    quiet = io.StringIO()
    ProgressBar(10, verbose=0, stream=quiet).update(10, {"loss": 1.0})
    assert quiet.getvalue() == ""


def test_progress_bar_is_static_outside_a_kernel_even_with_ipykernel_imported():
    """nbclient imports ipykernel into the process that runs the notebooks; that process is
    no notebook, and its captured output must not fill with redraws."""
    pytest.importorskip("ipykernel")
    import ipykernel.kernelspec  # noqa: F401  (what starting a kernel with nbclient imports)
    stream = io.StringIO()
    bar = ProgressBar(5, verbose=1, stream=stream, interval=0.0)
    assert not bar.dynamic
    for step in range(1, 6):
        bar.update(step, {"loss": 1.0}, finished=False)
    bar.update(5, {"loss": 1.0}, finished=True)
    assert stream.getvalue().count("5/5 [") == 1 and "\r" not in stream.getvalue()


def test_fit_prints_epoch_headers_and_one_final_line_per_epoch(capsys):
    x, y = toy_data(40)
    small_model().fit(x, y, epochs=2, batch_size=16, verbose=1, validation_data=(x, y))
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Epoch 1/2" and out[2] == "Epoch 2/2"
    assert out[1].startswith("3/3 [==============================] - ") and " - val_accuracy: " in out[1]
    small_model().fit(x, y, epochs=2, batch_size=16, verbose=2)
    assert len(capsys.readouterr().out.splitlines()) == 4
    small_model().fit(x, y, epochs=2, verbose=0)
    assert capsys.readouterr().out == ""


def test_plot_history_returns_a_figure():
    history = History()
    for epoch in range(3):
        history.append(epoch, {"loss": 1.0 / (epoch + 1), "accuracy": 0.5 + epoch / 10,
                               "val_loss": 1.2 / (epoch + 1), "val_accuracy": 0.4 + epoch / 10})
    fig = plot.history(history)
    assert len(fig.axes) == 2
    assert [len(ax.lines) for ax in fig.axes] == [2, 2]


def test_a_short_training_on_a_subset_learns(mnist_prepared):
    """5,000 training images, one epoch: the seed model already reads digits (0.902-0.915 over seeds 0-3)."""
    (x_train, y_train), (x_test, y_test) = mnist_prepared
    tinycnn.set_random_seed(0)
    model = seed.build_model()
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    model.fit(x_train[:5000], y_train[:5000], batch_size=32, epochs=1, verbose=0)
    loss, accuracy = model.evaluate(x_test[:1000], y_test[:1000], verbose=0)
    assert accuracy >= 0.9 and loss < 0.5


def test_pop_get_layer_and_build_with_a_none_batch():
    """Keras's Sequential.pop(), get_layer(name=None, index=None) and build((None, ...))."""
    model = Sequential([Conv2D(2, 3), Flatten(), Dense(3, name="head")])
    model.build((None, 6, 6, 1))
    assert model.output_shape == (None, 3) and model.input_shape == (None, 6, 6, 1)
    assert model.get_layer("head") is model.layers[-1] and model.get_layer(index=0) is model.layers[0]
    assert model.get_layer(index=-1).name == "head"
    with pytest.raises(ValueError, match="no layer named 'tail'.*'head'"):
        model.get_layer("tail")
    with pytest.raises(ValueError, match="not both"):
        model.get_layer("head", 0)
    with pytest.raises(ValueError, match="out of range"):
        model.get_layer(index=3)
    x = np.random.default_rng(0).random((4, 6, 6, 1), dtype=np.float32)
    assert model.predict(x, verbose=0).shape == (4, 3)
    head = model.pop()
    assert head.name == "head" and model.output_shape == (None, 32)
    assert model.predict(x, verbose=0).shape == (4, 32)              # the plan follows the new layers
    with pytest.raises(ValueError, match="input_shape"):
        Sequential([Dense(2)]).build((None, None, 3))
    with pytest.raises(ValueError, match="no layers to remove"):
        Sequential().pop()
