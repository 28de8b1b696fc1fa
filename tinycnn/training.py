"""The loops around the training step: epochs of mini-batches, evaluation, prediction.

    fit(model, data, validation, epochs, ...)     -> History  (the step: Sequential._train_batch)
    evaluate(model, data, steps, ...)             -> logs {"loss": ..., "accuracy": ...}
    predict(model, data, steps, ...)              -> outputs
`data` is where the batches come from, the same loops for both kinds (fit_data() makes them):
ArrayBatches cuts checked arrays into (shuffled) batches; IterableBatches takes them from an
iterable (a generator, a list of (x, y) tuples, image_dataset_from_directory's dataset),
checking each as arrays are checked (tinycnn/validation.py). A pass is one walk through the
data; data.next() gives the next (x, y, sample_weight) batch of the pass, or None at its end.
The callbacks' hooks are called where Keras 3 calls them (tinycnn/callbacks.py).

What the logs report, as Keras: "loss" is the mean of the batches' losses weighted by their
sizes (each batch's loss the sample-weighted sum over its samples / its size, plus the
regularizers' penalties); the metrics are the compiled metric objects' results.
"""
import time
import warnings

import numpy as np

from .callbacks import CallbackList, History  # noqa: F401  (History: part of the public API)
from . import advice, validation
from .outputs import concatenate, rows, take
from .progress import ProgressBar, format_value, per_step
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
        self.loss_sum, self.seen = self.loss_sum + loss * rows(out), self.seen + rows(out)
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


def ran_out(what, steps, available, stacklevel=4):
    warnings.warn(f"{what}: the data ran out after {available} batches; asked for {steps} steps. As in Keras, "
                  f"the epoch ends here; use steps <= {available} or more data.", stacklevel=stacklevel)


def validates(epoch, validation_freq):
    """Whether fit validates after this epoch (from 0): every validation_freq epochs, or those listed (from 1)."""
    return epoch + 1 in validation_freq if isinstance(validation_freq, list) else (epoch + 1) % validation_freq == 0


