"""ex.use(my_module): tinycnn's layers call your functions for the exercises you wrote.

    from tinycnn import exercises as ex
    import my_answers                          # a file with dense_backward, conv2d_backward, ...
    with ex.use(my_answers):                   # or ex.use(my_answers) ... ex.use(None)
        model.fit(x, y)                        # every Dense.backward now runs your dense_backward
    ex.train_with(my_answers, limit=2000)      # the seed CNN on MNIST, yours beside the reference

Which function replaces what (a function the module does not define leaves its layer alone):
    dense_backward         Dense.backward                 (after the activation's derivative)
    conv2d_backward        Conv2D.backward                (after the activation's derivative)
    conv2d_forward         Conv2D.forward                 (before the activation)
    maxpool_backward       MaxPooling2D.backward          (windows = strides, "valid" padding)
    softmax_cross_entropy  the cross-entropy's dL/dz behind a softmax (the loss value stays tinycnn's)
    adam_step              Adam's update of every weight
    relu_backward          the "relu" activation's derivative, in every layer that uses it (given the
                           ReLU's output as x: it is > 0 exactly where the input is)
    dropout_backward       Dropout.backward
    batchnorm_backward     BatchNormalization.backward    (training-mode statistics)
    softmax_jvp            the "softmax" activation's backward, where no cross-entropy fuses with it
    avgpool_backward       AveragePooling2D.backward      (windows = strides, "valid" padding)
    global_avgpool_backward  GlobalAveragePooling2D.backward
(two_layer_backward is a whole network, no layer's method: ex.use leaves it out.)
Your function gets the same arguments as its exercise (float32 arrays from a real network) and
its results are checked for shape and finiteness: a wrong one raises ExerciseError naming the
exercise and the layer. A layer your function cannot serve (e.g. a max-pool with overlapping
windows) runs tinycnn's own code, with a warning saying so, once per layer.

While in use, tinycnn runs on the NumPy backend (the Numba backend fuses layers into compiled
steps and would never call your Python), and says so; undoing restores the backend and every
method exactly. The checkers (ex.check_*) always compare against tinycnn's own code, even
inside `with ex.use(...)`.
"""
import contextlib
import warnings

import numpy as np

from .. import backend
from ..kernels import numpy_ops
from ..layers.activations import LogitsGradient, Relu, SoftmaxFn
from ..layers.conv import Conv2D
from ..layers.dense import Dense
from ..layers.dropout import Dropout
from ..layers.normalization import BatchNormalization
from ..layers.pooling import AveragePooling2D, GlobalAveragePooling2D, MaxPooling2D
from ..losses import CategoricalCrossentropy
from ..optimizers import Adam


class ExerciseError(RuntimeError):
    """A function given to ex.use raised, or returned something a layer cannot use."""


HOOKS = {}        # exercise name -> installer(fn) -> [(class, method name, replacement)]
_state = {"patches": [], "backend": None, "module": None}


def hook(*names):
    def register(installer):
        for name in names:
            HOOKS[name] = installer
        return installer
    return register


def run(exercise, fn, layer, args, expected):
    """fn(*args), its results checked against the expected shapes and cast to the layer's dtype."""
    try:
        out = fn(*args)
    except Exception as err:
        raise ExerciseError(f"ex.use: your {exercise} raised {type(err).__name__}: {err} (in {layer})") from err
    single = len(expected) == 1
    results = (out,) if single and not isinstance(out, tuple) else out
    if not isinstance(results, (tuple, list)) or len(results) != len(expected):
        raise ExerciseError(f"ex.use: your {exercise} must return {len(expected)} value(s) "
                            f"({', '.join(expected)}); received {type(out).__name__} (in {layer})")
    checked = []
    for (name, shape), value in zip(expected.items(), results):
        value = np.asarray(value)
        if shape is not None and value.shape != tuple(shape):
            raise ExerciseError(f"ex.use: your {exercise} returned {name} of shape {value.shape}; "
                                f"expected {tuple(shape)} (in {layer})")
        if not np.isfinite(value).all():
            raise ExerciseError(f"ex.use: your {exercise} returned {name} with NaN or inf (in {layer})")
        checked.append(value.astype(np.float32, copy=False) if value.dtype.kind == "f" else value)
    return checked[0] if single else checked


def cannot_serve(layer, exercise, why):
    warnings.warn(f"ex.use: {layer} runs tinycnn's own backward, not your {exercise}: {why}",
                  RuntimeWarning, stacklevel=3)


