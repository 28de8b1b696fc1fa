"""The contract every tinycnn layer follows, and the argument checks they share.

A layer is four things:
    params   dict name -> array: every weight ("kernel", "bias"), in Keras's layouts and order
    grads    dict with the trainable keys: dL/dparam, OVERWRITTEN (never accumulated) by backward
    forward(x, training)  computes the output; with training=True it keeps in `self.cache`
                          exactly what backward needs (and with training=False, nothing)
    backward(dout)        takes dL/d(output), fills `grads`, returns dL/d(input)

The maths of both passes is written in the layer, or in the NumPy reference kernel it calls
through `K` (tinycnn/kernels/numpy_ops.py), with the shapes in comments.

Speed is not the layer's business. A model runs its layers through a plan that the backend
builds (tinycnn.backend.build_plan). The reference plan calls each layer's forward in order,
then each backward in reverse (tinycnn/plans.py). The Numba backend's plan runs the layers it
knows with fused, multi-core kernels (a convolution, its ReLU, the max-pool and the dropout
after it in one pass; no dL/dx for the first layer; nothing kept in inference; Winograd's
algorithm where it needs fewer operations), each tested against these methods, and calls the
methods of any other layer. So a new layer written the textbook way works on both backends,
and the kernels it calls through K are the fast ones on the Numba backend.

One special case of the chain rule: softmax followed by cross-entropy. The loss hands the
softmax dL/dz = (p - y) / N directly, wrapped in a LogitsGradient, and the softmax's backward
passes it through (tinycnn/layers/activations.py): the formula is exact and stays finite where
dL/dp = -y / p does not.

Not every weight is trained. `non_trainable` names the weights that forward updates itself
(BatchNormalization's moving statistics): they have no grads, and no optimizer touches them.
`layer.trainable = False` freezes the whole layer. `regularizers` maps a weight's name to a
penalty (tinycnn.regularizers) that the model adds to the loss, and its gradient to the grads.

Shapes never include the batch: `build((28, 28, 1))` makes the weights for inputs of
shape (N, 28, 28, 1), for any N. Nothing here mutates `x` or `dout`.
"""
import math
import re

import numpy as np

from ..utils import rng, unique_name


