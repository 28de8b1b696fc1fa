"""The tinycnn worker: one backend ("numba" or "numpy") per process; cfg "api": "functional"
builds the seed model with tinycnn.Model(inputs, outputs) instead of the Sequential.

Tasks: seed (the tutorial's workload), course (benchmarks/course.py), scaling, layers (per-layer
and, on Numba, per-step forward/backward times, FLOPs and the matmul peak; cfg "model": "seed" or
"course"), jit (Numba's compile time on whatever NUMBA_CACHE_DIR holds).
"""
import statistics
import sys
import time

import numpy as np

from . import common, roofline


class TinyCNN(common.KerasStyleModel):
    """The adapter common.seed_task and common.scaling_task drive."""

    def __init__(self, backend, api="sequential"):
        import tinycnn
        self.tinycnn, self.api = tinycnn, api
        tinycnn.set_backend(backend)

    def build(self, size, weights):
        from tinycnn import seed
        from tinycnn.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
        self.tinycnn.backend.clear_session()
        self.tinycnn.set_random_seed(common.SEED)
        if size == 28 and self.api == "functional":
            self.model = self._functional_seed()
        elif size == 28:
            self.model = seed.build_model()
        else:       # the same architecture on bigger images
            self.model = self.tinycnn.Sequential([
                Conv2D(32, (3, 3), activation="relu", input_shape=(size, size, 1)), MaxPooling2D((2, 2)),
                Dropout(0.25), Conv2D(64, (3, 3), activation="relu"), MaxPooling2D((2, 2)), Dropout(0.25),
                Flatten(), Dense(128, activation="relu"), Dropout(0.5), Dense(10, activation="softmax")])
        self._setup(weights)

    def _functional_seed(self):
        """seed.build_model()'s layers, called in a chain on tinycnn.Input: the same weights, in order."""
        from tinycnn.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
        x = inputs = self.tinycnn.Input(shape=(28, 28, 1))
        for layer in (Conv2D(32, kernel_size=(3, 3), activation="relu"), MaxPooling2D(pool_size=(2, 2)),
                      Dropout(0.25), Conv2D(64, kernel_size=(3, 3), activation="relu"),
                      MaxPooling2D(pool_size=(2, 2)), Dropout(0.25), Flatten(), Dense(128, activation="relu"),
                      Dropout(0.5), Dense(10, activation="softmax")):
            x = layer(x)
        return self.tinycnn.Model(inputs=inputs, outputs=x)

    def build_course(self, weights):
        from . import course
        self.tinycnn.backend.clear_session()
        self.tinycnn.set_random_seed(common.SEED)
        self.model = course.tinycnn_model()
        self._setup(weights)

    def _setup(self, weights):
        if weights is not None:
            self.model.set_weights(weights)
        self.initial = [w.copy() for w in self.model.get_weights()]
        self._compile()

    def _compile(self):
        from tinycnn.optimizers import Adam
        self.model.compile(loss="categorical_crossentropy", optimizer=Adam(learning_rate=1e-3, epsilon=1e-7),
                           metrics=["accuracy"])

    def reset(self):
        self.model.set_weights(self.initial)
        self._compile()


def _ms(seconds):
    return 1000 * statistics.median(seconds)


def _time_layers(model, xb, yb, repeats):
    """Each layer's own forward(training=True) and backward, in order and in reverse (as
    tinycnn.plans.ReferencePlan runs them), and the Adam step: seconds per call, per repeat."""
    n = len(model.layers)
    fwd, bwd, adam = [[] for _ in range(n)], [[] for _ in range(n)], []
    for r in range(repeats + 1):                # the first pass is untimed: kernels and buffers
        a = xb
        times_f, times_b = [], []
        for layer in model.layers:
            t = time.perf_counter()
            a = layer.forward(a, training=True)
            times_f.append(time.perf_counter() - t)
        d = model._loss_gradient(yb, a)
        for layer in reversed(model.layers):
            t = time.perf_counter()
            d = layer.backward(d)
            times_b.append(time.perf_counter() - t)
        t = time.perf_counter()
        applied = model.optimizer.apply(model._slots())
        took = time.perf_counter() - t
        if not applied:
            raise FloatingPointError("the Adam step refused the layers' gradients (NaN or inf)")
        if r:
            for i in range(n):
                fwd[i].append(times_f[i])
                bwd[i].append(times_b[n - 1 - i])
            adam.append(took)
    return fwd, bwd, adam


