# %% [markdown]
# # 04 · The seed tutorial on tinycnn: a CNN for MNIST, and a look inside it
#
# This is the classic Keras MNIST tutorial (two convolutions, two max-pools, dropout, two Dense
# layers), run on tinycnn with only the imports changed, with batches of 128. The tutorial trains for 5
# epochs and lands at about 0.990; we train for 7, which takes the test accuracy safely past 0.99.
#
# Then we open the model up:
# * the filters the first convolution learned;
# * one digit on its way through every layer;
# * a confusion matrix, and the digits the model got wrong while being most sure of itself;
# * the size of every layer's gradient over the whole training run (the "gradient flow").
#
# Training uses the **Numba** backend (compiled kernels: about 6-9 s per epoch on an otherwise idle
# 2-core machine, longer when other programs compete for the cores). The NumPy backend computes the same
# thing, only slower: see notebook 05.

# %%
import os
import time

import matplotlib.pyplot as plt
import numpy as np

import tinycnn
from tinycnn import exercises as ex
from tinycnn import plot, seed

plt.rcParams["figure.dpi"] = 80
tinycnn.set_backend("numba")
tinycnn.set_random_seed(0)          # same initial weights, dropout masks and batch order on every run
print("tinycnn", tinycnn.__version__, "imported from", os.path.relpath(os.path.dirname(tinycnn.__file__)),
      "- backend:", tinycnn.get_backend())

# %% [markdown]
# ## 1. The data
#
# MNIST ships inside tinycnn (nothing is downloaded). `seed.prepare_mnist()` does the tutorial's
# preprocessing: pixels scaled to $[0, 1]$ as float32, a channel axis added (NHWC), labels one-hot encoded.

# %%
(x_train, y_train), (x_test, y_test) = seed.prepare_mnist()
print(f"Processed training data shape: {x_train.shape}")
print(f"Processed training labels shape: {y_train.shape}")
print(f"Test data shape: {x_test.shape}")

fig, axes = plt.subplots(1, 10, figsize=(10, 1.4))
for ax, image, label in zip(axes, x_train, y_train):
    ax.imshow(image[:, :, 0], cmap="gray_r")
    ax.set_title(int(label.argmax()))
    ax.axis("off")
plt.show()

# %% [markdown]
# ## 2. The model
#
# `seed.build_model()` is the tutorial's `Sequential([...])`, written with `tinycnn.layers`. The summary has
# Keras's columns. Where the parameter counts come from:
# * `conv2d`: 32 filters of 3×3×1 weights plus 32 biases = 320;
# * `conv2d_1`: 64 filters of 3×3×32 plus 64 biases = 18,496;
# * `dense`: 1600 inputs × 128 units plus 128 biases = 204,928 (the bulk of the model);
# * `dense_1`: 128 × 10 + 10 = 1,290.

# %%
model = seed.build_model()
model.summary()

# %% [markdown]
# ## 3. What `optimizer="adam"` does with the gradients
#
# After every backward pass, each weight array $p$ has its gradient $g$. Plain gradient descent would step
# $p \leftarrow p - \eta\, g$. Adam keeps two running averages per weight: $m$, of the gradient (a momentum
# that smooths the noise of mini-batches), and $v$, of the squared gradient (a per-weight scale). The step
# is $m / \sqrt{v}$, so every weight moves by roughly the learning rate, whatever the size of its gradient.
# Both averages start at 0 and would be too small during the first steps; the factors $1 - \beta^t$ correct
# for that. Keras folds the correction into the step size, and tinycnn does the same:
#
# $$m \leftarrow \beta_1 m + (1 - \beta_1)\, g \qquad v \leftarrow \beta_2 v + (1 - \beta_2)\, g^2 \qquad
# p \leftarrow p - \eta\,\frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t}\;\frac{m}{\sqrt{v} + \epsilon}$$
#
# with Keras's defaults $\eta = 0.001$, $\beta_1 = 0.9$, $\beta_2 = 0.999$, $\epsilon = 10^{-7}$.
#
# **Exercise.** Write one Adam step. The checker runs four steps in a row and compares each one with
# tinycnn's own Adam kernel.

# %%
# @skeleton adam_step


ex.check_adam_step(adam_step);

# %% [markdown]
# ## 4. Training
#
# `compile` and `fit` as in the tutorial: epochs of 469 batches of 128 images, with the test set as
# validation data. The progress bar redraws in place while it runs.
#
# The tutorial stops after 5 epochs, at a test accuracy of about 0.990: Keras on this kind of machine
# gave 0.9900, and tinycnn gives 0.989 to 0.991 depending on the seed, so the fourth decimal is luck.
# We train 7 epochs, so that the accuracy clears 0.99 with room to spare; the 5-epoch figure is still
# in the history, and printed below for comparison with the tutorial.
#
# One addition: `plot.record_gradient_norms(model)` notes every layer's gradient norm right after each
# backward pass (backward overwrites the gradients on every step, so they must be read at once). It changes
# nothing in the training; we will plot what it recorded in section 9.

# %%
model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])

