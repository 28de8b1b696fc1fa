"""The platforms tinycnn meets: no numba, a broken numba, kernels that do not compile, no ctypes,
no /proc, no OpenBLAS, another BLAS. Whatever is missing, `import tinycnn` works, a model trains,
and what tinycnn could not use is said once, with what to do about it.

What must start from a fresh interpreter (numba blocked or replaced before the first import,
the import's side effects, a process's CPU time) runs in a subprocess, `python -c script`; the
rest simulates the platform in this process with monkeypatch, and gives back the real probes.
(The backend switch itself: tests/test_backends.py, section 8.)
"""
import ctypes
import ctypes.util
import glob
import json
import mmap
import os
import re
import subprocess
import sys
import types
import warnings

import numpy as np
import pytest

import tinycnn
from tinycnn import backend, seed
from tinycnn.backend import KernelCompileError

try:                                             # the numba backend's modules, where numba imports
    from tinycnn.kernels.numba_ops import blas, blocks, elementwise, threads
    from tinycnn.kernels.numba_ops import plan as plan_module
    NUMBA_ERROR = None
except Exception as err:                         # ImportError, or numba failing on this NumPy or LLVM
    NUMBA_ERROR = f"{type(err).__name__}: {err}"
needs_numba = pytest.mark.skipif(NUMBA_ERROR is not None, reason=f"numba is not importable here ({NUMBA_ERROR})")

# -- in a subprocess -------------------------------------------------------------------------
# For this meta-path finder numba is not installed (as ModuleNotFoundError says it); it records
# every import of numba that was tried, so a test can tell when one was.
BLOCK_NUMBA = '''
import sys

class NoNumba:
    tried = []

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "numba":
            NoNumba.tried.append(name)
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoNumba())
'''

# use_model(): the seed model, one training step on 8 random images, a prediction; returns the
# messages of the RuntimeWarnings raised meanwhile (every one, however often: "always").
USE_MODEL = '''
import json
import warnings

import numpy as np


def use_model():
    import tinycnn
    from tinycnn import seed
    rng = np.random.default_rng(0)
    x = rng.random((8, 28, 28, 1), dtype=np.float32)
    y = tinycnn.to_categorical(rng.integers(0, 10, 8), 10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = seed.build_model()
        model.compile("adam", "categorical_crossentropy", ["accuracy"])
        loss, _ = model.train_on_batch(x, y)
        p = model.predict(x, verbose=0)
    assert np.isfinite(loss) and p.shape == (8, 10) and np.allclose(p.sum(axis=1), 1, atol=1e-5), (loss, p)
    return [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
'''


