"""Sequential: a list of layers, and one step of training them.

How backprop flows through a Sequential. Training one batch (Sequential._train_batch) is:

    out  = plan.forward(x, training=True)    # every layer's forward, in order; each keeps its cache
    loss = loss_fn(y, out)
    plan.backward(dL/d out)                  # every layer's backward, in reverse: fills layer.grads
    optimizer.apply(every (param, grad) pair)

The plan is the backend's way to run the layers (tinycnn/plans.py is the reference: the two
loops). A list needs no graph or topological sort: each layer feeds exactly the next one, so
the reverse of the list is the reverse of the computation, and the chain rule is a loop.
Around that step: the epoch loop in training.py, the checks of x and y in validation.py,
the weights files in weights.py.
"""
import os

import numpy as np

from . import backend, outputs, saving
from . import losses as losses_mod
from . import optimizers as optimizers_mod
from . import training, validation
from . import weights as weights_file
from .layers import InputLayer, Layer
from .layers.activations import LogitsGradient, SoftmaxFn
from .layers.base import check_shape, shape_str
from .progress import ProgressBar
from .training import History, NonFiniteLossError  # noqa: F401  (part of the public API)
from .utils import unique_name
from .weights import MissingWeightsFileError, WeightsFileError  # noqa: F401  (part of the public API)


def memory(size):
    """Bytes as Keras 3's summary writes them: '924.00 B', '1.05 KB', '3.42 MB'."""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.2f} {unit}"
        size /= 1024


class NotCompiledError(RuntimeError, ValueError):
    """fit/evaluate/train_on_batch before compile()."""


