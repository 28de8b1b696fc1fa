"""Callbacks: code that fit() and evaluate() call at fixed points of their loops, as in Keras 3.

    fit:       on_train_begin
                 on_epoch_begin(epoch)
                   on_train_batch_begin(batch)  ... one step ...  on_train_batch_end(batch, logs)
                   validation: on_test_begin, on_test_batch_begin/end, on_test_end(logs)
                 on_epoch_end(epoch, logs)       logs: {"loss": ..., "accuracy": ..., "val_loss": ...}
               on_train_end(logs)
    evaluate:  on_test_begin ... on_test_end(logs)

Batch logs hold the running means of the epoch so far; epoch logs the epoch's means and the
validation results (val_ keys). `epoch` and `batch` count from 0. A callback stops training by
setting `self.model.stop_training = True`: fit finishes the epoch (validation included) and ends.
A callback may add keys to the epoch logs (the learning-rate callbacks add "learning_rate"):
the callbacks after it, the History and the progress bar see them.
"""
import csv
import inspect
import os
import warnings

import numpy as np


def _count(value, arg, kind):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{kind}: {arg} must be an integer >= 0; received {value!r}")
    return int(value)


def _real(value, arg, kind):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value):
        raise ValueError(f"{kind}: {arg} must be a finite number; received {value!r}")
    return float(value)


class Callback:
    """Base class: every hook does nothing. Subclass it and define the hooks you need."""

    def __init__(self):
        self.params = None       # {"verbose": ..., "epochs": ..., "steps": ...}, set by fit
        self._model = None

    def set_params(self, params):
        self.params = params

    def set_model(self, model):
        self._model = model

    @property
    def model(self):
        return self._model

    def on_batch_begin(self, batch, logs=None):
        """Keras's older name for on_train_batch_begin (which calls it)."""

    def on_batch_end(self, batch, logs=None):
        """Keras's older name for on_train_batch_end (which calls it)."""

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs=logs)

    def on_test_batch_begin(self, batch, logs=None):
        pass

    def on_test_batch_end(self, batch, logs=None):
        pass

    def on_predict_batch_begin(self, batch, logs=None):
        pass

    def on_predict_batch_end(self, batch, logs=None):
        pass

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_test_begin(self, logs=None):
        pass

    def on_test_end(self, logs=None):
        pass

    def on_predict_begin(self, logs=None):
        pass

    def on_predict_end(self, logs=None):
        pass


HOOKS = [name for name in vars(Callback) if name.startswith("on_")]


class CallbackList:
    """Calls each hook of every callback, in order: `callbacks.on_epoch_end(epoch, logs)`.

    With add_history=True a History is appended (unless one was given) and becomes model.history.
    Every callback sees the same logs dict, so what one adds the next ones see.
    """

    def __init__(self, callbacks=None, add_history=False, model=None, **params):
        if isinstance(callbacks, CallbackList):
            callbacks = callbacks.callbacks
        if callbacks is None:
            callbacks = []
        if not isinstance(callbacks, (list, tuple)):
            raise TypeError(f"callbacks must be a list of tinycnn.callbacks.Callback; received {callbacks!r}")
        for cb in callbacks:
            if not isinstance(cb, Callback):
                hint = " (the class was given: create an instance)" if isinstance(cb, type) else ""
                raise TypeError(f"callbacks must be tinycnn.callbacks.Callback instances; received "
                                f"{cb!r}{hint}")
        self.callbacks = list(callbacks)
        self.history = next((cb for cb in self.callbacks if isinstance(cb, History)), None)
        if add_history and self.history is None:
            self.history = History()
            self.callbacks.append(self.history)
        if model is not None:
            self.set_model(model)
        if params:
            self.set_params(params)

    def append(self, callback):
        self.callbacks.append(callback)

    def set_model(self, model):
        if self.history is not None:
            model.history = self.history
        for cb in self.callbacks:
            cb.set_model(model)

    def set_params(self, params):
        for cb in self.callbacks:
            cb.set_params(params)

    def __getattr__(self, name):
        if name not in HOOKS:
            raise AttributeError(name)

        def call_all(*args, **kwargs):
            for cb in self.callbacks:
                getattr(cb, name)(*args, **kwargs)
        return call_all


