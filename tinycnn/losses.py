"""Losses: a number that says how wrong the predictions are, and its gradient.

As in Keras, a loss first gives one value per sample, l_n (its `call`, and the functions
`categorical_crossentropy(y_true, y_pred)`, ... return these), then averages them with Keras's
"sum_over_batch_size" reduction, per-sample weights w_n included:

    L = sum_n w_n l_n / N                  (w_n = 1 without sample_weight)
    gradient(y_true, y_pred) = dL/dy_pred, shaped like y_pred

Per sample (over the last axis, K entries; eps = 1e-7, clip(q) = min(max(q, eps), 1 - eps)):
    categorical_crossentropy   q = p / sum(p)  (rows rescaled to sum to 1, as Keras does)
                               l = -sum_k y_k log clip(q_k)
                               from_logits: l = -sum_k y_k log softmax(z)_k
                               label_smoothing s: y <- y (1 - s) + s / K
    binary_crossentropy        l = mean_k -(y log clip(p) + (1 - y) log(1 - clip(p)))
                               from_logits: mean_k max(z, 0) - z y + log(1 + e^-|z|)
                               label_smoothing s: y <- y (1 - s) + s / 2
    mean_squared_error         l = mean_k (p - y)^2
    mean_absolute_error        l = mean_k |p - y|
    huber                      l = mean_k  e^2 / 2 if |e| <= delta else delta |e| - delta^2 / 2,  e = p - y

Cross-entropy after softmax: the fused gradient.
    p = softmax(z),  l_n = -sum_k y_nk log p_nk
    dL/dz = w_n (p_n sum_k y_nk - y_n) / N          ((p - y) / N for one-hot rows)
The softmax Jacobian and the 1/p of the log cancel, leaving this short, stable formula.
`gradient_logits` returns it, and a Sequential whose last activation is softmax uses it
instead of going through dL/dp (which divides by p and blows up as p -> 0). It is exactly
the gradient of the loss Keras computes there: Keras (TensorFlow) takes the logits behind a
softmax output and applies the log-softmax to them, so nothing is clipped; rows that already
sum to 1 make the rescaling q = p / sum(p) the identity.
"""
import re
import warnings

import numpy as np

from .utils import float32_config, init_config

EPSILON = 1e-7   # Keras clips probabilities to [eps, 1 - eps] before the log


def _floats(a):
    """A float array: float arrays keep their dtype, anything else becomes float32 (Keras's floatx)."""
    return a if isinstance(a, np.ndarray) and a.dtype.kind == "f" else np.asarray(a, dtype=np.float32)


def same_rank(a, b, expand_rank_1=True):
    """Keras's squeeze_or_expand_to_same_rank: (N,) next to (N, 1) becomes (N, 1) and (N, 1)."""
    if a.ndim == b.ndim + 1 and a.shape[-1] == 1:
        return (a, b[..., None]) if b.ndim == 1 and expand_rank_1 else (a[..., 0], b)
    if b.ndim == a.ndim + 1 and b.shape[-1] == 1:
        return (a[..., None], b) if a.ndim == 1 and expand_rank_1 else (a, b[..., 0])
    return a, b


def log_softmax(z, axis=-1):
    shifted = z - z.max(axis=axis, keepdims=True)     # the max shifted to 0: exp() cannot overflow
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def _number(value, what, low=0.0, high=np.inf):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not low <= value <= high:
        raise ValueError(f"{what} must be a number in [{low}, {high}]; received {value!r}")
    return float(value)


def _flag(value, what):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{what} must be True or False; received {value!r}")
    return bool(value)


