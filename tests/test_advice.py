"""fit's warnings for silent mistakes (tinycnn/advice.py): each fires once per fit on its mistake,
names the fix, points at the user's line and is silenced by its category; normal training gets none."""
import warnings

import numpy as np
import pytest

import tinycnn
from tinycnn import advice, optimizers, seed
from tinycnn.advice import DivergenceWarning, InputScaleWarning, NotProbabilitiesWarning, TrainingWarning
from tinycnn.layers import Conv2D, Dense, Flatten, Input, MaxPooling2D, Rescaling


def caught(fit):
    """The TrainingWarnings that fit() issues, every one of them (no deduplication by Python)."""
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        fit()
    return [r for r in records if issubclass(r.category, TrainingWarning)]


def classes(n=64, k=4, seed_=0):
    rng = np.random.default_rng(seed_)
    x = rng.standard_normal((n, 8)).astype(np.float32)
    return x, tinycnn.to_categorical((x[:, :3] @ rng.standard_normal((3, k))).argmax(1), k)


def dense_model(last="softmax", optimizer=None, loss="categorical_crossentropy", k=4):
    m = tinycnn.Sequential([Dense(16, activation="relu", input_shape=(8,)), Dense(k, activation=last)])
    m.compile(optimizer or optimizers.Adam(0.01), loss, metrics=["accuracy"])
    return m


def images(n=32, seed_=0):
    """Raw 8x8 'pixels' 0..255 as uint8, and 3 classes."""
    rng = np.random.default_rng(seed_)
    x = rng.integers(0, 256, (n, 8, 8, 1)).astype(np.uint8)
    return x, tinycnn.to_categorical(rng.integers(0, 3, n), 3)


def conv_model(first=()):
    m = tinycnn.Sequential([Input((8, 8, 1)), *first, Conv2D(4, 3, activation="relu"), MaxPooling2D(2),
                            Flatten(), Dense(3, activation="softmax")])
    m.compile("adam", "categorical_crossentropy")
    return m


def test_the_warnings_are_one_family_exported_by_tinycnn():
    assert tinycnn.TrainingWarning is TrainingWarning and issubclass(TrainingWarning, UserWarning)
    for kind in (NotProbabilitiesWarning, InputScaleWarning, DivergenceWarning):
        assert issubclass(kind, TrainingWarning) and not issubclass(kind, RuntimeWarning)


# -- cross-entropy on outputs that are not probabilities ----------------------------------------

def test_no_softmax_with_crossentropy_warns_once_per_fit_and_names_the_fix():
    x, y = classes()
    m = dense_model(last=None)
    for _ in range(2):                                  # each fit says it again, once
        found = caught(lambda: m.fit(x, y, batch_size=8, epochs=3, verbose=0))
        assert [w.category for w in found] == [NotProbabilitiesWarning]
        message = str(found[0].message)
        assert "categorical_crossentropy with from_logits=False" in message
        assert "activation='softmax'" in message and "from_logits=True" in message
        assert found[0].filename == __file__             # it points at the user's fit() line


@pytest.mark.parametrize("loss, last, fix", [
    ("sparse_categorical_crossentropy", None, "activation='softmax'"),
    ("categorical_crossentropy", "sigmoid", "activation='softmax'"),     # in [0, 1], rows not summing to 1
    ("binary_crossentropy", None, "activation='sigmoid'"),
])
def test_other_crossentropies_on_non_probabilities_warn(loss, last, fix):
    x, y = classes()
    if loss == "sparse_categorical_crossentropy":
        y = y.argmax(1)
    elif loss == "binary_crossentropy":
        y = y[:, :1]
    m = dense_model(last=last, loss=loss, k=1 if loss == "binary_crossentropy" else 4)
    found = caught(lambda: m.fit(x, y, batch_size=8, epochs=2, verbose=0))
    assert [w.category for w in found] == [NotProbabilitiesWarning] and fix in str(found[0].message)


@pytest.mark.parametrize("last, loss", [
    ("softmax", "categorical_crossentropy"),
    (None, tinycnn.losses.CategoricalCrossentropy(from_logits=True)),
    (None, "mean_squared_error"),                       # not a cross-entropy: any outputs are fine
])
def test_probabilities_or_logits_declared_as_such_do_not_warn(last, loss):
    x, y = classes()
    assert caught(lambda: dense_model(last=last, loss=loss).fit(x, y, batch_size=8, epochs=2, verbose=0)) == []


