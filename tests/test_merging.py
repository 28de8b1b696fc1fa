"""The merge layers on arrays: every input's gradient against numerical gradients (float64), forward
and gradients against PyTorch, forward against Keras, the errors, and the config round trip."""
import json
import os

import numpy as np
import pytest

from tinycnn.gradcheck import check_layer
from tinycnn.layers import Add, Average, Concatenate, Layer, Maximum, Minimum, Multiply, Subtract

TOL = 1e-6
ELEMENTWISE = [Add, Subtract, Multiply, Average, Maximum, Minimum]
SHAPE = (2, 3, 4)
CONCAT_CASES = [  # axis (Keras's, counting the batch), input shapes (batch included)
    (-1, [(2, 3, 2), (2, 3, 4), (2, 3, 1)]),
    (1, [(2, 1, 4), (2, 3, 4)]),
    (2, [(2, 2, 3, 1), (2, 2, 2, 1), (2, 2, 1, 1)]),
    (-3, [(2, 2, 3, 2), (2, 1, 3, 2)]),
]


def distinct_inputs(shapes, rng):
    """Inputs with no ties between them and nothing near 0 (ties break Maximum's finite differences)."""
    sizes = [int(np.prod(s)) for s in shapes]
    values = (rng.permutation(sum(sizes)) - sum(sizes) / 2 + 0.5) / sum(sizes) * 4
    return [v.reshape(s) for v, s in zip(np.split(values, np.cumsum(sizes)[:-1]), shapes)]


CASES = ([pytest.param(cls, {}, [SHAPE] * n, id=f"{cls.__name__}-{n}")       # 2 inputs, and 3 but for Subtract
          for cls in ELEMENTWISE for n in ((2,) if cls is Subtract else (2, 3))]
         + [pytest.param(Concatenate, {"axis": axis}, shapes, id=f"Concatenate-axis{axis}-{len(shapes)}")
            for axis, shapes in CONCAT_CASES])


class OneInput(Layer):
    """A built merge as a function of its input i alone, the others held fixed: check_layer checks dL/dx_i."""

    def __init__(self, merge, xs, i):
        super().__init__()
        self.merge, self.xs, self.i = merge, xs, i

    def forward(self, x, training=False):
        xs = list(self.xs)
        xs[self.i] = x
        return self.merge.forward(xs, training=training)

    def backward(self, dout):
        return self.merge.backward(dout)[self.i]


@pytest.mark.parametrize("cls,kwargs,shapes", CASES)
def test_every_input_gradient(rng, cls, kwargs, shapes):
    xs = distinct_inputs(shapes, rng)
    merge = cls(**kwargs)
    merge.build([x.shape[1:] for x in xs])
    dout = rng.standard_normal((shapes[0][0],) + merge.out_shape)
    merge.forward(xs, training=True)
    dxs = merge.backward(dout)
    assert len(dxs) == len(xs) and all(dx.shape == x.shape for dx, x in zip(dxs, xs))
    errors = [check_layer(OneInput(merge, xs, i), xs[i], dout=dout)["x"] for i in range(len(xs))]
    assert max(errors) < TOL, errors


def test_the_lessons_in_numbers():
    a, b, c = np.full((1, 2), 2.0), np.full((1, 2), 3.0), np.full((1, 2), 5.0)
    dout = np.array([[1.0, -2.0]])
    for cls, expected in [(Add, [dout] * 3), (Average, [dout / 3] * 3), (Multiply, [15 * dout, 10 * dout, 6 * dout])]:
        layer = cls()
        layer([a, b, c], training=True)
        for dx, want in zip(layer.backward(dout), expected):
            np.testing.assert_array_equal(dx, want)
    add = Add()
    add([a, b], training=True)
    first, second = add.backward(dout)
    assert first is dout and second is dout                     # Add hands on dout itself, to every input
    sub = Subtract()
    np.testing.assert_array_equal(sub([a, b], training=True), -np.ones((1, 2)))
    np.testing.assert_array_equal(sub.backward(dout)[1], -dout)
    cat = Concatenate(axis=1)
    np.testing.assert_array_equal(cat([a, c], training=True), [[2, 2, 5, 5]])
    pieces = cat.backward(np.array([[1.0, 2.0, 3.0, 4.0]]))
    np.testing.assert_array_equal(pieces[0], [[1, 2]])
    np.testing.assert_array_equal(pieces[1], [[3, 4]])


