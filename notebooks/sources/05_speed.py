# %% [markdown]
# # 05 · Speed: why im2col, where the time goes, and what the fast backend does
#
# tinycnn's layers are written to be read, one formula at a time. The Numba backend trains the same model
# several times faster and gives the same numbers. This notebook measures why, while it runs:
#
# 1. **Why im2col?** The same convolution as Python loops, as loops over output positions, and as one matrix product.
# 2. **Where the time goes** on the reference (NumPy) backend: every layer's forward and backward, the loss and
#    the Adam update.
# 3. **What the fast backend does differently**: the plan the Numba backend makes for the model (fused steps,
#    one slice of the batch per core, Winograd's algorithm), how long it takes, and a check that it computes the
#    same numbers as the reference.
# 4. **NumPy vs Numba vs Keras** on the whole training step, from the benchmark suite's committed results.
# 5. **What Numba compiles**: the machine-code versions it builds, and what compiling costs.
#
# Every timing is measured while the notebook runs, on whatever machine runs it, and varies from run to run
# (more so on a shared machine). Each one is the best or the median of several runs; ratios are more stable than
# absolute times. The measurements behind each choice of the fast backend, with the machine they were taken on,
# are in `benchmarks/DECISIONS.md`.

# %%
import glob
import importlib
import io
import json
import os
import pkgutil
import statistics
import time
from unittest import mock

import matplotlib.pyplot as plt
import numpy as np

import tinycnn
from tinycnn import seed
from tinycnn.backend import BackendUnavailableError, using
from tinycnn.kernels import numpy_ops
from tinycnn.plans import ReferencePlan

plt.rcParams["figure.dpi"] = 80
print("tinycnn", tinycnn.__version__, "imported from", os.path.relpath(os.path.dirname(tinycnn.__file__)),
      f"- {os.cpu_count()} CPU cores; default backend: {tinycnn.get_backend()}")

try:                                  # sections 3 and 5 need the Numba backend; without it they say so and skip
    with using("numba"):
        from tinycnn.kernels import numba_ops
    HAVE_NUMBA = True
except BackendUnavailableError as err:
    HAVE_NUMBA, numba_ops = False, None
    print(f"The Numba parts of this notebook are skipped: {err}")


def best_time(fn, repeats=5):
    """The fastest of `repeats` runs, in seconds: the run least disturbed by other programs."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def median_time(fn, repeats=7):
    """The median of `repeats` runs, in seconds, after one untimed run (buffers, caches, compilation)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)

# %% [markdown]
# ## 1. Why im2col?
#
# Three ways to compute the same convolution:
#
# * **seven loops**, one multiply-add per Python step (the definition, notebook 02);
# * **loops over the output positions**, each position doing one small vectorised product with NumPy
#   (all images and all filters at once);
# * **im2col + one matrix product** (what the reference backend does, `numpy_ops.conv2d_forward`).
#
# We time them on the seed model's two convolutions: `conv2d` (28×28×1 images, 32 filters of 3×3, so
# $26 \cdot 26 \cdot 32 \cdot 9 = 194{,}688$ multiply-adds per image) and `conv2d_1` (13×13×32 inputs, 64 filters of
# 3×3×32: $11 \cdot 11 \cdot 64 \cdot 288 = 2{,}230{,}272$ per image).

# %%
(x_train, y_train), _ = seed.prepare_mnist()
rng = np.random.default_rng(0)


def conv_seven_loops(x, w, b):
    N, H, W, C = x.shape
    KH, KW, _, F = w.shape
    out = np.zeros((N, H - KH + 1, W - KW + 1, F), dtype=np.float32)
    for n in range(N):
        for i in range(H - KH + 1):
            for j in range(W - KW + 1):
                for f in range(F):
                    total = b[f]
                    for a in range(KH):
                        for c in range(KW):
                            for ch in range(C):
                                total += x[n, i + a, j + c, ch] * w[a, c, ch, f]
                    out[n, i, j, f] = total
    return out


def conv_position_loops(x, w, b):
    N, H, W, C = x.shape
    KH, KW, _, F = w.shape
    out = np.zeros((N, H - KH + 1, W - KW + 1, F), dtype=np.float32)
    for i in range(H - KH + 1):
        for j in range(W - KW + 1):
            patch = x[:, i:i + KH, j:j + KW, :]                              # (N, KH, KW, C)
            out[:, i, j, :] = np.tensordot(patch, w, axes=3) + b             # (N, F)
    return out


def conv_im2col(x, w, b):
    return numpy_ops.conv2d_forward(x, w, b, (1, 1), (0, 0, 0, 0))[0]       # (N, OH, OW, F)


layers = {"conv2d": x_train[:64],                                                     # (64, 28, 28, 1)
          "conv2d_1": rng.random((64, 13, 13, 32)).astype(np.float32)}                # (64, 13, 13, 32)
