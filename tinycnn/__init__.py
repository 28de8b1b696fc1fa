"""tinycnn: a from-scratch NumPy CNN framework for learning backpropagation, with Keras's API.

    from tinycnn.datasets import mnist
    from tinycnn.models import Sequential
    from tinycnn.layers import Conv2D, MaxPooling2D, Flatten, Dense, Dropout

The Keras MNIST tutorial runs with only its imports changed (tensorflow.keras.X -> tinycnn.X).
"""
from . import (backend, callbacks, datasets, initializers, layers, losses, metrics, models, optimizers,
               regularizers, utils)
from .backend import get_backend, set_backend
from .advice import TrainingWarning
from .layers import Input
from .models import Model, Sequential
from .utils import set_random_seed, to_categorical

__version__ = "0.1.0"

__all__ = ["Input", "Model", "Sequential", "TrainingWarning", "backend", "callbacks", "datasets", "get_backend", "initializers", "layers", "losses", "metrics",
           "models", "optimizers", "regularizers", "set_backend", "set_random_seed", "to_categorical", "utils"]
