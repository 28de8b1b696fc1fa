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
from .layers.base import shape_str
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
            if not isinstance(m, str) or m not in training.METRICS:
                raise ValueError(f"{self.name}.compile: unknown metric {m!r}; expected one of "
                                 f"{', '.join(map(repr, training.METRICS))}")
        self.metrics = metrics
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
        """Softmax last and a cross-entropy loss: backward starts from dL/dz = (p - y) / N."""
        return isinstance(getattr(self.layers[-1], "activation", None), SoftmaxFn) and self.loss.fuses_with_softmax

    def _loss_gradient(self, y, out):
        if self._softmax_into_crossentropy:
            return LogitsGradient(self.loss.gradient_logits(y, out))     # the softmax passes it on
        return self.loss.gradient(y, out)

    def _slots(self):
        return [((layer.name, key), p, layer.grads[key])
                for layer in self.layers for key, p in layer.params.items()]

    def _train_batch(self, x, y, where):
        """One step of gradient descent: forward, loss, backward, update. Returns (loss, outputs)."""
        plan = self._ready_plan(x)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):    # checked below, clearly
            out = plan.forward(x, training=True)             # (N, outputs): every layer's forward
            loss = self.loss(y, out)
            plan.backward(self._loss_gradient(y, out))        # every layer's backward: fills the grads
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

    def train_on_batch(self, x, y):
        """One update on one batch; returns its loss before the update ([loss, accuracy] with metrics)."""
        self._require_compiled("train_on_batch")
        x = validation.inputs(self, x, "train_on_batch")
        y = validation.targets(self, y, len(x), "train_on_batch")
        loss, out = self._train_batch(x, y, "train_on_batch")
        correct = training.count_correct(y, out)
        return [loss] + [correct / len(x)] * len(self.metrics) if self.metrics else loss

    # -- fit / evaluate / predict ----------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, initial_epoch=0):
        """Train for `epochs` passes over (x, y) in shuffled mini-batches; returns a History."""
        self._require_compiled("fit")
        if callbacks:
            raise ValueError("fit: callbacks are not supported by tinycnn")
        verbose = validation.verbose(verbose)
        batch_size = validation.batch_size(batch_size, "fit")
        epochs = validation.epochs(epochs)
        x = validation.inputs(self, x, "fit")
        y = validation.targets(self, y, len(x), "fit")
        if validation_data is None and validation_split:
            (x, y), validation_data = validation.split_validation(x, y, validation_split)
        held_out = None if validation_data is None else validation.validation_pair(self, validation_data)
        self.history = training.fit(self, x, y, batch_size, epochs, verbose, held_out, shuffle, initial_epoch)
        return self.history

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", return_dict=False):
        """Loss (and accuracy, if compiled with metrics) on (x, y), in inference mode."""
        self._require_compiled("evaluate")
        batch_size = validation.batch_size(batch_size, "evaluate")
        verbose = validation.verbose(verbose)
        x = validation.inputs(self, x, "evaluate")
        y = validation.targets(self, y, len(x), "evaluate")
        bar = ProgressBar(-(-len(x) // batch_size), verbose)
        loss, accuracy = training.evaluate(self, x, y, batch_size, bar)
        if return_dict:
            return {"loss": loss, **{m: accuracy for m in self.metrics}}
        return [loss] + [accuracy] * len(self.metrics) if self.metrics else loss

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
