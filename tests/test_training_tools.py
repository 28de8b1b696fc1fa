"""fit's training tools, as Keras 3 has them: callbacks, learning-rate schedules, validation_split,
class_weight and sample_weight, steps_per_epoch, validation_steps/freq, regularizers' penalties.

Each callback runs on a tiny model (a Dense layer on random data, a few epochs) and is checked
against values computed here; where Keras is installed, the schedules, the split and the
callbacks' decisions are compared with Keras's own.
"""
import csv
import os
import warnings

import numpy as np
import pytest

import tinycnn
from tinycnn import callbacks as C
from tinycnn import validation
from tinycnn.layers import Dense
from tinycnn.models import History, NonFiniteLossError, Sequential, load_model
from tinycnn.optimizers import SGD, Adam, schedules


def data(n=60, seed=0, flip=False):
    """Two classes told apart by the sign of the first feature (flip=True: the opposite labels)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    labels = (x[:, 0] > 0).astype(int)
    return x, tinycnn.to_categorical(1 - labels if flip else labels, 2)


def model(lr=0.1, metrics=("accuracy",), optimizer=None):
    m = Sequential([Dense(2, activation="softmax", input_shape=(4,))])
    m.compile(optimizer or SGD(lr), "categorical_crossentropy", list(metrics))
    return m


def twin(m):
    """A model like m, with the same weights."""
    other = model(m.optimizer.learning_rate, m.metrics)
    other.set_weights(m.get_weights())
    return other


class Recorder(C.Callback):
    """Every hook called, with its argument; the weights at each epoch's end."""

    def __init__(self):
        super().__init__()
        self.calls, self.weights, self.batch_logs = [], [], []

    def on_train_begin(self, logs=None):
        self.calls.append(("train_begin",))

    def on_train_end(self, logs=None):
        self.calls.append(("train_end",))
        self.final_logs = logs

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("epoch_begin", epoch))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch, sorted(logs)))
        self.weights.append(self.model.get_weights())

    def on_batch_begin(self, batch, logs=None):          # the older name, called by on_train_batch_begin
        self.calls.append(("batch_begin", batch))

    def on_batch_end(self, batch, logs=None):
        self.calls.append(("batch_end", batch))
        self.batch_logs.append(dict(logs))

    def on_test_begin(self, logs=None):
        self.calls.append(("test_begin",))

    def on_test_batch_begin(self, batch, logs=None):
        self.calls.append(("test_batch_begin", batch))

    def on_test_batch_end(self, batch, logs=None):
        self.calls.append(("test_batch_end", batch))

    def on_test_end(self, logs=None):
        self.calls.append(("test_end", sorted(logs)))


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    pytest.importorskip("tensorflow")
    return pytest.importorskip("keras")


# -- the hooks ---------------------------------------------------------------------------
def test_hooks_are_called_in_keras_order_with_running_logs():
    x, y = data(30)
    rec = Recorder()
    m = model()
    history = m.fit(x, y, batch_size=10, epochs=2, shuffle=False, validation_data=(x[:15], y[:15]),
                    callbacks=[rec], verbose=0)
    epoch = lambda e: ([("epoch_begin", e)] + [c for b in range(3) for c in (("batch_begin", b), ("batch_end", b))]
                       + [("test_begin",)] + [c for b in range(2) for c in (("test_batch_begin", b),
                                                                            ("test_batch_end", b))]
                       + [("test_end", ["accuracy", "loss"]),
                          ("epoch_end", e, ["accuracy", "loss", "val_accuracy", "val_loss"])])
    assert rec.calls == [("train_begin",)] + epoch(0) + epoch(1) + [("train_end",)]
    assert rec.params == {"verbose": 0, "epochs": 2, "steps": 3} == history.params
    assert history is m.history and isinstance(history, History) and history.epoch == [0, 1]
    assert rec.final_logs["val_loss"] == history.history["val_loss"][-1]
    # batch logs are the epoch's running means: batch k's loss is the mean of batches 0..k (equal sizes)
    twin_model, losses = twin(m), []
    twin_model.set_weights(rec.weights[0])
    for b in range(3):
        losses.append(twin_model.train_on_batch(x[10 * b:10 * b + 10], y[10 * b:10 * b + 10])[0])
    assert [logs["loss"] for logs in rec.batch_logs[3:]] == pytest.approx(np.cumsum(losses) / [1, 2, 3], rel=1e-6)
    assert history.history["loss"][1] == pytest.approx(np.mean(losses), rel=1e-6)


