"""tinycnn.layers: the building blocks, with Keras's names, arguments and weight layouts.

    Conv2D, MaxPooling2D, Dropout, Flatten, Dense        the seed tutorial's layers
    Activation, ReLU, LeakyReLU, Softmax                 activations as layers of their own
    BatchNormalization                                   per-channel normalization, with moving statistics
    AveragePooling2D, GlobalAveragePooling2D,            the other poolings
    GlobalMaxPooling2D
    ZeroPadding2D, Reshape, Rescaling, UpSampling2D      padding, reshaping, scaling, upsampling
    Conv2DTranspose                                      the transposed convolution (upsampling)
    DepthwiseConv2D, SeparableConv2D                     a convolution per channel (then a 1x1 mix)
    Conv1D, MaxPooling1D                                 on sequences (N, steps, channels)
    Add, Subtract, Multiply, Average, Maximum, Minimum,  merges of several inputs (functional API)
    Concatenate
    Input / InputLayer                                   declares the input shape (Keras style)
    Layer                                                the base class: the contract every layer follows
"""
from ..utils import unique_name
from .activations import Activation, LeakyReLU, ReLU, Softmax
from .base import Layer, check_dtype, check_shape
from .conv import Conv2D
from .conv1d import Conv1D, MaxPooling1D
from .conv_transpose import Conv2DTranspose
from .dense import Dense, Flatten
from .depthwise import DepthwiseConv2D, SeparableConv2D
from .dropout import Dropout
from .merging import Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract
from .normalization import BatchNormalization
from .pooling import AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, MaxPooling2D
from .reshaping import Rescaling, Reshape, UpSampling2D, ZeroPadding2D


class InputLayer:
    """Declares the input shape, as `keras.layers.InputLayer(shape=(28, 28, 1))`. Not in model.layers."""

    def __init__(self, shape=None, batch_size=None, dtype=None, batch_shape=None, name=None, input_shape=None,
                 sparse=None, ragged=None, optional=False, **kwargs):
        if kwargs:
            raise TypeError(f"Input: unexpected keyword argument(s) {', '.join(sorted(kwargs))}")
        if batch_shape is not None:
            if shape is not None:
                raise ValueError("Input: give shape= or batch_shape=, not both")
            shape = tuple(batch_shape)[1:]
        shape = shape if shape is not None else input_shape
        self.shape = check_shape(shape, "Input: shape")
        check_dtype(dtype, "Input")
        for arg, value in (("sparse", sparse), ("ragged", ragged), ("optional", optional)):
            if value:
                raise ValueError(f"Input: {arg}=True is not supported by tinycnn")
        self.name = name or unique_name("input_layer")


def Input(shape=None, batch_size=None, dtype=None, sparse=None, batch_shape=None, name=None, tensor=None,
          optional=False):
    """keras.Input(shape=...): a symbolic tensor of shape (None, *shape), the start of a functional
    model (`x = Conv2D(...)(inputs)`, then tinycnn.Model(inputs, outputs)), or the first entry of a
    Sequential (`Sequential([Input((28, 28, 1)), Conv2D(...)])`)."""
    from ..graph import KerasTensor
    if tensor is not None:
        raise ValueError("Input: tensor= is not supported by tinycnn")
    layer = InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, sparse=sparse, batch_shape=batch_shape,
                       name=name, optional=optional)
    tensor = KerasTensor((None,) + layer.shape, name=layer.name)
    tensor.input_layer = layer
    return tensor


__all__ = ["Add", "Average", "Concatenate", "Maximum", "Minimum", "Multiply", "Subtract",
           "Activation", "AveragePooling2D", "BatchNormalization", "Conv1D", "Conv2D", "Conv2DTranspose", "Dense",
           "DepthwiseConv2D", "Dropout", "Flatten", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Input",
           "InputLayer", "Layer", "LeakyReLU", "MaxPooling1D", "MaxPooling2D", "ReLU", "Rescaling", "Reshape",
           "SeparableConv2D", "Softmax", "UpSampling2D", "ZeroPadding2D"]
