"""Learning-rate schedules: the learning rate as a function of the optimizer's step, as in Keras.

Give one to an optimizer as its learning_rate, e.g. SGD(learning_rate=ExponentialDecay(0.1, 1000, 0.96)).
At each step the optimizer uses lr = schedule(step), step = optimizer.iterations: 0 for the first
update, counted per batch (not per epoch). The formulas, t = step:

    ExponentialDecay        lr0 * rate^(t / steps)                 (staircase: floor(t / steps))
    InverseTimeDecay        lr0 / (1 + rate * t / steps)           (staircase: floor(t / steps))
    PiecewiseConstantDecay  values[0] while t <= boundaries[0], values[i] while
                            boundaries[i-1] < t <= boundaries[i], values[-1] after the last
    CosineDecay             lr0 * ((1 - alpha) * (1 + cos(pi * min(t, steps) / steps)) / 2 + alpha);
                            with warmup_target: first a straight line from lr0 to warmup_target over
                            warmup_steps, then the cosine from warmup_target over the next decay_steps
"""
import math

import numpy as np

from .utils import Configurable


def _number(value, what, positive=False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value) or (positive and not value > 0):
        kind = "a positive number" if positive else "a finite number"
        raise ValueError(f"{what} must be {kind}; received {value!r}")
    return value


def _step(step, kind):
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, float, np.integer, np.floating)) \
            or not step >= 0:
        raise ValueError(f"{kind}: the step must be a non-negative number (the optimizer's iterations); "
                         f"received {step!r}")
    return float(step)


class LearningRateSchedule(Configurable):
    """Base class: a subclass defines __call__(step) -> learning rate, and get_config()."""

    def __call__(self, step):
        raise NotImplementedError(f"{type(self).__name__} must define __call__(step)")


class ExponentialDecay(LearningRateSchedule):
    """lr0 * decay_rate^(step / decay_steps); with staircase=True the exponent is floored."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name="ExponentialDecay"):
        kind = type(self).__name__
        self.initial_learning_rate = _number(initial_learning_rate, f"{kind}: initial_learning_rate")
        self.decay_steps = _number(decay_steps, f"{kind}: decay_steps", positive=True)
        self.decay_rate = _number(decay_rate, f"{kind}: decay_rate")
        self.staircase, self.name = bool(staircase), name

    def exponent(self, step):
        p = _step(step, type(self).__name__) / self.decay_steps
        return math.floor(p) if self.staircase else p

    def __call__(self, step):
        return float(self.initial_learning_rate * self.decay_rate ** self.exponent(step))

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}


class InverseTimeDecay(ExponentialDecay):
    """lr0 / (1 + decay_rate * step / decay_steps); with staircase=True, step / decay_steps is floored."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name="InverseTimeDecay"):
        super().__init__(initial_learning_rate, decay_steps, decay_rate, staircase, name)

    def __call__(self, step):
        return float(self.initial_learning_rate / (1 + self.decay_rate * self.exponent(step)))


class PiecewiseConstantDecay(LearningRateSchedule):
    """values[i] on the i-th interval of steps; each boundary belongs to the interval it ends."""

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        kind = type(self).__name__
        if not isinstance(boundaries, (list, tuple)) or not isinstance(values, (list, tuple)):
            raise TypeError(f"{kind}: boundaries and values must be lists; received "
                            f"boundaries={boundaries!r}, values={values!r}")
        if len(values) != len(boundaries) + 1 or not boundaries:
            raise ValueError(f"{kind}: expected one more value than boundaries (and at least one boundary); "
                             f"received {len(boundaries)} boundaries and {len(values)} values")
        for b in boundaries:
            _number(b, f"{kind}: each boundary")
        for v in values:
            _number(v, f"{kind}: each value")
        if any(a >= b for a, b in zip(boundaries, boundaries[1:])):
            raise ValueError(f"{kind}: boundaries must be increasing; received {list(boundaries)}")
        self.boundaries, self.values, self.name = list(boundaries), list(values), name

    def __call__(self, step):
        step = _step(step, type(self).__name__)
        passed = sum(step > b for b in self.boundaries)       # boundaries strictly behind the step
        return float(self.values[passed])

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


class CosineDecay(LearningRateSchedule):
    """Half a cosine from the initial rate (or warmup_target) down to alpha times it, over decay_steps.

    With warmup_target, the rate first rises in a straight line from initial_learning_rate to
    warmup_target during warmup_steps. After the decay it stays at its final value.
    """

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay",
                 warmup_target=None, warmup_steps=0):
        kind = type(self).__name__
        self.initial_learning_rate = _number(initial_learning_rate, f"{kind}: initial_learning_rate")
        self.decay_steps = _number(decay_steps, f"{kind}: decay_steps", positive=True)
        self.alpha = _number(alpha, f"{kind}: alpha")
        self.warmup_target = None if warmup_target is None else _number(warmup_target, f"{kind}: warmup_target")
        self.warmup_steps = _number(warmup_steps, f"{kind}: warmup_steps")
        if warmup_steps < 0:
            raise ValueError(f"{kind}: warmup_steps must be >= 0; received {warmup_steps!r}")
        self.name = name

    def __call__(self, step):
        step = _step(step, type(self).__name__)
        start = self.initial_learning_rate
        if self.warmup_target is not None:          # the warm-up line, then the cosine from its target
            step = min(step, self.decay_steps + self.warmup_steps)
            if step < self.warmup_steps:
                return float(start + (self.warmup_target - start) * step / self.warmup_steps)
            start, step = self.warmup_target, step - self.warmup_steps
        fraction = min(step, self.decay_steps) / self.decay_steps
        cosine = 0.5 * (1 + math.cos(math.pi * fraction))
        return float(start * ((1 - self.alpha) * cosine + self.alpha))

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "alpha": self.alpha, "name": self.name, "warmup_target": self.warmup_target,
                "warmup_steps": self.warmup_steps}


def get(identifier):
    """A schedule from Keras's config dict {'class_name': 'ExponentialDecay', 'config': {...}}; objects pass."""
    if isinstance(identifier, LearningRateSchedule):
        return identifier
    known = {cls.__name__: cls for cls in (ExponentialDecay, InverseTimeDecay, PiecewiseConstantDecay, CosineDecay)}
    if isinstance(identifier, dict) and identifier.get("class_name") in known:
        return known[identifier["class_name"]].from_config(identifier.get("config") or {})
    raise ValueError(f"unknown learning-rate schedule {identifier!r}; expected one of {', '.join(known)}")