def run_python(code, timeout=600, **env):
    """python -c code, in an environment without TINYCNN_* settings but for `env`."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TINYCNN_")}
    return subprocess.run([sys.executable, "-c", code], env={**environ, **env},
                          capture_output=True, text=True, timeout=timeout)


def report(result):
    """The JSON a script printed on its last line (after checking that it succeeded)."""
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def assert_says_why_and_what_to_do(message, why):
    assert message.startswith("tinycnn: ") and why in message, message
    assert "Running on the NumPy backend" in message, message
    assert "pip install numba" in message, message                    # how to get the fast path
    assert "TINYCNN_BACKEND=numpy" in message, message                # how to silence it


NO_NUMBA_WHY = "the numba backend is unavailable: ModuleNotFoundError: No module named 'numba'"


# ----------------------------------------------------------------------------------------
# 1. No numba
# ----------------------------------------------------------------------------------------
def test_without_numba_tinycnn_imports_trains_on_numpy_and_warns_once():
    """import tinycnn tries no numba; the first model use falls back to NumPy with one warning
    saying why and what to do; the next use is silent; set_backend("numba") says what to install."""
    result = run_python(BLOCK_NUMBA + USE_MODEL + '''
import tinycnn
out = {"tried at import": list(NoNumba.tried)}
out["first use"] = use_model()
out["second use"] = use_model()
out["backend"] = tinycnn.get_backend()
try:
    tinycnn.set_backend("numba")
except tinycnn.backend.BackendUnavailableError as err:
    out["error"] = [isinstance(err, ImportError), str(err), type(err.__cause__).__name__]
out["backend after the error"] = tinycnn.get_backend()
out["third use"] = use_model()
out["numba in sys.modules"] = "numba" in sys.modules
print(json.dumps(out))
''')
    out = report(result)
    assert out["tried at import"] == []
    assert len(out["first use"]) == 1, out["first use"]
    assert_says_why_and_what_to_do(out["first use"][0], NO_NUMBA_WHY)
    assert out["second use"] == [] and out["third use"] == []
    assert out["backend"] == out["backend after the error"] == "numpy"
    is_import_error, message, cause = out["error"]
    assert is_import_error and cause == "ModuleNotFoundError"
    assert message.startswith(NO_NUMBA_WHY) and "pip install numba" in message, message
    assert not out["numba in sys.modules"]


def test_without_numba_tinycnn_backend_numba_fails_at_first_use_not_at_import():
    """TINYCNN_BACKEND=numba asks for numba: import works, the first model use raises BackendUnavailableError."""
    result = run_python(BLOCK_NUMBA + USE_MODEL + '''
import tinycnn
print("imported, tried", NoNumba.tried)
try:
    use_model()
except tinycnn.backend.BackendUnavailableError as err:
    print("raised:", err)
''', TINYCNN_BACKEND="numba")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "imported, tried []"
    assert lines[1].startswith("raised: " + NO_NUMBA_WHY) and "pip install numba" in lines[1], lines
    assert "Warning" not in result.stderr, result.stderr


def test_without_numba_the_warning_points_at_the_users_line():
    """The fallback warning names the line of the user's code that first needed a kernel, not tinycnn's."""
    code = BLOCK_NUMBA + """
