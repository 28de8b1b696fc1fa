"""CIFAR-100: 60,000 32x32 colour images in 100 fine classes grouped into 20 coarse ones,
downloaded on first use into the cache (see tinycnn/datasets/download.py for the URL, pinned
sum, cache and mirror).

tinycnn reads the *binary* version, cifar-100-binary.tar.gz (never the pickled "python" one):
train.bin (50000 records) and test.bin (10000), each record 3074 bytes: the coarse label byte,
the fine label byte, then 3072 pixel bytes as CHW planes, transposed to NHWC as for CIFAR-10.
"""
import numpy as np

from . import download
from .cifar10 import read_records

LABEL_MODES = {"coarse": 0, "fine": 1}      # label_mode -> the label byte's place in a record


def load_data(label_mode="fine"):
    """Load CIFAR-100 as Keras does: ((x_train, y_train), (x_test, y_test)).

    label_mode "fine" gives the 100 class labels (0-99), "coarse" the 20 superclasses (0-19).
    x_train (50000, 32, 32, 3) and x_test (10000, 32, 32, 3) are uint8; y_train (50000, 1) and
    y_test (10000, 1) are int64, as Keras 3 returns them (its docstring says uint8, but it
    builds the labels from Python lists). Downloads 169 MB on first use.
    """
    if label_mode not in LABEL_MODES:
        raise ValueError(f'cifar100.load_data: label_mode must be one of "fine", "coarse"; '
                         f"received label_mode={label_mode!r}")
    path = download.fetch("cifar-100-binary.tar.gz", "CIFAR-100")
    column = LABEL_MODES[label_mode]
    (x_train, train_labels), (x_test, test_labels) = (
        read_records(path, [f"cifar-100-binary/{split}.bin"], 2, "CIFAR-100") for split in ("train", "test"))
    y_train = train_labels[:, column:column + 1].astype(np.int64)
    y_test = test_labels[:, column:column + 1].astype(np.int64)
    return (x_train, y_train), (x_test, y_test)
