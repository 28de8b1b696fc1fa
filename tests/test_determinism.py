"""Determinism: on the NumPy backend, the same set_random_seed(s) gives bit-for-bit the same training.

One seed drives everything random in tinycnn: the initial weights, the shuffling of every
epoch and the dropout masks. So two runs with the same seed must agree exactly (np.array_equal,
not allclose), and a different seed must give different weights.
"""
import numpy as np
import pytest

import tinycnn
from tinycnn import seed as tutorial
from tinycnn.layers import Dropout


def train(seed, x, y, **fit):
    """A fresh seed model (two Dropouts and three more), trained briefly; its weights and history."""
    tinycnn.set_backend("numpy")
    tinycnn.backend.clear_session()
    tinycnn.set_random_seed(seed)
    model = tutorial.build_model()
    model.compile("adam", "categorical_crossentropy", ["accuracy"])
    history = model.fit(x, y, verbose=0, **{"batch_size": 32, "epochs": 2, "validation_split": 0.25, **fit})
    return model.get_weights(), history.history


@pytest.fixture(scope="module")
def subset():
    rng = np.random.default_rng(7)
    x = rng.random((96, 28, 28, 1), dtype=np.float32)
    y = tinycnn.to_categorical(rng.integers(0, 10, 96), 10)
    return x, y


def test_the_same_seed_gives_bitwise_identical_weights(subset):
    first_weights, first_history = train(42, *subset)
    second_weights, second_history = train(42, *subset)
    assert len(first_weights) == 8
    assert all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(first_weights, second_weights))
    assert first_history == second_history


def test_another_seed_gives_other_weights(subset):
    first, _ = train(1, *subset, epochs=1)
    second, _ = train(2, *subset, epochs=1)
    assert not any(np.array_equal(a, b) for a, b in zip(first, second) if a.ndim > 1)


def test_dropout_with_its_own_seed_repeats_its_masks():
    tinycnn.set_backend("numpy")
    x = np.ones((4, 10), np.float32)
    masks = [Dropout(0.5, seed=3).forward(x, training=True) for _ in range(2)]
    assert np.array_equal(*masks) and 0 < (masks[0] == 0).sum() < x.size