import json, warnings
import tinycnn
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    tinycnn.get_backend()
print(json.dumps([[w.filename, w.lineno] for w in caught]))
"""
    line = code.splitlines().index("    tinycnn.get_backend()") + 1
    assert report(run_python(code)) == [["<string>", line]]


def test_without_numba_tinycnn_backend_numpy_gives_no_warning():
    result = run_python(BLOCK_NUMBA + USE_MODEL + '''
import tinycnn
print(json.dumps([use_model(), use_model(), tinycnn.get_backend(), tinycnn.backend.explicit()]))
''', TINYCNN_BACKEND="numpy")
    assert report(result) == [[], [], "numpy", True]
    assert "Warning" not in result.stderr, result.stderr


def test_without_numba_the_cli_trains_and_prints_a_test_accuracy(tmp_path):
    """python -m tinycnn train --limit 600 --epochs 1, numba blocked: NumPy, one warning on stderr, an accuracy."""
    out_dir = tmp_path / "run"
    result = run_python(BLOCK_NUMBA + f'''
import runpy
sys.argv = ["tinycnn", "train", "--limit", "600", "--epochs", "1", "--out", {str(out_dir)!r}]
runpy.run_module("tinycnn", run_name="__main__", alter_sys=True)
''')
    assert result.returncode == 0, result.stderr
    assert "backend numpy" in result.stdout.splitlines()[0], result.stdout
    accuracy = re.search(r"^Test Accuracy: (\d\.\d{4})$", result.stdout, re.M)
    assert accuracy and 0 <= float(accuracy.group(1)) <= 1, result.stdout
    assert result.stderr.count("RuntimeWarning") == 1, result.stderr       # Python's default filters
    assert NO_NUMBA_WHY in result.stderr and "pip install numba" in result.stderr
    results = json.loads((out_dir / "results.json").read_text())
    assert results["backend"] == "numpy" and results["test_accuracy"] == pytest.approx(float(accuracy.group(1)), abs=1e-4)


# ----------------------------------------------------------------------------------------
# 2. A numba that is there but fails to import
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("error", [
    'RuntimeError("LLVM mismatch: llvmlite was built for LLVM 14, found 20")',
    'ImportError("Numba needs NumPy 2.2 or less. Got NumPy 2.4.")',
    'AttributeError("module \'numpy\' has no attribute \'long\'")',
], ids=["RuntimeError", "ImportError", "AttributeError"])
def test_a_numba_that_fails_at_import_falls_back_to_numpy_saying_why(tmp_path, error):
    """A fake numba package first on the path raises at import: the same fallback, the reason in the warning."""
    (tmp_path / "numba").mkdir()
    (tmp_path / "numba" / "__init__.py").write_text(f"raise {error}\n")
    name, text = re.match(r"(\w+)\((.*)\)$", error).groups()
    text = eval(text)                                            # the message, as Python will print it
    result = run_python(USE_MODEL + '''
import sys
import tinycnn
out = {"numba at import": "numba" in sys.modules, "first use": use_model(), "second use": use_model(),
       "backend": tinycnn.get_backend()}
try:
    tinycnn.set_backend("numba")
except tinycnn.backend.BackendUnavailableError as err:
    out["error"] = [str(err), type(err.__cause__).__name__]
print(json.dumps(out))
''', PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    out = report(result)
    assert not out["numba at import"]
    assert len(out["first use"]) == 1, out["first use"]
    assert_says_why_and_what_to_do(out["first use"][0], f"the numba backend is unavailable: {name}: {text}")
    assert out["second use"] == [] and out["backend"] == "numpy"
    message, cause = out["error"]
    assert cause == name and text in message and "pip install numba" in message, message


# ----------------------------------------------------------------------------------------
# 3. A numba that imports but cannot compile the kernels
# ----------------------------------------------------------------------------------------
@pytest.fixture
def default_backend(monkeypatch):
    """No backend chosen yet, as in a fresh process without TINYCNN_BACKEND; the state is given back after."""
    monkeypatch.delenv("TINYCNN_BACKEND", raising=False)
    saved = dict(backend._state)
    backend._state.update(name=None, module=None, explicit=False)
    yield
    backend._state.update(saved)


@pytest.fixture
def kernels_that_do_not_compile(monkeypatch):
    """As in a fresh process (nothing compiled yet), with one kernel failing as numba does: returns the error's type."""
    errors = pytest.importorskip("numba.core.errors")
    monkeypatch.setattr(plan_module, "_warmed", set())

    def gradients(*args):
        raise errors.TypingError("Failed in nopython mode pipeline (step: nopython frontend)\nNo implementation "
                                 "of function Function(<built-in function iadd>) found for signature")
    monkeypatch.setattr(elementwise, "gradients", gradients)
    return errors.TypingError


def images(n=8, seed_=0):
    rng = np.random.default_rng(seed_)
    return rng.random((n, 28, 28, 1), dtype=np.float32), tinycnn.to_categorical(rng.integers(0, 10, n), 10)


def seed_model(seed_=0):
    """A fresh seed model, compiled, its weights from set_random_seed(seed_)."""
    tinycnn.backend.clear_session()
    tinycnn.set_random_seed(seed_)
    model = seed.build_model()
    model.compile("adam", "categorical_crossentropy", ["accuracy"])
    return model


def train_and_predict(model, x, y):
    loss, _ = model.train_on_batch(x, y)
    p = model.predict(x, verbose=0)
    assert np.isfinite(loss) and p.shape == (len(x), 10) and np.allclose(p.sum(axis=1), 1, atol=1e-5)
    return loss, p


