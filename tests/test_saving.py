"""Whole models on disk: configs, JSON, .keras files and .weights.h5, here and with real Keras.

The Keras tests run where keras (TensorFlow) is installed, the HDF5 ones where h5py is; the
rest, including a .keras file without h5py (weights as .npz inside), run everywhere.
"""
import json
import zipfile

import numpy as np
import pytest

import tinycnn
from tinycnn import layers as L
from tinycnn import saving
from tinycnn.models import Sequential, load_model, model_from_json

X = np.random.default_rng(0).random((12, 8, 8, 1), dtype=np.float32)
Y = tinycnn.to_categorical(np.arange(12) % 3, 3)


def course_model(dropout=True, **compile_args):
    tinycnn.set_random_seed(3)
    model = Sequential([L.Input((8, 8, 1)), L.Conv2D(4, 3, activation="relu", kernel_regularizer="l2"),
                        L.BatchNormalization(), L.MaxPooling2D(), L.Flatten()]
                       + ([L.Dropout(0.5)] if dropout else []) + [L.Dense(3, activation="softmax")])
    model.compile(**{"optimizer": tinycnn.optimizers.Adam(1e-3), "loss": "categorical_crossentropy",
                     "metrics": ["accuracy"], **compile_args})
    return model


def same_weights(a, b):
    return len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b))


def trained(model, steps=3):
    for _ in range(steps):
        model.train_on_batch(X, Y)
    return model


# -- configs ------------------------------------------------------------------------------
LAYERS = [L.Conv2D(3, (3, 2), strides=2, padding="same", activation="relu", kernel_initializer="he_normal",
                   bias_regularizer=tinycnn.regularizers.l1(0.1)),
          L.Dense(5, activation="gelu", use_bias=False), L.Flatten(), L.Dropout(0.3, seed=4),
          L.MaxPooling2D(3, strides=1, padding="same"), L.AveragePooling2D(2), L.GlobalAveragePooling2D(keepdims=True),
          L.GlobalMaxPooling2D(), L.BatchNormalization(momentum=0.9, epsilon=1e-5, center=False),
          L.Activation("tanh"), L.ReLU(), L.LeakyReLU(0.1), L.Softmax(), L.ZeroPadding2D(((1, 2), (0, 3))),
          L.Reshape((4, -1)), L.Rescaling(1 / 255, offset=-1), L.UpSampling2D(3, interpolation="bilinear")]


@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: type(layer).__name__)
def test_a_layer_comes_back_from_its_config_as_json(layer):
    config = json.loads(json.dumps(layer.get_config()))       # a config is plain JSON
    again = type(layer).from_config(config)
    assert json.loads(json.dumps(again.get_config())) == config
    assert config["name"] == layer.name and config["trainable"] is True


def test_unsupported_keras_arguments_in_a_config_are_refused_by_name():
    config = L.Conv2D(2, 3).get_config()
    with pytest.raises(ValueError, match=r"Conv2D.*groups=2 is not supported"):
        L.Conv2D.from_config({**config, "groups": 2})
    with pytest.raises(ValueError, match=r"Dense.*kernel_constraint"):
        L.Dense(2, kernel_constraint="non_neg")
    with pytest.raises(ValueError, match=r"only dtype='float32'"):
        L.Dense(2, dtype="float16")


def test_to_json_and_model_from_json_rebuild_the_architecture_with_new_weights():
    model = course_model()
    model.layers[1].trainable = False
    again = model_from_json(model.to_json())
    assert [type(a) for a in again.layers] == [type(a) for a in model.layers]
    assert [a.name for a in again.layers] == [a.name for a in model.layers]
    assert [w.shape for w in again.get_weights()] == [w.shape for w in model.get_weights()]
    assert again.layers[1].trainable is False and not again.compiled
    assert again.get_config() == model.get_config()
    with pytest.raises(ValueError, match="JSON text"):
        model_from_json("{not json")


