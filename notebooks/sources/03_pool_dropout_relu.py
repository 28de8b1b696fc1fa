# %% [markdown]
# # 03 · Max-pooling, ReLU and dropout: layers that route gradients
#
# These three layers do almost no arithmetic in their backward pass. Each one decides **where the
# gradient may go**:
#
# * **max-pooling** sends each window's gradient to the one cell that won the max;
# * **ReLU** lets the gradient through where the unit was active and stops it elsewhere;
# * **dropout** multiplies by the same random mask it used on the way forward.
#
# Each section shows the forward pass, the backward pass as a picture, and a gradient check. The
# exercise at the end asks you to write max-pooling's backward pass.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

import tinycnn
from tinycnn import exercises as ex
from tinycnn.gradcheck import check_layer
from tinycnn.layers import Dropout, MaxPooling2D, ReLU

plt.rcParams["figure.dpi"] = 80
np.set_printoptions(precision=2, suppress=True)
tinycnn.set_backend("numpy")
print("tinycnn", tinycnn.__version__, "imported from", os.path.relpath(os.path.dirname(tinycnn.__file__)),
      "- backend:", tinycnn.get_backend())

# %% [markdown]
# ## 1. Max-pooling: the winner takes the gradient
#
# A 2×2 max-pool splits each channel into 2×2 windows and keeps the largest value of each, halving the height and width:
#
# $$\text{out}[n, i, j, c] = \max_{0 \le a, b < 2} x[n,\ 2i + a,\ 2j + b,\ c] .$$
#
# Inside one window, the max is just **one of its inputs**, passed through unchanged. A small nudge to the winner
# moves the output by the same amount (local derivative 1); a small nudge to any other cell changes
# nothing (local derivative 0), as long as it stays below the winner. So backward gives each window's `dout` to its winner
# and zero to the other three cells. The layer only has to remember **which** cell won.

# %%
x = np.array([[1, 3, 2, 0],
              [4, 2, 1, 5],
              [0, 6, 3, 2],
              [1, 2, 7, 4]], dtype=float).reshape(1, 4, 4, 1)     # (N, H, W, C)
pool = MaxPooling2D((2, 2))
pool.build(x.shape[1:])
out = pool.forward(x, training=True)                               # (1, 2, 2, 1)
dout = np.array([[0.1, -0.2],
                 [0.3, 0.4]]).reshape(1, 2, 2, 1)                  # from the layer above
dx = pool.backward(dout)                                           # (1, 4, 4, 1)
print("x", x.shape, "-> out", out.shape, "\nout =\n", out[0, :, :, 0])
print("dout =\n", dout[0, :, :, 0], "\ndx =\n", dx[0, :, :, 0])

# %%
window_colors = ["#e6550d", "#3182bd", "#31a354", "#756bb1"]

def grid(ax, values, title, highlight=None, color_of=None, fmt="{:g}"):
    """Draw a small matrix with its numbers; outline 2x2 windows; shade the cells in highlight."""
    H, W = values.shape
    ax.imshow(np.zeros_like(values), cmap="Greys", vmin=0, vmax=1)
    for (r, c), v in np.ndenumerate(values):
        shaded = highlight is not None and highlight[r, c]
        if shaded:
            ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, color=color_of(r, c), alpha=0.45))
        ax.text(c, r, fmt.format(v), ha="center", va="center", fontsize=12, fontweight="bold" if shaded else None)
    if H > 2:
        for k in range(4):
            i, j = divmod(k, 2)
            ax.add_patch(Rectangle((2 * j - 0.45, 2 * i - 0.45), 1.9, 1.9, fill=False,
                                   edgecolor=window_colors[k], linewidth=2))
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])