speed = {}
for layer, x in layers.items():
    C, F = x.shape[-1], 32 if x.shape[-1] == 1 else 64
    w = (rng.standard_normal((3, 3, C, F)) / np.sqrt(9 * C)).astype(np.float32)     # (KH, KW, C, F)
    b = np.zeros(F, dtype=np.float32)                                                # (F,)
    reference = conv_im2col(x[:1], w, b)
    assert np.allclose(conv_position_loops(x[:1], w, b), reference, atol=1e-4)
    speed[layer, "im2col + one product"] = best_time(lambda: conv_im2col(x, w, b)) / len(x)
    speed[layer, "loops over positions"] = best_time(lambda: conv_position_loops(x, w, b), 3) / len(x)
    if layer == "conv2d":                      # one image is enough to see it: the loops take seconds
        assert np.allclose(conv_seven_loops(x[:1], w, b), reference, atol=1e-4)
        speed[layer, "seven loops"] = best_time(lambda: conv_seven_loops(x[:1], w, b), 1)

for layer in layers:
    macs = 26 * 26 * 32 * 9 if layer == "conv2d" else 11 * 11 * 64 * 288
    fastest = speed[layer, "im2col + one product"]
    print(f"{layer}: {macs:,} multiply-adds per image")
    for method in ("seven loops", "loops over positions", "im2col + one product"):
        if (layer, method) in speed:
            seconds = speed[layer, method]
            print(f"    {method:<22} {seconds * 1e6:9.0f} µs per image  {macs / seconds / 1e9:7.3f} G multiply-adds/s"
                  f"  {seconds / fastest:7.1f}x the im2col time")

# %% [markdown]
# The arithmetic is the same in all three; what differs is the **overhead per multiply-add**.
#
# * In the seven loops, every multiply-add is a few Python bytecodes, two indexing calls into NumPy and a new
#   Python float: hundreds of nanoseconds for a multiplication the CPU could do in a fraction of a nanosecond.
#   That is the gap of several hundred times.
# * Looping over positions pays Python's overhead once per output **position** instead of once per multiply-add,
#   and lets NumPy do the rest. That removes most of the gap already.
# * im2col pays it a handful of times per **batch**, and hands the BLAS library one big product, which it runs
#   far closer to the CPU's peak: blocks of both matrices kept in the caches, SIMD instructions doing 8 or 16
#   multiply-adds at a time. Compared with the position loops the gain is a small factor rather than hundreds
#   (the last column; it varies with the machine and with what else runs on it). Just as important, the
#   backward pass becomes two more products and a col2im (notebook 02), with no Python loop at all.
#
# The price of im2col is memory: each pixel is copied up to 9 times (for a 3×3 kernel), and everything the
# product writes goes through memory. That is where section 3 picks up.
#
# ## 2. Where the time goes on the reference backend
#
# A model never calls its layers itself: it asks the backend for a **plan** (`tinycnn.backend.build_plan`) and
# calls the plan's `forward` and `backward`. On the NumPy backend that is `tinycnn.plans.ReferencePlan`: every
# layer's `forward(x, training=True)` in order, then every layer's `backward` in reverse, which is the chain rule
# as two loops. Below, that loop is written out with a clock around each call, for one training step of the seed
# model on a batch of 128 images. The last layer's backward gets what a training step hands the plan: the
# softmax and the cross-entropy together give $\partial L/\partial z = (p - y)/N$ directly, wrapped in a
# `LogitsGradient` that the softmax passes on. Then the Adam update of every weight. Each figure is the fastest
# of 7 steps (a burst of other work on the machine slows some steps down, never speeds one up).

# %%
BATCH = 128
x, y = x_train[:BATCH], y_train[:BATCH]                               # (128, 28, 28, 1), (128, 10)


def seed_model():
    """The seed tutorial's model, compiled, with the same weights and layer names every time."""
    tinycnn.utils.clear_session()
    tinycnn.set_random_seed(0)
    model = seed.build_model()
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model


def loss_gradient(model, y, out):
    """What a training step hands the plan's backward: for softmax + cross-entropy, dL/dz = (p - y) / N."""
    return model._loss_gradient(y, out)         # the model's own: a LogitsGradient, .dz (N, 10), for the softmax


def time_layers(model, x, y, repeats=7):
    """{name: (forward s, backward s)} of every layer, the loss and the Adam update: the fastest of `repeats` steps."""
    runs = []
    for r in range(repeats + 1):                                       # the first step is not timed
        t, a = {}, x
        for layer in model.layers:                                     # ReferencePlan.forward
            start = time.perf_counter()
            a = layer.forward(a, training=True)
            t[layer.name] = [time.perf_counter() - start, 0.0]
        start = time.perf_counter()
        model.loss(y, a)
        d = loss_gradient(model, y, a)
        t["loss"] = [time.perf_counter() - start, 0.0]
        for layer in reversed(model.layers):                           # ReferencePlan.backward
            start = time.perf_counter()
            d = layer.backward(d)
            t[layer.name][1] = time.perf_counter() - start
        slots = model._slots()                                         # [(key, weight, its gradient)], as fit uses
        start = time.perf_counter()
        assert model.optimizer.apply(slots)                            # checks every new weight is finite, then writes
        t["Adam update"] = [0.0, time.perf_counter() - start]
        if r:
            runs.append(t)
    return {name: tuple(min(run[name][i] for run in runs) for i in (0, 1)) for name in runs[0]}


with using("numpy"):
    model = seed_model()
    step_time = {"numpy": median_time(lambda: model.train_on_batch(x, y))}
    layer_times = time_layers(model, x, y)
names = list(layer_times)
print(f"NumPy backend: train_on_batch of {BATCH} images takes {step_time['numpy'] * 1e3:.0f} ms "
      f"(median); the fastest of each part, below, add up to {sum(map(sum, layer_times.values())) * 1e3:.0f} ms\n")
