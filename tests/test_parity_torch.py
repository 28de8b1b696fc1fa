"""Parity with PyTorch 2.13 (CPU, float32): forward values and gradients, layer by layer, then Adam.

tinycnn is NHWC with Keras's kernel layout (KH, KW, C, F); torch is NCHW with (F, C, KH, KW).
TensorFlow's "same" padding puts the odd pixel after (bottom/right), which torch's own
padding= cannot express, so the torch side pads explicitly with F.pad and convolves unpadded.
Gradients on the tinycnn side come from each layer's backward(); on the torch side from autograd.

Tolerance: float32. Both sides sum the same products in different orders, so results agree to a
few units in the last place of the largest terms: rtol = atol = 1e-5 (Adam: 1e-5 on the weights).
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as TF  # noqa: E402

import tinycnn  # noqa: E402
from tinycnn import losses  # noqa: E402
from tinycnn.layers import Activation, Conv2D, Dense, Flatten, MaxPooling2D  # noqa: E402
from tinycnn.layers.base import window_output  # noqa: E402
from tinycnn.models import Sequential  # noqa: E402
from tinycnn.optimizers import Adam  # noqa: E402

pytestmark = pytest.mark.parity
torch.set_num_threads(1)                  # the CI machine has 2 cores, shared
RTOL = ATOL = 1e-5


def close(ours, theirs, rtol=RTOL, atol=ATOL):
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else theirs
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol)


def nchw(a):
    return torch.tensor(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))


def nhwc(t):
    return t.detach().numpy().transpose(0, 2, 3, 1)


def tf_pad(t, size_hw, window, strides, padding, value=0.0):
    """Pad an NCHW tensor the way TensorFlow's "same" does (odd pixel after)."""
    (_, (top, bottom)), (_, (left, right)) = (window_output(size_hw[0], window[0], strides[0], padding),
                                              window_output(size_hw[1], window[1], strides[1], padding))
    return TF.pad(t, (left, right, top, bottom), value=value)


def random(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ----------------------------------------------------------------------------------------
# Conv2D
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("kernel_size, size", [((3, 3), (7, 7)), ((2, 3), (6, 8)), ((5, 4), (9, 6))])
@pytest.mark.parametrize("activation", [None, "relu"])
def test_conv2d(backend, strides, padding, kernel_size, size, activation):
    N, C, F = 2, 3, 4
    layer = Conv2D(F, kernel_size, strides=strides, padding=padding, activation=activation)
    layer.build(size + (C,))
    kernel, bias = random(kernel_size + (C, F), 1), random((F,), 2)
    layer.set_weights([kernel, bias])
    x = random((N,) + size + (C,), 3)

    out = layer.forward(x, training=True)
    dout = random(out.shape, 4)
    dx = layer.backward(dout)

    xt = nchw(x).requires_grad_()
    wt = torch.tensor(kernel.transpose(3, 2, 0, 1).copy(), requires_grad=True)       # (F, C, KH, KW)
    bt = torch.tensor(bias, requires_grad=True)
    outt = TF.conv2d(tf_pad(xt, size, kernel_size, (strides, strides), padding), wt, bt, stride=strides)
    if activation == "relu":
        outt = torch.relu(outt)
    outt.backward(nchw(dout))

    assert out.shape == nhwc(outt).shape
    close(out, nhwc(outt))
    close(dx, nhwc(xt.grad))
    close(layer.grads["kernel"], wt.grad.numpy().transpose(2, 3, 1, 0))
    close(layer.grads["bias"], bt.grad)


# ----------------------------------------------------------------------------------------
# MaxPooling2D
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("pool_size, strides, padding, size", [
    ((2, 2), None, "valid", (8, 8)),
    ((2, 2), None, "valid", (7, 9)),          # the last odd row/column is dropped
    ((3, 3), (2, 2), "valid", (7, 7)),        # overlapping windows: gradients add up
    ((2, 2), (1, 1), "valid", (5, 5)),
    ((2, 2), None, "same", (7, 7)),           # odd pad after
    ((3, 2), (2, 1), "same", (6, 5)),
])
def test_maxpooling2d(backend, pool_size, strides, padding, size):
    N, C = 2, 3
    layer = MaxPooling2D(pool_size, strides=strides, padding=padding)
    layer.build(size + (C,))
    x = random((N,) + size + (C,), 5)
    out = layer.forward(x, training=True)
    dout = random(out.shape, 6)
    dx = layer.backward(dout)

    steps = strides or pool_size
    xt = nchw(x).requires_grad_()
    outt = TF.max_pool2d(tf_pad(xt, size, pool_size, steps, padding, value=-np.inf), pool_size, stride=steps)
    outt.backward(nchw(dout))
    close(out, nhwc(outt), rtol=0, atol=0)        # a max is exact
    close(dx, nhwc(xt.grad))


# ----------------------------------------------------------------------------------------
# Dense, activations, softmax with cross-entropy
# ----------------------------------------------------------------------------------------
TORCH_ACTIVATIONS = {None: lambda z: z, "relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
                     "softmax": lambda z: torch.softmax(z, dim=-1)}


@pytest.mark.parametrize("activation", list(TORCH_ACTIVATIONS))
def test_dense(backend, activation):
    layer = Dense(5, activation=activation)
    layer.build((7,))
    kernel, bias = random((7, 5), 7), random((5,), 8)
    layer.set_weights([kernel, bias])
    x = random((4, 7), 9)
    out = layer.forward(x, training=True)
    dout = random(out.shape, 10)
    dx = layer.backward(dout)

    xt = torch.tensor(x, requires_grad=True)
    wt, bt = torch.tensor(kernel, requires_grad=True), torch.tensor(bias, requires_grad=True)
    outt = TORCH_ACTIVATIONS[activation](xt @ wt + bt)
    outt.backward(torch.tensor(dout))
    close(out, outt)
    close(dx, xt.grad)
    close(layer.grads["kernel"], wt.grad)
    close(layer.grads["bias"], bt.grad)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "softmax"])