def test_sequential_get_config_starts_with_an_input_layer_as_keras():
    config = course_model().get_config()
    assert config["layers"][0]["class_name"] == "InputLayer"
    assert config["layers"][0]["config"]["batch_shape"] == [None, 8, 8, 1]
    assert config["layers"][1]["build_config"] == {"input_shape": [None, 8, 8, 1]}
    assert config["build_input_shape"] == [None, 8, 8, 1]


# -- .keras files ---------------------------------------------------------------------------
def test_save_and_load_model_keep_architecture_weights_and_optimizer_state(tmp_path):
    model = trained(course_model(dropout=False))
    model.save(tmp_path / "m.keras")
    again = load_model(tmp_path / "m.keras")
    assert same_weights(again.get_weights(), model.get_weights())
    assert again.compiled and again.metrics == ["accuracy"] and again.optimizer.iterations == 3
    for key, state in model.optimizer.state.items():
        assert all(np.array_equal(state[n], again.optimizer.state[key][n]) for n in ("m", "v"))
    model.train_on_batch(X, Y)                 # the next step is the same as if it had never been saved
    again.train_on_batch(X, Y)
    assert same_weights(again.get_weights(), model.get_weights())
    with zipfile.ZipFile(tmp_path / "m.keras") as z:
        assert {"metadata.json", "config.json"} <= set(z.namelist())
        assert json.loads(z.read("metadata.json"))["keras_version"].startswith("3.")
        assert json.loads(z.read("config.json"))["compile_config"]["loss"] == "categorical_crossentropy"


def test_loss_metric_objects_and_schedules_survive_a_save(tmp_path):
    schedule = tinycnn.optimizers.schedules.ExponentialDecay(0.01, 10, 0.5)
    model = course_model(optimizer=tinycnn.optimizers.SGD(schedule, momentum=0.9),
                         loss=tinycnn.losses.CategoricalCrossentropy(label_smoothing=0.1),
                         metrics=[tinycnn.metrics.TopKCategoricalAccuracy(k=2), "accuracy"])
    model.train_on_batch(X, Y)
    model.save(tmp_path / "m.keras")
    again = load_model(tmp_path / "m.keras")
    assert again.loss.label_smoothing == 0.1 and isinstance(again.optimizer, tinycnn.optimizers.SGD)
    assert again.optimizer.get_config() == model.optimizer.get_config()
    assert again.optimizer.learning_rate == model.optimizer.learning_rate     # the schedule, at step 1
    assert again.metrics == model.metrics
    assert again.evaluate(X, Y, verbose=0) == model.evaluate(X, Y, verbose=0)
    assert not load_model(tmp_path / "m.keras", compile=False).compiled


def test_a_custom_layer_loads_through_custom_objects(tmp_path):
    class Doubling(L.Layer):
        def forward(self, x, training=False):
            return 2 * x

        def backward(self, dout):
            return 2 * dout

    model = Sequential([L.Input((3,)), Doubling(name="twice"), L.Dense(2)])
    model.save(tmp_path / "m.keras")
    with pytest.raises(ValueError, match=r"'Doubling' that tinycnn does not have.*custom_objects"):
        load_model(tmp_path / "m.keras")
    again = load_model(tmp_path / "m.keras", custom_objects={"Doubling": Doubling})
    assert np.allclose(again(np.ones((1, 3))), model(np.ones((1, 3))))


def test_a_function_metric_cannot_be_written_and_says_how_to_save_anyway(tmp_path):
    model = course_model(metrics=[lambda y, p: (y == p).mean()])
    with pytest.raises(ValueError, match="include_optimizer=False"):
        model.save(tmp_path / "m.keras")
    assert not (tmp_path / "m.keras").exists()
    model.save(tmp_path / "m.keras", include_optimizer=False)
    assert not load_model(tmp_path / "m.keras").compiled


@pytest.mark.parametrize("case", ["missing", "not a zip", "truncated", "legacy h5", "no weights", "bad name",
                                  "exists", "unbuilt"])