print(f"{'':<16}{'forward ms':>12}{'backward ms':>13}")
for name in names:
    fwd, bwd = layer_times[name]
    print(f"{name:<16}{fwd * 1e3:12.2f}{bwd * 1e3:13.2f}")

fig, ax = plt.subplots(figsize=(8, 4))
fwd = [layer_times[n][0] * 1e3 for n in names]
bwd = [layer_times[n][1] * 1e3 for n in names]
ax.barh(names, fwd, label="forward (or loss)")
ax.barh(names, bwd, left=fwd, label="backward (or update)")
ax.invert_yaxis()                                                      # first layer on top
ax.set_xlabel(f"ms per batch of {BATCH}")
ax.set_title(f"reference backend (NumPy): {sum(fwd) + sum(bwd):.0f} ms per training step")
ax.legend()
fig.tight_layout()
plt.show()

total = sum(map(sum, layer_times.values()))
share = {kind: sum(sum(layer_times[n]) for n in names if n.startswith(kind)) / total
         for kind in ("conv2d", "max_pooling2d", "dropout", "dense")}
print(", ".join(f"{kind} layers {s:.0%}" for kind, s in share.items()),
      f"of the step; the rest {1 - sum(share.values()):.0%}")

# %% [markdown]
# What to look for:
# * The **convolutions** take most of the time. `conv2d_1` does the most arithmetic (its patches are 288 numbers
#   long). `conv2d` has tiny patches (9 numbers) but 26×26 positions per image, so for it the cost of *moving*
#   data (building cols, folding dx back with col2im) counts more than its multiply-adds.
# * **Backward costs more than forward** for the layers with weights: two matrix products instead of one, and
#   col2im. `conv2d`'s backward also computes $\partial L/\partial x$, the gradient for the *images*, which nothing
#   uses: the reference plan is the definition, and every layer's backward returns its input's gradient.
# * The **ReLU** (inside each `Conv2D` and `Dense` here), the **max-pooling** and the **dropout** do almost no
#   arithmetic, yet they take a large share: each reads a whole array from memory and writes a new one, forward
#   and backward. The dropout also draws a random number for every unit.
# * The loss and the Adam update are small: the seed model has 225,034 weights, against millions of values
#   flowing through the convolutions.
#
# ## 3. What the fast backend does differently
#
# On the Numba backend, `build_plan` returns a different plan for the same layers: a `FastPlan`
# (`tinycnn/kernels/numba_ops/plan.py`). It has the same `forward` and `backward`, and tests
# (`tests/test_plans.py`) hold it to the reference plan's numbers. Here is the plan the model gets; the first
# call compiles (or loads from Numba's cache) every kernel it uses, on two images of zeros:

# %%
if HAVE_NUMBA:
    from tinycnn.kernels.numba_ops import blocks, threads, winograd

    with using("numba"):
        model = seed_model()
        plan = tinycnn.backend.build_plan(model.layers)              # what model.fit runs on this backend
        note, start = plan.compile_note, time.perf_counter()
        plan.warm_up(x[:2])
        warm_up = time.perf_counter() - start
    print(plan)
    print(f"warm-up ({note}): {warm_up:.1f} s\n")
    for step in plan.steps:
        covers = " + ".join(layer.name for layer in step.layers)
        alg = getattr(getattr(step, "conv", None), "alg", None)
        print(f"{type(step).__name__:<12} {covers:<38} {'' if alg is None else 'convolution: ' + alg.name}")
    print()
    for step in plan.steps:                                          # why each convolution got its algorithm
        if hasattr(step, "conv"):
            KH, KW, C, F = step.layer.params["kernel"].shape
            print(f"{step.layer.name}: {KH}x{KW}x{C} kernels, {F} filters -> {step.conv.alg.name}; multiplications "
                  f"per output: im2col {KH * KW * C}, Winograd F(6x6, 3x3) {64 * C / 36:.1f}; "
                  f"winograd.pays({C}, {F}) = {winograd.pays(C, F)}")
else:
    print("Skipped: the Numba backend is not available here.")

# %% [markdown]
# Each **step** stands for one or more neighbouring layers and computes them together:
#
# * A `ConvStep` is a convolution, its ReLU, the 2×2 max-pool and the dropout after it, **in one pass**. The
#   convolution's output is produced a few images at a time, into a buffer small enough to stay in the core's
#   cache; the bias, the ReLU and the pooling are applied there, and only the pooled, dropped-out result goes to
#   memory. Nothing is kept for the ReLU or the dropout: backward reads the ReLU's gate from the output and
#   draws the dropout mask again from its seed.
# * Each convolution gets the algorithm that suits its shape (`tinycnn/kernels/numba_ops/conv.py`):
#   * `conv2d` (3×3 over one channel) is computed **directly**: each output pixel's nine inputs are loaded into
#     registers and every filter takes its nine products from there (`direct.py`). im2col would write those
#     taps to memory for a product whose inner dimension is only 9.
#   * `conv2d_1` uses **Winograd's F(6×6, 3×3)** (`winograd.py`): each 8×8 tile of the input and each kernel are
#     transformed by small constant matrices, 64 matrix products over the channels replace the one big product,
#     and a last transform gives a 6×6 block of outputs. That takes $64C/36 \approx 1.8C$ multiplications per
#     output instead of $9C$; the transforms cost additions of their own, so `winograd.pays` counts both and
#     chooses Winograd only where the total is smaller.
#   * Any other shape uses im2col and one product per block of images (`im2col_conv.py`).
# * The **first layer computes no $\partial L/\partial x$**: nothing needs the gradient of the images, so the plan's
#   `backward` returns `None` and skips a product and a col2im.
# * The **batch is cut into one slice per core**, and each core runs every step on its own slice, so there is
#   one hand-over to the other threads for the whole forward pass and one for the whole backward pass
#   (`threads.py`). Each slice's weight gradients are summed into the layers' `grads` at the end. While the
#   slices run, the BLAS library is held to one thread (`blas.py`), so that two pools of threads do not fight
#   over the same cores.
#
# **Both plans give the same numbers.** That is the contract the tests enforce (`tests/test_plans.py`). With the
# same seed, the dropout layers drop the same units (both backends draw the mask from the same counter-based
# generator), so the outputs and every gradient must agree up to float32 rounding. One step of each plan, from
# the model's initial weights:

