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
                           "tinycnn-numba,tinycnn-numpy,tinycnn-functional", "--skip", "jit", "--out", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out / "results.json") as f:
        return out, json.load(f), proc.stdout


def test_seed_workload_measures_both_backends(smoke):
    _, results, _ = smoke
    for fw in ("tinycnn-numba", "tinycnn-numpy"):
        s = results["seed"][fw]
        for metric in ("ms_per_step", "fit_ms_per_step", "s_per_epoch", "predict_s", "peak_rss_mb"):
            assert s[metric]["min"] > 0 and s[metric]["min"] <= s[metric]["median"] <= s[metric]["max"]
        assert 0 <= s["test_accuracy"]["median"] <= 1
        assert s["train_images"] == 256 and s["predict_images"] == 256
        run = results["seed_runs"][fw][0]
        assert len(run["step_ms"]) == results["settings"]["steps"]
        assert run["thread_env"]["OMP_NUM_THREADS"] == str(results["threads"])
        s1, s2 = run["fit_steps"]
        assert (s1, s2) == tuple(results["settings"]["fit_steps"]) and 0 < s1 < s2
        t1, t2 = run["fit_s"]
        assert 0 < t1 < t2
        assert run["fit_ms_per_step"] == pytest.approx(1000 * (t2 - t1) / (s2 - s1))
    for metric in ("ms_per_step", "fit_ms_per_step", "s_per_epoch"):
        assert results["ratios"]["vs_tinycnn_numpy"]["tinycnn-numba"][metric] > 0
    assert "keras" not in results["seed"] and results["errors"] == []
    assert results["round_ratios"] is None              # no Keras to compare with


def test_course_workload_measures_both_backends_in_the_same_rounds(smoke):
    _, results, _ = smoke
    course = results["settings"]["course"]
    for fw in ("tinycnn-numba", "tinycnn-numpy"):
        s = results["course"][fw]
        for metric in ("ms_per_step", "fit_ms_per_step", "peak_rss_mb"):
            assert 0 < s[metric]["min"] <= s[metric]["median"] <= s[metric]["max"]
        assert s["image_shape"] == [32, 32, 3] and s["batch_size"] == 16
        assert s["train_images"] == course["fit_steps"][1] * 16
        run = results["course_runs"][fw][0]
        assert run["task"] == "course" and run["round"] == 1 and len(run["step_ms"]) == course["steps"]
        t1, t2 = run["fit_s"]
        assert 0 < t1 < t2 and run["fit_steps"] == course["fit_steps"]
        seed_run = results["seed_runs"][fw][0]
        assert seed_run["round"] == run["round"] and seed_run["pid"] != run["pid"]     # a process of its own
    assert results["course_ratios"]["vs_tinycnn_numpy"]["tinycnn-numba"]["ms_per_step"] > 0
    assert "keras" not in results["course"] and results["course_round_ratios"] is None


def test_functional_seed_in_the_same_rounds_as_the_sequential(smoke):
    _, results, _ = smoke
    run, seq = results["seed_runs"]["tinycnn-functional"][0], results["seed_runs"]["tinycnn-numba"][0]
    assert run["model_class"] == "Functional" and seq["model_class"] == "Sequential"
    assert run["api"] == "functional" and run["backend"] == "numba" and run["pid"] != seq["pid"]
    assert run["round"] == seq["round"] and len(run["step_ms"]) == results["settings"]["steps"]
    assert 0 <= run["test_accuracy"] <= 1 and run["train_images"] == 256
    assert "tinycnn-functional" not in results["course"]         # the seed model only
    rr = results["functional_ratios"]["tinycnn-numba"]
    assert rr["rounds"][0]["ms_per_step"] == pytest.approx(run["ms_per_step"] / seq["ms_per_step"])
    assert rr["median"]["ms_per_step"] == pytest.approx(rr["rounds"][0]["ms_per_step"])
    assert results["ratios"]["vs_tinycnn_numpy"]["tinycnn-functional"]["ms_per_step"] > 0
    md = (smoke[0] / "results.md").read_text()
    assert "tinycnn (Numba, functional API) ÷ tinycnn (Numba)" in md and "| tinycnn (Numba, functional API) |" in md


