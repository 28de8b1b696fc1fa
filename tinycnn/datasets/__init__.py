"""Datasets with Keras's API: `from tinycnn.datasets import mnist; mnist.load_data()`.

MNIST ships inside the package; Fashion-MNIST, CIFAR-10 and CIFAR-100 are downloaded on first
use, checked against pinned SHA-256 sums and cached (see download.py).
"""
from . import cifar10, cifar100, fashion_mnist, mnist

__all__ = ["mnist", "fashion_mnist", "cifar10", "cifar100"]
