"""What every worker shares: the config it is handed, timing, memory, the seed model's shapes.

A worker is started by run.py as `python -m benchmarks.worker_X --config cfg.json --json-out out.json`.
The thread-count variables (OMP_NUM_THREADS, NUMBA_NUM_THREADS, TF_NUM_INTRAOP_THREADS, ...)
are already in its environment when it starts, so NumPy's BLAS reads them at import.
"""
import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
import traceback

import numpy as np

BATCH = 128
SEED = 0


# -- the process -------------------------------------------------------------------------
def thread_env(threads):
    """The environment variables that fix every framework's thread pools to `threads`."""
    n = str(int(threads))
    return {"OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n,
            "NUMBA_NUM_THREADS": n, "TINYCNN_THREADS": n, "TF_NUM_INTRAOP_THREADS": n,
            "TF_NUM_INTEROP_THREADS": n}


def peak_rss_mb():
    """The worker's peak resident set size so far, in MiB (ru_maxrss is KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def summary(values):
    """median, min, max and count of a list of numbers (None when the list is empty)."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def time_calls(fn, warmup, min_calls, max_calls, budget_s):
    """Call fn(i) `warmup` times untimed, then time it at least min_calls times and then
    until max_calls or budget_s seconds of measuring. Returns the list of seconds per call."""
    for i in range(warmup):
        fn(i)
    times, start = [], time.perf_counter()
    while len(times) < max_calls and (len(times) < min_calls or time.perf_counter() - start < budget_s):
        t = time.perf_counter()
        fn(warmup + len(times))
        times.append(time.perf_counter() - t)
    return times