@pytest.mark.parametrize("cls", [Maximum, Minimum])
def test_a_tie_goes_to_the_first_input(cls):
    a = np.array([[1.0, 2.0, 3.0]])
    b = np.array([[1.0, 0.0, 3.0]]) if cls is Maximum else np.array([[1.0, 4.0, 3.0]])
    layer = cls()
    np.testing.assert_array_equal(layer([a, b, a], training=True), a)
    first, second, third = layer.backward(np.ones((1, 3)))
    np.testing.assert_array_equal(first, [[1, 1, 1]])             # every tie, and its own win
    np.testing.assert_array_equal(second, [[0, 0, 0]])
    np.testing.assert_array_equal(third, [[0, 0, 0]])              # tied with the first: nothing
    torch = pytest.importorskip("torch")
    ta, tb = (torch.tensor(v, requires_grad=True) for v in (a, b))
    op = torch.maximum if cls is Maximum else torch.minimum
    op(ta, tb).sum().backward()
    np.testing.assert_array_equal(ta.grad.numpy(), [[0.5, 1, 0.5]])   # PyTorch shares a tie instead


def torch_merge(torch, cls, kwargs, ts):
    if cls is Add:
        return sum(ts[1:], ts[0])
    if cls is Subtract:
        return ts[0] - ts[1]
    if cls is Multiply:
        out = ts[0]
        for t in ts[1:]:
            out = out * t
        return out
    if cls is Average:
        return torch.stack(ts).mean(dim=0)
    if cls is Maximum:
        return torch.stack(ts).amax(dim=0)
    if cls is Minimum:
        return torch.stack(ts).amin(dim=0)
    return torch.cat(ts, dim=kwargs["axis"])                       # the same axis numbering, batch included


