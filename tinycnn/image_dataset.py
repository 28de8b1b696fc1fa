"""image_dataset_from_directory: folders of images as batches for fit, as Keras 3 lists and labels them.

    main_directory/cat/001.png, main_directory/dog/001.jpg, ...  ->  (x, y) batches, class_names ["cat", "dog"]

Keras's rules, kept exactly: the class folders in sorted order give the class indices; inside
each, the files in os.walk order (folders sorted, then the files sorted by name); with
shuffle=True the whole list is shuffled once by np.random.RandomState(seed) (seed None: one drawn
from NumPy's global generator, as Keras); validation_split keeps the last int(split * n) files
for "validation", the others for "training". An image is decoded by PIL and resized as
tf.image.resize does (half-pixel centres, no antialiasing), so its values are Keras's:

    bilinear:  src = (i + 0.5) * in / out - 0.5;  lo = max(floor(src), 0), hi = min(ceil(src), in - 1)
               out = top + (bottom - top) * fy,  top = p[lo_y, lo_x] + (p[lo_y, hi_x] - p[lo_y, lo_x]) * fx
    nearest:   src = min(floor((i + 0.5) * in / out), in - 1)

The batches are float32 NHWC arrays of values 0..255 (not rescaled), as Keras's (its "nearest"
gives uint8; here float32 too). Each pass (each epoch) reads the files again, in a new order
with shuffle=True (tf.data shuffles within a buffer of 8 batches; here the whole set).
"""
import os

import numpy as np

FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")     # Keras's list; PIL reads them all
CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}
PIL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def index_directory(directory, labels, class_names, follow_links):
    """(paths, integer labels or None, class names or None), in Keras's order, before shuffling."""
    if labels == "inferred":
        folders = sorted(d for d in os.listdir(directory)
                         if os.path.isdir(os.path.join(directory, d)) and not d.startswith("."))
        if class_names is not None:
            if not set(class_names) <= set(folders):
                raise ValueError(f"image_dataset_from_directory: class_names {list(class_names)} do not match "
                                 f"the subfolders of {directory!r}; expected names among {folders}")
            folders = list(class_names)             # the order given sets the class indices
    else:
        folders = [""]                              # the folders are not classes: index all files
    paths, indices = [], []
    for index, folder in enumerate(folders):
        top = os.path.join(directory, folder)
        for root, _, files in sorted(os.walk(top, followlinks=follow_links), key=lambda entry: entry[0]):
            for name in sorted(files):
                if name.lower().endswith(FORMATS):
                    paths.append(os.path.join(root, name))
                    indices.append(index)
    if labels == "inferred":
        return paths, np.array(indices, dtype=np.int32), folders
    if labels is None:
        return paths, None, None
    if len(labels) != len(paths):
        raise ValueError(f"image_dataset_from_directory: expected one label per image file; received "
                         f"{len(labels)} labels for {len(paths)} files in {directory!r}")
    return paths, np.asarray(labels, dtype=np.int32), [str(c) for c in sorted(set(labels))]


def split(paths, labels, validation_split, subset):
    """Keras's split: the last int(validation_split * n) files validate, the rest train."""
    n_val = int(validation_split * len(paths))
    if n_val == 0 or n_val == len(paths):
        raise ValueError(f"image_dataset_from_directory: validation_split={validation_split} of {len(paths)} "
                         f"files leaves an empty training or validation subset")
    part = slice(None, -n_val) if subset == "training" else slice(-n_val, None)
    print(f"Using {len(paths) - n_val if subset == 'training' else n_val} files for {subset}.")
    return paths[part], None if labels is None else labels[part]


def sample_points(n_in, n_out, interpolation):
    """The source indices (and weights) of each output row or column, as tf.image.resize."""
    scale = n_in / n_out
    if interpolation == "nearest":
        return np.minimum(np.floor((np.arange(n_out) + 0.5) * scale).astype(np.int64), n_in - 1)
    src = (np.arange(n_out) + 0.5) * scale - 0.5
    low = np.floor(src)
    lo = np.maximum(low, 0).astype(np.int64)
    hi = np.minimum(np.ceil(src), n_in - 1).astype(np.int64)
    return lo, hi, (src - low).astype(np.float32)


