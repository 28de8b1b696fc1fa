"""The acceptance test: the Keras tutorial, imports changed, run as written (5 epochs, batch 128).

It trains on all 60,000 images (about a minute on the Numba backend) and must reach Keras's
accuracy. The seed is fixed so a failure can be reproduced.
"""
import runpy
import pathlib

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

import tinycnn  # noqa: E402

SCRIPT = pathlib.Path(__file__).with_name("seed_tutorial.py")


@pytest.mark.slow
def test_seed_tutorial_reaches_keras_accuracy(capsys):
    tinycnn.set_backend("numba")
    tinycnn.set_random_seed(1)
    namespace = runpy.run_path(str(SCRIPT))
    out = capsys.readouterr().out
    assert namespace["model"].count_params() == 225_034
    assert "Total params: 225,034" in out and out.count("469/469 [==============================]") == 5
    assert namespace["test_accuracy"] >= 0.988
    assert list(namespace["predicted_classes"]) == [7, 2, 1, 0, 4]
    assert set(namespace["history"].history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
