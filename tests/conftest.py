"""Shared fixtures: every test starts with fresh layer names and a fixed seed.

`backend` runs a test once per backend: def test_x(backend): ... (tinycnn is switched to it).
"""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import tinycnn  # noqa: E402
from tinycnn.backend import BACKENDS  # noqa: E402


@pytest.fixture(autouse=True)
def fresh_state():
    previous = tinycnn.get_backend()
    tinycnn.backend.clear_session()
    tinycnn.set_random_seed(0)
    yield
    tinycnn.set_backend(previous)


@pytest.fixture(params=BACKENDS)
def backend(request):
    tinycnn.set_backend(request.param)
    return request.param


@pytest.fixture(scope="session")
def mnist_prepared():
    from tinycnn import seed
    return seed.prepare_mnist()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