# ----------------------------------------------------------------------------------------
# The hooks: each replaces one method by one calling the student's function
# ----------------------------------------------------------------------------------------
@hook("dense_backward")
def dense_hook(fn):
    def backward(self, dout):
        x, kept = self.cached()
        dz = self.activation.backward(dout, kept)                            # (N, ..., units)
        rows, dz_rows = x.reshape(-1, x.shape[-1]), dz.reshape(-1, self.units)
        w = self.params["kernel"]
        dx, dw, db = run("dense_backward", fn, self, (dz_rows, rows, w),
                         {"dx": rows.shape, "dw": w.shape, "db": (self.units,)})
        self.grads["kernel"] = dw
        if self.use_bias:
            self.grads["bias"] = db
        return dx.reshape(x.shape)
    return [(Dense, "backward", backward)]


def conv_patches(forward_fn, backward_fn):
    """Conv2D's forward keeps its input x (what the student's backward takes); either may be the student's."""
    def forward(self, x, training=False):
        w, b = self.params["kernel"], self.params.get("bias")
        if forward_fn is None:
            z, _ = numpy_ops.conv2d_forward(x, w, b, self.strides, self.pads)
        else:
            b = np.zeros(self.filters, x.dtype) if b is None else b          # the exercise always has a bias
            z = run("conv2d_forward", forward_fn, self, (x, w, b, self.strides, self.pads),
                    {"out": (x.shape[0],) + self.out_shape})
        out = self.activation.forward(z)
        self.cache = (x, z if self.activation.needs_z else out) if training else None
        return out

    def backward(self, dout):
        x, kept = self.cached()
        dz = self.activation.backward(dout, kept)                            # (N, OH, OW, F)
        w = self.params["kernel"]
        if backward_fn is None:
            _, saved = numpy_ops.conv2d_forward(x, w, None, self.strides, self.pads)
            dx, dw, db = numpy_ops.conv2d_backward(dz, saved)
        else:
            dx, dw, db = run("conv2d_backward", backward_fn, self, (dz, x, w, self.strides, self.pads),
                             {"dx": x.shape, "dw": w.shape, "db": (self.filters,)})
        self.grads["kernel"] = dw
        if self.use_bias:
            self.grads["bias"] = db
        return dx
    return [(Conv2D, "forward", forward), (Conv2D, "backward", backward)]


@hook("conv2d_backward")
def conv_backward_hook(fn):
    return conv_patches(None, fn)


@hook("conv2d_forward")
def conv_forward_hook(fn):
    return conv_patches(fn, None)


def keep_input(cls, exercise, serves, call):
    """forward keeps (its own cache, x); backward calls the student where `serves(layer)` is True."""
    original_forward, original_backward = cls.forward, cls.backward
    warned = set()

    def forward(self, x, training=False):
        out = original_forward(self, x, training)
        if training:
            self.cache = (self.cache, x)
        return out

    def backward(self, dout):
        own, x = self.cached()
        why = serves(self, x)
        if why is None:
            return call(self, dout, x)
        if self.name not in warned:
            warned.add(self.name)
            cannot_serve(self, exercise, why)
        self.cache = own
        try:
            return original_backward(self, dout)
        finally:
            self.cache = (own, x)
    return [(cls, "forward", forward), (cls, "backward", backward)]


def tiled_windows(self, x):
    """None if the exercise's non-overlapping, unpadded windows are what the layer computes; else why not."""
    if tuple(self.strides) != tuple(self.pool_size) or any(self.pads):
        return f"strides {self.strides} or padding {self.padding!r} differ from windows = strides, 'valid'"
    return None


def pooled(fn, exercise):
    """The student's pooling backward on the part of x that the windows cover (the rest gets 0)."""
    def call(self, dout, x):
        (PH, PW), (_, OH, OW, _) = self.pool_size, dout.shape
        inner = x[:, :OH * PH, :OW * PW, :]                  # valid pooling drops the last rows if H % PH
        dinner = run(exercise, fn, self, (dout, inner, self.pool_size), {"dx": inner.shape})
        dx = np.zeros(x.shape, dtype=dout.dtype)
        dx[:, :OH * PH, :OW * PW, :] = dinner
        return dx
    return call


@hook("maxpool_backward")
def maxpool_hook(fn):
    return keep_input(MaxPooling2D, "maxpool_backward", tiled_windows, pooled(fn, "maxpool_backward"))


@hook("avgpool_backward")
def avgpool_hook(fn):
    return keep_input(AveragePooling2D, "avgpool_backward", tiled_windows, pooled(fn, "avgpool_backward"))


