"""A student's mistake gets an error that teaches (issue 6).

Every case raises ValueError or TypeError (or a subclass) from tinycnn's own code, and the
message names the layer or argument, what was given and what was expected. `expect` checks
all three: the type, that the raise happened inside tinycnn (not deep in NumPy), and that
every given fragment appears in the message.

The NaN guard (fit stops on a NaN/inf loss, weights as before the batch) is tested at the end.
"""
import os
import re

import numpy as np
import pytest

import tinycnn
from tinycnn import optimizers
from tinycnn.layers import Activation, Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D
from tinycnn.models import NonFiniteLossError, NotCompiledError, Sequential
from tinycnn.optimizers import SGD, Adam, RMSprop
from tinycnn.utils import to_categorical

PACKAGE = os.path.dirname(tinycnn.__file__)


def expect(error, call, *fragments):
    """call() raises `error` from tinycnn's code, with every fragment in its message."""
    with pytest.raises(error) as info:
        call()
    assert issubclass(info.type, (ValueError, TypeError))
    origin = info.traceback[-1].path
    assert str(origin).startswith(PACKAGE), f"raised from {origin}, not from tinycnn: {info.value}"
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"
    return message


def small_model(compile=True, **first):
    first = {"input_shape": (8, 8, 1), **first}
    model = Sequential([Conv2D(2, 3, activation="relu", **first), MaxPooling2D(), Flatten(),
                        Dense(3, activation="softmax")])
    if compile:
        model.compile("adam", "categorical_crossentropy", ["accuracy"])
    return model


def data(n=6):
    rng = np.random.default_rng(0)
    return rng.random((n, 8, 8, 1)).astype(np.float32), to_categorical(np.arange(n) % 3, 3)


# ----------------------------------------------------------------------------------------
# Constructor arguments
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("make, error, fragments", [
    (lambda: Conv2D(0, 3), ValueError, ["Conv2D 'conv2d'", "filters", "positive integer", "received 0"]),
    (lambda: Conv2D(-4, 3), ValueError, ["Conv2D 'conv2d'", "filters", "positive integer", "received -4"]),
    (lambda: Conv2D(2.5, 3), TypeError, ["Conv2D 'conv2d'", "filters", "positive integer", "received 2.5"]),
    (lambda: Conv2D("32", 3), TypeError, ["Conv2D 'conv2d'", "filters", "positive integer", "received '32'"]),
    (lambda: Conv2D(None, 3), TypeError, ["filters", "positive integer", "received None"]),
    (lambda: Conv2D(True, 3), TypeError, ["filters", "positive integer", "received True"]),
    (lambda: Dense(0), ValueError, ["Dense 'dense'", "units", "positive integer", "received 0"]),
    (lambda: Dense(10.0), TypeError, ["Dense 'dense'", "units", "positive integer", "received 10.0"]),
    (lambda: Dense("10"), TypeError, ["Dense 'dense'", "units", "received '10'"]),
])
def test_filters_and_units(make, error, fragments):
    expect(error, make, *fragments)


@pytest.mark.parametrize("kernel_size, error, received", [
    (0, ValueError, "received 0"),
    (-3, ValueError, "received -3"),
    ((3, 0), ValueError, "received 0"),
    ((3,), ValueError, "received (3,)"),
    ((3, 3, 3), ValueError, "received (3, 3, 3)"),
    ("3", ValueError, "received '3'"),
    (3.0, ValueError, "received 3.0"),
    ((3, 1.5), TypeError, "received 1.5"),
])
def test_kernel_size(kernel_size, error, received):
    expect(error, lambda: Conv2D(4, kernel_size), "Conv2D 'conv2d'", "kernel_size", "integer", received)


@pytest.mark.parametrize("layer", [lambda s: Conv2D(4, 3, strides=s), lambda s: MaxPooling2D(2, strides=s)])
@pytest.mark.parametrize("strides, received", [(0, "received 0"), (-1, "received -1"), ((1,), "received (1,)"),
                                               ((2, 2, 2), "received (2, 2, 2)"), ("2", "received '2'")])