class Model:
    """What every model has, with Keras's API: compile, fit, evaluate, predict, train_on_batch,
    weights, saving. A Sequential (below) is a list of layers; `Model(inputs, outputs)` is a
    functional model, a graph of layers (tinycnn/functional.py). Both run their layers through a
    plan with forward(x, training) and backward(dout), so the training step is this one.
    """

    def __new__(cls, *args, **kwargs):
        if cls is Model:                           # Model(inputs=..., outputs=...): Keras's functional API
            from .functional import Functional
            return super().__new__(Functional)
        return super().__new__(cls)

    def __init__(self, name=None):
        self.name = name or unique_name("functional")
        self.layers = []
        self.input_shape_ = None
        self.optimizer = self.loss = None
        self.metrics = []
        self.compiled = False
        self._plan_cache = None
        self._gradient_hooks = []            # f(model) after each backward, e.g. plot.record_gradient_norms

    @property
    def _output_layer(self):
        """The layer that makes the output (its activation decides softmax + cross-entropy)."""
        return self.layers[-1] if self.layers else None

    def _print_totals(self, print_fn, sizes=False):
        """The three totals: TF2's plain lines (the tutorial's), or Keras 3's with sizes in bytes (float32)."""
        total = self.count_params()
        trainable = sum(p.size for p in self.trainable_weights)
        for kind, count in (("Total", total), ("Trainable", trainable), ("Non-trainable", total - trainable)):
            print_fn(f" {kind} params: {count:,} ({memory(4 * count)})" if sizes else f"{kind} params: {count:,}")

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """Model.from_config(a functional model's config), as keras.Model.from_config."""
        from .functional import Functional
        return Functional.from_config(config, custom_objects=custom_objects)
    def get_layer(self, name=None, index=None):
        """The layer with this name, or at this index (as Keras: give exactly one of the two)."""
        if (name is None) == (index is None):
            raise ValueError(f"{self.name}.get_layer: give either name= or index=, not "
                             f"{'both' if name is not None else 'neither'}")
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
                raise TypeError(f"{self.name}.get_layer: index must be an integer; received {index!r}")
            if not -len(self.layers) <= index < len(self.layers):
                raise ValueError(f"{self.name}.get_layer: index {index} is out of range for a model "
                                 f"of {len(self.layers)} layers")
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"{self.name}.get_layer: no layer named {name!r}; the layers are "
                         f"{', '.join(repr(layer.name) for layer in self.layers) or 'none'}")

    @property
    def input_shape(self):
        return None if self.input_shape_ is None else (None,) + tuple(self.input_shape_)

    def count_params(self):
        return sum(layer.count_params() for layer in self.layers)

    @property
    def trainable(self):
        """True unless set to False. Setting it sets every layer's `trainable`, as in Keras."""
        return getattr(self, "_trainable", True)

    @trainable.setter
    def trainable(self, value):
        self._trainable = bool(value)
        for layer in self.layers:
            layer.trainable = self._trainable

    @property
    def trainable_weights(self):
        """The weights fit() updates, layer by layer (frozen layers and moving statistics left out)."""
        return [w for layer in self.layers for w in layer.trainable_weights]

    @property
    def non_trainable_weights(self):
        return [w for layer in self.layers for w in layer.non_trainable_weights]

    @property
    def weights(self):
        """Every weight, layer by layer, each layer's in Keras's order (as get_weights, without copying)."""
        return [w for layer in self.layers for w in layer.weights]

    # -- compile -------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None, weighted_metrics=None):
        """Choose the optimizer, the loss and the metrics (names, Metric objects or functions).

        `self._compile_metrics` (a tinycnn.metrics.CompileMetrics) holds the metric objects the
        loops update; `self.metrics` their log keys, e.g. ['accuracy']. A model of several
        outputs takes one loss for all, or a list or dict (by output name) of losses, and
        loss_weights; metrics then as a list of lists or a dict (tinycnn/outputs.py).
        """
        import warnings

        from . import metrics as metrics_mod
        if isinstance(loss_weights, (list, tuple)) and metrics is None and len(self._output_names) == 1:
            loss_weights, metrics = None, loss_weights     # Keras 2's positional compile(opt, loss, metrics)
        try:
            self.optimizer = optimizers_mod.get(optimizer)
            if len(self._output_names) > 1:
                self.loss, self._compile_metrics = self._compile_outputs(loss, loss_weights, metrics,
                                                                         weighted_metrics)
            else:
                if loss_weights is not None:
                    raise ValueError("loss_weights are for models of several outputs; this one has one")
                self.loss = None if loss is None else losses_mod.get(loss)
                self._compile_metrics = metrics_mod.CompileMetrics(metrics, weighted_metrics)
        except (TypeError, ValueError) as err:
            raise type(err)(f"{self.name}.compile: {err}") from None
        if (getattr(self.loss, "from_logits", False) and self.layers
                and isinstance(getattr(self._output_layer, "activation", None), SoftmaxFn)):
            warnings.warn(f"{self.name}.compile: the loss has from_logits=True, but the last layer ends in "
                          f"a softmax, so the outputs are probabilities, not logits. Was this intended?",
                          stacklevel=2)
        self.metrics = list(self._compile_metrics.names)    # the log keys, as the loops use them
        self._compile_args = (optimizer, loss, metrics, weighted_metrics)     # for save()'s compile_config
        self._loss_weights = loss_weights
        self.compiled = True

    _output_names = ("output",)          # a functional model of several outputs has one name each

    def _compile_outputs(self, loss, loss_weights, metrics, weighted_metrics):
        """compile()'s arguments for several outputs -> (MultiLoss, MultiMetrics)."""
        names, k = list(self._output_names), len(self._output_names)

        def each(value, kind, default=None):        # one entry per output: given by list or dict, or one for all
            if value is None:
                return [default] * k
            if isinstance(value, (dict, list, tuple)):
                return outputs.structure(self, value, names, "compile", kind)
            return [value] * k
        losses = [None if l is None else losses_mod.get(l) for l in each(loss, "loss")]
        if loss is None or any(l is None for l in losses):
            losses = None
        weights = [1.0 if w is None else float(w) for w in each(loss_weights, "loss weight", 1.0)]
        if isinstance(metrics, (list, tuple)) and metrics and not all(isinstance(m, (list, tuple, type(None)))
                                                                         for m in metrics):
            raise ValueError(f"a model of {k} outputs takes metrics as a list of {k} lists or a dict by output "
                             f"name ({', '.join(names)}); received a flat list {metrics!r}")
        per_metrics, per_weighted = each(metrics, "metric"), each(weighted_metrics, "weighted metric")
        if losses is None:
            return None, outputs.MultiMetrics(outputs.MultiLoss([], [], []), [])
        multi = outputs.MultiLoss(losses, weights, names)
        return multi, outputs.MultiMetrics(multi, list(zip(per_metrics, per_weighted)))

    def _require_compiled(self, what):
        if not self.compiled:
            raise NotCompiledError(f"{self.name}: call compile(optimizer, loss, metrics) before {what}()")
        if self.loss is None:
            raise NotCompiledError(f"{self.name} was compiled without a loss: call compile(optimizer, "
                                   f"loss='categorical_crossentropy', ...) before {what}()")

    # -- how the layers run ---------------------------------------------------------------
    def _ready_plan(self, x, bar=None):
        """The plan, its kernels compiled for inputs like x (saying so on the progress bar). If
        numba cannot compile them and the user did not ask for it, falls back to NumPy, once."""
        plan = self._plan()
        if plan.compiles:
            if bar is not None:
                bar.note(plan.compile_note)
            try:
                plan.warm_up(outputs.take(x, slice(0, 2)))
            except backend.KernelCompileError as err:
                if backend.explicit():
                    raise
                backend.fall_back(str(err))
                plan = self._plan()
            if bar is not None:
                bar.restart()                  # compiling is not part of the ETA
        return plan

    @property
    def _softmax_into_crossentropy(self):
        """Softmax last and a (non-logits) cross-entropy loss: backward starts from dL/dz = (p - y) / N."""
        return (bool(self.layers) and isinstance(getattr(self._output_layer, "activation", None), SoftmaxFn)
                and self.loss.fuses_with_softmax)

    def _loss_gradient(self, y, out, sample_weight=None):
        """dL/d out of the (sample-weighted) mean loss; for softmax + cross-entropy, dL/dz instead."""
        if isinstance(self.loss, outputs.MultiLoss):
            return self.loss.gradient(y, out, sample_weight, self._softmax_outputs)
        if self._softmax_into_crossentropy:
            return LogitsGradient(self.loss.gradient_logits(y, out, sample_weight=sample_weight))
        return self.loss.gradient(y, out, sample_weight=sample_weight)

    def _slots(self):
        """(key, weight, gradient) of every weight the optimizer updates: frozen ones are left out."""
        return [((layer.name, key), layer.params[key], layer.grads[key])
                for layer in self.layers for key in layer.trained_keys()]

    def _train_batch(self, x, y, where, sample_weight=None):
        """One step of gradient descent: forward, loss, backward, update. Returns (loss, outputs)."""
        plan = self._ready_plan(x)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):    # checked below, clearly
            out = plan.forward(x, training=True)             # (N, outputs): every layer's forward
            loss = self.loss(y, out, sample_weight=sample_weight)
            plan.backward(self._loss_gradient(y, out, sample_weight))    # every layer's backward: the grads
            loss += training.penalties(self, add_gradients=True)        # regularizers: loss and grads
            for hook in self._gradient_hooks:
                hook(self)
            if not np.isfinite(loss):
                raise self._diverged(where, "the loss became NaN or inf", loss)
            if not self.optimizer.apply(self._slots()):      # all or nothing, checked before writing
                bad = not all(np.isfinite(g).all() for _, _, g in self._slots())
                raise self._diverged(where, "the gradients became NaN or inf" if bad else
                                     "the update would have made some weights NaN or inf", loss)
        return loss, out

    def _diverged(self, where, what, loss):
        return NonFiniteLossError(
            f"{self.name}: training diverged at {where}: {what} (loss = {loss}). Nothing was changed: "
            f"the weights and the optimizer's state are those from before this batch. Try a lower "
            f"learning rate (now {self.optimizer.learning_rate}), or check the inputs' scale.")

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        """One update on one batch; returns its loss before the update ([loss, metrics...] with metrics)."""
        self._require_compiled("train_on_batch")
        x = validation.inputs(self, x, "train_on_batch")
        y = validation.targets(self, y, outputs.rows(x), "train_on_batch")
        sample_weight = validation.sample_weights(self, sample_weight, outputs.rows(x), "train_on_batch")
        sample_weight = validation.class_weights(self, class_weight, y, sample_weight, "train_on_batch")
        loss, out = self._train_batch(x, y, "train_on_batch", sample_weight)
        logs = training.Running(self).update(y, out, loss, sample_weight)
        return logs if return_dict else training.flat(logs)

    # -- fit / evaluate / predict ----------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None, sample_weight=None,
            initial_epoch=0, steps_per_epoch=None, validation_steps=None, validation_batch_size=None,
            validation_freq=1):
        """Train for `epochs` passes over (x, y) in shuffled mini-batches; returns a History.

        x may instead be an iterable of (x, y) or (x, y, sample_weight) batches (a generator, a
        list of tuples, image_dataset_from_directory's dataset); validation_data too.
        """
        self._require_compiled("fit")
        verbose = validation.verbose(verbose)
        epochs = validation.epochs(epochs)
        steps_per_epoch = validation.steps(steps_per_epoch, "fit: steps_per_epoch")
        validation_steps = validation.steps(validation_steps, "fit: validation_steps")
        validation_freq = validation.validation_freq(validation_freq)
        data, held_out = training.fit_data(self, x, y, sample_weight, batch_size, shuffle, class_weight,
                                           validation_split, validation_data, validation_batch_size)
        return training.fit(self, data, held_out, epochs, verbose, callbacks, initial_epoch, steps_per_epoch,
                            validation_steps, validation_freq)

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 callbacks=None, return_dict=False):
        """Loss (and the metrics, if compiled with some) on (x, y) or an iterable of batches, in inference mode."""
        self._require_compiled("evaluate")
        verbose = validation.verbose(verbose)
        steps = validation.steps(steps, "evaluate: steps")
        data = training.eval_data(self, x, y, sample_weight, batch_size, "evaluate")
        logs = training.evaluate(self, data, steps, verbose, callbacks)
        return logs if return_dict else training.flat(logs)

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """The model's outputs for x (or an iterable of batches), in inference mode (dropout off), batch by batch."""
        verbose = validation.verbose(verbose)
        steps = validation.steps(steps, "predict: steps")
        out = training.predict(self, training.eval_data(self, x, None, None, batch_size, "predict"), steps,
                               verbose, callbacks)
        keys = getattr(getattr(self, "_graph", None), "output_keys", None)
        return dict(zip(keys, out)) if keys else out              # outputs given as a dict come back as one

    def __call__(self, x, training=False):
        """The outputs for an array x; on a symbolic tensor, this model's layers joined to that graph."""
        from . import graph
        if graph.is_symbolic(x):
            return self._call_symbolic(x)
        x = validation.inputs(self, x, "__call__")
        return self._ready_plan(x).forward(x, training=training)

    def _call_symbolic(self, x):
        """A model used as a layer is inlined: its own layer objects are called on x in turn, so the
        weights are shared with this model, and its `trainable` setting holds in the new graph too."""
        for layer in self.layers:
            x = layer(x)
        return x

    def trace(self, x, y, sample_weight=None):
        """One training step's forward and backward on (x, y), layer by layer, recorded in a Trace
        (tinycnn/trace.py); the weights, the optimizer and the moving statistics are left as they were."""
        from .trace import trace
        return trace(self, x, y, sample_weight)

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

    def save_weights(self, filepath, overwrite=True):
        """Write every weight to `filepath`, atomically: Keras's HDF5 layout for '*.weights.h5' (with
        h5py; the optimizer's state too, as Keras), tinycnn's .npz archive for '*.weights.npz'."""
        if not overwrite and os.path.exists(filepath):
            raise FileExistsError(f"{self.name}.save_weights: {filepath!r} exists and overwrite=False")
        weights_file.save(self, filepath)

    def load_weights(self, filepath):
        """Read a file written by save_weights (here, or by Keras for '.weights.h5'); names and shapes must match."""
        weights_file.load(self, filepath)

    # -- the whole model: config, JSON, .keras files (tinycnn/saving.py) -------------------
    def to_json(self, **kwargs):
        """The architecture as Keras's JSON text (no weights); models.model_from_json reads it back."""
        return saving.to_json(self, **kwargs)

    def save(self, filepath, overwrite=True, zipped=None, include_optimizer=True):
        """Architecture, weights and optimizer state in one '.keras' file, Keras 3's format;
        tinycnn.models.load_model(filepath) gives the model back, compiled as it was."""
        saving.save_model(self, filepath, overwrite=overwrite, zipped=zipped, include_optimizer=include_optimizer)


