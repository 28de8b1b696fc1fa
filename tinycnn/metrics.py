"""Metrics: numbers reported during training, accumulated batch by batch, with Keras 3's API.

    m = CategoricalAccuracy()
    m.update_state(y_true, y_pred, sample_weight=None)   # add one batch
    m.result()                                            # the value over every batch so far
    m.reset_state()                                       # start again (fit does, each epoch)

Most metrics are a weighted mean of per-sample values (Mean, MeanMetricWrapper):
    result = sum_n w_n v_n / sum_n w_n     (w_n = 1 without sample_weight; 0 before any update)
where v_n is the sample's value averaged over its other axes, e.g. for
    accuracy                     v = [y_true == y_pred]              (exact match)
    categorical_accuracy         v = [argmax y_true == argmax y_pred]
    sparse_categorical_accuracy  v = [y_true == argmax y_pred]       (integer labels)
    binary_accuracy              v = [y_true == (y_pred > threshold)]
    top_k_categorical_accuracy   v = [fewer than k classes score above the true one]
Precision and Recall count over every entry: tp / (tp + fp) and tp / (tp + fn), where an
entry is predicted positive when y_pred > threshold (0.5) and is positive when y_true != 0.

compile(metrics=[...]) resolves "accuracy"/"acc" from the targets' and outputs' shapes, as
Keras does (CompileMetrics below): one output -> binary_accuracy, integer labels ->
sparse_categorical_accuracy, otherwise categorical_accuracy; the log key is the name given.
"""
import re

import numpy as np

from . import losses
from .losses import same_rank
from .utils import float32_config, init_config, unique_name


def _snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()      # TopKCategoricalAccuracy -> top_k_...


def _array(a):
    return a if isinstance(a, np.ndarray) else np.asarray(a, dtype=np.float32)


# -- Keras's metric functions: one value per sample (or per entry) --------------------------
def accuracy(y_true, y_pred):
    y_true, y_pred = same_rank(_array(y_true), _array(y_pred))
    return (y_true == y_pred).astype(np.float32)


def binary_accuracy(y_true, y_pred, threshold=0.5):
    y_true, y_pred = same_rank(_array(y_true), _array(y_pred))
    return (y_true == (y_pred > threshold).astype(y_true.dtype)).astype(np.float32)


def categorical_accuracy(y_true, y_pred):
    return (_array(y_true).argmax(axis=-1) == _array(y_pred).argmax(axis=-1)).astype(np.float32)


def _sparse_labels(y_true, y_pred):
    y_true = _array(y_true)
    return y_true[..., 0] if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1 else y_true


def sparse_categorical_accuracy(y_true, y_pred):
    y_pred = _array(y_pred)
    return (_sparse_labels(y_true, y_pred) == y_pred.argmax(axis=-1)).astype(np.float32)


def _in_top_k(labels, y_pred, k):
    """True where the label's score is among the k highest (ties at the boundary count, as in Keras)."""
    scores = y_pred.reshape(-1, y_pred.shape[-1])                              # (M, K)
    labels = labels.reshape(-1).astype(np.int64)                               # (M,)
    if labels.size and (labels.min() < 0 or labels.max() >= scores.shape[-1]):
        raise ValueError(f"top-k accuracy: labels must lie in [0, {scores.shape[-1] - 1}]; received labels "
                         f"from {labels.min()} to {labels.max()}")
    target = scores[np.arange(len(labels)), labels][:, None]                   # (M, 1)
    hit = np.isfinite(target[:, 0]) & ((scores > target).sum(axis=-1) < k)
    return hit.astype(np.float32).reshape(y_pred.shape[:-1])


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    y_pred = _array(y_pred)
    return _in_top_k(_array(y_true).argmax(axis=-1), y_pred, k)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5, from_sorted_ids=False):
    y_pred = _array(y_pred)
    labels = _sparse_labels(y_true, y_pred)
    if from_sorted_ids:                      # y_pred holds class ids, best first
        return (y_pred[..., :k] == labels[..., None]).any(axis=-1).astype(np.float32)
    return _in_top_k(labels, y_pred, k)


def _checked_k(k, name):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{name}: k must be a positive integer; received {k!r}")
    return int(k)


# -- the metric objects ---------------------------------------------------------------------
class Metric:
    """Keras's Metric: state that update_state() accumulates and result() reads."""

    def __init__(self, name=None):
        self.name = name or unique_name(_snake(type(self).__name__))
        self.reset_state()

    def reset_state(self):
        raise NotImplementedError

    def update_state(self, *args, **kwargs):
        raise NotImplementedError

    def result(self):
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        """update_state(...) then result(), as Keras 3's metrics do."""
        self.update_state(*args, **kwargs)
        return self.result()

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"

    def get_config(self):
        """The constructor's arguments, as Keras's Metric.get_config()."""
        return {**init_config(self, getattr(self, "fn_kwargs", None)), "dtype": "float32"}

    @classmethod
    def from_config(cls, config):
        return cls(**float32_config(cls, config))