@needs_numba
def test_kernels_that_do_not_compile_fall_back_to_numpy_once(default_backend, kernels_that_do_not_compile):
    """The default backend: numba's TypingError in the first run -> one warning, NumPy from then on,
    and the same numbers as a model that ran on NumPy from the start (the failed warm-up changed nothing)."""
    x, y = images()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loss, p = train_and_predict(seed_model(), x, y)
        assert tinycnn.get_backend() == "numpy" and not backend.explicit()
        train_and_predict(seed_model(), x, y)                      # a second model: no second warning
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1, messages
    assert_says_why_and_what_to_do(messages[0], "the numba backend could not compile its kernels (TypingError: ")
    with backend.using("numpy"):
        ref_loss, ref_p = train_and_predict(seed_model(), x, y)
    assert loss == ref_loss
    np.testing.assert_array_equal(p, ref_p)


@needs_numba
@pytest.mark.parametrize("how", ["set_backend", "TINYCNN_BACKEND"])
def test_kernels_that_do_not_compile_raise_when_numba_was_asked_for(default_backend, kernels_that_do_not_compile,
                                                                     monkeypatch, how):
    """set_backend("numba") or TINYCNN_BACKEND=numba: KernelCompileError (numba's error as its cause), no fallback."""
    if how == "set_backend":
        tinycnn.set_backend("numba")
    else:
        monkeypatch.setenv("TINYCNN_BACKEND", "numba")
    x, y = images()
    model = seed_model()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)              # and no fallback warning either
        with pytest.raises(KernelCompileError, match="could not compile its kernels .TypingError") as info:
            model.train_on_batch(x, y)
    assert isinstance(info.value.__cause__, kernels_that_do_not_compile)
    assert tinycnn.get_backend() == "numba" and backend.explicit()


@needs_numba
def test_an_error_of_tinycnn_in_the_first_run_is_not_hidden_by_the_fallback(default_backend, monkeypatch):
    """Only numba's and llvmlite's errors mean "cannot compile": any other error in the warm-up is raised as it is."""
    monkeypatch.setattr(plan_module, "_warmed", set())

    def gradients(*args):
        raise ZeroDivisionError("a bug, not a compiler")
    monkeypatch.setattr(elementwise, "gradients", gradients)
    x, y = images()
    with pytest.raises(ZeroDivisionError, match="a bug"):
        seed_model().train_on_batch(x, y)
    assert tinycnn.get_backend() == "numba"


# ----------------------------------------------------------------------------------------
# 4. Platform probes: ctypes, /proc, sysfs, the BLAS's symbols
# ----------------------------------------------------------------------------------------
@pytest.fixture
def unprobed(monkeypatch):
    """blas and blocks probe afresh inside the test; after it, the real probes' results are back."""
    monkeypatch.setattr(blas, "_control", "unprobed")
    blocks.cache_bytes.cache_clear()
    yield
    blocks.cache_bytes.cache_clear()          # (monkeypatch gives blas._control back after this)


def refuse_paths(monkeypatch, *prefixes):
    """open() of any path under these prefixes raises OSError, as where they do not exist."""
    real_open = open

    def fake_open(file, *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)) and os.fsdecode(file).startswith(prefixes):
            raise FileNotFoundError(2, "No such file or directory", os.fsdecode(file))
        return real_open(file, *args, **kwargs)
    monkeypatch.setattr("builtins.open", fake_open)


def numba_step(n_threads="2"):
    """The seed model trains a step and predicts on the numba backend, with n_threads; returns the jobs per run."""
    tinycnn.set_backend("numba")
    jobs, real_run = [], threads.run

    def spy(batch):
        jobs.append(len(batch))
        return real_run(batch)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TINYCNN_THREADS", n_threads)
        mp.setattr(threads, "run", spy)
        x, y = images()
        loss, p = train_and_predict(seed_model(), x, y)
    assert tinycnn.get_backend() == "numba"
    return jobs, loss, p


