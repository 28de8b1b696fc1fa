# %% [markdown]
# # 08 · Deep networks: initialisation, vanishing gradients, BatchNorm
#
# Stack more layers and a network should be able to learn more. A plain deep CNN, started the wrong way, learns
# nothing at all: its loss sits at $\ln 10 \approx 2.303$, chance for ten classes. This notebook finds out why,
# with numbers, on a plain CNN of **12 convolutions** (no pooling, no skips) on MNIST digits halved to 14×14:
#
# 1. **forward**: how the size of the activations changes layer by layer, and why the initialiser decides it;
# 2. **backward**: the same for the gradient $dL/dx$ on its way back to the first layer (the vanishing gradient);
# 3. **BatchNormalization**: what it does to both;
# 4. **training**: which of six set-ups learn, how far each step moves each layer's weights (update-to-weight
#    ratios), and the ReLUs that die on the way.
#
# The tools are in `tinycnn.plot`: `record_gradient_norms(model, dx=True)` and `gradient_flow`,
# `activation_histograms` (with the dead-ReLU fractions), `record_update_ratios` and `update_ratios`.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

import tinycnn
from tinycnn import initializers, layers, optimizers, plot
from tinycnn.datasets import mnist

plt.rcParams["figure.dpi"] = 80
print("tinycnn", tinycnn.__version__, "imported from", os.path.relpath(os.path.dirname(tinycnn.__file__)),
      "- backend:", tinycnn.get_backend())

# %% [markdown]
# ## 1. The data and the models
#
# 768 training digits, every second pixel kept (14×14), scaled to $[0, 1]$. Small, so that the whole notebook
# runs in well under a minute; the question here is whether a network learns at all, not how well.
#
# `deep_cnn(init, bn)`: 12 × `Conv2D(8, 3, padding="same")` with ReLU, then global average pooling and a softmax
# `Dense(10)`. `init` is the convolutions' `kernel_initializer`. With `bn=True` every block is
# Conv2D (no bias: BatchNorm's $\beta$ takes its place) → BatchNormalization → ReLU.

# %%
(x_train, y_train), _ = mnist.load_data()
crop = lambda a: (a[:, ::2, ::2, None] / 255.0).astype(np.float32)      # (N, 14, 14, 1)
x, y = crop(x_train[:768]), tinycnn.to_categorical(y_train[:768], 10)
x_batch, y_batch = x[:64], y[:64]                                        # one batch, to look at initialisation
DEPTH = 12

def deep_cnn(init, bn):
    stack = [layers.Input(shape=(14, 14, 1))]
    for _ in range(DEPTH):
        if bn:
            stack += [layers.Conv2D(8, 3, padding="same", use_bias=False, kernel_initializer=init),
                      layers.BatchNormalization(), layers.ReLU()]
        else:
            stack += [layers.Conv2D(8, 3, padding="same", activation="relu", kernel_initializer=init)]
    model = tinycnn.Sequential(stack + [layers.GlobalAveragePooling2D(), layers.Dense(10, activation="softmax")])
    model.compile(optimizer=optimizers.Adam(3e-3), loss="categorical_crossentropy", metrics=["accuracy"])
    return model

INITS = {"normal(0.01)": lambda: initializers.RandomNormal(stddev=0.01),
         "glorot_uniform": lambda: "glorot_uniform",                      # Keras's default
         "he_normal": lambda: "he_normal"}
SETUPS = [(name, bn) for bn in (False, True) for name in INITS]
setup_name = lambda name, bn: name + (" + BN" if bn else "")

def make(name, bn, seed=0):
    tinycnn.utils.clear_session()                     # layer names from conv2d again, in every model
    tinycnn.set_random_seed(seed)
    return deep_cnn(INITS[name](), bn)

convs = lambda model: [l.name for l in model.layers if isinstance(l, layers.Conv2D)]
relus = lambda model: [l.name for l in model.layers if plot.is_relu(l)]    # the layers that end in a ReLU
print(f"plain: {len(make('he_normal', False).layers)} layers, with BN: {len(make('he_normal', True).layers)} layers")

