# %% [markdown]
# # 05 · Speed: why im2col, where the time goes, and what Numba compiles
#
# tinycnn is written to be read, yet it trains the seed model in about 12-15 seconds per epoch on two CPU
# cores. This notebook measures where that time goes:
#
# 1. **Why im2col?** The same convolution as Python loops, as loops over output positions, and as one matrix product.
# 2. **Where the time goes**, layer by layer, forward and backward, with the NumPy and the Numba backends.
# 3. **NumPy vs Numba vs Keras** on the whole training step, from the benchmark suite in `benchmarks/`.
# 4. **What Numba compiles**: the machine-code versions it builds, and what that costs.
#
# All timings here are measured while the notebook runs, on whatever machine runs it: expect them to vary
# from run to run, especially on a shared machine. Ratios are more stable than absolute times.

# %%
import glob
import io
import json
import os
import time

import matplotlib.pyplot as plt
import numpy as np

import tinycnn
from tinycnn import seed
from tinycnn.kernels import numba_ops, numpy_ops

plt.rcParams["figure.dpi"] = 80
print("tinycnn", tinycnn.__version__, "imported from", os.path.relpath(os.path.dirname(tinycnn.__file__)),
      f"- {os.cpu_count()} CPU cores")


def best_time(fn, repeats=5):
    """The fastest of `repeats` runs, in seconds: the least disturbed by other programs."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)

# %% [markdown]
# ## 1. Why im2col?
#
# Three ways to compute the same convolution:
#
# * **seven loops**, one multiply-add per Python step (the definition, notebook 02);
# * **loops over the output positions**, each position doing one small vectorised product with NumPy
#   (all images and all filters at once);
# * **im2col + one matrix product** (what tinycnn does).
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
# * im2col pays it a handful of times per **batch**, and hands BLAS (OpenBLAS here) one big product, which it
#   runs close to the CPU's peak: blocks of both matrices kept in the caches, SIMD instructions doing 8 or 16
#   multiply-adds at a time. Compared with the position loops the gain is a small factor rather than hundreds
#   (see the last column; it varies with the machine and with what else is running on it).
#   The other advantage is just as important: the backward pass becomes two more products and a col2im
#   (notebook 02), with no Python loop at all, and everything runs in a handful of calls, whatever the image size.
#
# The price of im2col is memory: each pixel is copied up to 9 times (for a 3×3 kernel). For the seed model
# that is a few tens of megabytes per batch, a good trade.
#
# ## 2. Where the time goes, layer by layer
#
# One training step of the seed model on a batch of 128 images: every layer's `forward(training=True)` and
# `backward`, timed one by one, with both backends, then the loss with its gradient and the Adam update of
# every weight. Each number is the fastest of 5 runs.

# %%
def time_layers(backend, batch_size=128, repeats=5):
    """{layer name: (forward s, backward s)}, plus the loss and the Adam update, for one backend."""
    tinycnn.set_backend(backend)
    tinycnn.set_random_seed(0)
    tinycnn.utils.clear_session()                                     # the same layer names for both
    model = seed.build_model()
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    x, y = x_train[:batch_size], y_train[:batch_size]
    model.train_on_batch(x, y)                                        # warm-up (and JIT compilation)
    step = best_time(lambda: model.train_on_batch(x, y), repeats)
    times = {}
    for _ in range(repeats):
        a, fwd = x, {}
        for layer in model.layers:
            start = time.perf_counter()
            a = layer.forward(a, training=True)
            fwd[layer.name] = time.perf_counter() - start
        start = time.perf_counter()
        model.loss(y, a)
        d = model.loss.gradient_logits(y, a)                           # (p - y) / N
        loss_time = time.perf_counter() - start
        for i, layer in reversed(list(enumerate(model.layers))):
            start = time.perf_counter()
            d = layer.backward(d, skip_activation=True) if i == len(model.layers) - 1 else layer.backward(d)
            bwd = time.perf_counter() - start
            times[layer.name] = min(times.get(layer.name, (np.inf, np.inf)), (fwd[layer.name], bwd), key=sum)
        kernels, adam_time = tinycnn.backend.ops(), 0.0
        for layer in model.layers:                                     # one Adam step, weight by weight
            for key, p in layer.params.items():
                p, m, v = p.copy(), np.zeros_like(p), np.zeros_like(p)
                start = time.perf_counter()
                kernels.adam_update(p, layer.grads[key], m, v, p.dtype.type(1e-3), p.dtype.type(0.9),
                                    p.dtype.type(0.999), p.dtype.type(1e-7))
                adam_time += time.perf_counter() - start
        times["loss"] = min(times.get("loss", (np.inf, np.inf)), (loss_time, 0.0), key=sum)
        times["Adam update"] = min(times.get("Adam update", (np.inf, np.inf)), (0.0, adam_time), key=sum)
    order = [layer.name for layer in model.layers] + ["loss", "Adam update"]
    return {name: times[name] for name in order}, step


layer_times = {}
for backend in ("numpy", "numba"):
    layer_times[backend], step = time_layers(backend)
    print(f"{backend}: train_on_batch of 128 images takes {step * 1000:.0f} ms "
          f"(the parts below add up to {sum(map(sum, layer_times[backend].values())) * 1000:.0f} ms)")

# %%
names = list(layer_times["numpy"])
print(f"{'':<16}{'NumPy, ms':>18}{'Numba, ms':>20}")
print(f"{'layer':<16}{'forward':>10}{'backward':>10}{'forward':>10}{'backward':>10}")
for name in names:
    (nf, nb), (mf, mb) = layer_times["numpy"][name], layer_times["numba"][name]
    print(f"{name:<16}{nf * 1e3:10.2f}{nb * 1e3:10.2f}{mf * 1e3:10.2f}{mb * 1e3:10.2f}")

fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
for ax, backend in zip(axes, ("numpy", "numba")):
    fwd = [layer_times[backend][n][0] * 1e3 for n in names]
    bwd = [layer_times[backend][n][1] * 1e3 for n in names]
    ax.barh(names, fwd, label="forward")
    ax.barh(names, bwd, left=fwd, label="backward (or update)")
    ax.set_title(f"{backend}: {sum(fwd) + sum(bwd):.0f} ms per step")
    ax.set_xlabel("ms per batch of 128")
    ax.legend()
axes[0].invert_yaxis()                                                 # first layer on top (the axis is shared)
fig.tight_layout()
plt.show()

# %% [markdown]
# The same numbers, summed up:

# %%
for backend in ("numpy", "numba"):
    t = layer_times[backend]
    total = sum(map(sum, t.values()))
    conv = sum(sum(t[n]) for n in t if n.startswith("conv2d"))
    pool = sum(sum(t[n]) for n in t if n.startswith("max_pooling2d"))
    print(f"{backend:>5}: convolutions {conv / total:4.0%} of the step, max-pooling {pool / total:4.0%}, "
          f"everything else {1 - (conv + pool) / total:4.0%}")
print("Numba's speed-up, layer by layer (NumPy time / Numba time):")
for name in names:
    numpy_time, numba_time = sum(layer_times["numpy"][name]), sum(layer_times["numba"][name])
    if numpy_time > 1e-3:                                              # layers that take over 1 ms
        print(f"    {name:<16} {numpy_time / numba_time:5.1f}x")

# %% [markdown]
# What to look for, and why:
# * The **convolutions** take most of the time. `conv2d_1` does the most arithmetic (its patches are 288 numbers
#   long); `conv2d` has tiny patches (9 numbers) but 26×26 positions per image, so for it the cost of *moving*
#   data (building cols, folding them back) matters more than the multiply-adds.
# * **Backward costs more than forward** for layers with weights: two matrix products instead of one, plus col2im.
# * Numba helps most where NumPy has to make several passes over memory or build temporary arrays: im2col and
#   col2im, the bias and ReLU (fused into one pass), pooling (each winner's offset in its window is stored, so
#   the backward pass writes every cell once and searches nothing), dropout and the Adam update. The big matrix products are BLAS calls in
#   both backends, so those parts gain little.
# * The Numba backend also puts **every core to work on its own images**: a big job is cut into one chunk of the
#   batch per core, and each thread runs im2col, its share of the product and the epilogue
#   (`tinycnn/kernels/cores.py`). The NumPy backend leaves the second core idle except inside BLAS's products.
#   (The Numba backend makes a few more choices of its own; the docstring of `tinycnn/kernels/numba_ops.py`
#   lists them, with the measurements behind each one.)
# * On the Numba backend, neither convolution uses im2col. `conv2d` (a 3×3 kernel over one channel) is computed
#   directly: each output pixel's nine taps are loaded into registers and every filter takes its nine products
#   from there. im2col would write the taps to memory, multiply with an inner dimension of only 9, and make a
#   third pass for the bias and the ReLU; the direct loop writes each output once (and, when training, the taps
#   once, for the weight gradient). For a 3×3 kernel with stride 1 and many input
#   channels, **Winograd's F(6×6, 3×3)** computes the same convolution with a fifth of the multiplications:
#   each 8×8 tile of the input and each kernel is transformed by small constant matrices, 64 matrix products
#   replace the one big product, and a last transform gives a 6×6 block of outputs
#   (`tinycnn/kernels/winograd.py`). The answer is the same up to float32 rounding, and one subtlety: an output
#   whose 3×3 window reads only zeros (MNIST's background, after a ReLU) must come out *exactly* as the bias,
#   not as the bias plus a 1e-9 residue of rounding, or the ReLU's gradient would count it as active.
# * Memory, not arithmetic, is what the two cores wait on most. Winograd's steps hand each other big buffers (the
#   transformed tiles, the 64 products), so each core works through its chunk **a few images at a time**
#   (`cores.blocks`): what one step writes is still in that core's own cache when the next step reads it, instead
#   of travelling through the cache both cores share. The arithmetic is unchanged; the training step went from
#   18.1 to 14.9 ms.
# * **How a loop is written decides whether the compiler vectorises it well.** Winograd's transforms first ran
#   inline in the loop over tiles; moved into small functions of their own that see each tile as a 3-d array,
#   the same arithmetic ran twice as fast. Then, with 8×8 tiles, a pass that stored its six results along the
#   tile's *second* axis ran five times slower than one storing them along the first, so every pass now stores
#   along the first axis and the tiles are kept transposed. Fresh memory has a cost too: each step allocates its
#   11 MB arrays again, and unless the allocator keeps freed memory for reuse (`cores.keep_freed_memory`) every
#   4 KB page of them is a page fault.
# * **Waking a sleeping core is slow.** Handing a chunk to a worker thread whose core had gone idle took 80-100 µs
#   on this machine, and a training step makes about 15 such hand-offs. A worker that has just finished now
#   yields its core for up to a millisecond, watching for the next chunk, before it goes to sleep: a hand-off
#   takes 40 µs, and the step got about 15% faster.
#
# ## 3. NumPy vs Numba vs Keras
#
# The benchmark suite (`python -m benchmarks`) times the whole seed workload with tinycnn's two backends, Keras
# (TensorFlow, CPU) and PyTorch, each in its own process, and writes `benchmarks/results/*.json` and a markdown
# report. If such a file exists, we read the latest one here.

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
    with open(results_files[-1]) as f:
        bench = json.load(f)
    print(f"Benchmark results: benchmarks/results/{os.path.basename(results_files[-1])}, "
          f"created {bench.get('created', '?')}")
    print("machine:", bench.get("machine", {}).get("cpu_model", "?"),
          f"({bench.get('machine', {}).get('logical_cores', '?')} cores)")
else:
    print("No benchmark results yet (benchmarks/results/*.json does not exist): run `python -m benchmarks` "
          "to compare with Keras and PyTorch.\nBelow: the per-step times measured above, in this notebook.")

# %%
def seed_rows(bench):
    """[(framework, ms/step, s/epoch, test accuracy)] from a benchmarks results dict, or [] if absent."""
    rows = []
    for fw, s in (bench or {}).get("seed", {}).items():
        try:
            rows.append((fw, s["ms_per_step"]["median"], (s.get("s_per_epoch") or {}).get("median"),
                         (s.get("test_accuracy") or {}).get("median")))
        except (KeyError, TypeError):
            continue
    return rows


rows = seed_rows(bench)
if not rows:                       # fall back to what we measured here: tinycnn only
    rows = [(f"tinycnn-{b} (this notebook)", sum(map(sum, layer_times[b].values())) * 1e3, None, None)
            for b in ("numpy", "numba")]
    print("(Keras is not measured here: it would need TensorFlow, which the notebooks do not require.)")
fastest = min(ms for _, ms, _, _ in rows)
for fw, ms, epoch, accuracy in rows:
    print(f"{fw:<30} {ms:8.1f} ms/step  ({ms / fastest:4.1f}x the fastest)"
          + (f"   {epoch:6.1f} s/epoch" if epoch else "") + (f"   test accuracy {accuracy:.4f}" if accuracy else ""))
fig, ax = plt.subplots(figsize=(8, 0.6 * len(rows) + 1.2))
ax.barh([r[0] for r in rows], [r[1] for r in rows], color="C2")
ax.invert_yaxis()
ax.set_xlabel("ms per training step, batch 128 (lower is better)")
ax.set_title("the seed model's training step")
fig.tight_layout()
plt.show()

# %% [markdown]
# Keras runs the same model with TensorFlow's hand-tuned C++ kernels (oneDNN), and fuses many operations
# into one. On this small model the Numba backend still takes about half of Keras's time per epoch on this
# machine (the benchmark's table above), with the ideas of section 2: the heavy lifting in few, big matrix
# products (Winograd's make them smaller still), no extra passes over memory around them, and both cores busy.
#
# ## 4. What Numba compiles
#
# `@njit` turns a Python function into machine code the first time it is called, **for the types of the
# arguments it receives**. Each combination of argument types gives one compiled version, a *signature*.
# After the training steps above, here is what was compiled in `tinycnn/kernels/numba_ops.py` and
# `tinycnn/kernels/winograd.py`:

# %%
from tinycnn.kernels import winograd

dispatchers = {name: obj for module in (numba_ops, winograd) for name, obj in vars(module).items()
               if hasattr(obj, "signatures") and hasattr(obj, "py_func")    # the @njit functions,
               and obj.signatures}             # called so far (small helpers are compiled into their callers)
for name, kernel in dispatchers.items():
    for signature in kernel.signatures:
        print(f"{name:<22} ({', '.join(str(t) for t in signature)})")
print(f"{len(dispatchers)} compiled kernels, {sum(len(k.signatures) for k in dispatchers.values())} signatures")

# %% [markdown]
# `array(float32, 4d, C)` means a 4-dimensional float32 array in C (row-major, contiguous) order. Numba knows
# at compile time that the array is contiguous, so an index like `x[n, row, col, c]` becomes plain address
# arithmetic, and the innermost loop can use SIMD instructions. A float64 or a non-contiguous array would
# trigger another compilation (that is why the wrappers call `np.ascontiguousarray`).
#
# `inspect_types()` lists the type Numba inferred for every value, line by line. Below, the type of each named
# variable of one kernel. None of the values has the type `pyobject`, which means the whole function runs
# without the Python interpreter.

# %%
name = "_im2col" if dispatchers.get("_im2col", None) is not None and dispatchers["_im2col"].signatures \
    else next(n for n, k in dispatchers.items() if k.signatures)
listing = io.StringIO()
dispatchers[name].inspect_types(file=listing, signature=dispatchers[name].signatures[0])
lines = listing.getvalue().splitlines()
typed = [line.strip("# ") for line in lines if " :: " in line]
named = {}                                    # the first typing of every named variable (not Numba's $temporaries)
for line in typed:
    variable = line.split(" = ")[0]
    if not variable.startswith("$") and variable not in named:
        named[variable] = line
print(lines[0][:110])
print("\n".join(f"    {line[:110]}" for line in named.values()))
print(f"{len(typed)} typed values in {name}'s listing ({len(lines)} lines), "
      f"{sum('pyobject' in line for line in typed)} of them Python objects")

# %% [markdown]
# **Compiling costs time, once.** tinycnn's kernels are declared with `cache=True`, so the machine code is saved
# next to the source (`tinycnn/kernels/__pycache__/*.nbi, *.nbc`) and the next Python process loads it instead of
# compiling again. To see the cost, here is a small kernel of our own, the bias + ReLU epilogue of a
# convolution written as loops, compiled fresh (no cache). We time its first call, its later calls, and the same
# work in NumPy:

# %%
from numba import njit


@njit(cache=False)
def bias_relu(z, b):
    """z (M, F) + b (F,), then max(., 0), in place: one pass over memory."""
    M, F = z.shape
    for r in range(M):
        for f in range(F):
            v = z[r, f] + b[f]
            z[r, f] = v if v > 0 else 0


z = rng.standard_normal((128 * 26 * 26, 32)).astype(np.float32)      # (N*OH*OW, F), conv1's output
bias = rng.standard_normal(32).astype(np.float32)                      # (F,)
start = time.perf_counter()
bias_relu(z.copy(), bias)
first = time.perf_counter() - start
later = best_time(lambda: bias_relu(z.copy(), bias), repeats=5)
with_numpy = best_time(lambda: np.maximum(z.copy() + bias, 0), repeats=5)
print(f"first call (type inference + LLVM compilation + run): {first * 1000:8.1f} ms")
print(f"later calls (run only):                                {later * 1000:8.1f} ms")
print(f"NumPy, np.maximum(z + b, 0):                           {with_numpy * 1000:8.1f} ms  (two passes, a temporary)")
print("signatures compiled:", [str(s) for s in bias_relu.signatures])

# %% [markdown]
# Summary:
# * **im2col** turns a convolution into one matrix product: the arithmetic moves from the Python interpreter to BLAS.
# * After that, the time goes into the **memory traffic around the products** (copying patches, folding them
#   back, pooling, element-wise updates); Numba compiles those loops into single passes over memory.
# * The NumPy backend stays the **reference**: it is the version to read, and every Numba kernel is tested
#   against it.