@needs_numba
@pytest.mark.parametrize("cdll_error", [
    TypeError("expected str, bytes or os.PathLike object, not NoneType"),     # CDLL(None) on Windows
    OSError(126, "[WinError 126] The specified module could not be found"),
], ids=["TypeError", "OSError"])
@pytest.mark.parametrize("sysfs", ["unreadable", "absent"])
def test_windows_like_platform(unprobed, monkeypatch, cdll_error, sysfs):
    """No usable ctypes.CDLL, no os.sched_getaffinity, no /proc, no sysfs: every probe answers, the model trains."""
    def cdll(*args, **kwargs):
        raise cdll_error
    monkeypatch.setattr(ctypes, "CDLL", cdll)
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    refuse_paths(monkeypatch, "/proc", "/sys")
    if sysfs == "absent":
        real_glob = glob.glob
        monkeypatch.setattr(glob, "glob", lambda pattern, *a, **k: [] if pattern.startswith("/sys")
                            else real_glob(pattern, *a, **k))
    found = blas.find()
    assert found is None or found[2] == "a BLAS found by threadpoolctl", found
    assert isinstance(blas.describe(), str)
    assert threads.usable_cores() == max(1, os.cpu_count() or 1) >= 1
    assert blocks.cache_bytes() == blocks.DEFAULT_CACHE
    jobs, _, _ = numba_step()
    assert max(jobs) == 2


@needs_numba
def test_without_an_openblas_the_blas_is_left_alone_and_the_threads_still_run(unprobed, monkeypatch):
    """No OpenBLAS file and no threadpoolctl: control() is None, describe() says so, and training splits the batch."""
    monkeypatch.setattr(blas, "_library_files", lambda: [])
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)          # import threadpoolctl -> ImportError
    assert blas.find() is None and blas.control() is None
    assert blas.describe() == "not reachable: the BLAS keeps its own threads"
    jobs, _, _ = numba_step()
    assert max(jobs) == 2
    assert blas.control() is None


@needs_numba
def test_another_blas_library_is_not_taken_for_openblas(unprobed, monkeypatch):
    """A library that loads but has no OpenBLAS symbols (the C library; a fake one) is passed over."""
    libc = ctypes.util.find_library("c")
    if libc is not None:
        assert blas._openblas(libc) is None
    assert blas._openblas("/no/such/libopenblas.so") is None
    monkeypatch.setattr(blas, "_library_files", lambda: [p for p in (libc, "/no/such/libopenblas.so") if p])
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)
    assert blas.find() is None

    class Library:                                  # a CDLL with only the symbols given
        def __init__(self, *names):
            for name in names:
                setattr(self, name, lambda *args: 1)
    for lib in (Library(), Library("openblas_get_num_threads"), Library("mkl_set_num_threads", "mkl_get_max_threads")):
        monkeypatch.setattr(ctypes, "CDLL", lambda path, lib=lib: lib)
        assert blas._openblas("libfake.so") is None
    monkeypatch.setattr(ctypes, "CDLL", lambda path: Library("openblas_get_num_threads", "openblas_set_num_threads"))
    get, set_ = blas._openblas("libopenblas.so.0")                    # a system OpenBLAS is recognised
    assert get.restype is ctypes.c_int and set_.argtypes == [ctypes.c_int]


@needs_numba
@pytest.mark.parametrize("error", [ValueError("embedded null byte"), AttributeError("no LoadLibrary")])
def test_a_ctypes_that_fails_otherwise_is_guarded_too(monkeypatch, error):
    def cdll(*args, **kwargs):
        raise error
    monkeypatch.setattr(ctypes, "CDLL", cdll)
    assert blas._openblas("libopenblas.so") is None


@needs_numba
def test_a_threadpoolctl_that_fails_is_guarded(monkeypatch):
    fake = types.ModuleType("threadpoolctl")

    class ThreadpoolController:
        def __init__(self):
            raise RuntimeError("dl_iterate_phdr is not available")
    fake.ThreadpoolController = ThreadpoolController
    monkeypatch.setitem(sys.modules, "threadpoolctl", fake)
    assert blas._threadpoolctl() is None


