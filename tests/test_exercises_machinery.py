"""The exercises' machinery: solutions not loaded on import, ex.use, ex.train_with, the autograder CLI,
the course copy.

ex.use is held to the reference: a network trained with the worked answers in use ends with the
same weights as one trained with tinycnn's own code, every hooked function is really called, and
undoing restores every method and the backend.
"""
import importlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import types

import nbformat
import numpy as np
import pytest

import tinycnn
from tinycnn import backend, exercises as ex, layers
from tinycnn.exercises import skeletons, solutions
from tinycnn.layers.dense import Dense

use_module = importlib.import_module("tinycnn.exercises.use")    # ex.use is its function use
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOLUTIONS_FILE = os.path.join(ROOT, "tinycnn", "exercises", "solutions.py")
HOOKED = [name for name in use_module.HOOKS if hasattr(solutions, name)]


def run_cli(*args, cwd=ROOT, env=None):
    return subprocess.run([sys.executable, "-m", "tinycnn.exercises", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env=env)


@pytest.fixture
def numpy_backend():
    saved = dict(backend._state)
    tinycnn.set_backend("numpy")
    yield
    backend._state.clear()
    backend._state.update(saved)


def counted(module, names):
    """A module whose functions are module's, counting their calls."""
    calls = {name: 0 for name in names}

    def wrap(name):
        def fn(*args):
            calls[name] += 1
            return getattr(module, name)(*args)
        return fn
    return types.SimpleNamespace(**{name: wrap(name) for name in names}), calls


def small_model():
    """One of every layer ex.use hooks, on 8x8 images."""
    model = tinycnn.models.Sequential([
        layers.Conv2D(4, 3, activation="relu", input_shape=(8, 8, 2)),       # 6x6
        layers.BatchNormalization(),
        layers.MaxPooling2D(2),                                              # 3x3
        layers.Dropout(0.3),
        layers.Conv2D(4, 1, padding="same"),
        layers.AveragePooling2D(1),
        layers.GlobalAveragePooling2D(),
        layers.Dense(5, activation="relu"),
        layers.Dense(3, activation="softmax"),
    ])
    model.compile(loss="categorical_crossentropy", optimizer="adam")
    return model


def train_small(steps=3):
    tinycnn.set_random_seed(3)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 8, 8, 2)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 6)]
    model = small_model()
    losses = [float(model.train_on_batch(x, y)) for _ in range(steps)]
    return model, losses


# ----------------------------------------------------------------------------------------
# The solutions are not one attribute away
# ----------------------------------------------------------------------------------------
def test_import_does_not_load_the_solutions():
    code = ("import sys; import tinycnn.exercises as ex\n"
            "assert 'tinycnn.exercises.solutions' not in sys.modules\n"
            "try:\n    ex.solutions\nexcept AttributeError as err:\n    print(err)\n"
            "from tinycnn.exercises import solutions\nprint(solutions.dense_backward.__name__)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "does not load the worked answers" in out.stdout
    assert "from tinycnn.exercises import solutions" in out.stdout      # a teacher's explicit import works
    assert out.stdout.strip().endswith("dense_backward")


def test_every_checker_is_exported():
    for name in ex.EXERCISES:
        assert callable(getattr(ex, f"check_{name}")) and f"check_{name}" in ex.__all__


# ----------------------------------------------------------------------------------------
# ex.use
# ----------------------------------------------------------------------------------------
def test_use_calls_every_hooked_function_and_matches_the_reference(numpy_backend, capsys):
    reference, ref_losses = train_small()
    student, calls = counted(solutions, HOOKED)
    with ex.use(student) as using:
        assert set(using.exercises) == set(HOOKED)
        model, losses = train_small()
    assert "running on the NumPy backend" in capsys.readouterr().out
    assert {name for name, n in calls.items() if n == 0} == {"softmax_jvp"}   # fused into the loss here
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    for a, b in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_use_works_in_a_functional_model(numpy_backend):
    from tinycnn import seed
    rng = np.random.default_rng(4)
    x = rng.random((4, 28, 28, 1)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 4)]

    def train():
        tinycnn.set_random_seed(5)
        model = seed.build_residual_model()
        model.compile(loss="categorical_crossentropy", optimizer="adam")
        return model, [float(model.train_on_batch(x, y)) for _ in range(2)]
    reference, ref_losses = train()
    student, calls = counted(solutions, ["conv2d_backward", "batchnorm_backward", "dense_backward"])
    with ex.use(student, verbose=False):
        model, losses = train()
    assert all(calls.values())
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    for a, b in zip(model.get_weights(), reference.get_weights()):   # Adam divides out a gradient's size:
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)        # round-off in a tiny one moves ~1% of a step