class Loss:
    """Keras's Loss: `call` gives per-sample losses, `__call__` their mean over the batch.

    A subclass defines per_sample(y_true, y_pred) -> l (one value per sample) and
    per_sample_gradient(y_true, y_pred) -> dl/dy_pred (each l_n depends on its own row only).
    """
    name, reduction, axis = "loss", "sum_over_batch_size", -1     # for subclasses that skip __init__
    fuses_with_softmax = False

    def __init__(self, name=None, reduction="sum_over_batch_size", axis=-1):
        if reduction != "sum_over_batch_size":
            raise ValueError(f"{type(self).__name__}: tinycnn supports only reduction='sum_over_batch_size' "
                             f"(Keras's default); received reduction={reduction!r}")
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ValueError(f"{type(self).__name__}: axis must be an integer; received {axis!r}")
        self.name = name or re.sub(r"(?<!^)(?=[A-Z])", "_", type(self).__name__).lower()   # Keras's snake case
        self.reduction, self.axis = reduction, int(axis)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"

    def get_config(self):
        """The constructor's arguments, as Keras's Loss.get_config()."""
        return init_config(self)

    @classmethod
    def from_config(cls, config):
        return cls(**float32_config(cls, config))

    def _prepare(self, y_true, y_pred):
        """(y_true, y_pred) as float arrays of one shape (Keras's rank adjustment), or a clear error."""
        y_pred = _floats(y_pred)
        y_true, y_pred = same_rank(np.asarray(y_true, dtype=y_pred.dtype), y_pred)
        if y_true.shape != y_pred.shape:
            raise ValueError(f"{self.name}: y_true and y_pred must have the same shape; received "
                             f"y_true of shape {y_true.shape} and y_pred of shape {y_pred.shape}")
        return y_true, y_pred

    def call(self, y_true, y_pred):
        """One loss per sample (shape y_pred.shape without the reduced axis), as Keras's functions give."""
        return self.per_sample(*self._prepare(y_true, y_pred))

    def per_sample(self, y_true, y_pred):
        raise NotImplementedError(f"{type(self).__name__} must define per_sample(y_true, y_pred)")

    def per_sample_gradient(self, y_true, y_pred):
        raise NotImplementedError(f"{type(self).__name__} must define per_sample_gradient(y_true, y_pred) "
                                  f"(d per_sample / d y_pred) for training")

    def __call__(self, y_true, y_pred, sample_weight=None):
        values = self.call(y_true, y_pred)
        w = self._weights(sample_weight, values.shape, values.dtype)
        return float(np.sum(values if w is None else values * w) / max(values.size, 1))

    def gradient(self, y_true, y_pred, sample_weight=None):
        """dL/dy_pred of the weighted mean, shaped like y_pred."""
        shape = np.shape(y_pred)
        t, p = self._prepare(y_true, y_pred)
        return self._reduced(self.per_sample_gradient(t, p), p, sample_weight).reshape(shape)

    def _reduced(self, d, p, sample_weight):
        """d (per-sample gradients) times w_n / N, N the number of per-sample values."""
        losses_shape = tuple(np.delete(p.shape, self.axis))
        w = self._weights(sample_weight, losses_shape, p.dtype)
        if w is not None:
            d = d * np.expand_dims(w, self.axis)
        return d / max(int(np.prod(losses_shape)), 1)

    def _weights(self, sample_weight, losses_shape, dtype):
        """sample_weight, of shape (N,) (or (N, 1), or a scalar), ready to multiply the per-sample losses."""
        if sample_weight is None:
            return None
        w = np.asarray(sample_weight)
        if w.dtype.kind not in "biuf":
            raise TypeError(f"{self.name}: sample_weight must be numeric; received dtype {w.dtype}")
        w = w.astype(dtype, copy=False)
        if w.ndim == len(losses_shape) + 1 and w.shape[-1] == 1:
            w = w[..., 0]
        if w.ndim <= len(losses_shape):             # one weight per sample: broadcast over the rest
            w = w.reshape(w.shape + (1,) * (len(losses_shape) - w.ndim))
        try:
            np.broadcast_to(w, losses_shape)
        except ValueError:
            raise ValueError(f"{self.name}: sample_weight must hold one weight per sample, shape "
                             f"({losses_shape[0] if losses_shape else 1},); received shape "
                             f"{np.shape(sample_weight)}") from None
        return w

    def check_targets(self, y_true, y_pred_shape):
        """Return y_true as an array the loss can use with predictions of y_pred_shape, or raise."""
        return y_true


