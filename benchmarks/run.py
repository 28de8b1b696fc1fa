"""Run the benchmark suite: `python -m benchmarks [--quick | --full] [options]`.

The seed workload and the course workload (benchmarks/course.py: a BatchNorm CNN on 32x32x3
images) run every framework in its own subprocess, in rounds, each round in a rotated order
(the seed for every framework, then the course), so that the shared machine's noise falls on
all of them alike. "tinycnn-functional" is the seed model built with tinycnn.Model(inputs,
outputs) on the Numba backend, run in the same rounds (seed only) against the Sequential. Scaling, the
per-layer roofline, Numba's JIT cost and the Keras parity check follow. The results go to
--out (default benchmarks/results/): results.json, results.md and the PNG plots.
"""
import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

if __package__ in (None, ""):          # `python benchmarks/run.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"

from benchmarks import common, report  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAMEWORKS = {   # name -> (worker module, extra config, modules it needs)
    "tinycnn-numba": ("benchmarks.worker_tinycnn", {"backend": "numba"}, ["numba"]),
    "tinycnn-numpy": ("benchmarks.worker_tinycnn", {"backend": "numpy"}, []),
    "tinycnn-functional": ("benchmarks.worker_tinycnn", {"backend": "numba", "api": "functional"}, ["numba"]),
    "keras": ("benchmarks.worker_keras", {}, ["tensorflow", "keras"]),
    "pytorch": ("benchmarks.worker_torch", {}, ["torch"]),
}
SCALING_FRAMEWORKS = ("tinycnn-numba", "tinycnn-numpy", "keras")
ONLY_TASKS = {"tinycnn-functional": ("seed",)}      # the seed model built with tinycnn.Model(inputs, outputs)