def test_strides(layer, strides, received):
    message = expect(ValueError, lambda: layer(strides), "strides", "integer", received)
    assert re.match(r"(Conv2D 'conv2d'|MaxPooling2D 'max_pooling2d')", message)


@pytest.mark.parametrize("pool_size, received", [(0, "received 0"), ((2, 0), "received 0"), ((2,), "received (2,)"),
                                                 ((2, 2, 2), "received (2, 2, 2)"), (1.5, "received 1.5")])
def test_pool_size(pool_size, received):
    expect(ValueError, lambda: MaxPooling2D(pool_size), "MaxPooling2D 'max_pooling2d'", "pool_size", "integer",
           received)


@pytest.mark.parametrize("rate, error, received", [
    (1, ValueError, "received 1"),
    (1.5, ValueError, "received 1.5"),
    (-0.1, ValueError, "received -0.1"),
    (float("nan"), ValueError, "received nan"),
    ("0.5", TypeError, "received '0.5'"),
    (None, TypeError, "received None"),
    (True, TypeError, "received True"),
])
def test_dropout_rate(rate, error, received):
    expect(error, lambda: Dropout(rate), "Dropout 'dropout'", "rate", "[0, 1)", received)


@pytest.mark.parametrize("layer, name", [(lambda p: Conv2D(4, 3, padding=p), "Conv2D 'conv2d'"),
                                         (lambda p: MaxPooling2D(padding=p), "MaxPooling2D 'max_pooling2d'")])
@pytest.mark.parametrize("padding", ["full", "causal", None, 1])
def test_padding(layer, name, padding):
    expect(ValueError, lambda: layer(padding), name, "padding", "'valid' or 'same'", f"received {padding!r}")


def test_padding_is_case_insensitive_as_in_keras():
    assert Conv2D(4, 3, padding="SAME").padding == "same"


@pytest.mark.parametrize("make, name", [(lambda a: Conv2D(4, 3, activation=a), "Conv2D 'conv2d'"),
                                        (lambda a: Dense(4, activation=a), "Dense 'dense'"),
                                        (lambda a: Activation(a), "Activation 'activation'")])
@pytest.mark.parametrize("activation", ["relu6", "Softmax2", 3, np.tanh])
def test_activation(make, name, activation):
    expect(ValueError, lambda: make(activation), name, "unknown activation", repr(activation),
           "expected one of", "'relu'", "'softmax'")


def test_unexpected_keyword_and_bad_input_shape():
    expect(TypeError, lambda: Conv2D(4, 3, kernal_size=3), "Conv2D", "unexpected keyword", "kernal_size")
    expect(ValueError, lambda: Conv2D(4, 3, input_shape=(28, 0, 1)), "Conv2D 'conv2d'", "input_shape",
           "positive integers", "received (28, 0, 1)")
    expect(ValueError, lambda: Input((28, 28, -1)), "Input", "shape", "positive integers", "(28, 28, -1)")


@pytest.mark.parametrize("build, fragments", [
    (lambda: Sequential([Conv2D(4, 5, input_shape=(4, 4, 1))]),
     ["Conv2D 'conv2d'", "kernel_size=(5, 5)", "4x4", "(None, 4, 4, 1)", "at most (4, 4)"]),
    (lambda: Sequential([Conv2D(4, (1, 5), input_shape=(8, 3, 1))]),
     ["Conv2D 'conv2d'", "kernel_size=(1, 5)", "8x3", "(None, 8, 3, 1)", "at most (8, 3)"]),
    (lambda: Sequential([Conv2D(4, 3, input_shape=(4, 4, 1)), MaxPooling2D(3)]),
     ["MaxPooling2D 'max_pooling2d'", "pool_size=(3, 3)", "2x2", "(None, 2, 2, 4)", "at most (2, 2)"]),
    (lambda: Sequential([Conv2D(4, 3, input_shape=(6, 6, 1)), MaxPooling2D(), Conv2D(4, 3, padding="valid")]),
     ["Conv2D 'conv2d_1'", "kernel_size=(3, 3)", "2x2", "(None, 2, 2, 4)", "at most (2, 2)"]),
])
def test_a_window_larger_than_its_padded_input(build, fragments):
    expect(ValueError, build, *fragments, "valid-padded")