class Mean(Metric):
    """The weighted mean of the values given to update_state(values, sample_weight=None)."""

    def __init__(self, name="mean"):
        super().__init__(name)

    def reset_state(self):
        self.total, self.count = 0.0, 0.0

    def update_state(self, values, sample_weight=None):
        values = np.asarray(values, dtype=np.float64)
        weights = None
        if sample_weight is not None:
            weights = np.asarray(sample_weight, dtype=np.float64)
            values, weights = same_rank(values, weights)
            if values.ndim > weights.ndim:           # values per sample, first: one weight each
                values = values.mean(axis=tuple(range(weights.ndim, values.ndim)))
            try:
                weights = np.broadcast_to(weights, values.shape)
            except ValueError:
                raise ValueError(f"{self.name}: sample_weight of shape {np.shape(sample_weight)} does "
                                 f"not fit values of shape {values.shape}") from None
            values = values * weights
            if weights.ndim > 1:
                weights = weights.mean(axis=tuple(range(1, weights.ndim)))
        if values.ndim > 1:
            values = values.mean(axis=tuple(range(1, values.ndim)))
        self.total += float(values.sum())
        self.count += float(weights.sum()) if weights is not None else (len(values) if values.ndim else 1)

    def result(self):
        return self.total / self.count if self.count else 0.0      # Keras's divide_no_nan


class MeanMetricWrapper(Mean):
    """The mean of fn(y_true, y_pred, **kwargs): how every accuracy below is made."""

    def __init__(self, fn, name=None, **kwargs):
        if not callable(fn):
            raise TypeError(f"MeanMetricWrapper expects a function fn(y_true, y_pred); received {fn!r}")
        self.fn, self.fn_kwargs = fn, kwargs
        super().__init__(name or unique_name("mean_metric_wrapper"))

    def update_state(self, y_true, y_pred, sample_weight=None):
        super().update_state(self.fn(y_true, y_pred, **self.fn_kwargs), sample_weight)


class Accuracy(MeanMetricWrapper):
    """How often y_pred equals y_true exactly."""

    def __init__(self, name="accuracy"):
        super().__init__(accuracy, name)


class BinaryAccuracy(MeanMetricWrapper):
    """How often (y_pred > threshold) equals the 0/1 target."""

    def __init__(self, name="binary_accuracy", threshold=0.5):
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)):
            raise ValueError(f"{name}: threshold must be a number; received {threshold!r}")
        self.threshold = float(threshold)
        super().__init__(binary_accuracy, name, threshold=self.threshold)


class CategoricalAccuracy(MeanMetricWrapper):
    """How often the highest output is the one-hot target's class."""

    def __init__(self, name="categorical_accuracy"):
        super().__init__(categorical_accuracy, name)


class SparseCategoricalAccuracy(MeanMetricWrapper):
    """How often the highest output is the integer label."""

    def __init__(self, name="sparse_categorical_accuracy"):
        super().__init__(sparse_categorical_accuracy, name)


class TopKCategoricalAccuracy(MeanMetricWrapper):
    """How often the one-hot target's class is among the k highest outputs."""

    def __init__(self, k=5, name="top_k_categorical_accuracy"):
        self.k = _checked_k(k, name)
        super().__init__(top_k_categorical_accuracy, name, k=self.k)


class SparseTopKCategoricalAccuracy(MeanMetricWrapper):
    """How often the integer label is among the k highest outputs (or the first k ids)."""

    def __init__(self, k=5, name="sparse_top_k_categorical_accuracy", from_sorted_ids=False):
        self.k = _checked_k(k, name)
        super().__init__(sparse_top_k_categorical_accuracy, name, k=self.k,
                         from_sorted_ids=losses._flag(from_sorted_ids, f"{name}: from_sorted_ids"))


class MeanSquaredError(MeanMetricWrapper):
    def __init__(self, name="mean_squared_error"):
        super().__init__(losses.mean_squared_error, name)


class MeanAbsoluteError(MeanMetricWrapper):
    def __init__(self, name="mean_absolute_error"):
        super().__init__(losses.mean_absolute_error, name)


class CategoricalCrossentropy(MeanMetricWrapper):
    def __init__(self, name="categorical_crossentropy", from_logits=False, label_smoothing=0.0, axis=-1):
        super().__init__(losses.categorical_crossentropy, name, from_logits=from_logits,
                         label_smoothing=label_smoothing, axis=axis)


class SparseCategoricalCrossentropy(MeanMetricWrapper):
    def __init__(self, name="sparse_categorical_crossentropy", from_logits=False, axis=-1):
        super().__init__(losses.sparse_categorical_crossentropy, name, from_logits=from_logits, axis=axis)