# %% [markdown]
# ## 2. Forward: the size of the activations, layer by layer
#
# One convolution output is a sum over its $n_\text{in} = 3 \cdot 3 \cdot 8 = 72$ inputs (9 for the first layer):
# $z = \sum_k w_k x_k$. With independent weights of mean 0 and variance $\sigma_w^2$,
#
# $$E[z^2] = n_\text{in}\, \sigma_w^2\, E[x^2], \qquad \text{and after ReLU}\quad E[\text{relu}(z)^2] = \tfrac12 E[z^2],$$
#
# since ReLU keeps half of a symmetric $z$. So every layer multiplies the root-mean-square (RMS) of the
# activations by
#
# $$g = \sqrt{n_\text{in}\,\sigma_w^2 / 2}.$$
#
# | initialiser | $\sigma_w^2$ | $g$ at $n_\text{in} = n_\text{out} = 72$ | after 11 layers, $g^{11}$ |
# |---|---|---|---|
# | `RandomNormal(stddev=0.01)` | $10^{-4}$ | 0.06 | $4 \cdot 10^{-14}$ |
# | `glorot_uniform` (Keras's default) | $2/(n_\text{in} + n_\text{out})$ | $\sqrt{1/2} = 0.71$ | 0.02 |
# | `he_normal` (He et al., 2015) | $2/n_\text{in}$ | 1 | 1 |
#
# He's initialiser is the one designed for ReLU: it doubles the variance to make up for the half that ReLU
# throws away. The measurement, on a batch of 64 at initialisation (training mode, so that BatchNorm uses the
# batch's statistics):

# %%
def rms_per_layer(model):
    """RMS of each ReLU layer's output over the batch, first layer first."""
    return [float(np.sqrt(np.mean(np.square(out, dtype=np.float64))))
            for label, layer, out in plot.activations(model, x_batch, training=True) if plot.is_relu(layer)]

predicted = {"normal(0.01)": np.sqrt(72 * 1e-4 / 2), "glorot_uniform": np.sqrt(72 * 2 / 144 / 2),
             "he_normal": 1.0}
rms = {}
print(f"{'set-up':<22} {'RMS layer 1':>12} {'layer 12':>10}   per-layer factor g: measured  predicted")
for name, bn in SETUPS:
    r = rms[name, bn] = rms_per_layer(make(name, bn))
    g = (r[-1] / r[1]) ** (1 / (DEPTH - 2))             # geometric mean over layers 2..12 (n_in = 72)
    print(f"{setup_name(name, bn):<22} {r[0]:>12.2e} {r[-1]:>10.2e}   {g:>26.3f}  "
          f"{predicted[name] if not bn else 1.0:>9.3f}" + ("   (BN: each layer renormalised)" if bn else ""))

# %% [markdown]
# The measured factors are close to the predictions. He's is the furthest off, 0.86 for 1: at the borders of a
# "same" convolution some of the 72 inputs are zero padding (on 14×14 maps, about 9% of them), and with only
# 8 filters per layer each layer's own factor varies randomly around the expected one. With `normal(0.01)` the signal that reaches layer 12 is $10^{-14}$
# of the first layer's: the last layers see numerical dust. With Glorot it still fades, by 0.7 per layer; with
# He it keeps its size. With **BatchNorm** the initialiser no longer matters: every layer's output is
# renormalised to mean 0 and variance 1 per channel before the ReLU, whatever the weights' scale, so each
# ReLU output has RMS $\approx \sqrt{1/2} = 0.71$.
#
# The same as histograms, for four of the twelve layers (`plot.activation_histograms`: the title gives the mean,
# the standard deviation and the fraction of **dead** units, those that output 0 for every digit of the batch).
# First `normal(0.01)`, then `he_normal`:

# %%
for name in ("normal(0.01)", "he_normal"):
    model = make(name, False)
    shown = [relus(model)[i] for i in (0, 3, 7, 11)]
    fig, dead = plot.activation_histograms(model, x_batch, training=True, layers=shown)
    fig.suptitle(f"{name}: activations at initialisation, layers 1, 4, 8, 12")
    plt.show()
    print(f"{name}: dead-ReLU fraction per layer at initialisation:",
          " ".join(f"{v:.2f}" for v in plot.dead_relu_fractions(model, x_batch, training=True).values()))

# %% [markdown]
# (Note the x axes: with `normal(0.01)` the values at layer 12 are of order $10^{-16}$.) At initialisation few
# units are dead in either. The 0.2 of layer 1 are mostly the positions on the digits' blank border, where every
# input is 0 and so is the output (the biases start at 0); a unit counts as dead when it is not positive for
# any digit of the batch.
#
# ## 3. Backward: the gradient on its way to the first layer
#
# Backward, each convolution sends back $dx = \text{col2im}(dz\,W^\top)$ (notebook 02): a sum over its
# $n_\text{out} = 72$ outputs, and ReLU passes half of the gradients on. The same argument gives the same factor
# $g = \sqrt{n_\text{out}\,\sigma_w^2/2}$ per layer, now for $\lVert dL/dx\rVert$, from the last layer down to the first.
#
# `plot.record_gradient_norms(model, dx=True)` records, for every layer, the norm of the gradient its backward
# returns for its input. One training step per set-up, at initialisation:

# %%
def dx_at_init(name, bn):
    model = make(name, bn)
    with plot.record_gradient_norms(model, dx=True) as norms:
        model.train_on_batch(x_batch, y_batch)
    return [norms.dx[c][0] for c in convs(model)]     # ||dL/d(input of conv k)||, k = 1..12

dx0 = {(name, bn): dx_at_init(name, bn) for name, bn in SETUPS}
print(f"{'set-up':<22} {'||dL/dx|| at conv 12':>20} {'at conv 1':>10} {'conv 1 / conv 12':>17}")
for name, bn in SETUPS:
    d = dx0[name, bn]
    print(f"{setup_name(name, bn):<22} {d[-1]:>20.2e} {d[0]:>10.2e} {d[0] / d[-1]:>17.1e}")

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.2))
for (name, bn), color in zip(SETUPS, ["C3", "C1", "C0"] * 2):
    style = dict(color=color, marker="o", markersize=3, linestyle="--" if bn else "-", label=setup_name(name, bn))
    left.plot(range(1, DEPTH + 1), rms[name, bn], **style)
    right.plot(range(1, DEPTH + 1), dx0[name, bn], **style)
left.set(yscale="log", xlabel="layer", ylabel="RMS of the ReLU output", title="forward: activations")
right.set(yscale="log", xlabel="conv layer (its input's gradient)", ylabel="||dL/dx||",
          title="backward: dL/dx, from the loss (right) to the input (left)")
for ax in (left, right):
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# The backward pass mirrors the forward one. With `normal(0.01)` the gradient reaching the first layer is about
# $10^{-14}$ of the one at the last: the first layers will never learn (**vanishing gradients**). Glorot loses
# a factor of about 20 over the twelve layers; He keeps the gradient within a factor of about 2.
#
# With **BatchNorm** the gradient does not vanish under any of the three initialisers; it even grows toward the
# input. BatchNorm's backward contains $\gamma/\sqrt{\sigma^2_B + \epsilon}$ (notebook 03 of the exercises:
# `batchnorm_backward`): it divides by the batch's standard deviation of its input. Small weights give a small
# input, so a small $\sigma_B$, and the division gives back what the small weights took away, in the
# backward pass exactly as in the forward.
#
# ## 4. Training: who learns?
#
# Now the six set-ups train for 3 epochs (36 steps of Adam, learning rate 3e-3, batches of 64), with three
# recorders on: the weight-gradient norms and $dL/dx$ (`record_gradient_norms(dx=True)`) and the
# update-to-weight ratios (`record_update_ratios`: $\lVert w_\text{after} - w_\text{before}\rVert / \lVert w_\text{before}\rVert$
# for each layer at each step).

# %%
runs = {}
for name, bn in SETUPS:
    model = make(name, bn)
    with plot.record_gradient_norms(model, dx=True) as norms, plot.record_update_ratios(model) as ratios:
        history = model.fit(x, y, batch_size=64, epochs=3, verbose=0)
    runs[name, bn] = dict(model=model, norms=norms, ratios=ratios, loss=history.history["loss"],
                          accuracy=history.history["accuracy"])

print(f"{'set-up':<22} {'loss, epoch 1 -> 3':>20} {'accuracy, epoch 3':>18} {'update ratio: conv 1':>21} "
      f"{'conv 12':>8}")
for name, bn in SETUPS:
    run = runs[name, bn]
    c = convs(run["model"])
    print(f"{setup_name(name, bn):<22} {run['loss'][0]:>9.3f} -> {run['loss'][-1]:.3f} {run['accuracy'][-1]:>18.3f} "
          f"{np.median(run['ratios'][c[0]]):>21.1e} {np.median(run['ratios'][c[-1]]):>8.1e}")
first = runs["normal(0.01)", False]
print(f"normal(0.01), plain: ||dL/dW|| of conv 1 at step 1 {first['norms'][convs(first['model'])[0]][0]:.1e}, "
      f"of conv 12 {first['norms'][convs(first['model'])[-1]][0]:.1e}")
print("(loss and accuracy: the mean over each epoch's batches, in training mode; chance: loss 2.303, accuracy 0.1."
      "\n update ratios: the median over the 36 steps)")

# %% [markdown]
# * **`normal(0.01)`, plain, does not learn at all**: its loss stays at 2.30 and its accuracy near chance.
#   Its first convolution's weights move by about $10^{-12}$ of their size per step, which is nothing: Adam divides
#   each gradient by its own running size, but the first layer's gradient is far below Adam's $\epsilon = 10^{-7}$.
# * **Glorot, plain**, does not learn in 36 steps either, although Adam moves its first layer as much as its
#   last; **He, plain**, starts to learn.
# * **With BatchNorm all three learn**, and faster than any plain network, whatever the initialiser.
#
# The rule of thumb for the update-to-weight ratio is about $10^{-3}$ per step: much smaller and a layer learns
# slowly, much larger and every step rewrites it. Every layer over training, for the worst and one of the best
# set-ups (`plot.update_ratios`, the dashed line at $10^{-3}$):