def _like_outputs(name, y_true, y_pred_shape):
    """Targets shaped like the outputs: (N,) is taken for (N, 1), as Keras does."""
    if y_true.ndim == 1 and len(y_pred_shape) == 2 and y_pred_shape[1] == 1:
        y_true = y_true[:, None]
    if y_true.shape[1:] != tuple(y_pred_shape[1:]):
        raise ValueError(f"{name} expects targets of shape (None, "
                         f"{', '.join(map(str, y_pred_shape[1:]))}); received {y_true.shape}")
    return y_true.astype(np.float32, copy=False)


class CategoricalCrossentropy(Loss):
    """-sum_k y_k log p_k per sample, for one-hot (or soft) targets y of shape (N, K)."""

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size",
                 name="categorical_crossentropy"):
        super().__init__(name, reduction, axis)
        self.from_logits = _flag(from_logits, f"{name}: from_logits")
        self.label_smoothing = _number(label_smoothing, f"{name}: label_smoothing", 0.0, 1.0)

    @property
    def fuses_with_softmax(self):
        return not self.from_logits and self.axis == -1

    def smoothed(self, y):
        """Keras's label smoothing: y (1 - s) + s / K, K the size of the LAST axis (as in Keras)."""
        s = self.label_smoothing
        return y * (1 - s) + s / y.shape[-1] if s else y

    def per_sample(self, y, p):
        if self.from_logits:
            log_p = log_softmax(p, self.axis)
        else:
            log_p = np.log(np.clip(p / p.sum(axis=self.axis, keepdims=True), EPSILON, 1 - EPSILON))
        return -(self.smoothed(y) * log_p).sum(axis=self.axis)

    def per_sample_gradient(self, y, p):
        y = self.smoothed(y)
        total = y.sum(axis=self.axis, keepdims=True)           # 1 for one-hot and smoothed rows
        if self.from_logits:
            return np.exp(log_softmax(p, self.axis)) * total - y
        s = p.sum(axis=self.axis, keepdims=True)
        q = p / s
        inside = (q >= EPSILON) & (q <= 1 - EPSILON)           # clipping passes no gradient outside
        dq = np.divide(-y, q, out=np.zeros_like(q), where=inside)          # d l / d q
        return (dq - (dq * q).sum(axis=self.axis, keepdims=True)) / s     # through q = p / sum(p)

    def gradient_logits(self, y_true, p, sample_weight=None):
        """dL/dz for p = softmax(z): w_n (p_n sum(y_n) - y_n) / N, shaped like p."""
        y = self.smoothed(self._prepare(y_true, p)[0])
        return self._reduced(p * y.sum(axis=-1, keepdims=True) - y, p, sample_weight)

    def check_targets(self, y_true, y_pred_shape):
        K = y_pred_shape[-1]
        if y_true.ndim != 2 or y_true.shape[1] != K:
            hint = (" Labels look like class indices: one-hot encode them with to_categorical(y, "
                    f"{K}), or use loss='sparse_categorical_crossentropy'."
                    if y_true.ndim == 1 or (y_true.ndim == 2 and y_true.shape[1] == 1) else "")
            raise ValueError(f"{self.name} expects one-hot targets of shape (None, {K}) to match the "
                             f"model's output; received targets of shape {y_true.shape}.{hint}")
        if K == 1:
            warnings.warn(f"{self.name}: the model has a single output, so every rescaled probability "
                          f"is 1 and the loss is always 0; use loss='binary_crossentropy' for two classes",
                          SyntaxWarning, stacklevel=4)
        return y_true.astype(np.float32, copy=False)


