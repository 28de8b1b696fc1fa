# %% [markdown]
# # 02 · Convolution: loops, im2col and col2im
#
# A convolution slides $F$ small filters over an image. Written as loops it is easy to read and
# painfully slow; written as **im2col** (unroll every patch into a row) plus **one matrix product**
# it is fast, and its backward pass becomes **two matrix products** plus **col2im** (fold the rows back).
#
# Plan: the definition as loops → im2col with pictures → the forward pass as a product, with every
# shape printed → the backward pass derived → col2im, the adjoint of im2col → gradient checks → an exercise.
#
# Layout conventions (as in Keras): images are NHWC, `x` of shape $(N, H, W, C)$; a kernel is
# $(KH, KW, C, F)$; the output is $(N, OH, OW, F)$.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

import tinycnn
from tinycnn import exercises as ex
from tinycnn.gradcheck import check_layer, numerical_gradient, rel_error
from tinycnn.kernels.numpy_ops import col2im, im2col
from tinycnn.layers import Conv2D

plt.rcParams["figure.dpi"] = 80
np.set_printoptions(precision=3, suppress=True, linewidth=110)
tinycnn.set_backend("numpy")          # the readable reference kernels
print("tinycnn", tinycnn.__version__, "imported from", os.path.relpath(os.path.dirname(tinycnn.__file__)),
      "- backend:", tinycnn.get_backend())

# %% [markdown]
# ## 1. The definition, as loops
#
# With stride $S$ and no padding, output pixel $(i, j)$ of filter $f$ is the dot product of the filter
# with the patch of the image under it, plus a bias:
#
# $$\text{out}[n, i, j, f] = \sum_{a < KH} \sum_{c < KW} \sum_{ch < C} x[n,\ iS + a,\ jS + c,\ ch]\ w[a, c, ch, f] + b[f]$$
#
# and the output has $OH = (H - KH)/S + 1$ rows (rounded down) and as many columns, by the same rule.

# %%
def conv_loops(x, w, b, stride=1):
    """The definition, one multiply-add at a time. x (N,H,W,C), w (KH,KW,C,F), b (F,)."""
    N, H, W, C = x.shape
    KH, KW, _, F = w.shape
    OH, OW = (H - KH) // stride + 1, (W - KW) // stride + 1
    out = np.zeros((N, OH, OW, F))
    for n in range(N):
        for i in range(OH):
            for j in range(OW):
                for f in range(F):
                    total = b[f]
                    for a in range(KH):
                        for c in range(KW):
                            for ch in range(C):
                                total += x[n, i * stride + a, j * stride + c, ch] * w[a, c, ch, f]
                    out[n, i, j, f] = total
    return out

rng = np.random.default_rng(0)
x = rng.standard_normal((2, 5, 5, 3))          # (N, H, W, C)
w = rng.standard_normal((3, 3, 3, 4))          # (KH, KW, C, F)
b = rng.standard_normal(4)                     # (F,)
out_loops = conv_loops(x, w, b)
print("x", x.shape, "* w", w.shape, "->", out_loops.shape)

# %% [markdown]
# Seven nested loops, and for the seed model's first layer on one batch of 128 MNIST images that is
# $128 \cdot 26 \cdot 26 \cdot 32 \cdot 9 \approx 25$ million multiply-adds, each costing tens of nanoseconds in Python. The idea
# that saves us: **gather the patches once, then let a matrix product do all the multiply-adds**.
#
# ## 2. im2col: every patch becomes one row
#
# Take a 4×4 image with one channel and a 3×3 kernel, stride 1. There are 2×2 = 4 positions for the
# kernel. `im2col` copies the 9 pixels under each position into one row of a matrix, in the order
# (kernel row, kernel column, channel), the same order as a Keras kernel:

# %%
image = np.arange(1, 17, dtype=float).reshape(1, 4, 4, 1)      # (N, H, W, C) = (1, 4, 4, 1)
cols = im2col(image, 3, 3, strides=(1, 1), pads=(0, 0, 0, 0))     # (N*OH*OW, KH*KW*C) = (4, 9)
print("image[0, :, :, 0] =\n", image[0, :, :, 0])
print("cols =\n", cols, cols.shape)

# %%
colors = ["#e6550d", "#3182bd", "#31a354", "#756bb1"]

