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
import numpy as np

from . import backend
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


class NotCompiledError(RuntimeError, ValueError):
    """fit/evaluate/train_on_batch before compile()."""


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
        self._plan_cache = None
        self._gradient_hooks = []            # f(model) after each backward, e.g. plot.record_gradient_norms
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
    def input_shape(self):
        return None if self.input_shape_ is None else (None,) + tuple(self.input_shape_)

    @property
    def output_shape(self):
        return (None,) + tuple(self.layers[-1].out_shape) if self.built else None

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
        trainable = sum(p.size for layer in self.layers for p in layer.trainable_weights)
        print_fn(f"Total params: {total:,}")
        print_fn(f"Trainable params: {trainable:,}")
        print_fn(f"Non-trainable params: {total - trainable:,}")

    # -- compile -------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, weighted_metrics=None):
        """Choose the optimizer, the loss and the metrics (names, Metric objects or functions).

        `self._compile_metrics` (a tinycnn.metrics.CompileMetrics) holds the metric objects the
        loops update; `self.metrics` their log keys, e.g. ['accuracy'].
        """
        import warnings

        from . import metrics as metrics_mod
        try:
            self.optimizer = optimizers_mod.get(optimizer)
            self.loss = None if loss is None else losses_mod.get(loss)
            self._compile_metrics = metrics_mod.CompileMetrics(metrics, weighted_metrics)
        except (TypeError, ValueError) as err:
            raise type(err)(f"{self.name}.compile: {err}") from None
        if (getattr(self.loss, "from_logits", False) and self.layers
                and isinstance(getattr(self.layers[-1], "activation", None), SoftmaxFn)):
            warnings.warn(f"{self.name}.compile: the loss has from_logits=True, but the last layer ends in "
                          f"a softmax, so the outputs are probabilities, not logits. Was this intended?",
                          stacklevel=2)
        self.metrics = list(self._compile_metrics.names)    # the log keys, as the loops use them
        self.compiled = True

    def _require_compiled(self, what):
        if not self.compiled:
            raise NotCompiledError(f"{self.name}: call compile(optimizer, loss, metrics) before {what}()")
        if self.loss is None:
            raise NotCompiledError(f"{self.name} was compiled without a loss: call compile(optimizer, "
                                   f"loss='categorical_crossentropy', ...) before {what}()")

    # -- how the layers run ---------------------------------------------------------------
    def _plan(self):
        """The backend's plan for these layers, rebuilt when the layers or the backend change."""
        key = (backend.module(), tuple(self.layers))
        if self._plan_cache is None or self._plan_cache[0] != key:
            self._plan_cache = (key, backend.build_plan(self.layers))
        return self._plan_cache[1]

    def _ready_plan(self, x, bar=None):
        """The plan, its kernels compiled for inputs like x (saying so on the progress bar). If
        numba cannot compile them and the user did not ask for it, falls back to NumPy, once."""
        plan = self._plan()
        if plan.compiles:
            if bar is not None:
                bar.note(plan.compile_note)
            try:
                plan.warm_up(x[:2])
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
        return (bool(self.layers) and isinstance(getattr(self.layers[-1], "activation", None), SoftmaxFn)
                and self.loss.fuses_with_softmax)

    def _loss_gradient(self, y, out, sample_weight=None):
        """dL/d out of the (sample-weighted) mean loss; for softmax + cross-entropy, dL/dz instead."""
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
        y = validation.targets(self, y, len(x), "train_on_batch")
        sample_weight = validation.sample_weights(self, sample_weight, len(x), "train_on_batch")
        sample_weight = validation.class_weights(self, class_weight, y, sample_weight, "train_on_batch")
        loss, out = self._train_batch(x, y, "train_on_batch", sample_weight)
        logs = training.Running(self).update(y, out, loss, sample_weight)
        return logs if return_dict else training.flat(logs)

    # -- fit / evaluate / predict ----------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None, sample_weight=None,
            initial_epoch=0, steps_per_epoch=None, validation_steps=None, validation_batch_size=None,
            validation_freq=1):
        """Train for `epochs` passes over (x, y) in shuffled mini-batches; returns a History."""
        self._require_compiled("fit")
        verbose = validation.verbose(verbose)
        batch_size = validation.batch_size(batch_size, "fit")
        epochs = validation.epochs(epochs)
        steps_per_epoch = validation.steps(steps_per_epoch, "fit: steps_per_epoch")
        validation_steps = validation.steps(validation_steps, "fit: validation_steps")
        validation_freq = validation.validation_freq(validation_freq)
        x = validation.inputs(self, x, "fit")
        y = validation.targets(self, y, len(x), "fit")
        sample_weight = validation.sample_weights(self, sample_weight, len(x), "fit")
        if validation_data is None and validation_split:       # the last samples, before shuffling
            (x, y, sample_weight), validation_data = validation.split_validation((x, y, sample_weight),
                                                                                 validation_split)
        sample_weight = validation.class_weights(self, class_weight, y, sample_weight, "fit")
        held_out = None if validation_data is None else validation.validation_pair(self, validation_data)
        validation_batch_size = (None if validation_batch_size is None
                                 else validation.batch_size(validation_batch_size, "fit: validation_batch_size"))
        return training.fit(self, x, y, sample_weight, held_out, batch_size, epochs, verbose, callbacks, shuffle,
                            initial_epoch, steps_per_epoch, validation_steps, validation_batch_size, validation_freq)

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 callbacks=None, return_dict=False):
        """Loss (and the metrics, if compiled with some) on (x, y), in inference mode."""
        self._require_compiled("evaluate")
        batch_size = validation.batch_size(batch_size, "evaluate")
        verbose = validation.verbose(verbose)
        steps = validation.steps(steps, "evaluate: steps")
        x = validation.inputs(self, x, "evaluate")
        y = validation.targets(self, y, len(x), "evaluate")
        sample_weight = validation.sample_weights(self, sample_weight, len(x), "evaluate")
        logs = training.evaluate(self, x, y, sample_weight, batch_size, steps, verbose, callbacks)
        return logs if return_dict else training.flat(logs)

    def predict(self, x, batch_size=None, verbose="auto"):
        """The model's outputs for x, in inference mode (dropout off), batch by batch."""
        batch_size = validation.batch_size(batch_size, "predict")
        verbose = validation.verbose(verbose)
        x = validation.inputs(self, x, "predict")
        return training.predict(self, x, batch_size, ProgressBar(-(-len(x) // batch_size), verbose))

    def __call__(self, x, training=False):
        x = validation.inputs(self, x, "__call__")
        return self._ready_plan(x).forward(x, training=training)

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

    def save_weights(self, path):
        """Write every weight to `path` (an .npz archive; conventionally *.weights.npz), atomically."""
        weights_file.save(self, path)

    def load_weights(self, path):
        """Read a file written by save_weights; every name and shape must match this model."""
        weights_file.load(self, path)
