"""Downloaded datasets (Fashion-MNIST, CIFAR-10, CIFAR-100) against a loopback HTTP server.

Nothing here touches the internet: every URL is 127.0.0.1 (or file://). The server serves small
synthetic files built here in the real formats (gzipped IDX, CIFAR binary tarballs), and the
pinned table is monkeypatched to their sizes and sums, so the real fetch/verify/cache code runs.
"""
import gzip
import hashlib
import http.server
import io
import os
import socket
import tarfile
import threading

import numpy as np
import pytest

from tinycnn.datasets import cifar10, cifar100, download, fashion_mnist
from tinycnn.datasets.mnist import DatasetError

FASHION_KEYS = {name: "fashion-mnist/" + file for name, (file, _) in fashion_mnist.FILES.items()}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        sent = body[:self.server.cut[self.path]] if self.path in self.server.cut else body
        self.send_response(200)
        if not self.server.no_length:
            self.send_header("Content-Length", str(len(body)))     # announces the whole file
        self.end_headers()
        self.wfile.write(sent)
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.files, httpd.cut, httpd.no_length = {}, {}, False
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYCNN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TINYCNN_DATASETS_MIRROR", raising=False)
    return tmp_path / "home"


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha(data):
    return hashlib.sha256(data).hexdigest()


def publish(server, monkeypatch, key, body, pinned=None, prefix=""):
    """Serve `body` at /<prefix><key> and pin `pinned` (default: body) as the file's size and sum."""
    pinned = body if pinned is None else pinned
    server.files["/" + prefix + key] = body
    monkeypatch.setitem(download.PINNED, key, (f"{server.base}/{prefix}{key}", len(pinned), sha(pinned)))


def make_originals_unreachable(monkeypatch, keys):
    for key in keys:
        _, size, digest = download.PINNED[key]
        monkeypatch.setitem(download.PINNED, key, (f"http://127.0.0.1:{closed_port()}/{key}", size, digest))


