"""Initial values of the weights, with Keras 3's names, arguments and formulas.

An initializer is called with a weight's shape and returns a new float32 array:
`GlorotUniform()((3, 3, 1, 32))`. The random ones scale their spread by the weight's fans:

    fan_in, fan_out = compute_fans(shape)
        (in, units) for a Dense kernel; for a convolution kernel (KH, KW, C, F), the receptive
        field times the channels: fan_in = KH*KW*C, fan_out = KH*KW*F; (n,) -> n and n

    VarianceScaling(scale, mode, distribution), with n = fan_in, fan_out or (fan_in + fan_out) / 2:
        "uniform"             U(-limit, limit), limit = sqrt(3 * scale / n)
        "truncated_normal"    N(0, s^2) with every draw beyond 2 s drawn again,
                              s = sqrt(scale / n) / 0.87962566103423978: the standard deviation
                              of N(0, 1) cut at +-2 is 0.8796..., so the draws end with std sqrt(scale / n)
        "untruncated_normal"  N(0, scale / n)

    GlorotUniform  1, fan_avg, uniform: limit = sqrt(6 / (fan_in + fan_out))   (Dense's and Conv2D's default)
    GlorotNormal   1, fan_avg, truncated_normal      HeUniform    2, fan_in, uniform: limit = sqrt(6 / fan_in)
    HeNormal       2, fan_in, truncated_normal       LecunUniform 1, fan_in, uniform: limit = sqrt(3 / fan_in)
    LecunNormal    1, fan_in, truncated_normal
    RandomNormal(mean=0, stddev=0.05)   RandomUniform(minval=-0.05, maxval=0.05)   TruncatedNormal(0, 0.05)
    Zeros()   Ones()   Constant(value=0)                                          (biases default to Zeros)

Randomness: with seed=None, every call draws from tinycnn's generator (tinycnn.utils.rng), so
set_random_seed makes the whole model's initial weights repeat. With an integer seed, every
call draws from a new generator seeded with it: the same values at every call, as Keras 3's
seeded initializers.

    get("he_normal") -> HeNormal()     get(HeNormal(seed=1)) -> that object     (Keras's names)
"""
import math

import numpy as np

from .utils import Configurable, rng

TRUNCATED_STD = 0.87962566103423978     # std of N(0, 1) cut at +-2 standard deviations


def compute_fans(shape):
    """(fan_in, fan_out) of a weight of this shape, as Keras counts them (see the module docstring)."""
    shape = tuple(int(d) for d in shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive_field = math.prod(shape[:-2])                  # 1 for a (in, units) matrix
    return shape[-2] * receptive_field, shape[-1] * receptive_field


def _number(value, arg, owner, positive=False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{owner}: {arg} must be a number; received {value!r}")
    if not math.isfinite(value) or (positive and value <= 0):
        raise ValueError(f"{owner}: {arg} must be a finite{' positive' if positive else ''} number; "
                         f"received {value!r}")
    return float(value)


class Initializer(Configurable):
    """Base class: __call__(shape, dtype=None) -> a new array of that shape (float32 by default)."""

    def __call__(self, shape, dtype=None):
        shape = _shape(shape, type(self).__name__)
        dtype = np.dtype(np.float32 if dtype is None else dtype)
        if dtype.kind != "f":
            raise TypeError(f"{type(self).__name__}: dtype must be a floating-point type; received {dtype}")
        return np.asarray(self.draw(shape), dtype=dtype)

    def draw(self, shape):
        raise NotImplementedError

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        """As Configurable's, also taking Keras 3.15's input_axes/output_axes (fans of ordinary layouts: None)."""
        config = dict(config)
        for axes in ("input_axes", "output_axes"):
            if config.pop(axes, None) is not None:
                raise ValueError(f"{cls.__name__}: {axes} other than None is not supported by tinycnn")
        return cls(**config)


def _shape(shape, owner):
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"{owner}: shape must be a tuple of integers; received {shape!r}") from None
    if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ValueError(f"{owner}: shape must be a tuple of integers >= 0; received {shape!r}")
    return tuple(int(d) for d in shape)


class Zeros(Initializer):
    def draw(self, shape):
        return np.zeros(shape)


class Ones(Initializer):
    def draw(self, shape):
        return np.ones(shape)


class Constant(Initializer):
    """Every value equal to `value` (a scalar)."""

    def __init__(self, value=0.0):
        self.value = _number(value, "value", "Constant")

    def draw(self, shape):
        return np.full(shape, self.value)

    def get_config(self):
        return {"value": self.value}


class RandomInitializer(Initializer):
    """Draws from rng() (seed=None) or from a fresh generator seeded with `seed` at every call."""

    def __init__(self, seed=None):
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ValueError(f"{type(self).__name__}: seed must be None or an integer >= 0; received {seed!r}")
        self.seed = None if seed is None else int(seed)

    def generator(self):
        return rng() if self.seed is None else np.random.default_rng(self.seed)

    def get_config(self):
        return {"seed": self.seed}


def truncated_normal(generator, shape, mean, stddev):
    """N(mean, stddev^2) with every draw more than 2 stddev from the mean drawn again."""
    x = generator.standard_normal(shape)
    outside = np.abs(x) > 2
    while outside.any():
        x[outside] = generator.standard_normal(int(outside.sum()))
        outside = np.abs(x) > 2
    return mean + stddev * x


class RandomNormal(RandomInitializer):
    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean, self.stddev = _number(mean, "mean", "RandomNormal"), _number(stddev, "stddev", "RandomNormal")

    def draw(self, shape):
        return self.generator().normal(self.mean, self.stddev, size=shape)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class TruncatedNormal(RandomNormal):
    def draw(self, shape):
        return truncated_normal(self.generator(), shape, self.mean, self.stddev)


class RandomUniform(RandomInitializer):
    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        super().__init__(seed)
        self.minval, self.maxval = _number(minval, "minval", "RandomUniform"), _number(maxval, "maxval", "RandomUniform")

    def draw(self, shape):
        return self.generator().uniform(self.minval, self.maxval, size=shape)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


class VarianceScaling(RandomInitializer):
    MODES, DISTRIBUTIONS = ("fan_in", "fan_out", "fan_avg"), ("uniform", "truncated_normal", "untruncated_normal")

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None):
        super().__init__(seed)
        kind = type(self).__name__
        self.scale = _number(scale, "scale", kind, positive=True)
        if mode not in self.MODES:
            raise ValueError(f"{kind}: mode must be one of {', '.join(map(repr, self.MODES))}; received {mode!r}")
        distribution = distribution.lower() if isinstance(distribution, str) else distribution
        distribution = "truncated_normal" if distribution == "normal" else distribution     # Keras's alias
        if distribution not in self.DISTRIBUTIONS:
            raise ValueError(f"{kind}: distribution must be one of {', '.join(map(repr, self.DISTRIBUTIONS))}; "
                             f"received {distribution!r}")
        self.mode, self.distribution = mode, distribution

    def draw(self, shape):
        fan_in, fan_out = compute_fans(shape)
        n = max(1.0, {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode])
        if self.distribution == "uniform":
            limit = math.sqrt(3 * self.scale / n)          # one rounding: glorot's is exactly sqrt(6 / (in + out))
            return self.generator().uniform(-limit, limit, size=shape)
        if self.distribution == "truncated_normal":
            return truncated_normal(self.generator(), shape, 0.0, math.sqrt(self.scale / n) / TRUNCATED_STD)
        return self.generator().normal(0.0, math.sqrt(self.scale / n), size=shape)

    def get_config(self):
        if type(self) is not VarianceScaling:           # the named presets below take only a seed
            return {"seed": self.seed}
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution, "seed": self.seed}


