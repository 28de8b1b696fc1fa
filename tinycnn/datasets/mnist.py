"""MNIST, shipped inside the package: nothing is downloaded, ever.

The four original files (gzipped IDX) live in tinycnn/datasets/data/mnist/ with their
SHA-256 sums (of the uncompressed files) in SHA256SUMS. Every load checks each file's
sum and its IDX header before trusting a byte of it.

IDX format: a big-endian header, then raw uint8 data.
    bytes 0-1  zero          byte 2  type (0x08 = unsigned byte)   byte 3  number of dims
    then one 4-byte big-endian size per dimension, then the values in row-major order.
"""
import gzip
import hashlib
import os

import numpy as np

DATA_DIR = os.path.join(os.path.dirname(__file__), "data", "mnist")
FILES = {
    "x_train": ("train-images-idx3-ubyte", (60000, 28, 28)),
    "y_train": ("train-labels-idx1-ubyte", (60000,)),
    "x_test": ("t10k-images-idx3-ubyte", (10000, 28, 28)),
    "y_test": ("t10k-labels-idx1-ubyte", (10000,)),
}


class DatasetError(ValueError):
    """A bundled data file is missing, altered or malformed."""


def read_sums(folder):
    path = os.path.join(folder, "SHA256SUMS")
    try:
        with open(path) as f:
            return {name: digest for digest, name in (line.split() for line in f if line.strip())}
    except OSError as err:
        raise DatasetError(f"MNIST: cannot read the checksum file {path}: {err}") from None


def parse_idx(raw, name, expected_shape):
    """Check the IDX header against what MNIST must be, then return the data as a uint8 array."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"MNIST: {name} is not an unsigned-byte IDX file (magic {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    if shape != expected_shape:
        raise DatasetError(f"MNIST: {name} has shape {shape} in its header; expected {expected_shape}")
    if len(raw) != header + int(np.prod(shape)):
        raise DatasetError(f"MNIST: {name} holds {len(raw) - header} data bytes; its header "
                           f"announces {int(np.prod(shape))}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


def load_file(folder, name, expected_shape, sums):
    path = os.path.join(folder, name + ".gz")
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise DatasetError(f"MNIST: cannot read {path}: {err}") from None
    digest = hashlib.sha256(raw).hexdigest()
    if sums.get(name) != digest:
        raise DatasetError(f"MNIST: {path} fails its checksum: SHA-256 {digest}, expected "
                           f"{sums.get(name, '(no entry in SHA256SUMS)')}. The file is altered or damaged.")
    return parse_idx(raw, name, expected_shape)


def load_data(path=None):
    """Load MNIST as Keras does: ((x_train, y_train), (x_test, y_test)).

    Returns uint8 arrays: x_train (60000, 28, 28), y_train (60000,), x_test (10000, 28, 28),
    y_test (10000,). Pixels are 0-255, labels 0-9. `path` may name another folder holding the
    same four .gz files and a SHA256SUMS; by default the copy inside the package is used.
    """
    folder = DATA_DIR if path is None or os.path.basename(str(path)) == "mnist.npz" else os.fspath(path)
    sums = read_sums(folder)
    data = {key: load_file(folder, name, shape, sums) for key, (name, shape) in FILES.items()}
    return (data["x_train"], data["y_train"]), (data["x_test"], data["y_test"])
