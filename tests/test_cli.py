"""The main job: python -m tinycnn train."""
import json
import subprocess
import sys


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "tinycnn", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_help_explains_the_train_command():
    result = run("--help")
    assert result.returncode == 0 and "train" in result.stdout
    result = run("train", "--help")
    assert result.returncode == 0
    for option in ("--epochs", "--batch-size", "--seed", "--out", "--backend"):
        assert option in result.stdout


def test_train_on_a_subset_saves_weights_plot_and_results(tmp_path):
    out = tmp_path / "run"
    result = run("train", "--epochs", "1", "--limit", "3000", "--batch-size", "32", "--out", str(out),
                 "--backend", "numpy")
    assert result.returncode == 0, result.stderr
    assert "Total params: 225,034" in result.stdout and "Test Accuracy: " in result.stdout
    assert {p.name for p in out.iterdir()} == {"seed_model.weights.npz", "history.png", "results.json"}
    results = json.loads((out / "results.json").read_text())
    assert results["backend"] == "numpy" and results["test_accuracy"] > 0.8
    assert len(results["first_5_predictions"]) == 5


def test_train_the_residual_model_built_with_the_functional_api(tmp_path):
    out = tmp_path / "run"
    result = run("train", "--model", "residual", "--epochs", "1", "--limit", "600", "--batch-size", "64",
                 "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "Total params: 34,794" in result.stdout and "Connected to" in result.stdout
    assert (out / "residual_model.weights.npz").exists()
    assert 0 <= json.loads((out / "results.json").read_text())["test_accuracy"] <= 1


def test_bad_arguments_are_refused():
    assert run("train", "--epochs", "0").returncode == 2
    assert run("train", "--backend", "cuda").returncode == 2
