"""Plots for people who would rather look than read. Every function returns its Figure
(activation_histograms: the Figure and the dead-ReLU fractions).

    fig = tinycnn.plot.history(history)                 # accuracy and loss per epoch, train vs validation
    fig = tinycnn.plot.filters(model.layers[0])         # a Conv2D's kernels as small images
    fig = tinycnn.plot.feature_maps(model, x_test[0])   # one image, after each layer
    fig = tinycnn.plot.confusion_matrix(y_true, y_pred) # counts of (true class, predicted class)
    fig = tinycnn.plot.misclassified(x, y_true, probs)  # the most confidently wrong predictions
    with tinycnn.plot.record_gradient_norms(model) as norms:
        model.fit(...)
    fig = tinycnn.plot.gradient_flow(norms)             # each layer's gradient norm, step by step
    with tinycnn.plot.record_gradient_norms(model, dx=True) as norms:   # and dL/dx of every layer
        model.fit(...)
    fig = tinycnn.plot.gradient_flow(norms)             # ... and a second panel: dL/dx by layer
    fig, dead = tinycnn.plot.activation_histograms(model, x_test[:256])  # dead = {relu layer: fraction}
    with tinycnn.plot.record_update_ratios(model) as ratios:
        model.fit(...)
    fig = tinycnn.plot.update_ratios(ratios)            # ||update|| / ||w|| per layer, and the 1e-3 guide

Labels may be class indices (N,) or one-hot / probability rows (N, K) wherever they are asked for.
"""
from contextlib import ExitStack, contextmanager

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
import numpy as np

from . import backend, validation


def history(history, figsize=(12, 4)):
    """Two panels, as in the tutorial: accuracy (left) and loss (right) per epoch.

    Accepts a History (what fit returns) or its .history dict.
    """
    logs = getattr(history, "history", history)
    if not isinstance(logs, dict) or "loss" not in logs:
        raise TypeError("plot.history expects the History that fit() returns (or its .history dict)")
    fig, axes = plt.subplots(1, 2, figsize=figsize)
    for ax, metric, title in ((axes[0], "accuracy", "Model Accuracy"), (axes[1], "loss", "Model Loss")):
        epochs = range(1, len(logs.get(metric, [])) + 1)
        if metric in logs:
            ax.plot(epochs, logs[metric], marker="o", label=f"Training {metric.title()}")
        if "val_" + metric in logs:
            ax.plot(epochs, logs["val_" + metric], marker="o", label=f"Validation {metric.title()}")
        ax.set_title(title)
        ax.set_xlabel("Epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))   # epochs are whole numbers
        ax.set_ylabel(metric.title())
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------
# What the network learned
# ----------------------------------------------------------------------------------------
def filters(kernel, channel=0, ncols=8, cmap="RdBu_r", title=None):
    """Every filter of a convolution as a small image, on one colour scale centred on 0.

    Args:
        kernel: a built Conv2D layer, or its kernel array (KH, KW, C, F).
        channel: which input channel to show (0 for grey images), or "mean" to average them.
        ncols: filters per row.
    Red is a positive weight, blue a negative one (the colour bar gives the values; 0 is white):
    a filter responds to inputs that look like it. Look for edges and strokes (a red band next to
    a blue one) after training; speckled noise means the filter has not learned much yet.
    """
    name = getattr(kernel, "name", None)
    if hasattr(kernel, "params"):
        if "kernel" not in kernel.params:
            raise ValueError(f"plot.filters expects a built Conv2D layer or a kernel array; {kernel} has no kernel")
        kernel = kernel.params["kernel"]
    w = np.asarray(kernel, dtype=np.float64)
    if w.ndim != 4:
        raise ValueError(f"plot.filters expects a kernel of shape (KH, KW, C, F); received shape {w.shape}")
    if channel == "mean":
        images = w.mean(axis=2)                                          # (KH, KW, F)
    elif isinstance(channel, (int, np.integer)) and 0 <= channel < w.shape[2]:
        images = w[:, :, channel, :]                                     # (KH, KW, F)
    else:
        raise ValueError(f"plot.filters: channel must be 'mean' or an integer in [0, {w.shape[2]}); "
                         f"received {channel!r}")
    F = images.shape[-1]
    ncols = min(ncols, F)
    nrows = -(-F // ncols)
    limit = float(np.abs(images).max()) or 1.0
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.1 * ncols, 1.1 * nrows + 0.5), squeeze=False)
    for f, ax in enumerate(axes.flat):
        ax.axis("off")
        if f < F:
            shown = ax.imshow(images[:, :, f], cmap=cmap, vmin=-limit, vmax=limit)
            ax.set_title(str(f), fontsize=8)
    fig.colorbar(shown, ax=axes.ravel().tolist(), shrink=0.8).set_label("weight (red +, blue -)")
    fig.suptitle(title or f"{F} filters of {name or 'the kernel'}, {w.shape[0]}x{w.shape[1]}, "
                          f"input channel {channel}")
    return fig