def test_activation_layers(backend, activation):
    layer = Activation(activation)
    x = random((3, 2, 2, 4), 11)
    out = layer.forward(x, training=True)
    dout = random(out.shape, 12)
    xt = torch.tensor(x, requires_grad=True)
    outt = TORCH_ACTIVATIONS[activation](xt)
    outt.backward(torch.tensor(dout))
    close(out, outt)
    close(layer.backward(dout), xt.grad)


@pytest.mark.parametrize("sparse", [False, True])
def test_softmax_with_cross_entropy(sparse):
    """tinycnn's fused dL/dz = (p - y) / N against torch's cross_entropy on the logits."""
    N, K = 8, 10
    logits = random((N, K), 13) * 3
    labels = np.random.default_rng(14).integers(0, K, N)
    y = labels if sparse else tinycnn.to_categorical(labels, K)
    loss_fn = losses.get("sparse_categorical_crossentropy" if sparse else "categorical_crossentropy")

    probs = Activation("softmax").forward(logits)
    z = torch.tensor(logits, requires_grad=True)
    loss_t = TF.cross_entropy(z, torch.tensor(labels))
    loss_t.backward()
    assert loss_fn(y, probs) == pytest.approx(loss_t.item(), rel=RTOL)
    close(loss_fn.gradient_logits(y, probs).astype(np.float32), z.grad)
    # and the unfused path, dL/dp then softmax's Jacobian, gives the same dL/dz
    softmax = Activation("softmax")
    softmax.forward(logits, training=True)
    close(softmax.backward(loss_fn.gradient(y, probs).astype(np.float32)), z.grad, rtol=1e-4, atol=1e-6)


def test_a_softmax_model_backpropagates_like_torch(backend):
    """Sequential's fused backward, through Dense and Flatten, against autograd on the same net."""
    model = Sequential([Flatten(input_shape=(3, 3, 2)), Dense(4, activation="softmax")])
    model.compile("sgd", "categorical_crossentropy")
    x, y = random((6, 3, 3, 2), 15), tinycnn.to_categorical([0, 1, 2, 3, 0, 1], 4)
    kernel, bias = model.get_weights()
    plan = model._plan()
    probs = plan.forward(x, training=True)
    plan.backward(model._loss_gradient(y, probs))           # softmax + cross-entropy: (p - y) / N

    wt, bt = torch.tensor(kernel, requires_grad=True), torch.tensor(bias, requires_grad=True)
    z = torch.tensor(x.reshape(6, -1)) @ wt + bt
    TF.cross_entropy(z, torch.tensor([0, 1, 2, 3, 0, 1])).backward()
    close(model.layers[1].grads["kernel"], wt.grad)
    close(model.layers[1].grads["bias"], bt.grad)


