"""The tinycnn worker: one backend ("numba" or "numpy") per process.

Tasks: seed (the tutorial's workload), scaling, layers (per-layer forward/backward times,
FLOPs and the matmul peak), jit (Numba's compile time on whatever NUMBA_CACHE_DIR holds).
"""
import statistics
import sys
import time

import numpy as np

from . import common, roofline


class TinyCNN(common.KerasStyleModel):
    """The adapter common.seed_task and common.scaling_task drive."""

    def __init__(self, backend):
        import tinycnn
        self.tinycnn = tinycnn
        tinycnn.set_backend(backend)

    def build(self, size, weights):
        from tinycnn import seed
        from tinycnn.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
        self.tinycnn.backend.clear_session()
        self.tinycnn.set_random_seed(common.SEED)
        if size == 28:
            self.model = seed.build_model()
        else:       # the same architecture on bigger images
            self.model = self.tinycnn.Sequential([
                Conv2D(32, (3, 3), activation="relu", input_shape=(size, size, 1)), MaxPooling2D((2, 2)),
                Dropout(0.25), Conv2D(64, (3, 3), activation="relu"), MaxPooling2D((2, 2)), Dropout(0.25),
                Flatten(), Dense(128, activation="relu"), Dropout(0.5), Dense(10, activation="softmax")])
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



def layers_task(cfg):
    """Each layer's forward(training=True) and backward time at batch `layer_batch`, the Adam
    step, the whole train step, the FLOPs, and this machine's float32 matmul peak."""
    fw = TinyCNN(cfg["backend"])
    (x, y), _ = common.load_data(dict(cfg, test_subset=1))
    bs = cfg["layer_batch"]
    reps = -(-bs // len(x))
    xb, yb = np.concatenate([x] * reps)[:bs], np.concatenate([y] * reps)[:bs]
    fw.build(28, None)
    model = fw.model
    for _ in range(2):                      # compile the kernels, allocate the optimizer state
        model.train_on_batch(xb, yb)
    n = len(model.layers)
    fwd, bwd, adam = [[] for _ in range(n)], [[] for _ in range(n)], []
    fused = model._fused
    for _ in range(cfg["layer_repeats"]):
        a = xb
        for i, layer in enumerate(model.layers):
            t = time.perf_counter()
            a = layer.forward(a, training=True)
            fwd[i].append(time.perf_counter() - t)
        d = model.loss.gradient_logits(yb, a) if fused else model.loss.gradient(yb, a)
        for i in reversed(range(n)):
            layer = model.layers[i]
            t = time.perf_counter()
            d = layer.backward(d, skip_activation=True) if (i == n - 1 and fused) else layer.backward(d)
            bwd[i].append(time.perf_counter() - t)
        slots = [((layer.name, k), p, layer.grads[k]) for layer in model.layers for k, p in layer.params.items()]
        t = time.perf_counter()
        model.optimizer.apply(slots)
        adam.append(time.perf_counter() - t)
    step = common.time_calls(lambda i: model.train_on_batch(xb, yb), 1, cfg["layer_repeats"],
                             cfg["layer_repeats"], 0.0)
    flops = roofline.layer_flops(model, bs)
    rows = []
    for i, layer in enumerate(model.layers):
        rows.append({"name": layer.name, "type": type(layer).__name__,
                     "out_shape": list(layer.out_shape), "input_grad": bool(layer.input_grad),
                     "forward_ms": 1000 * statistics.median(fwd[i]),
                     "backward_ms": 1000 * statistics.median(bwd[i]),
                     "forward_flops": flops[i]["forward"], "backward_flops": flops[i]["backward"]})
    peak = roofline.matmul_peak(cfg["peak_n"], cfg["peak_repeats"])
    return {"backend": cfg["backend"], "batch_size": bs, "layers": rows,
            "adam_ms": 1000 * statistics.median(adam), "train_step_ms": 1000 * statistics.median(step),
            "matmul_peak": peak}


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
    fw = TinyCNN(cfg["backend"])
    out = common.seed_task(fw, cfg) if task == "seed" else common.scaling_task(fw, cfg)
    out["backend"] = cfg["backend"]
    out["versions"] = {"tinycnn": fw.tinycnn.__version__}
    try:
        import numba
        out["versions"]["numba"] = numba.__version__
    except ImportError:
        pass
    return out


if __name__ == "__main__":
    sys.exit(common.worker_main(run, __doc__))