def draw_im2col(image, cols, KH, KW):
    """Left: the image with every kernel position outlined. Right: cols, one row per position."""
    H, W = image.shape
    OW = W - KW + 1
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [1, 2.2]})
    left.imshow(np.zeros_like(image), cmap="Greys", vmin=0, vmax=1)
    for (r, c), v in np.ndenumerate(image):
        left.text(c, r, f"{v:.0f}", ha="center", va="center", fontsize=12)
    for k, color in enumerate(colors[:len(cols)]):
        i, j = divmod(k, OW)
        inset = 0.06 * k
        left.add_patch(Rectangle((j - 0.5 + inset, i - 0.5 + inset), KW - 2 * inset, KH - 2 * inset,
                                 fill=False, edgecolor=color, linewidth=2.5))
    left.set_title("image: 4 positions of a 3x3 kernel")
    left.set_xticks(range(W))
    left.set_yticks(range(H))
    right.imshow(np.zeros_like(cols), cmap="Greys", vmin=0, vmax=1, aspect="auto")
    for r in range(cols.shape[0]):
        right.add_patch(Rectangle((-0.5, r - 0.5), cols.shape[1], 1, color=colors[r], alpha=0.25))
        for c in range(cols.shape[1]):
            right.text(c, r, f"{cols[r, c]:.0f}", ha="center", va="center", fontsize=12)
    right.set_yticks(range(cols.shape[0]), [f"position {divmod(r, OW)}" for r in range(cols.shape[0])])
    right.set_xticks(range(cols.shape[1]), [f"({a},{c})" for a in range(KH) for c in range(KW)], fontsize=8)
    right.set_xlabel("(kernel row, kernel column) of each entry")
    right.set_title(f"cols {cols.shape}: one row per position")
    fig.tight_layout()
    return fig

draw_im2col(image[0, :, :, 0], cols, 3, 3)
plt.show()

# %% [markdown]
# Pixels 6, 7, 10 and 11 sit under all four positions, so each of them is copied into all four rows;
# corner pixels appear once. im2col trades memory (here 36 numbers for a 16-pixel image) for speed.
#
# *A note on the name.* "im2col" comes from the layout where every patch is a **column**. tinycnn
# stores each patch as a **row** instead (the transpose). With NHWC images this is the natural order in
# memory, and the convolution reads as `cols @ W`. Nothing else changes.
#
# ## 3. The forward pass as one matrix product
#
# Reshape the kernel $(KH, KW, C, F)$ into a matrix $(KH \cdot KW \cdot C,\ F)$: column $f$ is filter $f$,
# unrolled in the same (row, column, channel) order as a patch. Then every entry of `cols @ W` is one
# patch dotted with one filter: exactly the definition. Here it is on the random batch from section 1,
# with every shape printed:

# %%
def show(step, array, meaning):
    print(f"{step:<34} {str(array.shape):<14} {meaning}")

N, H, W_, C = x.shape
KH, KW, _, F = w.shape
OH, OW = H - KH + 1, W_ - KW + 1
show("x", x, "(N, H, W, C)")
cols = im2col(x, KH, KW, (1, 1), (0, 0, 0, 0))
show("cols = im2col(x)", cols, f"(N*OH*OW, KH*KW*C) = ({N}*{OH}*{OW}, {KH}*{KW}*{C})")
W_mat = w.reshape(KH * KW * C, F)
show("W = w.reshape(KH*KW*C, F)", W_mat, "(KH*KW*C, F)")
z = cols @ W_mat + b
show("z = cols @ W + b", z, "(N*OH*OW, F)")
out = z.reshape(N, OH, OW, F)
show("out = z.reshape(N, OH, OW, F)", out, "(N, OH, OW, F)")
print(f"\nrelative error vs the seven loops: {rel_error(out, out_loops):.1e}")

# %% [markdown]
# tinycnn's `Conv2D` does exactly this (in `tinycnn/kernels/numpy_ops.py`, `conv2d_forward`):

# %%
conv = Conv2D(4, (3, 3))
conv.build(x.shape[1:])
conv.params = {"kernel": w.copy(), "bias": b.copy()}
print(f"Conv2D output {conv.forward(x).shape}, relative error vs the loops: {rel_error(conv.forward(x), out_loops):.1e}")

