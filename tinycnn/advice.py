"""Warnings for mistakes that train without an error, each naming its fix, each at most once per fit.

    NotProbabilitiesWarning   cross-entropy with from_logits=False on outputs that are not
                              probabilities (no softmax/sigmoid on the last layer)
    InputScaleWarning         a conv net fed raw pixel values (0..255 not divided by 255)
    DivergenceWarning         a loss that runs away without becoming NaN (learning rate too high)

All are subclasses of TrainingWarning (a UserWarning), so one line silences them all, or one kind:
    warnings.filterwarnings("ignore", category=tinycnn.TrainingWarning)

The rules, checked by fit() (not by train_on_batch or evaluate, which have no "fit" to be once in):
    probabilities  on the first batch, categorical cross-entropy: a negative output or a row whose
                   sum is not 1 (+-1e-3); binary cross-entropy: an output outside [0, 1].
    input scale    on the first batch, for each input read by a conv layer: RMS(x) > 10, or whole
                   numbers with max |x| > 10 (integer pixels, e.g. uint8, which fit makes float32).
                   Data scaled to [0, 1], [-1, 1] or standardized has an RMS near 1 or below.
    divergence     the loss of each of 10 consecutive steps is above 3 * R, R = the first batch's
                   loss (before any update), or the chance level if higher: log K for K-class
                   cross-entropy, log 2 for binary. Noisy but sound training does not stay there 10 steps.
                   Not checked when the outputs are not probabilities (that warning comes instead).
"""
import sys
import warnings

import numpy as np

from . import losses
from .layers import Conv1D, Conv2D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D
from .outputs import Arrays

CONVS = (Conv1D, Conv2D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D)
FAR, PATIENCE = 3.0, 10      # the divergence rule: PATIENCE steps in a row above FAR * reference


class TrainingWarning(UserWarning):
    """A mistake that trains without an error (tinycnn/advice.py); the base of the kinds below."""


class NotProbabilitiesWarning(TrainingWarning):
    """Cross-entropy with from_logits=False on outputs that are not probabilities."""


class InputScaleWarning(TrainingWarning):
    """Raw pixel values (0..255) fed to a conv net."""


class DivergenceWarning(TrainingWarning):
    """A loss far above its start for many steps, without NaN: the learning rate is too high."""


def warn(message, category):
    """warnings.warn at the user's line (the first frame outside tinycnn). A fresh registry each
    time: Python would otherwise show a repeated message once per line, not once per fit."""
    frame = sys._getframe(1)
    while frame.f_back is not None and frame.f_globals.get("__name__", "").split(".")[0] == "tinycnn":
        frame = frame.f_back
    warnings.warn_explicit(message, category, frame.f_code.co_filename, frame.f_lineno,
                           module=frame.f_globals.get("__name__"), registry={})


def parts(a):
    return list(a) if isinstance(a, Arrays) else [a]


class Advice:
    """One fit's checks: step(x, out, loss) after each training step."""

    def __init__(self, model):
        self.model, self.steps, self.reference, self.above = model, 0, None, 0
        self.losses = getattr(model.loss, "losses", [model.loss])        # one per output
        self.names = getattr(model.loss, "names", [None])

    def step(self, x, out, loss):
        if self.steps == 0:
            self.check_inputs(parts(x))
            # a loss on outputs that are not probabilities says nothing about the learning rate
            self.reference = np.inf if self.check_outputs(parts(out)) else max(loss, self.chance(parts(out)))
            if not self.reference > 0:              # a loss of 0 (or below) at the start: no ratio to judge by
                self.reference = np.inf
        self.steps += 1
        self.above = self.above + 1 if loss > FAR * self.reference else 0
        if self.above == PATIENCE:                  # == : once per fit
            warn(f"{self.model.name}.fit: the loss has stayed above {FAR:g} x {self.reference:.4g} (its first "
                 f"value, or chance level if higher) for {PATIENCE} steps in a row (now {loss:.4g}) without "
                 f"becoming NaN: training is diverging. Lower the learning rate (now "
                 f"{self.model.optimizer.learning_rate:g}).", DivergenceWarning)

    def chance(self, outs):
        """The loss of a uniform guess, for a single cross-entropy output; 0 otherwise."""
        if len(outs) > 1:
            return 0.0
        if isinstance(self.losses[0], losses.CategoricalCrossentropy):
            return float(np.log(outs[0].shape[self.losses[0].axis]))
        return float(np.log(2)) if isinstance(self.losses[0], losses.BinaryCrossentropy) else 0.0

    def check_outputs(self, outs):
        """Warns if some output is not probabilities for its cross-entropy; returns whether it did."""
        wrong = False
        for loss, name, p in zip(self.losses, self.names, outs):
            if getattr(loss, "from_logits", True):
                continue
            where = f"{self.model.name}.fit" + (f" (output {name!r})" if name else "")
            if isinstance(loss, losses.CategoricalCrossentropy):
                sums = p.sum(axis=loss.axis)
                if p.min() < 0 or not np.allclose(sums, 1, atol=1e-3):
                    wrong = True
                    warn(f"{where}: the loss is {loss.name} with from_logits=False, but the outputs are not "
                         f"probabilities (row sums {sums.min():.3g} to {sums.max():.3g}, smallest output "
                         f"{p.min():.3g}); each row is rescaled to sum to 1 and clipped, and training stalls. "
                         f"Add activation='softmax' to the last layer, or use from_logits=True.",
                         NotProbabilitiesWarning)
            elif isinstance(loss, losses.BinaryCrossentropy) and (p.min() < 0 or p.max() > 1):
                wrong = True
                warn(f"{where}: the loss is {loss.name} with from_logits=False, but the outputs are not "
                     f"probabilities (from {p.min():.3g} to {p.max():.3g}, clipped to [0, 1]). Add "
                     f"activation='sigmoid' to the last layer, or use from_logits=True.", NotProbabilitiesWarning)
        return wrong

    def check_inputs(self, xs):
        graph = getattr(self.model, "_graph", None)
        for i, x in enumerate(xs):
            if graph is None:
                readers = self.model.layers[:1]
            else:
                readers = [n.layer for n in graph.nodes if any(t is graph.inputs[i] for t in n.inputs)]
            conv = next((layer for layer in readers if isinstance(layer, CONVS)), None)
            if conv is None:
                continue
            largest, rms = float(np.abs(x).max()), float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
            if rms > 10 or (largest > 10 and np.array_equal(x, np.round(x))):
                name = f" {self.model._input_names[i]!r}" if graph is not None and len(xs) > 1 else ""
                warn(f"{self.model.name}.fit: the input{name} to {conv.name} ranges up to {largest:.4g} (RMS "
                     f"{rms:.3g}), far outside [0, 1] or [-1, 1]: raw pixel values? Did you divide by 255? "
                     f"(x = x.astype('float32') / 255, or a Rescaling(1 / 255) layer first.)", InputScaleWarning)
