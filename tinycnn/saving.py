"""Whole models on disk, in Keras 3's `.keras` format: architecture, weights and optimizer state.

    model.save("m.keras")                 a zip: metadata.json, config.json, model.weights.h5
    tinycnn.models.load_model("m.keras")  the same model, compiled as it was, its optimizer state restored
    model.to_json() / models.model_from_json(text)     the architecture alone
    model.save_weights("m.weights.h5")    Keras's HDF5 weights file (needs h5py)

config.json is Keras's: {"module", "class_name", "config", "registered_name", "build_config",
"compile_config"}, every layer as the same kind of entry made from its get_config(). The
weights follow Keras's paths: one group per layer, named after its class and counted within
the model (conv2d, conv2d_1, ...; not the layer's name), one array per weight in Keras's order,
then the optimizer's variables:

    layers/conv2d/vars/0   kernel (KH, KW, C, F)     layers/conv2d/vars/1   bias (F,)
    optimizer/vars/0       iterations ()             optimizer/vars/1       learning_rate ()
    optimizer/vars/2...    per trained weight, in order, its state (Adam: m, then v)

With h5py installed they are an HDF5 file, model.weights.h5, that Keras reads and writes;
without it, the same paths in an .npz archive, model.weights.npz, that only tinycnn reads.
Nothing is ever pickled, and every file is written to a temporary name, then renamed.
"""
import datetime
import json
import os
import zipfile

import numpy as np

from . import weights as weights_file

KERAS_VERSION = "3.15.1"         # the Keras release whose .keras layout this follows
H5_HINT = 'install h5py (pip install "tinycnn[h5]")'


class SavingError(ValueError):
    """A model file that cannot be written or read: the wrong kind, damaged, or not supported."""


# ----------------------------------------------------------------------------------------
# Configs: layers and models as Keras's JSON entries
# ----------------------------------------------------------------------------------------
def layer_entry(layer):
    entry = {"module": "keras.layers", "class_name": type(layer).__name__, "config": layer.get_config(),
             "registered_name": None}
    if layer.built:
        shapes = [[None, *shape] for shape in layer.in_shape] if layer.multi_input else [None, *layer.in_shape]
        entry["build_config"] = {"input_shape": shapes}
    return entry


def input_entry(name, batch_shape):
    """Keras's entry for an InputLayer of this name and shape (None first, for the batch)."""
    return {"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
            "config": {"batch_shape": list(batch_shape), "dtype": "float32", "sparse": False, "ragged": False,
                       "name": name, "optional": False}}


def layer_from_entry(entry, custom_objects=None):
    """A tinycnn layer from Keras's entry, or a clear error naming what tinycnn does not have."""
    from . import layers
    name = entry.get("class_name") if isinstance(entry, dict) else None
    cls = (custom_objects or {}).get(name) or getattr(layers, str(name), None)
    if not (isinstance(cls, type) and issubclass(cls, layers.Layer)):
        raise SavingError(f"the model uses a layer {name!r} that tinycnn does not have; tinycnn's layers are "
                          f"{', '.join(n for n in layers.__all__ if n not in ('Input', 'InputLayer', 'Layer'))}"
                          f" (a layer of your own: pass custom_objects={{{name!r}: YourLayer}})")
    try:
        return cls.from_config(dict(entry.get("config") or {}))
    except (TypeError, ValueError) as err:
        raise SavingError(f"cannot rebuild layer {name!r} from its config: {err}") from None


def model_entry(model, compiled=True):
    """config.json's content: the model's entry, with how it was compiled if it was."""
    module = "keras.src.models.functional" if type(model).__name__ == "Functional" else "keras"
    entry = {"module": module, "class_name": type(model).__name__, "config": model.get_config(),
             "registered_name": None}
    if model.input_shape is not None:
        entry["build_config"] = {"input_shape": list(model.input_shape)}
    if compiled and model.compiled:
        entry["compile_config"] = compile_config(model)
    return entry


