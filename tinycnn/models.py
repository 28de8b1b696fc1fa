"""Sequential: a list of layers, and the loop that trains them.

How backprop flows through a Sequential. Training one batch is:

    a = x
    for layer in layers:             a = layer.forward(a, training=True)     # each keeps its cache
    loss = loss_fn(y, a)
    d = dL/da                        # or, after softmax + cross-entropy, dL/dz = (p - y) / N
    for layer in reversed(layers):   d = layer.backward(d)                   # fills layer.grads
    optimizer.apply(every (param, grad) pair)

A list needs no graph or topological sort: each layer feeds exactly the next one, so the
reverse of the list is the reverse of the computation, and the chain rule is a loop.
"""
import os
import tempfile
import zipfile

import numpy as np

from . import losses as losses_mod
from . import optimizers as optimizers_mod
from .backend import ops
from .layers import InputLayer, Layer
from .layers.base import shape_str
from .progress import ProgressBar
from .utils import rng, unique_name


class NotCompiledError(RuntimeError, ValueError):
    """fit/evaluate/train_on_batch before compile()."""


class WeightsFileError(ValueError):
    """A weights file that is missing, damaged, or made for another architecture."""


class MissingWeightsFileError(WeightsFileError, FileNotFoundError):
    """load_weights of a path that does not exist."""


class NonFiniteLossError(FloatingPointError, ValueError):
    """Training produced NaN or inf; the weights were left as they were before the batch."""


