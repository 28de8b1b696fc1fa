# %% [markdown]
# # 06 · Backprop through a graph: why gradients add at a fork
#
# A `Sequential` is a chain: every layer reads the output of the one before it, and backward walks the
# chain in reverse. Keras's functional API (`tinycnn.Model(inputs, outputs)`) builds **graphs**: a tensor can
# feed several layers, and a merge layer such as `Add` reads several tensors. Backprop still works, with
# one new rule:
#
# > **where a tensor fans out, its gradient is the sum of the gradients coming back from its consumers.**
#
# This notebook:
# 1. derives the rule by hand on a two-node example and checks it with numbers: in NumPy, then on a tiny
#    tinycnn model where one tensor feeds two Dense layers merged by `Add`;
# 2. reads tinycnn's two graph loops and walks a residual block through them;
# 3. shows what the rule buys: in a deep CNN, skip connections keep the gradient at the first layer alive;
# 4. trains a functional model with `fit()`, exactly like a `Sequential`.

# %%
import inspect
import os

import matplotlib.pyplot as plt
import numpy as np

import tinycnn
from tinycnn import layers, plot
from tinycnn.datasets import mnist
from tinycnn.gradcheck import numerical_gradient, rel_error, to_float64
from tinycnn.graph import Graph

plt.rcParams["figure.dpi"] = 80
np.set_printoptions(precision=4, suppress=True)
tinycnn.set_backend("numpy")          # the reference kernels: every layer's own forward and backward
print("tinycnn", tinycnn.__version__, "imported from", os.path.relpath(os.path.dirname(tinycnn.__file__)),
      "- backend:", tinycnn.get_backend())

# %% [markdown]
# ## 1. The rule, by hand
#
# One number $x$ feeds two nodes, and the loss depends on both:
#
# $$y = a\,x, \qquad z = b\,x, \qquad L = f(y, z) .$$
#
# Nudge $x$ by a small $h$. Then $y$ moves by $a\,h$ and $z$ by $b\,h$, and to first order the loss moves by
# the effect of each change:
#
# $$\Delta L \approx \frac{\partial L}{\partial y}\, a\,h + \frac{\partial L}{\partial z}\, b\,h
# \quad\Longrightarrow\quad
# \boxed{\frac{dL}{dx} = \frac{\partial L}{\partial y}\frac{dy}{dx} + \frac{\partial L}{\partial z}\frac{dz}{dx}} .$$
#
# $x$ moves the loss along **two routes**, and the effects of a small nudge add up. Each route is the chain
# rule of a chain; the fork adds them.
#
# Take $f(y, z) = y^2 + 3z$, $a = 2$, $b = -1$, $x = 1.5$. Then $y = 3$, $z = -1.5$, $\partial L/\partial y = 2y = 6$,
# $\partial L/\partial z = 3$, so $dL/dx = 6 \cdot 2 + 3 \cdot (-1) = 9$. Written out, $L = 4x^2 - 3x$ and
# $dL/dx = 8x - 3 = 9$: the same.

# %%
a, b = 2.0, -1.0
x = np.array(1.5)

def L_of_x():
    y, z = a * x, b * x
    return y ** 2 + 3 * z

y, z = a * x, b * x
dL_dy, dL_dz = 2 * y, 3.0
by_hand = dL_dy * a + dL_dz * b
numeric = numerical_gradient(L_of_x, x)
print(f"via y alone: {dL_dy * a:g}   via z alone: {dL_dz * b:g}   sum: {by_hand:g}")
print(f"finite differences: {float(numeric):.6f}   relative error of the sum: {rel_error(by_hand, numeric):.1e}")

# %% [markdown]
# Neither route alone is right (12 and -3); their sum is.
#
# ### The same with arrays
#
# Now $x$ is a batch $(N, D)$ and the two nodes are matrix products, $y = x A$ and $z = x B$, with
# $L = \sum y \odot z$ (so $\partial L/\partial y = z$ and $\partial L/\partial z = y$). Through a product $x A$ the
# gradient goes back as $dy\,A^\top$ (notebook 01), so
#
# $$\frac{\partial L}{\partial x} = \underbrace{z\,A^\top}_{\text{via } y} + \underbrace{y\,B^\top}_{\text{via } z} \qquad (N, D).$$

# %%
rng = np.random.default_rng(0)
x = rng.standard_normal((4, 3))                          # (N, D)
A, B = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))   # (D, K) each

