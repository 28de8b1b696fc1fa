"""Safe weights files (issue 6): written atomically, never pickled, and every bad file is refused clearly.

save_weights writes a temp file beside the target, then renames it over the target, so a
reader (or a crash) sees the old file or the new one, never half of one. load_weights reads
with allow_pickle=False and turns every way a file can be wrong into a WeightsFileError
(a ValueError) that names the file and says what is wrong with it.
"""
import io
import os
import pathlib
import re
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinycnn
from tinycnn.layers import Conv2D, Dense, Flatten, MaxPooling2D
from tinycnn.models import MissingWeightsFileError, Sequential, WeightsFileError

PACKAGE = pathlib.Path(tinycnn.__file__).parent


def model(filters=2, units=3, extra=False):
    layers = [Conv2D(filters, 3, activation="relu", input_shape=(6, 6, 1)), MaxPooling2D(), Flatten()]
    if extra:
        layers.append(Dense(4, activation="relu"))
    return Sequential(layers + [Dense(units, activation="softmax")])


def same(a, b):
    return len(a) == len(b) and all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b))


@pytest.fixture
def saved(tmp_path):
    """A model, its weights and the file they were saved to."""
    m = model()
    path = tmp_path / "model.weights.npz"
    m.save_weights(path)
    return m, m.get_weights(), path


# ----------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------
def test_round_trip(saved):
    m, weights, path = saved
    other = model()
    assert not same(other.get_weights(), weights)
    other.load_weights(path)
    assert same(other.get_weights(), weights)
    assert all(w.dtype == np.float32 for w in other.get_weights())


def test_no_temp_file_is_left_behind(saved, tmp_path):
    m, _, path = saved
    m.save_weights(path)                      # overwrite too
    m.save_weights(str(tmp_path / "second.weights.npz"))
    assert sorted(os.listdir(tmp_path)) == ["model.weights.npz", "second.weights.npz"]


def test_the_file_gets_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        model().save_weights(tmp_path / "w.npz")
    finally:
        os.umask(old)
    assert (tmp_path / "w.npz").stat().st_mode & 0o777 == 0o644     # not mkstemp's private 0o600


def test_the_file_is_a_zip_of_npy_arrays_with_no_pickle(saved):
    _, weights, path = saved
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        assert names == ["0.Conv2D.kernel.npy", "0.Conv2D.bias.npy", "3.Dense.kernel.npy", "3.Dense.bias.npy"]
        for name in names:
            raw = archive.read(name)
            assert raw.startswith(b"\x93NUMPY")                        # the .npy format, not a pickle
            header = raw[10:raw.index(b"\n")].decode("latin1")
            assert "'descr': '<f4'" in header and "O" not in re.sub(r"'\w+':", "", header)
    with np.load(path, allow_pickle=False) as archive:
        assert same([archive[n] for n in archive.files], weights)


def test_no_pickle_anywhere_in_the_library():
    pattern = re.compile(r"import (c?pickle|joblib|dill|shelve)|from (c?pickle|joblib|dill|shelve) import|"
                         r"allow_pickle\s*=\s*True|pickle\.(load|dump)|torch\.load")
    offenders = [f"{path.relative_to(PACKAGE)}:{n}" for path in PACKAGE.rglob("*.py")
                 for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []


class Boom(OSError):
    pass


@pytest.mark.parametrize("error", [Boom("disk full"), KeyboardInterrupt()])
def test_a_failure_while_writing_leaves_the_old_file_untouched(saved, tmp_path, monkeypatch, error):
    m, _, path = saved
    before = path.read_bytes()
    real_savez = np.savez

    def half_then_fail(f, **arrays):       # write some bytes, as a full disk would, then fail
        buffer = io.BytesIO()
        real_savez(buffer, **arrays)
        f.write(buffer.getvalue()[:100])
        raise error

    monkeypatch.setattr(np, "savez", half_then_fail)
    m.set_weights([w + 1 for w in m.get_weights()])
    with pytest.raises(type(error)):
        m.save_weights(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.weights.npz"]


def test_a_failure_in_the_rename_leaves_no_temp_file(saved, tmp_path, monkeypatch):
    m, _, path = saved
    before = path.read_bytes()

    def refuse(src, dst):
        raise PermissionError("read-only")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError):
        m.save_weights(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["model.weights.npz"]


def test_saving_into_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"save_weights: the folder .*nowhere.* does not exist"):
        model().save_weights(tmp_path / "nowhere" / "w.npz")


def test_an_unbuilt_model_has_nothing_to_save_or_load(tmp_path):
    unbuilt = Sequential([Dense(2)])
    with pytest.raises(ValueError, match="not built yet"):
        unbuilt.save_weights(tmp_path / "w.npz")
    with pytest.raises(ValueError, match=r"not built yet.*input_shape"):
        unbuilt.load_weights(tmp_path / "w.npz")


# ----------------------------------------------------------------------------------------
# Reading: every bad file is a WeightsFileError that names the file, and changes nothing
# ----------------------------------------------------------------------------------------
def refused(m, path, *fragments, error=WeightsFileError):
    """load_weights(path) raises `error` naming the path and every fragment; the weights are unchanged."""
    before = m.get_weights()
    with pytest.raises(error) as info:
        m.load_weights(path)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert "load_weights" in message and repr(str(path)) in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"
    assert same(m.get_weights(), before)
    return message


def test_a_missing_file(tmp_path):
    refused(model(), tmp_path / "nope.weights.npz", "no weights file", error=MissingWeightsFileError)
    assert issubclass(MissingWeightsFileError, FileNotFoundError)
    refused(model(), tmp_path, "no weights file", error=MissingWeightsFileError)      # a folder


def test_a_truncated_file(saved, tmp_path):
    m, _, path = saved
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 1, 10, 0):
        bad = tmp_path / f"cut{cut}.npz"
        bad.write_bytes(data[:cut])
        refused(m, bad, "truncated, corrupted or in another format", "save_weights()")


