"""Losses: a number that says how wrong the predictions are, and its gradient.

Each loss maps (y_true, y_pred) of a batch of N samples to the mean over the batch,
and `gradient(y_true, y_pred)` returns dL/dy_pred, shaped like y_pred.

Cross-entropy after softmax: the fused gradient.
    p = softmax(z),  L = -1/N sum_n sum_k y_nk log p_nk
    dL/dz = (p - y) / N
The softmax Jacobian and the 1/p of the log cancel, leaving this short, stable formula.
`gradient_logits` returns it, and a Sequential whose last activation is softmax uses it
instead of going through dL/dp (which divides by p and blows up as p -> 0).
"""
import numpy as np

EPSILON = 1e-7   # Keras clips probabilities to [eps, 1 - eps] before the log


class Loss:
    name = "loss"
    fuses_with_softmax = False

    def __call__(self, y_true, y_pred):
        raise NotImplementedError

    def gradient(self, y_true, y_pred):
        raise NotImplementedError

    def check_targets(self, y_true, y_pred_shape):
        """Return y_true as an array the loss can use with predictions of y_pred_shape, or raise."""
        return y_true


class CategoricalCrossentropy(Loss):
    """-mean over samples of sum_k y_k log p_k, for one-hot (or soft) targets y of shape (N, K)."""
    name = "categorical_crossentropy"
    fuses_with_softmax = True

    def __call__(self, y_true, y_pred):
        p = np.clip(y_pred, EPSILON, 1 - EPSILON)
        return float(-(y_true * np.log(p)).sum(axis=-1).mean())

    def gradient(self, y_true, y_pred):
        p = np.clip(y_pred, EPSILON, 1 - EPSILON)
        return -y_true / p / y_pred.shape[0]                     # (N, K)

    def gradient_logits(self, y_true, p):
        return (p - y_true) / p.shape[0]                         # (N, K)

    def check_targets(self, y_true, y_pred_shape):
        if y_true.ndim != 2 or y_true.shape[1] != y_pred_shape[-1]:
            hint = (" Labels look like class indices: one-hot encode them with to_categorical(y, "
                    f"{y_pred_shape[-1]}), or use loss='sparse_categorical_crossentropy'."
                    if y_true.ndim == 1 or (y_true.ndim == 2 and y_true.shape[1] == 1) else "")
            raise ValueError(f"categorical_crossentropy expects one-hot targets of shape (None, "
                             f"{y_pred_shape[-1]}) to match the model's output; received targets of "
                             f"shape {y_true.shape}.{hint}")
        return y_true.astype(np.float32, copy=False)


class SparseCategoricalCrossentropy(CategoricalCrossentropy):
    """The same loss, with integer class labels of shape (N,) instead of one-hot rows."""
    name = "sparse_categorical_crossentropy"

    def one_hot(self, y_true, y_pred):
        y = np.zeros_like(y_pred)
        y[np.arange(len(y_true)), y_true] = 1
        return y

    def __call__(self, y_true, y_pred):
        return super().__call__(self.one_hot(y_true, y_pred), y_pred)

    def gradient(self, y_true, y_pred):
        return super().gradient(self.one_hot(y_true, y_pred), y_pred)

    def gradient_logits(self, y_true, p):
        return super().gradient_logits(self.one_hot(y_true, p), p)

    def check_targets(self, y_true, y_pred_shape):
        K = y_pred_shape[-1]
        if y_true.ndim == 2 and y_true.shape[1] == 1:
            y_true = y_true[:, 0]
        if y_true.ndim != 1:
            raise ValueError(f"sparse_categorical_crossentropy expects integer labels of shape (None,); "
                             f"received shape {y_true.shape}. For one-hot targets use "
                             f"loss='categorical_crossentropy'.")
        if y_true.dtype.kind == "f":
            if not np.all(y_true == np.round(y_true)):
                raise ValueError("sparse_categorical_crossentropy expects integer class labels; "
                                 "received non-integer values")
        labels = y_true.astype(np.int64)
        if labels.min() < 0 or labels.max() >= K:
            raise ValueError(f"sparse_categorical_crossentropy: labels must lie in [0, {K - 1}] for a model "
                             f"with {K} outputs; received labels from {labels.min()} to {labels.max()}")
        return labels


class MeanSquaredError(Loss):
    """mean over samples and outputs of (y_pred - y_true)^2."""
    name = "mean_squared_error"

    def __call__(self, y_true, y_pred):
        return float(np.mean((y_pred - y_true) ** 2))

    def gradient(self, y_true, y_pred):
        return 2 * (y_pred - y_true) / y_pred.size

    def check_targets(self, y_true, y_pred_shape):
        if y_true.ndim == 1 and len(y_pred_shape) == 2 and y_pred_shape[1] == 1:
            y_true = y_true[:, None]
        if y_true.shape[1:] != tuple(y_pred_shape[1:]):
            raise ValueError(f"mean_squared_error expects targets of shape (None, "
                             f"{', '.join(map(str, y_pred_shape[1:]))}); received {y_true.shape}")
        return y_true.astype(np.float32, copy=False)


LOSSES = {
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
}


def get(identifier):
    """'categorical_crossentropy' -> CategoricalCrossentropy(); instances pass through."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in LOSSES:
        return LOSSES[identifier.lower()]()
    raise ValueError(f"unknown loss {identifier!r}; expected one of {', '.join(map(repr, LOSSES))} "
                     f"or a tinycnn.losses.Loss instance")