def test_a_functional_model_names_the_output_without_softmax():
    x, y = classes()
    inputs = Input((8,))
    h = Dense(8, activation="relu")(inputs)
    m = tinycnn.Model(inputs, [Dense(4, activation="softmax", name="good")(h), Dense(4, name="bad")(h)])
    m.compile("adam", "categorical_crossentropy")
    found = caught(lambda: m.fit(x, [y, y], batch_size=8, epochs=2, verbose=0))
    assert [w.category for w in found] == [NotProbabilitiesWarning]
    assert "(output 'bad')" in str(found[0].message) and "'good'" not in str(found[0].message)


# -- raw pixels into a conv net -------------------------------------------------------------

def test_uint8_pixels_not_divided_by_255_warn_once_per_fit():
    x, y = images()
    m = conv_model()
    found = caught(lambda: m.fit(x, y, batch_size=8, epochs=3, verbose=0))
    assert [w.category for w in found] == [InputScaleWarning]
    message = str(found[0].message)
    assert "Did you divide by 255?" in message and "up to 255" in message and m.layers[0].name in message
    assert [w.category for w in caught(lambda: m.fit(x.astype(np.float32), y, epochs=1, verbose=0))] == \
        [InputScaleWarning]                             # float 0..255 too


def test_dim_integer_images_warn_though_their_rms_is_small():
    x, y = images()
    x //= 16                                            # dim pixels 0..15: RMS about 8.8
    assert np.sqrt(np.mean(x.astype(np.float64) ** 2)) < 10
    found = caught(lambda: conv_model().fit(x, y, batch_size=8, epochs=1, verbose=0))
    assert [w.category for w in found] == [InputScaleWarning]


@pytest.mark.parametrize("prepare", [
    lambda x: x.astype(np.float32) / 255,                                  # [0, 1]
    lambda x: x.astype(np.float32) / 127.5 - 1,                            # [-1, 1]
    lambda x: (x - x.mean()) / x.std(),                                    # standardized
    lambda x: (x - x.mean(0)) / (x.std(0) + 1e-3),                         # per pixel, outliers and all
    lambda x: (x > 127).astype(np.uint8),                                  # 0/1 masks
])
def test_scaled_inputs_do_not_warn(prepare):
    x, y = images()
    assert caught(lambda: conv_model().fit(prepare(x.astype(np.float64)), y, batch_size=8, epochs=1,
                                           verbose=0)) == []


def test_a_rescaling_layer_first_or_a_dense_net_does_not_warn():
    x, y = images()
    assert caught(lambda: conv_model([Rescaling(1 / 255)]).fit(x, y, batch_size=8, epochs=1, verbose=0)) == []
    dense = tinycnn.Sequential([Input((8, 8, 1)), Flatten(), Dense(3, activation="softmax")])
    dense.compile("adam", "categorical_crossentropy")
    assert caught(lambda: dense.fit(x, y, batch_size=8, epochs=1, verbose=0)) == []


def test_a_functional_model_names_the_raw_input_read_by_a_conv():
    x, y = images()
    pixels, extra = Input((8, 8, 1), name="pixels"), Input((5,), name="extra")
    h = tinycnn.layers.Concatenate()([Flatten()(Conv2D(2, 3, name="conv")(pixels)), Dense(4)(extra)])
    m = tinycnn.Model([pixels, extra], Dense(3, activation="softmax")(h))
    m.compile("adam", "categorical_crossentropy")
    big = np.full((len(x), 5), 300.0, np.float32)                          # read by a Dense: fine
    found = caught(lambda: m.fit([x, big], y, batch_size=8, epochs=1, verbose=0))
    assert [w.category for w in found] == [InputScaleWarning]
    assert "input 'pixels' to conv" in str(found[0].message)
    assert caught(lambda: m.fit([x / 255, big], y, batch_size=8, epochs=1, verbose=0)) == []


# -- a loss that diverges without NaN -----------------------------------------------------------