def snake_case(name):
    """'MaxPooling2D' -> 'max_pooling2d', 'ReLU' -> 're_lu' (Keras's automatic names)."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


class Layer:
    """Base class: names, building, weights I/O. Subclasses write forward and backward."""

    def __init__(self, name=None, input_shape=None, trainable=True, dtype=None, activity_regularizer=None,
                 **kwargs):
        kind = type(self).__name__
        if kwargs:
            raise TypeError(f"{kind}: unexpected keyword argument(s) {', '.join(sorted(kwargs))}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{kind}: name must be a string; received {name!r}")
        check_dtype(dtype, kind)
        at_defaults(kind, activity_regularizer=(activity_regularizer, None))
        self.name = name or unique_name(snake_case(kind))
        self.params = {}         # e.g. {"kernel": (KH, KW, C, F), "bias": (F,)}
        self.grads = {}          # the trainable keys, filled by backward()
        self.non_trainable = set()   # keys of weights no optimizer updates (moving statistics)
        self.regularizers = {}   # key -> penalty added to the loss, e.g. {"kernel": L2(0.01)}
        self.trainable = bool(trainable)
        self.cache = None        # what forward(training=True) keeps for backward()
        self.input_shape = None if input_shape is None else check_shape(input_shape, f"{self}: input_shape")
        self.built = False
        self.in_shape = self.out_shape = None

    def __repr__(self):
        return f"{type(self).__name__} '{self.name}'"

    # -- building ------------------------------------------------------------------------
    multi_input = False      # True for layers of several inputs (merges): they take and give lists

    def build(self, input_shape):
        """Fix the input shape (batch excluded), check it fits, create the weights.
        A multi_input layer gets a list of shapes, one per input."""
        input_shape = ([tuple(int(d) for d in s) for s in input_shape] if self.multi_input
                       else tuple(int(d) for d in input_shape))
        self.out_shape = self.compute_output_shape(input_shape)   # raises if it cannot fit
        self.in_shape = input_shape
        self.create_params(input_shape)
        self.grads = {k: np.zeros_like(p) for k, p in self.params.items() if k not in self.non_trainable}
        self.built = True

    def compute_output_shape(self, input_shape):
        return input_shape

    # -- config: what the constructor needs to make this layer again (Keras's protocol) ----
    def get_config(self):
        """The constructor's arguments, as Keras's get_config() gives them. Subclasses add theirs:
        `return {**super().get_config(), "filters": self.filters, ...}`; objects (initializers,
        regularizers) go in through serialized(), so the whole config is plain JSON."""
        return {"name": self.name, "trainable": self.trainable, "dtype": "float32"}

    @classmethod
    def from_config(cls, config):
        """A new layer from get_config()'s dict (weights are not part of a config)."""
        return cls(**config)

    def create_params(self, input_shape):
        """Layers with weights create them here (float32, Keras layouts)."""

    def __call__(self, x, training=False):
        """Build on first use, check the shape, then forward. `layer(x)` as in Keras.
        On symbolic tensors (tinycnn.Input(...) and what layers made of it) it computes no
        numbers: it adds this layer to the graph and returns its symbolic output (tinycnn/graph.py)."""
        from .. import graph
        if graph.is_symbolic(x):
            return graph.connect(self, x)
        if self.multi_input:
            if not isinstance(x, (list, tuple)) or len(x) < 2:
                raise TypeError(f"{self} takes a list of at least 2 inputs; received {type(x).__name__}")
            x = [self._numeric(a) for a in x]
            if not self.built:
                self.build([a.shape[1:] for a in x])
        else:
            x = self._numeric(x)
            if not self.built:
                self.build(x.shape[1:])
        self.check_input(x)
        return self.forward(x, training=training)

    def _numeric(self, x):
        x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise TypeError(f"{self} expects a numeric input array; received dtype {x.dtype}")
        return x if x.dtype.kind == "f" else x.astype(np.float32)    # as Keras: layers compute in floating point

    def check_input(self, x):
        if self.multi_input:
            shapes = [a.shape[1:] for a in x]
            if shapes != list(self.in_shape):
                raise ValueError(f"{self} expects inputs of shapes {', '.join(map(shape_str, self.in_shape))}; "
                                 f"received {', '.join(shape_str(s) for s in shapes)}")
            return
        if x.shape[1:] != self.in_shape:
            raise ValueError(f"{self} expects input of shape {shape_str(self.in_shape)}; "
                             f"received {shape_str(x.shape[1:], batch=x.shape[0])}")

    # -- the math: subclasses ------------------------------------------------------------
    def forward(self, x, training=False):
        raise NotImplementedError

    def backward(self, dout):
        raise NotImplementedError

    def cached(self):
        """What forward(training=True) kept; a clear error if there was no such call."""
        if self.cache is None:
            raise RuntimeError(f"{self}: backward() called before forward(x, training=True)")
        return self.cache

    # -- weights -------------------------------------------------------------------------
    def get_weights(self):
        """Copies of the weights as float32 arrays, in Keras's order (kernel, bias); [] if none."""
        return [np.array(p, dtype=np.float32) for p in self.params.values()]

    def set_weights(self, weights):
        """Replace the weights; the count and every shape must match get_weights()."""
        if not self.built:
            raise ValueError(f"{self} has no weights yet: it is built when its input shape is known "
                             f"(give the first layer input_shape=..., or call the model once)")
        weights = list(weights)
        if len(weights) != len(self.params):
            raise ValueError(f"{self}.set_weights expects {len(self.params)} arrays "
                             f"({', '.join(self.params) or 'none'}); received {len(weights)}")
        new = {key: self.checked_weight(key, w) for key, w in zip(self.params, weights)}
        self.params.update(new)

    def checked_weight(self, key, w):
        """w as the float32 array that may replace params[key], or a clear error saying why not."""
        w = np.asarray(w)
        if w.dtype.kind not in "fiu":
            raise TypeError(f"{self}.set_weights: '{key}' must be numeric; received dtype {w.dtype}")
        if w.shape != self.params[key].shape:
            raise ValueError(f"{self}.set_weights: '{key}' must have shape {self.params[key].shape}; "
                             f"received {w.shape}")
        with np.errstate(over="ignore", invalid="ignore"):     # an overflow is reported just below
            w32 = w.astype(np.float32)
        if not np.isfinite(w32).all():
            raise ValueError(f"{self}.set_weights: '{key}' has {np.size(w32) - np.isfinite(w32).sum()} NaN or "
                             f"inf values (after conversion to float32); weights must be finite")
        return w32

    @property
    def weights(self):
        """Every weight, trainable first, as Keras lists them."""
        return self.trainable_weights + self.non_trainable_weights

    def trained_keys(self):
        """The keys of the weights an optimizer updates: none when the layer is frozen."""
        return [k for k in self.params if k not in self.non_trainable] if self.trainable else []

    @property
    def trainable_weights(self):
        return [self.params[k] for k in self.trained_keys()]

    @property
    def non_trainable_weights(self):
        trained = set(self.trained_keys())
        return [p for k, p in self.params.items() if k not in trained]

    def count_params(self):
        return int(sum(p.size for p in self.params.values()))


# ----------------------------------------------------------------------------------------
# Argument checks and shape arithmetic shared by the layers
# ----------------------------------------------------------------------------------------
def shape_str(shape, batch=None):
    """(26, 26, 32) -> '(None, 26, 26, 32)', as Keras prints shapes."""
    return str((batch,) + tuple(shape)).replace(",)", ")")


def check_shape(shape, what):
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"{what} must be a tuple of positive integers; received {shape!r}") from None
    if not shape or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in shape):
        raise ValueError(f"{what} must be a tuple of positive integers (batch excluded); received {shape!r}")
    return tuple(int(d) for d in shape)