@needs_numba
def test_a_mapped_file_whose_name_is_not_utf8_does_not_crash_the_probe(unprobed, tmp_path):
    """/proc/self/maps lists every mapped file: one whose name is not UTF-8 must not stop the BLAS probe
    (nor, through blas.one_thread, every training step on the numba backend)."""
    if not os.path.exists("/proc/self/maps"):
        pytest.skip("no /proc/self/maps here")
    folder = os.path.join(os.fsencode(tmp_path), b"caf\xe9")          # Latin-1 "café": not UTF-8
    try:
        os.mkdir(folder)
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses a name that is not UTF-8")
    path = os.path.join(folder, b"data.bin")
    with open(path, "wb") as f:
        f.write(b"\0" * mmap.PAGESIZE)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), mmap.PAGESIZE, access=mmap.ACCESS_READ):
        with open("/proc/self/maps", "rb") as maps:
            assert b"caf\xe9" in maps.read()                          # the simulation holds
        found = blas.find()
        assert found is None or isinstance(found[2], str)
        numba_step()


# ----------------------------------------------------------------------------------------
# 5. No side effects at import
# ----------------------------------------------------------------------------------------
# Records every ctypes library load (CDLL and its subclasses, ctypes.cdll.X included) made from
# tinycnn's own files, and snapshots what a library could change in the process.
SNAPSHOT = '''
import ctypes, hashlib, importlib.util, json, os, pickle, random, signal, sys, threading, traceback, warnings
import numpy as np                     # numpy's own effects (its BLAS's threads) are not tinycnn's

PACKAGE = importlib.util.find_spec("tinycnn").submodule_search_locations[0] + os.sep
loads = []
_init = ctypes.CDLL.__init__

def recording_init(self, name, *args, **kwargs):
    ours = [f"{f.filename}:{f.lineno}" for f in traceback.extract_stack() if f.filename.startswith(PACKAGE)]
    if ours:
        loads.append([str(name), ours])
    return _init(self, name, *args, **kwargs)

ctypes.CDLL.__init__ = recording_init

def os_threads():
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))
    except (OSError, StopIteration, ValueError):
        return None

def snapshot():
    return {
        "os.environ": dict(os.environ),
        "python threads": sorted(t.name for t in threading.enumerate()),
        "OS threads": os_threads(),
        "signal handlers": {s.name: repr(signal.getsignal(s)) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD)},
        "switch interval": sys.getswitchinterval(),
        "recursion limit": sys.getrecursionlimit(),
        "dlopen flags": sys.getdlopenflags() if hasattr(sys, "getdlopenflags") else None,
        "excepthooks": [repr(sys.excepthook), repr(threading.excepthook)],
        "warning filters": repr(warnings.filters),
        "numpy errstate": np.geterr(),
        "numpy print options": repr(np.get_printoptions()),
        "numpy global random state": hashlib.sha256(pickle.dumps(np.random.get_state())).hexdigest(),
        "random state": hashlib.sha256(pickle.dumps(random.getstate())).hexdigest(),
        "cwd": os.getcwd(),
        "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "stdio": [repr(sys.stdout), repr(sys.stderr)],
    }

def changes(before, after):
    return {key: [before[key], after[key]] for key in before if before[key] != after[key]}
'''


def test_import_tinycnn_has_no_side_effects():
    """import tinycnn imports no numba, starts no thread, loads no library with ctypes, changes no setting."""
    out = report(run_python(SNAPSHOT + '''
before = snapshot()
import tinycnn
print(json.dumps({"changes": changes(before, snapshot()), "ctypes loads": loads,
                  "numba imported": "numba" in sys.modules, "backend chosen": tinycnn.backend._state["module"] is not None}))
'''))
    assert out == {"changes": {}, "ctypes loads": [], "numba imported": False, "backend chosen": False}