def test_course_step_layer_by_layer(smoke):
    _, results, _ = smoke
    backends = results["course_layers"]["backends"]
    kinds = ["Conv2D", "BatchNormalization", "ReLU"] * 2 + ["MaxPooling2D", "Conv2D", "BatchNormalization", "ReLU",
                                                            "GlobalAveragePooling2D", "Dense"]
    for fw in ("tinycnn-numba", "tinycnn-numpy"):
        r = backends[fw]
        assert r["model"] == "course" and [x["type"] for x in r["layers"]] == kinds
        assert all(x["forward_ms"] > 0 and x["backward_ms"] > 0 for x in r["layers"])
        assert r["layers"][0]["out_shape"] == [32, 32, 32]                      # 'same' padding
        assert r["layers"][0]["forward_flops"] == 2 * 8 * 32 * 32 * 3 * 3 * 3 * 32
    steps = backends["tinycnn-numba"]["plan_steps"]
    assert [s["step"] for s in steps] == ["ConvStep", "BatchNormStep", "ConvStep", "BatchNormStep", "PoolStep",
                                          "ConvStep", "BatchNormStep", "LayerStep", "DenseStep"]
    assert steps[1]["layers"] == ["batch_normalization", "re_lu"]
    assert all(s["forward_ms"] > 0 and s["backward_ms"] > 0 for s in steps)


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
        assert first_conv["backward_flops"] == 2 * first_conv["forward_flops"]   # a layer's backward returns dx
        assert layers[3]["backward_flops"] == 2 * layers[3]["forward_flops"]
        assert all(r["forward_ms"] > 0 and r["backward_ms"] > 0 for r in layers)
        assert all("input_grad" not in r for r in layers)
        res = results["layers"]["backends"][fw]
        assert res["adam_ms"] > 0 and res["train_step_ms"] > 0
    lb = results["layers"]["lower_bound"]
    needed = sum(r["forward_flops"] + r["backward_flops"] for r in layers) - layers[0]["forward_flops"]
    assert lb["train_flops_per_image"] * 8 == pytest.approx(needed)          # no dx for the input
    assert results["layers"]["matmul_peak_gflops"] > 0
    assert lb["s_per_epoch"] > 0


def test_plan_steps_on_the_numba_backend_only(smoke):
    _, results, _ = smoke
    backends = results["layers"]["backends"]
    numpy_run = backends["tinycnn-numpy"]
    assert numpy_run["plan"] == "ReferencePlan" and "plan_steps" not in numpy_run
    steps = backends["tinycnn-numba"]["plan_steps"]
    assert [s["step"] for s in steps] == ["ConvStep", "ConvStep", "ReshapeStep", "DenseStep", "DenseStep"]
    layer_names = [r["name"] for r in backends["tinycnn-numba"]["layers"]]
    assert [name for s in steps for name in s["layers"]] == layer_names       # every layer, once, in order
    assert steps[0]["key"] == "ConvStep[" + "+".join(layer_names[:3]) + "]"
    for s in steps:
        assert s["forward_ms"] > 0 and s["backward_ms"] > 0 and s["begin_ms"] >= 0 and s["end_ms"] >= 0
        assert s["layers_forward_ms"] > 0
    assert steps[0]["backward_flops"] == steps[0]["forward_flops"] > 0        # the first step computes no dx
    assert steps[1]["backward_flops"] == 2 * steps[1]["forward_flops"] > 0


def test_report_files(smoke):
    out, results, stdout = smoke
    for name in ("results.md", "README_section.md", "seed.png", "scaling.png", "layers.png"):
        assert (out / name).stat().st_size > 0, name
    md = (out / "results.md").read_text()
    assert "tinycnn (Numba)" in md and "roofline" in md
    assert "fit ms/step (marginal)" in md and "the fast plan's steps" in md and "| ConvStep |" in md
    assert "## Course workload" in md and "Where tinycnn's course step goes" in md and "| BatchNormStep |" in md
    assert "keras" in results["skipped"]["parity"].lower() or "parity" in results["skipped"]


def test_round_ratios_and_keras_fast_rounds():
    sys.path.insert(0, str(REPO))
    from benchmarks import report

    def run(r, epoch, step, fit=None):
        return {"round": r, "s_per_epoch": epoch, "ms_per_step": step, "fit_ms_per_step": fit, "predict_s": 1.0}
    runs = {"keras": [run(1, 10.0, 20.0, 20.0), run(2, 20.0, 20.0, 20.0), run(3, 12.5, 25.0, 25.0),
                      run(4, 13.0, 20.0, 20.0)],
            "tinycnn-numba": [run(1, 5.0, 10.0, 8.0), run(2, 5.0, 10.0, 8.0), run(3, 5.0, 10.0),
                              run(4, 6.5, 15.0, 15.0)]}
    rr = report.round_ratios(runs)
    assert rr["fast_rounds"] == [1, 3]                  # within 25% of 10 s: 12.5 is, 13 is not
    assert [row["s_per_epoch"] for row in rr["rounds"]] == pytest.approx([0.5, 0.25, 0.4, 0.5])
    fast = rr["median_fast_rounds"]
    assert fast["s_per_epoch"] == pytest.approx(0.45) and fast["ms_per_step"] == pytest.approx(0.45)
    assert fast["fit_ms_per_step"] == pytest.approx(0.4)     # round 3 has no fit time: left out
    assert rr["median_all_rounds"]["s_per_epoch"] == pytest.approx(0.45)
    assert report.round_ratios({"tinycnn-numba": runs["tinycnn-numba"]}) is None
    lines = report.round_lines({"seed_runs": runs})
    assert any("Keras's fast rounds (2 of 4: rounds 1, 3" in line for line in lines)


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