@hook("global_avgpool_backward")
def global_avgpool_hook(fn):
    def call(self, dout, x):
        return run("global_avgpool_backward", fn, self, (dout.reshape(x.shape[0], x.shape[-1]), x),
                   {"dx": x.shape})
    return keep_input(GlobalAveragePooling2D, "global_avgpool_backward", lambda self, x: None, call)


@hook("relu_backward")
def relu_hook(fn):
    def backward(self, da, a):
        return run("relu_backward", fn, "a relu activation", (da, a), {"dx": da.shape})   # a > 0 exactly where z > 0
    return [(Relu, "backward", backward)]


@hook("dropout_backward")
def dropout_hook(fn):
    def backward(self, dout):
        mask = self.cached()                                 # like x: 0, or 1 / (1 - rate) where kept
        return run("dropout_backward", fn, self, (dout, mask != 0, self.rate), {"dx": dout.shape})
    return [(Dropout, "backward", backward)]


@hook("batchnorm_backward")
def batchnorm_hook(fn):
    def serves(self, x):
        if not (self.center and self.scale):
            return "the exercise has both gamma and beta (center=True, scale=True)"
        return None if self.cached()[0][1] else "the layer is frozen: it used its moving statistics"

    def call(self, dout, x):
        C, shape = x.shape[-1], x.shape
        if x.ndim not in (2, 4):                             # the exercise's (N, C) or (N, H, W, C): rows are alike
            dout, x = dout.reshape(-1, C), x.reshape(-1, C)
        dx, dgamma, dbeta = run("batchnorm_backward", fn, self, (dout, x, self.params["gamma"], self.epsilon),
                                {"dx": x.shape, "dgamma": (C,), "dbeta": (C,)})
        self.grads["gamma"], self.grads["beta"] = dgamma, dbeta
        return dx.reshape(shape)
    return keep_input(BatchNormalization, "batchnorm_backward", serves, call)


@hook("softmax_jvp")
def softmax_jvp_hook(fn):
    def backward(self, da, a):
        if isinstance(da, LogitsGradient):                   # cross-entropy already took softmax's gradient
            return da.dz
        rows, drows = a.reshape(-1, a.shape[-1]), da.reshape(-1, a.shape[-1])     # softmax over the last axis
        return run("softmax_jvp", fn, "a softmax activation", (rows, drows), {"dz": rows.shape}).reshape(a.shape)
    return [(SoftmaxFn, "backward", backward)]


@hook("softmax_cross_entropy")
def softmax_ce_hook(fn):
    def gradient_logits(self, y_true, p, sample_weight=None):
        y = self.smoothed(self._prepare(y_true, p)[0])
        tiny = np.finfo(p.dtype).tiny
        z = np.log(np.maximum(p, tiny))                      # logits up to a per-row constant: softmax(z) = p
        _, dz = run("softmax_cross_entropy", fn, "the loss", (z, y), {"loss": (), "dz": p.shape})
        w = self._weights(sample_weight, (p.shape[0],), p.dtype)
        return dz if w is None else dz * w.reshape(-1, 1)
    return [(CategoricalCrossentropy, "gradient_logits", gradient_logits)]


@hook("adam_step")
def adam_hook(fn):
    def update(self, key, p, g, t, write):
        s = self.slot(key, p, "m", "v")
        p_new, m_new, v_new = run("adam_step", fn, f"Adam's update of {key}",
                                  (p.copy(), g, s["m"].copy(), s["v"].copy(), t, self.learning_rate,
                                   self.beta_1, self.beta_2, self.epsilon),
                                  {"p": p.shape, "m": p.shape, "v": p.shape})
        if write:
            p[...], s["m"][...], s["v"][...] = p_new, m_new, v_new
        return True
    return [(Adam, "update", update)]


# ----------------------------------------------------------------------------------------
# Installing and undoing
# ----------------------------------------------------------------------------------------
class Using:
    """What ex.use returns: the exercises in use; a context manager that undoes them at its end."""

    def __init__(self, exercises):
        self.exercises = tuple(exercises)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        use(None)

    def __repr__(self):
        return f"<ex.use: {', '.join(self.exercises) or 'nothing'}>"


def patch(patches):
    """Put each replacement in place; returns [(class, name, what was there before)]."""
    undo = []
    for cls, name, replacement in patches:
        undo.append((cls, name, cls.__dict__.get(name)))
        setattr(cls, name, replacement)
    return undo


def unpatch(undo):
    for cls, name, before in reversed(undo):
        if before is None:
            delattr(cls, name)
        else:
            setattr(cls, name, before)