winner = dx[0, :, :, 0] != 0                             # here no dout is 0, so winners are the non-zeros
window_color = lambda r, c: window_colors[(r // 2) * 2 + c // 2]
out_color = lambda r, c: window_colors[r * 2 + c]
fig, axes = plt.subplots(1, 4, figsize=(12, 3.3), gridspec_kw={"width_ratios": [2, 1, 1, 2]})
grid(axes[0], x[0, :, :, 0], "x: 2x2 windows, winners shaded", winner, window_color)
grid(axes[1], out[0, :, :, 0], "out = max per window", np.ones((2, 2), bool), out_color)
grid(axes[2], dout[0, :, :, 0], "dout", np.ones((2, 2), bool), out_color)
grid(axes[3], dx[0, :, :, 0], "dx: dout goes to the winner", winner, window_color)
fig.suptitle("forward: x → out (left)      backward: dout → dx (right)")
fig.tight_layout()
plt.show()

# %% [markdown]
# Points worth noticing:
#
# * `dx` has the shape of `x`, and exactly one non-zero per window: 3 of every 4 input cells get no gradient
#   at all from this batch.
# * **Ties.** If two cells of a window hold the same maximum, the max is not differentiable there. tinycnn
#   gives the whole gradient to the first one (in row-major order); any single choice is a valid
#   subgradient. Gradient checks should avoid ties, since a nudge of $\pm h$ would change the winner.
# * **Overlapping windows** (stride smaller than the pool size): a cell can win several windows, and then it
#   receives the **sum** of their gradients, the same rule as col2im in notebook 02.

# %%
x_overlap = np.array([[1, 2, 0],
                      [3, 9, 4],
                      [0, 5, 1]], dtype=float).reshape(1, 3, 3, 1)
overlapping = MaxPooling2D(pool_size=(2, 2), strides=(1, 1))
overlapping.build(x_overlap.shape[1:])
print("out =\n", overlapping.forward(x_overlap, training=True)[0, :, :, 0])
print("dx for dout = ones: the 9 won all four windows\n", overlapping.backward(np.ones((1, 2, 2, 1)))[0, :, :, 0])

# %% [markdown]
# Gradient check on random inputs with **distinct** values, so that no window has a tie:

# %%
rng = np.random.default_rng(0)
x_check = rng.permutation(2 * 6 * 8 * 3).reshape(2, 6, 8, 3) / 10.0     # distinct values
print({k: f"{v:.1e}" for k, v in check_layer(MaxPooling2D((2, 2)), x_check).items()})

# %% [markdown]
# ## 2. ReLU: a gate
#
# $\text{relu}(z) = \max(z, 0)$. Its derivative is 1 where $z > 0$ and 0 where $z < 0$ (at exactly 0 we pick 0).
# So the backward pass is a mask: $dz = \text{dout} \odot [\text{out} > 0]$. The layer keeps its output, and
# `out > 0` tells it where the gate was open.

# %%
zs = np.linspace(-3, 3, 301)
fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3))
left.plot(zs, np.maximum(zs, 0))
left.set_title("relu(z) = max(z, 0)")
right.plot(zs[zs < 0], np.zeros((zs < 0).sum()), "C1")
right.plot(zs[zs > 0], np.ones((zs > 0).sum()), "C1")
right.plot([0], [0], "o", color="C1")
right.plot([0], [1], "o", color="C1", fillstyle="none")
right.set_title("its derivative: 0 or 1")
for ax in (left, right):
    ax.set_xlabel("z")
    ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()

# %%
relu = ReLU()
z = rng.standard_normal((1, 6, 6))                  # (N, H, W), any shape works
out = relu.forward(z, training=True)
dout = rng.standard_normal(z.shape)
dz = relu.backward(dout)
panels = [(z, "z (input)"), (out, "out = relu(z)"), (dout, "dout"), (dz, "dz = dout where out > 0")]
fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
for ax, (a, title) in zip(axes, panels):
    ax.imshow(a[0], cmap="RdBu_r", vmin=-2.5, vmax=2.5)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("ReLU backward: the gradient only flows where the unit was active (red = positive, blue = negative)")
fig.tight_layout()
plt.show()
print(f"{int((out > 0).sum())} of {out.size} gates open")