def test_same_padding_always_fits_and_gives_ceil_of_input_over_stride():
    model = Sequential([Conv2D(2, 5, strides=2, padding="same", input_shape=(3, 3, 1)),
                        MaxPooling2D(3, padding="same")])
    assert model.output_shape == (None, 1, 1, 2)


def test_a_layer_that_does_not_fit_is_not_added():
    model = Sequential([Conv2D(4, 3, input_shape=(4, 4, 1))])
    expect(ValueError, lambda: model.add(MaxPooling2D(3)), "pool_size=(3, 3)")
    model.add(MaxPooling2D(2))
    assert [type(layer).__name__ for layer in model.layers] == ["Conv2D", "MaxPooling2D"]


def test_layers_reject_the_wrong_rank():
    expect(ValueError, lambda: Sequential([Conv2D(4, 3, input_shape=(28, 28))]), "Conv2D 'conv2d'",
           "rank 4 (batch, height, width, channels)", "received shape (None, 28, 28)")
    assert Sequential([Dense(4, input_shape=(5, 5, 1))]).output_shape == (None, 5, 5, 4)   # Keras: the last axis


def test_calling_a_layer_directly():
    layer = Conv2D(2, 3)
    layer(np.zeros((1, 5, 5, 1), np.float32))
    expect(ValueError, lambda: layer(np.zeros((1, 6, 6, 1))), "Conv2D 'conv2d'", "expects input of shape",
           "(None, 5, 5, 1)", "received (1, 6, 6, 1)")
    expect(TypeError, lambda: layer(np.zeros((1, 5, 5, 1)).astype(str)), "Conv2D 'conv2d'", "numeric",
           "dtype <U")
    with pytest.raises(RuntimeError, match=r"Dense 'dense': backward\(\) called before forward"):
        Dense(2, input_shape=(3,)).backward(np.zeros((1, 2)))      # STYLE.md: a RuntimeError


@pytest.mark.parametrize("make, fragments", [
    (lambda: Adam(0), ["Adam", "learning_rate", "positive", "received 0"]),
    (lambda: SGD(-0.1), ["SGD", "learning_rate", "positive", "received -0.1"]),
    (lambda: Adam(float("inf")), ["Adam", "learning_rate", "received inf"]),
    (lambda: Adam("0.01"), ["Adam", "learning_rate", "received '0.01'"]),
    (lambda: SGD(0.1, momentum=1.0), ["SGD", "momentum", "[0, 1)", "received 1.0"]),
    (lambda: SGD(0.1, momentum="0.9"), ["SGD", "momentum", "[0, 1)", "received '0.9'"]),
    (lambda: SGD(0.1, momentum=None), ["SGD", "momentum", "received None"]),
    (lambda: Adam(beta_1=1), ["Adam", "beta_1", "[0, 1)", "received 1"]),
    (lambda: Adam(beta_2="x"), ["Adam", "beta_2", "[0, 1)", "received 'x'"]),
    (lambda: Adam(epsilon=-1e-7), ["Adam", "epsilon", "non-negative", "received -1e-07"]),
    (lambda: RMSprop(epsilon="tiny"), ["RMSprop", "epsilon", "non-negative", "received 'tiny'"]),
    (lambda: RMSprop(rho=-0.5), ["RMSprop", "rho", "[0, 1)", "received -0.5"]),
])
def test_optimizer_arguments(make, fragments):
    message = expect((ValueError, TypeError), make, *fragments)
    assert "must" in message


# ----------------------------------------------------------------------------------------
# fit, evaluate and predict inputs
# ----------------------------------------------------------------------------------------
def call(method, model, x, y=None, **kwargs):
    """model.fit / evaluate (x, y) or model.predict (x) quietly."""
    if method == "predict":
        return model.predict(x, verbose=0, **kwargs)
    return getattr(model, method)(x, y, verbose=0, **kwargs)