def worker_main(run, description):
    """Parse --config/--json-out, run `run(cfg)`, and write its dict (plus the process facts) as JSON.
    A failure is written as {"error": ...} and exits 1, so run.py can report it and go on."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, help="JSON file with the task and its sizes")
    parser.add_argument("--json-out", required=True, help="where to write the result")
    args = parser.parse_args()
    with open(args.config) as f:
        cfg = json.load(f)
    started = time.perf_counter()
    try:
        result = run(cfg)
        status = 0
    except Exception as err:     # reported, not hidden: run.py prints it and records it
        result = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
        status = 1
    result.update({"task": cfg.get("task"), "framework": cfg.get("framework"),
                   "peak_rss_mb": peak_rss_mb(), "wall_s": time.perf_counter() - started,
                   "pid": os.getpid(), "python": platform.python_version(),
                   "numpy": np.__version__,
                   "thread_env": {k: os.environ.get(k) for k in thread_env(1)}})
    with open(args.json_out, "w") as f:
        json.dump(result, f, indent=1, default=float)
    return status


# -- data ----------------------------------------------------------------------------------
def load_data(cfg):
    """The seed tutorial's MNIST (bundled with tinycnn), cut to the config's subset sizes."""
    from tinycnn import seed
    (x, y), (xt, yt) = seed.prepare_mnist()
    n, nt = cfg.get("train_subset"), cfg.get("test_subset")
    if n:
        x, y = x[:n], y[:n]
    if nt:
        xt, yt = xt[:nt], yt[:nt]
    return (x, y), (xt, yt)


def upsample(x, size):
    """(N, 28, 28, 1) -> (N, size, size, 1) by repeating pixels (size a multiple of 28) or cropping."""
    if size == x.shape[1]:
        return x
    k = -(-size // x.shape[1])
    big = np.repeat(np.repeat(x, k, axis=1), k, axis=2)
    return np.ascontiguousarray(big[:, :size, :size])


def flat_side(size):
    """Side of the last feature map of the seed model for size x size inputs (28 -> 5)."""
    return ((size - 2) // 2 - 2) // 2


def load_weights_list(path):
    if not path or not os.path.exists(path):
        return None
    with np.load(path) as archive:
        return [archive[f"w{i}"] for i in range(len(archive.files))]


def save_weights_list(path, weights):
    np.savez(path, **{f"w{i}": np.asarray(w) for i, w in enumerate(weights)})


# -- the seed workload, the same for every framework ------------------------------------------
def seed_task(fw, cfg):
    """Warm up, time train steps, train `epochs` epochs with validation, time predict.

    `fw` is a framework adapter (see worker_*.py): build(size, weights), reset(), prepare(x, y),
    train_step(xb, yb), fit_steps(x, y, batch, steps), fit_epoch(x, y, xv, yv, batch) -> val
    accuracy, predict(x, batch), get_weights(). Warm-up (JIT compilation, graph tracing) is done
    before any timing, and reset() puts the initial weights and a fresh optimizer back before
    the timed epochs.

    fit_ms_per_step is the marginal cost of a step inside the framework's own training loop:
    (t(S2 steps) - t(S1 steps)) / (S2 - S1), which cancels what each fit call costs once.
    """
    (x, y), (xt, yt) = load_data(cfg)
    bs = cfg["batch_size"]
    fw.build(28, load_weights_list(cfg.get("init_weights")))
    X, Y = fw.prepare(x, y)
    XT, YT = fw.prepare(xt, yt)
    out = {}

    # warm-up: one tiny fit with validation and a predict, whose last partial batches have the
    # same sizes as the real run's (60,000 % 128 = 96, 10,000 % 128 = 16): a framework that
    # traces a graph per batch shape (Keras) must not do it inside the timed epoch
    small = min(len(x), 2 * bs + (len(x) % bs or bs))
    small_val = min(len(xt), bs + (len(xt) % bs or bs))
    t = time.perf_counter()
    fw.fit_epoch(X[:small], Y[:small], XT[:small_val], YT[:small_val], bs)
    fw.predict(XT[:small_val], bs)
    out["warmup_s"] = time.perf_counter() - t

    steps_per_pass = max(1, len(x) // bs)

    def step(i):
        s = (i % steps_per_pass) * bs
        fw.train_step(X[s:s + bs], Y[s:s + bs])

    times = time_calls(step, cfg["warmup_steps"], cfg["steps"], cfg["steps"], 0.0)
    out["step_ms"] = [1000 * t for t in times]
    out["ms_per_step"] = statistics.median(out["step_ms"])

    out.update(fit_marginal(fw, X, Y, bs, cfg.get("fit_steps", [10, 60]), len(x)))

    fw.reset()
    epoch_s, accs = [], []
    for _ in range(cfg["epochs"]):
        t = time.perf_counter()
        accs.append(float(fw.fit_epoch(X, Y, XT, YT, bs)))
        epoch_s.append(time.perf_counter() - t)
    out["epoch_s"] = epoch_s
    out["s_per_epoch"] = statistics.median(epoch_s)
    out["val_accuracy"] = accs

    t = time.perf_counter()
    probs = np.asarray(fw.predict(XT, bs))
    out["predict_s"] = time.perf_counter() - t
    out["predict_images"] = len(xt)
    out["test_accuracy"] = float((probs.argmax(-1) == yt.argmax(-1)).mean())
    out["epochs"] = cfg["epochs"]
    out["train_images"], out["batch_size"] = len(x), bs
    if cfg.get("save_weights"):
        save_weights_list(cfg["save_weights"], fw.get_weights())
    return out


def course_task(fw, cfg):
    """The course model (benchmarks/course.py) on random CIFAR-shaped data: warm up, time train
    steps, then the marginal fit step, as seed_task does (no epochs: the data are random).

    `fw` has build_course(weights) besides what seed_task uses. cfg["course"] holds
    warmup_steps, steps and fit_steps; the data are fit_steps[1] batches of batch_size images.
    """
    from . import course
    c, bs = cfg["course"], cfg["batch_size"]
    x, y = course.data(c["fit_steps"][1] * bs)
    fw.build_course(load_weights_list(cfg.get("init_weights")))
    X, Y = fw.prepare(x, y)
    t = time.perf_counter()
    fw.fit_steps(X, Y, bs, 2)                   # JIT compilation, graph tracing, buffers
    out = {"warmup_s": time.perf_counter() - t}
    steps_per_pass = len(x) // bs

    def step(i):
        s = (i % steps_per_pass) * bs
        fw.train_step(X[s:s + bs], Y[s:s + bs])

    times = time_calls(step, c["warmup_steps"], c["steps"], c["steps"], 0.0)
    out["step_ms"] = [1000 * t for t in times]
    out["ms_per_step"] = statistics.median(out["step_ms"])
    out.update(fit_marginal(fw, X, Y, bs, c["fit_steps"], len(x)))
    out["train_images"], out["batch_size"], out["image_shape"] = len(x), bs, list(x.shape[1:])
    return out


def fit_marginal(fw, X, Y, bs, steps, n):
    """Time fit_steps over S1 and then S2 batches (no validation): the marginal ms per step."""
    s1, s2 = (min(int(s), n // bs) for s in steps)      # only whole batches of the data there is
    if s1 < 1 or s2 <= s1:
        return {"fit_steps": [s1, s2], "fit_s": None, "fit_ms_per_step": None}
    took = []
    for k in (s1, s2):
        t = time.perf_counter()
        fw.fit_steps(X, Y, bs, k)
        took.append(time.perf_counter() - t)
    return {"fit_steps": [s1, s2], "fit_s": took, "fit_ms_per_step": 1000 * (took[1] - took[0]) / (s2 - s1)}


def scaling_task(fw, cfg):
    """ms per train step against batch size (28x28) and against image size (fixed batch)."""
    (x, y), _ = load_data(dict(cfg, test_subset=1))
    sc = cfg["scaling"]
    rows = []
    plan = [(28, b, "batch") for b in sc["batch_sizes"]]
    plan += [(s, sc["image_batch"], "image") for s in sc["image_sizes"]]
    for size in sorted({p[0] for p in plan}):
        fw.build(size, None)
        for s, b, sweep in plan:
            if s != size:
                continue
            reps = -(-b // len(x))
            xb = upsample(np.concatenate([x] * reps)[:b] if reps > 1 else x[:b], size)
            yb = np.concatenate([y] * reps)[:b] if reps > 1 else y[:b]
            X, Y = fw.prepare(xb, yb)
            times = time_calls(lambda i: fw.train_step(X, Y), sc["warmup"], sc["min_steps"],
                               sc["max_steps"], sc["budget_s"])
            ms = [1000 * t for t in times]
            rows.append({"sweep": sweep, "image_size": s, "batch_size": b,
                         "ms_per_step": summary(ms), "ms_per_image": statistics.median(ms) / b})
    return {"rows": rows}


# -- weights between layouts (Keras/tinycnn NHWC <-> PyTorch NCHW) ----------------------------
def keras_to_torch(weights, size=28):
    """Seed-model weights in Keras/tinycnn order and layout -> PyTorch's, in nn.Sequential order.
    Conv kernels (KH,KW,C,F) -> (F,C,KH,KW); Dense (in,out) -> (out,in); the first Dense's rows
    are reordered from Keras's (h,w,c) flattening to PyTorch's (c,h,w)."""
    k1, b1, k2, b2, d1, c1, d2, c2 = weights
    side = flat_side(size)
    channels = k2.shape[-1]
    d1 = d1.reshape(side, side, channels, -1).transpose(2, 0, 1, 3).reshape(side * side * channels, -1)
    return [k1.transpose(3, 2, 0, 1), b1, k2.transpose(3, 2, 0, 1), b2, d1.T, c1, d2.T, c2]


class KerasStyleModel:
    """What the seed and scaling tasks call on a framework whose model has Keras's API
    (tinycnn and Keras alike): subclasses set self.model and define reset()."""

    def prepare(self, x, y):
        return x, y

    def train_step(self, xb, yb):
        self.model.train_on_batch(xb, yb)

    def fit_steps(self, x, y, batch, steps):
        """Exactly `steps` batches in the model's own fit: the data cut to steps * batch samples."""
        n = steps * batch
        self.model.fit(x[:n], y[:n], batch_size=batch, epochs=1, verbose=0)

    def fit_epoch(self, x, y, xv, yv, batch):
        history = self.model.fit(x, y, batch_size=batch, epochs=1, verbose=0, validation_data=(xv, yv))
        return history.history["val_accuracy"][-1]

    def predict(self, x, batch):
        return self.model.predict(x, batch_size=batch, verbose=0)

    def get_weights(self):
        return [np.asarray(w) for w in self.model.get_weights()]
