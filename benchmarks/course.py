"""The course workload: a small BatchNorm CNN on CIFAR-shaped images (32x32x3, 10 classes).

    Conv2D(32, 3x3, "same") - BN - ReLU - Conv2D(32, 3x3, "same") - BN - ReLU - MaxPool 2x2
    - Conv2D(64, 3x3, "same") - BN - ReLU - GlobalAveragePooling2D - Dense(10, softmax)

The convolutions have no activation of their own (BN follows them) but keep their bias, as
Keras's default. BatchNormalization is Keras's default (momentum 0.99, epsilon 1e-3); PyTorch's
BatchNorm2d gets momentum 0.01 (PyTorch's is 1 - Keras's) and eps 1e-3. Adam(1e-3, eps 1e-7),
categorical cross-entropy. The data are random: uint8-like values scaled to [0, 1], and
random labels, the same for every framework (only the time is measured, not learning).
"""
import numpy as np

SIZE, CHANNELS, CLASSES = 32, 3, 10


def data(n, seed=0):
    """x (n, 32, 32, 3) float32 in [0, 1] (k / 255), y (n, 10) one-hot float32."""
    rng = np.random.default_rng(seed)
    x = (rng.integers(0, 256, (n, SIZE, SIZE, CHANNELS), dtype=np.uint8) / np.float32(255)).astype(np.float32)
    y = np.eye(CLASSES, dtype=np.float32)[rng.integers(0, CLASSES, n)]
    return x, y


def tinycnn_model():
    import tinycnn
    from tinycnn.layers import BatchNormalization, Conv2D, Dense, GlobalAveragePooling2D, MaxPooling2D, ReLU
    return tinycnn.Sequential([
        Conv2D(32, (3, 3), padding="same", input_shape=(SIZE, SIZE, CHANNELS)), BatchNormalization(), ReLU(),
        Conv2D(32, (3, 3), padding="same"), BatchNormalization(), ReLU(), MaxPooling2D((2, 2)),
        Conv2D(64, (3, 3), padding="same"), BatchNormalization(), ReLU(),
        GlobalAveragePooling2D(), Dense(CLASSES, activation="softmax")])


def keras_model():
    import keras
    from keras import layers
    return keras.Sequential([
        keras.Input(shape=(SIZE, SIZE, CHANNELS)),
        layers.Conv2D(32, (3, 3), padding="same"), layers.BatchNormalization(), layers.ReLU(),
        layers.Conv2D(32, (3, 3), padding="same"), layers.BatchNormalization(), layers.ReLU(),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), padding="same"), layers.BatchNormalization(), layers.ReLU(),
        layers.GlobalAveragePooling2D(), layers.Dense(CLASSES, activation="softmax")])


def torch_model():
    """The same model in NCHW; ends in logits (the softmax is in the loss)."""
    from torch import nn

    def bn(c):
        return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)
    return nn.Sequential(
        nn.Conv2d(CHANNELS, 32, 3, padding=1), bn(32), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), bn(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), bn(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, CLASSES))


def keras_to_torch(weights):
    """Keras/tinycnn weights (per conv: kernel, bias; per BN: gamma, beta, moving mean, moving
    variance; Dense: kernel, bias) -> the torch model's state_dict values by key."""
    import torch
    model, w = torch_model(), list(weights)
    state = {}
    for i, module in enumerate(model):
        kind = type(module).__name__
        if kind == "Conv2d":
            k, b = w.pop(0), w.pop(0)
            state.update({f"{i}.weight": k.transpose(3, 2, 0, 1), f"{i}.bias": b})      # (KH,KW,C,F) -> (F,C,KH,KW)
        elif kind == "BatchNorm2d":
            for key in ("weight", "bias", "running_mean", "running_var"):
                state[f"{i}.{key}"] = w.pop(0)
        elif kind == "Linear":
            k, b = w.pop(0), w.pop(0)
            state.update({f"{i}.weight": k.T, f"{i}.bias": b})                           # (in,out) -> (out,in)
    return {key: torch.from_numpy(np.ascontiguousarray(v)) for key, v in state.items()}