class ArrayBatches:
    """Batches of checked arrays (x, y, sample_weight; y and w may be None), batch_size samples each.

    A pass walks through the samples once, in a new random order each pass with shuffle=True.
    """

    def __init__(self, x, y=None, sample_weight=None, batch_size=32, shuffle=False):
        self.arrays, self.batch_size, self.shuffle = (x, y, sample_weight), batch_size, shuffle
        self.steps = -(-rows(x) // batch_size)      # batches in a pass
        self.sample = x                            # inputs like those to come, to ready the plan
        self.pending = []                          # the batches of this pass not given yet (reversed)

    def new_pass(self):
        n = rows(self.arrays[0])                    # drawn only when needed: the same random stream as before
        self.pending = list(batches(n, self.batch_size, rng().permutation(n) if self.shuffle else None))[::-1]

    restart = new_pass                             # evaluate and predict start from the first sample

    def next(self):
        if not self.pending:
            return None
        idx = self.pending.pop()
        return tuple(take(a, idx) for a in self.arrays)


class IterableBatches:
    """Batches from an iterable: each pass is iter(data). A generator (one-shot: iter(data) is data)
    cannot start over: its second pass is empty, and evaluate continues where it stopped.

    The first batch is read at once: it builds the model, and an empty iterable fails here.
    class_weight (a dict) turns each batch's labels into sample weights.
    """

    def __init__(self, model, data, what, with_targets=True, class_weight=None):
        self.model, self.data, self.what = model, data, what
        self.with_targets, self.class_weight = with_targets, class_weight
        self.iterator, self.served, self.peeked = iter(data), 0, None
        self.one_shot = self.iterator is data
        self.steps = len(data) if hasattr(data, "__len__") and not self.one_shot else None
        first = self.next()
        if first is None:
            raise ValueError(f"{model.name}.{what}: the data yielded no batches; expected at least one "
                             f"(x, y) batch" + (" (a generator used up already?)" if self.one_shot else ""))
        self.peeked, self.served, self.sample = first, 0, first[0]

    def new_pass(self):
        self.iterator, self.served, self.peeked = iter(self.data), 0, None

    def restart(self):
        """evaluate/predict start from the beginning, unless nothing was taken yet or it cannot start over."""
        if self.served and not self.one_shot:
            self.new_pass()

    def next(self):
        if self.peeked is not None:
            batch, self.peeked = self.peeked, None
        else:
            try:
                item = next(self.iterator)
            except StopIteration:
                return None
            batch = validation.batch(self.model, item, f"{self.what} (batch {self.served + 1})", self.with_targets)
            if self.class_weight is not None:
                batch = batch[:2] + (validation.class_weights(self.model, self.class_weight, batch[1], batch[2],
                                                              self.what),)
        self.served += 1
        return batch


def fit_data(model, x, y, sample_weight, batch_size, shuffle, class_weight, validation_split, validation_data,
             validation_batch_size):
    """fit's arguments checked, as the training and validation batches (validation: None if not asked)."""
    if validation.is_batches(x):
        validation.no_array_arguments(model, "fit", y=y, sample_weight=sample_weight, batch_size=batch_size,
                                      validation_split=validation_split)
        if shuffle:
            warnings.warn("`shuffle=True` was passed, but will be ignored since the data `x` was provided as an "
                          "iterable of batches (as Keras warns): it is expected to shuffle itself "
                          "(image_dataset_from_directory(shuffle=True) does, every pass).", stacklevel=3)
        data = IterableBatches(model, x, "fit", class_weight=class_weight)
    else:
        batch_size = validation.batch_size(batch_size, "fit")
        x = validation.inputs(model, x, "fit")
        y = validation.targets(model, y, rows(x), "fit")
        sample_weight = validation.sample_weights(model, sample_weight, rows(x), "fit")
        if validation_data is None and validation_split:       # the last samples, before shuffling
            (x, y, sample_weight), validation_data = validation.split_validation((x, y, sample_weight),
                                                                                 validation_split)
        sample_weight = validation.class_weights(model, class_weight, y, sample_weight, "fit")
        data = ArrayBatches(x, y, sample_weight, batch_size, shuffle)
    if validation_data is None:
        if validation_batch_size is not None:
            validation.batch_size(validation_batch_size, "fit: validation_batch_size")
        return data, None
    if validation.is_batches(validation_data):
        validation.no_array_arguments(model, "fit", validation_batch_size=validation_batch_size)
        return data, IterableBatches(model, validation_data, "fit (validation_data)")
    size = validation.batch_size(validation_batch_size or batch_size, "fit: validation_batch_size")
    return data, ArrayBatches(*validation.validation_pair(model, validation_data), batch_size=size)


def eval_data(model, x, y, sample_weight, batch_size, what):
    """evaluate's (what="evaluate") or predict's (what="predict") data, checked, as batches."""
    if validation.is_batches(x):
        validation.no_array_arguments(model, what, y=y, sample_weight=sample_weight, batch_size=batch_size)
        return IterableBatches(model, x, what, with_targets=what != "predict")
    batch_size = validation.batch_size(batch_size, what)
    x = validation.inputs(model, x, what)
    if what == "predict":
        return ArrayBatches(x, batch_size=batch_size)
    y = validation.targets(model, y, rows(x), what)
    return ArrayBatches(x, y, validation.sample_weights(model, sample_weight, rows(x), what), batch_size)


class OpenBar(ProgressBar):
    """The bar for a pass of unknown length (a generator without steps): "12/Unknown", no ETA, as Keras."""

    def __init__(self, verbose):
        super().__init__(1, verbose)

    def bar(self, current):
        return f"{current}/Unknown"

    def line(self, current, values, finished):
        elapsed = time.perf_counter() - self.start
        text = f"{self.bar(current)} - {elapsed:.0f}s {per_step(elapsed / max(current, 1))}"
        return text + "".join(f" - {name}: {format_value(float(np.mean(v)))}" for name, v in values.items())


def progress_bar(steps, verbose):
    return OpenBar(verbose) if steps is None else ProgressBar(steps, verbose)


def fit(model, data, validation_data, epochs, verbose, callbacks, initial_epoch, steps_per_epoch,
        validation_steps, validation_freq):
    """`epochs` epochs of mini-batches from `data`; validation_data: batches or None. Returns the History.

    An epoch is one pass over the data, or with steps_per_epoch the next steps_per_epoch batches
    of the pass in progress, as Keras: a new pass starts when one is used up, and an epoch that
    would run past its end stops there (with a warning). A generator cannot start a new pass:
    once it is used up, training stops (with Keras's warning).
    """
    steps = steps_per_epoch or data.steps      # None: the length of a pass is not known
    if (getattr(validation_data, "one_shot", False) and validation_steps is None
            and sum(validates(e, validation_freq) for e in range(initial_epoch, epochs)) > 1):
        raise ValueError(f"{model.name}.fit: validation_data is a generator, which can be iterated only once, "
                         f"but fit validates more than once; give validation_steps (the generator then yields "
                         f"validation_steps batches per validation) or a re-iterable (a list of batches)")
    callbacks = CallbackList(callbacks, add_history=True, model=model, verbose=verbose, epochs=epochs, steps=steps)
    model.stop_training = False
    callbacks.on_train_begin()
    adviser = advice.Advice(model)             # warnings for silent mistakes (tinycnn/advice.py)
    epoch_logs, seen = None, None              # seen: a pass's length, once a pass of unknown length ended
    for epoch in range(initial_epoch, epochs):
        batch = data.next()
        if batch is None:                      # the last pass is used up: a new one
            data.new_pass()
            batch = data.next()
        if batch is None:
            warnings.warn(f"fit: your input ran out of data; interrupting training after epoch {epoch} (as "
                          f"Keras). A generator can be iterated only once: give steps_per_epoch and a generator "
                          f"of at least steps_per_epoch * epochs batches, or a re-iterable (a list of batches, "
                          f"image_dataset_from_directory's dataset).", stacklevel=3)
            break
        callbacks.on_epoch_begin(epoch)
        if verbose:
            print(f"Epoch {epoch + 1}/{epochs}", flush=True)
        bar = progress_bar(steps or seen, verbose)
        model._ready_plan(data.sample, bar)    # compiles the fast kernels, if needed, before the clock starts
        running, done = Running(model), 0
        while batch is not None:
            x, y, w = batch
            callbacks.on_train_batch_begin(done)
            done += 1
            try:
                loss, out = model._train_batch(x, y, f"epoch {epoch + 1}, batch {done}/{steps or '?'}", w)
            except NonFiniteLossError:         # the step was refused; TerminateOnNaN may stop here instead
                logs = {**running.logs(), "loss": float("nan")}
                callbacks.on_train_batch_end(done - 1, logs)
                if not model.stop_training:
                    raise
                break
            logs = running.update(y, out, loss, w)
            adviser.step(x, out, loss)
            bar.update(done, logs, finished=False)
            callbacks.on_train_batch_end(done - 1, logs)
            if model.stop_training or done == steps:
                break
            batch = data.next()
        if batch is None:
            if steps is not None:
                ran_out("fit", steps, done)
            else:
                seen = done
        epoch_logs = dict(logs)
        if validation_data is not None and validates(epoch, validation_freq):
            val_logs = evaluate(model, validation_data, validation_steps, callbacks=callbacks, what="fit (validation)")
            epoch_logs.update({"val_" + key: value for key, value in val_logs.items()})
        callbacks.on_epoch_end(epoch, epoch_logs)
        bar.target = done                      # an epoch cut short ends its bar where it stopped, as Keras
        bar.update(done, epoch_logs, finished=True)
        if model.stop_training:
            break
    callbacks.on_train_end(epoch_logs)
    return model.history


def inference(model, data, steps, verbose, what):
    """(step, x, y, w, plan, bar) for each batch evaluate and predict run, in inference mode.

    From the start of the data (a generator: where it stopped), for `steps` batches or to the end.
    """
    data.restart()
    if steps is not None and data.steps is not None and steps > data.steps:
        ran_out(what, steps, data.steps, stacklevel=5)
        steps = data.steps
    bar = progress_bar(steps or data.steps, verbose)
    plan = model._ready_plan(data.sample, bar)
    step = 0
    while steps is None or step < steps:
        batch = data.next()
        if batch is None:
            if step == 0:
                raise ValueError(f"{model.name}.{what}: the data yielded no batches: a generator can be "
                                 f"iterated only once; give a re-iterable, or steps with a longer generator")
            if steps is not None:
                ran_out(what, steps, step, stacklevel=5)
            break
        yield (step, *batch, plan, bar)
        step += 1
    bar.target = step


def evaluate(model, data, steps=None, verbose=0, callbacks=None, what="evaluate"):
    """The logs over the data (the first `steps` batches, if given), in inference mode, batch by batch."""
    if not isinstance(callbacks, CallbackList):
        callbacks = CallbackList(callbacks, model=model, verbose=verbose, epochs=1, steps=steps or data.steps)
    penalty = penalties(model)                 # the weights do not change here: the same for every batch
    running = Running(model)
    callbacks.on_test_begin()
    for step, x, y, w, plan, bar in inference(model, data, steps, verbose, what):
        callbacks.on_test_batch_begin(step)
        out = plan.forward(x, training=False)
        logs = running.update(y, out, model.loss(y, out, sample_weight=w) + penalty, w)
        bar.update(step + 1, logs, finished=False)
        callbacks.on_test_batch_end(step, logs)
    bar.update(step + 1, logs, finished=True)
    callbacks.on_test_end(logs)
    return logs


def predict(model, data, steps=None, verbose=0, callbacks=None):
    """The model's outputs, in inference mode (dropout off), batch by batch; the predict hooks as Keras 3."""
    callbacks = CallbackList(callbacks, model=model, verbose=verbose, epochs=1, steps=steps or data.steps)
    callbacks.on_predict_begin()
    outs = []
    for step, x, _, _, plan, bar in inference(model, data, steps, verbose, "predict"):
        callbacks.on_predict_batch_begin(step)
        outs.append(plan.forward(x, training=False))
        bar.update(step + 1, finished=False)
        callbacks.on_predict_batch_end(step, {"outputs": outs[-1]})
    bar.update(step + 1, finished=True)
    callbacks.on_predict_end()
    return concatenate(outs)