@needs_numba
def test_import_of_the_numba_kernels_has_no_side_effects():
    """import tinycnn.kernels.numba_ops (numba's own import aside): no thread, no ctypes load, no BLAS probe."""
    out = report(run_python(SNAPSHOT + '''
import tinycnn
import numba                           # numba's own effects are not tinycnn's
with_numba = snapshot()
import tinycnn.kernels.numba_ops
from tinycnn.kernels.numba_ops import blas, blocks, threads
print(json.dumps({"numba_ops": changes(with_numba, snapshot()), "ctypes loads": loads,
                  "blas probed": blas._control != "unprobed", "workers": len(threads._pool["workers"]),
                  "threadpoolctl imported": "threadpoolctl" in sys.modules,
                  "cache probed": blocks.cache_bytes.cache_info().currsize}))
'''))
    assert out == {"numba_ops": {}, "ctypes loads": [], "blas probed": False, "workers": 0,
                   "threadpoolctl imported": False, "cache probed": 0}


# ----------------------------------------------------------------------------------------
# 6. Nothing busy-waits; one thread computes what two do
# ----------------------------------------------------------------------------------------
SLEEP_AFTER_A_STEP = USE_MODEL + '''
import threading, time
import tinycnn
from tinycnn import seed
warned = use_model() if "predict" in sys.argv[1:] else None
if warned is None:                                      # the first training step alone: the first run
    rng = np.random.default_rng(0)
    model = seed.build_model()
    model.compile("adam", "categorical_crossentropy")
    model.train_on_batch(rng.random((8, 28, 28, 1), dtype=np.float32), np.eye(10)[rng.integers(0, 10, 8)])
workers = [t.name for t in threading.enumerate() if t.name.startswith("tinycnn-")]
before = time.process_time()
time.sleep(0.5)
print(json.dumps({"backend": tinycnn.get_backend(), "workers": workers, "cpu": time.process_time() - before,
                  "warned": warned}))
'''


def sleep_after_a_step(*args):
    code = "import sys; sys.argv[1:] = %r\n" % (list(args),) + SLEEP_AFTER_A_STEP
    return report(run_python(code, TINYCNN_THREADS="2"))


@needs_numba
def test_after_a_training_step_with_two_threads_the_process_sleeps():
    """TINYCNN_THREADS=2: after a step and a prediction, 0.5 s of sleep costs the process < 0.1 s of CPU.
    (On the numba backend: tinycnn's threads are the ones that could spin; the NumPy backend has none.)"""
    out = sleep_after_a_step("predict")
    assert out["warned"] == [] and out["backend"] == "numba" and out["workers"] == ["tinycnn-1"], out
    assert out["cpu"] < 0.1, out


@needs_numba
def test_the_first_run_leaves_numpys_blas_threads_asleep():
    """The first step compiles the kernels (FastPlan.warm_up), matrix products included: with the BLAS
    not held to one thread there, OpenBLAS's idle threads spin for about 0.1 s each afterwards, one per
    core but one (on 2 cores: ~0.08 s of the 0.1 s above; on 8: ~0.7 s). Idle, a process costs ~0.0001 s."""
    out = sleep_after_a_step()
    assert out["backend"] == "numba" and out["workers"] == ["tinycnn-1"], out
    assert out["cpu"] < 0.02, out


@needs_numba
def test_one_thread_gives_the_predictions_of_two():
    """TINYCNN_THREADS=1 runs every step on the calling thread, with the numbers of 2 threads (up to round-off)."""
    runs = {n: numba_step(n) for n in ("1", "2")}
    assert max(runs["1"][0]) == 1 and max(runs["2"][0]) == 2
    (_, loss_1, p_1), (_, loss_2, p_2) = runs["1"], runs["2"]
    assert loss_1 == pytest.approx(loss_2, rel=1e-6)
    np.testing.assert_allclose(p_1, p_2, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(p_1.argmax(axis=1), p_2.argmax(axis=1))
