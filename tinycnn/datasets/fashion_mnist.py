"""Fashion-MNIST (Zalando): 70,000 28x28 grayscale images of clothes in 10 classes, downloaded on
first use into the cache (see tinycnn/datasets/download.py for the URLs, pinned sums, cache and
mirror). The four files are gzipped IDX, the same format as MNIST's, read by mnist.parse_idx.

Labels: 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker,
8 Bag, 9 Ankle boot. Fashion-MNIST is (c) Zalando SE, MIT license.
"""
import gzip

from . import download
from .mnist import DatasetError, parse_idx

FILES = {
    "x_train": ("train-images-idx3-ubyte.gz", (28, 28)),
    "y_train": ("train-labels-idx1-ubyte.gz", ()),
    "x_test": ("t10k-images-idx3-ubyte.gz", (28, 28)),
    "y_test": ("t10k-labels-idx1-ubyte.gz", ()),
}


def read_idx(path, name, item_shape):
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise DatasetError(f"Fashion-MNIST: cannot read {path}: {err}") from None
    count = int.from_bytes(raw[4:8], "big")         # the header's first size; parse_idx checks the rest
    return parse_idx(raw, f"Fashion-MNIST {name}", (count, *item_shape))


def load_data():
    """Load Fashion-MNIST as Keras does: ((x_train, y_train), (x_test, y_test)).

    Returns uint8 arrays: x_train (60000, 28, 28), y_train (60000,), x_test (10000, 28, 28),
    y_test (10000,). Pixels are 0-255, labels 0-9. Downloads about 30 MB on first use.
    """
    data = {key: read_idx(download.fetch("fashion-mnist/" + name, "Fashion-MNIST"), name, shape)
            for key, (name, shape) in FILES.items()}
    for split in ("train", "test"):
        if len(data["x_" + split]) != len(data["y_" + split]):
            raise DatasetError(f"Fashion-MNIST: {len(data['x_' + split])} {split} images but "
                               f"{len(data['y_' + split])} labels")
    return (data["x_train"], data["y_train"]), (data["x_test"], data["y_test"])