def L_of_x():
    return np.sum((x @ A) * (x @ B))

y, z = x @ A, x @ B                                      # (N, K) each
dx = z @ A.T + y @ B.T                                   # (N, D): the two routes, summed
numeric = numerical_gradient(L_of_x, x)
print("dL/dx =\n", dx, dx.shape)
print(f"relative error vs finite differences: sum {rel_error(dx, numeric):.1e}, "
      f"route via y alone {rel_error(z @ A.T, numeric):.1e}")

# %% [markdown]
# ### With tinycnn layers
#
# The same fork as a functional model: one input feeds two `Dense` layers, and `Add` merges them.
# Take $L = \tfrac12 \sum \text{out}^2$, so $\partial L / \partial \text{out} = \text{out}$.
#
# * `Add`: $\text{out} = y + z$, so each input gets $\text{dout}$ itself.
# * Each `Dense` sends back $\text{dout}\, W^\top$ (its bias does not touch $x$).
# * $x$ feeds both, so $dL/dx = \text{dout}\, W_1^\top + \text{dout}\, W_2^\top$.
#
# `model._plan()` is what `fit()` runs: for a functional model, its `tinycnn.graph.Graph`. We call its
# `forward` and `backward` directly, in float64 so that finite differences are accurate.

# %%
tinycnn.set_random_seed(0)
inputs = tinycnn.Input(shape=(3,))
dense_1, dense_2 = layers.Dense(2), layers.Dense(2)
outputs = layers.Add()([dense_1(inputs), dense_2(inputs)])
model = tinycnn.Model(inputs, outputs)
for layer in model.layers:
    to_float64(layer)
graph = model._plan()

out = graph.forward(x, training=True)                    # (N, 2)
dx_model = graph.backward(out)                           # dL/dout = out  ->  dL/dx (N, 3)
W1, W2 = dense_1.params["kernel"], dense_2.params["kernel"]
dx_hand = out @ W1.T + out @ W2.T                        # the two routes, summed

def L_of_x():
    return 0.5 * np.sum(graph.forward(x, training=True) ** 2)

numeric = numerical_gradient(L_of_x, x)
print("model dL/dx =\n", dx_model, dx_model.shape)
print(f"model vs hand sum: {rel_error(dx_model, dx_hand):.1e}   model vs finite differences: "
      f"{rel_error(dx_model, numeric):.1e}   one route alone vs finite differences: "
      f"{rel_error(out @ W1.T, numeric):.1e}")

# %% [markdown]
# The model's `dx` is the hand sum, to rounding. (On the fast Numba backend, `graph.backward` may return
# `None` for the model's *input*: no weight needs that gradient, so its plan skips computing it. Gradients of
# tensors *inside* the graph, and every weight gradient, are computed on both backends.)
#
# ## 2. The two loops, and a residual block walked through them
#
# Here is all of tinycnn's graph backprop, from `tinycnn/graph.py`. A **stage** is one call of a merge (or
# shared) layer, or a chain of single-input layers each read only by the next (run by the backend's plan,
# like a small `Sequential`). The loops:

# %%
print(inspect.getsource(Graph.forward))
print(inspect.getsource(Graph.backward))

# %% [markdown]
# * `forward` visits the stages in **topological order** (each after the stages it reads from) and keeps
#   every tensor's value in `values`.
# * `backward` visits them in **reverse**. `grads` holds each tensor's gradient; `add(grads, t, dx)` **adds**
#   to what is there. When the loop reaches a stage, every consumer of its output has already sent its share
#   (consumers come later in topological order, so earlier in reverse): the popped gradient is the full sum.
#
# A residual block (He et al., 2015): $\text{out} = \text{relu}(x + F(x))$ with
# $F$ = Conv-BN-ReLU-Conv-BN. Its input $x$ fans out to the branch and to the `Add`.

# %%
tinycnn.set_random_seed(1)
x_in = tinycnn.Input(shape=(6, 6, 4))
h = layers.Conv2D(4, 3, padding="same", use_bias=False)(x_in)
h = layers.BatchNormalization()(h)
h = layers.ReLU()(h)
h = layers.Conv2D(4, 3, padding="same", use_bias=False)(h)
h = layers.BatchNormalization()(h)
skip = layers.Add()                                      # x + F(x)
block = tinycnn.Model(x_in, layers.ReLU()(skip([x_in, h])), name="residual_block")
graph = block._plan()

