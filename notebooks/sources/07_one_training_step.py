# %% [markdown]
# # 07 · One training step, step by step
#
# `fit()` repeats one training step thousands of times: a forward pass through every layer, the loss, a
# backward pass through every layer in reverse, then the optimizer's update. Notebooks 01-03 derived each
# layer's backward on its own; here we watch **all of them in one real step** of the seed CNN (notebook 04),
# on a batch of 16 digits.
#
# `model.trace(x, y)` runs that step's forward and backward in training mode (dropout on), keeps every tensor,
# and changes nothing: not the weights, not the optimizer's state, not the random streams. It returns a
# `Trace`:
#
# | | |
# |---|---|
# | `trace.loss` | the step's loss |
# | `trace.forward[i]` | `.layer`, `.input`, `.output`, in forward order |
# | `trace.backward[i]` | `.layer`, `.dout` (dL/d output), `.dx` (dL/d input), `.grads` (dL/dW per weight), in backward order |
# | `trace.grads`, `trace.input_grad` | {layer: {weight: dL/dW}}, and dL/d(the images) |
# | `trace.summary()`, `trace.plot()` | a table and a picture of every layer's tensors |
# | `trace.steps()` | an iterator: one layer's forward or backward per `next()` |
#
# This notebook walks through all of it, then checks with numbers that the trace is consistent, and ends with
# a functional model whose graph forks.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

import tinycnn
from tinycnn import seed

plt.rcParams["figure.dpi"] = 80
np.set_printoptions(precision=4, suppress=True)
print("tinycnn", tinycnn.__version__, "imported from", os.path.relpath(os.path.dirname(tinycnn.__file__)),
      "- backend:", tinycnn.get_backend())

# %% [markdown]
# ## 1. The model, a batch, and the trace
#
# The seed CNN, compiled as in notebook 04, and the first 16 training digits. `set_random_seed(0)` fixes the
# initial weights and the dropout masks, so this notebook shows the same numbers on every run.

# %%
(x_train, y_train), _ = seed.prepare_mnist()
x, y = x_train[:16], y_train[:16]                       # (16, 28, 28, 1) in [0, 1], (16, 10) one-hot

tinycnn.set_random_seed(0)
model = seed.build_model()
model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
weights_before = [w.copy() for w in model.get_weights()]

trace = model.trace(x, y)
trace

# %% [markdown]
# ## 2. The summary: every layer's shapes and sizes
#
# One row per layer, in forward order. `|out|` is the norm (square root of the sum of squares, over the whole
# batch) of what the layer outputs; `|dout|` of the gradient that comes back to that output; `|dx|` of the
# gradient the layer sends on to the layer before it; `|dW|` of each weight's gradient, the thing the optimizer
# will use.

# %%
table = trace.summary()

# %% [markdown]
# What to read in it:
# * **Shapes.** Each layer's input shape is the previous layer's output shape, and every gradient has the
#   shape of the tensor it belongs to (dout like out, dx like the input, dW like W).
# * **`|dx|` of one row is `|dout|` of the row above**: the gradient a layer sends back is the one its
#   predecessor receives. Section 5 checks this on the arrays, not only on their norms.
# * **MaxPooling2D and Flatten pass the gradient on without changing its norm** (`|dx| = |dout|`): pooling only
#   routes each value to the window's largest input, Flatten only reshapes.
# * **Dropout changes it**: the dropped units get no gradient, the kept ones are scaled by $1/(1-\text{rate})$.
# * The last row's `|dout|` is starred: softmax + cross-entropy hands the softmax's *input* its gradient
#   directly, $dL/dz = (p - y)/N$ (notebook 01).
#
# ## 3. The picture
#
# The same step as a diagram. Every arrow carries two numbers: in blue, the norm of the activation going
# forward; in red, the norm of the gradient coming back. The darker the colour, the larger (log scale).

# %%
fig = trace.plot()
plt.show()