class BinaryCrossentropy(MeanMetricWrapper):
    def __init__(self, name="binary_crossentropy", from_logits=False, label_smoothing=0.0):
        super().__init__(losses.binary_crossentropy, name, from_logits=from_logits,
                         label_smoothing=label_smoothing)


class _Confusion(Metric):
    """Weighted counts of true/false positives/negatives, one per threshold (Precision, Recall)."""

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None):
        listed = thresholds if isinstance(thresholds, (list, tuple)) else [thresholds]
        if thresholds is not None and not all(
                isinstance(t, (int, float, np.integer, np.floating)) and not isinstance(t, bool) and 0 <= t <= 1
                for t in listed):
            raise ValueError(f"{type(self).__name__}: thresholds must be a number or a list of numbers in "
                             f"[0, 1]; received {thresholds!r}")
        if top_k is not None:
            top_k = _checked_k(top_k, f"{type(self).__name__} top_k")
        if class_id is not None and (isinstance(class_id, bool) or not isinstance(class_id, (int, np.integer))):
            raise ValueError(f"{type(self).__name__}: class_id must be an integer; received {class_id!r}")
        self.init_thresholds, self.top_k, self.class_id = thresholds, top_k, class_id
        default = 0.5 if top_k is None else -np.inf              # with top_k: every kept entry counts
        self.thresholds = [float(t) for t in ([default] if thresholds is None else listed)]
        super().__init__(name)

    def reset_state(self):
        self.tp, self.fp, self.fn = (np.zeros(len(self.thresholds)) for _ in range(3))

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred, y_true = same_rank(np.asarray(y_pred, dtype=np.float64), np.asarray(y_true))
        if y_true.shape != y_pred.shape:
            raise ValueError(f"{self.name}: y_true and y_pred must have the same shape; received "
                             f"{y_true.shape} and {y_pred.shape}")
        w = np.ones(y_pred.shape)
        if sample_weight is not None:           # one weight per sample, spread over its entries
            sw = np.expand_dims(np.asarray(sample_weight, dtype=np.float64), -1)
            try:
                w = np.broadcast_to(same_rank(y_true, sw, expand_rank_1=False)[1], y_pred.shape)
            except ValueError:
                raise ValueError(f"{self.name}: sample_weight of shape {np.shape(sample_weight)} does not "
                                 f"fit y_pred of shape {y_pred.shape}") from None
        if self.top_k is not None:              # keep the k highest of each row (ties: lower index first)
            top = np.argsort(-y_pred, axis=-1, kind="stable")[..., :self.top_k]
            kept = np.zeros(y_pred.shape, dtype=bool)
            np.put_along_axis(kept, top, True, axis=-1)
            y_pred = np.where(kept, y_pred, -np.inf)
        if self.class_id is not None:           # only that class's column
            y_true, y_pred, w = y_true[..., self.class_id], y_pred[..., self.class_id], w[..., self.class_id]
        w = w.reshape(-1)
        positive = y_true.reshape(-1) != 0                                          # (M,)
        predicted = y_pred.reshape(1, -1) > np.array(self.thresholds)[:, None]      # (T, M)
        self.tp += (w * (predicted & positive)).sum(axis=-1)
        self.fp += (w * (predicted & ~positive)).sum(axis=-1)
        self.fn += (w * (~predicted & positive)).sum(axis=-1)

    def _ratio(self, num, den):
        value = np.divide(num, den, out=np.zeros_like(num), where=den != 0)
        return float(value[0]) if len(self.thresholds) == 1 else value


class Precision(_Confusion):
    """tp / (tp + fp): of the entries predicted positive, the fraction that are."""

    def result(self):
        return self._ratio(self.tp, self.tp + self.fp)


class Recall(_Confusion):
    """tp / (tp + fn): of the positive entries, the fraction predicted positive."""

    def result(self):
        return self._ratio(self.tp, self.tp + self.fn)


# -- names, as keras.metrics.get knows them ----------------------------------------------
CLASSES = (Mean, Accuracy, BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy,
           TopKCategoricalAccuracy, SparseTopKCategoricalAccuracy, Precision, Recall,
           MeanSquaredError, MeanAbsoluteError, CategoricalCrossentropy, SparseCategoricalCrossentropy,
           BinaryCrossentropy)
METRICS = {**{_snake(cls.__name__): cls for cls in CLASSES}, **{cls.__name__: cls for cls in CLASSES},
           "mse": MeanSquaredError, "mae": MeanAbsoluteError, "bce": BinaryCrossentropy}
_BY_LOWER = {key.lower(): cls for key, cls in METRICS.items()}
FUNCTIONS = (accuracy, binary_accuracy, categorical_accuracy, sparse_categorical_accuracy,
             top_k_categorical_accuracy, sparse_top_k_categorical_accuracy)