@pytest.mark.parametrize("cls,kwargs,shapes", CASES)
def test_torch_parity(rng, cls, kwargs, shapes):
    torch = pytest.importorskip("torch")
    xs = [rng.standard_normal(s) for s in shapes]
    layer = cls(**kwargs)
    out = layer(xs, training=True)
    dout = rng.standard_normal(out.shape)
    dxs = layer.backward(dout)
    ts = [torch.tensor(x, requires_grad=True) for x in xs]
    expected = torch_merge(torch, cls, kwargs, ts)
    (expected * torch.tensor(dout)).sum().backward()
    np.testing.assert_allclose(out, expected.detach().numpy(), rtol=1e-12, atol=1e-12)
    for dx, t in zip(dxs, ts):
        np.testing.assert_allclose(dx, t.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls,kwargs,shapes", CASES)
def test_keras_parity(rng, cls, kwargs, shapes):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    keras = pytest.importorskip("keras")
    xs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    expected = np.asarray(getattr(keras.layers, cls.__name__)(**kwargs)(xs))
    out = cls(**kwargs)(xs)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cls", ELEMENTWISE)
def test_mismatched_shapes_name_both(cls):
    with pytest.raises(ValueError, match=rf"{cls.__name__} .*one shape.*received "
                                         r"\(None, 8, 8, 16\) and \(None, 8, 8, 32\)"):
        cls()([np.zeros((1, 8, 8, 16)), np.zeros((1, 8, 8, 32))])
    with pytest.raises(ValueError, match=r"does not broadcast"):
        cls()([np.zeros((2, 4)), np.zeros((2, 1))])                # Keras would broadcast; tinycnn refuses


def test_concatenate_shape_errors():
    with pytest.raises(ValueError, match=r"every axis but axis -1; received \(None, 3, 4\) and \(None, 5, 4\)"):
        Concatenate()([np.zeros((1, 3, 4)), np.zeros((1, 5, 4))])
    with pytest.raises(ValueError, match=r"one rank; received \(None, 3, 4\) and \(None, 3\)"):
        Concatenate()([np.zeros((1, 3, 4)), np.zeros((1, 3))])
    with pytest.raises(ValueError, match=r"every axis but axis 1; received \(None, 3, 4\), \(None, 2, 4\) and "
                                         r"\(None, 2, 5\)"):
        Concatenate(axis=1)([np.zeros((1, 3, 4)), np.zeros((1, 2, 4)), np.zeros((1, 2, 5))])


@pytest.mark.parametrize("axis,error,message", [
    (0, ValueError, "axis=0 is the batch axis"),
    (3, ValueError, r"axis=3 does not fit inputs of rank 3.*expected an axis in 1..2 or -2..-1"),
    (-3, ValueError, r"axis=-3 does not fit"),                     # -3 on rank 3 is the batch axis again
    (1.0, TypeError, "axis must be an integer"),
    (True, TypeError, "axis must be an integer"),
    ("-1", TypeError, "axis must be an integer"),
])
def test_bad_axis(axis, error, message):
    with pytest.raises(error, match=message):
        Concatenate(axis=axis)([np.zeros((1, 3, 4)), np.zeros((1, 3, 4))])


@pytest.mark.parametrize("cls", ELEMENTWISE + [Concatenate])
def test_count_and_type_errors(cls):
    x = np.zeros((2, 4))
    with pytest.raises(TypeError, match="at least 2 inputs"):
        cls()([x])
    with pytest.raises(TypeError, match="at least 2 inputs; received ndarray"):
        cls()(x)
    with pytest.raises(ValueError, match=r"(at least|exactly) 2 inputs; received 1: \(None, 4\)"):
        cls().build([(4,)])                                        # the graph builds with a list of shapes
    with pytest.raises(ValueError, match="different batch sizes"):
        cls()([x, np.zeros((3, 4))])
    with pytest.raises(RuntimeError, match="backward\\(\\) called before forward"):
        cls().backward(x)


def test_subtract_takes_exactly_two():
    x = np.zeros((2, 4))
    with pytest.raises(ValueError, match=r"Subtract 'subtract.*' takes a list of exactly 2 inputs; received 3: "
                                         r"\(None, 4\), \(None, 4\) and \(None, 4\)"):
        Subtract()([x, x, x])
    layer = Subtract()
    layer([x, x])
    with pytest.raises(ValueError, match="expects inputs of shapes"):   # built for 2, called with 3
        layer([x, x, x])


def test_built_layer_refuses_other_shapes():
    layer = Add()
    layer([np.zeros((2, 4)), np.zeros((2, 4))])
    with pytest.raises(ValueError, match=r"expects inputs of shapes \(None, 4\), \(None, 4\); received"):
        layer([np.zeros((2, 5)), np.zeros((2, 5))])


@pytest.mark.parametrize("cls,kwargs", [(cls, {}) for cls in ELEMENTWISE] + [(Concatenate, {"axis": 2})])
def test_config_round_trip(cls, kwargs):
    layer = cls(name="merge", **kwargs)
    config = layer.get_config()
    expected = {"name": "merge", "trainable": True, "dtype": "float32", **kwargs}
    assert config == expected and json.loads(json.dumps(config)) == config
    again = cls.from_config(config)
    assert type(again) is cls and again.get_config() == config
    keras_config = {**config, "dtype": {"module": "keras", "class_name": "DTypePolicy",
                                        "config": {"name": "float32"}, "registered_name": None}}
    assert cls.from_config(keras_config).get_config() == config  # Keras's own config is accepted
    assert Concatenate().get_config()["axis"] == -1
    with pytest.raises(TypeError, match="unexpected keyword"):
        cls(mode="sum")