# %% [markdown]
# ## 4. Step by step
#
# `trace.steps()` is an iterator of the step's 20 parts: the 10 layers' forwards in order, then their 10
# backwards in reverse. In a notebook each one shows its equation, a table of its tensors (shape, norm, min,
# max), and a picture of each tensor: for images, sample 0's first channel; for weights, the first filters.
# Red is positive, blue negative, white 0. Run the cell again for the next step: a class can walk through the
# whole training step this way.

# %%
steps = trace.steps()
next(steps)

# %% [markdown]
# The first convolution: 32 filters of 3×3 slide over the image; ReLU keeps the positive part. The bias is
# still all zeros (Keras's default initialiser). Next, the max-pool halves the height and width:

# %%
next(steps)

# %% [markdown]
# And dropout: a random quarter of the values set to 0, the others multiplied by $1/(1 - 0.25)$. The mask is
# drawn from tinycnn's random stream, which `set_random_seed(0)` fixed:

# %%
next(steps)

# %% [markdown]
# The remaining seven forwards go by the same way. We skip them and come to the first backward, the last
# layer's. Its `dout` is $dL/dz = (p - y)/N$, and its weight gradients are $x^\top dz$ and the column sums of
# $dz$:

# %%
for _ in range(7):
    next(steps)
next(steps)

# %% [markdown]
# Then back through the last dropout: the gradient goes back through the same mask the forward used, so it
# is 0 exactly where the forward dropped a unit.

# %%
step = next(steps)
f, dx, dout = trace.forward[8], step.record.dx, step.record.dout      # dropout_2's forward, and its backward
seen = f.input != 0                                     # where the mask shows: out = x * mask
kept, dropped = seen & (f.output != 0), seen & (f.output == 0)
print(f"{step.title()}\n  the forward kept {kept.sum() / seen.sum():.1%} of the nonzero inputs (rate 0.5)"
      f"\n  dx is 0 where it dropped one: {np.all(dx[dropped] == 0)}"
      f"\n  dx = dout / (1 - 0.5) where it kept one: {np.allclose(dx[kept], dout[kept] / 0.5)}")
step

# %% [markdown]
# Outside a notebook (a terminal, a script) a step prints as text, with the tensor's picture drawn in
# characters. The last step, the first convolution's backward, with `dx` = dL/d(the images):

# %%
*_, last = steps                                        # run the iterator to its end
print(last)

# %% [markdown]
# ## 5. Is the trace consistent? Checks with numbers
#
# **The chain.** Going forward, each layer's input is the previous layer's output; going back, each layer's
# `dx` is the `dout` of the layer before it. Not approximately: the same array.

# %%
fwd, bwd = trace.forward, trace.backward
print("forward: output of layer i == input of layer i+1:",
      all(np.array_equal(a.output, b.input) for a, b in zip(fwd, fwd[1:])))
worst = max(float(np.max(np.abs(later.dx - earlier.dout))) for later, earlier in zip(bwd, bwd[1:]))
print("backward: dx of each layer == dout of the layer before it, largest difference:", worst)
print("the last layer's dx is trace.input_grad, dL/d(images):", np.array_equal(bwd[-1].dx, trace.input_grad),
      trace.input_grad.shape)

p = fwd[-1].output                                      # the softmax's probabilities (16, 10)
print(f"the last layer's dout is (p - y) / N: largest difference "
      f"{float(np.max(np.abs(bwd[0].dout - (p - y) / len(x)))):.1e}")

# %% [markdown]
# **The loss** is the categorical cross-entropy of those probabilities, $-\frac1N\sum \log p_{\text{true class}}$:

# %%
by_hand = float(-np.mean(np.log(np.sum(p * y, axis=1))))
print(f"trace.loss {trace.loss:.6f}   by hand from trace.forward[-1].output {by_hand:.6f}")

# %% [markdown]
# **The weight gradients agree with finite differences.** For each layer with weights, move its kernel a small
# step $h$ along its own gradient direction $d = dW / \lVert dW\rVert$ and back, and re-run the trace: the loss
# changes by $\approx 2h\,\langle dW, d\rangle = 2h\lVert dW\rVert$. (Every trace draws the same dropout masks:
# a trace puts the random streams back.)

