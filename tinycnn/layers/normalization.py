"""BatchNormalization: give every channel zero mean and unit variance, then a learned scale and shift.

Statistics are per channel (the last axis), over every other axis: the batch, and the pixels.
m = the number of values per channel (N, or N*H*W).

Forward, training:   mu  = mean(x)                         (C,)
                     var = mean((x - mu)^2)                (C,)  biased (divides by m), as Keras
                     moving_mean = moving_mean * momentum + mu  * (1 - momentum)
                     moving_var  = moving_var  * momentum + var * (1 - momentum)   (the same biased var)
Forward, inference:  mu, var = moving_mean, moving_var     (and nothing is updated)
Both:                xhat = (x - mu) / sqrt(var + eps)     like x
                     out  = gamma * xhat + beta            like x
Backward:            dbeta  = sum(dout)                    (C,)
                     dgamma = sum(dout * xhat)             (C,)
   training:         dx = gamma / (m * sqrt(var + eps)) * (m * dout - dbeta - xhat * dgamma)
                     (mu and var depend on every x: the two sums are their share of the gradient)
   inference:        dx = dout * gamma / sqrt(var + eps)   (mu and var are constants)

The maths lives in the kernels K.batchnorm_stats, K.batchnorm_forward and K.batchnorm_backward
(tinycnn/kernels/numpy_ops.py has them as written above).

As in Keras 3, a frozen layer (`trainable = False`) runs in inference mode even in fit(): it
normalizes with its moving statistics and leaves them alone.
"""
import numpy as np

from .. import initializers
from ..backend import K
from .base import Layer, at_defaults, serialized, shape_str

BN_INITIALIZERS = {"zeros": np.zeros, "ones": np.ones}


class BatchNormalization(Layer):
    """Keras's BatchNormalization, over the last (channel) axis.

    Args:
        axis: the channel axis: -1 (the last one; the only one tinycnn supports).
        momentum: of the moving averages, in [0, 1]. (PyTorch's momentum is 1 - this.)
        epsilon: added to the variance before the square root, > 0.
        center: learn a shift beta.  scale: learn a scale gamma.
        *_initializer: "zeros" or "ones".
    Input shape: (N, C), (N, H, W, C) or any (N, ..., C). Output shape: the same.
    Weights, in Keras's order: gamma (C,), beta (C,), moving_mean (C,), moving_variance (C,);
    the last two are non-trainable (forward updates them, no optimizer does).
    """

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", moving_mean_initializer="zeros",
                 moving_variance_initializer="ones", beta_regularizer=None, gamma_regularizer=None,
                 beta_constraint=None, gamma_constraint=None, synchronized=False, renorm=False,
                 renorm_clipping=None, renorm_momentum=0.99, **kwargs):
        super().__init__(**kwargs)
        at_defaults(self, renorm=(renorm, False), renorm_clipping=(renorm_clipping, None))
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"{self}: axis must be an integer; received {axis!r}")
        self.axis = int(axis)
        self.momentum = self._number(momentum, "momentum", "in [0, 1]", lambda v: 0 <= v <= 1)
        self.epsilon = self._number(epsilon, "epsilon", "> 0", lambda v: v > 0)
        self.center, self.scale = bool(center), bool(scale)
        self.initializers = {}
        for key, value in (("gamma", gamma_initializer), ("beta", beta_initializer),
                           ("moving_mean", moving_mean_initializer), ("moving_variance", moving_variance_initializer)):
            named = {initializers.Zeros: "zeros", initializers.Ones: "ones"}.get(
                type(initializers.get(value)) if isinstance(value, (dict, initializers.Initializer)) else None, value)
            if named not in BN_INITIALIZERS:
                raise ValueError(f"{self}: {key}_initializer must be 'zeros' or 'ones'; received {value!r}")
            self.initializers[key] = named
        for arg, value in (("beta_regularizer", beta_regularizer), ("gamma_regularizer", gamma_regularizer),
                           ("beta_constraint", beta_constraint), ("gamma_constraint", gamma_constraint)):
            if value is not None:
                raise ValueError(f"{self}: {arg} is not supported by tinycnn; received {value!r} (expected None)")
        if synchronized:
            raise ValueError(f"{self}: synchronized=True (statistics across devices) is not supported; "
                             f"tinycnn runs on one device")
        self.non_trainable = {"moving_mean", "moving_variance"}

    def get_config(self):
        inits = {f"{key}_initializer": serialized({"zeros": initializers.Zeros(), "ones": initializers.Ones()}[name])
                 for key, name in self.initializers.items()}
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale, **inits, "beta_regularizer": None,
                "gamma_regularizer": None, "beta_constraint": None, "gamma_constraint": None,
                "synchronized": False, "renorm": False, "renorm_clipping": None, "renorm_momentum": 0.99}

    def _number(self, value, arg, expected, ok):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{self}: {arg} must be a number {expected}; received {value!r}")
        if not ok(value):
            raise ValueError(f"{self}: {arg} must be {expected}; received {value}")
        return float(value)

    def compute_output_shape(self, input_shape):
        rank = len(input_shape) + 1                       # with the batch axis
        if self.axis not in (-1, rank - 1):
            raise ValueError(f"{self}: only axis=-1 (the channel axis, last in NHWC) is supported; received "
                             f"axis={self.axis} for input of shape {shape_str(input_shape)}")
        return input_shape

    def create_params(self, input_shape):
        C = input_shape[-1]
        keys = ["gamma"] * self.scale + ["beta"] * self.center + ["moving_mean", "moving_variance"]
        for key in keys:                                  # Keras's order
            self.params[key] = BN_INITIALIZERS[self.initializers[key]](C, dtype=np.float32)

    def forward(self, x, training=False):
        """x (N, ..., C) -> out (N, ..., C)."""
        batch_stats = training and self.trainable         # a frozen layer uses its moving statistics
        if batch_stats:
            if x.shape[0] == 0:
                raise ValueError(f"{self}: training needs at least one sample; received shape {x.shape}")
            mu, var = K.batchnorm_stats(x)                                    # (C,), (C,) biased
            self._update("moving_mean", mu)
            self._update("moving_variance", var)
        else:
            mu, var = self.params["moving_mean"], self.params["moving_variance"]
        out, saved = K.batchnorm_forward(x, mu, var, self.params.get("gamma"), self.params.get("beta"),
                                         self.epsilon)                        # like x; saved: for backward
        self.cache = (saved, batch_stats) if training else None
        return out

    def _update(self, key, batch_value):
        """moving = moving * momentum + batch * (1 - momentum), in place (Keras's assign)."""
        moving = self.params[key]
        moving *= self.momentum
        moving += batch_value * (1.0 - self.momentum)

    def backward(self, dout):
        """dout (N, ..., C) -> dx (N, ..., C); fills grads["gamma"] and grads["beta"]."""
        saved, batch_stats = self.cached()
        dx, dgamma, dbeta = K.batchnorm_backward(dout, saved, batch_stats)    # like x, (C,), (C,)
        if self.center:
            self.grads["beta"] = dbeta
        if self.scale:
            self.grads["gamma"] = dgamma
        return dx