def test_softmax_jvp_serves_a_softmax_without_cross_entropy(numpy_backend):
    layer = layers.Dense(4, activation="softmax")
    layer.build((3,))
    rng = np.random.default_rng(2)
    x, dout = rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=(5, 4)).astype(np.float32)
    layer.forward(x, training=True)
    expected = layer.backward(dout)
    student, calls = counted(solutions, ["softmax_jvp"])
    with ex.use(student, verbose=False):
        layer.forward(x, training=True)
        got = layer.backward(dout)
    assert calls["softmax_jvp"] == 1
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_use_is_undone_exactly():
    before = {(cls, name): cls.__dict__.get(name) for cls, name, _ in
              sum((use_module.HOOKS[n](getattr(solutions, n)) for n in HOOKED), [])}
    backend_before = dict(backend._state)
    with ex.use(solutions, verbose=False):
        assert Dense.backward is not before[(Dense, "backward")]
        assert tinycnn.get_backend() == "numpy"
    assert {(cls, name): cls.__dict__.get(name) for cls, name in before} == before
    assert backend._state == backend_before
    ex.use(solutions, verbose=False)
    ex.use(None)                                                             # the other way to undo
    assert Dense.backward is before[(Dense, "backward")] and backend._state == backend_before


def test_use_on_the_numba_backend_switches_to_numpy_and_back():
    pytest.importorskip("numba")
    saved = dict(backend._state)
    try:
        tinycnn.set_backend("numba")
        model, losses = train_small(steps=1)                 # a model first trained on numba's plan
        with ex.use(solutions, verbose=False):
            assert tinycnn.get_backend() == "numpy"
            model.train_on_batch(np.zeros((2, 8, 8, 2), np.float32), np.eye(3, dtype=np.float32)[:2])
        assert tinycnn.get_backend() == "numba" and backend.explicit()
        loss = model.train_on_batch(np.zeros((2, 8, 8, 2), np.float32), np.eye(3, dtype=np.float32)[:2])
        assert np.isfinite(loss)                              # the other model still trains after the undo
    finally:
        backend._state.clear()
        backend._state.update(saved)


def test_a_wrong_shape_raises_naming_the_exercise_and_layer(numpy_backend):
    wrong = types.SimpleNamespace(dense_backward=lambda dout, x, w: (dout @ w.T, dout.T @ x, dout.sum(0)))
    with ex.use(wrong, verbose=False):
        with pytest.raises(ex.ExerciseError, match=r"dense_backward returned dw of shape .* expected .*dense"):
            train_small(steps=1)
    assert Dense.backward is Dense.__dict__["backward"]


def test_a_raising_function_is_named(numpy_backend):
    with ex.use(skeletons, verbose=False):                      # nothing written yet: NotImplementedError
        with pytest.raises(ex.ExerciseError, match="your conv2d_forward raised NotImplementedError"):
            train_small(steps=1)


def test_checkers_compare_against_tinycnn_even_inside_use(numpy_backend):
    def mean_bias(dout, x, w):
        return dout @ w.T, x.T @ dout, dout.mean(axis=0)
    with ex.use(types.SimpleNamespace(dense_backward=mean_bias), verbose=False):
        assert ex.check_dense_backward(mean_bias, verbose=False).status == "wrong"
        assert ex.check_dense_backward(solutions.dense_backward, verbose=False).passed
        assert ex.check_all(solutions, verbose=False)["dense_backward"].passed


