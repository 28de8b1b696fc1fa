"""The teaching notebooks run top to bottom in a fresh kernel; a failing cell fails the test.

Each notebook is executed with nbclient (kernel python3) from a temporary copy, with notebooks/
as the working directory, so the committed file with its outputs is never touched. Notebook 04
trains the seed model for 5 epochs (a minute or two on the Numba backend) and asserts a test
accuracy of at least 0.99 in one of its cells.
"""
import glob
import importlib.util
import os
import shutil

import nbformat
import pytest

NOTEBOOKS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks")
NOTEBOOKS = sorted(glob.glob(os.path.join(NOTEBOOKS_DIR, "*.ipynb")))
REQUIRED = ("01_dense_softmax_backprop", "02_conv_im2col", "03_pool_dropout_relu", "04_mnist_cnn", "05_speed",
            "06_backprop_through_a_graph", "07_one_training_step", "08_deep_networks")


def test_the_required_notebooks_are_there():
    names = [os.path.splitext(os.path.basename(path))[0] for path in NOTEBOOKS]
    assert all(name in names for name in REQUIRED), names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_notebook_is_committed_with_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(cell.execution_count is not None for cell in code), "run it before committing"
    errors = [out for cell in code for out in cell.outputs if out.output_type == "error"]
    assert not errors, f"{os.path.basename(path)} was committed with an error output"
    assert any("image/png" in out.get("data", {}) for cell in code for out in cell.outputs)


def load_builder():
    spec = importlib.util.spec_from_file_location("build_notebooks", os.path.join(NOTEBOOKS_DIR, "build_notebooks.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_notebook_matches_its_source(path):
    """notebooks/sources/<name>.py is what gets edited; the committed notebook must be built from it."""
    builder = load_builder()
    name = os.path.splitext(os.path.basename(path))[0]
    built = builder.build(name)
    committed = nbformat.read(path, as_version=4)
    assert [(c.cell_type, c.source) for c in committed.cells] == [(c.cell_type, c.source) for c in built.cells], \
        f"{name}.ipynb is out of date: run python notebooks/build_notebooks.py {name}"


def test_every_exercise_has_a_checker_cell():
    from tinycnn.exercises import EXERCISES

    text = "".join(cell.source for path in NOTEBOOKS for cell in nbformat.read(path, as_version=4).cells)
    for name in EXERCISES:
        assert f"ex.check_{name}({name})" in text, f"no notebook cell checks {name}"


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, tmp_path):
    from nbclient import NotebookClient

    copy = tmp_path / os.path.basename(path)
    shutil.copyfile(path, copy)
    nb = nbformat.read(copy, as_version=4)
    for cell in nb.cells:                      # start from a clean slate: no stale outputs
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": NOTEBOOKS_DIR}})
    client.execute()                           # raises CellExecutionError, naming the cell, if one fails
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code)
    assert not [out for cell in code for out in cell.outputs if out.output_type == "error"]