# %% [markdown]
# ## 4. The backward pass: two matrix products
#
# The layer above hands us `dout` $= \partial L / \partial\, \text{out}$, shape $(N, OH, OW, F)$. Reshaped to
# $(M, F)$ with $M = N \cdot OH \cdot OW$, it is $dZ$, the gradient of $Z = \text{cols}\, W + b$. This is the
# Dense layer of notebook 01 again, with "samples" replaced by "patches", so the same three lines apply:
#
# | gradient | formula | shapes |
# |---|---|---|
# | weights | $dW = \text{cols}^\top dZ$ | $(KH\,KW\,C,\ M)\,(M,\ F) = (KH\,KW\,C,\ F)$, then reshape to $(KH, KW, C, F)$ |
# | bias | $db = \sum_{\text{rows}} dZ$ | $(F,)$ |
# | patches | $d\text{cols} = dZ\, W^\top$ | $(M,\ F)\,(F,\ KH\,KW\,C) = (M,\ KH\,KW\,C)$ |
#
# $dW$ sums over **every patch of every image**: a filter is shared by all positions, so it collects the
# gradient from all of them. That is weight sharing, seen from the backward side.
#
# But we want $dx$, not $d\text{cols}$. Each entry of cols is a copy of one pixel, and a pixel that was
# copied into $k$ rows influences the loss through all $k$ copies. The chain rule says: **add up the
# gradients of all copies**. That is what col2im does.

# %%
dout = rng.standard_normal(out.shape)                            # (N, OH, OW, F), from "the layer above"
show("dout", dout, "(N, OH, OW, F)")
dZ = dout.reshape(-1, F)
show("dZ = dout.reshape(-1, F)", dZ, "(N*OH*OW, F)")
dW_mat = cols.T @ dZ
show("dW = cols.T @ dZ", dW_mat, "(KH*KW*C, F)")
dw = dW_mat.reshape(KH, KW, C, F)
show("dw = dW.reshape(KH, KW, C, F)", dw, "(KH, KW, C, F), like w")
db = dZ.sum(axis=0)
show("db = dZ.sum(axis=0)", db, "(F,), like b")
dcols = dZ @ W_mat.T
show("dcols = dZ @ W.T", dcols, "(N*OH*OW, KH*KW*C), like cols")
dx = col2im(dcols, x.shape, KH, KW, (1, 1), (0, 0, 0, 0))
show("dx = col2im(dcols)", dx, "(N, H, W, C), like x")

# %% [markdown]
# ## 5. col2im is the adjoint of im2col, not its inverse
#
# col2im sends every entry of a cols-shaped array back to the pixel it was copied from, **adding** where
# several land on the same pixel. So `col2im(im2col(x))` is not `x`: each pixel comes back multiplied by
# the number of windows that cover it. Feeding it ones shows those counts:

# %%
ones = np.ones((1, 6, 6, 1))
counts = col2im(im2col(ones, 3, 3, (1, 1), (0, 0, 0, 0)), ones.shape, 3, 3, (1, 1), (0, 0, 0, 0))
fig, ax = plt.subplots(figsize=(3.6, 3.2))
ax.imshow(counts[0, :, :, 0], cmap="Blues", vmin=0)
for (r, c), v in np.ndenumerate(counts[0, :, :, 0]):
    ax.text(c, r, f"{v:.0f}", ha="center", va="center", color="white" if v > 5 else "black")
ax.set_title("col2im(im2col(ones)), 6x6, 3x3 kernel:\nhow many windows cover each pixel", fontsize=10)
ax.axis("off")
plt.show()

# %% [markdown]
# What col2im *is*: the **transpose** (adjoint) of im2col, viewed as a linear map. For any image $x$
# and any cols-shaped $c$,
#
# $$\langle \text{im2col}(x),\ c \rangle = \langle x,\ \text{col2im}(c) \rangle ,$$
#
# which is precisely the property a backward pass needs: if $\text{cols} = \text{im2col}(x)$, then
# $dx = \text{im2col}^\top(d\text{cols}) = \text{col2im}(d\text{cols})$. A quick numerical test, this
# time with stride 2 and one pixel of zero padding on every side:

# %%
stride, pads = (2, 2), (1, 1, 1, 1)
xs = rng.standard_normal((2, 7, 6, 3))                         # (N, H, W, C)
cs = rng.standard_normal(im2col(xs, 3, 3, stride, pads).shape)  # any cols-shaped array
lhs = np.sum(im2col(xs, 3, 3, stride, pads) * cs)
rhs = np.sum(xs * col2im(cs, xs.shape, 3, 3, stride, pads))
print(f"cols shape {cs.shape}:  <im2col(x), c> = {lhs:.10f}   <x, col2im(c)> = {rhs:.10f}")

# %% [markdown]
# Padding fits the same story: a padded zero is a pixel that exists only in cols, so its gradient is
# simply dropped when col2im crops the padding away.
#
# ## 6. Gradient checks
#
# First our hand-made `dx`, `dw`, `db` against tinycnn's `Conv2D.backward` and against numerical
# gradients of $L = \sum \text{out} \odot \text{dout}$ (its gradient with respect to out is exactly dout,
# so this checks one layer without needing a loss function):