class GlorotUniform(VarianceScaling):
    """U(-limit, limit), limit = sqrt(6 / (fan_in + fan_out))."""

    def __init__(self, seed=None):
        super().__init__(1.0, "fan_avg", "uniform", seed)


class GlorotNormal(VarianceScaling):
    """Truncated normal, std sqrt(2 / (fan_in + fan_out))."""

    def __init__(self, seed=None):
        super().__init__(1.0, "fan_avg", "truncated_normal", seed)


class HeUniform(VarianceScaling):
    """U(-limit, limit), limit = sqrt(6 / fan_in)."""

    def __init__(self, seed=None):
        super().__init__(2.0, "fan_in", "uniform", seed)


class HeNormal(VarianceScaling):
    """Truncated normal, std sqrt(2 / fan_in)."""

    def __init__(self, seed=None):
        super().__init__(2.0, "fan_in", "truncated_normal", seed)


class LecunUniform(VarianceScaling):
    """U(-limit, limit), limit = sqrt(3 / fan_in)."""

    def __init__(self, seed=None):
        super().__init__(1.0, "fan_in", "uniform", seed)


class LecunNormal(VarianceScaling):
    """Truncated normal, std sqrt(1 / fan_in)."""

    def __init__(self, seed=None):
        super().__init__(1.0, "fan_in", "truncated_normal", seed)


_CLASSES = (Constant, GlorotNormal, GlorotUniform, HeNormal, HeUniform, LecunNormal, LecunUniform, Ones,
            RandomNormal, RandomUniform, TruncatedNormal, VarianceScaling, Zeros)


def _snake(name):
    return "".join("_" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(name))


# Keras 3's names: each class's own name, its snake_case name, and a few aliases.
NAMES = {**{cls.__name__: cls for cls in _CLASSES}, **{_snake(cls.__name__): cls for cls in _CLASSES},
         "uniform": RandomUniform, "normal": RandomNormal, "one": Ones, "zero": Zeros}


def get(identifier):
    """An initializer from a name ('he_normal' or 'HeNormal'), a class, a dict {'class_name': ...,
    'config': {...}}, or an initializer or any function(shape, dtype) (returned as it is); None -> None."""
    if isinstance(identifier, dict):
        name, config = identifier.get("class_name"), identifier.get("config") or {}
        if not isinstance(name, str) or name not in NAMES or not isinstance(config, dict):
            raise ValueError(f"Could not interpret initializer identifier {identifier!r}: expected "
                             f"{{'class_name': <one of {', '.join(map(repr, sorted(NAMES)))}>, 'config': {{...}}}}")
        return NAMES[name].from_config(config)
    if isinstance(identifier, str) and identifier in NAMES:
        return NAMES[identifier]()
    if isinstance(identifier, type) and issubclass(identifier, Initializer):
        return identifier()
    if identifier is None or (callable(identifier) and not isinstance(identifier, type)):
        return identifier
    raise ValueError(f"Could not interpret initializer identifier {identifier!r}; expected None, an "
                     f"initializer object, or one of the names {', '.join(map(repr, sorted(NAMES)))}")