tensors = [x_in] + [node.output for node in graph.nodes]          # in topological order
short = {"BatchNormalization": "BatchNorm"}
label = lambda t: "input x" if t.node is None else short.get(type(t.node.layer).__name__, type(t.node.layer).__name__)
fig, ax = plt.subplots(figsize=(12, 2.4))
for i, t in enumerate(tensors):
    ax.text(i, 0, label(t), ha="center", va="center", fontsize=9, bbox=dict(boxstyle="round", facecolor="#dde8f5"))
for j, node in enumerate(graph.nodes, start=1):                   # an arrow from every tensor a node reads
    for t in node.inputs:
        i = [id(u) for u in tensors].index(id(t))
        if i == j - 1:                                                # from the box just before: straight
            ax.annotate("", xy=(j - 0.42, 0), xytext=(i + 0.42, 0), arrowprops=dict(arrowstyle="->"))
        else:                                                         # a skip: an arc above the chain
            ax.annotate("", xy=(j, 0.2), xytext=(i, 0.2),
                        arrowprops=dict(arrowstyle="->", color="C3", connectionstyle="arc3,rad=-0.2"))
ax.text(3, 0.95, "identity (skip) path: x goes straight to the Add", ha="center", color="C3")
ax.set(xlim=(-0.6, len(tensors) - 0.4), ylim=(-0.4, 1.1))
ax.axis("off")
ax.set_title("the residual block, its nodes in topological order: x fans out to the first Conv2D and to the Add")
plt.show()

# %% [markdown]
# The nodes in topological order, what each reads, its output shape, and how many nodes read its output
# (more than 1: a fork):

# %%
for layer in block.layers:
    to_float64(layer)
readers = {}
for node in graph.nodes:
    for t in node.inputs:
        readers[id(t)] = readers.get(id(t), 0) + 1
name = lambda t: t.name if t.node is None else t.node.layer.name
print(f"{'input ' + x_in.name:<48} {'':<44} {str(x_in.shape):<16} read by {readers[id(x_in)]}")
for i, node in enumerate(graph.nodes):
    reads = ", ".join(name(t) for t in node.inputs)
    print(f"{i}: {node.layer.name + ' (' + type(node.layer).__name__ + ')':<45} reads {reads:<38} "
          f"{str(node.output.shape):<16} read by {readers.get(id(node.output), 0)}")
print("\nstages, in order:", [[layer.name for layer in stage.layers] for stage in graph.stages()])

# %% [markdown]
# The input is read twice: by the first convolution and by `add`. The five branch layers form one stage.
#
# Now the two loops again, step by step, on a batch of 2, printing what they do. This is `Graph.forward` and
# `Graph.backward` with prints added (the `stage.forward` / `stage.backward` calls are the real ones), and the
# results are compared with the real methods at the end.

# %%
x = rng.standard_normal((2, 6, 6, 4))                    # (N, H, W, C)
dout = rng.standard_normal((2, 6, 6, 4))                 # dL/d(block output), from the layers above
stages = graph.stages()

print("forward, in topological order:")
values = {id(x_in): x}
for stage in stages:
    ins = [values[id(t)] for t in stage.inputs]
    values[id(stage.output)] = stage.forward(ins, training=True)
    print(f"  {'+'.join(l.name for l in stage.layers):<62} {' and '.join(str(v.shape) for v in ins)}"
          f" -> {values[id(stage.output)].shape}")

print("backward, in reverse:")
grads = {id(graph.outputs[0]): dout}
arrived = {}                                             # tensor -> the gradients it received, by sender
for stage in reversed(stages):
    d = grads.pop(id(stage.output))
    dxs = stage.backward(d)
    for t, dx in zip(stage.inputs, dxs):
        grads[id(t)] = grads[id(t)] + dx if id(t) in grads else dx      # the fork: ADD
        arrived.setdefault(id(t), []).append((stage.layers[0].name, dx))
    print(f"  {'+'.join(l.name for l in stage.layers):<62} {d.shape} -> "
          f"{' and '.join(str(dx.shape) for dx in dxs)}")
dx_trace = grads[id(x_in)]
print("dL/dx is the sum of:", [sender for sender, _ in arrived[id(x_in)]])

# %% [markdown]
# The trace computed the same numbers as the real loops, and both agree with finite differences of
# $L = \sum \text{out} \odot \text{dout}$ (BatchNormalization in training mode uses the batch's statistics, so
# $L$ is an ordinary function of $x$):