# %%
def one_step(plan, backend_name):
    """The output, the returned dL/dx and copies of every layer's grads after one forward + backward."""
    with using(backend_name):
        tinycnn.set_random_seed(1)                                   # the same dropout masks for both plans
        out = plan.forward(x, training=True)
        dx = plan.backward(loss_gradient(model, y, out))
    grads = {(layer.name, key): g.copy() for layer in model.layers for key, g in layer.grads.items()}
    return out.copy(), None if dx is None else dx.copy(), grads


if HAVE_NUMBA:
    ref_out, ref_dx, ref_grads = one_step(ReferencePlan(model.layers), "numpy")
    fast_out, fast_dx, fast_grads = one_step(plan, "numba")
    print(f"{'':<29}{'shape':<16}{'max |fast - reference|':>24}{'max |reference|':>17}")
    print(f"{'outputs (probabilities)':<29}{str(ref_out.shape):<16}{np.abs(fast_out - ref_out).max():24.1e}"
          f"{np.abs(ref_out).max():17.1e}")
    for key, ref in ref_grads.items():
        print(f"{'grads' + str(key):<29}{str(ref.shape):<16}{np.abs(fast_grads[key] - ref).max():24.1e}"
              f"{np.abs(ref).max():17.1e}")
    print(f"dL/dx of the images: the reference returns {ref_dx.shape}, the fast plan {fast_dx} (not computed)")
else:
    print("Skipped: the Numba backend is not available here.")

# %% [markdown]
# The differences are float32 rounding, a few units in the 7th digit: the fast plan adds the same terms in
# another order (Winograd's transforms, each slice's gradients summed at the end). Rounding can also tip a
# discrete choice. Where two values in a max-pool window are within rounding of each other, the two plans may
# pick different winners and send that window's gradient to different pixels; after some training this happens
# now and then, and one gradient then differs by more than rounding.
#
# **Why exact zeros matter.** A ReLU's gradient is 1 where its output is positive and 0 elsewhere. MNIST's
# background is zero, and a ReLU feeds `conv2d_1`, so many of its 3×3×32 windows read nothing but zeros, and
# their outputs are exactly the bias. If Winograd's transforms, which mix a tile's pixels together, left a
# residue of 1e-9 there, the ReLU after them would count those units as active where the reference does not:
# a large share of them, not one now and then. So Winograd's kernels mark the outputs whose window reads only zeros and
# give them exactly the bias. A check on `conv2d_1`'s real input, with the initial weights (every bias is 0 at the
# start of training):

# %%
if HAVE_NUMBA:
    with using("numpy"):
        a = x
        for layer in model.layers[:3]:                                # conv2d, max_pooling2d, dropout
            a = layer.forward(a, training=True)                       # (128, 13, 13, 32): conv2d_1's input
    w, b = model.layers[3].params["kernel"], model.layers[3].params["bias"]     # (3, 3, 32, 64), (64,)
    z_ref = numpy_ops.conv2d_forward(a, w, b, (1, 1), (0, 0, 0, 0))[0]          # (128, 11, 11, 64), im2col
    z_fast = numba_ops.conv2d_forward(a, w, b, (1, 1), (0, 0, 0, 0))[0]         # the same, by Winograd
    nonzero = (a != 0).any(axis=-1, keepdims=True)                              # (128, 13, 13, 1)
    reads = numpy_ops.windows(nonzero, 3, 3, (1, 1)).any(axis=(3, 4, 5))        # (128, 11, 11): a nonzero input?
    print(f"conv2d_1 computed by {numba_ops.Conv(a.shape[1:], w.shape, (1, 1), (0, 0, 0, 0)).alg.name}: "
          f"{(~reads).mean():.0%} of its output pixels read only zeros")
    print(f"there, Winograd's output == the bias exactly: {bool((z_fast[~reads] == b).all())} "
          f"(the reference's: {bool((z_ref[~reads] == b).all())})")
    flips = (z_fast > 0) != (z_ref > 0)                                         # ReLU gates that disagree
    print(f"ReLU gates (z > 0) that differ: {int(flips[~reads].sum())} where the window reads only zeros, "
          f"{int(flips[reads].sum())} elsewhere (of {z_ref.size:,}; "
          f"there |z| < {np.abs(z_ref[flips]).max(initial=0):.0e}, within rounding of 0)")
    print(f"elsewhere, max |Winograd - reference| = {np.abs(z_fast - z_ref)[reads].max():.1e} "
          f"(max |reference| = {np.abs(z_ref).max():.1f})")