# %%
conv.forward(x, training=True)
dx_layer = conv.backward(dout)

def L():
    return np.sum(conv.forward(x) * dout)

for name, ours, theirs, array in [("dx", dx, dx_layer, x), ("dw", dw, conv.grads["kernel"], conv.params["kernel"]),
                                  ("db", db, conv.grads["bias"], conv.params["bias"])]:
    numeric = numerical_gradient(L, array)
    print(f"{name}: shape {ours.shape!s:<14} vs Conv2D.backward {rel_error(ours, theirs):.1e}, "
          f"vs numerical gradient {rel_error(ours, numeric):.1e}")

# %% [markdown]
# `tinycnn.gradcheck.check_layer` wraps the same test for any layer (it returns the relative error of
# `dx` and of every weight). Here with a 3×2 kernel, stride 2 and "same" padding:

# %%
layer = Conv2D(5, (3, 2), strides=2, padding="same")
errors = check_layer(layer, rng.standard_normal((2, 7, 8, 3)))
print({k: f"{v:.1e}" for k, v in errors.items()})

# %% [markdown]
# ## 7. Exercises: the convolution's forward and backward passes
#
# **Exercise 1.** Write `conv2d_forward` as section 3 did: `im2col`, one matrix product, the bias, a reshape.
# The checker compares it with tinycnn's kernel and with a direct sum over the kernel window.

# %%
# @skeleton conv2d_forward


ex.check_conv2d_forward(conv2d_forward);

# %% [markdown]
# The mistake to avoid: flattening the kernel in another order than `im2col`'s columns, which are
# $(k_h, k_w, c)$. Here the kernel is flattened channel first, as PyTorch lays it out. The checker names the
# order; the picture shows every entry of every sample and channel wrong:

# %%
def conv2d_forward_channels_first(x, w, b, stride, pads):
    KH, KW, C, F = w.shape
    cols = im2col(x, KH, KW, stride, pads)
    out = cols @ w.transpose(2, 0, 1, 3).reshape(-1, F) + b      # (c, kh, kw) order: wrong
    N, OH, OW = x.shape[0], (x.shape[1] + pads[0] + pads[1] - KH) // stride[0] + 1, \
        (x.shape[2] + pads[2] + pads[3] - KW) // stride[1] + 1
    return out.reshape(N, OH, OW, F)

ex.check_conv2d_forward(conv2d_forward_channels_first)

# %% [markdown]
# **Exercise 2.** Write `conv2d_backward` with `im2col`, two matrix products, a sum and `col2im`. The checker
# runs it on two cases, the second with stride 2 and padding, so every argument matters.

# %%
# @skeleton conv2d_backward


ex.check_conv2d_backward(conv2d_backward);

# %% [markdown]
# A typical mistake is to flatten the kernel in the wrong order (`w.reshape(F, -1)` is **not** the transpose of
# `w.reshape(-1, F)`): the shapes all fit, the numbers do not.

# %%
def conv2d_backward_wrong_layout(dout, x, w, stride, pads):
    KH, KW, C, F = w.shape
    cols = im2col(x, KH, KW, stride, pads)
    dZ = dout.reshape(-1, F)
    dcols = dZ @ w.reshape(F, -1)                        # wrong: mixes up filters and taps
    return col2im(dcols, x.shape, KH, KW, stride, pads), (cols.T @ dZ).reshape(w.shape), dZ.sum(axis=0)

ex.check_conv2d_backward(conv2d_backward_wrong_layout);

# %% [markdown]
# Another: the bias's gradient **averaged** over the 30 patches of the first case instead of summed. The bias
# is added to every row of `cols @ W`, so its gradient collects every row:

# %%
def conv2d_backward_mean_bias(dout, x, w, stride, pads):
    KH, KW, C, F = w.shape
    cols = im2col(x, KH, KW, stride, pads)
    dZ = dout.reshape(-1, F)
    dx = col2im(dZ @ w.reshape(-1, F).T, x.shape, KH, KW, stride, pads)
    return dx, (cols.T @ dZ).reshape(w.shape), dZ.mean(axis=0)     # wrong: a mean

ex.check_conv2d_backward(conv2d_backward_mean_bias);
ex.hint("conv2d_backward", level=2);

# %% [markdown]
# **Next:** [03 · Max-pooling, dropout and ReLU](03_pool_dropout_relu.ipynb).
