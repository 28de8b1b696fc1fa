"""Merge layers: several inputs in, one output out (Keras's Add, Subtract, Multiply, Average,
Maximum, Minimum, Concatenate), for the functional API. None has weights.

Each input x_i gets its own gradient dx_i = dL/dx_i = dout * d(out)/d(x_i):

Add          out = x_1 + ... + x_n          dx_i = dout             the SAME gradient to every input
Subtract     out = x_1 - x_2                dx_1 = dout, dx_2 = -dout
Multiply     out = x_1 * ... * x_n          dx_i = dout * prod_{j != i} x_j   (the product of the others)
Average      out = (x_1 + ... + x_n) / n    dx_i = dout / n
Maximum      out = max_i x_i                dx_i = dout where x_i won, 0 elsewhere
Minimum      out = min_i x_i                dx_i = dout where x_i won, 0 elsewhere
Concatenate  out = [x_1 | ... | x_n]        dx_i = the slice of dout that x_i filled (dout split back along axis)

A tie in Maximum/Minimum goes wholly to the first input that holds the winning value, as
TensorFlow's gradient does (and so Keras on TensorFlow, and tinycnn's MaxPooling2D); PyTorch's
torch.maximum/minimum share a tie equally between its two arguments instead (1/2 each, so a
three-way tie through two calls gets 1/4, 1/4, 1/2).

Unlike Keras, tinycnn does not broadcast: the elementwise merges need inputs of one shape, and
every merge takes at least 2 inputs (Keras passes a single input through). Concatenate's axis
counts the batch axis, as in Keras (-1: the last, 1: the first after the batch); the batch
axis itself (0) is refused.
"""
from functools import reduce

import numpy as np

from .base import Layer, shape_str


def shapes_str(shapes):
    """[(8, 16), (8, 32)] -> '(None, 8, 16) and (None, 8, 32)', Keras's way of printing shapes."""
    printed = [shape_str(s) for s in shapes]
    return ", ".join(printed[:-1]) + " and " + printed[-1] if len(printed) > 1 else "".join(printed)


class Merge(Layer):
    """The base of the merge layers: a list of inputs (N, ...) of one shape, one output (N, ...)."""
    multi_input = True
    exactly = None           # Subtract: 2; the others take 2 or more

    def check_count(self, input_shapes):
        n, wanted = len(input_shapes), self.exactly
        if (wanted is not None and n != wanted) or n < 2:
            expected = f"exactly {wanted}" if wanted is not None else "at least 2"
            raise ValueError(f"{self} takes a list of {expected} inputs; received {n}"
                             + (f": {shapes_str(input_shapes)}" if n else ""))

    def compute_output_shape(self, input_shapes):
        self.check_count(input_shapes)
        if any(tuple(s) != tuple(input_shapes[0]) for s in input_shapes):
            raise ValueError(f"{self} needs inputs of one shape (tinycnn does not broadcast); "
                             f"received {shapes_str(input_shapes)}")
        return tuple(input_shapes[0])

    def check_input(self, xs):
        super().check_input(xs)
        if len({len(x) for x in xs}) > 1:
            raise ValueError(f"{self} cannot merge inputs of different batch sizes; received shapes "
                             f"{', '.join(str(x.shape) for x in xs)}")


class Add(Merge):
    """out = x_1 + ... + x_n, elementwise; every input gets dout itself."""

    def forward(self, xs, training=False):
        """xs: n arrays (N, ...) -> out (N, ...)."""
        self.cache = len(xs) if training else None
        return reduce(np.add, xs)                          # (N, ...)

    def backward(self, dout):
        """dout (N, ...) -> [dx_1, ..., dx_n], each (N, ...): d(sum)/dx_i = 1."""
        return [dout] * self.cached()


class Subtract(Merge):
    """out = x_1 - x_2, elementwise (exactly 2 inputs)."""
    exactly = 2

    def forward(self, xs, training=False):
        """[x_1, x_2], each (N, ...) -> out (N, ...)."""
        self.cache = True if training else None
        return xs[0] - xs[1]                               # (N, ...)

    def backward(self, dout):
        """dout (N, ...) -> [dout, -dout]."""
        self.cached()
        return [dout, -dout]