METHODS = ["fit", "evaluate", "predict"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("change, fragments", [
    (lambda x: x[..., 0], ["received (6, 8, 8)", "np.expand_dims(x, -1)"]),
    (lambda x: np.repeat(x, 3, axis=-1), ["received (6, 8, 8, 3)", "expects 1 channel(s); x has 3"]),
    (lambda x: np.zeros((6, 9, 9, 1)), ["received (6, 9, 9, 1)"]),
    (lambda x: x.transpose(0, 3, 1, 2), ["received (6, 1, 8, 8)"]),
    (lambda x: x[None], ["received (1, 6, 8, 8, 1)"]),
])
def test_the_input_shape_and_channels(method, change, fragments):
    model = small_model()
    x, y = data()
    expect(ValueError, lambda: call(method, model, change(x), y), f"sequential.{method}",
           "expected x of shape (None, 8, 8, 1)", *fragments)


def test_a_single_sample_gets_a_hint_about_the_batch_axis():
    x, _ = data()
    expect(ValueError, lambda: small_model().predict(x[0], verbose=0), "expected x of shape (None, 8, 8, 1)",
           "received (8, 8, 1)", "batch axis")


def test_more_channels_than_the_model_was_built_for():
    model = small_model(input_shape=(8, 8, 3))
    x, y = data()
    expect(ValueError, lambda: model.fit(x, y, verbose=0), "expected x of shape (None, 8, 8, 3)",
           "received (6, 8, 8, 1)", "expects 3 channel(s); x has 1")


def test_a_model_without_input_shape_is_built_by_its_first_data_and_checks_it():
    model = small_model(input_shape=None)
    x, y = data()
    expect(ValueError, lambda: model.fit(x[..., 0], y, verbose=0), "Conv2D 'conv2d'", "rank 4",
           "received shape (None, 8, 8)")
    expect(ValueError, lambda: model.fit(x[:, :3, :3], y, verbose=0), "MaxPooling2D 'max_pooling2d'",
           "pool_size=(2, 2)", "1x1")
    # the failed builds left nothing behind: the right shape still works
    model.fit(x, y, verbose=0)
    assert model.input_shape == (None, 8, 8, 1)


@pytest.mark.parametrize("method", ["fit", "evaluate"])
@pytest.mark.parametrize("labels, fragments", [
    (lambda y: to_categorical(np.arange(6) % 4, 4),
     ["categorical_crossentropy", "(None, 3)", "received targets of shape (6, 4)"]),
    (lambda y: y[:, :2], ["(None, 3)", "received targets of shape (6, 2)"]),
    (lambda y: y.argmax(axis=1), ["(None, 3)", "received targets of shape (6,)", "to_categorical(y, 3)",
                                  "sparse_categorical_crossentropy"]),
])
def test_the_label_width_against_the_output_units(method, labels, fragments):
    model = small_model()
    x, y = data()
    expect(ValueError, lambda: call(method, model, x, labels(y)), f"sequential.{method}", *fragments)


@pytest.mark.parametrize("labels, fragments", [
    (np.array([0, 1, 3, 0, 1, 2]), ["labels must lie in [0, 2]", "3 outputs", "from 0 to 3"]),
    (np.array([0, -1, 2, 0, 1, 2]), ["labels must lie in [0, 2]", "from -1 to 2"]),
    (np.array([0, 1.5, 2, 0, 1, 2]), ["integer class labels", "non-integer"]),
    (np.eye(3)[[0, 1, 2, 0, 1, 2]], ["integer labels of shape (None,)", "received shape (6, 3)",
                                     "categorical_crossentropy"]),
])
def test_sparse_labels(labels, fragments):
    model = small_model(compile=False)
    model.compile("adam", "sparse_categorical_crossentropy")
    x, _ = data()
    expect(ValueError, lambda: model.fit(x, labels, verbose=0), "sequential.fit", "sparse_categorical_crossentropy",
           *fragments)


def test_mean_squared_error_target_width():
    model = Sequential([Dense(2, input_shape=(4,))])
    model.compile("sgd", "mse")
    expect(ValueError, lambda: model.fit(np.ones((3, 4)), np.ones((3, 3)), verbose=0), "sequential.fit",
           "mean_squared_error", "(None, 2)", "received (3, 3)")


@pytest.mark.parametrize("method", ["fit", "evaluate"])
@pytest.mark.parametrize("n_y", [5, 7, 1])
def test_the_lengths_of_x_and_y(method, n_y):
    x, y = data()
    expect(ValueError, lambda: call(method, small_model(), x, np.resize(y, (n_y, 3))), f"sequential.{method}",
           "x and y must have the same length", f"received 6 inputs and {n_y} targets")


def test_scalar_targets():
    x, _ = data()
    expect(ValueError, lambda: small_model().fit(x, 3, verbose=0), "x and y must have the same length",
           "received 6 inputs and 0 targets")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("empty", [lambda x: x[:0], lambda x: [], lambda x: np.float32(1.0)])
def test_empty_data(method, empty):
    x, y = data()
    expect(ValueError, lambda: call(method, small_model(), empty(x), y[:0]), f"sequential.{method}",
           "x is empty", "shape (")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("batch_size", [0, -1, 2.5, "32", True])
def test_batch_size(method, batch_size):
    x, y = data()
    expect(ValueError, lambda: call(method, small_model(), x, y, batch_size=batch_size), method,
           "batch_size must be a positive integer", f"received {batch_size!r}")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [str, object, complex, "datetime64[s]"])