# %%
h = 1e-3
for layer in model.layers:
    if "kernel" not in layer.params:
        continue
    W, dW = layer.params["kernel"], trace.grads[layer.name]["kernel"]
    d = dW / np.linalg.norm(dW)
    original = W.copy()
    W += h * d
    plus = model.trace(x, y).loss
    W[...] = original - h * d
    minus = model.trace(x, y).loss
    W[...] = original
    numeric = (plus - minus) / (2 * h)
    print(f"{layer.name:<8} ||dW|| from the trace {np.linalg.norm(dW):.5f}   finite differences {numeric:.5f}   "
          f"relative error {abs(numeric - np.linalg.norm(dW)) / np.linalg.norm(dW):.1e}")

# %% [markdown]
# **Nothing changed.** The weights are exactly those before the first trace, and the optimizer has not
# taken a step. Then the real step: `train_on_batch` draws the same dropout masks the trace showed, so its loss
# is the trace's loss, to the last digit; and this time the weights move (Adam's first step moves every weight
# by about the learning rate, 1e-3, whatever the size of its gradient).

# %%
print("weights untouched by 9 traces:", all(np.array_equal(a, b) for a, b in zip(weights_before, model.get_weights())))
print("optimizer steps taken so far:", model.optimizer.iterations)
loss, accuracy = model.train_on_batch(x, y)
print(f"train_on_batch loss {loss:.7f}   trace.loss {trace.loss:.7f}   equal: {loss == trace.loss}")
moved = [float(np.max(np.abs(a - b))) for a, b in zip(weights_before, model.get_weights())]
print("after train_on_batch, the largest change of each weight:", ", ".join(f"{m:.1e}" for m in moved))

# %% [markdown]
# ## 6. A functional model: the gradient at a fork
#
# `seed.build_residual_model()` solves the same task with a residual block (notebook 06): the pooled stem's
# output feeds both the block's first convolution and the `Add` that closes it. The trace works the same way;
# `Add`'s `.input` and `.dx` are lists, one per input.

# %%
tinycnn.utils.clear_session()                           # its layer names from conv2d again
tinycnn.set_random_seed(0)
residual = seed.build_residual_model()
residual.compile(optimizer="adam", loss="categorical_crossentropy")
rtrace = residual.trace(x[:8], y[:8])
rtrace.summary()

# %%
fig = rtrace.plot(figsize=(9, 13))
plt.show()

# %% [markdown]
# In the picture the fork is the pooled stem's output, with two arrows leaving it. Each reader sends back its
# own gradient (the red numbers on those two arrows), and the stem's `dout` is **their sum**:

# %%
kind = {r.kind: r for r in rtrace.backward}             # one record per kind is enough here, except:
stem_pool = next(r for r in rtrace.backward if r.kind == "MaxPooling2D" and r.dout.shape[1] == 14)
first_conv = [r for r in rtrace.backward if r.kind == "Conv2D"][-2]       # the block's first convolution
add = kind["Add"]
via_add, via_conv = add.dx[0], first_conv.dx
print(f"the stem's output goes to {add.layer!r} (as input 1) and to {first_conv.layer!r}")
print(f"norms: via add {np.linalg.norm(via_add):.4f}, via the branch {np.linalg.norm(via_conv):.4f}, "
      f"the stem's dout {np.linalg.norm(stem_pool.dout):.4f}")
print(f"stem's dout == via add + via the branch: largest difference "
      f"{float(np.max(np.abs(stem_pool.dout - (via_add + via_conv)))):.1e}")

# %% [markdown]
# The `Add`'s own backward, as a step: both inputs receive the whole `dout`.

# %%
next(s for s in rtrace.steps() if s.kind == "backward" and s.record.kind == "Add")

# %% [markdown]
# **Next:** [08 · Deep networks: initialisation, vanishing gradients, BatchNorm](08_deep_networks.ipynb), where
# the per-layer `|dx|` of the summary becomes the main character.
