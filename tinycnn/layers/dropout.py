"""Dropout: during training, silence a random fraction `rate` of the units.

Inverted dropout, as Keras does it:
    training:   mask = (u >= rate) / (1 - rate), u ~ U[0, 1)    (same shape as x)
                out  = x * mask
    inference:  out  = x                                        (no mask, no rescaling)
The 1/(1 - rate) keeps the expected value of every unit the same in both modes.
Backward:   dx = dout * mask                                    (the mask is a constant)

u comes from tinycnn.utils.uniform, a counter-based generator: the fast backend computes the
same u inside its kernels, so both backends drop the same units for the same seed.
"""
import numpy as np

from ..utils import new_seed, uniform
from .base import Layer


class Dropout(Layer):
    """Args:
        rate: fraction of units dropped, in [0, 1). (Not the keep probability.)
        seed: optional int; gives this layer its own random generator.
    Input shape: any. Output shape: the same.
    """

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating, np.integer)):
            raise TypeError(f"{self}: rate must be a number in [0, 1); received {rate!r}")
        if not 0 <= rate < 1:
            raise ValueError(f"{self}: rate must be in [0, 1) (the fraction of units dropped); received {rate}")
        if noise_shape is not None:
            raise ValueError(f"{self}: noise_shape is not supported; received {noise_shape!r}")
        self.rate = float(rate)
        self.seed = seed
        self.generator = None if seed is None else np.random.default_rng(seed)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed, "noise_shape": None}

    def draw_seed(self):
        """The seed of this step's mask: from the layer's own generator, or tinycnn's (set_random_seed)."""
        return new_seed(self.generator)

    def forward(self, x, training=False):
        if not training:
            self.cache = None
            return x                                                        # no mask, no rescaling
        keep = uniform(self.draw_seed(), x.shape) >= self.rate              # like x: the units kept
        mask = keep * x.dtype.type(1 / (1 - self.rate))                     # like x: 0 or 1/(1 - rate)
        self.cache = mask
        return x * mask

    def backward(self, dout):
        return dout * self.cached()                                         # like x