def test_stop_training_ends_fit_after_that_batch_and_the_epochs_end():
    class StopAtBatch(C.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                self.model.stop_training = True

    x, y = data(40)
    rec = Recorder()
    m = model()
    history = m.fit(x, y, batch_size=10, epochs=5, callbacks=[StopAtBatch(), rec], validation_data=(x, y),
                    verbose=0)
    assert m.optimizer.iterations == 2 and history.epoch == [0]
    assert "val_loss" in history.history                  # the epoch still ends as usual (validation)
    m.fit(x, y, batch_size=40, epochs=2, verbose=0)       # the next fit starts afresh
    assert m.optimizer.iterations == 4


def test_a_given_history_is_the_one_fit_fills_and_returns():
    x, y = data(20)
    mine = History()
    m = model()
    assert m.fit(x, y, epochs=3, callbacks=[mine], verbose=0) is mine
    assert len(mine.history["loss"]) == 3 and m.history is mine


# -- EarlyStopping ---------------------------------------------------------------------------
def test_early_stopping_restores_the_exact_best_weights():
    """Validation labels opposite to the training ones: val_loss is best after the first epoch."""
    x, y = data(60)
    xv, yv = data(30, seed=1, flip=True)
    rec = Recorder()
    stop = C.EarlyStopping(patience=2, restore_best_weights=True)
    m = model(lr=0.5)
    history = m.fit(x, y, epochs=20, batch_size=20, validation_data=(xv, yv), callbacks=[rec, stop], verbose=0)
    val = history.history["val_loss"]
    assert len(val) == 3 and val[0] < val[1] < val[2]         # stopped after patience=2 epochs without progress
    assert stop.stopped_epoch == 2 and stop.best_epoch == 0 and stop.best == val[0]
    assert all(np.array_equal(a, b) for a, b in zip(m.get_weights(), rec.weights[0]))
    assert not np.array_equal(rec.weights[2][0], rec.weights[0][0])


def test_early_stopping_min_delta_baseline_start_from_epoch_and_mode_max():
    x, y = data(60)
    m = model(lr=0.5)
    # the training loss keeps falling, but not by 10 per epoch: patience 1 stops after epoch 2
    h = m.fit(x, y, epochs=10, callbacks=[C.EarlyStopping("loss", min_delta=10, patience=1)], verbose=0)
    assert len(h.epoch) == 2 and h.history["loss"][1] < h.history["loss"][0]
    # val_loss is best after the first epoch; a baseline it never beats keeps the first epoch in
    # patience's count, so training stops one epoch earlier (Keras's rule)
    xv, yv = data(30, seed=1, flip=True)
    for baseline, epochs in ((None, 3), (1e-6, 2)):
        h = model(lr=0.5).fit(x, y, epochs=10, validation_data=(xv, yv), verbose=0,
                              callbacks=[C.EarlyStopping(patience=2, baseline=baseline)])
        assert len(h.epoch) == epochs
    # nothing is watched before start_from_epoch
    h = model(lr=0.5).fit(x, y, epochs=10, validation_data=(xv, yv), verbose=0,
                          callbacks=[C.EarlyStopping(patience=0, start_from_epoch=3)])
    assert len(h.epoch) == 5
    # accuracy is maximized in mode auto: the training accuracy reaches 1 and stays there
    stop = C.EarlyStopping("accuracy", patience=1)
    h = model(lr=0.5).fit(x, y, epochs=30, callbacks=[stop], verbose=0)
    accuracy = h.history["accuracy"]
    assert stop.lower_is_better is False and len(accuracy) < 30 and accuracy[-1] <= max(accuracy[:-1])
    assert all(a < b for a, b in zip(accuracy[:-2], accuracy[1:-1]))       # it rose until then


def test_early_stopping_without_its_value_warns_and_trains_on():
    x, y = data(20)
    with pytest.warns(UserWarning, match="val_loss.*not available"):
        h = model().fit(x, y, epochs=2, callbacks=[C.EarlyStopping()], verbose=0)
    assert len(h.epoch) == 2


class FakeModel:
    """What the monitoring callbacks use of a model, to drive Keras's and tinycnn's the same way."""

    class Optimizer:
        learning_rate = 1.0

    def __init__(self):
        self.stop_training, self.optimizer, self.metrics = False, self.Optimizer(), []

    def get_weights(self):
        return []

    def set_weights(self, weights):
        pass


def drive(callback, values, monitor="val_loss"):
    """Feed a sequence of monitored values; what the callback did after each epoch."""
    model = FakeModel()
    callback.set_model(model)
    callback.on_train_begin()
    seen = []
    for epoch, value in enumerate(values):
        logs = {monitor: value}
        callback.on_epoch_end(epoch, logs)
        seen.append((model.stop_training, float(model.optimizer.learning_rate), logs.get("learning_rate")))
        if model.stop_training:
            break
    return seen


SEQUENCES = [[1.0, 0.9, 0.95, 0.97, 0.8, 0.81, 0.82, 0.83, 0.7, 0.71, 0.72, 0.73, 0.74, 0.75],
             [5.0, 5.0, 5.0, 4.99995, 4.0, 4.1, 4.2, 3.0, 3.0, 3.0, 3.1, 3.2, 3.3, 3.4]]


@pytest.mark.parametrize("values", SEQUENCES)
@pytest.mark.parametrize("kwargs", [dict(patience=2), dict(patience=1, min_delta=0.05),
                                    dict(patience=3, baseline=0.85), dict(patience=1, start_from_epoch=4),
                                    dict(patience=0, mode="max")])
def test_early_stopping_decides_as_keras(keras, values, kwargs):
    assert drive(C.EarlyStopping(**kwargs), values) == drive(keras.callbacks.EarlyStopping(**kwargs), values)


@pytest.mark.parametrize("values", SEQUENCES)
@pytest.mark.parametrize("kwargs", [dict(patience=1), dict(patience=2, factor=0.5, cooldown=2),
                                    dict(patience=1, factor=0.5, min_lr=0.3), dict(patience=0, min_delta=0.0)])
def test_reduce_lr_on_plateau_decides_as_keras(keras, values, kwargs):
    ours = drive(C.ReduceLROnPlateau(**kwargs), values)
    theirs = drive(keras.callbacks.ReduceLROnPlateau(**kwargs), values)
    assert [s for s, _, _ in ours] == [s for s, _, _ in theirs]
    assert [lr for _, lr, _ in ours] == pytest.approx([lr for _, lr, _ in theirs], rel=1e-6)
    assert [lr for _, _, lr in ours] == pytest.approx([lr for _, _, lr in theirs], rel=1e-6)


# -- ModelCheckpoint ---------------------------------------------------------------------------
def test_model_checkpoint_save_best_only_writes_only_on_improvement(tmp_path):
    x, y = data(60)
    xv, yv = data(30, seed=1, flip=True)
    rec = Recorder()
    path = str(tmp_path / "ckpt" / "{epoch:02d}-{val_loss:.3f}.weights.npz")   # the folder is created
    m = model(lr=0.5)
    h = m.fit(x, y, epochs=4, batch_size=20, validation_data=(xv, yv), verbose=0,
              callbacks=[rec, C.ModelCheckpoint(path, save_best_only=True, save_weights_only=True)])
    assert os.listdir(tmp_path / "ckpt") == [f"01-{h.history['val_loss'][0]:.3f}.weights.npz"]
    restored = twin(m)
    restored.load_weights(str(tmp_path / "ckpt" / os.listdir(tmp_path / "ckpt")[0]))
    assert all(np.array_equal(a, b) for a, b in zip(restored.get_weights(), rec.weights[0]))
    # monitoring the training loss, which falls every epoch: a file each epoch, the last one the final weights
    best = tmp_path / "best.weights.npz"
    m.fit(x, y, epochs=3, batch_size=20, verbose=0, callbacks=[
        C.ModelCheckpoint(tmp_path / "{epoch}.weights.npz", monitor="loss", save_weights_only=True),
        C.ModelCheckpoint(best, monitor="loss", save_best_only=True, save_weights_only=True)])
    assert sorted(p.name for p in tmp_path.glob("?.weights.npz")) == ["1.weights.npz", "2.weights.npz",
                                                                      "3.weights.npz"]
    restored.load_weights(best)
    assert all(np.array_equal(a, b) for a, b in zip(restored.get_weights(), m.get_weights()))


def test_model_checkpoint_every_n_batches(tmp_path):
    x, y = data(50)
    model().fit(x, y, epochs=2, batch_size=10, verbose=0, callbacks=[
        C.ModelCheckpoint(str(tmp_path / "e{epoch}b{batch}.weights.npz"), save_weights_only=True, save_freq=3)])
    # 5 batches per epoch, a save every 3 batches seen: batches 3 and 6 (epoch 2's first) and 9 (its 4th)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e1b3.weights.npz", "e2b1.weights.npz",
                                                          "e2b4.weights.npz"]


