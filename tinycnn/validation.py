"""Checking what a user hands to fit, evaluate and predict, with errors that say what to fix.

Every check names the model and the method, what was received and what was expected, and is
raised here rather than from deep inside NumPy.
"""
import numpy as np

from . import outputs
from .layers.base import shape_str


def as_array(data, what):
    """np.asarray, with a clear error for ragged lists (rows of different lengths)."""
    try:
        return np.asarray(data)
    except ValueError as err:
        raise ValueError(f"{what} must be an array with one shape for every sample; received a "
                         f"{type(data).__name__} that NumPy cannot make rectangular ({err})") from None


def inputs(model, x, what):
    """x as a finite float32 array of the model's input shape (building the model if needed).
    A model of several inputs takes a list or a dict (by input name): then x is Arrays, each checked."""
    shapes = getattr(model, "_input_shapes", None)
    if shapes and len(shapes) > 1:
        parts = [one_input(model, part, what, shape) for part, shape in
                 zip(outputs.structure(model, x, model._input_names, what, "input"), shapes)]
        if len({len(p) for p in parts}) > 1:
            raise ValueError(f"{model.name}.{what}: every input must have the same number of samples; received "
                             f"{', '.join(f'{n}: {len(p)}' for n, p in zip(model._input_names, parts))}")
        return outputs.Arrays(parts)
    return one_input(model, x, what)


def one_input(model, x, what, expected=None):
    where = f"{model.name}.{what}"
    if x is None:
        raise ValueError(f"{where}: x is required")
    x = as_array(x, f"{where}: x")
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{where}: x must be numeric; received dtype {x.dtype}")
    if x.ndim == 0 or x.shape[0] == 0:
        raise ValueError(f"{where}: x is empty (shape {x.shape})")
    if not model.layers:
        raise ValueError(f"{model.name} has no layers; add some before {what}()")
    if not model.built:
        model.build(x.shape[1:])
    expected = tuple(model.input_shape_ if expected is None else expected)
    if x.shape[1:] != expected:
        hint = ""
        if x.shape[1:] == expected[:-1] and expected[-1] == 1:
            hint = " Add the channel axis with np.expand_dims(x, -1)."
        elif x.ndim == len(expected) + 1 and x.shape[1:-1] == expected[:-1]:
            hint = f" The model expects {expected[-1]} channel(s); x has {x.shape[-1]}."
        elif x.shape == expected:
            hint = " For a single sample, add the batch axis: x[np.newaxis]."
        raise ValueError(f"{where}: expected x of shape {shape_str(expected)}; received {x.shape}.{hint}")
    if not np.isfinite(x).all():
        raise ValueError(f"{where}: x contains NaN or inf values "
                         f"({int((~np.isfinite(x)).sum())} of {x.size}); expected finite numbers")
    wide = x.dtype.kind == "f" and x.dtype.itemsize > 4     # float64 may overflow float32
    with np.errstate(over="ignore"):
        x = x.astype(np.float32, copy=False)
    if wide and not np.isfinite(x).all():
        raise ValueError(f"{where}: x has values too large for float32 (largest |x| = "
                         f"{np.abs(x).max()}); expected magnitudes below 3.4e38. Rescale the inputs.")
    return x


def targets(model, y, n, what):
    """y checked against x's length and the loss's expectations (one-hot, labels, ...).
    A model of several outputs takes a list or a dict (by output name): then y is Arrays."""
    if isinstance(model.loss, outputs.MultiLoss):
        parts = [one_target(model, part, n, f"{what} (y[{name!r}])") for part, name in
                 zip(outputs.structure(model, y, model._output_names, what, "target"), model._output_names)]
        try:
            return model.loss.check_targets(parts, model.output_shape)
        except ValueError as err:
            raise ValueError(f"{model.name}.{what}: {err}") from None
    return one_target(model, y, n, what, check=True)