# %% [markdown]
# A unit whose input is negative for every example gets no gradient and never changes again: a "dead ReLU".
# Good initialisation and a moderate learning rate keep this rare.
#
# In tinycnn the ReLU usually lives inside `Conv2D(..., activation="relu")` or `Dense(..., activation="relu")`;
# the layer applies the same mask to `dout` before its own backward pass.
#
# Gradient check, with inputs kept away from the kink at 0 (a nudge across 0 would change the slope):

# %%
z_check = rng.standard_normal((4, 5))
z_check[np.abs(z_check) < 0.1] += 0.2                # no value within 0.1 of the kink
print({k: f"{v:.1e}" for k, v in check_layer(ReLU(), z_check).items()})

# %% [markdown]
# ## 3. Dropout: a random mask, scaled
#
# During training, `Dropout(rate)` sets each unit to 0 with probability `rate` and multiplies the survivors by
# $1 / (1 - \text{rate})$. This is **inverted dropout**, the form Keras uses:
#
# $$\text{mask} = \frac{[u \ge \text{rate}]}{1 - \text{rate}},\ u \sim U[0, 1) \qquad \text{out} = x \odot \text{mask} \qquad dx = \text{dout} \odot \text{mask}$$
#
# **Why the scaling?** A unit survives with probability $1 - \text{rate}$, so without scaling its expected
# value would shrink to $(1 - \text{rate})\,x$ during training, while at test time (no dropout) the next
# layer would see the full $x$. Dividing by $1 - \text{rate}$ makes $E[\text{out}] = x$ in both modes, so
# **nothing changes at inference**: dropout is simply switched off.
#
# The backward pass reuses the **same** mask: a dropped unit did not influence the loss, so its gradient is 0;
# a kept unit was multiplied by $1/(1-\text{rate})$, and so is its gradient.

# %%
from tinycnn.datasets import mnist

(_, _), (x_test, _) = mnist.load_data()
digit = x_test[0].astype(np.float32) / 255.0                         # (28, 28)
fig, axes = plt.subplots(1, 4, figsize=(11, 3.2))
axes[0].imshow(digit, cmap="gray_r")
axes[0].set_title("input")
for ax, rate in zip(axes[1:], (0.25, 0.5, 0.75)):
    layer = Dropout(rate, seed=1)
    dropped = layer.forward(digit[None], training=True)[0]           # (28, 28)
    ax.imshow(dropped, cmap="gray_r", vmin=0, vmax=1 / (1 - rate))
    ax.set_title(f"rate {rate}: kept pixels x{1 / (1 - rate):.3g}")
for ax in axes:
    ax.axis("off")
fig.tight_layout()
plt.show()
print("at inference the layer is the identity:", np.array_equal(Dropout(0.5).forward(digit[None])[0], digit))

# %% [markdown]
# The scaling at work: over many random masks, every unit's average output is its input.

# %%
layer = Dropout(0.5, seed=0)
ones = np.ones((1, 1000))
mask_values = layer.forward(ones, training=True)[0]                  # one mask: values 0 or 2
means = np.mean([layer.forward(ones, training=True) for _ in range(2000)], axis=0)[0]   # (1000,)
print("values in one mask:", np.unique(mask_values), " fraction kept:", (mask_values > 0).mean())
fig, ax = plt.subplots(figsize=(6, 2.8))
ax.hist(means, bins=40)
ax.axvline(1, color="C3")
ax.set_title("each unit's output averaged over 2000 masks (rate 0.5)")
ax.set_xlabel("average of x * mask, with x = 1")
fig.tight_layout()
plt.show()

# %% [markdown]
# Backward uses the stored mask, so the gradient is zero exactly where the forward pass dropped a unit.
# A gradient check needs the **same** mask in every forward pass; a `Dropout` with a `seed` redraws the same
# mask each time the check resets it:

# %%
layer = Dropout(0.3, seed=5)
x_small = rng.standard_normal((2, 6))
out = layer.forward(x_small, training=True)
dx = layer.backward(np.ones_like(x_small))
print("out =\n", out + 0.0, "\ndx for dout = 1 (the mask itself) =\n", dx)          # + 0.0 turns -0 into 0
print({k: f"{v:.1e}" for k, v in check_layer(Dropout(0.3, seed=5), x_small).items()})

