# %% [markdown]
# # 01 · Dense and softmax-cross-entropy: the backward pass by hand
#
# The last two layers of almost every classifier are a **Dense** layer and a **softmax** that
# turns its outputs into probabilities, scored by the **cross-entropy** loss. This notebook
# derives their backward pass from the chain rule, computes it by hand on a tiny example, and
# then checks the numbers twice: against tinycnn's layers and against a numerical gradient.
#
# What you will be able to do afterwards:
# * write `dW`, `db` and `dx` of a Dense layer from its forward formula, and explain every shape;
# * explain why the gradient of softmax + cross-entropy with respect to the logits is simply `(p - y) / N`;
# * check any gradient with central differences.
#
# At the end there are four exercises with automatic checkers and hints.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

import tinycnn
from tinycnn import exercises as ex
from tinycnn.gradcheck import numerical_gradient, rel_error

plt.rcParams["figure.dpi"] = 80
np.set_printoptions(precision=4, suppress=True)
print("tinycnn", tinycnn.__version__, "imported from", os.path.relpath(os.path.dirname(tinycnn.__file__)))

# %% [markdown]
# ## 1. The forward pass, and the names we use
#
# A batch of $N$ samples with $D$ features each goes through a Dense layer with $K$ units,
# then a softmax, then the loss. Lowercase letters are arrays, uppercase letters are sizes:
#
# | step | formula | shape |
# |---|---|---|
# | input | $x$ | $(N, D)$ |
# | Dense | $z = x W + b$, i.e. $z_{nk} = \sum_d x_{nd} W_{dk} + b_k$ | $(N, K)$ (with $W$: $(D, K)$, $b$: $(K,)$) |
# | softmax | $p_{nk} = \dfrac{e^{z_{nk}}}{\sum_j e^{z_{nj}}}$ | $(N, K)$ |
# | loss | $L = -\dfrac{1}{N} \sum_n \sum_k y_{nk} \log p_{nk}$ | a number |
#
# $y$ holds the one-hot targets: $y_{nk} = 1$ if sample $n$ belongs to class $k$, else 0. So for
# each sample the inner sum picks out one term, $-\log$ (the probability given to the right class):
# a confident right answer costs almost nothing, a confident wrong one costs a lot.
#
# Here is a tiny example, small enough to follow every number: $N = 2$ samples, $D = 4$ features, $K = 3$ classes.

# %%
x = np.array([[1.0, 2.0, 0.0, 1.0],
              [0.0, -1.0, 1.0, 2.0]])            # (N, D) = (2, 4)
W = np.array([[0.2, -0.1, 0.0],
              [0.1, 0.3, -0.2],
              [-0.3, 0.2, 0.4],
              [0.1, -0.3, 0.2]])                 # (D, K) = (4, 3)
b = np.array([0.0, 0.1, -0.1])                   # (K,)
y = np.array([[0.0, 1.0, 0.0],                   # sample 0 is class 1
              [1.0, 0.0, 0.0]])                  # sample 1 is class 0
N = len(x)
print("x", x.shape, " W", W.shape, " b", b.shape, " y", y.shape)

# %% [markdown]
# The forward pass, one step per line. For sample 0,
# $z_{0,0} = 1 \cdot 0.2 + 2 \cdot 0.1 + 0 \cdot (-0.3) + 1 \cdot 0.1 + b_0 = 0.5$ (with $b_0 = 0$): check the first
# entry below by hand.

# %%
z = x @ W + b                                    # (N, K)
print("z =\n", z, z.shape)

e = np.exp(z - z.max(axis=1, keepdims=True))     # (N, K), shifted so exp never overflows
p = e / e.sum(axis=1, keepdims=True)             # (N, K), each row sums to 1
print("p =\n", p, p.shape, " row sums:", p.sum(axis=1))

L = -np.sum(y * np.log(p)) / N
print(f"L = -(log p[0,1] + log p[1,0]) / 2 = -({np.log(p[0, 1]):.4f} + {np.log(p[1, 0]):.4f}) / 2 = {L:.4f}")