# %%
graph.forward(x, training=True)                          # the real loops
dx_graph = graph.backward(dout)

def L_of_x():
    return np.sum(graph.forward(x, training=True) * dout)

numeric = numerical_gradient(L_of_x, x)
print(f"trace vs Graph.backward: {rel_error(dx_trace, dx_graph):.1e}   "
      f"Graph.backward vs finite differences: {rel_error(dx_graph, numeric):.1e}")

# %% [markdown]
# ### Why the identity path matters: $\frac{d(x + F(x))}{dx} = I + \frac{dF}{dx}$
#
# Call $g$ the gradient arriving at the `Add` (here $g = \text{dout} \odot [\text{out} > 0]$, through the last ReLU).
# The `Add` sends $g$ to both inputs, so $x$ receives
#
# $$\frac{\partial L}{\partial x} = \underbrace{g}_{\text{identity}} + \underbrace{\left(\tfrac{dF}{dx}\right)^{\!\top} g}_{\text{through the branch}} .$$
#
# The first term reaches $x$ **unchanged**, however small the branch's contribution is. Both terms, measured:

# %%
out = values[id(graph.outputs[0])]                       # the block's output, from the trace
g = dout * (out > 0)                                     # dL/d(add output), through the last ReLU
sent = dict(arrived[id(x_in)])                           # what the trace's two consumers sent to x
via_identity, via_branch = sent[skip.name], sent[stages[0].layers[0].name]
print(f"identity term == g: {np.array_equal(via_identity, g)}   "
      f"identity + branch == dL/dx: {rel_error(via_identity + via_branch, dx_graph):.1e}")
print(f"norms: g {np.linalg.norm(g):.3f}, branch term {np.linalg.norm(via_branch):.3f}, "
      f"dL/dx {np.linalg.norm(dx_graph):.3f}")

# %% [markdown]
# ## 3. What it buys: the gradient at the first layer of a deep CNN
#
# A plain deep network multiplies the gradient by one layer's Jacobian per layer on the way back. If each
# factor shrinks it a little, the product over 20 layers shrinks it a lot: the first layers barely learn
# (**vanishing gradients**). With skip connections, every block adds the identity to its Jacobian, and the
# gradient has a path back with no shrinking factor at all.
#
# The experiment: MNIST digits halved to 14×14, a batch of 32, Conv2D layers of 8 filters (3×3, "same",
# Keras's default Glorot initialisation), then global average pooling and a softmax Dense.
# * **plain**: 1 + 2B convolutions with ReLU, one after another;
# * **residual**: the same 1 + 2B convolutions, grouped in B blocks $\text{relu}(x + \text{Conv}(\text{relu}(\text{Conv}(x))))$
#   (no BatchNormalization, so that the only difference is the skip).
#
# For depths 5 to 21 and 3 random seeds each, one training step of SGD records every layer's gradient norm
# (`plot.record_gradient_norms`, as in notebook 04) at initialisation.

# %%
(x_train, y_train), (x_test, y_test) = mnist.load_data()
x_small = (x_train[:32, ::2, ::2, None] / 255.0).astype(np.float32)    # (32, 14, 14, 1)
y_small = tinycnn.to_categorical(y_train[:32], 10)                     # (32, 10)