# %% [markdown]
# ## 4. Exercise: max-pooling backward
#
# Write `maxpool_backward(dout, x, pool_size)` for non-overlapping windows (stride = pool size). You get
# `x` itself, so find each window's max yourself. The checker uses two window shapes, 2×2 and 3×2
# (3 rows, 2 columns): code that only works for square windows will be caught.

# %%
# @skeleton maxpool_backward


ex.check_maxpool_backward(maxpool_backward);

# %% [markdown]
# What a wrong routing looks like to the checker: here every cell of the window receives the gradient
# (as if the max were a sum):

# %%
def maxpool_backward_to_every_cell(dout, x, pool_size):
    PH, PW = pool_size
    return np.repeat(np.repeat(dout, PH, axis=1), PW, axis=2)        # (N, H, W, C), but wrong

ex.check_maxpool_backward(maxpool_backward_to_every_cell);

# %% [markdown]
# ## 5. More exercises: ReLU, dropout, average pooling, BatchNorm
#
# **ReLU.** The gate of section 2. The checker puts a few exact zeros in `x`: at 0 the slope is taken as 0,
# as Keras does.

# %%
# @skeleton relu_backward


ex.check_relu_backward(relu_backward);

# %% [markdown]
# **Dropout.** The mask of section 3, given as `keep` (the units kept) and `rate`.

# %%
# @skeleton dropout_backward


ex.check_dropout_backward(dropout_backward);

# %% [markdown]
# The classic slip is to forget that the forward pass scaled the kept units by $1/(1 - \text{rate})$:

# %%
def dropout_backward_unscaled(dout, keep, rate):
    return dout * keep                                   # the 1 / (1 - rate) is missing

ex.check_dropout_backward(dropout_backward_unscaled);

# %% [markdown]
# **Average pooling.** Every cell of a window moves the mean, by $1/(P_H P_W)$ of its change: the gradient is
# shared, not routed. And the global average pool, one window as large as the image.

# %%
# @skeleton avgpool_backward


ex.check_avgpool_backward(avgpool_backward);

# %%
# @skeleton global_avgpool_backward


ex.check_global_avgpool_backward(global_avgpool_backward);

# %% [markdown]
# **BatchNorm, the classic.** In training, BatchNormalization normalises each channel with the batch's own mean
# and variance, over its $m$ values ($m = N$ for a Dense layer's output, $N \cdot H \cdot W$ for images):
#
# $$\mu = \tfrac{1}{m}\textstyle\sum x, \quad \sigma^2 = \tfrac{1}{m}\sum (x - \mu)^2, \quad
# \hat x = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}}, \quad \text{out} = \gamma \hat x + \beta$$
#
# $\mu$ and $\sigma^2$ are computed from $x$, so every $x$ reaches the output three ways: directly, through
# $\mu$ and through $\sigma^2$. Forgetting the last two is the classic mistake.

# %%
# @skeleton batchnorm_backward


ex.check_batchnorm_backward(batchnorm_backward);

# %% [markdown]
# Here is that mistake: the mean and variance treated as constants. The checker names it, and the picture
# shows that no entry of `dx` survives it:

# %%
def batchnorm_backward_constant_stats(dout, x, gamma, eps):
    axes = tuple(range(x.ndim - 1))
    inv_std = 1 / np.sqrt(x.var(axis=axes) + eps)
    xhat = (x - x.mean(axis=axes)) * inv_std
    dx = dout * gamma * inv_std                          # only the direct path
    return dx, (dout * xhat).sum(axis=axes), dout.sum(axis=axes)

ex.check_batchnorm_backward(batchnorm_backward_constant_stats)

# %% [markdown]
# Hints come in three levels, from a nudge to the key equation:

# %%
for level in (1, 2, 3):
    ex.hint("batchnorm_backward", level=level)

# %% [markdown]
# **Next:** [04 · The seed tutorial: a CNN on MNIST](04_mnist_cnn.ipynb).
