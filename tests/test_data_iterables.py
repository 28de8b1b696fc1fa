"""fit, evaluate and predict on iterables of batches: the same loop and step as arrays, Keras 3's rules."""
import warnings

import numpy as np
import pytest

import tinycnn
from tinycnn.callbacks import Callback
from tinycnn.layers import Dense, Input
from tinycnn.models import Sequential


def data(n=20, seed=1):
    g = np.random.default_rng(seed)
    x = g.normal(size=(n, 3)).astype(np.float32)
    return x, (x @ np.array([[1.0], [-2.0], [0.5]]) > 0).astype(np.float32)


def model(seed=0):
    tinycnn.set_random_seed(seed)
    m = Sequential([Input((3,)), Dense(4, activation="relu"), Dense(1, activation="sigmoid")])
    m.compile("sgd", "binary_crossentropy", metrics=["accuracy"])
    return m


def as_batches(x, y, size=5, w=None):
    return [(x[i:i + size], y[i:i + size]) + (() if w is None else (w[i:i + size],)) for i in range(0, len(x), size)]


def gen(batches):
    yield from batches


class Record(Callback):
    def __init__(self):
        super().__init__()
        self.events = []

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(("epoch", epoch))

    def on_train_batch_end(self, batch, logs=None):
        self.events.append(("batch", batch))

    def on_predict_begin(self, logs=None):
        self.events.append(("predict_begin",))

    def on_predict_batch_begin(self, batch, logs=None):
        self.events.append(("pb", batch))

    def on_predict_batch_end(self, batch, logs=None):
        self.events.append(("pe", batch, logs["outputs"].shape))

    def on_predict_end(self, logs=None):
        self.events.append(("predict_end",))


def test_list_of_batches_trains_exactly_as_the_same_arrays_unshuffled():
    x, y = data()
    a, b = model(), model()
    ha = a.fit(x, y, batch_size=5, epochs=3, shuffle=False, verbose=0)
    hb = b.fit(as_batches(x, y), epochs=3, shuffle=False, verbose=0)
    assert ha.history == hb.history
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert b.evaluate(as_batches(x, y), verbose=0) == a.evaluate(x, y, batch_size=5, verbose=0)
    np.testing.assert_array_equal(b.predict(as_batches(x, y), verbose=0), a.predict(x, batch_size=5, verbose=0))


def test_sample_weights_in_batches_and_class_weight():
    x, y = data()
    w = np.linspace(0.1, 2, len(x)).astype(np.float32)
    a, b = model(), model()
    a.fit(x, y, sample_weight=w, batch_size=5, shuffle=False, verbose=0)
    b.fit(as_batches(x, y, w=w), shuffle=False, verbose=0)
    np.testing.assert_array_equal(a.get_weights()[0], b.get_weights()[0])
    assert a.evaluate(x, y, sample_weight=w, batch_size=5, verbose=0) == b.evaluate(as_batches(x, y, w=w), verbose=0)
    c, d = model(), model()
    c.fit(x, y, class_weight={0: 1.0, 1: 3.0}, batch_size=5, shuffle=False, verbose=0)
    d.fit(as_batches(x, y), class_weight={0: 1.0, 1: 3.0}, shuffle=False, verbose=0)
    np.testing.assert_array_equal(c.get_weights()[0], d.get_weights()[0])


def test_generator_without_steps_runs_one_pass_then_stops_with_keras_warning():
    x, y = data()
    m, rec = model(), Record()
    with pytest.warns(UserWarning, match="ran out of data; interrupting training after epoch 1"):
        h = m.fit(gen(as_batches(x, y)), epochs=3, shuffle=False, verbose=0, callbacks=[rec])
    assert h.epoch == [0] and len(h.history["loss"]) == 1
    assert rec.events == [("batch", 0), ("batch", 1), ("batch", 2), ("batch", 3), ("epoch", 0)]
    assert rec.params["steps"] is None          # unknown length, as Keras