# %% [markdown]
# Subtracting each row's maximum before `exp` does not change softmax (the factor $e^{-\max}$
# cancels between numerator and denominator), but it keeps `exp` from overflowing when a
# logit is large. tinycnn does the same.
#
# ## 2. Backward, step 1: from the loss to the logits, $\partial L / \partial z$
#
# Take one sample and drop the index $n$. Write the log of softmax as
# $\log p_k = z_k - \log \sum_j e^{z_j}$. Then
#
# $$\frac{\partial \log p_k}{\partial z_j} = \delta_{kj} - \frac{e^{z_j}}{\sum_i e^{z_i}} = \delta_{kj} - p_j ,$$
#
# where $\delta_{kj}$ is 1 if $k = j$ and 0 otherwise. The loss of this sample is
# $\ell = -\sum_k y_k \log p_k$, so by the chain rule
#
# $$\frac{\partial \ell}{\partial z_j} = -\sum_k y_k (\delta_{kj} - p_j) = -y_j + p_j \sum_k y_k = p_j - y_j ,$$
#
# because the one-hot $y$ sums to 1. The batch loss is the **mean** of the $N$ sample losses, so every
# sample's gradient is divided by $N$:
#
# $$\boxed{\frac{\partial L}{\partial z} = \frac{p - y}{N}} \qquad (N, K)$$
#
# Where did the softmax Jacobian (a $K \times K$ matrix per sample) go? It was multiplied by the
# $-y/p$ that the log contributes, and almost everything cancelled. That is why frameworks fuse the two:
# the fused formula is shorter, faster, and never divides by a tiny $p$.
#
# By hand on our example: for sample 0 (class 1) we subtract 1 from $p_{0,1}$, for sample 1 (class 0) from $p_{1,0}$,
# then halve everything.

# %%
dz = (p - y) / N                                 # (N, K)
print("p - y =\n", p - y)
print("dL/dz = (p - y) / N =\n", dz, dz.shape)

# %% [markdown]
# The unfused route gives the same numbers: first $\partial L / \partial p = -y / (N p)$, then the
# softmax's Jacobian-vector product $\partial L/\partial z = p \odot (g - \sum_k g_k p_k)$ for $g = \partial L / \partial p$.
# tinycnn has both pieces: `losses.CategoricalCrossentropy.gradient` and the softmax activation's `backward`.
# (Like Keras, tinycnn's loss first divides each row of p by its sum, so its gradient is $-y/(Np)$ plus
# $1/N$ on every entry of a one-hot row; the softmax's Jacobian sends a constant per row to zero, so
# $\partial L/\partial z$ is the same.)

# %%
from tinycnn.layers.activations import SoftmaxFn
from tinycnn.losses import CategoricalCrossentropy

dL_dp = CategoricalCrossentropy().gradient(y, p)        # (N, K), (1 - y / p) / N for one-hot y
dz_unfused = SoftmaxFn().backward(dL_dp, p)              # (N, K), through the Jacobian
print("unfused dL/dz =\n", dz_unfused)
print(f"relative error vs (p - y) / N: {rel_error(dz_unfused, dz):.1e}")

# %% [markdown]
# ## 3. Backward, step 2: through the Dense layer
#
# Now $\partial L / \partial z$ (call it `dz`) is known. Every entry of $W$, $b$ and $x$ affects the
# loss only through the $z$'s it takes part in, so the chain rule says: **sum over every $z$ it touches**.
#
# * $W_{dk}$ appears in $z_{nk}$ for every sample $n$, with coefficient $x_{nd}$:
#   $$\frac{\partial L}{\partial W_{dk}} = \sum_n x_{nd}\, dz_{nk} \quad\Longrightarrow\quad dW = x^\top dz \qquad (D, N)(N, K) = (D, K)$$
# * $b_k$ appears in $z_{nk}$ for every $n$, with coefficient 1:
#   $$\frac{\partial L}{\partial b_k} = \sum_n dz_{nk} \quad\Longrightarrow\quad db = \text{dz summed over the batch axis} \qquad (K,)$$
# * $x_{nd}$ appears in $z_{nk}$ for every unit $k$ of the same sample, with coefficient $W_{dk}$:
#   $$\frac{\partial L}{\partial x_{nd}} = \sum_k dz_{nk} W_{dk} \quad\Longrightarrow\quad dx = dz\, W^\top \qquad (N, K)(K, D) = (N, D)$$
#
# A useful check: **a gradient always has the shape of the thing it is the gradient of**, and there is
# usually only one way to multiply the available arrays to get that shape. $dW$ must be $(D, K)$; from
# $x$ $(N, D)$ and $dz$ $(N, K)$ the only product that gives it is $x^\top dz$.
#
# One entry by hand: $dW_{0,1} = x_{0,0}\, dz_{0,1} + x_{1,0}\, dz_{1,1}$.