def check_positive_int(value, arg, layer):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{layer}: {arg} must be a positive integer; received {value!r}")
    if value <= 0:
        raise ValueError(f"{layer}: {arg} must be a positive integer; received {value}")
    return int(value)


def pair(value, arg, layer):
    """An int or a pair of ints -> a pair of positive ints, e.g. kernel_size=3 -> (3, 3)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{layer}: {arg} must be an integer or a tuple of 2 integers; received {value!r}")
    return tuple(check_positive_int(v, arg, layer) for v in value)


def check_padding(padding, layer):
    if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
        raise ValueError(f"{layer}: padding must be 'valid' or 'same'; received {padding!r}")
    return padding.lower()


def window_output(size, k, s, padding):
    """Output length and (before, after) padding along one axis, as TensorFlow computes them.

    "valid": no padding, out = floor((size - k) / s) + 1.
    "same":  out = ceil(size / s), padded with just enough zeros; the odd one goes after
             (at the bottom or right), which is TensorFlow's rule (PyTorch's differs).
    """
    if padding == "valid":
        return (size - k) // s + 1, (0, 0)
    out = math.ceil(size / s)
    total = max((out - 1) * s + k - size, 0)
    return out, (total // 2, total - total // 2)


def window_shapes(layer, input_shape, kernel, strides, padding, arg="kernel_size"):
    """(OH, OW) and pads (top, bottom, left, right) for a sliding-window layer, or a clear error.

    `arg` names the window's argument in that error ("kernel_size" or "pool_size").
    """
    if len(input_shape) != 3:
        raise ValueError(f"{layer} expects input of rank 4 (batch, height, width, channels); "
                         f"received shape {shape_str(input_shape)}")
    (H, W, _), (KH, KW) = input_shape, kernel
    (OH, (top, bottom)), (OW, (left, right)) = (window_output(H, KH, strides[0], padding),
                                                window_output(W, KW, strides[1], padding))
    Hp, Wp = H + top + bottom, W + left + right                 # the padded input
    if KH > Hp or KW > Wp:
        raise ValueError(f"{layer}: {arg}={(KH, KW)}: window {KH}x{KW} is larger than its "
                         f"{padding}-padded input {Hp}x{Wp} (input shape {shape_str(input_shape)}); "
                         f"expected a {arg} of at most {(Hp, Wp)}. Use a smaller {arg}, "
                         f"padding='same', or a larger input.")
    return (OH, OW), (top, bottom, left, right)


def at_defaults(layer, **given):
    """Keras arguments tinycnn has only at their default: arg=(value, default). Others are refused."""
    for arg, (value, default) in given.items():
        same = value == default or (isinstance(value, (list, tuple)) and tuple(value) == default)
        if not same:
            raise ValueError(f"{layer}: {arg}={value!r} is not supported by tinycnn (only {arg}={default!r})")


def check_dtype(dtype, layer):
    """tinycnn computes in float32: dtype None, 'float32' or Keras's float32 policy dict is accepted."""
    name = dtype.get("config", {}).get("name") if isinstance(dtype, dict) else dtype
    if name not in (None, "float32"):
        raise ValueError(f"{layer}: only dtype='float32' is supported; received {dtype!r}")


def serialized(obj):
    """An argument as it goes into a config: None, a name ('relu'), or Keras's dict for an object
    {'module', 'class_name', 'config', 'registered_name'} (initializers, regularizers)."""
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if hasattr(obj, "get_config"):
        module = type(obj).__module__
        module = "keras.optimizers.schedules" if module == "tinycnn.schedules" else module.replace("tinycnn.", "keras.")
        return {"module": module, "class_name": type(obj).__name__, "config": obj.get_config(),
                "registered_name": None}
    raise TypeError(f"{obj!r} cannot be written into a config: expected a name or an object with get_config()")


def initialize(initializer, shape):
    """A new float32 weight of `shape`, from an initializer object or function (tinycnn.initializers).

    Kernels default to glorot_uniform, U(-limit, limit) with limit = sqrt(6 / (fan_in + fan_out)),
    and biases to zeros; the fans are Keras's (tinycnn.initializers.compute_fans).
    """
    w = np.asarray(initializer(tuple(shape), dtype=np.float32))
    if w.shape != tuple(shape) or w.dtype.kind not in "fiu":
        raise ValueError(f"initializer {initializer!r} returned an array of shape {w.shape} and dtype {w.dtype}; "
                         f"expected a numeric array of shape {tuple(shape)}")
    return w.astype(np.float32)


def check_initializer(value, arg, layer):
    """The initializer for a name ('he_normal'), an Initializer object or a function(shape, dtype), or a clear error."""
    from .. import initializers
    try:
        initializer = initializers.get(value)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{layer}: {arg}: {err}") from None
    if initializer is None:
        raise ValueError(f"{layer}: {arg} must be an initializer name, e.g. 'glorot_uniform' or 'zeros', or an "
                         f"initializer object; received None")
    return initializer
