"""image_dataset_from_directory: Keras 3's file order, labels, split and resizing, on small PNG/JPEG folders."""
import os

import numpy as np
import pytest
from PIL import Image

import tinycnn
from tinycnn.image_dataset import resize
from tinycnn.layers import Dense, Flatten, Input
from tinycnn.models import Sequential
from tinycnn.utils import image_dataset_from_directory


def colour(i):
    return np.full((6, 8, 3), (10 * i, 200 - 7 * i, (37 * i) % 256), dtype=np.uint8)


@pytest.fixture
def folder(tmp_path):
    """cats/ 3 PNGs (one in a subfolder), dogs/ 2 PNGs + 1 JPEG, a text file, a hidden folder; 6 images."""
    files = {"dogs/b10.png": 4, "dogs/b2.png": 5, "dogs/a.jpg": 6, "cats/z.png": 1, "cats/A.png": 2,
             "cats/sub/m.PNG": 3, ".hidden/x.png": 9}
    for name, i in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(colour(i)).save(path, format="JPEG" if name.endswith(".jpg") else "PNG")
    (tmp_path / "cats" / "notes.txt").write_text("not an image")
    return tmp_path


def rel(ds, root):
    return [os.path.relpath(p, root) for p in ds.file_paths]


def test_keras_order_classes_and_int_labels(folder, capsys):
    ds = image_dataset_from_directory(folder, shuffle=False, image_size=(6, 8), batch_size=4)
    assert "Found 6 files belonging to 2 classes." in capsys.readouterr().out
    assert ds.class_names == ["cats", "dogs"]
    # os.walk order: a folder's own files sorted (uppercase first), then its subfolders
    assert rel(ds, folder) == ["cats/A.png", "cats/z.png", "cats/sub/m.PNG", "dogs/a.jpg", "dogs/b10.png",
                               "dogs/b2.png"]
    assert len(ds) == 2
    (x1, y1), (x2, y2) = list(ds)
    assert x1.dtype == np.float32 and x1.shape == (4, 6, 8, 3) and x2.shape == (2, 6, 8, 3)
    assert y1.dtype == np.int32 and list(np.concatenate([y1, y2])) == [0, 0, 0, 1, 1, 1]
    np.testing.assert_array_equal(x1[0], colour(2))                # PNG exact, values 0..255 not rescaled
    np.testing.assert_array_equal(x2[0], colour(4))               # b10 before b2: sorted as strings
    assert np.abs(x1[3] - colour(6)).max() < 8                     # JPEG: lossy


def test_label_modes_class_names_order_and_color_modes(folder):
    kw = dict(shuffle=False, image_size=(3, 4), batch_size=6, verbose=False)
    _, y = next(iter(image_dataset_from_directory(folder, label_mode="categorical", **kw)))
    np.testing.assert_array_equal(y, np.eye(2, dtype=np.float32)[[0, 0, 0, 1, 1, 1]])
    _, y = next(iter(image_dataset_from_directory(folder, label_mode="binary", **kw)))
    assert y.dtype == np.float32 and y.shape == (6, 1)
    ds = image_dataset_from_directory(folder, class_names=["dogs", "cats"], **kw)
    assert ds.class_names == ["dogs", "cats"] and list(next(iter(ds))[1]) == [0, 0, 0, 1, 1, 1]
    assert rel(ds, folder)[0] == "dogs/a.jpg"
    x = next(iter(image_dataset_from_directory(folder, label_mode=None, color_mode="grayscale", **kw)))
    assert isinstance(x, np.ndarray) and x.shape == (6, 3, 4, 1)
    x, _ = next(iter(image_dataset_from_directory(folder, color_mode="rgba", **kw)))
    assert x.shape == (6, 3, 4, 4) and (x[..., 3] == 255).all()
    x, y = next(iter(image_dataset_from_directory(folder, batch_size=None, shuffle=False, image_size=(3, 4),
                                                  verbose=False)))
    assert x.shape == (3, 4, 3) and y == 0                        # batch_size=None: single samples


def test_shuffle_and_validation_split_as_keras(folder):
    kw = dict(image_size=(2, 2), seed=7, validation_split=0.34, verbose=False)
    everything = image_dataset_from_directory(folder, seed=7, image_size=(2, 2), verbose=False)
    order = np.arange(6)
    np.random.RandomState(7).shuffle(order)                        # Keras shuffles the sorted list once
    sorted_paths = image_dataset_from_directory(folder, shuffle=False, verbose=False).file_paths
    assert everything.file_paths == [sorted_paths[i] for i in order]
    train = image_dataset_from_directory(folder, subset="training", **kw)
    val = image_dataset_from_directory(folder, subset="validation", **kw)
    both = image_dataset_from_directory(folder, subset="both", **kw)
    assert train.file_paths == everything.file_paths[:4]           # int(0.34 * 6) = 2 files validate: the last
    assert val.file_paths == everything.file_paths[4:]
    assert [d.file_paths for d in both] == [train.file_paths, val.file_paths]
    labels = np.concatenate([y for _, y in train])
    assert sorted(labels) == sorted(everything.labels[:4])         # each pass reshuffles the training files
    assert sorted(labels) == sorted(int("dogs" in p) for p in train.file_paths)
    assert [list(y) for _, y in both[1]] == [list(everything.labels[4:])]    # "both": validation unshuffled
    with pytest.raises(ValueError, match="give a seed"):
        image_dataset_from_directory(folder, validation_split=0.2, subset="training")
    with pytest.raises(ValueError, match="subset is set, validation_split must be set"):
        image_dataset_from_directory(folder, subset="training", seed=1)
    with pytest.raises(ValueError, match="empty training or validation subset"):
        image_dataset_from_directory(folder, validation_split=0.1, subset="training", seed=1, verbose=False)