def test_non_numeric_inputs(method, dtype):
    x, y = data()
    bad = x.astype(np.int64).astype(dtype) if dtype == "datetime64[s]" else x.astype(dtype)
    expect(TypeError, lambda: call(method, small_model(), bad, y), f"sequential.{method}",
           "x must be numeric", f"received dtype {bad.dtype}")


@pytest.mark.parametrize("method", ["fit", "evaluate"])
def test_non_numeric_targets(method):
    x, y = data()
    expect(TypeError, lambda: call(method, small_model(), x, np.array(["cat", "dog", "cat", "dog", "cat", "dog"])),
           f"sequential.{method}", "y must be numeric", "received dtype <U3")


def test_ragged_lists():
    expect(ValueError, lambda: small_model().predict([np.zeros((8, 8, 1)), np.zeros((8, 7, 1))], verbose=0),
           "sequential.predict", "x must be an array with one shape for every sample", "list")
    x, _ = data(2)
    expect(ValueError, lambda: small_model().fit(x, [[1, 0, 0], [0, 1]], verbose=0),
           ".fit: y must be an array with one shape for every sample")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_in_the_inputs(method, value):
    x, y = data()
    x[2, 3, 4, 0] = value
    expect(ValueError, lambda: call(method, small_model(), x, y), f"sequential.{method}",
           "x contains NaN or inf", "1 of 384", "expected finite")


def test_float64_inputs_too_large_for_float32():
    x, y = data()
    expect(ValueError, lambda: small_model().fit(x.astype(np.float64) * 1e300, y, verbose=0), "sequential.fit",
           "too large for float32", "inf", "Rescale")


def test_nan_in_the_targets():
    x, y = data()
    y[1, 1] = np.nan
    expect(ValueError, lambda: small_model().fit(x, y, verbose=0), "sequential.fit", "y contains NaN or inf")


def test_validation_data_is_checked_like_x_and_y():
    x, y = data()
    model = small_model()
    expect(ValueError, lambda: model.fit(x, y, validation_data=(x[..., 0], y), verbose=0),
           "sequential.fit (validation_data)", "expected x of shape (None, 8, 8, 1)", "received (6, 8, 8)")
    expect(ValueError, lambda: model.fit(x, y, validation_data=(x, y[:3]), verbose=0),
           "sequential.fit (validation_data)", "received 6 inputs and 3 targets")
    expect(ValueError, lambda: model.fit(x, y, validation_data=x, verbose=0), "validation_data",
           "tuple (x_val, y_val)")
    for split in (1.5, -0.2, "0.2"):
        expect(ValueError, lambda: model.fit(x, y, validation_split=split, verbose=0), "validation_split",
               "[0, 1)", f"received {split!r}")


def test_epochs_and_verbose():
    x, y = data()
    expect(ValueError, lambda: small_model().fit(x, y, epochs=-1, verbose=0), "epochs", "non-negative integer",
           "received -1")
    expect(ValueError, lambda: small_model().fit(x, y, epochs=2.0, verbose=0), "epochs", "received 2.0")
    expect(ValueError, lambda: small_model().fit(x, y, verbose=3), "verbose", "0, 1, 2 or 'auto'", "received 3")