def test_bad_model_files_get_clear_errors(tmp_path, case):
    path = tmp_path / "m.keras"
    model = course_model()
    if case == "missing":
        with pytest.raises(FileNotFoundError, match="no such file"):
            load_model(path)
    elif case == "not a zip":
        path.write_bytes(b"hello")
        with pytest.raises(ValueError, match="not a .keras file"):
            load_model(path)
    elif case == "truncated":
        model.save(path)
        path.write_bytes(path.read_bytes()[:200])
        with pytest.raises(ValueError, match="not a .keras file|damaged"):
            load_model(path)
    elif case == "legacy h5":
        (tmp_path / "m.h5").write_bytes(b"x")
        with pytest.raises(ValueError, match="legacy Keras 2 HDF5"):
            load_model(tmp_path / "m.h5")
    elif case == "no weights":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("config.json", json.dumps(saving.model_entry(model)))
        with pytest.raises(ValueError, match="holds no weights"):
            load_model(path)
    elif case == "bad name":
        with pytest.raises(ValueError, match=r"must end in '\.keras'"):
            model.save(tmp_path / "m.zip")
    elif case == "exists":
        path.write_bytes(b"keep me")
        with pytest.raises(FileExistsError):
            model.save(path, overwrite=False)
        assert path.read_bytes() == b"keep me"
    else:
        with pytest.raises(ValueError, match="not built"):
            Sequential([L.Dense(2)]).save(path)


def test_without_h5py_the_keras_zip_holds_npz_weights_and_h5_names_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(saving, "h5py_or_none", lambda: None)
    model = trained(course_model())
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as z:
        assert "model.weights.npz" in z.namelist()
    assert same_weights(load_model(tmp_path / "m.keras").get_weights(), model.get_weights())
    with pytest.raises(ValueError, match=r"needs h5py.*tinycnn\[h5\].*\.weights\.npz"):
        model.save_weights(tmp_path / "m.weights.h5")
    assert not (tmp_path / "m.weights.h5").exists()          # never a zip under an .h5 name


# -- HDF5 weights --------------------------------------------------------------------------
def test_weights_h5_is_hdf5_in_keras_layout_and_round_trips(tmp_path):
    h5py = pytest.importorskip("h5py")
    model = trained(course_model())
    path = tmp_path / "m.weights.h5"
    model.save_weights(path)
    assert h5py.is_hdf5(path) and not zipfile.is_zipfile(path)
    with h5py.File(path) as f:
        assert f["layers/conv2d/vars/0"].shape == (3, 3, 1, 4)
        assert f["layers/batch_normalization/vars/3"].shape == (4,)           # moving_variance, 4th as in Keras
        assert f["optimizer/vars/0"][()] == 3                                 # iterations
    fresh = course_model()
    assert not same_weights(fresh.get_weights(), model.get_weights())
    fresh.load_weights(path)
    assert same_weights(fresh.get_weights(), model.get_weights())
    other = Sequential([L.Input((8, 8, 1)), L.Conv2D(4, 3), L.Conv2D(4, 3, name="another"), L.Flatten(), L.Dense(3)])
    with pytest.raises(ValueError, match=r"no weights for Conv2D 'another' at 'layers/conv2d_1'.*kind and position"):
        other.load_weights(path)


# -- interchange with real Keras -----------------------------------------------------------
@pytest.fixture(scope="module")
def keras():
    pytest.importorskip("h5py")
    return pytest.importorskip("keras")