else:
    print("Skipped: the Numba backend is not available here.")

# %% [markdown]
# **How fast?** The same forward + backward (no update) of the same batch, three ways: the reference plan with
# NumPy's kernels (section 2); the reference plan with the Numba backend's kernels, where each layer calls the
# compiled `numba_ops` functions and each of those decides on its own whether to cut the batch across the
# cores; and the fast plan. Each runs 10 times in a row, as in training, and gets the median of the last 9. We
# also count how often each hands work to another thread, and time every layer's own forward and backward on the
# Numba kernels, as in section 2.

# %%
def forward_backward(plan, model, x, y):
    """One training step without the update: forward(training=True), then backward from the loss's gradient."""
    return plan.backward(loss_gradient(model, y, plan.forward(x, training=True)))


def count_handovers(plan, model, backend_name):
    """How many times one forward + backward hands jobs to other threads (threads.run with more than one job)."""
    calls, run = [], threads.run

    def counting(jobs):
        if len(jobs) > 1 and not threads.inside():
            calls.append(len(jobs))
        return run(jobs)
    with using(backend_name), mock.patch.object(threads, "run", counting):
        forward_backward(plan, model, x, y)
    return len(calls)


ways = {"reference plan, NumPy kernels": ("numpy", ReferencePlan(model.layers))}
if HAVE_NUMBA:
    ways.update({"reference plan, Numba kernels": ("numba", ReferencePlan(model.layers)),
                 "fast plan (Numba)": ("numba", plan)})
pass_time = {}
for label, (backend_name, p) in ways.items():
    with using(backend_name):                                         # back to back, as a training loop runs them
        pass_time[label] = median_time(lambda: forward_backward(p, model, x, y), repeats=9)
handovers = {label: count_handovers(p, model, b) if HAVE_NUMBA else 0 for label, (b, p) in ways.items()}

base = pass_time["reference plan, NumPy kernels"]
for label, seconds in pass_time.items():
    print(f"{label:<31} {seconds * 1e3:7.1f} ms per forward + backward  {base / seconds:4.1f}x the NumPy reference's "
          f"speed  {handovers[label]:2d} hand-overs to other threads")
if HAVE_NUMBA:
    print(f"\n{threads.count()} threads; the fast plan's slices of the batch: {plan.bounds[0]}")
    with using("numba"):
        step_time["numba"] = median_time(lambda: model.train_on_batch(x, y))   # the model's own plan: a FastPlan
        numba_layer_times = time_layers(model, x, y)                  # each layer's own methods, Numba kernels
    print("whole train_on_batch, with the loss and the Adam update: "
          + ", ".join(f"{b} backend {t * 1e3:.1f} ms" for b, t in step_time.items()))
    print(f"\nthe layers' own forward and backward (the reference plan), ms per batch of {BATCH}:")
    print(f"{'':<16}{'NumPy kernels':>22}{'Numba kernels':>22}")
    print(f"{'':<16}{'forward':>11}{'backward':>11}{'forward':>11}{'backward':>11}")
    for name in names:
        (nf, nb), (mf, mb) = layer_times[name], numba_layer_times[name]
        print(f"{name:<16}{nf * 1e3:11.2f}{nb * 1e3:11.2f}{mf * 1e3:11.2f}{mb * 1e3:11.2f}")

fig, ax = plt.subplots(figsize=(8, 0.6 * len(pass_time) + 1.2))
ax.barh(list(pass_time), [t * 1e3 for t in pass_time.values()], color="C1")
ax.invert_yaxis()
ax.set_xlabel(f"ms per forward + backward, batch of {BATCH} (lower is better)")
ax.set_title("the seed model, three ways to run it")
fig.tight_layout()
plt.show()

# %% [markdown]
# Where the gain comes from. The compiled kernels alone (the middle bar) help where NumPy makes several passes
# or builds temporary arrays: compare the max-pooling rows, `conv2d_1` (Winograd, on the Numba backend even when
# the layer calls it) and the Adam update in the two columns of the table. The remaining products are BLAS calls
# on both backends, and the `Dropout` layer draws its mask with NumPy on both (`tinycnn.utils.uniform`). The fast
# plan adds the rest: the ReLU, the pooling and the dropout done inside the convolution's pass (the mask drawn by
# a compiled loop), no $\partial L/\partial x$ for the first layer, and every step on all the cores with two
# hand-overs in all. (Called by the layers, the Numba kernels cut only their biggest calls across the cores, and
# run the rest on one.)
#
# **Memory traffic.** For these layers, moving data costs more than the arithmetic. Here is what the reference
# writes to memory for `conv2d` and the two layers after it in one forward pass, counted from the array shapes,
# against what the fused step writes:

# %%
MB = 1e6
z = BATCH * 26 * 26 * 32 * 4                     # conv2d's output (128, 26, 26, 32), float32 bytes
pooled = BATCH * 13 * 13 * 32 * 4                # after the 2x2 max-pool (128, 13, 13, 32)
winners = BATCH * 13 * 13 * 32                   # each window's winner, one byte each
cols = BATCH * 26 * 26 * 9 * 4                   # im2col's (128*26*26, 9)
reference = {"im2col's cols": cols, "conv2d's z = cols @ W + b": z, "the ReLU's output": z,
             "the pooled output": pooled, "the pooling's winners": winners,
             "the dropout's random numbers": 2 * pooled,             # float64 (after uint64 temporaries)
             "the dropout's mask": pooled, "the dropout's output": pooled}
for what, nbytes in reference.items():
    print(f"    {what:<30} {nbytes / MB:6.1f} MB")
print(f"reference plan: at least {sum(reference.values()) / MB:.1f} MB written, most of it read back by the next layer")
print(f"fast plan:      {(pooled + winners) / MB:.1f} MB written (the pooled, dropped-out output and the winners)")
if HAVE_NUMBA:
    print(f"one core's L2 cache: {blocks.cache_bytes() / 2**20:.2g} MiB")
    for step in plan.steps:
        if hasattr(step, "conv"):
            print(f"    {step.layer.name} ({step.conv.alg.name}): blocks of {step.conv.step} images per core")

# %% [markdown]
# `conv2d`'s output alone is several times the size of a core's own (L2) cache. Written whole, it goes out to main
# memory and comes back for the next layer; produced a few images at a time and consumed at once, it stays in the
# core. The direct kernel of `conv2d` does not even store it: each output stays in a register until the max-pool
# has compared it with its three neighbours. Winograd's steps exchange buffers of their own (the transformed
# tiles, the 64 products), and the block size (`blocks.images_per_block`) keeps those in cache too.
#
# **What one core does.** The fast plan's forward pass is, on each core, a loop over the steps on that core's slice
# of the batch; its backward pass is the same loop in reverse. Here is that loop written out, for one slice of
# `BATCH / threads` images, on this thread alone, with a clock around each step (the fastest of 7):

# %%
if HAVE_NUMBA:
    from tinycnn.kernels.numba_ops import blas

    n = BATCH // threads.count()                                      # one core's share of the batch
    runs = []
    with using("numba"), blas.one_thread():                          # as inside a slice: products on this thread
        for r in range(8):                                            # the first run is not timed
            t, h = [], x[:n]
            for step in plan.steps:
                step.begin(True)                                      # the weights, the dropout seed
                start = time.perf_counter()
                h = step.forward(0, h, 0, True)                       # slice 0, which starts at image 0
                t.append([time.perf_counter() - start, 0.0])
            d = loss_gradient(model, y[:n], h)
            for j in reversed(range(len(plan.steps))):
                start = time.perf_counter()
                d = plan.steps[j].backward(0, d, need_dx=j > 0)       # the first step computes no dL/dx
                t[j][1] = time.perf_counter() - start
            for step in plan.steps:
                step.end(1)                                           # the grads: one slice to sum
            if r:
                runs.append(t)
    print(f"one slice of {n} images, on one thread:")
    print(f"{'step':<46}{'forward ms':>11}{'backward ms':>13}")
    for j, step in enumerate(plan.steps):
        fwd, bwd = (min(run[j][i] for run in runs) * 1e3 for i in (0, 1))
        label = f"{type(step).__name__}[{'+'.join(layer.name for layer in step.layers)}]"
        print(f"{label:<46}{fwd:11.2f}{bwd:13.2f}")
else:
    print("Skipped: the Numba backend is not available here.")

# %% [markdown]
# The systems side of these choices (the cost of a hand-over between threads, how large a block should be, when
# Winograd pays, why each transform stores along a tile's first axis, what compiling costs) is in
# `benchmarks/DECISIONS.md`, with the measurements behind each decision and the machine they were taken on. The
# sections "Threads", "Cache blocks", "Winograd: when it pays", "Epilogue" and "conv1" go with this section.
#
# ## 4. NumPy vs Numba vs Keras
#
# The benchmark suite (`python -m benchmarks`) times the whole seed workload with tinycnn's two backends, Keras
# (TensorFlow, CPU) and PyTorch, each in its own process, over several rounds, and writes
# `benchmarks/results/results.json` and a report (`results.md`). If such a file exists, we read it here. Its
# figures come from the machine it describes, not from the one running this notebook.

# %%
def find_repo_root(start="."):
    path = os.path.abspath(start)
    while not os.path.isdir(os.path.join(path, "benchmarks")) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


results_dir = os.path.join(find_repo_root(), "benchmarks", "results")
# results.json is the committed run; otherwise the newest *.json (a fresh clone gives every file the same mtime)
results_files = sorted(glob.glob(os.path.join(results_dir, "*.json")),
                       key=lambda path: (os.path.basename(path) == "results.json", os.path.getmtime(path)))
bench = None
if results_files:
    try:
        with open(results_files[-1], encoding="utf-8") as f:
            bench = json.load(f)
    except (OSError, ValueError) as err:
        print(f"Could not read {results_files[-1]}: {err}")
if isinstance(bench, dict):
    machine = bench.get("machine") or {}
    print(f"Benchmark results: benchmarks/results/{os.path.basename(results_files[-1])}, "
          f"created {bench.get('created', '?')} by `{bench.get('command', '?')}`")
    print(f"machine: {machine.get('cpu_model', '?')}, {machine.get('logical_cores', '?')} cores; "
          f"threads used: {bench.get('threads', '?')}")
    for fw, why in (bench.get("skipped") or {}).items():
        print(f"skipped: {fw}: {why}")