def one_target(model, y, n, what, check=False):
    where = f"{model.name}.{what}"
    if y is None:
        raise ValueError(f"{where}: y is required")
    y = as_array(y, f"{where}: y")
    if y.dtype.kind not in "biuf":
        raise TypeError(f"{where}: y must be numeric; received dtype {y.dtype}")
    if y.ndim == 0 or len(y) != n:
        raise ValueError(f"{where}: x and y must have the same length; "
                         f"received {n} inputs and {0 if y.ndim == 0 else len(y)} targets")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError(f"{where}: y contains NaN or inf values")
    if not check:
        return y
    try:
        return model.loss.check_targets(y, model.output_shape)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def batch_size(value, what):
    if value is None:
        return 32
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{what}: batch_size must be a positive integer; received {value!r}")
    return int(value)


def verbose(value):
    if value == "auto":
        return 1
    if value not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1, 2 or 'auto'; received {value!r}")
    return value


def epochs(value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"fit: epochs must be a non-negative integer; received {value!r}")
    return int(value)


def split_validation(arrays, validation_split):
    """Keras's validation_split: the LAST fraction of the samples, before any shuffling.

    The first floor(n * (1 - validation_split)) samples train, the rest validate: 1,005 samples
    with validation_split=0.1 train on 904 and validate on 101. `arrays` = (x, y, sample_weight),
    any of them None, all cut at the same place.
    """
    if isinstance(validation_split, bool) or not isinstance(validation_split, (int, float, np.integer, np.floating)) \
            or not 0 <= validation_split < 1:
        raise ValueError(f"fit: validation_split must be in [0, 1); received {validation_split!r}")
    n = outputs.rows(arrays[0])
    cut = int(np.floor(n * (1.0 - validation_split)))
    if cut == 0 or cut == n:
        raise ValueError(f"fit: validation_split={validation_split} leaves an empty training "
                         f"or validation set for {n} samples")
    return (tuple(outputs.take(a, slice(None, cut)) for a in arrays),
            tuple(outputs.take(a, slice(cut, None)) for a in arrays))


def validation_pair(model, validation_data):
    """validation_data = (x_val, y_val) or (x_val, y_val, val_sample_weight), checked like x, y."""
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        raise ValueError("fit: validation_data must be a tuple (x_val, y_val) or (x_val, y_val, "
                         "val_sample_weight)")
    what = "fit (validation_data)"
    x_val = inputs(model, validation_data[0], what)
    y_val = targets(model, validation_data[1], outputs.rows(x_val), what)
    weights = sample_weights(model, validation_data[2], outputs.rows(x_val), what) if len(validation_data) == 3 else None
    return x_val, y_val, weights


def sample_weights(model, weights, n, what):
    """One finite, non-negative weight per sample, shape (n,) (or (n, 1)), as float32; None stays None."""
    if weights is None:
        return None
    where = f"{model.name}.{what}"
    w = as_array(weights, f"{where}: sample_weight")
    if w.dtype.kind not in "biuf":
        raise TypeError(f"{where}: sample_weight must be numeric; received dtype {w.dtype}")
    if w.ndim == 2 and w.shape[1] == 1:
        w = w[:, 0]
    if w.shape != (n,):
        raise ValueError(f"{where}: sample_weight must hold one weight per sample, shape ({n},); "
                         f"received shape {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"{where}: sample_weight must be finite and non-negative; received values "
                         f"from {w.min()} to {w.max()}")
    return w.astype(np.float32)


def class_weights(model, weights, y, sample_weight, what):
    """Keras's class_weight: {class: weight} -> one weight per sample, by the sample's class.

    The class of a sample is its label, or the argmax of its one-hot row (a single output column:
    its value rounded, 0 or 1). Classes missing from the dict weigh 1. Without class_weight,
    sample_weight is returned as it is; both at once are refused, as in Keras.
    """
    where = f"{model.name}.{what}"
    if weights is None:
        return sample_weight
    if sample_weight is not None:
        raise ValueError(f"{where}: give class_weight or sample_weight, not both (as in Keras); to "
                         f"combine them, multiply the class weights into sample_weight yourself")
    if isinstance(y, outputs.Arrays):
        raise ValueError(f"{where}: class_weight is for models of one output (as in Keras); this one has "
                         f"{len(y)}: give sample_weight instead")
    if not isinstance(weights, dict):
        raise TypeError(f"{where}: class_weight must be a dict {{class index: weight}}; received {weights!r}")
    for c, w in weights.items():
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 0:
            raise ValueError(f"{where}: class_weight's keys must be class indices (integers >= 0); "
                             f"received key {c!r}")
        if isinstance(w, bool) or not isinstance(w, (int, float, np.integer, np.floating)) \
                or not np.isfinite(w) or w < 0:
            raise ValueError(f"{where}: class_weight[{c}] must be a finite number >= 0; received {w!r}")
    labels = y if y.ndim == 1 else y[:, 0] if y.shape[-1] == 1 else y.argmax(axis=-1)
    labels = np.round(labels).astype(np.int64)
    return np.array([weights.get(int(c), 1.0) for c in labels], dtype=np.float32)


