"""Numerical gradient checks: does backward() agree with the slope of forward()?

Central differences, in float64:  df/dx_i ~ (f(x + h e_i) - f(x - h e_i)) / 2h.
To check one layer without a loss, use the scalar L = sum(forward(x) * dout) for a random
dout: its gradient with respect to x is exactly what backward(dout) must return.

    errors = check_layer(Conv2D(4, 3), x)      # {"x": 3e-10, "kernel": 2e-10, "bias": 1e-11}
    assert max(errors.values()) < 1e-6

The checks run on the NumPy reference kernels, the definition of every layer; the fast backend
is held to the reference separately (tests/test_backends.py, tests/test_plans.py).
"""
import numpy as np

from . import backend
from .plans import ReferencePlan


def rel_error(a, b):
    """max |a - b| / max(1e-8, |a| + |b|), elementwise: ~1e-7 or less means the same numbers."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def numerical_gradient(f, x, h=1e-5):
    """d f(x) / dx for a scalar function f, one element of x at a time (x is modified and restored)."""
    grad = np.zeros_like(x, dtype=np.float64)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        f_plus = f()
        x[i] = old - h
        f_minus = f()
        x[i] = old
        grad[i] = (f_plus - f_minus) / (2 * h)
    return grad


def to_float64(layer):
    """Make a built layer compute in float64 (training runs in float32; checks need float64)."""
    for key in layer.params:
        layer.params[key] = layer.params[key].astype(np.float64)
    return layer


def check_layer(layer, x, dout=None, seed=0, h=1e-5, training=True):
    """Relative errors between backward() and numerical gradients, for x and every parameter.

    Returns {"x": err, "kernel": err, ...}. `layer` is built on x if needed and switched to
    float64. Dropout must have a fixed seed (its mask is redrawn on every forward otherwise).
    """
    with backend.using("numpy"):
        return _check_layer(layer, x, dout, seed, h, training)


def _check_layer(layer, x, dout, seed, h, training):
    x = np.array(x, dtype=np.float64)
    if not layer.built:
        layer.build(x.shape[1:])
    to_float64(layer)
    out = layer.forward(x, training=training)
    if dout is None:
        dout = np.random.default_rng(seed).standard_normal(out.shape)

    def loss():
        reseed(layer)
        return float(np.sum(layer.forward(x, training=training) * dout))

    reseed(layer)
    layer.forward(x, training=training)
    dx = layer.backward(dout)
    analytic = {"x": dx, **{k: g.copy() for k, g in layer.grads.items()}}
    numeric = {"x": numerical_gradient(loss, x, h)}
    for key in layer.grads:                           # trainable weights: moving statistics have no gradient
        numeric[key] = numerical_gradient(loss, layer.params[key], h)
    return {k: rel_error(analytic[k], numeric[k]) for k in analytic}


def reseed(layer):
    """Give a seeded Dropout the same mask on every forward, so finite differences are valid."""
    if getattr(layer, "seed", None) is not None:
        layer.generator = np.random.default_rng(layer.seed)


def check_model(model, x, y, h=1e-5):
    """Relative error of every parameter gradient of a compiled Sequential on one batch (float64).

    Dropout layers should have seeds. Returns {"conv2d.kernel": err, ...}.
    """
    with backend.using("numpy"):
        return _check_model(model, x, y, h)


def _check_model(model, x, y, h):
    x = np.asarray(x, dtype=np.float64)
    plan = ReferencePlan(model.layers)
    for layer in model.layers:
        to_float64(layer)

    def loss():
        for layer in model.layers:
            reseed(layer)
        return model.loss(y, plan.forward(x, training=True))

    for layer in model.layers:
        reseed(layer)
    probs = plan.forward(x, training=True)            # the same dropout masks as every loss() call
    plan.backward(model._loss_gradient(y, probs))
    errors = {}
    for layer in model.layers:
        for key in layer.grads:                       # trainable weights: moving statistics have no gradient
            analytic = layer.grads[key].copy()
            errors[f"{layer.name}.{key}"] = rel_error(analytic, numerical_gradient(loss, layer.params[key], h))
    return errors