def test_corrupted_bytes(saved, tmp_path):
    m, _, path = saved
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 32] = bytes(b ^ 0xFF for b in data[middle:middle + 32])
    bad = tmp_path / "flipped.npz"
    bad.write_bytes(bytes(data))
    refused(m, bad, "truncated or corrupted")


@pytest.mark.parametrize("other, fragments", [
    (lambda: model(filters=4), ["another architecture", "'0.Conv2D.kernel'", "(3, 3, 1, 4)", "needs (3, 3, 1, 2)"]),
    (lambda: model(units=5), ["another architecture", "'3.Dense.kernel'", "(8, 5)", "needs (8, 3)"]),
    (lambda: model(extra=True), ["another architecture", "holds 6 arrays", "has 4", "missing []",
                                 "unexpected ['4.Dense.kernel', '4.Dense.bias']"]),
    (lambda: Sequential([Flatten(input_shape=(6, 6, 1)), Dense(3)]),
     ["another architecture", "holds 2 arrays", "missing ['0.Conv2D.kernel', '0.Conv2D.bias', '3.Dense.kernel'",
      "unexpected ['1.Dense.kernel', '1.Dense.bias']"]),
])
def test_a_file_from_another_architecture(saved, tmp_path, other, fragments):
    m, _, _ = saved
    path = tmp_path / "other.npz"
    other().save_weights(path)
    refused(m, path, *fragments)


def test_files_that_are_not_weights_archives(saved, tmp_path):
    m, _, _ = saved
    text = tmp_path / "notes.txt"
    text.write_text("these are not weights\n")
    refused(m, text, "not a weights file", "expected an .npz archive")
    array = tmp_path / "one.npy"
    np.save(array, np.zeros(3, np.float32))
    refused(m, array, "not a weights file")
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    refused(m, empty, "not a weights file")
    other_zip = tmp_path / "other.zip"
    with zipfile.ZipFile(other_zip, "w") as archive:
        archive.writestr("readme.txt", "hello")
    refused(m, other_zip, "another architecture", "holds 1 arrays", "unexpected ['readme.txt']")


def test_integer_arrays_are_refused(saved, tmp_path):
    m, weights, _ = saved
    path = tmp_path / "ints.npz"
    names = ["0.Conv2D.kernel", "0.Conv2D.bias", "3.Dense.kernel", "3.Dense.bias"]
    np.savez(path, **{n: w.astype(np.int32) for n, w in zip(names, weights)})
    refused(m, path, "another architecture", "int32", "(float)")


UNPICKLED = []


class Payload:
    """Unpickling this would run code: the loader must never do it."""

    def __reduce__(self):
        return (UNPICKLED.append, ("ran",))


def test_a_pickled_archive_is_refused_without_unpickling(saved, tmp_path):
    m, weights, _ = saved
    path = tmp_path / "evil.npz"
    names = ["0.Conv2D.kernel", "0.Conv2D.bias", "3.Dense.kernel", "3.Dense.bias"]
    arrays = dict(zip(names, weights))
    arrays["0.Conv2D.kernel"] = np.array([Payload()], dtype=object)
    np.savez(path, **arrays)
    refused(m, path, "truncated or corrupted", "allow_pickle=False")
    assert UNPICKLED == []


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_damage_is_either_refused_or_harmless(saved, tmp_path, data):
    """One changed byte or a cut anywhere: a WeightsFileError, or (in zip padding) the exact weights."""
    m, weights, path = saved
    raw = bytearray(path.read_bytes())
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[:data.draw(st.integers(0, len(raw) - 1), label="cut")]
    else:
        position = data.draw(st.integers(0, len(raw) - 1), label="position")
        raw[position] = data.draw(st.integers(0, 255).filter(lambda b: b != raw[position]), label="byte")
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(bytes(raw))
    fresh = model()
    start = fresh.get_weights()
    try:
        fresh.load_weights(damaged)
    except WeightsFileError:
        assert same(fresh.get_weights(), start)
    else:
        assert same(fresh.get_weights(), weights)


def test_a_keras_model_name_is_refused_for_weights_with_the_way_out(tmp_path):
    model = Sequential([Dense(2, input_shape=(3,))])
    path = tmp_path / "model.keras"
    with pytest.raises(ValueError, match=r"whole-model \.keras file; use model\.save"):
        model.save_weights(path)
    assert not path.exists()
    path.write_bytes(b"not ours")
    with pytest.raises(ValueError, match=r"whole-model \.keras file"):
        model.load_weights(path)