def one_image(model, image):
    """A single input as a batch of one, (1, H, W, C); accepts (H, W, C), (1, H, W, C) or (H, W)."""
    if not model.built:
        raise ValueError(f"{model.name} is not built yet; give its first layer input_shape=...")
    shape = tuple(model.input_shape[1:])
    x = np.asarray(image, dtype=np.float32)
    if x.size != int(np.prod(shape)):
        raise ValueError(f"expected one image of shape {shape}; received shape {x.shape}")
    return x.reshape((1,) + shape)


def layer_outputs(model, image):
    """[(layer, its output for this one image)], in inference mode: what feature_maps draws."""
    x = one_image(model, image)                                          # (1, H, W, C)
    outputs = []
    for layer in model.layers:
        x = layer.forward(x, training=False)
        outputs.append((layer, x))
    return outputs


def feature_maps(model, image, layers=None, max_maps=8, cmap="viridis"):
    """One image on its way through the model: a row per layer, showing what that layer outputs.

    Args:
        model: a built Sequential.
        image: one input (H, W, C), or a batch of one (1, H, W, C).
        layers: names of the layers to show; default: all but Dropout and Flatten, which
            change nothing at inference (Dropout) or only the shape (Flatten).
        max_maps: how many channels to show for image-shaped outputs.
    Image-shaped outputs show their first channels, each titled with its channel number, on one
    colour scale per row with its colour bar; vectors (Dense) show as one strip, and a 10-way
    softmax as bars. Look for what each channel picks out (strokes, edges of one direction);
    a channel that is one flat colour (all 0 after a ReLU) responds to nothing in this image,
    and the scale of the colour bars shows whether activations grow or fade with depth.
    """
    outputs = layer_outputs(model, image)
    if layers is None:
        outputs = [(layer, out) for layer, out in outputs if type(layer).__name__ not in ("Dropout", "Flatten")]
    else:
        names = [layer.name for layer, _ in outputs]
        unknown = [name for name in layers if name not in names]
        if unknown:
            raise ValueError(f"plot.feature_maps: no layer named {unknown[0]!r}; the model has {names}")
        outputs = [(layer, out) for layer, out in outputs if layer.name in layers]
    rows = [("input", one_image(model, image))] + [(f"{layer.name}\n{out.shape[1:]}", out) for layer, out in outputs]
    fig = plt.figure(figsize=(1.3 * max_maps + 2, 1.45 * len(rows)), layout="constrained")
    grid = fig.add_gridspec(len(rows), max_maps)
    for r, (label, out) in enumerate(rows):
        out = out[0]
        if out.ndim == 3:                                                # (H, W, C): one panel per channel
            shown = out[:, :, :max_maps]
            low, high = float(shown.min()), float(shown.max())          # one scale for the row: one colour bar
            row = []
            for c in range(shown.shape[-1]):
                ax = fig.add_subplot(grid[r, c])
                image = ax.imshow(out[:, :, c], cmap="gray_r" if r == 0 else cmap, vmin=low, vmax=high)
                ax.set_title(f"ch {c}", fontsize=7, pad=2)
                ax.set_xticks([])
                ax.set_yticks([])
                row.append(ax)
            row[0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
            fig.colorbar(image, ax=row, shrink=0.9, pad=0.01, aspect=10).ax.tick_params(labelsize=6)
        else:                                                            # (units,): a strip or bars
            ax = fig.add_subplot(grid[r, :])
            if out.size <= 10 and np.all(out >= 0) and abs(out.sum() - 1) < 1e-3:
                ax.bar(range(out.size), out)
                ax.set_xticks(range(out.size))
                ax.set_ylim(0, 1)
            else:
                image = ax.imshow(out[None, :], cmap=cmap, aspect="auto")
                ax.set_yticks([])
                ax.tick_params(axis="x", labelsize=7)
                fig.colorbar(image, ax=ax, pad=0.01, aspect=10).ax.tick_params(labelsize=6)
            ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle("What each layer makes of one image" + (f" (first {max_maps} channels)" if max_maps else ""))
    return fig


# ----------------------------------------------------------------------------------------
# Where the model is wrong
# ----------------------------------------------------------------------------------------
def as_labels(y, what):
    """Class indices (N,) from indices, one-hot rows or probabilities (N, K)."""
    y = np.asarray(y)
    if y.ndim == 2:
        return y.argmax(axis=1)
    if y.ndim == 1:
        return y.astype(np.int64)
    raise ValueError(f"{what} must be class indices (N,) or rows of scores (N, K); received shape {y.shape}")


def confusion_counts(y_true, y_pred, num_classes=None):
    """counts[i, j] = how many samples of true class i were predicted as class j."""
    t, p = as_labels(y_true, "y_true"), as_labels(y_pred, "y_pred")
    if len(t) != len(p):
        raise ValueError(f"y_true and y_pred must have the same length; received {len(t)} and {len(p)}")
    K = num_classes or int(max(t.max(), p.max())) + 1
    counts = np.zeros((K, K), dtype=np.int64)
    np.add.at(counts, (t, p), 1)
    return counts


def confusion_matrix(y_true, y_pred, class_names=None, normalize=False, cmap="Blues", figsize=(6.5, 5.5)):
    """The confusion matrix as a picture: rows are true classes, columns predicted ones.

    normalize=True divides each row by its total (the recall of every class on the diagonal).
    The diagonal is what the model gets right; every other cell is a kind of mistake.
    """
    counts = confusion_counts(y_true, y_pred, None if class_names is None else len(class_names))
    K = len(counts)
    names = [str(c) for c in (class_names if class_names is not None else range(K))]
    values = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) if normalize else counts
    fig, ax = plt.subplots(figsize=figsize)
    shown = ax.imshow(np.log1p(counts) if not normalize else values, cmap=cmap)  # log: errors stay visible
    for i in range(K):
        for j in range(K):
            text = f"{values[i, j]:.2f}" if normalize else str(values[i, j])
            bright = shown.norm(shown.get_array()[i, j]) > 0.6
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if bright else "black")
    ax.set_xticks(range(K), names)
    ax.set_yticks(range(K), names)
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    correct = np.trace(counts)
    ax.set_title(f"Confusion matrix: {correct} of {counts.sum()} right ({correct / max(counts.sum(), 1):.2%})")
    fig.tight_layout()
    return fig