def test_model_checkpoint_saves_whole_models_and_refuses_a_name_that_says_otherwise(tmp_path):
    x, y = data(10)
    m = model()
    m.fit(x, y, epochs=2, batch_size=5, verbose=0, callbacks=[C.ModelCheckpoint(str(tmp_path / "m{epoch}.keras"))])
    again = load_model(tmp_path / "m2.keras")                 # the whole model, at the end of epoch 2
    assert all(np.array_equal(a, b) for a, b in zip(again.get_weights(), m.get_weights()))
    assert again.optimizer.iterations == m.optimizer.iterations == 4
    with pytest.raises(ValueError, match=r"save_weights_only=False.*must end in '\.keras'"):
        C.ModelCheckpoint("w.weights.npz")
    with pytest.raises(ValueError, match=r"save_weights_only=True.*'\.weights\.h5' or '\.weights\.npz'"):
        C.ModelCheckpoint("m.keras", save_weights_only=True)
    with pytest.raises(ValueError, match="save_freq"):
        C.ModelCheckpoint("w.weights.npz", save_weights_only=True, save_freq=0)
    with pytest.raises(KeyError, match="val_auc"):
        model().fit(*data(10), verbose=0, callbacks=[C.ModelCheckpoint("{val_auc}.weights.npz", monitor="loss",
                                                                        save_weights_only=True)])