# ----------------------------------------------------------------------------------------
# Several Adam steps of a small CNN
# ----------------------------------------------------------------------------------------
class TorchCNN:
    """Conv2D(4, 3, relu) -> MaxPooling2D(2) -> Flatten -> Dense(3, softmax), from tinycnn's weights."""

    def __init__(self, weights):
        kernel, bias, dense_kernel, dense_bias = weights
        self.params = [torch.tensor(kernel.transpose(3, 2, 0, 1).copy(), requires_grad=True),
                       torch.tensor(bias, requires_grad=True),
                       torch.tensor(dense_kernel, requires_grad=True),
                       torch.tensor(dense_bias, requires_grad=True)]

    def logits(self, x):
        w, b, dw, db = self.params
        h = TF.max_pool2d(torch.relu(TF.conv2d(nchw(x), w, b)), 2)            # (N, F, 3, 3)
        h = h.permute(0, 2, 3, 1).reshape(len(x), -1)                        # NHWC order, as Flatten
        return h @ dw + db

    def weights(self):
        w, b, dw, db = (p.detach().numpy() for p in self.params)
        return [w.transpose(2, 3, 1, 0), b, dw, db]


def small_cnn(epsilon):
    model = Sequential([Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1)), MaxPooling2D(2), Flatten(),
                        Dense(3, activation="softmax")])
    model.compile(Adam(0.01, epsilon=epsilon), "categorical_crossentropy")
    return model


def batches(steps=6, n=16):
    rng = np.random.default_rng(16)
    for _ in range(steps):
        yield rng.random((n, 8, 8, 1), dtype=np.float32), rng.integers(0, 3, n)


def test_adam_steps_match_keras_rule_written_with_torch(backend):
    """Keras's Adam (bias correction folded into the step size, eps 1e-7 added to sqrt(v)), by hand."""
    lr, beta_1, beta_2, eps = 0.01, 0.9, 0.999, 1e-7
    model = small_cnn(eps)
    net = TorchCNN(model.get_weights())
    m = [torch.zeros_like(p) for p in net.params]
    v = [torch.zeros_like(p) for p in net.params]
    for t, (x, labels) in enumerate(batches(), start=1):
        loss = model.train_on_batch(x, tinycnn.to_categorical(labels, 3))
        loss_t = TF.cross_entropy(net.logits(x), torch.tensor(labels))
        for p in net.params:
            p.grad = None
        loss_t.backward()
        with torch.no_grad():
            step = lr * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
            for p, m_p, v_p in zip(net.params, m, v):
                m_p.mul_(beta_1).add_(p.grad, alpha=1 - beta_1)
                v_p.mul_(beta_2).addcmul_(p.grad, p.grad, value=1 - beta_2)
                p.sub_(step * m_p / (v_p.sqrt() + eps))
        assert loss == pytest.approx(loss_t.item(), rel=RTOL)
        for ours, theirs in zip(model.get_weights(), net.weights()):
            close(ours, theirs)


def test_adam_steps_match_torch_optim_adam(backend):
    """torch.optim.Adam adds eps to sqrt(v_hat), Keras to sqrt(v): with a tiny eps they coincide."""
    model = small_cnn(1e-12)
    net = TorchCNN(model.get_weights())
    optimizer = torch.optim.Adam(net.params, lr=0.01, betas=(0.9, 0.999), eps=1e-12)
    for x, labels in batches():
        model.train_on_batch(x, tinycnn.to_categorical(labels, 3))
        optimizer.zero_grad()
        TF.cross_entropy(net.logits(x), torch.tensor(labels)).backward()
        optimizer.step()
        for ours, theirs in zip(model.get_weights(), net.weights()):
            close(ours, theirs)
