"""Keras parity: the seed model's weights move both ways between tinycnn and Keras through
get_weights()/set_weights(), and both give the same predictions within float32 round-off.
Skipped where TensorFlow is not installed."""
import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
pytest.importorskip("tensorflow")
pytest.importorskip("keras")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import parity  # noqa: E402

pytestmark = pytest.mark.parity


@pytest.fixture(scope="module")
def data(mnist_prepared):
    (x, y), (xt, yt) = mnist_prepared
    return x[:512], y[:512], xt[:300], yt[:300]


@pytest.fixture(scope="module")
def trained_tinycnn_weights(data):
    """Weights after a few Adam steps, so the predictions are not those of a random model."""
    import tinycnn
    from tinycnn import seed
    tinycnn.set_backend("numpy")
    tinycnn.set_random_seed(3)
    model = seed.build_model()
    model.compile(loss="categorical_crossentropy", optimizer="adam")
    x, y, _, _ = data
    for start in range(0, len(x), 64):
        model.train_on_batch(x[start:start + 64], y[start:start + 64])
    return model.get_weights()


def test_weights_and_predictions_match_both_ways(backend, data, trained_tinycnn_weights):
    _, _, xt, yt = data
    result = parity.check(xt, yt, tiny_weights=trained_tinycnn_weights, batch=128)
    assert result["same_order_and_shapes"]
    assert result["tinycnn_shapes"] == [[3, 3, 1, 32], [32], [3, 3, 32, 64], [64], [1600, 128], [128],
                                        [128, 10], [10]]
    for direction in ("tinycnn_to_keras", "keras_to_tinycnn"):
        entry = result[direction]
        assert entry["round_trip_exact"], direction
        assert entry["images"] == len(xt)
        assert entry["max_abs_diff"] < 1e-5, (direction, entry["max_abs_diff"])
        assert entry["argmax_agreement"] == 1.0, direction
        assert entry["tinycnn_accuracy"] == entry["keras_accuracy"]


def test_trained_weights_are_not_trivial(data, trained_tinycnn_weights):
    """The few steps moved the weights: parity is checked on a model that predicts something."""
    import tinycnn
    from tinycnn import seed
    tinycnn.set_random_seed(3)
    fresh = seed.build_model().get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(fresh, trained_tinycnn_weights))