# -- the learning rate -------------------------------------------------------------------------
def test_learning_rate_scheduler_sets_the_rate_each_epoch_and_logs_it():
    x, y = data(20)
    rates = [0.3, 0.1, 0.05]
    m = model(lr=0.01)
    reference = twin(m)
    h = m.fit(x, y, epochs=3, batch_size=20, shuffle=False, verbose=0,
              callbacks=[C.LearningRateScheduler(lambda epoch, lr: rates[epoch])])
    for rate in rates:                       # one batch per epoch: the same steps by hand
        reference.optimizer.learning_rate = rate
        reference.train_on_batch(x, y)
    assert all(np.array_equal(a, b) for a, b in zip(m.get_weights(), reference.get_weights()))
    assert h.history["learning_rate"] == rates and m.optimizer.learning_rate == 0.05
    # schedule(epoch) alone (Keras's older form) works; it gets the current rate otherwise
    seen = []
    model(lr=0.2).fit(x, y, epochs=2, verbose=0, callbacks=[
        C.LearningRateScheduler(lambda epoch, lr: seen.append(lr) or lr / 2),
        C.LearningRateScheduler(lambda epoch: 0.01 * (epoch + 1))])
    assert seen == [0.2, 0.01]
    with pytest.raises(ValueError, match="should be a float; received 1"):
        model().fit(x, y, verbose=0, callbacks=[C.LearningRateScheduler(lambda epoch, lr: 1)])


def test_reduce_lr_on_plateau_in_a_real_fit():
    x, y = data(60)
    xv, yv = data(30, seed=1, flip=True)
    h = model(lr=0.5).fit(x, y, epochs=6, batch_size=20, validation_data=(xv, yv), verbose=0,
                          callbacks=[C.ReduceLROnPlateau(factor=0.5, patience=2)])
    # val_loss is best after epoch 1: the rate halves at the end of epochs 3 and 5 (logged before the change)
    assert h.history["learning_rate"] == [0.5, 0.5, 0.5, 0.25, 0.25, 0.125]


def test_optimizers_take_a_schedule_and_use_its_value_at_each_step():
    x, y = data(20)
    schedule = schedules.PiecewiseConstantDecay([1, 2], [0.3, 0.1, 0.02])
    m = model(optimizer=SGD(schedule))
    reference = twin(m)
    for step in range(4):
        assert m.optimizer.learning_rate == schedule(step)
        m.train_on_batch(x, y)
        reference.optimizer.learning_rate = [0.3, 0.3, 0.1, 0.02][step]
        reference.train_on_batch(x, y)
    assert all(np.array_equal(a, b) for a, b in zip(m.get_weights(), reference.get_weights()))
    with pytest.raises(TypeError, match="schedule.*cannot be set to a number"):
        m.optimizer.learning_rate = 0.1
    with pytest.raises(ValueError, match="positive number or a tinycnn.optimizers.schedules"):
        Adam(learning_rate="fast")
    a = Adam(schedules.ExponentialDecay(1e-3, 10, 0.5))
    a.iterations = 20
    assert a.learning_rate == pytest.approx(2.5e-4)


