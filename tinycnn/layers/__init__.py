"""tinycnn.layers: the building blocks, with Keras's names, arguments and weight layouts.

    Conv2D, MaxPooling2D, Dropout, Flatten, Dense        the seed tutorial's layers
    Activation, ReLU, LeakyReLU, Softmax                 activations as layers of their own
    BatchNormalization                                   per-channel normalization, with moving statistics
    AveragePooling2D, GlobalAveragePooling2D,            the other poolings
    GlobalMaxPooling2D
    ZeroPadding2D, Reshape, Rescaling, UpSampling2D      padding, reshaping, scaling, upsampling
    Input / InputLayer                                   declares the input shape (Keras style)
    Layer                                                the base class: the contract every layer follows
"""
from .activations import Activation, LeakyReLU, ReLU, Softmax
from .base import Layer, check_shape
from .conv import Conv2D
from .dense import Dense, Flatten
from .dropout import Dropout
from .normalization import BatchNormalization
from .pooling import AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, MaxPooling2D
from .reshaping import Rescaling, Reshape, UpSampling2D, ZeroPadding2D


class InputLayer:
    """Declares the input shape, as `keras.Input(shape=(28, 28, 1))`. Not listed in model.layers."""

    def __init__(self, shape=None, batch_size=None, name=None, input_shape=None):
        shape = shape if shape is not None else input_shape
        self.shape = check_shape(shape, "Input: shape")
        self.name = name or "input_layer"


def Input(shape=None, batch_size=None, name=None):
    """keras.Input(shape=...) for a Sequential: `Sequential([Input((28, 28, 1)), Conv2D(...)])`."""
    return InputLayer(shape=shape, batch_size=batch_size, name=name)


__all__ = ["Activation", "AveragePooling2D", "BatchNormalization", "Conv2D", "Dense", "Dropout", "Flatten",
           "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Input", "InputLayer", "Layer", "LeakyReLU", "MaxPooling2D",
           "ReLU", "Rescaling", "Reshape", "Softmax", "UpSampling2D", "ZeroPadding2D"]