class History(Callback):
    """What fit() returns: `history.history["loss"]` is the list of per-epoch losses, etc."""

    def __init__(self):
        super().__init__()
        self.history, self.epoch, self.params = {}, [], {}

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.append(epoch, logs or {})

    def append(self, epoch, logs):
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


def direction(model, name):
    """'down' for a loss (or an error, a cross-entropy), 'up' for an accuracy (precision, recall), else None."""
    if name == "loss":
        return "down"
    for metric in getattr(getattr(model, "_compile_metrics", None), "metrics", []):
        if metric.name == name:
            kind = type(metric).__name__
            if kind.endswith(("Accuracy", "Precision", "Recall")):
                return "up"
            if kind.endswith(("Error", "Crossentropy")):
                return "down"
    return None


class MonitorCallback(Callback):
    """What EarlyStopping, ModelCheckpoint and ReduceLROnPlateau share: a monitored log value and
    when it improves. mode 'min' (lower is better), 'max', or 'auto': 'min' for a loss, 'max' for
    an accuracy. An improvement beats the best so far by more than min_delta."""

    def __init__(self, monitor="val_loss", mode="auto", baseline=None, min_delta=0):
        super().__init__()
        kind = type(self).__name__
        if not isinstance(monitor, str):
            raise TypeError(f"{kind}: monitor must be the name of a log value, such as 'val_loss'; "
                            f"received {monitor!r}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"{kind}: mode must be 'auto', 'min' or 'max'; received {mode!r}")
        self.monitor, self.mode = monitor, mode
        self.best = None if baseline is None else _real(baseline, "baseline", kind)
        self.min_delta = abs(_real(min_delta, "min_delta", kind))
        self.lower_is_better = None          # decided at the first epoch's end, when the metrics exist

    def _set_direction(self):
        """Called at the first epoch's end (as Keras), so an unknown monitor fails early and clearly."""
        if self.lower_is_better is not None:
            return
        if self.mode != "auto":
            self.lower_is_better = self.mode == "min"
            return
        way = direction(self.model, self.monitor.removeprefix("val_"))
        if way is None:
            raise ValueError(f"{type(self).__name__}: monitor={self.monitor!r}: cannot tell whether it "
                             f"should be maximized or minimized; pass mode='max' or mode='min'")
        self.lower_is_better = way == "down"

    def _is_improvement(self, current, reference):
        self._set_direction()
        if reference is None:
            return True
        if self.lower_is_better:
            return current + self.min_delta < reference
        return current - self.min_delta > reference

    def _monitored(self, logs, what):
        """The monitored value, or None with Keras's warning when the logs do not have it."""
        value = (logs or {}).get(self.monitor)
        if value is None:
            warnings.warn(f"{what} is conditioned on metric `{self.monitor}` which is not available. "
                          f"Available metrics are: {','.join(logs or {})}", stacklevel=3)
        return value


class EarlyStopping(MonitorCallback):
    """Stop training when `monitor` has not improved for `patience` epochs.

    baseline: training also stops if the value does not beat it within `patience` epochs.
    restore_best_weights: at the end, put back the weights of the best epoch (if one was seen).
    start_from_epoch: epochs not watched at the start (warm-up).
    """

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
        super().__init__(monitor, mode, min_delta=min_delta)
        self.patience = _count(patience, "patience", "EarlyStopping")
        self.start_from_epoch = _count(start_from_epoch, "start_from_epoch", "EarlyStopping")
        self.baseline = None if baseline is None else _real(baseline, "baseline", "EarlyStopping")
        self.verbose, self.restore_best_weights = verbose, bool(restore_best_weights)
        self.on_train_begin()

    def on_train_begin(self, logs=None):
        self.wait = self.stopped_epoch = self.best_epoch = 0     # the callback can be reused
        self.best = self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        self._set_direction()
        current = self._monitored(logs, "Early stopping")
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = self.model.get_weights(), epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0                # patience restarts only once the baseline is beaten too
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(MonitorCallback):
    """Save the weights after every epoch (or every save_freq batches), or only when `monitor` improves.

    filepath may hold placeholders, filled from the epoch (from 1) and the logs, e.g.
    "ckpt/{epoch:02d}-{val_loss:.2f}.keras". Missing folders are created. As in Keras, the name
    says what is saved: the whole model ("*.keras", model.save) or, with save_weights_only=True,
    the weights ("*.weights.h5", or tinycnn's "*.weights.npz"; model.save_weights).
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, save_weights_only=False,
                 mode="auto", save_freq="epoch", initial_value_threshold=None):
        super().__init__(monitor, mode, initial_value_threshold)
        try:
            self.filepath = os.fspath(filepath)
        except TypeError:
            raise TypeError(f"ModelCheckpoint: filepath must be a path (a str); received {filepath!r}") from None
        endings = (".weights.h5", ".weights.npz") if save_weights_only else (".keras",)
        if not self.filepath.endswith(endings):
            raise ValueError(f"ModelCheckpoint: with save_weights_only={bool(save_weights_only)}, the filepath "
                             f"must end in {' or '.join(map(repr, endings))}; received filepath={self.filepath!r}")
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, (int, np.integer))
                                     or save_freq <= 0):
            raise ValueError(f"ModelCheckpoint: save_freq must be 'epoch' or a positive number of batches; "
                             f"received {save_freq!r}")
        self.verbose, self.save_best_only = verbose, bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self.save_freq = save_freq
        self._batches_since_save, self._last_batch, self._epoch = 0, None, 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        new_epoch = self._last_batch is None or batch <= self._last_batch
        self._batches_since_save += batch + 1 if new_epoch else batch - self._last_batch
        self._last_batch = batch
        if self._batches_since_save >= self.save_freq:
            self._batches_since_save = 0
            self._save(self._epoch, batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch, None, logs)

    def _path(self, epoch, batch, logs):
        fields = {"epoch": epoch + 1, **({} if batch is None else {"batch": batch + 1}), **(logs or {})}
        try:
            return self.filepath.format(**fields)
        except KeyError as err:
            raise KeyError(f'ModelCheckpoint: failed to format the filepath "{self.filepath}": no {err} '
                           f'in the logs (available: {", ".join(fields)})') from None

    def _should_save(self, epoch, logs, path):
        if not self.save_best_only:
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: saving model to {path}")
            return True
        current = (logs or {}).get(self.monitor)
        if current is None:
            warnings.warn(f"Can save best model only with {self.monitor} available.", stacklevel=3)
            return True
        best = "None" if self.best is None else f"{self.best:.5f}"
        if self._is_improvement(current, self.best):
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {best} to {current:.5f}, "
                      f"saving model to {path}")
            self.best = current
            return True
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {best}")
        return False

    def _save(self, epoch, batch, logs):
        path = self._path(epoch, batch, logs)
        if self._should_save(epoch, logs, path):
            if os.path.isdir(path):
                raise IsADirectoryError(f"ModelCheckpoint: filepath {path!r} is an existing folder; "
                                        f"give a file name, such as 'best.weights.npz'")
            folder = os.path.dirname(path)
            if folder:
                os.makedirs(folder, exist_ok=True)
            (self.model.save_weights if self.save_weights_only else self.model.save)(path)
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: finished saving model to {path}")


def _log_learning_rate(model, logs):
    if logs is not None:
        logs["learning_rate"] = float(model.optimizer.learning_rate)


class LearningRateScheduler(Callback):
    """At each epoch's start, set the optimizer's learning rate to schedule(epoch, lr) (or schedule(epoch))."""

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler: schedule must be a function (epoch, lr) -> lr; "
                            f"received {schedule!r}")
        self.schedule, self.verbose = schedule, verbose

    def _takes_lr(self):
        try:
            inspect.signature(self.schedule).bind(0, 0.0)
            return True
        except TypeError:
            return False
        except ValueError:               # no signature to read (some builtins): try Keras's new form
            return True

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        lr = self.schedule(epoch, float(optimizer.learning_rate)) if self._takes_lr() else self.schedule(epoch)
        if not isinstance(lr, (float, np.floating)):
            raise ValueError(f"LearningRateScheduler: the output of the schedule function should be a "
                             f"float; received {lr!r} at epoch {epoch}")
        optimizer.learning_rate = float(lr)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")

    def on_epoch_end(self, epoch, logs=None):
        _log_learning_rate(self.model, logs)


class ReduceLROnPlateau(MonitorCallback):
    """Multiply the learning rate by `factor` when `monitor` has not improved for `patience` epochs.

    After a reduction, `cooldown` epochs pass before epochs without improvement count again;
    the rate never goes below min_lr.
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0):
        super().__init__(monitor, mode, min_delta=min_delta)
        kind = "ReduceLROnPlateau"
        self.factor = _real(factor, "factor", kind)
        if not 0 < factor < 1:
            raise ValueError(f"{kind}: factor must be in (0, 1) (new_lr = lr * factor); received {factor!r}")
        self.min_lr = _real(min_lr, "min_lr", kind)
        if self.min_lr < 0:
            raise ValueError(f"{kind}: min_lr must be >= 0; received {min_lr!r}")
        self.patience = _count(patience, "patience", kind)
        self.cooldown = _count(cooldown, "cooldown", kind)
        self.verbose = verbose
        self.on_train_begin()

    def on_train_begin(self, logs=None):
        self.best, self.wait, self.cooldown_counter = None, 0, 0

    def in_cooldown(self):
        return self.cooldown_counter > 0

    def on_epoch_end(self, epoch, logs=None):
        self._set_direction()
        _log_learning_rate(self.model, logs)
        current = self._monitored(logs, "Learning rate reduction")
        if current is None:
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best, self.wait = current, 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                old = float(self.model.optimizer.learning_rate)
                if old > np.float32(self.min_lr):
                    new = max(old * self.factor, self.min_lr)
                    self.model.optimizer.learning_rate = new
                    if self.verbose > 0:
                        print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new}.")
                    self.cooldown_counter, self.wait = self.cooldown, 0


