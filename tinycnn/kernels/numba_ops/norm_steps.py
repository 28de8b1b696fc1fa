"""The fast plan's BatchNormalization step: the layer, and the ReLU after it, in one pass each way.

A batch's statistics need every image, so this step does not run on slices: it runs between
them, on the whole batch, and its kernels (normalization.py) cut the rows over the cores
themselves. Forward: the statistics (one pass over x), then relu(gamma * xhat + beta) (one
pass); backward: dL/dx through the ReLU and the normalization (two passes over dout and x).
The layer's own forward and backward, and the ReLU layer's, are the reference
(tests/test_plans.py holds this step to them).
"""
import numpy as np

from . import normalization
from .steps import Step


class BatchNormStep(Step):
    parallel = False
    kernels = (normalization._sums, normalization._normalize, normalization._grad_sums, normalization._dx)

    def __init__(self, bn, relu=None):
        super().__init__([layer for layer in (bn, relu) if layer is not None])
        self.layer, self.relu, self.saved = bn, relu is not None, None

    def forward(self, x, training):
        bn = self.layer
        batch_stats = training and bn.trainable                  # a frozen layer uses its moving statistics
        if batch_stats:
            if len(x) == 0:
                raise ValueError(f"{bn}: training needs at least one sample; received shape {x.shape}")
            mean, var = normalization.batchnorm_stats(x)         # (C,), (C,)
            bn._update("moving_mean", mean)
            bn._update("moving_variance", var)
        else:
            mean, var = bn.params["moving_mean"], bn.params["moving_variance"]
        out, saved = normalization.normalize(x, mean, var, bn.params.get("gamma"), bn.params.get("beta"),
                                             bn.epsilon, self.relu)          # like x
        self.saved = (saved, batch_stats) if training else None
        return out

    def backward(self, dout):
        saved, batch_stats = self.saved
        dx, dgamma, dbeta = normalization.batchnorm_backward(dout, saved, batch_stats)   # like x, (C,), (C,)
        if self.layer.center:
            self.layer.grads["beta"] = dbeta
        if self.layer.scale:
            self.layer.grads["gamma"] = dgamma
        return dx

    def warm(self):
        """Compile (or load) the kernels on two rows of zeros: touches no weight and no state."""
        x, ones = np.zeros((2, self.layer.in_shape[-1]), np.float32), np.ones(self.layer.in_shape[-1], np.float32)
        mean, var = normalization.batchnorm_stats(x)
        out, saved = normalization.normalize(x, mean, var, ones, ones, 1e-3, self.relu)
        normalization.batchnorm_backward(out, saved, True)
