"""Plots for people who would rather look than read. Every function returns its Figure.

    fig = tinycnn.plot.history(history)                 # accuracy and loss per epoch, train vs validation
    fig = tinycnn.plot.filters(model.layers[0])         # a Conv2D's kernels as small images
    fig = tinycnn.plot.feature_maps(model, x_test[0])   # one image, after each layer
    fig = tinycnn.plot.confusion_matrix(y_true, y_pred) # counts of (true class, predicted class)
    fig = tinycnn.plot.misclassified(x, y_true, probs)  # the most confidently wrong predictions
    with tinycnn.plot.record_gradient_norms(model) as norms:
        model.fit(...)
    fig = tinycnn.plot.gradient_flow(norms)             # each layer's gradient norm, step by step

Labels may be class indices (N,) or one-hot / probability rows (N, K) wherever they are asked for.
"""
from contextlib import contextmanager

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
import numpy as np


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
    Red is a positive weight, blue a negative one: a filter responds to inputs that look like it.
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
    fig.colorbar(shown, ax=axes.ravel().tolist(), shrink=0.8)
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
    Image-shaped outputs show their first channels; vectors (Dense) show as one strip, and
    a 10-way softmax as bars.
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
    fig = plt.figure(figsize=(1.3 * max_maps + 1, 1.35 * len(rows)), layout="constrained")
    grid = fig.add_gridspec(len(rows), max_maps)
    for r, (label, out) in enumerate(rows):
        out = out[0]
        if out.ndim == 3:                                                # (H, W, C): one panel per channel
            for c in range(min(max_maps, out.shape[-1])):
                ax = fig.add_subplot(grid[r, c])
                ax.imshow(out[:, :, c], cmap="gray_r" if r == 0 else cmap)
                ax.set_xticks([])
                ax.set_yticks([])
                if c == 0:
                    ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        else:                                                            # (units,): a strip or bars
            ax = fig.add_subplot(grid[r, :])
            if out.size <= 10 and np.all(out >= 0) and abs(out.sum() - 1) < 1e-3:
                ax.bar(range(out.size), out)
                ax.set_xticks(range(out.size))
                ax.set_ylim(0, 1)
            else:
                ax.imshow(out[None, :], cmap=cmap, aspect="auto")
                ax.set_yticks([])
                ax.tick_params(axis="x", labelsize=7)
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
    """layer name -> [the L2 norm of that layer's gradients (all its weights), one per step]."""

    @property
    def steps(self):
        return max((len(v) for v in self.values()), default=0)


def gradient_norm(layer):
    """sqrt(sum of squares) over every gradient of a layer: one number per layer."""
    return float(np.sqrt(sum(np.sum(np.square(g, dtype=np.float64)) for g in layer.grads.values())))


@contextmanager
def record_gradient_norms(model):
    """Record every layer's gradient norm after each backward pass, e.g. during fit().

        with plot.record_gradient_norms(model) as norms:
            model.fit(x, y, epochs=5, batch_size=128)
        plot.gradient_flow(norms, steps_per_epoch=469)

    How: backward overwrites layer.grads on every step, so the norm must be taken right after
    it. Inside the block the model calls a hook of ours after each backward; leaving the block
    removes it. The model and its layers are not changed otherwise.
    """
    if not model.built:
        raise ValueError(f"plot.record_gradient_norms: {model.name} is not built yet; give the first "
                         f"layer input_shape=... (or call the model once) first")
    norms = GradientNorms({layer.name: [] for layer in model.layers if layer.params})

    def record(model):
        for layer in model.layers:
            if layer.params:
                norms[layer.name].append(gradient_norm(layer))
    model._gradient_hooks.append(record)
    try:
        yield norms
    finally:
        model._gradient_hooks.remove(record)


def gradient_flow(norms, steps_per_epoch=None, smooth=1, log_scale=True, figsize=(9, 4)):
    """Each layer's gradient norm over training, one line per layer.

    Args:
        norms: {layer name: [norm per step]}, as record_gradient_norms gives.
        steps_per_epoch: if given, the x axis counts epochs instead of steps.
        smooth: average over this many steps (a moving window) to calm the noise.
        log_scale: a log y axis, so that layers of very different sizes fit in one plot.
    Lines that sink toward 0 mean layers that stop learning (vanishing gradients); lines
    that shoot up mean an unstable step size.
    """
    if not isinstance(norms, dict) or not norms:
        raise ValueError("plot.gradient_flow expects {layer name: [norm per step]}, e.g. from record_gradient_norms")
    smooth = max(1, int(smooth))
    fig, ax = plt.subplots(figsize=figsize)
    for name, values in norms.items():
        values = np.asarray(values, dtype=np.float64)
        if len(values) == 0:
            continue
        if smooth > 1 and len(values) >= smooth:
            values = np.convolve(values, np.ones(smooth) / smooth, mode="valid")
        steps = np.arange(len(values)) + (smooth if smooth > 1 else 1)   # the step each point ends at
        x = steps / steps_per_epoch if steps_per_epoch else steps
        ax.plot(x, values, label=name, linewidth=1)
    if log_scale:
        ax.set_yscale("log")
    ax.set_xlabel("Epoch" if steps_per_epoch else "Training step")
    ax.set_ylabel("Gradient norm (L2, all weights of the layer)")
    ax.set_title("Gradient flow: per-layer gradient norms" + (f", {smooth}-step average" if smooth > 1 else ""))
    ax.legend(fontsize=8)
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    return fig


__all__ = ["confusion_counts", "confusion_matrix", "feature_maps", "filters", "gradient_flow",
           "gradient_norm", "history", "layer_outputs", "misclassified", "record_gradient_norms"]
