"""The seed tutorial's model and data preparation, in one place for the CLI, tests,
benchmarks and notebooks.

    (x_train, y_train), (x_test, y_test) = seed.prepare_mnist()
    model = seed.build_model()                # 225,034 parameters, uncompiled
"""
import numpy as np

from .datasets import mnist
from .layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from .models import Sequential
from .utils import to_categorical


def prepare_mnist():
    """MNIST as the tutorial prepares it: float32 in [0, 1], shape (N, 28, 28, 1), one-hot labels."""
    (x_train, y_train), (x_test, y_test) = mnist.load_data()
    x_train = np.expand_dims(x_train.astype(np.float32) / 255.0, axis=-1)
    x_test = np.expand_dims(x_test.astype(np.float32) / 255.0, axis=-1)
    return (x_train, to_categorical(y_train, 10)), (x_test, to_categorical(y_test, 10))


def build_model():
    """Conv2D(32) - pool - dropout - Conv2D(64) - pool - dropout - Dense(128) - dropout - Dense(10)."""
    return Sequential([
        Conv2D(32, kernel_size=(3, 3), activation="relu", input_shape=(28, 28, 1)),
        MaxPooling2D(pool_size=(2, 2)),
        Dropout(0.25),
        Conv2D(64, kernel_size=(3, 3), activation="relu"),
        MaxPooling2D(pool_size=(2, 2)),
        Dropout(0.25),
        Flatten(),
        Dense(128, activation="relu"),
        Dropout(0.5),
        Dense(10, activation="softmax"),
    ])