# %%
dW = x.T @ dz                                    # (D, K)
db = dz.sum(axis=0)                              # (K,)
dx = dz @ W.T                                    # (N, D)
print("dW =\n", dW, dW.shape)
print(f"dW[0, 1] by hand: {x[0, 0]} * {dz[0, 1]:.4f} + {x[1, 0]} * {dz[1, 1]:.4f} = "
      f"{x[0, 0] * dz[0, 1] + x[1, 0] * dz[1, 1]:.4f}")
print("db =", db, db.shape)
print("dx =\n", dx, dx.shape)

# %% [markdown]
# ## 4. Check 1: the same numbers from tinycnn
#
# A tinycnn `Dense(3, activation="softmax")` computes the same forward pass. When softmax is followed
# by cross-entropy, a `Sequential` starts its backward pass from the fused `(p - y) / N`, wrapped in a
# `LogitsGradient`: the softmax's backward passes it on instead of multiplying by its Jacobian. We do
# the same by hand here.

# %%
from tinycnn.layers import Dense
from tinycnn.layers.activations import LogitsGradient

layer = Dense(3, activation="softmax")
layer.build((4,))                                        # D = 4 inputs
layer.params = {"kernel": W.copy(), "bias": b.copy()}   # our numbers, in float64
p_layer = layer.forward(x, training=True)                # (N, K)
loss = CategoricalCrossentropy()
dz_layer = loss.gradient_logits(y, p_layer)              # (N, K), the fused (p - y) / N
dx_layer = layer.backward(LogitsGradient(dz_layer))      # the softmax hands dz on to the product

print(f"loss: ours {L:.6f}, tinycnn {loss(y, p_layer):.6f}")
for name, ours, theirs in [("p", p, p_layer), ("dW", dW, layer.grads["kernel"]),
                           ("db", db, layer.grads["bias"]), ("dx", dx, dx_layer)]:
    print(f"{name:>2}: shape {theirs.shape}, relative error {rel_error(ours, theirs):.1e}")

# %% [markdown]
# ## 5. Check 2: a numerical gradient
#
# Agreeing with a library only shows that we made the same choices. A check that needs no
# derivation at all is the definition of the derivative: nudge one number by $\pm h$ and watch the loss,
#
# $$\frac{\partial L}{\partial W_{dk}} \approx \frac{L(W_{dk} + h) - L(W_{dk} - h)}{2h} .$$
#
# This *central* difference has an error of order $h^2$. In float64 with $h = 10^{-5}$, a correct
# gradient agrees to about $10^{-7}$ or better (relative); a wrong one is typically off by $10^{-2}$ or more.
# `tinycnn.gradcheck.numerical_gradient(f, a)` nudges every entry of `a` in place, one at a time.

# %%
def loss_of_current_values():
    z = x @ W + b
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return -np.sum(y * np.log(e / e.sum(axis=1, keepdims=True))) / N

for name, array, analytic in [("W", W, dW), ("b", b, db), ("x", x, dx)]:
    numeric = numerical_gradient(loss_of_current_values, array)     # same shape as array
    print(f"d{name}: shape {numeric.shape}, relative error vs numerical gradient {rel_error(analytic, numeric):.1e}")

# %% [markdown]
# The relative error `rel_error(a, b)` is $\max_i |a_i - b_i| / \max(10^{-8}, |a_i| + |b_i|)$: scale-free,
# so the same threshold works for big and small gradients.
#
# ### Why check `dx` and not only `dW`?
# In a network, `dx` of this layer is the `dout` of the layer below. A mistake in `dx` does not show up
# in this layer's own weight gradients at all; it silently corrupts every layer underneath.
#
# ## 6. The whole recipe in one picture
#
# Forward computes and *remembers* what backward will need ($x$ for $dW$, $p$ for $dz$); backward walks the
# same steps in reverse, each step multiplying the incoming gradient by its local derivative.

# %%
fig, ax = plt.subplots(figsize=(9, 2.6))
ax.axis("off")
boxes = [("x\n(N, D)", 0.05), ("z = xW + b\n(N, K)", 0.3), ("p = softmax(z)\n(N, K)", 0.55), ("L\n(number)", 0.8)]
for text, left in boxes:
    ax.text(left, 0.6, text, ha="center", va="center", fontsize=10,
            bbox=dict(boxstyle="round", facecolor="#dde8f5"))
