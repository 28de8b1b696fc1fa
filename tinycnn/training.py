"""The loops around the training step: epochs of shuffled mini-batches, evaluation, prediction.

    fit(model, x, y, ...)              -> History        (the step itself: Sequential._train_batch)
    evaluate(model, x, y, batch_size)  -> (loss, accuracy)
    predict(model, x, batch_size)      -> outputs
Inputs reach these loops already checked (tinycnn/validation.py).
"""
import numpy as np

from .progress import ProgressBar
from .utils import rng


class History:
    """What fit() returns: `history.history["loss"]` is the list of per-epoch losses, etc."""

    def __init__(self):
        self.history, self.epoch, self.params = {}, [], {}

    def append(self, epoch, logs):
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


class NonFiniteLossError(FloatingPointError, ValueError):
    """Training produced NaN or inf; the weights were left as they were before the batch."""


METRICS = ("accuracy", "acc", "categorical_accuracy", "sparse_categorical_accuracy")


def count_correct(y_true, y_pred):
    """How many predictions of a batch are right: the metric every name in METRICS means."""
    if y_true.ndim == 1:                                       # integer labels
        return int((y_pred.argmax(axis=-1) == y_true).sum())
    if y_pred.shape[-1] == 1:                                  # one sigmoid output
        return int(((y_pred > 0.5) == (y_true > 0.5)).sum())
    return int((y_pred.argmax(axis=-1) == y_true.argmax(axis=-1)).sum())


def batches(n, batch_size, order=None):
    """Index arrays (or slices) of consecutive batches of at most batch_size samples."""
    for start in range(0, n, batch_size):
        yield slice(start, start + batch_size) if order is None else order[start:start + batch_size]


def fit(model, x, y, batch_size, epochs, verbose, validation, shuffle, initial_epoch):
    """`epochs` passes over (x, y) in mini-batches, shuffled each epoch; validation = (x, y) or None."""
    history = History()
    n = len(x)
    steps = -(-n // batch_size)
    history.params = {"verbose": verbose, "epochs": epochs, "steps": steps}
    for epoch in range(initial_epoch, epochs):
        if verbose:
            print(f"Epoch {epoch + 1}/{epochs}", flush=True)
        bar = ProgressBar(steps, verbose)
        model._ready_plan(x, bar)             # compiles the fast kernels, if needed, before the clock starts
        order = rng().permutation(n) if shuffle else np.arange(n)
        loss_sum, correct, seen = 0.0, 0, 0
        for step, idx in enumerate(batches(n, batch_size, order)):
            loss, out = model._train_batch(x[idx], y[idx], f"epoch {epoch + 1}, batch {step + 1}/{steps}")
            loss_sum, correct, seen = loss_sum + loss * len(idx), correct + count_correct(y[idx], out), seen + len(idx)
            logs = {"loss": loss_sum / seen, **dict.fromkeys(model.metrics, correct / seen)}
            bar.update(step + 1, logs, finished=False)
        if validation is not None:
            val_loss, val_accuracy = evaluate(model, *validation, batch_size)
            logs.update({"val_loss": val_loss, **{"val_" + m: val_accuracy for m in model.metrics}})
        bar.update(steps, logs, finished=True)
        history.append(epoch, logs)
    return history


def evaluate(model, x, y, batch_size, bar=None):
    """Mean loss and accuracy over (x, y), in inference mode, batch by batch."""
    plan = model._ready_plan(x, bar)
    loss_sum, correct, seen = 0.0, 0, 0
    for step, idx in enumerate(batches(len(x), batch_size)):
        out = plan.forward(x[idx], training=False)
        loss_sum += model.loss(y[idx], out) * len(out)
        correct, seen = correct + count_correct(y[idx], out), seen + len(out)
        if bar:
            bar.update(step + 1, {"loss": loss_sum / seen, **dict.fromkeys(model.metrics, correct / seen)})
    return loss_sum / len(x), correct / len(x)


def predict(model, x, batch_size, bar):
    """The model's outputs for x, in inference mode (dropout off), batch by batch."""
    plan = model._ready_plan(x, bar)
    outs = []
    for step, idx in enumerate(batches(len(x), batch_size)):
        outs.append(plan.forward(x[idx], training=False))
        bar.update(step + 1)
    return np.concatenate(outs).astype(np.float32, copy=False)
