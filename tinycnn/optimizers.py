"""Optimizers: turn gradients into weight updates, with Keras's names, defaults and rules.

`apply(slots)` takes a list of (key, param, grad) and updates every param in place, all or
nothing: it first checks that every new weight would be finite, and only then writes. A key
is (layer name, weight name), e.g. ("conv2d", "kernel"); per-weight state (momentum, running
averages) is kept under it.

learning_rate is a number, or a schedule (tinycnn.optimizers.schedules): then each step uses
schedule(iterations), iterations = the steps taken before it (0 for the first), as in Keras.
"""
import sys

import numpy as np

from . import schedules
from .backend import K
from .schedules import LearningRateSchedule

sys.modules[__name__ + ".schedules"] = schedules    # so that `from tinycnn.optimizers.schedules import ...` works


def check_fraction(value, arg, kind):
    """A number in [0, 1), such as momentum, rho, beta_1 or beta_2, or a clear error."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{kind}: {arg} must be a number in [0, 1); received {value!r}")
    if not 0 <= value < 1:
        raise ValueError(f"{kind}: {arg} must be in [0, 1); received {value!r}")
    return float(value)


def check_epsilon(value, kind):
    """epsilon keeps a division away from zero: a number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{kind}: epsilon must be a small non-negative number such as 1e-7; received {value!r}")
    if not 0 <= value < np.inf:
        raise ValueError(f"{kind}: epsilon must be a small non-negative number such as 1e-7; received {value!r}")
    return float(value)


# Keras's optimizer arguments that tinycnn has only at these values (weight decay, clipping, EMA, ...)
KERAS_DEFAULTS = {"weight_decay": None, "clipnorm": None, "global_clipnorm": None, "clipvalue": None,
                  "use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None,
                  "loss_scale_factor": None, "gradient_accumulation_steps": None}


class Optimizer:
    def __init__(self, learning_rate, name=None, **keras_args):
        kind = type(self).__name__
        for arg, value in keras_args.items():
            if arg not in KERAS_DEFAULTS:
                raise TypeError(f"{kind}: unexpected keyword argument {arg!r}")
            if value != KERAS_DEFAULTS[arg] and arg != "ema_momentum":     # ema_momentum matters only with use_ema
                raise ValueError(f"{kind}: {arg}={value!r} is not supported by tinycnn "
                                 f"(only {arg}={KERAS_DEFAULTS[arg]!r})")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{kind}: name must be a string; received {name!r}")
        self.name = name or kind.lower()
        self.iterations = 0      # steps taken so far
        self.state = {}          # key -> dict of arrays shaped like the weight
        self._learning_rate = None
        self.learning_rate = learning_rate

    @property
    def learning_rate(self):
        """The rate the next step uses: a float (a schedule's value at step `iterations`)."""
        if isinstance(self._learning_rate, LearningRateSchedule):
            return float(self._learning_rate(self.iterations))
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        """A positive number, or a schedule (callbacks such as ReduceLROnPlateau set numbers)."""
        kind = type(self).__name__
        if isinstance(value, LearningRateSchedule):
            self._learning_rate = value
            return
        if isinstance(self._learning_rate, LearningRateSchedule):
            raise TypeError(f"{kind}: this optimizer was created with a learning-rate schedule "
                            f"({type(self._learning_rate).__name__}), so its learning_rate cannot be set to a "
                            f"number; create the optimizer with a number learning_rate instead")
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not value > 0 or not np.isfinite(value):
            raise ValueError(f"{kind}: learning_rate must be a positive number or a "
                             f"tinycnn.optimizers.schedules.LearningRateSchedule; received {value!r}")
        self._learning_rate = float(value)

    def get_config(self):
        """Keras's optimizer config: the name, the learning rate (or its schedule's config), the rest."""
        from .layers.base import serialized
        rate = self._learning_rate
        return {"name": self.name, "learning_rate": serialized(rate) if isinstance(rate, LearningRateSchedule)
                else rate, **KERAS_DEFAULTS, **self.hyperparameters()}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        rate = config.get("learning_rate")
        if isinstance(rate, dict):
            config["learning_rate"] = schedules.get(rate)
        return cls(**config)

    def hyperparameters(self):
        """The subclass's own arguments, for get_config."""
        return {}

    # The state Keras keeps per trained weight, in the order of its variables
    SLOTS = ()

    def slot(self, key, p, *names):
        if key not in self.state:
            self.state[key] = {n: np.zeros_like(p) for n in names}
        return self.state[key]

    def apply(self, slots):
        """One step for every (key, param, grad). Returns False, having changed nothing (not even
        the step count or the optimizer's state), if a new weight would be NaN or inf."""
        t = self.iterations + 1
        if not all(self.update(key, p, g, t, write=False) for key, p, g in slots):
            return False
        for key, p, g in slots:
            self.update(key, p, g, t, write=True)
        self.iterations = t
        return True

    def update(self, key, p, g, t, write):
        """Step t for one weight: True if its new values are all finite; writes them only if `write`."""
        raise NotImplementedError