def deep_cnn(depth, skip):
    inputs = tinycnn.Input(shape=(14, 14, 1))
    h = layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    for _ in range((depth - 1) // 2):
        f = layers.Conv2D(8, 3, padding="same", activation="relu")(h)
        f = layers.Conv2D(8, 3, padding="same")(f)
        h = layers.ReLU()(layers.Add()([h, f]) if skip else f)
    outputs = layers.Dense(10, activation="softmax")(layers.GlobalAveragePooling2D()(h))
    model = tinycnn.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    return model

def conv_gradient_norms(depth, skip, seed):
    """Every Conv2D's gradient norm, first layer first, for one batch at initialisation."""
    tinycnn.set_random_seed(seed)
    model = deep_cnn(depth, skip)
    with plot.record_gradient_norms(model) as norms:
        model.train_on_batch(x_small, y_small)
    return [norms[layer.name][0] for layer in model.layers if isinstance(layer, layers.Conv2D)]

depths, seeds = (5, 9, 13, 17, 21), (0, 1, 2)
runs = {(d, skip, s): conv_gradient_norms(d, skip, s) for d in depths for skip in (False, True) for s in seeds}
for skip in (False, True):
    first = [np.median([runs[d, skip, s][0] for s in seeds]) for d in depths]
    print(f"{'residual' if skip else 'plain':>8}: first-layer gradient norm (median of 3 seeds) at depth",
          ", ".join(f"{d}: {v:.1e}" for d, v in zip(depths, first)))

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
for skip, color, label in ((False, "C3", "plain"), (True, "C0", "residual")):
    for s in seeds:
        left.plot(range(1, 22), runs[21, skip, s], color=color, alpha=0.7, label=label if s == 0 else None)
        right.plot(depths, [runs[d, skip, s][0] for d in depths], "o-", color=color, alpha=0.7,
                   label=label if s == 0 else None)
left.set(yscale="log", xlabel="conv layer (1 = first, next to the input)", ylabel="gradient norm",
         title="depth 21: each conv layer's gradient, 3 seeds")
right.set(yscale="log", xlabel="number of conv layers", ylabel="gradient norm of the first conv layer",
          title="first layer's gradient vs depth, 3 seeds", xticks=depths)
for ax in (left, right):
    ax.grid(alpha=0.3, which="both")
    ax.legend()
fig.tight_layout()
plt.show()

# %%
for skip in (False, True):
    ratio = np.median([runs[21, skip, s][0] / runs[21, skip, s][-1] for s in seeds])
    print(f"{'residual' if skip else 'plain':>8}, depth 21: first / last conv layer gradient norm = {ratio:.1e}")

# %% [markdown]
# In the plain network the gradient shrinks layer after layer on its way back, and the deeper the network the
# smaller it is at the first layer: at depth 21 the first layer gets less than a thousandth of the last layer's
# gradient (**vanishing gradients**). With skip connections it does not shrink with depth (at depth 21 the first
# layer gets about as much as the last), because each block's identity path carries $\partial L/\partial x$
# straight back: $\frac{d(x + F(x))}{dx} = I + \frac{dF}{dx}$, whatever $\frac{dF}{dx}$ does.
#
# ## 4. A functional model trains like a Sequential
#
# `compile`, `fit`, `evaluate` and `predict` are the same methods: `fit()` only calls `model._plan()`'s
# `forward` and `backward`, and for a functional model that plan is the graph. A small residual CNN on 512
# MNIST digits, one epoch, just to see it run:

# %%
tinycnn.set_random_seed(0)
inputs = tinycnn.Input(shape=(28, 28, 1))
x0 = layers.Conv2D(8, 3, activation="relu")(inputs)                    # (26, 26, 8)
h = layers.Conv2D(8, 3, padding="same", use_bias=False)(x0)
h = layers.ReLU()(layers.BatchNormalization()(h))
h = layers.BatchNormalization()(layers.Conv2D(8, 3, padding="same", use_bias=False)(h))
h = layers.ReLU()(layers.Add()([x0, h]))                                # the residual block of section 2
h = layers.Flatten()(layers.MaxPooling2D(2)(h))                         # (13 * 13 * 8,)
model = tinycnn.Model(inputs, layers.Dense(10, activation="softmax")(h), name="small_resnet")
model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
model.summary()

images = lambda a: (a[..., None] / 255.0).astype(np.float32)           # (N, 28, 28, 1) in [0, 1]
x_fit, y_fit = images(x_train[:512]), tinycnn.to_categorical(y_train[:512], 10)
x_val, y_val = images(x_test[:500]), tinycnn.to_categorical(y_test[:500], 10)
before = model.evaluate(x_val, y_val, verbose=0)
history = model.fit(x_fit, y_fit, batch_size=32, epochs=1)
after = model.evaluate(x_val, y_val, verbose=0)
print(f"500 test digits: loss {before[0]:.3f} -> {after[0]:.3f}, accuracy {before[1]:.3f} -> {after[1]:.3f}")
assert after[0] < before[0] and after[1] > before[1], "one epoch should already help a little"

# %% [markdown]
# Sixteen steps of Adam already lower the test loss and lift the accuracy above chance (0.1): the gradients reach
# every layer, through both paths of the block. More data and more epochs do the rest, as in notebook 04; callbacks,
# `plot.history` and saving work the same way on a functional model.
#
# **Back to the start:** [01 · Dense and softmax-cross-entropy](01_dense_softmax_backprop.ipynb).