def compile_config(model):
    """compile()'s arguments as Keras writes them: names stay names, objects become their entries."""
    from .layers.base import serialized
    optimizer, loss, metrics, weighted_metrics = model._compile_args

    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, (str, int, float)) or value is None:
            return value
        if hasattr(value, "get_config"):
            return serialized(value)
        raise SavingError(f"{model.name}.save: the compile argument {value!r} cannot be written into a "
                          f"config; use a name or a tinycnn loss/metric object, or save(..., "
                          f"include_optimizer=False) and compile again after loading")
    return {"optimizer": serialized(model.optimizer), "loss": plain(loss), "loss_weights": plain(model._loss_weights),
            "metrics": plain(metrics), "weighted_metrics": plain(weighted_metrics), "run_eagerly": False,
            "steps_per_execution": 1, "jit_compile": False}


def model_from_entry(entry, custom_objects=None):
    from . import functional, models
    kind = entry.get("class_name") if isinstance(entry, dict) else None
    cls = {"Sequential": models.Sequential, "Functional": functional.Functional, "Model": functional.Functional}.get(kind)
    if cls is None:
        raise SavingError(f"tinycnn can rebuild Sequential and functional models; this file holds a {kind!r}")
    return cls.from_config(entry.get("config") or {}, custom_objects=custom_objects)


def compile_from_entry(model, config):
    """compile() the model as compile_config says."""
    from . import losses, metrics, optimizers

    def obj(value, get):
        if isinstance(value, list):
            return [obj(v, get) for v in value]
        if isinstance(value, dict) and "class_name" not in value:       # by output name
            return {k: obj(v, get) for k, v in value.items()}
        return get(value) if isinstance(value, dict) else value
    try:
        model.compile(optimizer=optimizers.get(config.get("optimizer") or "rmsprop"),
                      loss=obj(config.get("loss"), losses.get), loss_weights=config.get("loss_weights"),
                      metrics=obj(config.get("metrics"), metrics.get),
                      weighted_metrics=obj(config.get("weighted_metrics"), metrics.get))
    except (TypeError, ValueError) as err:
        raise SavingError(f"cannot compile the loaded model as it was saved: {err}; load it with "
                          f"compile=False and compile it yourself") from None


def to_json(model, **kwargs):
    return json.dumps(model_entry(model, compiled=False), **kwargs)


def model_from_json(json_string, custom_objects=None):
    """The model that to_json() described (new weights: a config holds none)."""
    try:
        entry = json.loads(json_string)
    except (TypeError, json.JSONDecodeError) as err:
        raise SavingError(f"model_from_json expects the JSON text that to_json() gives: {err}") from None
    return model_from_entry(entry, custom_objects)


# ----------------------------------------------------------------------------------------
# Weights: {path: array} in Keras's layout, in an HDF5 file or an .npz archive
# ----------------------------------------------------------------------------------------
def layer_paths(model):
    """[(layer, 'layers/conv2d'), (layer, 'layers/conv2d_1'), ...]: Keras's paths, by class and position."""
    from .layers.base import snake_case
    seen, out = {}, []
    for layer in model.layers:
        base = snake_case(type(layer).__name__)
        out.append((layer, f"layers/{base}" + (f"_{seen[base]}" if seen.get(base) else "")))
        seen[base] = seen.get(base, 0) + 1
    return out


def weight_arrays(model, include_optimizer=True):
    """{'layers/conv2d/vars/0': kernel, ..., 'optimizer/vars/0': iterations, ...}, in Keras's order."""
    arrays = {}
    for layer, path in layer_paths(model):
        for i, w in enumerate(layer.get_weights()):
            arrays[f"{path}/vars/{i}"] = w
    if include_optimizer and model.compiled:
        for i, v in enumerate(optimizer_variables(model)):
            arrays[f"optimizer/vars/{i}"] = v
    return arrays