def _umask():
    """The process's file-creation mask (reading it means setting it, then putting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


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


def as_array(data, what):
    """np.asarray, with a clear error for ragged lists (rows of different lengths)."""
    try:
        return np.asarray(data)
    except ValueError as err:
        raise ValueError(f"{what} must be an array with one shape for every sample; received a "
                         f"{type(data).__name__} that NumPy cannot make rectangular ({err})") from None


# Metric name -> how to count the correct predictions in a batch.
def _count_correct(y_true, y_pred):
    if y_true.ndim == 1:                                       # integer labels
        return int((y_pred.argmax(axis=-1) == y_true).sum())
    if y_pred.shape[-1] == 1:                                  # one sigmoid output
        return int(((y_pred > 0.5) == (y_true > 0.5)).sum())
    return int((y_pred.argmax(axis=-1) == y_true.argmax(axis=-1)).sum())


METRICS = ("accuracy", "acc", "categorical_accuracy", "sparse_categorical_accuracy")


class Sequential:
    """A linear stack of layers, with Keras's API: add, summary, compile, fit, evaluate, predict.

    A Sequential whose first layer has input_shape= (or that starts with Input(shape)) is
    built at once, so summary(), get_weights() and predict() work before compile().
    """

    def __init__(self, layers=None, name=None):
        self.name = name or unique_name("sequential")
        self.layers = []
        self.input_shape_ = None
        self.optimizer = self.loss = None
        self.metrics = []
        self.compiled = False
        for layer in layers or []:
            self.add(layer)

    # -- building ------------------------------------------------------------------------
    def add(self, layer):
        if isinstance(layer, InputLayer):
            if self.layers or self.input_shape_ is not None:
                raise ValueError(f"{self.name}: an Input can only come first")
            self.input_shape_ = layer.shape
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"{self.name}.add expects a tinycnn layer; received {type(layer).__name__}")
        if any(layer.name == other.name for other in self.layers):
            raise ValueError(f"{self.name}: a layer named '{layer.name}' is already in the model; names must be unique")
        if not self.layers and self.input_shape_ is None and layer.input_shape is not None:
            self.input_shape_ = layer.input_shape
        self.layers.append(layer)
        self.layers[0].input_grad = False          # no one needs dL/dx of the model's input
        for other in self.layers[1:]:
            other.input_grad = True
        if self.input_shape_ is not None:
            try:
                self.build(self.input_shape_)
            except Exception:
                self.layers.pop()                  # a layer that does not fit is not added
                raise

    def build(self, input_shape):
        """Build every layer from the input shape (batch excluded), checking each fits the next."""
        shape = tuple(input_shape)
        previous, self.input_shape_ = self.input_shape_, shape
        built_here = []
        try:
            for layer in self.layers:
                if not layer.built:
                    layer.build(shape)
                    built_here.append(layer)
                elif layer.in_shape != shape:
                    raise ValueError(f"{layer} was built for inputs of shape {shape_str(layer.in_shape)} "
                                     f"but receives {shape_str(shape)} here")
                shape = layer.out_shape
        except Exception:
            for layer in built_here:               # undo, so that a call with the right shape still works
                layer.built, layer.params, layer.grads = False, {}, {}
                layer.in_shape = layer.out_shape = None
            self.input_shape_ = previous
            raise

    @property
    def built(self):
        return bool(self.layers) and all(layer.built for layer in self.layers)

    @property
    def input_shape(self):
        return None if self.input_shape_ is None else (None,) + tuple(self.input_shape_)

    @property
    def output_shape(self):
        return (None,) + tuple(self.layers[-1].out_shape) if self.built else None

    def count_params(self):
        return sum(layer.count_params() for layer in self.layers)

    def summary(self, print_fn=None):
        """Print the tutorial's table: layer names and types, output shapes, parameter counts."""
        print_fn = print_fn or print
        if not self.built:
            raise ValueError(f"{self.name} has not been built yet: give the first layer input_shape=..., "
                             f"or call fit() or predict() once, before summary()")

        def row(fields, positions):     # TF2's plain table: a field is cut at its column's end
            line, start = "", 0
            for text, end in zip(fields, positions):
                line += str(text)[:end - start]
                line += " " * (end - len(line)) if len(line) < end else " "
                start = end
            return line

        print_fn(f'Model: "{self.name}"')
        print_fn("_" * 65)
        print_fn(row(["Layer (type)", "Output Shape", "Param #"], [29, 55, 65]))
        print_fn("=" * 65)
        for layer in self.layers:
            print_fn(row([f"{layer.name} ({type(layer).__name__})", shape_str(layer.out_shape),
                          layer.count_params()], [29, 54, 64]))
        print_fn("=" * 65)
        total = self.count_params()
        print_fn(f"Total params: {total:,}")
        print_fn(f"Trainable params: {total:,}")
        print_fn("Non-trainable params: 0")

    # -- compile -------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None):
        try:
            self.optimizer = optimizers_mod.get(optimizer)
            self.loss = None if loss is None else losses_mod.get(loss)
        except ValueError as err:
            raise ValueError(f"{self.name}.compile: {err}") from None
        if isinstance(metrics, str) or (metrics is not None and not isinstance(metrics, (list, tuple))):
            raise TypeError(f"{self.name}.compile: metrics must be a list, such as ['accuracy']; "
                            f"received {metrics!r}")
        metrics = list(metrics or [])
        for m in metrics:
            if not isinstance(m, str) or m not in METRICS:
                raise ValueError(f"{self.name}.compile: unknown metric {m!r}; expected one of "
                                 f"{', '.join(map(repr, METRICS))}")
        self.metrics = metrics
        self.compiled = True

    def _require_compiled(self, what):
        if not self.compiled:
            raise NotCompiledError(f"{self.name}: call compile(optimizer, loss, metrics) before {what}()")
        if self.loss is None:
            raise NotCompiledError(f"{self.name} was compiled without a loss: call compile(optimizer, "
                                   f"loss='categorical_crossentropy', ...) before {what}()")

    @property
    def _fused(self):
        """Softmax last and cross-entropy loss: backward starts from dL/dz = (p - y) / N."""
        activation = getattr(self.layers[-1], "activation", None)
        return getattr(activation, "name", "") == "softmax" and self.loss.fuses_with_softmax

    # -- checking what comes in -----------------------------------------------------------
    def _inputs(self, x, what):
        if x is None:
            raise ValueError(f"{self.name}.{what}: x is required")
        x = as_array(x, f"{self.name}.{what}: x")
        if x.dtype.kind not in "biuf":
            raise TypeError(f"{self.name}.{what}: x must be numeric; received dtype {x.dtype}")
        if x.ndim == 0 or x.shape[0] == 0:
            raise ValueError(f"{self.name}.{what}: x is empty (shape {x.shape})")
        if not self.layers:
            raise ValueError(f"{self.name} has no layers; add some before {what}()")
        if not self.built:
            self.build(x.shape[1:])
        expected = tuple(self.input_shape_)
        if x.shape[1:] != expected:
            hint = ""
            if x.shape[1:] == expected[:-1] and expected[-1] == 1:
                hint = " Add the channel axis with np.expand_dims(x, -1)."
            elif x.ndim == len(expected) + 1 and x.shape[1:-1] == expected[:-1]:
                hint = f" The model expects {expected[-1]} channel(s); x has {x.shape[-1]}."
            elif x.shape == expected:
                hint = " For a single sample, add the batch axis: x[np.newaxis]."
            raise ValueError(f"{self.name}.{what}: expected x of shape {shape_str(expected)}; "
                             f"received {x.shape}.{hint}")
        if not np.isfinite(x).all():
            raise ValueError(f"{self.name}.{what}: x contains NaN or inf values "
                             f"({int((~np.isfinite(x)).sum())} of {x.size}); expected finite numbers")
        wide = x.dtype.kind == "f" and x.dtype.itemsize > 4     # float64 may overflow float32
        with np.errstate(over="ignore"):
            x = x.astype(np.float32, copy=False)
        if wide and not np.isfinite(x).all():
            raise ValueError(f"{self.name}.{what}: x has values too large for float32 (largest |x| = "
                             f"{np.abs(x).max()}); expected magnitudes below 3.4e38. Rescale the inputs.")
        return x

    def _targets(self, y, n, what):
        if y is None:
            raise ValueError(f"{self.name}.{what}: y is required")
        y = as_array(y, f"{self.name}.{what}: y")
        if y.dtype.kind not in "biuf":
            raise TypeError(f"{self.name}.{what}: y must be numeric; received dtype {y.dtype}")
        if y.ndim == 0 or len(y) != n:
            raise ValueError(f"{self.name}.{what}: x and y must have the same length; "
                             f"received {n} inputs and {0 if y.ndim == 0 else len(y)} targets")
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise ValueError(f"{self.name}.{what}: y contains NaN or inf values")
        try:
            return self.loss.check_targets(y, (None,) + tuple(self.layers[-1].out_shape))
        except ValueError as err:
            raise ValueError(f"{self.name}.{what}: {err}") from None

    @staticmethod
    def _batch_size(batch_size, what):
        if batch_size is None:
            return 32
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
            raise ValueError(f"{what}: batch_size must be a positive integer; received {batch_size!r}")
        return int(batch_size)

    @staticmethod
    def _verbose(verbose):
        if verbose == "auto":
            return 1
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1, 2 or 'auto'; received {verbose!r}")
        return verbose

    # -- one step ------------------------------------------------------------------------
    def _forward(self, x, training):
        for layer in self.layers:
            x = layer.forward(x, training=training)
        return x

    def _infer(self, x):
        """The forward pass in inference mode; the backend may run slices of x on different cores."""
        return ops().map_batch(lambda part: self._forward(part, training=False), x)

    def _backward(self, dout):
        last = self.layers[-1]
        dout = last.backward(dout, skip_activation=True) if self._fused else last.backward(dout)
        for layer in reversed(self.layers[:-1]):
            dout = layer.backward(dout)

    def _slots(self):
        return [((layer.name, key), p, layer.grads[key])
                for layer in self.layers for key, p in layer.params.items()]

    def _train_batch(self, xb, yb, where):
        """Forward, loss, backward, update. Returns (loss, number correct) before the update."""
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):   # checked below, clearly
            probs = self._forward(xb, training=True)
            loss = self.loss(yb, probs)
            grad = self.loss.gradient_logits(yb, probs) if self._fused else self.loss.gradient(yb, probs)
            self._backward(grad)
            slots = self._slots()
            if not np.isfinite(loss) or not all(np.isfinite(g).all() for _, _, g in slots):
                bad = "loss" if not np.isfinite(loss) else "gradients"
                raise NonFiniteLossError(
                    f"{self.name}: training diverged at {where}: the {bad} became NaN or inf "
                    f"(loss = {loss}). The weights were left as they were before this batch. "
                    f"Try a lower learning rate (now {self.optimizer.learning_rate}), or check the inputs' scale.")
            params = [p for _, p, _ in slots]
            before = [p.copy() for p in params]       # a step too large can overflow: then undo it
            optimizer_before = self.optimizer.snapshot()
            self.optimizer.apply(slots)
            if not all(np.isfinite(p).all() for p in params):
                for p, old in zip(params, before):
                    p[...] = old
                self.optimizer.restore(optimizer_before)
                raise NonFiniteLossError(
                    f"{self.name}: training diverged at {where}: the update made some weights NaN or inf "
                    f"(loss before it = {loss}). The weights and the optimizer's state were put back as they "
                    f"were before this batch. "
                    f"Try a lower learning rate (now {self.optimizer.learning_rate}), or check the inputs' scale.")
            return loss, _count_correct(yb, probs)

    def train_on_batch(self, x, y):
        """One update on one batch; returns its loss before the update ([loss, accuracy] with metrics)."""
        self._require_compiled("train_on_batch")
        x = self._inputs(x, "train_on_batch")
        y = self._targets(y, len(x), "train_on_batch")
        loss, correct = self._train_batch(x, y, "train_on_batch")
        return [loss] + [correct / len(x)] * len(self.metrics) if self.metrics else loss

    # -- fit / evaluate / predict ----------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, initial_epoch=0):
        """Train for `epochs` passes over (x, y) in shuffled mini-batches; returns a History."""
        self._require_compiled("fit")
        if callbacks:
            raise ValueError("fit: callbacks are not supported by tinycnn")
        verbose = self._verbose(verbose)
        batch_size = self._batch_size(batch_size, "fit")
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
            raise ValueError(f"fit: epochs must be a non-negative integer; received {epochs!r}")
        x = self._inputs(x, "fit")
        y = self._targets(y, len(x), "fit")
        if validation_data is None and validation_split:
            if not isinstance(validation_split, (int, float, np.floating)) or not 0 < validation_split < 1:
                raise ValueError(f"fit: validation_split must be in [0, 1); received {validation_split!r}")
            cut = len(x) - int(len(x) * validation_split)    # Keras holds out the LAST samples
            if cut == 0 or cut == len(x):
                raise ValueError(f"fit: validation_split={validation_split} leaves an empty training "
                                 f"or validation set for {len(x)} samples")
            x, y, validation_data = x[:cut], y[:cut], (x[cut:], y[cut:])
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("fit: validation_data must be a tuple (x_val, y_val)")
            x_val = self._inputs(validation_data[0], "fit (validation_data)")
            y_val = self._targets(validation_data[1], len(x_val), "fit (validation_data)")

        history = History()
        n = len(x)
        steps = -(-n // batch_size)
        history.params = {"verbose": verbose, "epochs": epochs, "steps": steps}
        for epoch in range(initial_epoch, epochs):
            if verbose:
                print(f"Epoch {epoch + 1}/{epochs}", flush=True)
            order = rng().permutation(n) if shuffle else np.arange(n)
            bar = ProgressBar(steps, verbose)
            loss_sum, correct, seen = 0.0, 0, 0
            for step in range(steps):
                idx = order[step * batch_size:(step + 1) * batch_size]
                loss, right = self._train_batch(x[idx], y[idx], f"epoch {epoch + 1}, batch {step + 1}/{steps}")
                loss_sum, correct, seen = loss_sum + loss * len(idx), correct + right, seen + len(idx)
                logs = {"loss": loss_sum / seen, **dict.fromkeys(self.metrics, correct / seen)}
                bar.update(step + 1, logs, finished=False)
            if validation_data is not None:
                val = self._evaluate(x_val, y_val, batch_size)
                logs.update({"val_loss": val[0], **{"val_" + m: val[1] for m in self.metrics}})
            bar.update(steps, logs, finished=True)
            history.append(epoch, logs)
        self.history = history
        return history

    def _evaluate(self, x, y, batch_size, bar=None):
        loss_sum, correct = 0.0, 0
        for step, start in enumerate(range(0, len(x), batch_size)):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            probs = self._infer(xb)
            loss_sum += self.loss(yb, probs) * len(xb)
            correct += _count_correct(yb, probs)
            if bar:
                seen = start + len(xb)
                bar.update(step + 1, {"loss": loss_sum / seen, **dict.fromkeys(self.metrics, correct / seen)})
        return loss_sum / len(x), correct / len(x)

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", return_dict=False):
        """Loss (and accuracy, if compiled with metrics) on (x, y), in inference mode."""
        self._require_compiled("evaluate")
        batch_size = self._batch_size(batch_size, "evaluate")
        verbose = self._verbose(verbose)
        x = self._inputs(x, "evaluate")
        y = self._targets(y, len(x), "evaluate")
        bar = ProgressBar(-(-len(x) // batch_size), verbose)
        loss, accuracy = self._evaluate(x, y, batch_size, bar)
        if return_dict:
            return {"loss": loss, **{m: accuracy for m in self.metrics}}
        return [loss] + [accuracy] * len(self.metrics) if self.metrics else loss

    def predict(self, x, batch_size=None, verbose="auto"):
        """The model's outputs for x, in inference mode (dropout off), batch by batch."""
        batch_size = self._batch_size(batch_size, "predict")
        verbose = self._verbose(verbose)
        x = self._inputs(x, "predict")
        bar = ProgressBar(-(-len(x) // batch_size), verbose)
        outs = []
        for step, start in enumerate(range(0, len(x), batch_size)):
            outs.append(self._infer(x[start:start + batch_size]))
            bar.update(step + 1)
        return np.concatenate(outs).astype(np.float32, copy=False)

    def __call__(self, x, training=False):
        return self._forward(self._inputs(x, "__call__"), training=training)

    # -- weights -------------------------------------------------------------------------
    def get_weights(self):
        """Every layer's weights, in order, as one flat list (Keras's order)."""
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights):
        """Replace every weight from a flat list like get_weights() returns; every array is checked first."""
        if not self.built:
            raise ValueError(f"{self.name} is not built yet, so it has no weights to set")
        weights = list(weights)
        expected = sum(len(layer.params) for layer in self.layers)
        if len(weights) != expected:
            raise ValueError(f"{self.name}.set_weights expects {expected} arrays; received {len(weights)}")
        checked, start = [], 0
        for layer in self.layers:                  # check every array before changing anything
            chunk = weights[start:start + len(layer.params)]
            try:
                checked.append({key: layer.checked_weight(key, w) for key, w in zip(layer.params, chunk)})
            except (TypeError, ValueError) as err:
                raise type(err)(f"{self.name}.set_weights: {err}") from None
            start += len(layer.params)
        for layer, new in zip(self.layers, checked):
            layer.params.update(new)               # already checked and cast: no second pass

    def _weight_names(self):
        return [f"{i}.{type(layer).__name__}.{key}"
                for i, layer in enumerate(self.layers) for key in layer.params]

    def save_weights(self, path):
        """Write every weight to `path` (an .npz archive; conventionally *.weights.npz), atomically."""
        if not self.built:
            raise ValueError(f"{self.name} is not built yet, so it has no weights to save")
        path = os.fspath(path)
        arrays = dict(zip(self._weight_names(), self.get_weights()))
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"save_weights: the folder {folder!r} does not exist; create it first")
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)              # plain .npy arrays in a zip: no pickle
                f.flush()
                os.fsync(f.fileno())               # on disk before the rename, not just in a cache
            os.chmod(tmp, 0o666 & ~_umask())       # mkstemp makes it private (0600); use the usual mode
            os.replace(tmp, path)                  # readers see the old file or the new one, never half
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise

    def load_weights(self, path):
        """Read a file written by save_weights; every name and shape must match this model."""
        if not self.built:
            raise ValueError(f"{self.name} is not built yet: build it (input_shape=...) before load_weights()")
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise MissingWeightsFileError(f"load_weights: no weights file at {path!r}")
        names = self._weight_names()
        if not zipfile.is_zipfile(path):
            raise WeightsFileError(f"load_weights: {path!r} is not a weights file: expected an .npz "
                                   f"archive written by save_weights(); this one is truncated, "
                                   f"corrupted or in another format")
        try:
            with np.load(path, allow_pickle=False) as archive:
                stored = {name: archive[name] for name in archive.files}
        except Exception as err:                   # zipfile and np.load raise many kinds on bad bytes
            raise WeightsFileError(f"load_weights: {path!r} is truncated or corrupted "
                                   f"({type(err).__name__}: {err})") from None
        if set(stored) != set(names):
            missing = [n for n in names if n not in stored]
            extra = [n for n in stored if n not in names]
            raise WeightsFileError(f"load_weights: {path!r} was saved from another architecture: it holds "
                                   f"{len(stored)} arrays and {self.name} has {len(names)}; "
                                   f"missing {missing[:4]}{'...' if len(missing) > 4 else ''}, "
                                   f"unexpected {extra[:4]}{'...' if len(extra) > 4 else ''}")
        weights = []
        for name, current in zip(names, self.get_weights()):
            w = stored[name]
            if w.shape != current.shape or w.dtype.kind != "f":
                raise WeightsFileError(f"load_weights: {path!r} was saved from another architecture: "
                                       f"'{name}' has shape {w.shape} ({w.dtype}), the model needs "
                                       f"{current.shape} (float)")
            weights.append(w)
        self.set_weights(weights)