def test_resize_matches_tf_image_resize_formulas():
    img = np.arange(2 * 3, dtype=np.float32).reshape(2, 3, 1) * 10     # [[0, 10, 20], [30, 40, 50]]
    up = resize(img, (4, 3), "bilinear")[..., 0]
    # rows: src = (i + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25 -> clamp, lerp 0.25, 0.75, clamp
    np.testing.assert_allclose(up[:, 0], [0, 7.5, 22.5, 30])
    np.testing.assert_array_equal(resize(img, (1, 1), "nearest")[..., 0], [[40]])      # floor(0.5 * 2), floor(0.5 * 3)
    np.testing.assert_allclose(resize(img, (1, 1), "bilinear")[..., 0], [[25]])        # the centre, (0.5, 1)


# tf.image.resize(img, size, method) computed by TensorFlow 2.21 (Keras 3.15's backend), for this 3x4 image
TF_IMAGE = np.array([[0, 21, 42, 63], [84, 105, 126, 147], [168, 189, 210, 231]], np.uint8)[..., None]
TF_RESIZED = {
    ("bilinear", (5, 3)): [[3.5, 31.5, 59.500004], [37.100002, 65.100006, 93.100006], [87.5, 115.5, 143.5],
                           [137.900009, 165.900009, 193.900009], [171.5, 199.5, 227.5]],
    ("nearest", (5, 3)): [[0, 42, 63], [0, 42, 63], [84, 126, 147], [168, 210, 231], [168, 210, 231]],
    ("bilinear", (2, 7)): [[21.0, 28.500002, 40.5, 52.5, 64.5, 76.5, 84.0],
                           [147.0, 154.5, 166.5, 178.5, 190.5, 202.5, 210.0]],
    ("nearest", (2, 7)): [[0, 0, 21, 42, 42, 63, 63], [168, 168, 189, 210, 210, 231, 231]],
}


@pytest.mark.parametrize("method, size", list(TF_RESIZED))
def test_resize_parity_with_tensorflow(method, size):
    np.testing.assert_allclose(resize(TF_IMAGE, size, method)[..., 0], TF_RESIZED[method, size], atol=1e-4)


def test_crop_to_aspect_ratio_takes_the_centre(tmp_path):
    img = np.zeros((4, 8, 3), np.uint8)
    img[:, 2:6] = 200                                              # the centre 4x4 square
    (tmp_path / "a").mkdir()
    Image.fromarray(img).save(tmp_path / "a" / "i.png")
    x, _ = next(iter(image_dataset_from_directory(tmp_path, image_size=(4, 4), crop_to_aspect_ratio=True,
                                                  verbose=False)))
    assert (x == 200).all()


def test_unsupported_arguments_are_refused(folder):
    with pytest.raises(ValueError, match="interpolation='bilinear' or 'nearest'.*'bicubic' \\(Keras has it"):
        image_dataset_from_directory(folder, interpolation="bicubic")
    for kwargs in ({"pad_to_aspect_ratio": True}, {"format": "grain"}, {"data_format": "channels_first"}):
        with pytest.raises(ValueError, match="not supported by tinycnn"):
            image_dataset_from_directory(folder, **kwargs)
    with pytest.raises(ValueError, match="label_mode='binary' needs exactly 2 classes"):
        image_dataset_from_directory(folder, labels=[0, 1, 2, 0, 1, 2, 0], label_mode="binary", verbose=False)
    with pytest.raises(ValueError, match="one label per image file; received 2 labels for 7 files"):  # .hidden too
        image_dataset_from_directory(folder, labels=[0, 1], verbose=False)


def test_fit_evaluate_predict_on_the_dataset(folder):
    tinycnn.set_random_seed(0)
    train = image_dataset_from_directory(folder, image_size=(4, 4), batch_size=4, seed=3, verbose=False)
    model = Sequential([Input((4, 4, 3)), Flatten(), Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(train, epochs=2, shuffle=False, verbose=0)
    assert history.epoch == [0, 1] and np.isfinite(history.history["loss"]).all()
    loss, accuracy = model.evaluate(train, verbose=0)
    assert np.isfinite(loss) and 0 <= accuracy <= 1
    assert model.predict(train, verbose=0).shape == (6, 2)
