"""Several inputs or outputs: arrays that travel together, and one loss per output.

A functional model may take several inputs and give several outputs (tinycnn/functional.py).
Then x, y and the outputs are Arrays: a tuple of arrays with one sample axis, that the
training loops cut into batches as they cut one array (take, rows). The loss is the weighted
sum of one loss per output, and so is its gradient, output by output:

    L = sum_k  w_k * L_k(y_k, out_k)        dL/d out_k = w_k * dL_k/d out_k
"""
import numpy as np

from .layers.activations import LogitsGradient


class Arrays(tuple):
    """Several arrays of the same number of samples (one per input, or per output)."""


def rows(a):
    """The number of samples in an array or in Arrays."""
    return len(a[0]) if isinstance(a, Arrays) else len(a)


def take(a, idx):
    """The same samples of every array: a[idx] (None stays None)."""
    if a is None:
        return None
    return Arrays(part[idx] for part in a) if isinstance(a, Arrays) else a[idx]


def concatenate(batches):
    """The batches' outputs joined along the samples (for predict)."""
    if isinstance(batches[0], Arrays):
        return [np.concatenate(parts).astype(np.float32, copy=False) for parts in zip(*batches)]
    return np.concatenate(batches).astype(np.float32, copy=False)


def structure(model, value, names, what, kind):
    """A list, tuple or dict (by name) of one entry per name -> a list in the order of `names`."""
    if isinstance(value, dict):
        unknown = [k for k in value if k not in names]
        if unknown or len(value) != len(names):
            raise ValueError(f"{model.name}.{what}: {kind} must have one entry per {names}; received keys "
                             f"{list(value)}")
        return [value[n] for n in names]
    if isinstance(value, (list, tuple)) and len(value) == len(names):
        return list(value)
    raise ValueError(f"{model.name}.{what}: the model has {len(names)} {kind}s ({', '.join(names)}): give a list "
                     f"of {len(names)} or a dict by name; received {type(value).__name__}"
                     + (f" of {len(value)}" if isinstance(value, (list, tuple)) else ""))


class MultiLoss:
    """One loss per output, weighted and summed: what compile(loss=[...] or {...}, loss_weights=...) makes."""

    fuses_with_softmax = False                 # decided output by output, in gradient()

    def __init__(self, losses, weights, names):
        self.losses, self.weights, self.names = losses, weights, names
        self.name = "loss"

    def per_output(self, ys, outs, sample_weight=None):
        return [loss(y, out, sample_weight=sample_weight) for loss, y, out in zip(self.losses, ys, outs)]

    def __call__(self, ys, outs, sample_weight=None):
        return float(sum(w * l for w, l in zip(self.weights, self.per_output(ys, outs, sample_weight))))

    def gradient(self, ys, outs, sample_weight=None, softmax_last=None):
        """[w_k * dL_k/d out_k]; for an output ending in a softmax, with cross-entropy, dL_k/dz_k (exact)."""
        grads = []
        for k, (loss, w, y, out) in enumerate(zip(self.losses, self.weights, ys, outs)):
            if softmax_last and softmax_last[k] and loss.fuses_with_softmax:
                grads.append(LogitsGradient(w * loss.gradient_logits(y, out, sample_weight=sample_weight)))
            else:
                grads.append(w * loss.gradient(y, out, sample_weight=sample_weight))
        return grads

    def check_targets(self, ys, shapes):
        return Arrays(loss.check_targets(y, shape) for loss, y, shape in zip(self.losses, ys, shapes))


class MultiMetrics:
    """The logs of a model of several outputs, as Keras 3 names them: '<output>_loss' for each output's
    loss, '<output>_<metric>' for each output's metrics."""

    def __init__(self, loss, per_output):
        from .metrics import CompileMetrics, Mean
        self.loss = loss
        self.loss_means = [Mean(name=f"{n}_loss") for n in loss.names]
        self.per_output = [CompileMetrics(*args) for args in per_output]     # (metrics, weighted) per output
        self.names = [m.name for m in self.loss_means] + [
            f"{n}_{name}" for n, cm in zip(loss.names, self.per_output) for name in cm.names]

    @property
    def metrics(self):
        return self.loss_means + [m for cm in self.per_output for m in cm.metrics]

    def update_state(self, ys, outs, sample_weight=None):
        n = rows(outs)
        for mean, value in zip(self.loss_means, self.loss.per_output(ys, outs, sample_weight)):
            mean.update_state(np.full(n, value))                # weighted by the batch's size, as "loss"
        for cm, y, out in zip(self.per_output, ys, outs):
            cm.update_state(y, out, sample_weight)

    def reset_state(self):
        for m in self.loss_means:
            m.reset_state()
        for cm in self.per_output:
            cm.reset_state()

    def result(self):
        values = [m.result() for m in self.loss_means] + [v for cm in self.per_output for v in cm.result().values()]
        return dict(zip(self.names, values))
