"""Weights files: every weight of a model in one .npz archive, written atomically, read safely.
(Names ending in .h5 go to Keras's HDF5 layout instead: tinycnn/saving.py.)

    save(model, "m.weights.npz")      a temporary file, flushed to disk, then renamed over the target
    load(model, "m.weights.npz")      names and shapes checked against the model; no pickle, ever
"""
import os
import tempfile
import zipfile

import numpy as np


class WeightsFileError(ValueError):
    """A weights file that is missing, damaged, or made for another architecture."""


class MissingWeightsFileError(WeightsFileError, FileNotFoundError):
    """load_weights of a path that does not exist."""


def atomic_write(path, write, what):
    """write(file object) into a temporary file beside `path`, flushed to disk, then renamed over it:
    readers see the old file or the new one, never half of one."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{what}: the folder {folder!r} does not exist; create it first")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())               # on disk before the rename, not just in a cache
        mask = os.umask(0)                     # reading the process's mask means setting it, then putting it back
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)           # mkstemp makes it private (0600); use the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def names(model):
    """One name per weight array, in get_weights() order: '0.Conv2D.kernel', '0.Conv2D.bias', ..."""
    return [f"{i}.{type(layer).__name__}.{key}" for i, layer in enumerate(model.layers) for key in layer.params]


def is_h5(path):
    """'.weights.h5' (and '.h5', '.hdf5') name Keras's HDF5 weights files: tinycnn/saving.py writes those."""
    return path.lower().endswith((".h5", ".hdf5"))


def check_format(path, what):
    """A whole-model name is refused rather than written as weights under it."""
    if path.lower().endswith(".keras"):
        raise ValueError(f"{what}: {path!r} names a whole-model .keras file; use model.save({path!r}) for "
                         f"that, or a name ending in '.weights.h5' or '.weights.npz' for the weights alone")


def save(model, path):
    """Write every weight to `path` (an .npz archive; conventionally *.weights.npz), atomically."""
    if not model.built:
        raise ValueError(f"{model.name} is not built yet, so it has no weights to save")
    path = os.fspath(path)
    check_format(path, f"{model.name}.save_weights")
    if is_h5(path):
        from . import saving
        return saving.save_weights_h5(model, path)
    arrays = dict(zip(names(model), model.get_weights()))
    atomic_write(path, lambda f: np.savez(f, **arrays), "save_weights")    # plain .npy arrays in a zip: no pickle


def load(model, path):
    """Read a file written by save(); every name and shape must match the model."""
    if not model.built:
        raise ValueError(f"{model.name} is not built yet: build it (input_shape=...) before load_weights()")
    path = os.fspath(path)
    check_format(path, f"{model.name}.load_weights")
    if not os.path.isfile(path):
        raise MissingWeightsFileError(f"load_weights: no weights file at {path!r}")
    if is_h5(path):
        from . import saving
        return saving.load_weights_h5(model, path)
    expected = names(model)
    if not zipfile.is_zipfile(path):
        raise WeightsFileError(f"load_weights: {path!r} is not a weights file: expected an .npz "
                               f"archive written by save_weights(); this one is truncated, "
                               f"corrupted or in another format")
    try:
        with np.load(path, allow_pickle=False) as archive:
            stored = {name: archive[name] for name in archive.files}
    except Exception as err:                   # zipfile and np.load raise many kinds on bad bytes
        raise WeightsFileError(f"load_weights: {path!r} is truncated or corrupted "
                               f"({type(err).__name__}: {err})") from None
    if set(stored) != set(expected):
        missing = [n for n in expected if n not in stored]
        extra = [n for n in stored if n not in expected]
        raise WeightsFileError(f"load_weights: {path!r} was saved from another architecture: it holds "
                               f"{len(stored)} arrays and {model.name} has {len(expected)}; "
                               f"missing {missing[:4]}{'...' if len(missing) > 4 else ''}, "
                               f"unexpected {extra[:4]}{'...' if len(extra) > 4 else ''}")
    weights = []
    for name, current in zip(expected, model.get_weights()):
        w = stored[name]
        if w.shape != current.shape or w.dtype.kind != "f":
            raise WeightsFileError(f"load_weights: {path!r} was saved from another architecture: "
                                   f"'{name}' has shape {w.shape} ({w.dtype}), the model needs "
                                   f"{current.shape} (float)")
        weights.append(w)
    model.set_weights(weights)