def test_a_layer_the_exercise_cannot_serve_runs_the_reference_and_says_so(numpy_backend):
    x = np.random.default_rng(1).normal(size=(2, 5, 5, 3)).astype(np.float32)
    pool = layers.MaxPooling2D(3, strides=2)                  # overlapping windows
    pool.build(x.shape[1:])
    pool.forward(x, training=True)
    expected = pool.backward(np.ones((2, 2, 2, 3), np.float32))
    student, calls = counted(solutions, ["maxpool_backward"])
    with ex.use(student, verbose=False):
        pool.forward(x, training=True)
        with pytest.warns(RuntimeWarning, match="runs tinycnn's own backward, not your maxpool_backward"):
            got = pool.backward(np.ones((2, 2, 2, 3), np.float32))
    assert calls["maxpool_backward"] == 0
    np.testing.assert_array_equal(got, expected)


def test_use_refuses_a_module_without_exercises():
    with pytest.raises(ex.ExerciseError, match="defines none of the exercises"):
        ex.use(types.SimpleNamespace(helper=lambda: 0))


# ----------------------------------------------------------------------------------------
# ex.train_with: the seed CNN on MNIST
# ----------------------------------------------------------------------------------------
def test_train_with_the_worked_answers_equals_the_reference(capsys):
    backend_before = dict(backend._state)
    results = ex.train_with(solutions, limit=256, test_limit=128)
    out = capsys.readouterr().out
    assert "tinycnn's reference" in out and "\n  yours " in out
    yours, reference = results["yours"], results["reference"]
    assert yours["test_accuracy"] == reference["test_accuracy"] > 0.15        # trained, not chance (0.1)
    np.testing.assert_allclose(yours["loss"], reference["loss"], rtol=1e-4)   # Adam's form differs in round-off
    assert backend._state == backend_before and Dense.backward is Dense.__dict__["backward"]


def test_train_with_a_wrong_backward_is_clearly_different():
    def ascent(dout, x, w):                                    # dw with the wrong sign: climbs the loss
        return dout @ w.T, -(x.T @ dout), dout.sum(axis=0)
    results = ex.train_with(types.SimpleNamespace(dense_backward=ascent), limit=128, test_limit=128,
                            verbose=False)
    chance = np.log(10)                                        # the loss of a uniform guess over 10 digits
    assert results["yours"]["test_loss"] > chance + 0.02 > chance - 0.02 > results["reference"]["test_loss"]


# ----------------------------------------------------------------------------------------
# The autograder: python -m tinycnn.exercises check
# ----------------------------------------------------------------------------------------
@pytest.fixture
def answers(tmp_path):
    good = tmp_path / "good.py"
    shutil.copy(SOLUTIONS_FILE, good)
    bad = tmp_path / "bad.py"
    bad.write_text("import numpy as np\n"
                   "def dense_backward(dout, x, w):\n"
                   "    return dout @ w.T, x.T @ dout, dout.mean(axis=0)\n"
                   "def adam_step(p, g, m, v, t, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7):\n"
                   "    raise ValueError('not today')\n")
    partial = tmp_path / "partial.py"
    partial.write_text("from tinycnn.exercises.solutions import dense_backward\n")
    return good, bad, partial


def test_check_a_good_answers_file_passes(answers):
    out = run_cli("check", str(answers[0]))
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("PASS") == len(ex.EXERCISES)
    assert f"{len(ex.EXERCISES)} passed, 0 failed, 0 not written" in out.stdout


def test_check_a_bad_answers_file_fails_with_reasons(answers):
    out = run_cli("check", str(answers[1]))
    assert out.returncode == 1
    lines = {line.split()[1]: line for line in out.stdout.splitlines() if line.startswith("  ")}
    assert lines["dense_backward"].split()[0] == "FAIL" and "db WRONG" in lines["dense_backward"]
    assert "expected" in lines["dense_backward"] and "bad has no function conv2d_backward" in out.stdout
    assert lines["adam_step"].split()[0] == "FAIL" and "ValueError: not today" in lines["adam_step"]
    assert lines["conv2d_backward"].split()[0] == "----"
    out = run_cli("check", str(answers[1]), "--json")
    assert out.returncode == 1
    report = json.loads(out.stdout)
    by_name = {row["exercise"]: row for row in report["results"]}
    assert report["ok"] is False and report["failed"] == 2
    assert by_name["dense_backward"]["status"] == "failed" and by_name["dense_backward"]["errors"]["db"][0] > 0.1
    assert by_name["conv2d_backward"]["status"] == "not written"