class CSVLogger(Callback):
    """Write each epoch's logs as a row of a CSV file: epoch (from 0), then the log keys, sorted."""

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        try:
            self.filename = os.fspath(filename)
        except TypeError:
            raise TypeError(f"CSVLogger: filename must be a path (a str); received {filename!r}") from None
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"CSVLogger: separator must be one character; received {separator!r}")
        self.sep, self.append = separator, bool(append)
        self.file = self.writer = self.keys = None

    def on_train_begin(self, logs=None):
        header = not (self.append and os.path.isfile(self.filename) and os.path.getsize(self.filename) > 0)
        if self.file is not None and not self.file.closed:
            self.file.close()
        self.file = open(self.filename, "a" if self.append else "w", newline="")
        self.writer, self.keys, self.header = None, None, header

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            if self.keys and not any(k.startswith("val_") for k in self.keys):
                self.keys += [f"val_{k}" for k in self.keys]    # as Keras: columns for a later validation
        if self.writer is None:
            self.writer = csv.DictWriter(self.file, fieldnames=["epoch"] + self.keys, delimiter=self.sep)
            if self.header:
                self.writer.writeheader()
        self.writer.writerow({"epoch": epoch, **{k: logs.get(k, "NA") for k in self.keys}})
        self.file.flush()

    def on_train_end(self, logs=None):
        if self.file is not None and not self.file.closed:
            self.file.close()
        self.writer = None


class TerminateOnNaN(Callback):
    """Stop training when a batch's loss is NaN or inf (raise_error=True: raise a RuntimeError instead).

    tinycnn never applies such a step: the weights stay those from before the batch. Without this
    callback that step raises NonFiniteLossError; with it, fit ends the epoch and returns.
    """

    def __init__(self, raise_error=False):
        super().__init__()
        self.raise_error = bool(raise_error)

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            if self.raise_error:
                raise RuntimeError(f"NaN or Inf loss encountered at batch {batch}. Loss value: {loss}. "
                                   f"Terminating training immediately.")
            print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True