def misclassified(images, y_true, probs, n=10, ncols=5):
    """The n wrong predictions the model was most sure of, most confident first.

    Args:
        images: (N, H, W) or (N, H, W, 1).
        y_true: class indices (N,) or one-hot rows (N, K).
        probs: the model's output probabilities (N, K).
    Each panel says the true class, the prediction and the probability the model gave it.
    """
    images = np.asarray(images)
    probs = np.asarray(probs)
    true, pred = as_labels(y_true, "y_true"), probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != true)
    order = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:n]
    ncols = max(1, min(ncols, len(order)))
    nrows = max(1, -(-len(order) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.9 * ncols, 2.2 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, order):
        ax.imshow(images[i].squeeze(), cmap="gray_r")
        ax.set_title(f"true {true[i]}, said {pred[i]}\np = {probs[i, pred[i]]:.3f}  (#{i})", fontsize=8)
    if len(order) == 0:
        axes[0, 0].text(0.5, 0.5, "no misclassified images", ha="center", va="center")
    fig.suptitle(f"The {len(order)} most confident mistakes (of {len(wrong)})")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------
# Gradient flow: how large each layer's gradient is, step after step
# ----------------------------------------------------------------------------------------
class GradientNorms(dict):
    """layer name -> [the L2 norm of that layer's gradients (all its weights), one per step].

    With record_gradient_norms(model, dx=True), also `.dx`: layer name -> [||dL/dx||, one per
    step], the norm of the gradient each layer's backward hands to the layer before it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.dx = {}

    @property
    def steps(self):
        return max((len(v) for v in self.values()), default=0)


class UpdateRatios(dict):
    """layer name -> [||w_after - w_before|| / ||w_before|| of that layer's trained weights, one per step]."""

    @property
    def steps(self):
        return max((len(v) for v in self.values()), default=0)


def _square_sum(a):
    """sum of squares, in float64, of an array or of a list of them (a merge's dx); None counts 0."""
    if isinstance(a, (list, tuple)):
        return sum(_square_sum(x) for x in a)
    return 0.0 if a is None else float(np.sum(np.square(a, dtype=np.float64)))


def gradient_norm(layer):
    """sqrt(sum of squares) over every gradient of a layer: one number per layer."""
    return float(np.sqrt(sum(_square_sum(g) for g in layer.grads.values())))


def _require_built(model, what):
    if not model.built:
        raise ValueError(f"plot.{what}: {model.name} is not built yet; give the first layer "
                         f"input_shape=... (or call the model once) first")


@contextmanager
def _wrapped(objects, attribute, make):
    """obj.<attribute> = make(obj, original) on each object for the block, then as before.
    The wrapper is an instance attribute, so the class (and every other object) is untouched."""
    saved = [(obj, obj.__dict__.get(attribute)) for obj in objects]
    for obj in objects:
        setattr(obj, attribute, make(obj, getattr(obj, attribute)))
    try:
        yield
    finally:
        for obj, own in saved:
            if own is None:
                delattr(obj, attribute)
            else:
                setattr(obj, attribute, own)


@contextmanager
def record_gradient_norms(model, dx=False):
    """Record every layer's gradient norm after each backward pass, e.g. during fit().

        with plot.record_gradient_norms(model, dx=True) as norms:
            model.fit(x, y, epochs=5, batch_size=128)
        plot.gradient_flow(norms, steps_per_epoch=469)

    norms[name] is ||dL/dW|| (all of that layer's weights) per step. With dx=True, also
    norms.dx[name]: ||dL/dx|| per step, the gradient that layer's backward returns for its
    input, for every layer (the first one's is dL/d(the images)); a layer that got no
    gradient in a step (an unused branch) gets NaN there.

    How: backward overwrites layer.grads on every step, so the norm must be taken right after
    it. Inside the block the model calls a hook of ours after each backward; leaving the block
    removes it. For dx, each layer's backward is wrapped, for the block only, by one that notes
    the norm of what it returns. The Numba backend fuses neighbouring layers into one kernel
    and skips the first layer's dx, so with dx=True the block runs on the NumPy reference
    backend (the same numbers, about 5x slower); with dx=False it runs on the active backend.
    (model.trace inside a dx=True block would add its dx to the next step's: call it outside.)
    """
    _require_built(model, "record_gradient_norms")
    norms = GradientNorms({layer.name: [] for layer in model.layers if layer.params})
    sums = {}                                            # layer name -> sum of dx squares this step
    if dx:
        norms.dx = {layer.name: [] for layer in model.layers}

    def record(model):
        for layer in model.layers:
            if layer.params and layer.name in norms:
                norms[layer.name].append(gradient_norm(layer))
        for name, values in norms.dx.items():
            values.append(float(np.sqrt(sums[name])) if name in sums else float("nan"))
        sums.clear()

    def noting(layer, backward):
        def noted(dout):
            d = backward(dout)                                      # dL/d(input), as the layer computes it
            sums[layer.name] = sums.get(layer.name, 0.0) + _square_sum(d)   # a shared layer: its calls add up
            return d
        return noted

    with ExitStack() as stack:
        if dx:
            if backend.get_backend() != "numpy":
                stack.enter_context(backend.using("numpy"))
            stack.enter_context(_wrapped(model.layers, "backward", noting))
        model._gradient_hooks.append(record)
        stack.callback(model._gradient_hooks.remove, record)
        yield norms


def _series(ax, series, steps_per_epoch, smooth):
    """One line per {name: [value per step]}, smoothed by a moving average of `smooth` steps."""
    for name, values in series.items():
        values = np.asarray(values, dtype=np.float64)
        if len(values) == 0:
            continue
        if smooth > 1 and len(values) >= smooth:
            values = np.convolve(values, np.ones(smooth) / smooth, mode="valid")
        steps = np.arange(len(values)) + (smooth if smooth > 1 else 1)   # the step each point ends at
        ax.plot(steps / steps_per_epoch if steps_per_epoch else steps, values, label=name, linewidth=1)
    ax.set_xlabel("Epoch" if steps_per_epoch else "Training step")
    ax.legend(fontsize=8)
    ax.grid(True, which="major", alpha=0.3)


def dx_profile(dx, smooth=1):
    """(layer names, ||dL/dx|| averaged over the first `smooth` steps, and over the last ones)."""
    names = [name for name, values in dx.items() if len(values)]
    first = [float(np.nanmean(dx[name][:smooth])) for name in names]
    last = [float(np.nanmean(dx[name][-smooth:])) for name in names]
    return names, np.array(first), np.array(last)


def gradient_flow(norms, steps_per_epoch=None, smooth=1, log_scale=True, figsize=None):
    """Each layer's weight-gradient norm over training; with dL/dx recorded, each layer's dL/dx.

    Args:
        norms: {layer name: [norm per step]}, as record_gradient_norms gives; if it has .dx
            (record_gradient_norms(model, dx=True)), a second panel shows ||dL/dx|| per layer.
        steps_per_epoch: if given, the x axis counts epochs instead of steps.
        smooth: average over this many steps (a moving window) to calm the noise.
        log_scale: a log y axis, so that layers of very different sizes fit in one plot.
    Left: lines that sink toward 0 mean layers that stop learning; lines that shoot up mean an
    unstable step size. Right: the gradient on its way back, from the loss (right) to the
    input (left), at the start and at the end of the recording. A slope falling toward the
    input, by orders of magnitude, is the vanishing gradient: the early layers hear almost
    nothing of the loss. Where it rises, the gradients explode.
    """
    if not isinstance(norms, dict) or not norms:
        raise ValueError("plot.gradient_flow expects {layer name: [norm per step]}, e.g. from record_gradient_norms")
    smooth = max(1, int(smooth))
    dx = {k: v for k, v in getattr(norms, "dx", {}).items() if len(v)}
    fig, axes = plt.subplots(1, 2 if dx else 1, figsize=figsize or ((14, 4.5) if dx else (9, 4)), squeeze=False)
    ax = axes[0, 0]
    _series(ax, norms, steps_per_epoch, smooth)
    if log_scale:
        ax.set_yscale("log")
    ax.set_ylabel("Gradient norm (L2, all weights of the layer)")
    ax.set_title("Gradient flow: per-layer gradient norms" + (f", {smooth}-step average" if smooth > 1 else ""))
    if dx:
        names, first, last = dx_profile(dx, smooth)
        steps = max(len(v) for v in dx.values())
        ax = axes[0, 1]
        ax.plot(range(len(names)), first, marker="o", label="step 1" if smooth == 1 else f"steps 1-{smooth}")
        ax.plot(range(len(names)), last, marker="o", label=f"step {steps}" if smooth == 1 else
                f"steps {max(1, steps - smooth + 1)}-{steps}")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
        if log_scale:
            ax.set_yscale("log")
        ax.set_xlabel("Layer (input side on the left)")
        ax.set_ylabel("||dL/dx||, the gradient a layer passes back")
        ax.set_title("dL/dx per layer: does the gradient reach the first layers?")
        ax.legend(fontsize=8)
        ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------
# Update-to-weight ratios: how far each step moves each layer's weights
# ----------------------------------------------------------------------------------------
@contextmanager
def record_update_ratios(model):
    """Record, at every optimizer step, ||w_after - w_before|| / ||w_before|| per layer.

        with plot.record_update_ratios(model) as ratios:
            model.fit(x, y, epochs=5, batch_size=128)
        plot.update_ratios(ratios, steps_per_epoch=469)

    The update is what the optimizer really did (for plain SGD, lr * dL/dW; for Adam or
    momentum, their step), over all the layer's trained weights together. How: for the block,
    the optimizer's apply() is wrapped by one that copies the weights before the step and
    compares after; a step the optimizer refuses (NaN) is not recorded. Works on every backend.
    """
    _require_built(model, "record_update_ratios")
    if getattr(model, "optimizer", None) is None:
        raise ValueError(f"plot.record_update_ratios: {model.name} is not compiled; call "
                         f"model.compile(optimizer=..., loss=...) first")
    ratios = UpdateRatios({layer.name: [] for layer in model.layers if layer.trained_keys()})

    def measuring(optimizer, apply):
        def measured(slots):
            before = [(key, np.array(p, dtype=np.float64)) for key, p, _ in slots]   # copies: apply writes in place
            done = apply(slots)
            if done:
                moved, size = {}, {}
                for (key, old), (_, p, _) in zip(before, slots):
                    moved[key[0]] = moved.get(key[0], 0.0) + _square_sum(np.asarray(p, np.float64) - old)
                    size[key[0]] = size.get(key[0], 0.0) + _square_sum(old)
                for name, values in ratios.items():
                    values.append(float(np.sqrt(moved[name] / size[name])) if size.get(name) else float("nan"))
            return done
        return measured

    with _wrapped([model.optimizer], "apply", measuring):
        yield ratios


def update_ratios(ratios, steps_per_epoch=None, smooth=1, guide=1e-3, figsize=(9, 4)):
    """Each layer's update-to-weight ratio ||lr * update|| / ||w|| over training, on a log scale.

    Args:
        ratios: {layer name: [ratio per step]}, as record_update_ratios gives.
        steps_per_epoch: if given, the x axis counts epochs instead of steps.
        smooth: average over this many steps.
        guide: where to draw the dashed guide line (None for none).
    A healthy step changes a weight by about a thousandth of its size: lines near the 1e-3
    guide. Far below it (1e-5), that layer learns slowly: the learning rate may be too small,
    or its gradient vanishes. Far above (1e-1 and up), each step rewrites the weights and
    training is unstable: lower the learning rate.
    """
    if not isinstance(ratios, dict) or not ratios:
        raise ValueError("plot.update_ratios expects {layer name: [ratio per step]}, e.g. from record_update_ratios")
    smooth = max(1, int(smooth))
    fig, ax = plt.subplots(figsize=figsize)
    if guide:
        ax.axhline(guide, color="black", linestyle="--", linewidth=1, label=f"{guide:g} (rule of thumb)")
    _series(ax, ratios, steps_per_epoch, smooth)
    ax.set_yscale("log")
    ax.set_ylabel("||update|| / ||weights||")
    ax.set_title("Update-to-weight ratio per layer" + (f", {smooth}-step average" if smooth > 1 else ""))
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------
# Activations: what each layer outputs over a batch, and the ReLUs that never fire
# ----------------------------------------------------------------------------------------
def activations(model, x, training=False):
    """[(label, layer, output)] of every layer for the batch x, layer by layer on the reference
    path (each layer's own forward; a graph in topological order). With training=True, dropout
    drops and BatchNorm uses the batch's statistics; the moving statistics are put back after."""
    x = validation.inputs(model, x, "plot.activations")
    saved = [(layer, key, p, np.array(p)) for layer in model.layers for key, p in layer.params.items()]
    records = []
    try:
        graph = getattr(model, "_graph", None)
        if graph is None:
            for layer in model.layers:
                x = layer.forward(x, training=training)
                records.append((layer.name, layer, x))
        else:
            values = {id(t): a for t, a in zip(graph.inputs, x if isinstance(x, (list, tuple)) else [x])}
            calls = {}
            for node in graph.nodes:
                args = [values[id(t)] for t in node.inputs]
                out = node.layer.forward(args if node.layer.multi_input else args[0], training=training)
                values[id(node.output)] = out
                calls[node.layer.name] = calls.get(node.layer.name, 0) + 1
                label = node.layer.name + (f" (call {calls[node.layer.name]})" if node.shared else "")
                records.append((label, node.layer, out))
    finally:
        for layer, key, p, copy in saved:              # moving statistics as they were
            layer.params[key] = p
            p[...] = copy
    return records


def is_relu(layer):
    """Does the layer end in a ReLU (Conv2D/Dense(activation='relu'), ReLU(), Activation('relu'))?"""
    from .layers.activations import Relu
    return isinstance(getattr(layer, "activation", None), Relu)


def dead_fraction(out):
    """Fraction of units (every position of one sample's output) that are not positive for any sample."""
    out = np.asarray(out)
    return float(np.mean(~np.any(out > 0, axis=0)))


def dead_relu_fractions(model, x, training=False):
    """{layer label: fraction of its ReLU units that output 0 for every sample of x}."""
    return {label: dead_fraction(out) for label, layer, out in activations(model, x, training) if is_relu(layer)}


def activation_histograms(model, x, training=False, layers=None, bins=50, ncols=4):
    """A histogram per layer of its outputs over the batch x; ReLU layers say how many units are dead.

    Args:
        model: a built Sequential or functional model.
        x: a batch of inputs (a few hundred samples give a fair picture).
        training: run as in training (dropout on, BatchNorm on the batch's statistics) or
            as at inference (the default).
        layers: names of the layers to show; default: all but Dropout and Flatten.
    Returns (fig, dead): dead maps each ReLU layer to the fraction of its units (one per
    output position) that are 0 for every sample of the batch. Those units pass back no
    gradient and so stop learning: a few percent is normal, half the layer is not (the
    learning rate was too high, or the initialisation or bias pushed them negative).
    Look also at the spread (std in each title): if it shrinks layer after layer the signal
    fades with depth (too small an initialisation); if it grows, it explodes.
    """
    records = activations(model, x, training)
    if layers is None:
        records = [r for r in records if type(r[1]).__name__ not in ("Dropout", "Flatten")]
    else:
        labels = [label for label, _, _ in records]
        unknown = [name for name in layers if name not in labels]
        if unknown:
            raise ValueError(f"plot.activation_histograms: no layer named {unknown[0]!r}; the model has {labels}")
        records = [r for r in records if r[0] in layers]
    dead = {label: dead_fraction(out) for label, layer, out in records if is_relu(layer)}
    ncols = max(1, min(ncols, len(records)))
    nrows = max(1, -(-len(records) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.5 * nrows), squeeze=False)
    for ax in axes.flat[len(records):]:
        ax.axis("off")
    for ax, (label, layer, out) in zip(axes.flat, records):
        values = np.asarray(out, dtype=np.float64).ravel()
        ax.hist(values, bins=bins, color="C3" if dead.get(label, 0) > 0.5 else "C0")
        title = f"{label} {tuple(np.shape(out)[1:])}\nmean {values.mean():.2g}, std {values.std():.2g}"
        if label in dead:
            title += f", dead {100 * dead[label]:.1f}%"
        ax.set_title(title, fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"Activations over a batch of {len(records[0][2]) if records else 0}, "
                 f"{'training' if training else 'inference'} mode")
    fig.tight_layout()
    return fig, dead


__all__ = ["activation_histograms", "activations", "confusion_counts", "confusion_matrix", "dead_relu_fractions",
           "feature_maps", "filters", "gradient_flow", "gradient_norm", "history", "layer_outputs",
           "misclassified", "record_gradient_norms", "record_update_ratios", "update_ratios"]