else:
    bench = None
    print("No benchmark results (benchmarks/results/*.json): run `python -m benchmarks` to compare with Keras and "
          "PyTorch.\nBelow: the training steps measured above, in this notebook.")

# %%
LABELS = {"tinycnn-numba": "tinycnn (Numba)", "tinycnn-numpy": "tinycnn (NumPy)",
          "keras": "Keras (TF CPU)", "pytorch": "PyTorch CPU"}


def median(summary):
    """The median of a benchmark summary {"median", "min", "max", "n"}, or None."""
    return summary.get("median") if isinstance(summary, dict) else None


def seed_rows(bench):
    """[(framework, ms/step, s/epoch, test accuracy)] from a benchmark results dict, or [] if it has none."""
    seed_results = (bench or {}).get("seed") or {}
    order = [fw for fw in LABELS if fw in seed_results] + [fw for fw in seed_results if fw not in LABELS]
    rows = []
    for fw in order:
        s = seed_results[fw]
        if isinstance(s, dict) and median(s.get("ms_per_step")) is not None:
            rows.append((LABELS.get(fw, fw), median(s["ms_per_step"]), median(s.get("s_per_epoch")),
                         median(s.get("test_accuracy"))))
    return rows


rows = seed_rows(bench)
if rows:
    any_seed = next(s for s in bench["seed"].values() if isinstance(s, dict))
    print(f"seed workload: batch {any_seed.get('batch_size', '?')}, {any_seed.get('train_images', '?')} training "
          f"images, medians over {(any_seed.get('ms_per_step') or {}).get('n', '?')} rounds")
else:                              # nothing committed: what this notebook measured, tinycnn only
    rows = [(f"tinycnn ({b}, this notebook)", t * 1e3, None, None) for b, t in step_time.items()]
    print("(Keras is not measured here: it would need TensorFlow, which the notebooks do not require.)")
fastest = min(ms for _, ms, _, _ in rows)
for fw, ms, epoch, accuracy in rows:
    print(f"{fw:<30} {ms:8.1f} ms/step  ({ms / fastest:4.1f}x the fastest)"
          + (f"   {epoch:6.1f} s/epoch" if epoch else "") + (f"   test accuracy {accuracy:.4f}" if accuracy else ""))
by_round = (bench or {}).get("round_ratios") or {}               # the same rounds' times, divided
fast_rounds = by_round.get("median_fast_rounds") or {}
if fast_rounds.get("s_per_epoch"):
    fw, ref = (LABELS.get(by_round.get(k), by_round.get(k)) for k in ("framework", "reference"))
    print(f"{fw} / {ref}, in the rounds where {ref} ran in its fast mode: "
          f"{fast_rounds['s_per_epoch']:.2f}x the s/epoch (see results.md)")

fig, ax = plt.subplots(figsize=(8, 0.6 * len(rows) + 1.2))
ax.barh([r[0] for r in rows], [r[1] for r in rows], color="C2")
ax.invert_yaxis()
ax.set_xlabel("ms per training step, batch 128 (lower is better)")
ax.set_title("the seed model's training step")
fig.tight_layout()
plt.show()

# %% [markdown]
# Keras runs the same model with TensorFlow's hand-tuned C++ kernels (oneDNN), operation by operation. tinycnn's
# fast plan has fewer, bigger steps, written for this kind of model: the ideas of section 3. The NumPy backend,
# the version written to be read, shows what they are worth. These ratios move between runs and between
# machines, and Keras itself switches between a fast and a slow mode from one run to the next:
# `benchmarks/results/results.md` has the full report, round by round, with how the times scale with the batch
# and the image size.
#
# ## 5. What Numba compiles
#
# `@njit` turns a Python function into machine code the first time it is called, **for the types of the
# arguments it receives**. Each combination of argument types gives one compiled version, a *signature*.
# After the steps above, here is what was compiled in the modules of `tinycnn/kernels/numba_ops/`:

# %%
if HAVE_NUMBA:
    package = importlib.import_module("tinycnn.kernels.numba_ops")
    kernels = {}                                      # "module.function" -> its Numba dispatcher
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for name, obj in vars(module).items():
            if hasattr(obj, "signatures") and hasattr(obj, "py_func") and obj.py_func.__module__ == module.__name__:
                kernels[f"{info.name}.{name}"] = obj  # (defined there, not imported from another module)
    compiled = {name: k for name, k in kernels.items() if k.signatures}
    for name, kernel in compiled.items():
        for signature in kernel.signatures:
            types = ", ".join(str(t) for t in signature)
            print(f"{name:<42} ({types[:90]}{'...' if len(types) > 90 else ''})")
    print(f"{len(compiled)} of the {len(kernels)} @njit functions compiled so far, "
          f"{sum(len(k.signatures) for k in compiled.values())} signatures; not called yet: "
          + ", ".join(name for name in kernels if name not in compiled))
else:
    print("Skipped: the Numba backend is not available here.")