class Sequential(Model):
    """A linear stack of layers, with Keras's API: add, summary, compile, fit, evaluate, predict.

    A Sequential whose first layer has input_shape= (or that starts with Input(shape)) is
    built at once, so summary(), get_weights() and predict() work before compile().
    """

    def __init__(self, layers=None, name=None):
        super().__init__(name=name or unique_name("sequential"))
        for layer in layers or []:
            self.add(layer)

    def add(self, layer):
        if isinstance(getattr(layer, "input_layer", None), InputLayer):      # tinycnn.Input(shape): a tensor
            layer = layer.input_layer
        if isinstance(layer, InputLayer):
            if self.layers or self.input_shape_ is not None:
                raise ValueError(f"{self.name}: an Input can only come first")
            self.input_shape_ = layer.shape
            return
        if isinstance(layer, Model):                # a model as a layer: its layers join this one, inlined
            if not self.layers and self.input_shape_ is None and layer.input_shape_ is not None:
                self.input_shape_ = tuple(layer.input_shape_)
            for inner in layer.layers:
                self.add(inner)
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"{self.name}.add expects a tinycnn layer; received {type(layer).__name__}")
        if any(layer.name == other.name for other in self.layers):
            raise ValueError(f"{self.name}: a layer named '{layer.name}' is already in the model; names must be unique")
        if not self.layers and self.input_shape_ is None and layer.input_shape is not None:
            self.input_shape_ = layer.input_shape
        self.layers.append(layer)
        if self.input_shape_ is not None:
            try:
                self.build(self.input_shape_)
            except Exception:
                self.layers.pop()                  # a layer that does not fit is not added
                raise

    def pop(self):
        """Remove the last layer and return it, as Keras's Sequential.pop()."""
        if not self.layers:
            raise ValueError(f"{self.name}.pop: there are no layers to remove")
        self._plan_cache = None
        return self.layers.pop()

    def build(self, input_shape):
        """Build every layer from the input shape, checking each fits the next. The shape may
        leave out the batch, (28, 28, 1), or give it as None, (None, 28, 28, 1), as Keras's does."""
        shape = tuple(input_shape)
        if shape and shape[0] is None:
            shape = shape[1:]
        shape = check_shape(shape, f"{self.name}.build: input_shape")
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
    def output_shape(self):
        return (None,) + tuple(self.layers[-1].out_shape) if self.built else None

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
        self._print_totals(print_fn)

    def _plan(self):
        """The backend's plan for these layers, rebuilt when the layers or the backend change."""
        key = (backend.module(), tuple(self.layers))
        if self._plan_cache is None or self._plan_cache[0] != key:
            self._plan_cache = (key, backend.build_plan(self.layers))
        return self._plan_cache[1]

    def get_config(self):
        """Keras's Sequential config: the name and every layer's entry, an InputLayer first if the shape is known."""
        entries = [saving.layer_entry(layer) for layer in self.layers]
        if self.input_shape_ is not None:
            entries.insert(0, saving.input_entry("input_layer", self.input_shape))
        config = {"name": self.name, "trainable": self.trainable, "dtype": "float32", "layers": entries}
        if self.input_shape_ is not None:
            config["build_input_shape"] = list(self.input_shape)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """A new Sequential (fresh weights) from get_config()'s dict, or Keras's."""
        model = cls(name=config.get("name"))
        for entry in config.get("layers", []):
            if entry.get("class_name") == "InputLayer":
                shape = (entry.get("config") or {}).get("batch_shape") or [None] + list(
                    (entry.get("config") or {}).get("shape") or [])
                model.add(InputLayer(shape=tuple(shape[1:])))
            else:
                model.add(saving.layer_from_entry(entry, custom_objects))
        if not model.built and config.get("build_input_shape"):
            model.build(tuple(config["build_input_shape"]))
        if config.get("trainable") is False:           # True leaves each layer's own setting
            model.trainable = False
        return model


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """A model from a '.keras' file written by model.save(), here or by Keras 3."""
    return saving.load_model(filepath, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode)


def model_from_json(json_string, custom_objects=None):
    """The model that to_json() described, with new weights."""
    return saving.model_from_json(json_string, custom_objects=custom_objects)