def optimizer_variables(model):
    """Keras's optimizer variables: iterations, the learning rate (unless scheduled), each weight's state."""
    from .schedules import LearningRateSchedule
    opt = model.optimizer
    out = [np.array(opt.iterations, dtype=np.int64)]
    if not isinstance(opt._learning_rate, LearningRateSchedule):
        out.append(np.array(opt.learning_rate, dtype=np.float32))
    for key, p, _ in model._slots():
        state = opt.state.get(key, {})
        out += [np.asarray(state.get(name, np.zeros_like(p)), dtype=np.float32) for name in opt.SLOTS]
    return out


def set_optimizer_variables(model, variables, where):
    """Restore what optimizer_variables() wrote, or warn (as Keras does) when it does not fit."""
    import warnings

    from .schedules import LearningRateSchedule
    opt = model.optimizer
    slots = model._slots()
    scheduled = isinstance(opt._learning_rate, LearningRateSchedule)
    expected = [()] * (1 + (not scheduled)) + [p.shape for _, p, _ in slots for _ in opt.SLOTS]
    if [np.shape(v) for v in variables] != expected:
        warnings.warn(f"{where}: the saved optimizer state ({len(variables)} variables) does not fit "
                      f"{type(opt).__name__} on this model ({len(expected)} variables); the optimizer starts "
                      f"afresh", stacklevel=4)
        return
    opt.iterations = int(variables[0])
    rest = variables[1:]
    if not scheduled:
        if np.float32(opt.learning_rate) != rest[0]:       # the config's exact rate, unless the file says otherwise
            opt.learning_rate = float(rest[0])
        rest = rest[1:]
    for n, (key, p, _) in enumerate(slots):
        names = opt.SLOTS
        opt.state[key] = {name: np.array(rest[n * len(names) + j], dtype=p.dtype) for j, name in enumerate(names)}


def h5py_or_none():
    try:
        import h5py
    except ImportError:
        return None
    return h5py


def write_h5(f, model, arrays):
    """Keras's HDF5 layout: a group per layer (even without weights), its arrays under vars/0, vars/1, ..."""
    f.create_group("vars").attrs["name"] = model.name
    for layer, path in layer_paths(model):
        f.require_group(f"{path}/vars").attrs["name"] = layer.name
    if any(p.startswith("optimizer/") for p in arrays):
        f.require_group("optimizer/vars").attrs["name"] = model.optimizer.name
    for path, a in arrays.items():
        f.create_dataset(path, data=a)


def read_h5(f):
    arrays = {}

    def visit(path, obj):
        if hasattr(obj, "shape"):
            arrays[path] = np.asarray(obj[()])
    f.visititems(visit)
    return arrays


def set_weight_arrays(model, arrays, where):
    """Put every layer's arrays back (all checked before any is written), then the optimizer's."""
    new = []
    for layer, path in layer_paths(model):
        if not layer.params:
            continue
        found = [arrays.get(f"{path}/vars/{i}") for i in range(len(layer.params))]
        if any(a is None for a in found):
            stored = sorted({p.split("/")[1] for p in arrays if p.startswith("layers/") and "/vars/" in p})
            raise SavingError(f"{where}: no weights for {layer} at '{path}' ({len(layer.params)} arrays) in the "
                              f"file; it holds weights at {stored}. As in Keras, layers are matched by their kind "
                              f"and position (the 2nd Conv2D is conv2d_1), so the file is from another architecture.")
        new.extend(found)
    try:
        model.set_weights(new)
    except (TypeError, ValueError) as err:
        raise SavingError(f"{where}: the file was saved from another architecture: {err}") from None
    opt = sorted((int(p.rsplit("/", 1)[1]), a) for p, a in arrays.items() if p.startswith("optimizer/vars/"))
    if opt and model.compiled:
        set_optimizer_variables(model, [a for _, a in opt], where)


def h5_bytes(model, arrays):
    import io
    h5py = h5py_or_none()
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        write_h5(f, model, arrays)
    return buffer.getvalue()


def save_weights_h5(model, path):
    if h5py_or_none() is None:
        raise SavingError(f"{model.name}.save_weights({path!r}): an .h5 weights file needs h5py, which is not "
                          f"installed: {H5_HINT}, or use a name ending in '.weights.npz'")
    data = h5_bytes(model, weight_arrays(model))
    weights_file.atomic_write(path, lambda f: f.write(data), f"{model.name}.save_weights")