def steps(value, arg):
    """steps_per_epoch, validation_steps, evaluate's steps: None or a positive integer."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{arg} must be a positive integer or None; received {value!r}")
    return int(value)


def validation_freq(value):
    """Validate every `value` epochs (an int), or after the epochs listed (1-based), as Keras."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0:
        return int(value)
    if isinstance(value, list) and all(isinstance(e, (int, np.integer)) and not isinstance(e, bool) for e in value):
        return [int(e) for e in value]
    raise ValueError(f"fit: validation_freq must be a positive integer or a list of epochs (1-based); "
                     f"received {value!r}")


def is_batches(data):
    """True when data is an iterable of batches rather than array data, as fit/evaluate/predict read it.

    Batches: a generator or iterator, an object that iterates (image_dataset_from_directory's
    dataset, a torch DataLoader), or a list of tuples of NumPy arrays [(x, y), ...]. Arrays,
    lists of samples, and anything NumPy converts (__array__) are array data.
    """
    if data is None or isinstance(data, (np.ndarray, str, bytes, dict)) or hasattr(data, "__array__"):
        return False
    if isinstance(data, (list, tuple)):        # Keras reads a list as arrays; a list of (x, y) tuples is batches
        return bool(data) and all(isinstance(b, tuple) and 1 <= len(b) <= 3 and isinstance(b[0], np.ndarray)
                                  for b in data)
    return hasattr(data, "__iter__") or hasattr(data, "__next__")


def no_array_arguments(model, what, **given):
    """With an iterable of batches, y, sample_weight, batch_size and validation_split cannot be given."""
    for arg, value in given.items():
        if value is not None and value is not False and not (arg == "validation_split" and value == 0):
            inside = {"y": "the targets must be part of each batch: (x, y)",
                      "sample_weight": "the weights must be part of each batch: (x, y, sample_weight)",
                      "batch_size": "the iterable's batches set the batch size",
                      "validation_batch_size": "validation_data's batches set the batch size",
                      "validation_split": "an iterable cannot be split; pass validation_data= instead"}[arg]
            raise ValueError(f"{model.name}.{what}: x is an iterable of batches, so {arg} must not be given "
                             f"(received {arg}={value!r}): {inside}, as in Keras")


def batch(model, item, what, with_targets=True):
    """One batch from an iterable, checked as arrays are: (x, y) or (x, y, sample_weight) -> (x, y, w).

    predict (with_targets=False) also takes (x,) or x alone, and ignores y and sample_weight.
    """
    if isinstance(item, tuple) or (isinstance(item, list) and all(hasattr(p, "shape") or p is None for p in item)):
        parts = tuple(item)
    else:
        parts = (item,)
    if not 1 <= len(parts) <= 3 or (with_targets and (len(parts) < 2 or parts[1] is None)):
        form = "(x, y) or (x, y, sample_weight)" if with_targets else "x, (x,), (x, y) or (x, y, sample_weight)"
        received = f"a {type(item).__name__} of {len(parts)} items" if len(parts) > 1 else \
            f"{type(item).__name__} {getattr(item, 'shape', '')}".strip()
        raise ValueError(f"{model.name}.{what}: each batch must be a tuple {form}; received {received}")
    x = inputs(model, parts[0], what)
    if not with_targets:
        return x, None, None
    y = targets(model, parts[1], outputs.rows(x), what)
    w = sample_weights(model, parts[2], outputs.rows(x), what) if len(parts) == 3 else None
    return x, y, w