def resize(image, size, interpolation):
    """(H, W, C) -> (h, w, C) float32, as tf.image.resize(image, size, method) with its defaults."""
    image = image.astype(np.float32)
    (h, w), (rows, cols) = size, image.shape[:2]
    if interpolation == "nearest":
        return image[sample_points(rows, h, "nearest")][:, sample_points(cols, w, "nearest")]
    y0, y1, fy = sample_points(rows, h, interpolation)
    x0, x1, fx = sample_points(cols, w, interpolation)
    fx, fy = fx[None, :, None], fy[:, None, None]
    top = image[y0][:, x0] + (image[y0][:, x1] - image[y0][:, x0]) * fx      # along x first, as TF
    bottom = image[y1][:, x0] + (image[y1][:, x1] - image[y1][:, x0]) * fx
    return top + (bottom - top) * fy


def center_crop(image, size):
    """Keras's smart_resize crop: the largest centred window with the target's aspect ratio."""
    (rows, cols), (h, w) = image.shape[:2], size
    crop_h = max(min(rows, int(cols * h / w)), 1)
    crop_w = max(min(cols, int(rows * w / h)), 1)
    top, left = int((rows - crop_h) / 2), int((cols - crop_w) / 2)
    return image[top:top + crop_h, left:left + crop_w]


def load_image(path, channels, size, interpolation, crop_to_aspect_ratio):
    """One file -> (h, w, channels) float32, values 0..255 (an animated GIF: its first frame)."""
    from PIL import Image                         # matplotlib's dependency; imported only when used
    with Image.open(path) as img:
        pixels = np.asarray(img.convert(PIL_MODES[channels]))
    pixels = pixels.reshape(pixels.shape[:2] + (channels,))
    if crop_to_aspect_ratio:
        pixels = center_crop(pixels, size)
    return resize(pixels, size, interpolation)