def _unknown(identifier):
    names = ["accuracy", "acc"] + [k for k in METRICS if not k[0].isupper() and k != "accuracy"]
    return ValueError(f"unknown metric {identifier!r}; expected one of {', '.join(map(repr, names))}, "
                      f"a tinycnn.metrics.Metric instance or a function fn(y_true, y_pred)")


def get(identifier):
    """'categorical_accuracy' -> CategoricalAccuracy(); a Metric passes through; a function is returned.

    As keras.metrics.get: 'accuracy' is Accuracy() (exact match). In compile, 'accuracy' and
    'acc' are resolved from the data instead (CompileMetrics).
    """
    if identifier is None:
        return None
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if isinstance(identifier, str) and identifier.lower() in _BY_LOWER:
        return _BY_LOWER[identifier.lower()]()
    if isinstance(identifier, dict) and identifier.get("class_name") in METRICS:
        return METRICS[identifier["class_name"]].from_config(identifier.get("config", {}))
    if callable(identifier) and not isinstance(identifier, type) and hasattr(identifier, "__code__"):
        return identifier                      # a Python function: compile wraps it in a MeanMetricWrapper
    raise _unknown(identifier)


class CompileMetrics:
    """What compile(metrics=..., weighted_metrics=...) keeps, and what the training loops call.

        cm.names                                  the log keys, in order (known at compile time)
        cm.update_state(y_true, y_pred, sample_weight=None)
        cm.result()  -> {name: value}             cm.reset_state()
        cm.metrics                                the Metric objects (after the first update)

    As in Keras 3: `metrics` ignore sample_weight, `weighted_metrics` use it; 'accuracy' and
    'acc' become binary, sparse categorical or categorical accuracy on the first batch; a name
    given twice is logged as name, name_1, ... (a weighted duplicate as weighted_name).
    """

    def __init__(self, metrics=None, weighted_metrics=None):
        self._entries = []                                   # [identifier, metric or None, weighted]
        for argument, weighted in ((metrics, False), (weighted_metrics, True)):
            if argument is None:
                continue
            if not isinstance(argument, (list, tuple)):
                kind = "weighted_metrics" if weighted else "metrics"
                raise TypeError(f"{kind} must be a list, such as ['accuracy']; received {argument!r}")
            for identifier in argument:
                self._entries.append([identifier, self._resolve(identifier), weighted])
        self.names = self._unique_names()

    @staticmethod
    def _resolve(identifier):
        if isinstance(identifier, str) and identifier.lower() in ("accuracy", "acc"):
            return None                                      # chosen from the data, in build()
        metric = get(identifier)
        if metric is None or not isinstance(metric, Metric) and not callable(metric):
            raise _unknown(identifier)
        if not isinstance(metric, Metric):
            metric = MeanMetricWrapper(metric, name=getattr(metric, "__name__", None))
        if isinstance(identifier, str):
            metric.name = identifier                         # Keras logs the string it was given
        return metric

    def _unique_names(self):
        """Keras's log keys: unweighted first; a repeated name gets _1, _2 (weighted: weighted_)."""
        names, counters = [], {}
        for weighted in (False, True):
            for identifier, metric, w in self._entries:
                if w != weighted:
                    continue
                name = identifier if metric is None else metric.name
                if name in counters and weighted:
                    name = f"weighted_{name}"
                if name in counters:
                    counters[name] += 1
                    name = f"{name}_{counters[name] - 1}"
                else:
                    counters[name] = 1
                names.append(name)
        return names

    @property
    def built(self):
        return all(metric is not None for _, metric, _ in self._entries)

    @property
    def metrics(self):
        return [metric for _, metric, _ in self._entries if metric is not None]

    def build(self, y_true, y_pred):
        """Resolve 'accuracy'/'acc' from the shapes, as Keras: one output, labels, or one-hot rows."""
        y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
        binary = y_pred.shape[-1] == 1
        sparse = y_true.ndim < y_pred.ndim or (y_true.shape[-1] == 1 and y_pred.shape[-1] > 1)
        cls = BinaryAccuracy if binary else SparseCategoricalAccuracy if sparse else CategoricalAccuracy
        for entry in self._entries:
            if entry[1] is None:
                entry[1] = cls(name=entry[0])

    def update_state(self, y_true, y_pred, sample_weight=None):
        if not self.built:
            self.build(y_true, y_pred)
        for _, metric, weighted in self._entries:
            metric.update_state(y_true, y_pred, sample_weight if weighted else None)

    def reset_state(self):
        for metric in self.metrics:
            metric.reset_state()

    def result(self):
        """{log key: value}, in the order of `names`."""
        ordered = [e for e in self._entries if not e[2]] + [e for e in self._entries if e[2]]
        return {name: metric.result() for name, (_, metric, _) in zip(self.names, ordered)}