def _time_steps(plan, xb, yb, model, repeats):
    """Each fast-plan step on the whole batch as one slice on this thread: begin, forward in
    order, backward in reverse (no dL/dx for the first step), end. Seconds per call, per repeat."""
    from tinycnn.kernels.numba_ops import blas
    steps = plan.steps
    times = [{"begin": [], "forward": [], "backward": [], "end": []} for _ in steps]
    with blas.one_thread():                     # as inside a plan's slice: the products on this thread only
        for r in range(repeats + 1):            # the first pass is untimed: buffers of the whole batch's size
            a, got = xb, [dict() for _ in steps]
            for step, g in zip(steps, got):
                t = time.perf_counter()
                step.begin(True)
                g["begin"] = time.perf_counter() - t
                t = time.perf_counter()
                a = step.forward(0, a, 0, True) if step.parallel else step.forward(a, True)
                g["forward"] = time.perf_counter() - t
            d = model._loss_gradient(yb, a)
            for j in reversed(range(len(steps))):
                step, g = steps[j], got[j]
                t = time.perf_counter()
                d = step.backward(0, d, need_dx=j > 0) if step.parallel else step.backward(d)
                g["backward"] = time.perf_counter() - t
            for step, g in zip(steps, got):
                t = time.perf_counter()
                step.end(1)
                g["end"] = time.perf_counter() - t
            if r:
                for g, kept in zip(got, times):
                    for key in kept:
                        kept[key].append(g[key])
            model.optimizer.apply(model._slots())     # new weights, as in training: begin prepares them again
    return times