# %% [markdown]
# `array(float32, 4d, C)` means a 4-dimensional float32 array in C (row-major, contiguous) order. Numba knows
# at compile time that the array is contiguous, so an index like `x[n, row, col, c]` becomes plain address
# arithmetic, and the innermost loop can use SIMD instructions. A float64 or a non-contiguous array would
# trigger another compilation (that is why the wrappers call `np.ascontiguousarray`). Small helpers such as
# `direct.tap` or `elementwise.kept` are compiled into the kernels that call them; they show signatures of their
# own only when a caller was compiled in this process rather than loaded from Numba's cache.
#
# Not every kernel ran. `im2col_conv.im2col` did not: the fast plan unrolls no patches for this model (`conv2d`
# is direct, `conv2d_1` is Winograd). The Numba backend's `im2col` has the same signature as the reference's:
# let us call it on `conv2d_1`'s input from section 3, check it against NumPy's, time both, and then look at
# what Numba inferred for its kernel, `im2col_conv.im2col`. `inspect_types()` lists the type of every value,
# line by line; below, the first typing of each named variable. None of them is `pyobject`, so the whole function
# runs without the Python interpreter.

# %%
if HAVE_NUMBA:
    from tinycnn.kernels.numba_ops import im2col_conv

    with using("numba"):
        cols_fast = numba_ops.im2col(a, 3, 3, (1, 1), (0, 0, 0, 0))                 # (128*11*11, 288)
        cols_ref = numpy_ops.im2col(a, 3, 3, (1, 1), (0, 0, 0, 0))                  # the same, by NumPy
        print(f"cols {cols_fast.shape}: identical to NumPy's: {np.array_equal(cols_fast, cols_ref)}; "
              f"NumPy {best_time(lambda: numpy_ops.im2col(a, 3, 3, (1, 1), (0, 0, 0, 0))) * 1e3:.1f} ms, "
              f"Numba {best_time(lambda: numba_ops.im2col(a, 3, 3, (1, 1), (0, 0, 0, 0))) * 1e3:.1f} ms\n")
    kernel = im2col_conv.im2col
    listing = io.StringIO()
    kernel.inspect_types(file=listing, signature=kernel.signatures[0])
    lines = listing.getvalue().splitlines()
    typed = [line.strip("# ") for line in lines if " :: " in line]
    named = {}                                   # the first typing of every named variable (not Numba's $temporaries)
    for line in typed:
        variable = line.split(" = ")[0]
        if not variable.startswith("$") and variable not in named:
            named[variable] = line
    print(lines[0][:110])
    print("\n".join(f"    {line[:110]}" for line in named.values()))
    print(f"{len(typed)} typed values in im2col's listing ({len(lines)} lines), "
          f"{sum('pyobject' in line for line in typed)} of them Python objects")
else:
    print("Skipped: the Numba backend is not available here.")

# %% [markdown]
# **Compiling costs time, once.** tinycnn's kernels are declared with `cache=True`: the machine code is saved in
# Numba's cache (next to the source in `__pycache__`, or in `NUMBA_CACHE_DIR` if that is set), and a later Python
# process loads it instead of compiling again. That is the plan's warm-up in section 3: a few tenths of a second
# when it loads, several seconds when it compiles. `model.fit` does it before its clock starts. To see the cost
# of one compilation, here is a small kernel of our own, the bias + ReLU after a convolution written as loops,
# compiled fresh (no cache). We time its first call, its later calls, and the same work in NumPy:

# %%
if HAVE_NUMBA:
    import numba
    from numba import njit

    @njit(cache=False)
    def bias_relu(z, b):
        """z (M, F) + b (F,), then max(., 0), in place: one pass over memory."""
        M, F = z.shape
        for r in range(M):
            for f in range(F):
                v = z[r, f] + b[f]
                z[r, f] = v if v > 0 else 0

    z = rng.standard_normal((128 * 26 * 26, 32)).astype(np.float32)      # (N*OH*OW, F), conv2d's output
    bias = rng.standard_normal(32).astype(np.float32)                      # (F,)
    start = time.perf_counter()
    bias_relu(z.copy(), bias)
    first = time.perf_counter() - start
    later = best_time(lambda: bias_relu(z.copy(), bias), repeats=5)
    with_numpy = best_time(lambda: np.maximum(z.copy() + bias, 0), repeats=5)
    print(f"Numba {numba.__version__}; its cache: "
          f"{'NUMBA_CACHE_DIR' if numba.config.CACHE_DIR else '__pycache__ folders next to the sources'}")
    print(f"first call (type inference + LLVM compilation + run): {first * 1000:8.1f} ms")
    print(f"later calls (run only):                                {later * 1000:8.1f} ms")
    print(f"NumPy, np.maximum(z + b, 0):                           {with_numpy * 1000:8.1f} ms  (two passes, a temporary)")
    print("signatures compiled:", [str(s) for s in bias_relu.signatures])
else:
    print("Skipped: the Numba backend is not available here.")

# %% [markdown]
# Summary:
# * **im2col** turns a convolution into one matrix product: the arithmetic moves from the Python interpreter to BLAS.
# * On the reference backend the time then goes to the convolutions' products and to the **memory traffic around
#   them**: building and folding cols, and the ReLU, pooling and dropout, each a full pass over an array.
# * The fast backend keeps the layers and changes **how they are run**: fused steps that keep intermediate results
#   in the cache, an algorithm per convolution (direct, Winograd, im2col), no gradient for the images, and one
#   slice of the batch per core with one hand-over per pass.
# * The NumPy backend stays the **reference**: it is the version to read, and the fast plan is tested against it.
