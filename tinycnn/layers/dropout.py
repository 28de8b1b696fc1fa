"""Dropout: during training, silence a random fraction `rate` of the units.

Inverted dropout, as Keras does it:
    training:   mask = (u >= rate) / (1 - rate), u ~ U[0, 1)    (same shape as x)
                out  = x * mask
    inference:  out  = x                                        (no mask, no rescaling)
The 1/(1 - rate) keeps the expected value of every unit the same in both modes.
Backward:   dx = dout * mask                                    (the mask is a constant)
"""
import numpy as np

from ..backend import ops
from ..utils import rng
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

    def forward(self, x, training=False):
        if not training:
            return x
        if self.rate == 0:
            self.cache = {"kernels": None, "mask": None}
            return x
        kernels = ops()
        out, mask = kernels.dropout_forward(x, self.rate, self.generator or rng())   # both like x
        self.cache = {"kernels": kernels, "mask": mask}
        return out

    def backward(self, dout):
        cache = self.cached()
        if cache["mask"] is None:          # rate 0: the identity
            return dout
        return cache["kernels"].dropout_backward(dout, cache["mask"])
