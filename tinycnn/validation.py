"""Checking what a user hands to fit, evaluate and predict, with errors that say what to fix.

Every check names the model and the method, what was received and what was expected, and is
raised here rather than from deep inside NumPy.
"""
import numpy as np

from .layers.base import shape_str


def as_array(data, what):
    """np.asarray, with a clear error for ragged lists (rows of different lengths)."""
    try:
        return np.asarray(data)
    except ValueError as err:
        raise ValueError(f"{what} must be an array with one shape for every sample; received a "
                         f"{type(data).__name__} that NumPy cannot make rectangular ({err})") from None


def inputs(model, x, what):
    """x as a finite float32 array of the model's input shape (building the model if needed)."""
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
    expected = tuple(model.input_shape_)
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
    """y checked against x's length and the loss's expectations (one-hot, labels, ...)."""
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


def split_validation(x, y, validation_split):
    """Keras's validation_split: the LAST fraction of the samples, before any shuffling."""
    if not isinstance(validation_split, (int, float, np.floating)) or not 0 < validation_split < 1:
        raise ValueError(f"fit: validation_split must be in [0, 1); received {validation_split!r}")
    cut = len(x) - int(len(x) * validation_split)
    if cut == 0 or cut == len(x):
        raise ValueError(f"fit: validation_split={validation_split} leaves an empty training "
                         f"or validation set for {len(x)} samples")
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def validation_pair(model, validation_data):
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
        raise ValueError("fit: validation_data must be a tuple (x_val, y_val)")
    x_val = inputs(model, validation_data[0], "fit (validation_data)")
    return x_val, targets(model, validation_data[1], len(x_val), "fit (validation_data)")
