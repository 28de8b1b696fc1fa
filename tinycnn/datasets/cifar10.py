"""CIFAR-10: 60,000 32x32 colour images in 10 classes, downloaded on first use into the cache
(see tinycnn/datasets/download.py for the URL, pinned sum, cache and mirror).

tinycnn reads the *binary* version, cifar-10-binary.tar.gz (the "python" version is pickles,
which can run code when loaded). Each of data_batch_1..5.bin and test_batch.bin holds 10000
records of 3073 bytes: 1 label byte, then 3072 pixel bytes, the red, green and blue 32x32
planes in row-major order (CHW). They are transposed to NHWC, Keras's channels_last.

Labels: 0 airplane, 1 automobile, 2 bird, 3 cat, 4 deer, 5 dog, 6 frog, 7 horse, 8 ship, 9 truck.
"""
import tarfile

import numpy as np

from . import download
from .mnist import DatasetError

PIXELS = 3 * 32 * 32


def read_records(path, members, label_bytes, dataset):
    """Concatenate the records of `members` of the tarball: (x (n, 32, 32, 3), labels (n, label_bytes))."""
    parts = []
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in members:
                raw = tar.extractfile(member).read()      # read in memory: nothing is extracted to disk
                if len(raw) % (label_bytes + PIXELS):
                    raise DatasetError(f"{dataset}: {member} holds {len(raw)} bytes, not a whole number "
                                       f"of {label_bytes + PIXELS}-byte records")
                parts.append(np.frombuffer(raw, np.uint8).reshape(-1, label_bytes + PIXELS))
    except (OSError, EOFError, tarfile.TarError, KeyError) as err:   # KeyError: no such member
        raise DatasetError(f"{dataset}: cannot read {path}: {err}") from None
    records = np.concatenate(parts)
    x = records[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)   # (n, 3, 32, 32) -> (n, 32, 32, 3)
    return np.ascontiguousarray(x), records[:, :label_bytes].copy()


def load_data():
    """Load CIFAR-10 as Keras does: ((x_train, y_train), (x_test, y_test)).

    Returns uint8 arrays: x_train (50000, 32, 32, 3), y_train (50000, 1), x_test (10000, 32, 32, 3),
    y_test (10000, 1), in the files' order (batches 1 to 5, then the test batch). Pixels are
    0-255, labels 0-9. Downloads 170 MB on first use.
    """
    path = download.fetch("cifar-10-binary.tar.gz", "CIFAR-10")
    folder = "cifar-10-batches-bin/"
    x_train, y_train = read_records(path, [f"{folder}data_batch_{i}.bin" for i in range(1, 6)], 1, "CIFAR-10")
    x_test, y_test = read_records(path, [folder + "test_batch.bin"], 1, "CIFAR-10")
    return (x_train, y_train), (x_test, y_test)