def files_in(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


def idx(array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return gzip.compress(header + array.tobytes(), mtime=0)


def fashion_files(rng):
    arrays = {"x_train": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
              "y_train": np.array([9, 0, 3], np.uint8),
              "x_test": rng.integers(0, 256, (2, 28, 28), dtype=np.uint8),
              "y_test": np.array([1, 7], np.uint8)}
    return arrays, {FASHION_KEYS[name]: idx(a) for name, a in arrays.items()}


def publish_fashion(server, monkeypatch, prefix=""):
    arrays, files = fashion_files(np.random.default_rng(0))
    for key, body in files.items():
        publish(server, monkeypatch, key, body, prefix=prefix)
    return arrays


def tarball(members):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def check_fashion(arrays, loaded):
    (x_train, y_train), (x_test, y_test) = loaded
    for name, got in zip(("x_train", "y_train", "x_test", "y_test"), (x_train, y_train, x_test, y_test)):
        assert got.dtype == np.uint8 and got.shape == arrays[name].shape
        np.testing.assert_array_equal(got, arrays[name])


def test_fashion_mnist_downloads_checks_caches_and_reloads_offline(server, home, monkeypatch, capsys):
    arrays = publish_fashion(server, monkeypatch)
    check_fashion(arrays, fashion_mnist.load_data())
    out = capsys.readouterr().out
    assert out.count(f"Downloading data from {server.base}/fashion-mnist/") == 4
    assert files_in(home) == sorted(os.path.join("datasets", k) for k in FASHION_KEYS.values())
    server.files.clear()                                          # the server now has nothing
    make_originals_unreachable(monkeypatch, FASHION_KEYS.values())
    check_fashion(arrays, fashion_mnist.load_data())
    assert "Downloading" not in capsys.readouterr().out


def test_cifar10_binary_records_become_keras_nhwc_uint8(server, home, monkeypatch):
    rng = np.random.default_rng(1)
    chw = rng.integers(0, 256, (12, 3, 32, 32), dtype=np.uint8)     # 5 batches of 2, then 2 test images
    labels = np.arange(12, dtype=np.uint8) % 10
    records = np.concatenate([labels[:, None], chw.reshape(12, -1)], axis=1)
    members = {f"cifar-10-batches-bin/data_batch_{i}.bin": records[2 * i - 2:2 * i].tobytes() for i in range(1, 6)}
    members["cifar-10-batches-bin/test_batch.bin"] = records[10:].tobytes()
    members["cifar-10-batches-bin/batches.meta.txt"] = b"airplane\n"
    publish(server, monkeypatch, "cifar-10-binary.tar.gz", tarball(members))
    (x_train, y_train), (x_test, y_test) = cifar10.load_data()
    assert x_train.shape == (10, 32, 32, 3) and x_test.shape == (2, 32, 32, 3)
    assert y_train.shape == (10, 1) and y_test.shape == (2, 1)
    assert {a.dtype for a in (x_train, y_train, x_test, y_test)} == {np.dtype(np.uint8)}
    assert y_train[:, 0].tolist() == list(range(10)) and y_test[:, 0].tolist() == [0, 1]
    raw = records[0]                                 # image 0: label byte, then R, G, B planes of 1024
    assert x_train[0, 0, 1, 0] == raw[1 + 1]                         # red, row 0, column 1
    assert x_train[0, 2, 5, 1] == raw[1 + 1024 + 2 * 32 + 5]         # green, row 2, column 5
    assert x_train[0, 31, 31, 2] == raw[3072]                        # blue, last pixel
    np.testing.assert_array_equal(x_test, chw[10:].transpose(0, 2, 3, 1))


@pytest.fixture
def cifar100_files(server, home, monkeypatch):
    rng = np.random.default_rng(2)
    chw = rng.integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
    coarse, fine = np.array([19, 0, 4, 7, 3], np.uint8), np.array([99, 1, 42, 8, 60], np.uint8)
    records = np.concatenate([coarse[:, None], fine[:, None], chw.reshape(5, -1)], axis=1)
    publish(server, monkeypatch, "cifar-100-binary.tar.gz", tarball({
        "cifar-100-binary/train.bin": records[:3].tobytes(), "cifar-100-binary/test.bin": records[3:].tobytes()}))
    return chw, coarse, fine


@pytest.mark.parametrize("label_mode", ["fine", "coarse"])
def test_cifar100_label_modes(cifar100_files, label_mode):
    chw, coarse, fine = cifar100_files
    want = fine if label_mode == "fine" else coarse
    (x_train, y_train), (x_test, y_test) = cifar100.load_data(label_mode=label_mode)
    assert x_train.dtype == np.uint8 and x_train.shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(x_test, chw[3:].transpose(0, 2, 3, 1))
    assert y_train.dtype == np.int64 and y_train.shape == (3, 1) and y_test.shape == (2, 1)
    assert y_train[:, 0].tolist() == want[:3].tolist() and y_test[:, 0].tolist() == want[3:].tolist()


def test_cifar100_refuses_an_unknown_label_mode_before_downloading(home):
    with pytest.raises(ValueError, match=r'label_mode must be one of "fine", "coarse"; received label_mode=\'Fine\''):
        cifar100.load_data(label_mode="Fine")
    assert not home.exists()


def test_a_wrong_hash_is_refused_and_nothing_is_cached(server, home, monkeypatch):
    key = FASHION_KEYS["y_test"]
    good, bad = b"the published file", b"the published filE"
    publish(server, monkeypatch, key, bad, pinned=good)
    with pytest.raises(DatasetError) as err:
        download.fetch(key, "Fashion-MNIST")
    assert f"received SHA-256 {sha(bad)}" in str(err.value) and f"expected {sha(good)}" in str(err.value)
    assert "nothing was cached" in str(err.value)
    assert files_in(home) == []                                      # no file, no temporary file


@pytest.mark.parametrize("announce_length", [True, False])
def test_a_truncated_download_is_refused_and_nothing_is_cached(server, home, monkeypatch, announce_length):
    key = "cifar-10-binary.tar.gz"
    body = bytes(range(256)) * 40
    publish(server, monkeypatch, key, body)
    server.cut["/" + key], server.no_length = 1000, not announce_length     # the connection closes early
    with pytest.raises((download.DownloadError, DatasetError)) as err:
        download.fetch(key, "CIFAR-10")
    message = str(err.value)
    if announce_length:                        # the server said how much was coming: a cut transfer
        assert isinstance(err.value, download.DownloadError) and "cut short: 1000 of 10240 bytes" in message
    else:                                      # it did not: the pinned size and hash catch it
        assert isinstance(err.value, DatasetError) and "(1000 bytes), expected" in message
    assert "nothing was cached" in message and files_in(home) == []


def test_more_bytes_than_pinned_are_refused(server, home, monkeypatch):
    key = FASHION_KEYS["y_train"]
    publish(server, monkeypatch, key, b"x" * 5000, pinned=b"x" * 10)
    with pytest.raises(DatasetError, match="sends more than the pinned 10 bytes"):
        download.fetch(key, "Fashion-MNIST")
    assert files_in(home) == []


def test_offline_the_error_says_what_to_download_and_where(home, monkeypatch):
    key = FASHION_KEYS["x_train"]
    url = f"http://127.0.0.1:{closed_port()}/{key}"
    monkeypatch.setitem(download.PINNED, key, (url, 10, "ab" * 32))
    with pytest.raises(download.DownloadError) as err:                # a ConnectionError
        fashion_mnist.load_data()
    message, target = str(err.value), str(home / "datasets" / "fashion-mnist" / "train-images-idx3-ubyte.gz")
    assert isinstance(err.value, ConnectionError)
    assert f"download {url} elsewhere and place it at {target}" in message and "ab" * 32 in message
    assert files_in(home) == []


def test_a_server_that_never_answers_times_out(home, monkeypatch):
    key = FASHION_KEYS["y_test"]
    with socket.socket() as silent:                # accepts connections (backlog) but never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        monkeypatch.setitem(download.PINNED, key, (f"http://127.0.0.1:{silent.getsockname()[1]}/{key}", 10, "0" * 64))
        monkeypatch.setattr(download, "TIMEOUT", 0.2)
        with pytest.raises(download.DownloadError, match="timed out"):
            download.fetch(key, "Fashion-MNIST")
    assert files_in(home) == []


def test_http_404_is_a_download_error(server, home, monkeypatch):
    key = FASHION_KEYS["y_test"]
    publish(server, monkeypatch, key, b"abc")
    server.files.clear()
    with pytest.raises(download.DownloadError, match="HTTP Error 404"):
        download.fetch(key, "Fashion-MNIST")
    assert files_in(home) == []


def test_an_interrupted_download_leaves_no_temporary_file(server, home, monkeypatch):
    key = FASHION_KEYS["x_test"]
    publish(server, monkeypatch, key, b"y" * 3000)

    def interrupt(self, current, values=None, finished=None):
        raise KeyboardInterrupt
    monkeypatch.setattr(download.ProgressBar, "update", interrupt)
    with pytest.raises(KeyboardInterrupt):
        download.fetch(key, "Fashion-MNIST")
    assert files_in(home) == []


def test_a_cached_file_is_checked_on_every_load(server, home, monkeypatch):
    arrays = publish_fashion(server, monkeypatch)
    fashion_mnist.load_data()
    path = home / "datasets" / FASHION_KEYS["y_train"]
    damaged = bytearray(path.read_bytes())
    damaged[-1] ^= 1
    path.write_bytes(bytes(damaged))
    with pytest.raises(DatasetError) as err:
        fashion_mnist.load_data()
    assert f"{path} fails its checksum: SHA-256 {sha(bytes(damaged))}" in str(err.value)
    assert f"expected {download.PINNED[FASHION_KEYS['y_train']][2]}" in str(err.value)
    path.unlink()                                      # as the message says: delete, load again
    check_fashion(arrays, fashion_mnist.load_data())


def test_a_file_placed_by_hand_is_used_without_the_network(home, monkeypatch):
    arrays, files = fashion_files(np.random.default_rng(0))
    (home / "datasets" / "fashion-mnist").mkdir(parents=True)
    for key, body in files.items():
        monkeypatch.setitem(download.PINNED, key, (f"http://127.0.0.1:{closed_port()}/{key}", len(body), sha(body)))
        (home / "datasets" / key).write_bytes(body)
    check_fashion(arrays, fashion_mnist.load_data())


def test_the_mirror_variable_replaces_the_original_urls(server, home, monkeypatch, capsys):
    arrays = publish_fashion(server, monkeypatch, prefix="classroom/")
    make_originals_unreachable(monkeypatch, FASHION_KEYS.values())
    monkeypatch.setenv("TINYCNN_DATASETS_MIRROR", server.base + "/classroom/")
    check_fashion(arrays, fashion_mnist.load_data())
    wanted = f"Downloading data from {server.base}/classroom/fashion-mnist/t10k-labels-idx1-ubyte.gz"
    assert wanted in capsys.readouterr().out


def test_a_file_url_mirror_works_too(tmp_path, home, monkeypatch):
    arrays, files = fashion_files(np.random.default_rng(0))
    stick = tmp_path / "stick"
    (stick / "fashion-mnist").mkdir(parents=True)
    for key, body in files.items():
        monkeypatch.setitem(download.PINNED, key, (f"http://127.0.0.1:{closed_port()}/{key}", len(body), sha(body)))
        (stick / key).write_bytes(body)
    monkeypatch.setenv("TINYCNN_DATASETS_MIRROR", stick.as_uri())
    check_fashion(arrays, fashion_mnist.load_data())
    assert files_in(home) == sorted(os.path.join("datasets", k) for k in files)


def test_a_bad_mirror_value_names_the_variable(home, monkeypatch):
    monkeypatch.setenv("TINYCNN_DATASETS_MIRROR", "classroom-server/datasets")
    with pytest.raises(ValueError, match="TINYCNN_DATASETS_MIRROR must be an http://, https:// or file:// URL"):
        fashion_mnist.load_data()


def test_cache_location_follows_tinycnn_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYCNN_HOME", str(tmp_path / "elsewhere"))
    assert download.cache_dir() == str(tmp_path / "elsewhere" / "datasets")
    monkeypatch.delenv("TINYCNN_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert download.cache_dir() == os.path.join(str(tmp_path), ".tinycnn", "datasets")


def test_the_real_pins_are_complete():
    assert sorted(download.PINNED) == sorted([*FASHION_KEYS.values(), "cifar-10-binary.tar.gz",
                                              "cifar-100-binary.tar.gz"])
    for key, (url, size, digest) in download.PINNED.items():
        assert url.startswith("https://") and url.endswith(key.split("/")[-1]) and size > 5000
        assert len(digest) == 64 and int(digest, 16) >= 0