def use(module, verbose=True):
    """Make tinycnn's layers call `module`'s functions for the exercises it defines; use(None) undoes.

    Returns a Using, also a context manager: `with ex.use(my_answers): ...` undoes at the end.
    A second use() replaces the first. Runs on the NumPy backend until undone.
    """
    if _state["patches"] or _state["backend"] is not None:
        unpatch(_state["patches"])
        backend._state.clear()
        backend._state.update(_state["backend"])
        _state.update(patches=[], backend=None, module=None)
    if module is None:
        return Using(())
    names = [name for name in HOOKS if callable(getattr(module, name, None))]
    if not names:
        raise ExerciseError(f"ex.use: {getattr(module, '__name__', module)!r} defines none of the exercises "
                            f"({', '.join(HOOKS)})")
    installers, patches = {}, []
    for name in names:                           # conv2d_forward and conv2d_backward share Conv2D's two methods
        installers.setdefault(HOOKS[name], []).append(name)
    for installer, group in installers.items():
        if installer in (conv_backward_hook, conv_forward_hook):
            continue
        patches += installer(getattr(module, group[0]))
    if "conv2d_forward" in names or "conv2d_backward" in names:
        patches += conv_patches(getattr(module, "conv2d_forward", None) if "conv2d_forward" in names else None,
                                getattr(module, "conv2d_backward", None) if "conv2d_backward" in names else None)
    saved_backend = dict(backend._state)
    if backend._state["name"] != "numpy":
        backend._state.update(name="numpy", module=numpy_ops, explicit=True)
    _state.update(patches=patch(patches), backend=saved_backend, module=module)
    if verbose:
        print(f"ex.use: tinycnn's layers now call your {', '.join(names)}; running on the NumPy backend "
              f"(the Numba backend would not call your Python) until ex.use(None) or the end of the with-block.")
    return Using(names)


@contextlib.contextmanager
def suspended():
    """tinycnn's own methods for the duration (the checkers' references), the student's again after."""
    undo = _state["patches"]
    if not undo:
        yield
        return
    current = [(cls, name, cls.__dict__.get(name)) for cls, name, _ in undo]
    unpatch(undo)
    try:
        yield
    finally:
        for cls, name, replacement in current:
            setattr(cls, name, replacement)


# ----------------------------------------------------------------------------------------
# The seed CNN trained with the student's functions, beside the reference
# ----------------------------------------------------------------------------------------
def train_one(limit, test_limit, epochs, batch_size, seed_value):
    from .. import seed
    from ..utils import set_random_seed
    (x_train, y_train), (x_test, y_test) = seed.prepare_mnist()
    set_random_seed(seed_value)
    model = seed.build_model()
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    history = model.fit(x_train[:limit], y_train[:limit], batch_size=batch_size, epochs=epochs, verbose=0)
    loss, accuracy = model.evaluate(x_test[:test_limit], y_test[:test_limit], verbose=0)
    return {"loss": float(history.history["loss"][-1]), "test_loss": float(loss), "test_accuracy": float(accuracy)}


def train_with(module, limit=2000, test_limit=1000, epochs=1, batch_size=128, seed=0, verbose=True):
    """Train the seed CNN on the first `limit` MNIST images twice, from the same seed: with tinycnn's own
    functions and with `module`'s (ex.use), both on the NumPy backend; print and return both results.

    Returns {"reference": {...}, "yours": {...}}, each with the last epoch's training "loss", and the
    "test_loss" and "test_accuracy" on the first `test_limit` test images. With correct answers the two
    agree up to float round-off. Ends any ex.use in force; restores the backend.
    """
    use(None)                                                 # ends any ex.use in force
    saved = dict(backend._state)
    try:
        backend._state.update(name="numpy", module=numpy_ops, explicit=True)
        with use(module, verbose=verbose):                     # yours first: a mistake shows at once
            yours = train_one(limit, test_limit, epochs, batch_size, seed)
        reference = train_one(limit, test_limit, epochs, batch_size, seed)
    finally:
        backend._state.clear()
        backend._state.update(saved)
    if verbose:
        print(f"The seed CNN, {epochs} epoch(s) on {limit} MNIST images, tested on {test_limit} (seed {seed}):")
        print(f"  {'':20s} {'train loss':>10s} {'test loss':>10s} {'test accuracy':>14s}")
        for label, r in (("yours", yours), ("tinycnn's reference", reference)):
            print(f"  {label:20s} {r['loss']:10.4f} {r['test_loss']:10.4f} {r['test_accuracy']:14.4f}")
    return {"reference": reference, "yours": yours}
