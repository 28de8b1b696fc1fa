"""The seed tutorial's model and data preparation, in one place for the CLI, tests,
benchmarks and notebooks.

    (x_train, y_train), (x_test, y_test) = seed.prepare_mnist()
    model = seed.build_model()                # 225,034 parameters, uncompiled
    model = seed.build_residual_model()       # the same task, a functional residual CNN with BatchNorm
"""
import numpy as np

from .datasets import mnist
from .layers import Add, BatchNormalization, Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D, ReLU
from .models import Model, Sequential
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


def build_residual_model():
    """A small residual CNN, built with the functional API: a stem, one residual block
    (Conv-BN-ReLU-Conv-BN, plus the block's input, then ReLU) between two poolings, a softmax head."""
    def norm():       # momentum 0.9, not Keras's 0.99: the moving statistics catch up within the first epoch
        return BatchNormalization(momentum=0.9)

    inputs = Input(shape=(28, 28, 1))
    x = Conv2D(32, 3, padding="same", use_bias=False)(inputs)
    x = MaxPooling2D(2)(ReLU()(norm()(x)))                       # (14, 14, 32)
    y = ReLU()(norm()(Conv2D(32, 3, padding="same", use_bias=False)(x)))
    y = norm()(Conv2D(32, 3, padding="same", use_bias=False)(y))
    x = MaxPooling2D(2)(ReLU()(Add()([x, y])))                   # the skip: x is read twice; (7, 7, 32)
    return Model(inputs, Dense(10, activation="softmax")(Flatten()(x)), name="residual_cnn")