# %%
for key in (("normal(0.01)", False), ("he_normal", True)):
    fig = plot.update_ratios(runs[key]["ratios"], figsize=(9, 3.4))
    fig.axes[0].set_title(f"{setup_name(*key)}: update-to-weight ratio of every layer, 36 steps")
    plt.show()
    c = convs(runs[key]["model"])
    print(f"{setup_name(*key)}: median update ratio of conv 1 .. 12:",
          " ".join(f"{np.median(runs[key]['ratios'][name]):.0e}" for name in c))

# %% [markdown]
# In the plain `normal(0.01)` network the first convolutions lie many orders of magnitude below the guide, the
# last ones above it: only the top of the network moves, and it cannot learn, since what reaches it from below is
# dust. With He and BatchNorm every layer moves by about $10^{-3}$ to $10^{-2}$ per step.
#
# `plot.gradient_flow` shows the recorded gradients over the whole run: on the left each layer's
# weight-gradient norm per step, on the right $dL/dx$ per layer at the first and the last step. For He, plain:

# %%
fig = plot.gradient_flow(runs["he_normal", False]["norms"], figsize=(14, 4))
plt.show()
names, first, last = plot.dx_profile(runs["he_normal", False]["norms"].dx)
top = names.index(convs(runs["he_normal", False]["model"])[-1])
print(f"he_normal, plain: ||dL/dx|| of the first conv layer / of the last, step 1: {first[0] / first[top]:.2f}, "
      f"step 36: {last[0] / last[top]:.2f}")

# %% [markdown]
# At the first step the gradient loses about half of its size on the way down (section 3); 36 steps later it
# arrives at the first layer 7 times larger than it left the last one: training has changed the weights, and with
# them each layer's factor.

# %% [markdown]
# ## 5. Dead ReLUs
#
# A ReLU unit that outputs 0 for every input passes back no gradient ($\text{relu}'(z) = 0$ for $z < 0$), so the
# weights that feed it get no gradient through it, and it may never come back: a **dead ReLU**. A few percent are
# normal. The fractions per layer after training, measured on 256 training digits (`plot.dead_relu_fractions`):

# %%
print(f"{'set-up':<22} dead-ReLU fraction per layer after training (layer 1 .. 12)          mean")
for name, bn in SETUPS:
    dead = plot.dead_relu_fractions(runs[name, bn]["model"], x[:256], training=True)
    print(f"{setup_name(name, bn):<22} {' '.join(f'{v:.2f}' for v in dead.values())}   {np.mean(list(dead.values())):.2f}")

# %% [markdown]
# In the plain `normal(0.01)` network whole upper layers die (four of them at 1.00), in the Glorot one half
# or more of each of the top five layers; He keeps 6% dead on average, and BatchNorm 2-4%. Where the signal has shrunk, a unit's pre-activation $z = w\cdot x + b$
# is mostly its bias $b$: once a few updates push $b$ below 0, $z < 0$ for every input, and no gradient comes
# back to pull it up. With BatchNorm this hardly happens: every channel's pre-activation is recentred to mean 0
# over the batch, so about half of its values stay positive. The histograms of the plain Glorot network (red: more than half the units of that layer dead) and
# of the same network with BatchNorm:

# %%
for key in (("glorot_uniform", False), ("glorot_uniform", True)):
    model = runs[key]["model"]
    shown = [relus(model)[i] for i in (0, 3, 7, 11)]
    fig, dead = plot.activation_histograms(model, x[:256], training=True, layers=shown)
    fig.suptitle(f"{setup_name(*key)}: activations after 36 steps, layers 1, 4, 8, 12")
    plt.show()

# %% [markdown]
# **What to remember**
# * In a deep plain network the activations and the gradients are multiplied by about the same factor per layer,
#   $\sqrt{n\,\sigma_w^2/2}$ for ReLU. Below 1 they vanish exponentially with depth, above 1 they explode.
# * He initialisation ($\sigma_w^2 = 2/n_\text{in}$) makes the factor 1 for ReLU networks; Keras's default, Glorot,
#   is made for tanh-like activations and loses $\sqrt 2$ per ReLU layer.
# * BatchNorm renormalises every layer, so the factor is 1 whatever the initialiser, and fewer ReLUs die.
# * The other cure is a path with no factor at all: skip connections (notebook 06).
#
# **Back to the start:** [01 · Dense and softmax-cross-entropy](01_dense_softmax_backprop.ipynb).