def commit(write, new, old):
    """Check that every array of `new` is finite; if so and `write`, copy each into `old`."""
    if not all(np.isfinite(a).all() for a in new):
        return False
    if write:
        for a, b in zip(new, old):
            b[...] = a
    return True


class SGD(Optimizer):
    """p <- p - lr * g; with momentum: v <- momentum * v - lr * g, p <- p + v
    (Nesterov: p <- p + momentum * v - lr * g)."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.momentum, self.nesterov = check_fraction(momentum, "momentum", "SGD"), bool(nesterov)
        self.SLOTS = ("velocity",) if self.momentum else ()

    def hyperparameters(self):
        return {"momentum": self.momentum, "nesterov": self.nesterov}

    def update(self, key, p, g, t, write):
        lr = self.learning_rate
        if self.momentum == 0:
            return commit(write, [p - lr * g], [p])
        v = self.slot(key, p, "velocity")["velocity"]
        v_new = self.momentum * v - lr * g                               # like p
        p_new = p + self.momentum * v_new - lr * g if self.nesterov else p + v_new
        return commit(write, [p_new, v_new], [p, v])


class RMSprop(Optimizer):
    """v <- rho * v + (1 - rho) * g^2;  p <- p - lr * g / (sqrt(v) + eps)."""

    SLOTS = ("v",)

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.rho, self.epsilon = check_fraction(rho, "rho", "RMSprop"), check_epsilon(epsilon, "RMSprop")
        if momentum != 0 or centered:
            raise ValueError(f"RMSprop: momentum={momentum!r} and centered={centered!r} are not supported by "
                             f"tinycnn (only momentum=0.0, centered=False)")

    def hyperparameters(self):
        return {"rho": self.rho, "momentum": 0.0, "epsilon": self.epsilon, "centered": False}

    def update(self, key, p, g, t, write):
        v = self.slot(key, p, "v")["v"]
        v_new = self.rho * v + (1 - self.rho) * g * g                    # like p
        p_new = p - self.learning_rate * g / (np.sqrt(v_new) + self.epsilon)
        return commit(write, [p_new, v_new], [p, v])


class Adam(Optimizer):
    """Adam with Keras's update rule (bias correction folded into the step size):

        m <- m + (1 - beta_1) (g - m)
        v <- v + (1 - beta_2) (g^2 - v)
        p <- p - lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon)
    """

    SLOTS = ("m", "v")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.beta_1 = check_fraction(beta_1, "beta_1", "Adam")
        self.beta_2 = check_fraction(beta_2, "beta_2", "Adam")
        self.epsilon = check_epsilon(epsilon, "Adam")
        if amsgrad:
            raise ValueError("Adam: amsgrad=True is not supported by tinycnn (only amsgrad=False)")

    def hyperparameters(self):
        return {"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon, "amsgrad": False}

    def update(self, key, p, g, t, write):
        lr_t = self.learning_rate * np.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** t)   # bias correction
        s = self.slot(key, p, "m", "v")
        f = p.dtype.type
        return K.adam_update(p, g, s["m"], s["v"], f(lr_t), f(self.beta_1), f(self.beta_2), f(self.epsilon),
                             write)


OPTIMIZERS = {"adam": Adam, "sgd": SGD, "rmsprop": RMSprop}


def get(identifier):
    """'adam' -> Adam() with Keras's defaults; instances pass through."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in OPTIMIZERS:
        return OPTIMIZERS[identifier.lower()]()
    if isinstance(identifier, dict) and str(identifier.get("class_name")).lower() in OPTIMIZERS:
        return OPTIMIZERS[identifier["class_name"].lower()].from_config(identifier.get("config") or {})
    hint = ""
    if isinstance(identifier, type) and issubclass(identifier, Optimizer):
        hint = f" (the class was given: create an instance, {identifier.__name__}())"
    raise ValueError(f"unknown optimizer {identifier!r}; expected one of {', '.join(map(repr, OPTIMIZERS))} "
                     f"or a tinycnn.optimizers.Optimizer instance{hint}")