class SparseCategoricalCrossentropy(CategoricalCrossentropy):
    """The same loss, with integer class labels of shape (N,) instead of one-hot rows."""

    def __init__(self, from_logits=False, ignore_class=None, reduction="sum_over_batch_size", axis=-1,
                 name="sparse_categorical_crossentropy"):
        if ignore_class is not None:
            raise ValueError(f"{name}: ignore_class is not supported by tinycnn; received {ignore_class!r}")
        if axis != -1:
            raise ValueError(f"{name}: only axis=-1 is supported (as in Keras); received axis={axis!r}")
        super().__init__(from_logits, 0.0, axis, reduction, name)

    def _prepare(self, y_true, y_pred):
        """(one-hot targets, y_pred) from integer labels of shape y_pred.shape[:-1]."""
        y_pred = _floats(y_pred)
        labels = np.asarray(y_true)
        if labels.ndim == y_pred.ndim and labels.shape[-1] == 1:
            labels = labels[..., 0]
        if labels.shape != y_pred.shape[:-1]:
            raise ValueError(f"{self.name}: expected integer labels of shape {y_pred.shape[:-1]} for "
                             f"y_pred of shape {y_pred.shape}; received shape {np.shape(y_true)}")
        return np.eye(y_pred.shape[-1], dtype=y_pred.dtype)[self._labels(labels, y_pred.shape[-1])], y_pred

    def _labels(self, y_true, K):
        if y_true.dtype.kind not in "biuf" or (y_true.dtype.kind == "f" and not np.all(y_true == np.round(y_true))):
            raise ValueError(f"{self.name} expects integer class labels; received non-integer values")
        labels = y_true.astype(np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= K):
            raise ValueError(f"{self.name}: labels must lie in [0, {K - 1}] for a model with {K} outputs; "
                             f"received labels from {labels.min()} to {labels.max()}")
        return labels

    def check_targets(self, y_true, y_pred_shape):
        if y_true.ndim == 2 and y_true.shape[1] == 1:
            y_true = y_true[:, 0]
        if y_true.ndim != 1:
            raise ValueError(f"{self.name} expects integer labels of shape (None,); received shape "
                             f"{y_true.shape}. For one-hot targets use loss='categorical_crossentropy'.")
        return self._labels(y_true, y_pred_shape[-1])


class BinaryCrossentropy(Loss):
    """Mean over the last axis of -(y log p + (1 - y) log(1 - p)): one sigmoid per output."""

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size",
                 name="binary_crossentropy"):
        super().__init__(name, reduction, axis)
        self.from_logits = _flag(from_logits, f"{name}: from_logits")
        self.label_smoothing = _number(label_smoothing, f"{name}: label_smoothing", 0.0, 1.0)

    def smoothed(self, y):
        s = self.label_smoothing
        return y * (1 - s) + 0.5 * s if s else y

    def per_sample(self, y, p):
        y = self.smoothed(y)
        if self.from_logits:            # stable: log(1 + e^-|z|) never overflows
            e = np.maximum(p, 0) - p * y + np.log1p(np.exp(-np.abs(p)))
        else:
            c = np.clip(p, EPSILON, 1 - EPSILON)
            e = -(y * np.log(c) + (1 - y) * np.log(1 - c))
        return e.mean(axis=self.axis)

    def per_sample_gradient(self, y, p):
        y = self.smoothed(y)
        if self.from_logits:
            d = 0.5 * (1 + np.tanh(0.5 * p)) - y                  # sigmoid(z) - y
        else:
            inside = (p >= EPSILON) & (p <= 1 - EPSILON)
            c = np.clip(p, EPSILON, 1 - EPSILON)
            d = np.where(inside, (c - y) / (c * (1 - c)), 0)     # -y/p + (1 - y)/(1 - p)
        return d / p.shape[self.axis]

    def check_targets(self, y_true, y_pred_shape):
        return _like_outputs(self.name, y_true, y_pred_shape)


class MeanSquaredError(Loss):
    """mean over the last axis of (y_pred - y_true)^2."""

    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_error"):
        super().__init__(name, reduction)

    def per_sample(self, y, p):
        return ((p - y) ** 2).mean(axis=-1)

    def per_sample_gradient(self, y, p):
        return 2 * (p - y) / p.shape[-1]

    def check_targets(self, y_true, y_pred_shape):
        return _like_outputs(self.name, y_true, y_pred_shape)


