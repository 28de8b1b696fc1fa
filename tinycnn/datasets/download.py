"""Fetch a dataset file once, check it, keep it: the only code in tinycnn that uses the network.

Every file has a pinned size and SHA-256 (PINNED below). A download goes to a temporary file in
the cache folder, is hashed while it arrives, and enters the cache (os.replace, atomic) only if
its size and hash match; on any failure the temporary file is removed. A cached file is hashed
again on every load (about 0.3 s for a CIFAR tarball), so a file damaged on disk is refused too.

Where the pins come from (the sums each project published for these exact files):
    Fashion-MNIST  tensorflow/datasets, tensorflow_datasets/url_checksums/fashion_mnist.txt:
                   size and sha256 of Zalando's four .gz files (fashion-mnist.s3-website.eu-
                   central-1.amazonaws.com). Keras's fashion_mnist.py (FILE_HASHES) pins the same
                   four sums for the copies on storage.googleapis.com that Keras and tinycnn fetch.
    CIFAR-10/100   tensorflow/datasets, url_checksums/cifar10.txt and cifar100.txt: size and
                   sha256 of cifar-10-binary.tar.gz and cifar-100-binary.tar.gz from
                   www.cs.toronto.edu/~kriz (the CIFAR page itself publishes only MD5 sums).

Cache: $TINYCNN_HOME/datasets if TINYCNN_HOME is set, else ~/.tinycnn/datasets; a file's place
in it is its key, e.g. <cache>/fashion-mnist/train-images-idx3-ubyte.gz.
Mirror: TINYCNN_DATASETS_MIRROR=<base URL> (http://, https:// or file://) fetches <base>/<key>
instead of the original URL, so a copy of a cache folder served on a classroom's network (or
on a USB stick, as file:///media/stick/datasets) is a mirror. The hashes are checked the same.
"""
import hashlib
import http.client
import os
import tempfile
import urllib.request

from ..progress import ProgressBar
from .mnist import DatasetError

FASHION = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
TORONTO = "https://www.cs.toronto.edu/~kriz/"

# key (path in the cache and on a mirror): (original URL, size in bytes, sha256)
PINNED = {
    "fashion-mnist/train-images-idx3-ubyte.gz": (
        FASHION + "train-images-idx3-ubyte.gz", 26421880,
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
    "fashion-mnist/train-labels-idx1-ubyte.gz": (
        FASHION + "train-labels-idx1-ubyte.gz", 29515,
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
    "fashion-mnist/t10k-images-idx3-ubyte.gz": (
        FASHION + "t10k-images-idx3-ubyte.gz", 4422102,
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
    "fashion-mnist/t10k-labels-idx1-ubyte.gz": (
        FASHION + "t10k-labels-idx1-ubyte.gz", 5148,
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    "cifar-10-binary.tar.gz": (
        TORONTO + "cifar-10-binary.tar.gz", 170052171,
        "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"),
    "cifar-100-binary.tar.gz": (
        TORONTO + "cifar-100-binary.tar.gz", 168513733,
        "58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec"),
}
CHUNK = 1 << 20
TIMEOUT = 30          # seconds without a byte before a download gives up


class DownloadError(ConnectionError):
    """A dataset file could not be fetched (offline, refused, timed out, cut short)."""


def cache_dir():
    home = os.environ.get("TINYCNN_HOME") or os.path.join(os.path.expanduser("~"), ".tinycnn")
    return os.path.join(home, "datasets")


def source_url(key):
    mirror = os.environ.get("TINYCNN_DATASETS_MIRROR")
    if not mirror:
        return PINNED[key][0]
    if not mirror.startswith(("http://", "https://", "file://")):
        raise ValueError(f"TINYCNN_DATASETS_MIRROR must be an http://, https:// or file:// URL; "
                         f"received {mirror!r}")
    return mirror.rstrip("/") + "/" + key


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(key, dataset):
    """Path of the checked file `key` in the cache, downloading it first if it is not there."""
    _, size, sha256 = PINNED[key]
    path = os.path.join(cache_dir(), *key.split("/"))
    if not os.path.exists(path):
        download(source_url(key), path, size, sha256, dataset)     # checked as it arrives
        return path
    received = sha256_of(path)
    if received != sha256:
        raise DatasetError(f"{dataset}: the cached file {path} fails its checksum: SHA-256 {received}, "
                           f"expected {sha256}. Delete it and load again to download it afresh.")
    return path


def download(url, path, size, sha256, dataset):
    """Stream `url` into a temporary file beside `path`; it becomes `path` only once checked."""
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    by_hand = (f"If this machine is offline, download {url} elsewhere and place it at {path} "
               f"(SHA-256 {sha256}), or set TINYCNN_DATASETS_MIRROR to a server that has it.")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")   # same disk: replace is atomic
    try:
        digest, got = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out:
            print(f"Downloading data from {url}")
            try:
                with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
                    announced = response.headers.get("Content-Length")
                    bar = ProgressBar(size)
                    while block := response.read(CHUNK):
                        got += len(block)
                        if got > size:
                            raise DatasetError(f"{dataset}: {url} sends more than the pinned {size} "
                                               f"bytes of {name}; nothing was cached.")
                        digest.update(block)
                        out.write(block)
                        bar.update(got)
            except (OSError, http.client.HTTPException) as err:    # URLError, refused, timeout, cut short
                raise DownloadError(f"{dataset}: downloading {name} from {url} failed "
                                    f"({type(err).__name__}: {err}). {by_hand}") from None
        if announced is not None and got != int(announced):
            raise DownloadError(f"{dataset}: the download of {name} from {url} was cut short: "
                                f"{got} of {announced} bytes; nothing was cached. {by_hand}")
        if got != size or digest.hexdigest() != sha256:
            raise DatasetError(f"{dataset}: {name} from {url} fails its checksum: received SHA-256 "
                               f"{digest.hexdigest()} ({got} bytes), expected {sha256} ({size} bytes); "
                               f"nothing was cached.")
        os.replace(tmp, path)
    except BaseException:             # Ctrl-C included: a partial file never stays behind
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