# ----------------------------------------------------------------------------------------
# compile, and calling things in the wrong order
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, error, fragments", [
    (dict(optimizer="adam", loss="crossentropy"), ValueError,
     ["sequential.compile", "unknown loss 'crossentropy'", "expected one of", "'categorical_crossentropy'"]),
    (dict(optimizer="adam", loss=42), ValueError, ["unknown loss 42", "'mse'"]),
    (dict(optimizer="adamw", loss="mse"), ValueError,
     ["sequential.compile", "unknown optimizer 'adamw'", "expected one of", "'adam', 'sgd', 'rmsprop'"]),
    (dict(optimizer=optimizers.Adam, loss="mse"), ValueError, ["unknown optimizer", "Adam()"]),
    (dict(optimizer="adam", loss="mse", metrics=["f1_scor"]), ValueError,
     ["sequential.compile", "unknown metric 'f1_scor'", "expected one of", "'accuracy'"]),
    (dict(optimizer="adam", loss="mse", metrics=[len]), ValueError, ["unknown metric <built-in function len>"]),
    (dict(optimizer="adam", loss="mse", metrics="accuracy"), TypeError,
     ["sequential.compile", "metrics must be a list", "['accuracy']", "received 'accuracy'"]),
])
def test_compile(kwargs, error, fragments):
    expect(error, lambda: small_model(compile=False).compile(**kwargs), *fragments)


def test_compile_accepts_keras_spellings():
    model = small_model(compile=False)
    model.compile(optimizer="Adam", loss="Categorical_Crossentropy", metrics=("acc",))
    assert model.metrics == ["acc"]


@pytest.mark.parametrize("method", ["fit", "evaluate", "train_on_batch"])
def test_training_or_evaluating_before_compile(method):
    x, y = data()
    run = (lambda m: m.train_on_batch(x, y)) if method == "train_on_batch" else \
        (lambda m: getattr(m, method)(x, y, verbose=0))
    message = expect(NotCompiledError, lambda: run(small_model(compile=False)), "sequential",
                     "call compile(optimizer, loss, metrics)", f"before {method}()")
    assert message
    model = small_model(compile=False)
    model.compile("adam")
    expect(NotCompiledError, lambda: run(model), "compiled without a loss", "loss='categorical_crossentropy'",
           f"before {method}()")


def test_predict_needs_no_compile():
    x, _ = data()
    assert small_model(compile=False).predict(x, verbose=0).shape == (6, 3)


def test_a_model_without_layers():
    x, _ = data()
    expect(ValueError, lambda: Sequential().predict(x, verbose=0), "sequential", "has no layers", "predict()")
    expect(TypeError, lambda: Sequential([np.zeros(3)]), "add expects a tinycnn layer", "received ndarray")


# ----------------------------------------------------------------------------------------
# set_weights
# ----------------------------------------------------------------------------------------
def test_set_weights_with_the_wrong_count():
    model = small_model()
    weights = model.get_weights()
    expect(ValueError, lambda: model.set_weights(weights[:-1]), "sequential.set_weights", "expects 4 arrays",
           "received 3")
    expect(ValueError, lambda: model.set_weights(weights + weights[:1]), "expects 4 arrays", "received 5")
    expect(ValueError, lambda: model.layers[0].set_weights(weights[:1]), "Conv2D 'conv2d'.set_weights",
           "expects 2 arrays (kernel, bias)", "received 1")
    expect(ValueError, lambda: model.layers[1].set_weights(weights[:1]), "MaxPooling2D 'max_pooling2d'",
           "expects 0 arrays (none)", "received 1")


def test_set_weights_with_the_wrong_shapes_changes_nothing():
    model = small_model()
    weights = model.get_weights()
    bad = [w + 1 for w in weights[:-1]] + [np.zeros(4, np.float32)]     # only the last one is wrong
    expect(ValueError, lambda: model.set_weights(bad), "sequential.set_weights", "Dense 'dense'", "'bias'",
           "must have shape (3,)", "received (4,)")
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))
    expect(ValueError, lambda: model.set_weights([weights[0].T] + weights[1:]), "Conv2D 'conv2d'", "'kernel'",
           "(3, 3, 1, 2)", "received (2, 1, 3, 3)")
    expect(ValueError, lambda: model.layers[0].set_weights([weights[0][:2], weights[1]]),
           "Conv2D 'conv2d'.set_weights", "'kernel' must have shape (3, 3, 1, 2)", "received (2, 3, 1, 2)")
    expect(TypeError, lambda: model.layers[0].set_weights([weights[0].astype(str), weights[1]]),
           "'kernel' must be numeric", "dtype <U")