def test_a_huge_learning_rate_warns_once_naming_it():
    x, y = classes(256)
    m = dense_model(optimizer=optimizers.Adam(1e3))
    found = caught(lambda: m.fit(x, y, batch_size=16, epochs=5, verbose=0))    # no NonFiniteLossError
    assert [w.category for w in found] == [DivergenceWarning]
    message = str(found[0].message)
    assert "without becoming NaN" in message and "Lower the learning rate (now 1000)" in message
    assert f"for {advice.PATIENCE} steps in a row" in message


def test_the_issues_example_lr_1e3_on_the_seed_cnn(mnist_prepared):
    (x, y), _ = mnist_prepared
    m = seed.build_model()
    m.compile(optimizers.Adam(1e3), "categorical_crossentropy", metrics=["accuracy"])
    found = caught(lambda: m.fit(x[:1024], y[:1024], batch_size=64, epochs=1, verbose=0))
    assert m.history.history["loss"][0] > 10 and m.history.history["accuracy"][0] < 0.2     # stuck, no NaN
    assert [w.category for w in found] == [DivergenceWarning]


def test_noisy_training_and_fine_tuning_do_not_warn():
    x, y = classes(256)
    m = dense_model(optimizer=optimizers.SGD(0.5))
    assert caught(lambda: m.fit(x, y, batch_size=4, epochs=3, verbose=0)) == []
    assert m.history.history["loss"][-1] < 0.6
    # fine-tuning: the first batch's loss may be tiny; the chance level log K keeps the bar high
    assert caught(lambda: m.fit(x, y, batch_size=2, epochs=2, verbose=0)) == []


def test_no_divergence_warning_on_top_of_the_softmax_one():
    x, y = classes(256)
    found = caught(lambda: dense_model(last=None, optimizer=optimizers.Adam(1e3)).fit(
        x, y, batch_size=16, epochs=3, verbose=0))
    assert [w.category for w in found] == [NotProbabilitiesWarning]


# -- silencing, scope, and normal training ------------------------------------------------------

@pytest.mark.parametrize("category", [NotProbabilitiesWarning, InputScaleWarning, DivergenceWarning,
                                      TrainingWarning])
def test_each_kind_is_silenced_by_its_category(category):
    x, y = classes(256)
    xi, yi = images()
    mistakes = {NotProbabilitiesWarning: lambda: dense_model(last=None).fit(x, y, batch_size=8, verbose=0),
                InputScaleWarning: lambda: conv_model().fit(xi, yi, batch_size=8, verbose=0),
                DivergenceWarning: lambda: dense_model(optimizer=optimizers.Adam(1e3)).fit(
                    x, y, batch_size=16, epochs=2, verbose=0)}
    for kind, mistake in mistakes.items():
        with warnings.catch_warnings(record=True) as records:
            warnings.simplefilter("always")
            warnings.filterwarnings("ignore", category=category)
            mistake()
        silenced = category is TrainingWarning or kind is category
        assert [r.category for r in records if issubclass(r.category, TrainingWarning)] == \
            ([] if silenced else [kind])
    with warnings.catch_warnings():
        warnings.simplefilter("error", category)        # and turned into an error like any warning
        with pytest.raises(category):
            mistakes.get(category, mistakes[DivergenceWarning])()


def test_train_on_batch_and_evaluate_do_not_check():
    """The checks are fit's: train_on_batch is a custom loop's step (a warning per step would
    repeat), evaluate does not train. Both stay silent on the same mistakes."""
    x, y = images()
    m = tinycnn.Sequential([Input((8, 8, 1)), Conv2D(2, 3), Flatten(), Dense(3)])
    m.compile("adam", "categorical_crossentropy")
    assert caught(lambda: [m.train_on_batch(x, y) for _ in range(3)] + [m.evaluate(x, y, verbose=0)]) == []


def test_a_normal_run_and_the_tutorial_setup_warn_nothing(mnist_prepared):
    x, y = classes(256)
    m = dense_model()
    assert caught(lambda: m.fit(x, y, batch_size=16, epochs=5, validation_split=0.2, verbose=0)) == []
    (x_train, y_train), (x_test, y_test) = mnist_prepared
    tutorial = seed.build_model()
    tutorial.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    assert caught(lambda: tutorial.fit(x_train[:2048], y_train[:2048], epochs=2, batch_size=128,
                                       validation_data=(x_test[:256], y_test[:256]), verbose=0)) == []
    losses = tutorial.history.history["loss"]
    assert losses[1] < losses[0] and tutorial.history.history["val_accuracy"][-1] > 0.5