def load_weights_h5(model, path):
    h5py = h5py_or_none()
    where = f"{model.name}.load_weights({path!r})"
    if h5py is None:
        raise SavingError(f"{where}: reading an .h5 weights file needs h5py, which is not installed: {H5_HINT}")
    try:
        with h5py.File(path, "r") as f:
            arrays = read_h5(f)
    except OSError as err:
        raise SavingError(f"{where}: not a readable HDF5 weights file ({err})") from None
    set_weight_arrays(model, arrays, where)


# ----------------------------------------------------------------------------------------
# The .keras zip
# ----------------------------------------------------------------------------------------
def save_model(model, path, overwrite=True, zipped=None, include_optimizer=True):
    from . import __version__
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise SavingError(f"{model.name}.save: the file name must end in '.keras' (Keras 3's format); received "
                          f"{path!r}. For the weights alone use save_weights('m.weights.h5' or '.weights.npz').")
    if zipped not in (None, True):
        raise SavingError(f"{model.name}.save: zipped=False (an unzipped folder) is not supported by tinycnn")
    if not model.built:
        raise SavingError(f"{model.name}.save: the model is not built yet, so it has no weights to save; "
                          f"give the first layer input_shape=... or call it once")
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{model.name}.save: {path!r} exists and overwrite=False")
    config = json.dumps(model_entry(model, compiled=include_optimizer))
    metadata = json.dumps({"keras_version": KERAS_VERSION, "date_saved":
                           datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"), "tinycnn_version": __version__})
    arrays = weight_arrays(model, include_optimizer)
    if h5py_or_none() is not None:
        weights_name, weights = "model.weights.h5", h5_bytes(model, arrays)
    else:
        import io
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)               # plain .npy arrays: no pickle
        weights_name, weights = "model.weights.npz", buffer.getvalue()

    def write(f):
        with zipfile.ZipFile(f, "w") as z:
            z.writestr("metadata.json", metadata)
            z.writestr("config.json", config)
            z.writestr(weights_name, weights)
    weights_file.atomic_write(path, write, f"{model.name}.save")


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """A model saved by model.save() (here or by Keras 3) from its .keras file, compiled as it was saved."""
    path = os.fspath(filepath)
    where = f"load_model({path!r})"
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{where}: no such file")
    if path.endswith((".h5", ".hdf5")):
        raise SavingError(f"{where}: this is the legacy Keras 2 HDF5 model format, which tinycnn does not read; "
                          f"save the model as '.keras' with Keras 3")
    if not zipfile.is_zipfile(path):
        raise SavingError(f"{where}: not a .keras file (a zip archive); it is truncated, damaged or of "
                          f"another kind")
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            entry = json.loads(z.read("config.json"))
            if "model.weights.h5" in names:
                h5py = h5py_or_none()
                if h5py is None:
                    raise SavingError(f"{where}: its weights are an HDF5 file; reading it needs h5py: {H5_HINT}")
                import io
                with h5py.File(io.BytesIO(z.read("model.weights.h5")), "r") as f:
                    arrays = read_h5(f)
            elif "model.weights.npz" in names:
                import io
                with np.load(io.BytesIO(z.read("model.weights.npz")), allow_pickle=False) as archive:
                    arrays = {name: archive[name] for name in archive.files}
            else:
                raise SavingError(f"{where}: the archive holds no weights (model.weights.h5 or .npz)")
    except (KeyError, zipfile.BadZipFile, json.JSONDecodeError, OSError) as err:
        raise SavingError(f"{where}: the archive is damaged or incomplete ({type(err).__name__}: {err})") from None
    model = model_from_entry(entry, custom_objects)
    if compile and entry.get("compile_config"):
        compile_from_entry(model, entry["compile_config"])
    set_weight_arrays(model, arrays, where)
    return model