def test_set_weights_refuses_nan_and_inf_and_changes_nothing():
    model = small_model()
    weights = model.get_weights()
    bad = [w.copy() for w in weights]
    bad[2][0, 0] = np.nan                                                  # dense's kernel
    expect(ValueError, lambda: model.set_weights(bad), "sequential.set_weights", "Dense 'dense'", "'kernel'",
           "1 NaN or inf", "must be finite")
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))
    too_big = [weights[0].astype(np.float64) * 1e300, weights[1]]          # finite, but inf in float32
    expect(ValueError, lambda: model.layers[0].set_weights(too_big), "Conv2D 'conv2d'.set_weights",
           "'kernel' has", "NaN or inf values (after conversion to float32)")
    assert np.array_equal(model.layers[0].get_weights()[0], weights[0])


def test_set_weights_before_the_model_is_built():
    model = small_model(input_shape=None)
    expect(ValueError, lambda: model.set_weights([]), "sequential", "not built yet")
    expect(ValueError, lambda: Dense(3, name="head").set_weights([]), "Dense 'head'", "no weights yet",
           "input_shape=")


# ----------------------------------------------------------------------------------------
# to_categorical
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("labels, num_classes, error, fragments", [
    ([0, 3], 3, ValueError, ["label 3 is out of range", "num_classes=3", "[0, 2]"]),
    ([0, 1, 10], 10, ValueError, ["label 10", "num_classes=10", "[0, 9]"]),
    ([0, -1], 3, ValueError, ["labels >= 0", "received -1"]),
    ([-2, 1], None, ValueError, ["labels >= 0", "received -2"]),
    ([0.5, 1], 3, TypeError, ["integer class labels", "non-integer"]),
    ([np.nan], 3, TypeError, ["integer class labels"]),
    (["cat"], 3, TypeError, ["integer class labels", "dtype <U3"]),
    ([0, 1], 0, ValueError, ["num_classes", "positive integer", "received 0"]),
    ([0, 1], 2.0, ValueError, ["num_classes", "positive integer", "received 2.0"]),
    ([], 3, ValueError, ["empty"]),
])
def test_to_categorical(labels, num_classes, error, fragments):
    expect(error, lambda: to_categorical(labels, num_classes), "to_categorical", *fragments)


def test_to_categorical_accepts_what_keras_accepts():
    assert to_categorical(np.array([[2], [0]]), 3).tolist() == [[0, 0, 1], [1, 0, 0]]
    assert to_categorical([1.0, 0.0]).tolist() == [[0, 1], [1, 0]]


# ----------------------------------------------------------------------------------------
# NaN guard: a diverging fit stops, names the epoch and batch, and keeps the last good weights
# ----------------------------------------------------------------------------------------
def regression(n=64, scale=10.0):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((n, 4)) * scale).astype(np.float32)
    return x, x.sum(axis=1, keepdims=True)


def linear_model(optimizer):
    model = Sequential([Dense(1, input_shape=(4,))])
    model.compile(optimizer, "mse")
    return model


