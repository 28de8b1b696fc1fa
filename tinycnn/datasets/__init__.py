"""Datasets shipped with tinycnn: `from tinycnn.datasets import mnist; mnist.load_data()`."""
from . import mnist

__all__ = ["mnist"]