# -- schedules ---------------------------------------------------------------------------------
STEPS = [0, 1, 3, 10, 15, 20, 25, 99, 1000]
SCHEDULES = [
    ("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=10, decay_rate=0.5),
     lambda t: 0.1 * 0.5 ** (t / 10)),
    ("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=10, decay_rate=0.5, staircase=True),
     lambda t: 0.1 * 0.5 ** (t // 10)),
    ("InverseTimeDecay", dict(initial_learning_rate=0.2, decay_steps=5, decay_rate=0.5),
     lambda t: 0.2 / (1 + 0.5 * t / 5)),
    ("InverseTimeDecay", dict(initial_learning_rate=0.2, decay_steps=5, decay_rate=0.5, staircase=True),
     lambda t: 0.2 / (1 + 0.5 * (t // 5))),
    ("PiecewiseConstantDecay", dict(boundaries=[3, 20], values=[1.0, 0.5, 0.1]),
     lambda t: 1.0 if t <= 3 else 0.5 if t <= 20 else 0.1),
    ("CosineDecay", dict(initial_learning_rate=0.1, decay_steps=20),
     lambda t: 0.1 * 0.5 * (1 + np.cos(np.pi * min(t, 20) / 20))),
    ("CosineDecay", dict(initial_learning_rate=0.1, decay_steps=20, alpha=0.1),
     lambda t: 0.1 * (0.9 * 0.5 * (1 + np.cos(np.pi * min(t, 20) / 20)) + 0.1)),
    ("CosineDecay", dict(initial_learning_rate=0.0, decay_steps=20, warmup_target=0.2, warmup_steps=10),
     lambda t: 0.2 * t / 10 if t < 10 else 0.2 * 0.5 * (1 + np.cos(np.pi * min(t - 10, 20) / 20))),
]


@pytest.mark.parametrize("name, kwargs, formula", SCHEDULES)
def test_schedules_follow_keras_formulas(name, kwargs, formula):
    schedule = getattr(schedules, name)(**kwargs)
    assert [schedule(t) for t in STEPS] == pytest.approx([formula(t) for t in STEPS], rel=1e-12, abs=1e-15)
    config = schedule.get_config()
    assert {k: v for k, v in config.items() if k in kwargs} == kwargs
    assert type(schedule).from_config(config).get_config() == config


@pytest.mark.parametrize("name, kwargs, formula", SCHEDULES)
def test_schedules_match_keras(keras, name, kwargs, formula):
    ours, theirs = getattr(schedules, name)(**kwargs), getattr(keras.optimizers.schedules, name)(**kwargs)
    assert [ours(t) for t in STEPS] == pytest.approx([float(theirs(t)) for t in STEPS], rel=1e-6, abs=1e-9)
    assert ours.get_config() == theirs.get_config()


def test_schedules_refuse_bad_arguments():
    with pytest.raises(ValueError, match="decay_steps must be a positive number; received 0"):
        schedules.ExponentialDecay(0.1, 0, 0.5)
    with pytest.raises(ValueError, match="one more value than boundaries"):
        schedules.PiecewiseConstantDecay([1, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="increasing"):
        schedules.PiecewiseConstantDecay([5, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="the step must be a non-negative number"):
        schedules.CosineDecay(0.1, 10)(-1)


# -- CSVLogger, TerminateOnNaN ---------------------------------------------------------------------
def test_csv_logger_writes_each_epochs_logs(tmp_path):
    x, y = data(30)
    path = tmp_path / "log.csv"
    h = model().fit(x, y, epochs=3, validation_split=0.2, verbose=0, callbacks=[C.CSVLogger(path)])
    rows = list(csv.DictReader(open(path)))
    assert list(rows[0]) == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    for key in h.history:
        assert [float(r[key]) for r in rows] == h.history[key]
    h2 = model().fit(x, y, epochs=2, verbose=0, callbacks=[C.CSVLogger(path, separator=";", append=True)])
    lines = open(path).read().splitlines()
    assert len(lines) == 6 and lines[4].split(";")[3:] == ["NA", "NA"]   # no validation: Keras writes NA
    assert float(lines[5].split(";")[2]) == h2.history["loss"][1]


def test_terminate_on_nan_stops_gracefully_with_the_weights_before_the_step():
    x, y = data(40)
    x *= 1e30                                   # the first update would overflow float32
    m = model(lr=1e10)
    before = m.get_weights()
    with pytest.raises(NonFiniteLossError):
        m.fit(x, y, epochs=2, verbose=0)
    h = m.fit(x, y, epochs=3, batch_size=10, callbacks=[C.TerminateOnNaN()], verbose=0)
    assert h.epoch == [0] and np.isnan(h.history["loss"][0]) and m.optimizer.iterations == 0
    assert all(np.array_equal(a, b) for a, b in zip(m.get_weights(), before))
    with pytest.raises(RuntimeError, match="NaN or Inf loss encountered at batch 0"):
        m.fit(x, y, callbacks=[C.TerminateOnNaN(raise_error=True)], verbose=0)


# -- fit's data arguments --------------------------------------------------------------------------
def test_validation_split_holds_out_the_last_samples_as_keras_cuts_them(keras):
    x, y = data(1005)
    (train, _, _), (held, _, _) = validation.split_validation((x, y, None), 0.1)
    assert len(train) == 904 and len(held) == 101 and np.array_equal(held, x[-101:])
    from keras.src.trainers.data_adapters.array_slicing import train_validation_split
    for n, split in [(1005, 0.1), (10, 0.3), (7, 0.5), (1000, 0.25), (99, 0.01)]:
        xs = np.arange(n)
        ours = validation.split_validation((xs, None, None), split)
        theirs = train_validation_split((xs,), split)
        assert len(ours[1][0]) == len(theirs[1][0]), (n, split)


def test_fit_validates_on_the_last_101_of_1005_samples():
    x, y = data(1005)
    m = model()
    h = m.fit(x, y, epochs=1, validation_split=0.1, validation_batch_size=1000, verbose=0)
    assert h.params["steps"] == -(-904 // 32)
    assert h.history["val_loss"][0] == pytest.approx(m.evaluate(x[-101:], y[-101:], verbose=0)[0], rel=1e-6)


def test_class_weight_is_sample_weight_by_the_labels_class():
    x, y = data(40)
    a = model()
    b = twin(a)
    weights = {0: 3.0, 1: 0.5}
    ha = a.fit(x, y, epochs=2, batch_size=8, shuffle=False, class_weight=weights, verbose=0)
    hb = b.fit(x, y, epochs=2, batch_size=8, shuffle=False, sample_weight=np.where(y[:, 1] == 1, 0.5, 3.0),
               verbose=0)
    assert ha.history == hb.history
    assert all(np.array_equal(p, q) for p, q in zip(a.get_weights(), b.get_weights()))
    # the weighted loss is Keras's sum_over_batch_size: sum(w * l) / N, the zero weights counted in N
    w = np.linspace(0, 2, 40).astype(np.float32)
    per_sample = -(y * np.log(np.clip(a.predict(x, verbose=0), 1e-7, 1 - 1e-7))).sum(axis=1)
    assert a.evaluate(x, y, sample_weight=w, batch_size=40, verbose=0)[0] == pytest.approx(
        (w * per_sample).sum() / 40, rel=1e-5)
    # integer labels, and a class missing from the dict (it weighs 1)
    sparse = Sequential([Dense(2, activation="softmax", input_shape=(4,))])
    sparse.compile(SGD(0.1), "sparse_categorical_crossentropy")
    labels = y.argmax(axis=1)
    losses = -np.log(np.clip(sparse.predict(x, verbose=0)[np.arange(40), labels], 1e-7, 1 - 1e-7))
    assert sparse.train_on_batch(x, labels, class_weight={1: 0.25}) == pytest.approx(
        (losses[labels == 0].sum() + 0.25 * losses[labels == 1].sum()) / 40, rel=1e-5)


def test_train_on_batch_and_evaluate_return_forms():
    x, y = data(20)
    m = model(metrics=())
    assert isinstance(m.train_on_batch(x, y), float) and isinstance(m.evaluate(x, y, verbose=0), float)
    assert set(m.evaluate(x, y, verbose=0, return_dict=True)) == {"loss"}
    m = model()
    loss, acc = m.evaluate(x, y, verbose=0)
    assert m.evaluate(x, y, verbose=0, return_dict=True) == {"loss": loss, "accuracy": acc}
    assert set(m.train_on_batch(x, y, return_dict=True)) == {"loss", "accuracy"}


def test_steps_per_epoch_carries_the_pass_across_epochs_as_keras():
    """40 samples in batches of 10 (4 per pass), 3 steps per epoch: 3, then the pass's last 1
    (it ran out: a warning), then a new pass: 3, 1. Keras 3 takes the same 8 steps."""
    x, y = data(40)
    m = model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        h = m.fit(x, y, batch_size=10, epochs=4, steps_per_epoch=3, verbose=0)
    assert m.optimizer.iterations == 8 and h.params["steps"] == 3
    assert sum("ran out" in str(w.message) for w in caught) == 2
    m.fit(x, y, batch_size=10, epochs=2, steps_per_epoch=2, verbose=0)
    assert m.optimizer.iterations == 12


def test_steps_per_epoch_matches_keras(keras):
    x, y = data(40)
    k = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    k.compile("sgd", "categorical_crossentropy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        k.fit(x, y, batch_size=10, epochs=4, steps_per_epoch=3, verbose=0)
        m = model()
        m.fit(x, y, batch_size=10, epochs=4, steps_per_epoch=3, verbose=0)
    assert m.optimizer.iterations == int(k.optimizer.iterations)


def test_validation_steps_and_validation_freq():
    x, y = data(40)
    xv, yv = data(30, seed=2)
    m = model()
    h = m.fit(x, y, epochs=1, validation_data=(xv, yv), validation_steps=2, batch_size=10, verbose=0)
    assert h.history["val_loss"][0] == pytest.approx(m.evaluate(xv[:20], yv[:20], verbose=0)[0], rel=1e-6)
    h = model().fit(x, y, epochs=5, validation_data=(xv, yv), validation_freq=2, verbose=0)
    assert len(h.history["loss"]) == 5 and len(h.history["val_loss"]) == 2
    h = model().fit(x, y, epochs=5, validation_data=(xv, yv), validation_freq=[1, 5], verbose=0)
    assert len(h.history["val_loss"]) == 2
    # a third element of validation_data weighs the validation samples
    w = np.r_[np.ones(10), np.zeros(20)].astype(np.float32)
    m = model()
    h = m.fit(x, y, epochs=1, validation_data=(xv, yv, w), batch_size=30, verbose=0)
    assert h.history["val_loss"][0] == pytest.approx(m.evaluate(xv[:10], yv[:10], verbose=0)[0] / 3, rel=1e-5)


# -- regularizers --------------------------------------------------------------------------------
class HalfSquare:
    """A stand-in penalty: c/2 * sum(w^2), gradient c * w."""

    def __init__(self, c):
        self.c = c

    def __call__(self, w):
        return float(0.5 * self.c * np.sum(np.asarray(w, np.float64) ** 2))

    def gradient(self, w):
        return self.c * w


def test_regularizer_penalties_join_the_loss_and_the_gradients():
    x, y = data(20)
    m = model(lr=0.1, metrics=())
    plain = twin(m)
    m.layers[0].regularizers["kernel"] = HalfSquare(0.5)
    kernel = m.get_weights()[0]
    penalty = 0.25 * np.sum(kernel.astype(np.float64) ** 2)
    assert m.evaluate(x, y, verbose=0) == pytest.approx(plain.evaluate(x, y, verbose=0) + penalty, rel=1e-6)
    loss = m.train_on_batch(x, y)
    assert loss == pytest.approx(plain.train_on_batch(x, y) + penalty, rel=1e-6)
    # SGD: the kernel also moves by -lr * 0.5 * kernel; the bias has no penalty
    (k1, b1), (k0, b0) = m.get_weights(), plain.get_weights()
    np.testing.assert_allclose(k1, k0 - 0.1 * 0.5 * kernel, rtol=1e-5, atol=1e-7)
    assert np.array_equal(b1, b0)
    m.layers[0].trainable = False               # frozen: no penalty, and nothing moves
    assert m.evaluate(x, y, verbose=0) == pytest.approx(m.loss(y, m.predict(x, verbose=0)), rel=1e-6)
    frozen = m.get_weights()
    m.train_on_batch(x, y)
    assert all(np.array_equal(a, b) for a, b in zip(m.get_weights(), frozen))


# -- bad arguments ------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, error, message", [
    (dict(callbacks=[C.EarlyStopping]), TypeError, "the class was given"),
    (dict(callbacks="early"), TypeError, "callbacks must be a list"),
    (dict(callbacks=[object()]), TypeError, "Callback instances"),
    (dict(steps_per_epoch=0), ValueError, "steps_per_epoch must be a positive integer or None; received 0"),
    (dict(validation_steps=1.5), ValueError, "validation_steps must be a positive integer"),
    (dict(validation_freq=0), ValueError, "validation_freq must be a positive integer or a list"),
    (dict(class_weight=[1, 2]), TypeError, "class_weight must be a dict"),
    (dict(class_weight={"a": 1}), ValueError, "class indices"),
    (dict(class_weight={0: -1}), ValueError, r"class_weight\[0\] must be a finite number >= 0"),
    (dict(sample_weight=np.ones(3)), ValueError, r"one weight per sample, shape \(20,\); received shape \(3,\)"),
    (dict(sample_weight=-np.ones(20)), ValueError, "finite and non-negative"),
    (dict(sample_weight=np.ones(20), class_weight={0: 2.0}), ValueError, "class_weight or sample_weight, not both"),
    (dict(validation_split=1.0), ValueError, r"validation_split must be in \[0, 1\)"),
    (dict(validation_split=0.99), ValueError, "leaves an empty training or validation set for 20 samples"),
    (dict(validation_data=(1, 2, 3, 4)), ValueError, "val_sample_weight"),
    (dict(validation_batch_size=0), ValueError, "validation_batch_size"),
    (dict(callbacks=[C.EarlyStopping("val_auc", mode="auto")], validation_split=0.5), ValueError,
     "cannot tell whether it should be maximized or minimized; pass mode='max' or mode='min'"),
])
def test_fit_refuses_bad_arguments_clearly(kwargs, error, message):
    x, y = data(20)
    with pytest.raises(error, match=message):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model().fit(x, y, verbose=0, **kwargs)


@pytest.mark.parametrize("make, error, message", [
    (lambda: C.EarlyStopping(mode="bigger"), ValueError, "mode must be 'auto', 'min' or 'max'; received 'bigger'"),
    (lambda: C.EarlyStopping(patience=-1), ValueError, "patience must be an integer >= 0; received -1"),
    (lambda: C.EarlyStopping(monitor=3), TypeError, "monitor must be the name of a log value"),
    (lambda: C.ReduceLROnPlateau(factor=1.0), ValueError, r"factor must be in \(0, 1\)"),
    (lambda: C.ReduceLROnPlateau(min_lr=-1), ValueError, "min_lr must be >= 0"),
    (lambda: C.LearningRateScheduler(0.1), TypeError, "schedule must be a function"),
    (lambda: C.CSVLogger("log.csv", separator="::"), ValueError, "separator must be one character"),
    (lambda: C.ModelCheckpoint(None, save_weights_only=True), TypeError, "filepath must be a path"),
])
def test_callbacks_refuse_bad_arguments_clearly(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_evaluate_refuses_bad_steps_and_weights():
    x, y = data(20)
    m = model()
    with pytest.raises(ValueError, match="evaluate: steps must be a positive integer"):
        m.evaluate(x, y, steps=0, verbose=0)
    with pytest.raises(ValueError, match=r"sequential.*evaluate: sample_weight must hold one weight per sample"):
        m.evaluate(x, y, sample_weight=np.ones((20, 2)), verbose=0)
    with pytest.warns(UserWarning, match="ran out after 1 batches"):
        assert m.evaluate(x, y, steps=5, verbose=0) == m.evaluate(x, y, verbose=0)


def test_one_weighted_regularized_step_matches_keras(keras):
    """SGD on Dense + L2(kernel), with sample weights: the loss reported and the weights after the step."""
    regularizers = pytest.importorskip("tinycnn.regularizers")
    x, y = data(16)
    w = np.linspace(0.0, 2.0, 16).astype(np.float32)
    ours = model(lr=0.1, metrics=())
    ours.layers[0].regularizers["kernel"] = regularizers.L2(0.05)
    theirs = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax",
                                                                     kernel_regularizer=keras.regularizers.L2(0.05))])
    theirs.compile(keras.optimizers.SGD(0.1), "categorical_crossentropy")
    theirs.set_weights(ours.get_weights())
    for _ in range(2):
        assert ours.train_on_batch(x, y, sample_weight=w) == pytest.approx(
            float(theirs.train_on_batch(x, y, sample_weight=w)), rel=1e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert ours.evaluate(x, y, sample_weight=w, verbose=0) == pytest.approx(
        float(theirs.evaluate(x, y, sample_weight=w, verbose=0)), rel=1e-5)