def test_not_written_fails_only_with_require_all(answers):
    assert run_cli("check", str(answers[2])).returncode == 0
    out = run_cli("check", str(answers[2]), "--require-all", "--json")
    assert out.returncode == 1
    report = json.loads(out.stdout)
    assert report["passed"] == 1 and report["not_written"] == len(ex.EXERCISES) - 1


def test_check_an_unloadable_file(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("def dense_backward(:\n")
    out = run_cli("check", str(broken))
    assert out.returncode == 2 and "cannot load" in out.stderr and "SyntaxError" in out.stderr


# ----------------------------------------------------------------------------------------
# The course copy
# ----------------------------------------------------------------------------------------
def test_course_copy_has_no_solutions(tmp_path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    nb = nbformat.v4.new_notebook()
    worked = inspect.getsource(solutions.dense_backward) + "\n\nex.check_dense_backward(dense_backward);"
    nb.cells = [nbformat.v4.new_markdown_cell("Stuck? See `ex.solutions.dense_backward`."),
                nbformat.v4.new_code_cell(worked, outputs=[nbformat.v4.new_output("stream", text="correct")]),
                nbformat.v4.new_code_cell("print(1 + 1)", outputs=[nbformat.v4.new_output("stream", text="2")])]
    nbformat.write(nb, str(notebooks / "01_x.ipynb"))
    dest = tmp_path / "course"
    out = run_cli("course-copy", str(dest), "--notebooks", str(notebooks))
    assert out.returncode == 0, out.stderr
    assert not (dest / "tinycnn" / "exercises" / "solutions.py").exists()
    assert (dest / "tinycnn" / "exercises" / "skeletons.py").exists()
    assert not any("__pycache__" in root for root, _, _ in os.walk(dest))
    copied = nbformat.read(str(dest / "notebooks" / "01_x.ipynb"), as_version=4)
    hint, exercise, other = copied.cells
    assert hint.source == ""                                               # its line naming the solutions is gone
    assert "raise NotImplementedError" in exercise.source and "dout @ w.T" not in exercise.source
    assert exercise.source.endswith("ex.check_dense_backward(dense_backward);") and exercise.outputs == []
    assert other.outputs[0].text == "2"                                    # other cells keep their outputs
    code = ("import tinycnn, tinycnn.exercises as ex\n"
            f"assert tinycnn.__file__.startswith({str(dest)!r})\n"
            "assert ex.check_all(ex.skeletons, verbose=False)['dense_backward'].status == 'not written'\n"
            "import importlib, pkgutil\n"
            "for m in pkgutil.iter_modules(ex.__path__):\n"
            "    importlib.import_module('tinycnn.exercises.' + m.name)       # nothing needs the solutions\n"
            "try:\n    from tinycnn.exercises import solutions\nexcept ImportError:\n    print('no solutions')\n")
    env = {**os.environ, "PYTHONPATH": str(dest)}
    student = subprocess.run([sys.executable, "-c", code], cwd=str(dest), capture_output=True, text=True,
                             timeout=60, env=env)
    assert student.returncode == 0, student.stderr
    assert student.stdout.strip() == "no solutions"
    assert run_cli("course-copy", str(dest)).returncode == 2                 # never into a full folder


def test_course_copy_of_the_real_notebooks(tmp_path):
    dest = tmp_path / "course"
    out = run_cli("course-copy", str(dest))
    assert out.returncode == 0, out.stderr
    names = sorted(os.listdir(dest / "notebooks"))
    assert "01_dense_softmax_backprop.ipynb" in names
    for name in names:
        if name.endswith(".ipynb"):
            text = (dest / "notebooks" / name).read_text()
            assert "solutions" not in text, name
    first = nbformat.read(str(dest / "notebooks" / "01_dense_softmax_backprop.ipynb"), as_version=4)
    assert any("**Next:**" in cell.source for cell in first.cells)         # only the line naming them went