class MeanAbsoluteError(MeanSquaredError):
    """mean over the last axis of |y_pred - y_true| (its gradient at 0 is 0, as TensorFlow's)."""

    def __init__(self, reduction="sum_over_batch_size", name="mean_absolute_error"):
        super().__init__(reduction, name)

    def per_sample(self, y, p):
        return np.abs(p - y).mean(axis=-1)

    def per_sample_gradient(self, y, p):
        return np.sign(p - y) / p.shape[-1]


class Huber(MeanSquaredError):
    """Quadratic for errors up to delta, linear beyond: e^2/2 or delta |e| - delta^2/2, averaged."""

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name="huber_loss"):
        super().__init__(reduction, name)
        self.delta = _number(delta, f"{name}: delta")

    def per_sample(self, y, p):
        e, d = p - y, self.delta
        return np.where(np.abs(e) <= d, 0.5 * e * e, d * np.abs(e) - 0.5 * d * d).mean(axis=-1)

    def per_sample_gradient(self, y, p):
        e = p - y
        return np.where(np.abs(e) <= self.delta, e, self.delta * np.sign(e)) / p.shape[-1]


# -- Keras's loss functions: per-sample losses, shape y_pred.shape[:-1] -----------------------
def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    return CategoricalCrossentropy(from_logits, label_smoothing, axis).call(y_true, y_pred)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None, axis=-1):
    return SparseCategoricalCrossentropy(from_logits, ignore_class, axis=axis).call(y_true, y_pred)


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    return BinaryCrossentropy(from_logits, label_smoothing, axis).call(y_true, y_pred)


def mean_squared_error(y_true, y_pred):
    return MeanSquaredError().call(y_true, y_pred)


def mean_absolute_error(y_true, y_pred):
    return MeanAbsoluteError().call(y_true, y_pred)


def huber(y_true, y_pred, delta=1.0):
    return Huber(delta).call(y_true, y_pred)


mse, mae = mean_squared_error, mean_absolute_error

FUNCTIONS = {categorical_crossentropy: CategoricalCrossentropy,
             sparse_categorical_crossentropy: SparseCategoricalCrossentropy,
             binary_crossentropy: BinaryCrossentropy, mean_squared_error: MeanSquaredError,
             mean_absolute_error: MeanAbsoluteError, huber: Huber}

# Keras's names: the functions', the classes', and its aliases (matched case-insensitively)
LOSSES = {**{f.__name__: cls for f, cls in FUNCTIONS.items()},
          "mse": MeanSquaredError, "mae": MeanAbsoluteError, "bce": BinaryCrossentropy,
          **{cls.__name__: cls for cls in FUNCTIONS.values()}}
_BY_LOWER = {key.lower(): cls for key, cls in LOSSES.items()}


def get(identifier):
    """'categorical_crossentropy' -> CategoricalCrossentropy(); instances pass through.

    Also a Loss class (instantiated), one of the functions above, or Keras's config dict
    {"class_name": "CategoricalCrossentropy", "config": {"from_logits": True}}.
    """
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if isinstance(identifier, str) and identifier.lower() in _BY_LOWER:
        return _BY_LOWER[identifier.lower()]()
    if isinstance(identifier, dict) and identifier.get("class_name") in LOSSES:
        return LOSSES[identifier["class_name"]].from_config(identifier.get("config", {}))
    try:
        if identifier in FUNCTIONS:
            return FUNCTIONS[identifier]()
    except TypeError:                              # unhashable: not one of ours
        pass
    hint = (" A plain function has no gradient for backprop: subclass tinycnn.losses.Loss and define "
            "per_sample and per_sample_gradient." if callable(identifier) else "")
    raise ValueError(f"unknown loss {identifier!r}; expected one of "
                     f"{', '.join(repr(k) for k in LOSSES if not k[0].isupper())} "
                     f"or a tinycnn.losses.Loss instance.{hint}")