class Multiply(Merge):
    """out = x_1 * ... * x_n, elementwise; each input gets dout times the product of the others."""

    def forward(self, xs, training=False):
        """xs: n arrays (N, ...) -> out (N, ...)."""
        self.cache = list(xs) if training else None
        return reduce(np.multiply, xs)                     # (N, ...)

    def backward(self, dout):
        """dout (N, ...) -> [dx_1, ..., dx_n], dx_i = dout * prod_{j != i} x_j (N, ...)."""
        xs = self.cached()
        # the others' product itself, not out / x_i: that would divide by zero where x_i = 0
        return [reduce(np.multiply, [x for j, x in enumerate(xs) if j != i], dout) for i in range(len(xs))]


class Average(Merge):
    """out = (x_1 + ... + x_n) / n, elementwise; every input gets dout / n."""

    def forward(self, xs, training=False):
        """xs: n arrays (N, ...) -> out (N, ...)."""
        self.cache = len(xs) if training else None
        return reduce(np.add, xs) / len(xs)                # (N, ...)

    def backward(self, dout):
        """dout (N, ...) -> [dout / n] * n."""
        n = self.cached()
        return [dout / n] * n


class Maximum(Merge):
    """out = the largest x_i, elementwise; dout goes to the input that won (a tie: the first)."""
    pick = staticmethod(np.argmax)                         # argmax/argmin return the FIRST winner

    def forward(self, xs, training=False):
        """xs: n arrays (N, ...) -> out (N, ...)."""
        stacked = np.stack(xs)                             # (n, N, ...)
        winner = self.pick(stacked, axis=0)                # (N, ...) which input won, 0..n-1
        self.cache = (winner, len(xs)) if training else None
        return np.take_along_axis(stacked, winner[None], axis=0)[0]   # (N, ...)

    def backward(self, dout):
        """dout (N, ...) -> [dx_1, ..., dx_n], dx_i = dout where input i won, else 0."""
        winner, n = self.cached()
        return [dout * (winner == i) for i in range(n)]    # (N, ...) each


class Minimum(Maximum):
    """out = the smallest x_i, elementwise; dout goes to the input that won (a tie: the first)."""
    pick = staticmethod(np.argmin)


class Concatenate(Merge):
    """Joins the inputs along `axis`; all their other axes must agree.

    Args:
        axis: the axis to join along, counted with the batch axis as in Keras: -1 (default) is
              the last, 1 the first after the batch; 0 (the batch) is refused.
    Input shapes: (N, ..., d_i, ...). Output shape: (N, ..., d_1 + ... + d_n, ...).
    """

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"{self}: axis must be an integer; received {axis!r}")
        if axis == 0:
            raise ValueError(f"{self}: axis=0 is the batch axis, which tinycnn does not concatenate along; "
                             f"expected an axis of the samples, e.g. -1 (the last) or 1")
        self.axis = int(axis)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}

    def compute_output_shape(self, input_shapes):
        self.check_count(input_shapes)
        rank = len(input_shapes[0]) + 1                    # counting the batch axis
        if any(len(s) + 1 != rank for s in input_shapes):
            raise ValueError(f"{self} needs inputs of one rank; received {shapes_str(input_shapes)}")
        if not -rank < self.axis < rank:                   # axis = -rank is the batch axis too
            raise ValueError(f"{self}: axis={self.axis} does not fit inputs of rank {rank} (batch included), "
                             f"{shapes_str(input_shapes)}; expected an axis in 1..{rank - 1} "
                             f"or -{rank - 1}..-1")
        self.concat_axis = self.axis % rank                # 1..rank-1: the axis of the arrays (N, ...)
        a = self.concat_axis - 1                           # the same axis of a shape without the batch
        if len({tuple(s[:a]) + tuple(s[a + 1:]) for s in input_shapes}) > 1:
            raise ValueError(f"{self} (axis={self.axis}) needs inputs that agree on every axis but axis "
                             f"{self.axis}; received {shapes_str(input_shapes)}")
        out = list(input_shapes[0])
        out[a] = sum(s[a] for s in input_shapes)
        return tuple(out)

    def forward(self, xs, training=False):
        """xs: n arrays (N, ..., d_i, ...) -> out (N, ..., d_1 + ... + d_n, ...)."""
        self.cache = [x.shape[self.concat_axis] for x in xs] if training else None     # d_1, ..., d_n
        return np.concatenate(xs, axis=self.concat_axis)

    def backward(self, dout):
        """dout (N, ..., sum d_i, ...) -> [dx_1, ..., dx_n], dx_i (N, ..., d_i, ...): the pieces back."""
        sizes = self.cached()
        return np.split(dout, np.cumsum(sizes)[:-1], axis=self.concat_axis)