class ImageDataset:
    """A re-iterable dataset of (images, labels) batches (images alone with label_mode=None).

    len(dataset) is the number of batches; `class_names` and `file_paths` as Keras's dataset
    has them. Each iteration is one pass: fit calls iter() once per epoch.
    """

    def __init__(self, paths, labels, class_names, label_mode, batch_size, image_size, channels,
                 interpolation, crop_to_aspect_ratio, shuffle, seed):
        self.file_paths, self.labels, self.class_names = list(paths), labels, class_names
        self.label_mode, self.batch_size, self.image_size = label_mode, batch_size, tuple(image_size)
        self.channels, self.interpolation, self.crop = channels, interpolation, crop_to_aspect_ratio
        self.shuffle, self._order_rng = shuffle, np.random.default_rng(seed)

    def __len__(self):
        return len(self.file_paths) if self.batch_size is None else -(-len(self.file_paths) // self.batch_size)

    def encoded(self, index):
        """The labels of these files in label_mode's form: int32 (n,), float32 (n, 1) or one-hot (n, classes)."""
        labels = self.labels[index]
        if self.label_mode == "binary":
            return labels.astype(np.float32)[:, None]
        if self.label_mode == "categorical":
            return np.eye(len(self.class_names), dtype=np.float32)[labels]
        return labels

    def __iter__(self):
        n = len(self.file_paths)
        order = self._order_rng.permutation(n) if self.shuffle else np.arange(n)
        size = self.batch_size or 1
        for start in range(0, n, size):
            index = order[start:start + size]
            x = np.stack([load_image(self.file_paths[i], self.channels, self.image_size, self.interpolation,
                                     self.crop) for i in index])
            if self.batch_size is None:               # unbatched, as Keras with batch_size=None: one sample
                yield x[0] if self.label_mode is None else (x[0], self.encoded(index)[0])
            else:
                yield x if self.label_mode is None else (x, self.encoded(index))

    def __repr__(self):
        return (f"ImageDataset({len(self.file_paths)} files, {len(self)} batches of {self.batch_size}, "
                f"image_size={self.image_size}, class_names={self.class_names})")


def image_dataset_from_directory(directory, labels="inferred", label_mode="int", class_names=None, color_mode="rgb",
                                 batch_size=32, image_size=(256, 256), shuffle=True, seed=None, validation_split=None,
                                 subset=None, interpolation="bilinear", follow_links=False, crop_to_aspect_ratio=False,
                                 pad_to_aspect_ratio=False, data_format=None, format="tf", verbose=True):
    """Keras 3's image_dataset_from_directory, returning an ImageDataset (or two, with subset="both")."""
    where = "image_dataset_from_directory"
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise ValueError(f"{where}: directory {directory!r} is not a folder")
    if labels not in ("inferred", None):
        if not isinstance(labels, (list, tuple)):
            raise ValueError(f"{where}: labels must be 'inferred', None, or a list of integer labels, one per "
                             f"file in sorted order; received {labels!r}")
        if class_names:
            raise ValueError(f"{where}: class_names can only be given with labels='inferred'")
    if label_mode not in ("int", "categorical", "binary", None):
        raise ValueError(f"{where}: label_mode must be 'int', 'categorical', 'binary' or None; "
                         f"received {label_mode!r}")
    if labels is None or label_mode is None:
        labels = label_mode = None
    if color_mode not in CHANNELS:
        raise ValueError(f"{where}: color_mode must be 'rgb', 'rgba' or 'grayscale'; received {color_mode!r}")
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    if (not isinstance(image_size, (list, tuple)) or len(image_size) != 2
            or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in image_size)):
        raise ValueError(f"{where}: image_size must be (height, width), two positive integers; "
                         f"received {image_size!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                   or batch_size <= 0):
        raise ValueError(f"{where}: batch_size must be a positive integer or None; received {batch_size!r}")
    interpolation = str(interpolation).lower()
    if interpolation not in ("bilinear", "nearest"):
        keras_also = ("bicubic", "area", "lanczos3", "lanczos5", "gaussian", "mitchellcubic")
        raise ValueError(f"{where}: tinycnn supports interpolation='bilinear' or 'nearest'; received "
                         f"{interpolation!r}" + (" (Keras has it; tinycnn does not)" if interpolation in keras_also
                                                 else ""))
    unsupported = {"pad_to_aspect_ratio": (pad_to_aspect_ratio, False), "format": (format, "tf"),
                   "data_format": (data_format, None)}
    for arg, (value, default) in unsupported.items():
        if value != default and not (arg == "data_format" and value == "channels_last"):
            raise ValueError(f"{where}: {arg}={value!r} is not supported by tinycnn (NHWC arrays only); "
                             f"leave it at {default!r}")
    if validation_split and not 0 < validation_split < 1:
        raise ValueError(f"{where}: validation_split must be between 0 and 1; received {validation_split!r}")
    if bool(validation_split) != bool(subset):
        raise ValueError(f"{where}: if subset is set, validation_split must be set, and inversely")
    if subset not in ("training", "validation", "both", None):
        raise ValueError(f"{where}: subset must be 'training', 'validation' or 'both'; received {subset!r}")
    if validation_split and shuffle and seed is None:
        raise ValueError(f"{where}: with validation_split and shuffle, give a seed, so that the training and "
                         f"validation subsets do not overlap")
    if seed is None:
        seed = np.random.randint(1e6)                 # as Keras: from NumPy's global generator
    paths, label_list, class_names = index_directory(directory, labels, class_names, follow_links)
    if label_mode == "binary" and len(class_names) != 2:
        raise ValueError(f"{where}: label_mode='binary' needs exactly 2 classes; received class_names={class_names}")
    if verbose:
        print(f"Found {len(paths)} files" + ("." if label_list is None else
                                             f" belonging to {len(class_names)} classes."))
    if not paths:
        raise ValueError(f"{where}: no images found in {directory!r}; allowed formats: {', '.join(FORMATS)}")
    if shuffle:                                       # once, the whole list: Keras's order, and its split
        paths = [paths[i] for i in shuffled(len(paths), seed)]
        if label_list is not None:
            label_list = label_list[shuffled(len(label_list), seed)]
    common = dict(class_names=class_names, label_mode=label_mode, batch_size=batch_size, image_size=image_size,
                  channels=CHANNELS[color_mode], interpolation=interpolation,
                  crop_to_aspect_ratio=crop_to_aspect_ratio, seed=seed)
    if subset == "both":
        train = split(paths, label_list, validation_split, "training")
        val = split(paths, label_list, validation_split, "validation")
        return ImageDataset(*train, shuffle=shuffle, **common), ImageDataset(*val, shuffle=False, **common)
    if subset is not None:
        paths, label_list = split(paths, label_list, validation_split, subset)
    return ImageDataset(paths, label_list, shuffle=shuffle, **common)


def shuffled(n, seed):
    """The order np.random.RandomState(seed).shuffle gives n items (Keras shuffles paths and labels so)."""
    order = np.arange(n)
    np.random.RandomState(seed).shuffle(order)
    return order
