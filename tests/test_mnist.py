"""The bundled MNIST: shapes, dtypes, the first labels, and the checks that refuse altered files."""
import gzip
import hashlib
import os
import shutil

import numpy as np
import pytest

from tinycnn.datasets import mnist


def test_load_data_shapes_dtypes_and_first_labels(mnist_prepared):
    (x_train, y_train), (x_test, y_test) = mnist.load_data()
    assert x_train.shape == (60000, 28, 28) and y_train.shape == (60000,)
    assert x_test.shape == (10000, 28, 28) and y_test.shape == (10000,)
    assert {a.dtype for a in (x_train, y_train, x_test, y_test)} == {np.dtype(np.uint8)}
    assert y_test[:5].tolist() == [7, 2, 1, 0, 4]
    assert y_train[:5].tolist() == [5, 0, 4, 1, 9]
    assert x_train.max() == 255 and set(np.unique(y_train)) == set(range(10))
    (xp, yp), _ = mnist_prepared                            # the tutorial's preprocessing
    assert xp.shape == (60000, 28, 28, 1) and xp.dtype == np.float32 and xp.max() == 1.0
    assert yp.shape == (60000, 10) and yp.dtype == np.float32


@pytest.fixture
def copy_of_data(tmp_path):
    for name in os.listdir(mnist.DATA_DIR):
        shutil.copy(os.path.join(mnist.DATA_DIR, name), tmp_path / name)
    return tmp_path


def rewrite(path, change):
    raw = bytearray(gzip.open(path).read())
    change(raw)
    with gzip.open(path, "wb") as f:
        f.write(bytes(raw))


def test_a_changed_byte_fails_the_checksum(copy_of_data):
    rewrite(copy_of_data / "t10k-labels-idx1-ubyte.gz", lambda raw: raw.__setitem__(100, (raw[100] + 1) % 256))
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz fails its checksum"):
        mnist.load_data(copy_of_data)


def test_a_bad_header_is_refused_even_with_a_matching_checksum(copy_of_data):
    path = copy_of_data / "t10k-labels-idx1-ubyte.gz"
    rewrite(path, lambda raw: raw.__setitem__(3, 3))        # claims 3 dimensions
    sums = {name: digest for digest, name in map(str.split, (copy_of_data / "SHA256SUMS").read_text().splitlines())}
    sums["t10k-labels-idx1-ubyte"] = hashlib.sha256(gzip.open(path).read()).hexdigest()
    (copy_of_data / "SHA256SUMS").write_text("".join(f"{d}  {n}\n" for n, d in sums.items()))
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte has shape"):
        mnist.load_data(copy_of_data)


def test_a_missing_file_is_a_clear_error(copy_of_data):
    (copy_of_data / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(ValueError, match="cannot read .*train-images-idx3-ubyte.gz"):
        mnist.load_data(copy_of_data)
