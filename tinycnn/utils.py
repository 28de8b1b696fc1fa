"""Small helpers shared by the whole library: labels, seeds and layer names.

    to_categorical(y, num_classes)   integer labels -> one-hot float32 rows
    set_random_seed(seed)            makes weight init, dropout and shuffling repeatable
    rng()                            the generator every random draw in tinycnn uses
    uniform(seed, shape)             random numbers in [0, 1) that any part of an array can compute alone
    plot_model(model, ...), image_dataset_from_directory(directory, ...)   as Keras 3's (graph_plot.py, image_dataset.py)
"""
import random
from collections import defaultdict

import numpy as np

_generator = np.random.default_rng()
_name_counts = defaultdict(int)


def rng():
    """The one random generator behind weight init, dropout masks and shuffling."""
    return _generator


def set_random_seed(seed):
    """Seed tinycnn, NumPy's legacy global generator and Python's `random` (as Keras does).

    The same seed gives the same initial weights, dropout masks and batch order,
    so on the NumPy backend a whole training run repeats bit for bit.
    """
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"set_random_seed expects an integer seed; received {seed!r}")
    if seed < 0:
        raise ValueError(f"set_random_seed expects a seed >= 0; received {seed}")
    _generator = np.random.default_rng(int(seed))
    np.random.seed(int(seed) % 2**32)
    random.seed(int(seed))


# splitmix64's constants: a fixed mixing of 64 bits that passes the standard tests of randomness.
GOLDEN, MIX1, MIX2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def uniform(seed, shape):
    """Uniform numbers in [0, 1), element i a hash of (seed, i): counter-based, not sequential.

    u[i] = splitmix64(seed + (i + 1) * GOLDEN) / 2**64, to 53 bits. Because element i needs
    only i and the seed, a kernel can compute any slice of the array by itself, in any order,
    on any core: the Numba backend draws dropout masks inside its kernels, and gets exactly
    the masks this function gives. `seed` is an integer in [0, 2**63).
    """
    z = np.uint64(seed) + np.arange(1, int(np.prod(shape)) + 1, dtype=np.uint64) * GOLDEN   # wraps mod 2**64
    z = (z ^ (z >> np.uint64(30))) * MIX1
    z = (z ^ (z >> np.uint64(27))) * MIX2
    z ^= z >> np.uint64(31)
    return ((z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53).reshape(shape)


def new_seed(generator=None):
    """A fresh seed for uniform(), drawn from `generator` (default: tinycnn's own, rng())."""
    return int((generator or _generator).integers(0, 2**63))


def unique_name(base):
    """Keras-style automatic names: 'conv2d', then 'conv2d_1', 'conv2d_2', ..."""
    count = _name_counts[base]
    _name_counts[base] += 1
    return base if count == 0 else f"{base}_{count}"


def clear_session():
    """Forget the automatic names handed out so far, so the next model starts at 'conv2d' again."""
    _name_counts.clear()


def to_categorical(y, num_classes=None):
    """One-hot encode integer class labels.

    Args:
        y: integer labels, any shape (usually (N,)), values in [0, num_classes).
        num_classes: number of classes; max(y) + 1 when None.
    Returns:
        float32 array of shape y.shape + (num_classes,).
    Raises:
        TypeError for non-integer labels, ValueError for labels out of range.
    """
    y = np.asarray(y)
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise TypeError("to_categorical expects integer class labels; received non-integer floats")
        y = y.astype(np.int64)
    if y.dtype.kind not in "iub":
        raise TypeError(f"to_categorical expects integer class labels; received dtype {y.dtype}")
    if y.size == 0:
        raise ValueError("to_categorical received an empty array of labels")
    y = y.astype(np.int64)
    if y.ndim > 1 and y.shape[-1] == 1:  # Keras accepts (N, 1) columns of labels
        y = y[..., 0]
    if y.min() < 0:
        raise ValueError(f"to_categorical expects labels >= 0; received {int(y.min())}")
    if num_classes is None:
        num_classes = int(y.max()) + 1
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"to_categorical expects num_classes to be a positive integer; received {num_classes!r}")
    if y.max() >= num_classes:
        raise ValueError(
            f"to_categorical: label {int(y.max())} is out of range for num_classes={num_classes} "
            f"(labels must lie in [0, {num_classes - 1}])"
        )
    out = np.zeros(y.shape + (int(num_classes),), dtype=np.float32)
    np.put_along_axis(out, y[..., None], 1.0, axis=-1)
    return out


class Configurable:
    """Keras's config protocol: get_config() gives the constructor's arguments, from_config(config)
    rebuilds the object, and the repr shows them (initializers, regularizers, schedules)."""

    def get_config(self):
        raise NotImplementedError(f"{type(self).__name__} must define get_config()")

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"


def init_config(obj, extra=None):
    """get_config() for objects that keep each constructor argument under its own name:
    {argument: obj.argument (or extra[argument], or its default)}, in the signature's order."""
    import inspect
    config = {}
    for name, param in inspect.signature(type(obj).__init__).parameters.items():
        if name != "self" and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            default = None if param.default is param.empty else param.default
            config[name] = getattr(obj, name, (extra or {}).get(name, default))
    return config


def plot_model(model, *args, **kwargs):
    """Keras 3's plot_model, drawn with matplotlib: see tinycnn/graph_plot.py."""
    from .graph_plot import plot_model as plot         # here, not at the top: utils is imported by everything
    return plot(model, *args, **kwargs)


def image_dataset_from_directory(directory, *args, **kwargs):
    """Keras 3's image_dataset_from_directory: see tinycnn/image_dataset.py."""
    from .image_dataset import image_dataset_from_directory as load
    return load(directory, *args, **kwargs)


def float32_config(cls, config):
    """A config without its dtype entry, which must be float32's (tinycnn computes in float32)."""
    config = dict(config)
    if config.pop("dtype", None) not in (None, "float32"):
        raise ValueError(f"{cls.__name__}: only dtype='float32' is supported")
    return config