def test_generator_with_steps_per_epoch_continues_across_epochs():
    """5 batches, steps_per_epoch=2, 3 epochs: 2, 2, then 1 (it ran out: a warning), as Keras 3."""
    x, y = data(25)
    m, rec = model(), Record()
    with pytest.warns(UserWarning, match="ran out after 1 batches; asked for 2 steps"):
        h = m.fit(gen(as_batches(x, y)), epochs=3, steps_per_epoch=2, shuffle=False, verbose=0, callbacks=[rec])
    assert h.epoch == [0, 1, 2]
    assert [e for e in rec.events if e[0] == "batch"] == [("batch", 0), ("batch", 1)] * 2 + [("batch", 0)]
    # the same 5 batches in the same order as the arrays: the same weights
    a = model()
    a.fit(x, y, batch_size=5, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(a.get_weights()[0], m.get_weights()[0], rtol=1e-6)


def test_reiterable_with_steps_per_epoch_starts_a_new_pass_when_used_up():
    x, y = data(15)                                      # 3 batches of 5
    m, rec = model(), Record()
    with pytest.warns(UserWarning, match="ran out after 1 batches"):
        m.fit(as_batches(x, y), epochs=3, steps_per_epoch=2, shuffle=False, verbose=0, callbacks=[rec])
    assert [e[1] for e in rec.events if e[0] == "batch"] == [0, 1, 0, 0, 1]   # 2, 1 (ran out), new pass: 2


def test_shuffle_warning_and_arguments_refused_with_iterables():
    x, y = data()
    m = model()
    with pytest.warns(UserWarning, match="shuffle=True.*ignored"):
        m.fit(as_batches(x, y), verbose=0)
    for kwargs, arg in [({"y": y}, "y"), ({"batch_size": 5}, "batch_size"), ({"validation_split": 0.2},
                        "validation_split"), ({"sample_weight": np.ones(20)}, "sample_weight")]:
        with pytest.raises(ValueError, match=f"iterable of batches, so {arg} must not be given"):
            m.fit(gen(as_batches(x, y)), shuffle=False, verbose=0, **kwargs)
    with pytest.raises(ValueError, match="batch_size must not be given"):
        m.evaluate(as_batches(x, y), batch_size=5, verbose=0)
    with pytest.raises(ValueError, match="batch_size must not be given"):
        m.predict(gen([x]), batch_size=5, verbose=0)
    with pytest.raises(ValueError, match="validation_batch_size must not be given"):
        m.fit(x, y, validation_data=as_batches(x, y), validation_batch_size=4, verbose=0)


def test_bad_batches_are_named_clearly():
    x, y = data()
    m = model()
    with pytest.raises(ValueError, match=r"fit \(batch 1\): each batch must be a tuple \(x, y\)"):
        m.fit(gen([x]), shuffle=False, verbose=0)
    with pytest.raises(ValueError, match=r"fit \(batch 2\): expected x of shape \(None, 3\); received \(5, 4\)"):
        m.fit(gen([(x[:5], y[:5]), (np.ones((5, 4)), y[:5])]), shuffle=False, verbose=0)
    with pytest.raises(ValueError, match="yielded no batches"):
        m.fit(gen([]), shuffle=False, verbose=0)


def test_validation_data_as_iterable_and_one_shot_generator_rules():
    x, y = data()
    xv, yv = data(10, seed=2)
    a, b = model(), model()
    ha = a.fit(x, y, batch_size=5, epochs=2, shuffle=False, validation_data=(xv, yv), validation_batch_size=5,
               verbose=0)
    hb = b.fit(x, y, batch_size=5, epochs=2, shuffle=False, validation_data=as_batches(xv, yv), verbose=0)
    assert ha.history == hb.history
    with pytest.raises(ValueError, match="validation_data is a generator.*validation_steps"):
        model().fit(x, y, epochs=2, validation_data=gen(as_batches(xv, yv)), verbose=0)
    infinite = (batch for _ in range(100) for batch in as_batches(xv, yv))
    h = model().fit(x, y, epochs=3, validation_data=infinite, validation_steps=1, verbose=0)
    assert len(h.history["val_loss"]) == 3


def test_evaluate_steps_and_a_generator_of_unknown_length():
    x, y = data()
    m = model()
    full = m.evaluate(x, y, batch_size=5, verbose=0, return_dict=True)
    assert m.evaluate(gen(as_batches(x, y)), verbose=0, return_dict=True) == full
    two = m.evaluate(x[:10], y[:10], batch_size=5, verbose=0)
    assert m.evaluate(as_batches(x, y), steps=2, verbose=0) == two
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.evaluate(gen(as_batches(x, y)), steps=4, verbose=0)         # exactly the data: no warning
    with pytest.warns(UserWarning, match="ran out after 4 batches; asked for 6 steps"):
        assert m.evaluate(gen(as_batches(x, y)), steps=6, verbose=0) == m.evaluate(x, y, batch_size=5, verbose=0)


def test_predict_accepts_x_x_tuple_and_xy_batches_and_calls_predict_hooks():
    x, y = data()
    m, rec = model(), Record()
    expected = m.predict(x, batch_size=5, verbose=0)
    for batches in (gen([x[i:i + 5] for i in range(0, 20, 5)]), [(x[i:i + 5],) for i in range(0, 20, 5)],
                    as_batches(x, y)):
        np.testing.assert_array_equal(m.predict(batches, verbose=0), expected)
    m.predict(x, batch_size=8, verbose=0, callbacks=[rec])
    assert rec.events == [("predict_begin",), ("pb", 0), ("pe", 0, (8, 1)), ("pb", 1), ("pe", 1, (8, 1)),
                          ("pb", 2), ("pe", 2, (4, 1)), ("predict_end",)]
    assert m.predict(x, batch_size=5, steps=2, verbose=0).shape == (10, 1)


def test_iterable_builds_an_unbuilt_model_and_progress_bar_for_unknown_length(capsys):
    x, y = data()
    m = Sequential([Dense(1, activation="sigmoid")])
    m.compile("sgd", "binary_crossentropy")
    with pytest.warns(UserWarning, match="shuffle"):
        m.fit(gen(as_batches(x, y)), verbose=2)
    assert m.built and m.input_shape == (None, 3)
    assert "4/Unknown" in capsys.readouterr().out