PROFILES = {
    "default": dict(rounds=3, warmup_steps=10, steps=60, epochs=1, train_subset=None, test_subset=None,
                    scaling=dict(batch_sizes=[1, 8, 32, 128, 512], image_sizes=[28, 56, 112], image_batch=32,
                                 warmup=2, min_steps=5, max_steps=40, budget_s=3.0),
                    layer_batch=128, layer_repeats=10, peak_n=2048, peak_repeats=5, parity_images=None,
                    fit_steps=[10, 60], timeout=1800,
                    course=dict(warmup_steps=5, steps=30, fit_steps=[5, 25])),
    "quick": dict(rounds=2, warmup_steps=3, steps=10, epochs=1, train_subset=2000, test_subset=2000,
                  scaling=dict(batch_sizes=[1, 8, 32, 128], image_sizes=[28, 56], image_batch=32,
                               warmup=1, min_steps=3, max_steps=10, budget_s=1.0),
                  layer_batch=128, layer_repeats=3, peak_n=1024, peak_repeats=3, parity_images=2000,
                  fit_steps=[3, 12], timeout=600,
                  course=dict(warmup_steps=2, steps=8, fit_steps=[3, 10])),
    "smoke": dict(rounds=1, warmup_steps=1, steps=3, epochs=1, train_subset=256, test_subset=256,
                  batch_size=16,
                  scaling=dict(batch_sizes=[1, 8], image_sizes=[28], image_batch=8,
                               warmup=1, min_steps=2, max_steps=2, budget_s=0.0),
                  layer_batch=8, layer_repeats=2, peak_n=256, peak_repeats=2, parity_images=256,
                  fit_steps=[2, 12], timeout=300,
                  course=dict(warmup_steps=1, steps=3, fit_steps=[2, 4])),
}


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true",
                      help="a 1-2 minute run (unloaded machine): fewer steps, 2,000-image epoch and predict")
    mode.add_argument("--full", action="store_true", help="5 epochs per round, for the tutorial's accuracy")
    mode.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS),
                   help=f"comma-separated subset of {', '.join(FRAMEWORKS)} (default: all)")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="threads for every framework (default: the number of cores, %(default)s)")
    p.add_argument("--rounds", type=int, help="rounds of the seed workload")
    p.add_argument("--epochs", type=int, help="epochs per round (default 1; 5 with --full)")
    p.add_argument("--steps", type=int, help="timed train steps per round, after the warm-up")
    p.add_argument("--skip", default="", help="comma-separated parts to skip: seed, course, scaling, layers, jit, parity")
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results"), help="results folder")
    p.add_argument("--name", default="results", help="base name of the JSON and markdown files")
    p.add_argument("--report-only", metavar="JSON", help="only rewrite the markdown and plots from a results JSON")
    args = p.parse_args(argv)
    profile = "quick" if args.quick else "smoke" if args.smoke else "default"
    cfg = json.loads(json.dumps(PROFILES[profile]))
    cfg.setdefault("batch_size", common.BATCH)
    if args.full:
        cfg["epochs"] = 5
    for key in ("rounds", "epochs", "steps"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    cfg["profile"] = "full" if args.full else profile
    frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    unknown = [f for f in frameworks if f not in FRAMEWORKS]
    if unknown:
        p.error(f"unknown framework(s) {unknown}; choose from {list(FRAMEWORKS)}")
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    bad = skip - {"seed", "course", "scaling", "layers", "jit", "parity"}
    if bad:
        p.error(f"--skip: unknown part(s) {sorted(bad)}")
    if args.threads < 1:
        p.error("--threads must be positive")
    return args, cfg, frameworks, skip


# -- the machine ------------------------------------------------------------------------------
def _version(*names):
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def machine_info():
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        cpu = platform.processor() or None
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = round(int(f.readline().split()[1]) / 1024 ** 2, 1)
    except (OSError, ValueError, IndexError):
        pass
    blas = None
    try:
        deps = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = {k: deps.get(k) for k in ("name", "version", "openblas configuration")}
    except Exception:          # older NumPy: no dict mode
        pass
    try:
        from threadpoolctl import threadpool_info
        pools = [{k: p.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
                 for p in threadpool_info()]
    except ImportError:
        pools = "threadpoolctl not installed"
    git = None
    try:
        git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"cpu_model": cpu, "logical_cores": os.cpu_count(),
            "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "memory_gib": mem, "platform": platform.platform(), "python": platform.python_version(),
            "numpy_blas": blas, "threadpools": pools, "tinycnn_git_commit": git,
            "versions": {"numpy": np.__version__, "tinycnn": _version("tinycnn"), "numba": _version("numba"),
                         "tensorflow": _version("tensorflow-cpu", "tensorflow"), "keras": _version("keras"),
                         "torch": _version("torch"), "matplotlib": _version("matplotlib"),
                         "psutil": _version("psutil"), "threadpoolctl": _version("threadpoolctl")}}


def available(name):
    """None if the framework can run here, else why not."""
    missing = [m for m in FRAMEWORKS[name][2] if importlib.util.find_spec(m) is None]
    if missing:
        return f"{name} skipped: {', '.join(missing)} not installed (pip install -e '.[bench]')"
    return None


# -- running a worker ---------------------------------------------------------------------------
class Runner:
    def __init__(self, cfg, threads, workdir):
        self.cfg, self.threads, self.workdir, self.count, self.errors = cfg, threads, workdir, 0, []
        env = dict(os.environ)
        env.update(common.thread_env(threads))
        env.update({"TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow", "MPLBACKEND": "Agg",
                    "PYTHONPATH": REPO + os.pathsep + env.get("PYTHONPATH", "")})
        self.env = env

    def run(self, framework, task, extra=None, env=None, label=None):
        """Run one worker; returns its JSON dict, or None (and records why) if it failed."""
        module, fw_cfg, _ = FRAMEWORKS[framework]
        self.count += 1
        tag = f"{self.count:03d}-{framework}-{task}"
        cfg = dict(self.cfg, **fw_cfg, task=task, framework=framework, **(extra or {}))
        cfg_path, out_path = (os.path.join(self.workdir, f"{tag}.{ext}") for ext in ("cfg.json", "out.json"))
        log_path = os.path.join(self.workdir, f"{tag}.log")
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
        print(f"  [{time.strftime('%H:%M:%S')}] {label or framework + ' ' + task} ...", end="", flush=True)
        start = time.perf_counter()
        try:
            with open(log_path, "w") as log:
                proc = subprocess.run([sys.executable, "-m", module, "--config", cfg_path, "--json-out", out_path],
                                      cwd=REPO, env=dict(self.env, **(env or {})), stdout=log,
                                      stderr=subprocess.STDOUT, timeout=self.cfg["timeout"])
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
        took = time.perf_counter() - start
        result = None
        if os.path.exists(out_path):
            with open(out_path) as f:
                result = json.load(f)
        if code != 0 or result is None or "error" in result:
            with open(log_path) as f:
                tail = f.read()[-2000:]
            why = (result or {}).get("error") or f"exit status {code}"
            print(f" FAILED after {took:.0f} s: {why}\n{tail}", flush=True)
            self.errors.append({"framework": framework, "task": task, "error": why, "log_tail": tail})
            return None
        print(f" {took:.0f} s", flush=True)
        return result


# -- the parts ----------------------------------------------------------------------------------
def run_rounds(runner, frameworks, cfg, workdir, tasks=("seed", "course")):
    """Each round: every framework's seed run, then every framework's course run, in the round's
    rotated order. Returns {task: {framework: [run, ...]}}."""
    runs = {task: {f: [] for f in frameworks if task in ONLY_TASKS.get(f, tasks)} for task in tasks}
    names = list(frameworks)
    for r in range(cfg["rounds"]):
        order = names[r % len(names):] + names[:r % len(names)]
        print(f"Round {r + 1}/{cfg['rounds']} ({', '.join(tasks)}): {', '.join(order)}", flush=True)
        for task in tasks:
            for fw in [f for f in order if f in runs[task]]:
                extra = {"init_weights": os.path.join(workdir, f"{task}_init_weights.npz")}
                if task == "seed" and r == cfg["rounds"] - 1:
                    extra["save_weights"] = os.path.join(workdir, f"trained-{fw}.npz")
                res = runner.run(fw, task, extra, label=f"{fw} {task}")
                if res is not None:
                    res["round"], res["position"] = r + 1, order.index(fw) + 1
                    runs[task][fw].append(res)
    return runs


def summarize_course(runs):
    out = {}
    for fw, rs in runs.items():
        if rs:
            out[fw] = {"rounds": len(rs),
                       "ms_per_step": common.summary([r["ms_per_step"] for r in rs]),
                       "ms_per_step_all_steps": common.summary([t for r in rs for t in r["step_ms"]]),
                       "fit_ms_per_step": common.summary([r.get("fit_ms_per_step") for r in rs]),
                       "peak_rss_mb": common.summary([r["peak_rss_mb"] for r in rs]),
                       "train_images": rs[0]["train_images"], "batch_size": rs[0]["batch_size"],
                       "image_shape": rs[0]["image_shape"], "fit_steps": rs[0]["fit_steps"]}
    return out


def summarize_seed(runs):
    out = {}
    for fw, rs in runs.items():
        if not rs:
            continue
        out[fw] = {"rounds": len(rs),
                   "ms_per_step": common.summary([r["ms_per_step"] for r in rs]),
                   "ms_per_step_all_steps": common.summary([t for r in rs for t in r["step_ms"]]),
                   "fit_ms_per_step": common.summary([r.get("fit_ms_per_step") for r in rs]),
                   "s_per_epoch": common.summary([r["s_per_epoch"] for r in rs]),
                   "predict_s": common.summary([r["predict_s"] for r in rs]),
                   "peak_rss_mb": common.summary([r["peak_rss_mb"] for r in rs]),
                   "test_accuracy": common.summary([r["test_accuracy"] for r in rs]),
                   "epochs": rs[0]["epochs"], "train_images": rs[0]["train_images"],
                   "predict_images": rs[0]["predict_images"], "batch_size": rs[0]["batch_size"],
                   "versions": rs[0].get("versions"), "thread_env": rs[0].get("thread_env")}
    return out


def ratios(summary):
    """time(framework) / time(reference), medians: > 1 means slower than the reference."""
    refs = {"vs_keras": "keras", "vs_pytorch": "pytorch", "vs_tinycnn_numpy": "tinycnn-numpy"}
    out = {}
    for key, ref in refs.items():
        if ref not in summary:
            continue
        out[key] = {}
        for fw, s in summary.items():
            out[key][fw] = {m: s[m]["median"] / summary[ref][m]["median"]
                            for m in ("ms_per_step", "fit_ms_per_step", "s_per_epoch", "predict_s", "peak_rss_mb")
                            if s.get(m) and isinstance(s[m], dict) and summary[ref].get(m) and summary[ref][m]["median"] > 0}
    return out


def run_jit(runner, cfg):
    """Cold: a fresh NUMBA_CACHE_DIR (compile + write the cache); warm: a second process on it."""
    cache = tempfile.mkdtemp(prefix="tinycnn-numba-cache-")
    try:
        cold = runner.run("tinycnn-numba", "jit", env={"NUMBA_CACHE_DIR": cache}, label="numba JIT, cold cache")
        warm = runner.run("tinycnn-numba", "jit", env={"NUMBA_CACHE_DIR": cache}, label="numba JIT, warm cache")
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return {"cold": cold, "warm": warm}


def run_course_layers(runner, frameworks):
    """tinycnn's course step, layer by layer (and on Numba, plan step by plan step)."""
    out = {}
    for fw in ("tinycnn-numba", "tinycnn-numpy"):
        if fw in frameworks:
            res = runner.run(fw, "layers", {"model": "course"}, label=f"{fw} course per-layer times")
            if res is not None:
                out[fw] = res
    return {"backends": out} if out else None


def run_layers(runner, frameworks, cfg):
    from benchmarks import roofline
    out = {}
    for fw in ("tinycnn-numba", "tinycnn-numpy"):
        if fw in frameworks:
            res = runner.run(fw, "layers", label=f"{fw} per-layer times")
            if res is not None:
                out[fw] = res
    if not out:
        return None
    peak = max(r["matmul_peak"]["gflops"] for r in out.values())
    any_run = next(iter(out.values()))
    bound = roofline.lower_bound(any_run["layers"], peak, any_run["batch_size"], 60000, 10000)
    for res in out.values():
        for row in res["layers"]:
            for d in ("forward", "backward"):
                flops, ms = row[f"{d}_flops"], row[f"{d}_ms"]
                row[f"{d}_pct_of_peak"] = 100 * flops / (ms / 1000) / (peak * 1e9) if flops and ms > 0 else None
    return {"backends": out, "matmul_peak_gflops": peak, "lower_bound": bound,
            "bound_images": {"train": 60000, "validation": 10000}}


def main(argv=None):
    args, cfg, frameworks, skip = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    if args.report_only:
        with open(args.report_only) as f:
            files = report.write(json.load(f), args.out, args.name)
        print("Wrote " + ", ".join(files))
        return 0
    started = time.time()
    results = {"schema": 1, "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
               "command": "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:]),
               "settings": cfg, "threads": args.threads, "thread_env": common.thread_env(args.threads),
               "loadavg": {"start": os.getloadavg()}, "machine": machine_info(), "skipped": {}}
    print(f"tinycnn benchmarks ({cfg['profile']}): {results['machine']['cpu_model']}, "
          f"{results['machine']['logical_cores']} cores, {args.threads} threads per framework, "
          f"load average {results['loadavg']['start'][0]:.2f}", flush=True)
    runnable = []
    for fw in frameworks:
        why = available(fw)
        if why:
            print(why, flush=True)
            results["skipped"][fw] = why
        else:
            runnable.append(fw)

    with tempfile.TemporaryDirectory(prefix="tinycnn-bench-") as workdir:
        runner = Runner(cfg, args.threads, workdir)
        import tinycnn
        from tinycnn import seed
        tinycnn.set_random_seed(common.SEED)
        common.save_weights_list(os.path.join(workdir, "seed_init_weights.npz"), seed.build_model().get_weights())
        from benchmarks import course
        tinycnn.set_random_seed(common.SEED)
        common.save_weights_list(os.path.join(workdir, "course_init_weights.npz"), course.tinycnn_model().get_weights())

        tasks = tuple(t for t in ("seed", "course") if t not in skip)
        if tasks and runnable:
            runs = run_rounds(runner, runnable, cfg, workdir, tasks)
            if "seed" in runs:
                results["seed_runs"] = runs["seed"]
                results["seed"] = summarize_seed(runs["seed"])
                results["ratios"] = ratios(results["seed"])
                results["round_ratios"] = report.round_ratios(runs["seed"])
                results["functional_ratios"] = report.course_round_ratios(
                    runs["seed"], fw="tinycnn-functional", refs=("tinycnn-numba",), metrics=report.ROUND_METRICS)
            if "course" in runs:
                results["course_runs"] = runs["course"]
                results["course"] = summarize_course(runs["course"])
                results["course_ratios"] = ratios(results["course"])
                results["course_round_ratios"] = report.course_round_ratios(runs["course"])
        if "jit" not in skip and "tinycnn-numba" in runnable:
            print("Numba JIT compile time", flush=True)
            results["jit"] = run_jit(runner, cfg)
        if "scaling" not in skip:
            print("Scaling", flush=True)
            results["scaling"] = {}
            for fw in [f for f in SCALING_FRAMEWORKS if f in runnable]:
                res = runner.run(fw, "scaling", label=f"{fw} scaling")
                if res is not None:
                    results["scaling"][fw] = res["rows"]
        if "layers" not in skip:
            print("Per-layer times and roofline", flush=True)
            results["layers"] = run_layers(runner, runnable, cfg)
            if "course" not in skip:
                results["course_layers"] = run_course_layers(runner, runnable)
        if "parity" not in skip:
            if "keras" in runnable:
                print("Keras parity", flush=True)
                backends = [f.split("-")[1] for f in ("tinycnn-numba", "tinycnn-numpy") if f in runnable]
                extra = {"backends": backends or ["numpy"], "test_subset": cfg.get("parity_images") or cfg.get("test_subset"),
                         "tinycnn_weights": os.path.join(workdir, "trained-tinycnn-numba.npz")
                         if "tinycnn-numba" in runnable else os.path.join(workdir, "trained-tinycnn-numpy.npz"),
                         "keras_weights": os.path.join(workdir, "trained-keras.npz")}
                results["parity"] = runner.run("keras", "parity", extra, label="keras parity")
            else:
                results["skipped"]["parity"] = ("Keras parity skipped: " + (results["skipped"].get("keras")
                                                or "keras is not among --frameworks"))
                print(results["skipped"]["parity"], flush=True)
        results["errors"] = runner.errors

    results["loadavg"]["end"] = os.getloadavg()
    results["wall_s"] = time.time() - started
    json_path = os.path.join(args.out, f"{args.name}.json")
    with open(json_path, "w") as f:
        json.dump(results, f, indent=1, default=float)
    files = report.write(results, args.out, args.name)
    print(f"\nWrote {json_path}" + "".join(f", {os.path.basename(p)}" for p in files)
          + f" in {results['wall_s'] / 60:.1f} min")
    print(open(os.path.join(args.out, f"{args.name}.md")).read().split("\n## ")[1] if os.path.exists(
        os.path.join(args.out, f"{args.name}.md")) else "")
    return 1 if runner.errors else 0


if __name__ == "__main__":
    sys.exit(main())
