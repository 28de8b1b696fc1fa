"""The loops around the training step: epochs of shuffled mini-batches, evaluation, prediction.

    fit(model, x, y, sample_weight, validation, ...)   -> History  (the step: Sequential._train_batch)
    evaluate(model, x, y, sample_weight, batch_size)   -> logs {"loss": ..., "accuracy": ...}
    predict(model, x, batch_size)                      -> outputs
Inputs reach these loops already checked (tinycnn/validation.py). The callbacks' hooks are
called where Keras 3 calls them (tinycnn/callbacks.py).

What the logs report, as Keras: "loss" is the mean of the batches' losses weighted by their
sizes (each batch's loss the sample-weighted sum over its samples / its size, plus the
regularizers' penalties); the metrics are the compiled metric objects' results.
"""
import warnings

import numpy as np

from .callbacks import CallbackList, History  # noqa: F401  (History: part of the public API)
from .progress import ProgressBar
from .utils import rng


class NonFiniteLossError(FloatingPointError, ValueError):
    """Training produced NaN or inf; the weights were left as they were before the batch."""


def batches(n, batch_size, order=None):
    """Index arrays (or slices) of consecutive batches of at most batch_size samples."""
    for start in range(0, n, batch_size):
        yield slice(start, start + batch_size) if order is None else order[start:start + batch_size]


def penalties(model, add_gradients=False):
    """The regularizers' penalty on the trained weights; add_gradients: each one's gradient joins the grads."""
    total = 0.0
    for layer in model.layers:
        for key in layer.trained_keys():
            penalty = layer.regularizers.get(key)
            if penalty is not None:
                total += float(penalty(layer.params[key]))
                if add_gradients:          # a new array: backends may keep the grads' buffers
                    layer.grads[key] = layer.grads[key] + penalty.gradient(layer.params[key])
    return total


class Running:
    """The logs after each batch: the loss's mean weighted by batch size, and the metrics' results."""

    def __init__(self, model):
        self.metrics = model._compile_metrics
        self.metrics.reset_state()
        self.loss_sum, self.seen = 0.0, 0

    def update(self, y, out, loss, sample_weight=None):
        self.loss_sum, self.seen = self.loss_sum + loss * len(out), self.seen + len(out)
        self.metrics.update_state(y, out, sample_weight)
        return self.logs()

    def logs(self):
        if not self.seen:                       # before any batch, as Keras's metrics: 0
            return {"loss": 0.0, **dict.fromkeys(self.metrics.names, 0.0)}
        return {"loss": self.loss_sum / self.seen, **self.metrics.result()}


def flat(logs):
    """What evaluate and train_on_batch return without return_dict: the loss alone, or [loss, metrics...]."""
    values = list(logs.values())
    return values[0] if len(values) == 1 else values


def ran_out(what, steps, available):
    warnings.warn(f"{what}: the data ran out after {available} batches; asked for {steps} steps. As in Keras, "
                  f"the epoch ends here; use steps <= {available} or more data.", stacklevel=4)


def fit(model, x, y, sample_weight, validation, batch_size, epochs, verbose, callbacks, shuffle,
        initial_epoch, steps_per_epoch, validation_steps, validation_batch_size, validation_freq):
    """`epochs` epochs of mini-batches; validation = (x, y, sample_weight) or None. Returns the History.

    An epoch is one shuffled pass over (x, y), or with steps_per_epoch the next steps_per_epoch
    batches of the pass in progress, as Keras: a pass is reshuffled when used up, and an epoch
    that would run past its end stops there (with a warning).
    """
    n, per_pass = len(x), -(-len(x) // batch_size)
    steps = steps_per_epoch or per_pass
    callbacks = CallbackList(callbacks, add_history=True, model=model, verbose=verbose, epochs=epochs, steps=steps)
    model.stop_training = False
    callbacks.on_train_begin()
    pending, epoch_logs = [], None          # the batches of the current pass not used yet
    for epoch in range(initial_epoch, epochs):
        callbacks.on_epoch_begin(epoch)
        if verbose:
            print(f"Epoch {epoch + 1}/{epochs}", flush=True)
        bar = ProgressBar(steps, verbose)
        model._ready_plan(x, bar)           # compiles the fast kernels, if needed, before the clock starts
        running, done = Running(model), 0
        for step in range(steps):
            if not pending:
                if step:
                    ran_out("fit", steps, step)
                    break
                pending = list(batches(n, batch_size, rng().permutation(n) if shuffle else None))[::-1]
            idx = pending.pop()
            w = None if sample_weight is None else sample_weight[idx]
            callbacks.on_train_batch_begin(step)
            done += 1
            try:
                loss, out = model._train_batch(x[idx], y[idx], f"epoch {epoch + 1}, batch {step + 1}/{steps}", w)
            except NonFiniteLossError:      # the step was refused; TerminateOnNaN may stop here instead
                logs = {**running.logs(), "loss": float("nan")}
                callbacks.on_train_batch_end(step, logs)
                if not model.stop_training:
                    raise
                break
            logs = running.update(y[idx], out, loss, w)
            bar.update(step + 1, logs, finished=False)
            callbacks.on_train_batch_end(step, logs)
            if model.stop_training:
                break
        epoch_logs = dict(logs)
        if validation is not None and (epoch + 1 in validation_freq if isinstance(validation_freq, list)
                                       else (epoch + 1) % validation_freq == 0):
            val_logs = evaluate(model, *validation, validation_batch_size or batch_size, validation_steps,
                                callbacks=callbacks)
            epoch_logs.update({"val_" + key: value for key, value in val_logs.items()})
        callbacks.on_epoch_end(epoch, epoch_logs)
        bar.target = done                   # an epoch cut short ends its bar where it stopped, as Keras
        bar.update(done, epoch_logs, finished=True)
        if model.stop_training:
            break
    callbacks.on_train_end(epoch_logs)
    return model.history


def evaluate(model, x, y, sample_weight, batch_size, steps=None, verbose=0, callbacks=None):
    """The logs over (x, y) (the first `steps` batches, if given), in inference mode, batch by batch."""
    per_pass = -(-len(x) // batch_size)
    if steps is not None and steps > per_pass:
        ran_out("evaluate", steps, per_pass)
    steps = min(steps or per_pass, per_pass)
    if not isinstance(callbacks, CallbackList):
        callbacks = CallbackList(callbacks, model=model, verbose=verbose, epochs=1, steps=steps)
    bar = ProgressBar(steps, verbose)
    plan = model._ready_plan(x, bar)
    penalty = penalties(model)              # the weights do not change here: the same for every batch
    running = Running(model)
    callbacks.on_test_begin()
    for step, idx in zip(range(steps), batches(len(x), batch_size)):
        callbacks.on_test_batch_begin(step)
        out = plan.forward(x[idx], training=False)
        w = None if sample_weight is None else sample_weight[idx]
        logs = running.update(y[idx], out, model.loss(y[idx], out, sample_weight=w) + penalty, w)
        bar.update(step + 1, logs)
        callbacks.on_test_batch_end(step, logs)
    callbacks.on_test_end(logs)
    return logs


def predict(model, x, batch_size, bar):
    """The model's outputs for x, in inference mode (dropout off), batch by batch."""
    plan = model._ready_plan(x, bar)
    outs = []
    for step, idx in enumerate(batches(len(x), batch_size)):
        outs.append(plan.forward(x[idx], training=False))
        bar.update(step + 1)
    return np.concatenate(outs).astype(np.float32, copy=False)