def layers_task(cfg):
    """At batch `layer_batch`: each layer's own forward(training=True) and backward time, the
    Adam step, the whole train_on_batch, the FLOPs, this machine's float32 matmul peak and, on
    the Numba backend, each step of the fast plan on the whole batch as one slice."""
    fw = TinyCNN(cfg["backend"])
    bs, repeats = cfg["layer_batch"], cfg["layer_repeats"]
    if cfg.get("model") == "course":
        from . import course
        xb, yb = course.data(bs)
        fw.build_course(None)
    else:
        (x, y), _ = common.load_data(dict(cfg, test_subset=1))
        reps = -(-bs // len(x))
        xb, yb = np.concatenate([x] * reps)[:bs], np.concatenate([y] * reps)[:bs]
        fw.build(28, None)
    model = fw.model
    for _ in range(2):                      # compile the kernels, allocate the optimizer state
        model.train_on_batch(xb, yb)
    plan = model._ready_plan(xb)
    fwd, bwd, adam = _time_layers(model, xb, yb, repeats)
    flops = roofline.layer_flops(model, bs)
    rows = [{"name": layer.name, "type": type(layer).__name__, "out_shape": list(layer.out_shape),
             "forward_ms": _ms(fwd[i]), "backward_ms": _ms(bwd[i]),
             "forward_flops": flops[i]["forward"], "backward_flops": flops[i]["backward"]}
            for i, layer in enumerate(model.layers)]
    fast = hasattr(plan, "steps")           # the Numba backend's FastPlan
    out = {"backend": cfg["backend"], "model": cfg.get("model", "seed"), "batch_size": bs, "layers": rows,
           "plan": repr(plan) if fast else type(plan).__name__, "adam_ms": _ms(adam)}
    if fast:
        by_layer = {layer.name: (f, r) for layer, f, r in zip(model.layers, flops, rows)}
        steps = []
        for j, (step, t) in enumerate(zip(plan.steps, _time_steps(plan, xb, yb, model, repeats))):
            names = [layer.name for layer in step.layers]
            f = sum(by_layer[n][0]["forward"] for n in names)
            # the plan's first step computes no dL/dx: its dW costs one forward
            b = sum(by_layer[n][0]["backward"] for n in names) - (f if j == 0 else 0)
            steps.append({"step": type(step).__name__, "layers": names,
                          "key": type(step).__name__ + "[" + "+".join(names) + "]",
                          "parallel": bool(step.parallel), "begin_ms": _ms(t["begin"]),
                          "forward_ms": _ms(t["forward"]), "backward_ms": _ms(t["backward"]),
                          "end_ms": _ms(t["end"]), "forward_flops": f, "backward_flops": b,
                          "layers_forward_ms": sum(by_layer[n][1]["forward_ms"] for n in names),
                          "layers_backward_ms": sum(by_layer[n][1]["backward_ms"] for n in names)})
        out["plan_steps"] = steps
    whole = common.time_calls(lambda i: model.train_on_batch(xb, yb), 1, repeats, repeats, 0.0)
    out["train_step_ms"] = _ms(whole)
    out["matmul_peak"] = roofline.matmul_peak(cfg["peak_n"], cfg["peak_repeats"])
    return out


def jit_task(cfg):
    """Numba's cost before the first useful step: import, then the first train step and the
    first predict against the steady ones. Run with a fresh NUMBA_CACHE_DIR (cold: compile and
    write the cache) and again with the same directory in a new process (warm: load it)."""
    import os
    t = time.perf_counter()
    import numba  # noqa: F401
    import_numba_s = time.perf_counter() - t
    t = time.perf_counter()
    fw = TinyCNN("numba")
    import_ops_s = time.perf_counter() - t
    (x, y), (xt, _) = common.load_data(cfg)
    bs = cfg["batch_size"]
    fw.build(28, None)
    xb, yb = x[:bs], y[:bs]
    t = time.perf_counter()
    fw.train_step(xb, yb)
    first_step = time.perf_counter() - t
    steady = statistics.median(common.time_calls(lambda i: fw.train_step(xb, yb), 0, 5, 5, 0.0))
    t = time.perf_counter()
    fw.predict(xt[:bs], bs)
    first_predict = time.perf_counter() - t
    steady_predict = statistics.median(common.time_calls(lambda i: fw.predict(xt[:bs], bs), 0, 5, 5, 0.0))
    compile_s = max(0.0, first_step - steady) + max(0.0, first_predict - steady_predict)
    cache = os.environ.get("NUMBA_CACHE_DIR")
    files = sum(len(f) for _, _, f in os.walk(cache)) if cache and os.path.isdir(cache) else None
    return {"cache_dir": cache, "cache_files_after": files, "import_numba_s": import_numba_s,
            "import_tinycnn_numba_s": import_ops_s, "first_step_s": first_step, "steady_step_s": steady,
            "first_predict_s": first_predict, "steady_predict_s": steady_predict, "compile_s": compile_s}


def run(cfg):
    task = cfg["task"]
    if task == "layers":
        return layers_task(cfg)
    if task == "jit":
        return jit_task(cfg)
    fw = TinyCNN(cfg["backend"], cfg.get("api", "sequential"))
    tasks = {"seed": common.seed_task, "course": common.course_task, "scaling": common.scaling_task}
    out = tasks[task](fw, cfg)
    out["backend"], out["api"] = cfg["backend"], fw.api
    out["model_class"] = type(fw.model).__name__
    out["versions"] = {"tinycnn": fw.tinycnn.__version__}
    try:
        import numba
        out["versions"]["numba"] = numba.__version__
    except ImportError:
        pass
    return out


if __name__ == "__main__":
    sys.exit(common.worker_main(run, __doc__))