def keras_twin(keras):
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.BatchNormalization(), keras.layers.MaxPooling2D(),
                              keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def test_a_model_trained_here_loads_in_keras(tmp_path, keras):
    model = trained(course_model(dropout=False))
    model.save(tmp_path / "m.keras")
    theirs = keras.models.load_model(tmp_path / "m.keras")
    assert np.allclose(theirs.predict(X, verbose=0), model.predict(X, verbose=0), atol=1e-6)
    assert int(theirs.optimizer.iterations) == 3
    assert same_weights([w.numpy() for w in theirs.weights], model.get_weights())
    model.save_weights(tmp_path / "m.weights.h5")
    fresh = keras_twin(keras)
    fresh.optimizer.build(fresh.trainable_variables)      # else Keras skips the optimizer's part, with a warning
    fresh.load_weights(tmp_path / "m.weights.h5")
    assert int(fresh.optimizer.iterations) == 3
    assert np.allclose(fresh.predict(X, verbose=0), model.predict(X, verbose=0), atol=1e-6)


def test_a_keras_model_loads_here_with_its_optimizer_state(tmp_path, keras):
    theirs = keras_twin(keras)
    theirs.fit(X, Y, batch_size=12, epochs=2, verbose=0, shuffle=False)
    theirs.save(tmp_path / "k.keras")
    ours = load_model(tmp_path / "k.keras")
    assert [type(layer).__name__ for layer in ours.layers] == [type(layer).__name__ for layer in theirs.layers]
    assert np.allclose(ours.predict(X, verbose=0), theirs.predict(X, verbose=0), atol=1e-6)
    assert ours.optimizer.iterations == 2
    variables = [v.numpy() for v in theirs.optimizer.variables]
    kernel = ours.optimizer.state[(ours.layers[0].name, "kernel")]           # Keras's names, from its config
    assert ours.layers[0].name == theirs.layers[0].name
    assert np.array_equal(kernel["m"], variables[2]) and np.array_equal(kernel["v"], variables[3])
    theirs.train_on_batch(X, Y)                # one more Adam step on each, from the same state
    ours.train_on_batch(X, Y)
    for a, b in zip(ours.get_weights(), [w.numpy() for w in theirs.weights]):
        assert np.allclose(a, b, atol=2e-5)
    theirs.save_weights(tmp_path / "k.weights.h5")
    ours.load_weights(tmp_path / "k.weights.h5")
    assert same_weights(ours.get_weights(), [w.numpy() for w in theirs.weights])


# -- functional models ---------------------------------------------------------------------
def functional_model():
    tinycnn.set_random_seed(5)
    inputs = tinycnn.Input((8, 8, 1), name="image")
    x = L.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    y = L.BatchNormalization()(L.Conv2D(4, 3, padding="same")(x))
    z = L.Concatenate()([L.Add()([x, y]), x])
    shared = L.Dense(3)
    out = L.Dense(3, activation="softmax")(shared(shared(L.Dense(3)(L.GlobalAveragePooling2D()(z)))))   # two calls
    model = tinycnn.Model(inputs, out, name="branchy")
    model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    return model


def test_a_functional_model_saves_and_loads_with_its_graph(tmp_path):
    model = trained(functional_model())
    model.save(tmp_path / "f.keras")
    again = load_model(tmp_path / "f.keras")
    assert type(again).__name__ == "Functional" and again.name == "branchy"
    assert [layer.name for layer in again.layers] == [layer.name for layer in model.layers]
    assert np.array_equal(again.predict(X, verbose=0), model.predict(X, verbose=0))
    model.train_on_batch(X, Y)
    again.train_on_batch(X, Y)
    assert same_weights(again.get_weights(), model.get_weights())
    rebuilt = model_from_json(model.to_json())
    assert rebuilt.get_config() == model.get_config()


def test_a_functional_model_with_a_shared_layer_goes_to_keras_and_back(tmp_path, keras):
    model = trained(functional_model())
    model.save(tmp_path / "f.keras")
    theirs = keras.models.load_model(tmp_path / "f.keras")
    assert np.allclose(theirs.predict(X, verbose=0), model.predict(X, verbose=0), atol=1e-6)
    theirs.save(tmp_path / "k.keras")
    ours = load_model(tmp_path / "k.keras")
    assert np.allclose(ours.predict(X, verbose=0), theirs.predict(X, verbose=0), atol=1e-6)
    assert ours.optimizer.iterations == 3