start = time.perf_counter()
with plot.record_gradient_norms(model) as grad_norms:
    history = model.fit(x_train, y_train, epochs=7, batch_size=128,
                        validation_data=(x_test, y_test), verbose=1)
train_seconds = time.perf_counter() - start
print(f"Training took {train_seconds:.0f} s ({train_seconds / 7:.1f} s per epoch, validation and JIT compilation included)")

# %% [markdown]
# ## 5. Test accuracy and the history plot
#
# The cell below **fails** if the test accuracy is under 0.99, so the notebook's automatic run in CI would catch
# a regression in any layer, kernel or the optimizer.

# %%
test_loss, test_accuracy = model.evaluate(x_test, y_test, verbose=0)
print(f"Test Loss: {test_loss:.4f}")
print(f"Test Accuracy: {test_accuracy:.4f}")
print(f"After the tutorial's 5 epochs: {history.history['val_accuracy'][4]:.4f} (the tutorial's Keras run: 0.9906)")
assert history.history["val_accuracy"][4] >= 0.988, "after 5 epochs tinycnn should be at Keras's level"
assert test_accuracy >= 0.99, f"test accuracy {test_accuracy:.4f} is below 0.99"

# %%
plot.history(history)
plt.show()

# %% [markdown]
# The validation accuracy is *higher* than the training accuracy during the early epochs. That is not a
# bug: the training numbers are measured with dropout switched on (a handicapped network) and averaged over
# an epoch during which the weights kept improving, while validation runs at the end of the epoch with dropout off.
#
# Predictions for the first five test images, as the tutorial shows them:

# %%
probs = model.predict(x_test, batch_size=500, verbose=0)         # (10000, 10) probabilities
predicted, actual = probs.argmax(axis=1), y_test.argmax(axis=1)
print("Predictions vs Actual:")
for i in range(5):
    print(f"Sample {i + 1}: Predicted={predicted[i]}, Actual={actual[i]}")

# %% [markdown]
# ## 6. What the first layer learned
#
# Each of `conv2d`'s 32 filters is a 3×3 pattern of weights. Red weights respond to ink, blue weights to
# background; many filters turned into small edge detectors (a red side next to a blue side) at various angles.

# %%
plot.filters(model.layers[0], ncols=16)
plt.show()

# %% [markdown]
# ## 7. One digit through every layer
#
# Below, the first test image and what each layer outputs for it (the first 8 channels of each
# image-shaped output). Watch the maps get **smaller and more abstract**: after `conv2d` they still look like
# strokes of the digit; after the second max-pool they are 5×5 maps that say *where* certain features are, not
# what the digit looks like. The last rows are the 128 numbers of the Dense layer and the 10 probabilities.

# %%
plot.feature_maps(model, x_test[0], max_maps=8)
plt.show()

# %% [markdown]
# ## 8. Where the model is wrong
#
# The confusion matrix counts, for every true class (row), how often each class was predicted (column). The
# diagonal holds the correct answers; the colour scale is logarithmic so that the rare mistakes stay visible.

# %%
plot.confusion_matrix(y_test, probs)
plt.show()

counts = plot.confusion_counts(y_test, probs)
off_diagonal = counts - np.diag(np.diag(counts))
true_class, said = np.unravel_index(off_diagonal.argmax(), counts.shape)
print(f"{counts.sum() - np.trace(counts)} mistakes; the most common: a {true_class} taken for a {said} "
      f"({off_diagonal.max()} times)")

# %% [markdown]
# The mistakes the model made **with the highest confidence**. Several are digits a human would hesitate
# over too; some have a label that looks doubtful.

# %%
plot.misclassified(x_test, y_test, probs, n=10)
plt.show()

# %% [markdown]
# ## 9. Gradient flow: the size of each layer's gradient during training
#
# For every training step, `grad_norms` holds each layer's gradient norm: the square root of the sum of the
# squares of all its weight gradients. Plotted over the 7 epochs (averaged over 25 steps to calm the noise):

# %%
steps_per_epoch = history.params["steps"]
print({name: len(values) for name, values in grad_norms.items()}, "steps recorded per layer")
plot.gradient_flow(grad_norms, steps_per_epoch=steps_per_epoch, smooth=25)
plt.show()

# %% [markdown]
# How to read it:
# * Every line stays within a modest range: no layer's gradient vanishes (a line falling towards 0 would
#   mean a layer that stopped learning) and none explodes.
# * The norms shrink during the first part of training as the loss drops (the loss's gradient is
#   $(p - y)/N$, small when $p$ is close to $y$), then level off: mini-batch noise keeps them from reaching 0.
# * The layers differ in size: a norm sums over all of a layer's weights, so big layers tend to have bigger norms.
#   Adam does not mind: it scales each weight's step by its own running gradient size.

# %%
first, last = steps_per_epoch, slice(-steps_per_epoch, None)
for name, values in grad_norms.items():
    values = np.asarray(values)
    print(f"{name:<10} mean gradient norm: first epoch {values[:first].mean():.4f}, last epoch {values[last].mean():.4f}")

# %% [markdown]
# **Next:** [05 · Speed: im2col, where the time goes, NumPy vs Numba vs Keras](05_speed.ipynb).
