"""The benchmark suite at tiny sizes: it runs end to end and its JSON holds real measurements.

The benchmark itself is not part of the test suite (python -m benchmarks takes minutes);
this runs only the tinycnn workers, on 256 images, in well under a minute.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--smoke", "--frameworks",
                           "tinycnn-numba,tinycnn-numpy", "--skip", "jit", "--out", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out / "results.json") as f:
        return out, json.load(f), proc.stdout


def test_seed_workload_measures_both_backends(smoke):
    _, results, _ = smoke
    for fw in ("tinycnn-numba", "tinycnn-numpy"):
        s = results["seed"][fw]
        for metric in ("ms_per_step", "s_per_epoch", "predict_s", "peak_rss_mb"):
            assert s[metric]["min"] > 0 and s[metric]["min"] <= s[metric]["median"] <= s[metric]["max"]
        assert 0 <= s["test_accuracy"]["median"] <= 1
        assert s["train_images"] == 256 and s["predict_images"] == 256
        run = results["seed_runs"][fw][0]
        assert len(run["step_ms"]) == results["settings"]["steps"]
        assert run["thread_env"]["OMP_NUM_THREADS"] == str(results["threads"])
    ratio = results["ratios"]["vs_tinycnn_numpy"]["tinycnn-numba"]["ms_per_step"]
    assert ratio > 0
    assert "keras" not in results["seed"] and results["errors"] == []


def test_machine_and_load_are_recorded(smoke):
    _, results, _ = smoke
    m = results["machine"]
    assert m["logical_cores"] >= 1 and m["versions"]["numpy"]
    assert len(results["loadavg"]["start"]) == 3 and len(results["loadavg"]["end"]) == 3


def test_scaling_layers_and_roofline(smoke):
    _, results, _ = smoke
    for fw in ("tinycnn-numba", "tinycnn-numpy"):
        rows = results["scaling"][fw]
        assert {(r["sweep"], r["batch_size"]) for r in rows} >= {("batch", 1), ("batch", 8)}
        assert all(r["ms_per_step"]["median"] > 0 for r in rows)
        layers = results["layers"]["backends"][fw]["layers"]
        assert [r["type"] for r in layers][:2] == ["Conv2D", "MaxPooling2D"]
        first_conv = layers[0]
        assert first_conv["forward_flops"] == 2 * 8 * 26 * 26 * 3 * 3 * 1 * 32
        assert first_conv["backward_flops"] == first_conv["forward_flops"]      # no dx for the input
        assert layers[3]["backward_flops"] == 2 * layers[3]["forward_flops"]
        assert all(r["forward_ms"] > 0 for r in layers)
    assert results["layers"]["matmul_peak_gflops"] > 0
    assert results["layers"]["lower_bound"]["s_per_epoch"] > 0


def test_report_files(smoke):
    out, results, stdout = smoke
    for name in ("results.md", "README_section.md", "seed.png", "scaling.png", "layers.png"):
        assert (out / name).stat().st_size > 0, name
    md = (out / "results.md").read_text()
    assert "tinycnn (Numba)" in md and "roofline" in md
    assert "keras" in results["skipped"]["parity"].lower() or "parity" in results["skipped"]


def test_missing_framework_is_skipped_with_a_message(tmp_path):
    from importlib.util import find_spec
    sys.path.insert(0, str(REPO))
    from benchmarks import run
    why = run.available("pytorch")
    if find_spec("torch") is None:
        assert "not installed" in why
    else:
        assert why is None
    run.FRAMEWORKS["fake"] = ("benchmarks.worker_keras", {}, ["no_such_module_xyz"])
    try:
        assert "no_such_module_xyz not installed" in run.available("fake")
    finally:
        del run.FRAMEWORKS["fake"]
