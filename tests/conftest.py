"""Shared fixtures: every test starts with fresh layer names and a fixed seed.

`backend` runs a test once per backend: def test_x(backend): ... (tinycnn is switched to it).
Where numba cannot be imported (CI's second environment, see .ci/run), the "numba" case is
skipped and every test runs on the NumPy backend, chosen explicitly so that none warns.
"""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import tinycnn  # noqa: E402
from tinycnn.backend import BACKENDS  # noqa: E402


def _numba_error():
    """None if the numba backend loads here, else why not (a missing or broken numba)."""
    try:
        import tinycnn.kernels.numba_ops  # noqa: F401
    except Exception as err:            # ImportError, or numba failing on this NumPy or LLVM
        return f"{type(err).__name__}: {err}"
    return None


NUMBA_ERROR = _numba_error()
needs_numba = pytest.mark.skipif(NUMBA_ERROR is not None, reason=f"numba is not importable here ({NUMBA_ERROR})")


@pytest.fixture(autouse=True)
def fresh_state():
    if NUMBA_ERROR is not None and tinycnn.backend._state["module"] is None:
        tinycnn.set_backend("numpy")     # not the default's fallback: it would warn in the first test
    previous = tinycnn.get_backend()
    tinycnn.backend.clear_session()
    tinycnn.set_random_seed(0)
    yield
    tinycnn.set_backend(previous)


@pytest.fixture(params=[pytest.param(name, marks=needs_numba) if name == "numba" else name for name in BACKENDS])
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