def replay(optimizer, x, y, epochs_done, batch, batch_size):
    """The same training as fit(shuffle=False), stopped just before (epochs_done + 1, batch)."""
    tinycnn.set_random_seed(0)
    tinycnn.backend.clear_session()
    model = linear_model(optimizer)
    steps = -(-len(x) // batch_size)
    for done in range(epochs_done * steps + batch - 1):
        step = done % steps
        batch_slice = slice(step * batch_size, (step + 1) * batch_size)
        model.train_on_batch(x[batch_slice], y[batch_slice])
    return model.get_weights()


def diverge(model, x, y, **kwargs):
    with pytest.raises(NonFiniteLossError) as info:
        model.fit(x, y, verbose=0, shuffle=False, **kwargs)
    message = str(info.value)
    epoch, batch, steps = map(int, re.search(r"epoch (\d+), batch (\d+)/(\d+)", message).groups())
    return message, epoch, batch, steps


@pytest.mark.filterwarnings("error::RuntimeWarning")     # no NumPy overflow noise before the error
@pytest.mark.parametrize("make_optimizer", [lambda: SGD(1.0), lambda: SGD(0.5, momentum=0.9)])
def test_a_loss_that_turns_inf_stops_fit_with_the_weights_from_before_that_batch(backend, make_optimizer):
    x, y = regression()
    tinycnn.set_random_seed(0)
    tinycnn.backend.clear_session()
    model = linear_model(make_optimizer())
    message, epoch, batch, steps = diverge(model, x, y, batch_size=8, epochs=50)
    assert steps == 8 and (epoch, batch) > (1, 1)        # it trained a while before diverging
    assert "NaN or inf" in message and "lower learning rate" in message
    assert all(np.isfinite(w).all() for w in model.get_weights())
    expected = replay(make_optimizer(), x, y, epoch - 1, batch, 8)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), expected))


@pytest.mark.filterwarnings("error::RuntimeWarning")     # no NumPy overflow noise before the error
def test_an_update_that_overflows_is_undone(backend):
    x, y = regression()
    model = linear_model(SGD(1e38))
    before = model.get_weights()
    message, epoch, batch, _ = diverge(model, x, y, batch_size=16, epochs=3)
    assert (epoch, batch) == (1, 1)
    assert "would have made some weights NaN or inf" in message and "lower learning rate (now 1e+38)" in message
    assert "Nothing was changed" in message
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), before))


@pytest.mark.filterwarnings("error::RuntimeWarning")     # no NumPy overflow noise before the error
@pytest.mark.parametrize("make_optimizer", [lambda: SGD(0.01, momentum=0.9), lambda: Adam(0.01)])
def test_a_refused_update_leaves_the_optimizer_as_it_was(backend, make_optimizer):
    """An update that would overflow is checked before anything is written: the optimizer's step
    count and its moments stay those from before the batch, and so do the weights."""
    x, y = regression()
    model = linear_model(make_optimizer())
    for _ in range(3):
        model.train_on_batch(x[:16], y[:16])
    optimizer = model.optimizer
    iterations, state = optimizer.iterations, {k: {n: a.copy() for n, a in s.items()}
                                               for k, s in optimizer.state.items()}
    weights = model.get_weights()
    assert iterations == 3 and state and any(np.abs(a).sum() > 0 for s in state.values() for a in s.values())
    optimizer.learning_rate = 1e38 if isinstance(optimizer, SGD) else 3e38    # the next step overflows
    with pytest.raises(NonFiniteLossError, match="Nothing was changed: the weights and the optimizer's state"):
        model.train_on_batch(x[16:32] * 1e6, y[16:32])
    assert optimizer.iterations == iterations
    assert optimizer.state.keys() == state.keys()
    for key in state:
        for name in state[key]:
            np.testing.assert_array_equal(optimizer.state[key][name], state[key][name])
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), weights))


@pytest.mark.filterwarnings("error::RuntimeWarning")     # no NumPy overflow noise before the error
def test_huge_inputs_stop_at_the_first_batch(backend):
    x, y = regression(scale=1e30)
    model = linear_model(Adam(0.001))
    before = model.get_weights()
    message, epoch, batch, steps = diverge(model, x, y, batch_size=32, epochs=2)
    assert (epoch, batch, steps) == (1, 1, 2)
    assert "epoch 1, batch 1/2" in message and "learning rate" in message and "inputs' scale" in message
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), before))


@pytest.mark.filterwarnings("error::RuntimeWarning")     # no NumPy overflow noise before the error
def test_train_on_batch_has_the_guard_too():
    x, y = regression(scale=1e30)
    model = linear_model("sgd")
    before = model.get_weights()
    expect(NonFiniteLossError, lambda: model.train_on_batch(x, y), "train_on_batch", "NaN or inf",
           "lower learning rate")
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), before))