for (_, a), (_, b_) in zip(boxes, boxes[1:]):
    ax.annotate("", xy=(b_ - 0.08, 0.68), xytext=(a + 0.08, 0.68), arrowprops=dict(arrowstyle="->"))
    ax.annotate("", xy=(a + 0.08, 0.5), xytext=(b_ - 0.08, 0.5), arrowprops=dict(arrowstyle="->", color="C3"))
ax.text(0.175, 0.22, "dx = dz Wᵀ\ndW = xᵀ dz, db = Σₙ dz", ha="center", color="C3", fontsize=9)
ax.text(0.55, 0.22, "dz = (p − y) / N   (softmax and cross-entropy fused)", ha="center", color="C3", fontsize=9)
ax.set_xlim(-0.05, 0.9)
ax.set_ylim(0, 1)
ax.set_title("forward (black, left to right) and backward (red, right to left)")
plt.show()

# %% [markdown]
# ## 7. Exercises
#
# Write the functions below, then run their cells. Each checker calls your function on small random
# inputs, compares every output with tinycnn's reference and with a numerical gradient, and tells you
# which output is wrong, its shape (expected vs received) and the largest relative error, or that your
# answer is correct. Until you write something, it says so.
#
# **Exercise 1.** The backward pass of a Dense layer, without activation.

# %%
# @skeleton dense_backward


ex.check_dense_backward(dense_backward);

# %% [markdown]
# **Exercise 2.** Softmax and the mean cross-entropy in one function, returning the loss and
# $\partial L / \partial z$. The checker also tries logits near 1000: if you forget to subtract the max, you will see why it matters.

# %%
# @skeleton softmax_cross_entropy


ex.check_softmax_cross_entropy(softmax_cross_entropy);

# %% [markdown]
# ### What the checker says about a wrong answer
#
# A classic slip: forgetting that the loss is a **mean**, so the gradient keeps no $1/N$. The checker
# finds that the answer is off by exactly the batch size and says so:

# %%
def softmax_cross_entropy_missing_mean(z, y):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    return -np.mean(np.sum(y * np.log(p), axis=1)), p - y     # the gradient lacks / N

ex.check_softmax_cross_entropy(softmax_cross_entropy_missing_mean);

# %% [markdown]
# **Exercise 3.** Softmax's own backward pass, for when no cross-entropy follows it: the Jacobian
# $J_{ij} = \partial p_i / \partial z_j = p_i(\delta_{ij} - p_j)$ times the gradient $v = \partial L / \partial p$,
# row by row, without building the $K \times K$ matrix. The checker compares it with the slope of softmax
# along $v$, measured by finite differences.

# %%
# @skeleton softmax_jvp


ex.check_softmax_jvp(softmax_jvp);

# %% [markdown]
# **Exercise 4.** A whole network: Dense, ReLU, Dense, softmax and the mean cross-entropy, forward and
# backward in one function. This is the chain rule end to end: each step above, one after the other. The
# ReLU $h = \max(z_1, 0)$ lets the gradient through where $z_1 > 0$ and stops it elsewhere (notebook 03 looks at
# it closely).

# %%
# @skeleton two_layer_backward


ex.check_two_layer_backward(two_layer_backward);

# %% [markdown]
# ### Where a wrong answer is wrong
#
# The most common slip in Exercise 4 is to forget the ReLU between the layers on the way back. The checker
# recognises the mistake, counts the wrong entries and says where they are. Displayed (no `;` at the end),
# its result also draws the expected answer, the received one, and the wrong entries in red:

# %%
def two_layer_backward_no_gate(x, y, w1, b1, w2, b2):
    h = np.maximum(x @ w1 + b1, 0)
    z = h @ w2 + b2
    e = np.exp(z - z.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    loss = -np.mean(np.sum(y * np.log(p), axis=1))
    dz = (p - y) / len(x)
    dh = dz @ w2.T                                # the gate (x @ w1 + b1 > 0) is missing
    return loss, x.T @ dh, dh.sum(axis=0), h.T @ dz, dz.sum(axis=0)

ex.check_two_layer_backward(two_layer_backward_no_gate)

# %% [markdown]
# Stuck? Ask for a hint, in three levels: 1 is a nudge, 2 the method, 3 the key equation.

# %%
ex.hint("softmax_jvp", level=1)
ex.hint("two_layer_backward", level=2);

# %% [markdown]
# The worked answers are in `tinycnn/exercises/solutions.py`, which `import tinycnn.exercises` does not load.
# Try first: the derivation above has everything you need.
#
# **Next:** [02 · Convolution, im2col and col2im](02_conv_im2col.ipynb).
