"""Checkers: run a student's function beside tinycnn's reference and a numerical gradient.

Every checker takes the student's function, calls it on a few small float64 inputs (fixed
seeds, distinct sizes so that a swapped axis shows up as a wrong shape) and compares each
output twice:
    against the reference     tinycnn's own layers and kernels (tinycnn.kernels.numpy_ops)
    against a numerical grad  central differences of the forward pass (tinycnn.gradcheck)
It prints a report naming every output, its shape (expected vs received) and the maximum
relative error, and returns a CheckResult, which is truthy when the answer is correct:

    result = check_dense_backward(dense_backward)
    result.status        # "correct", "wrong", "error" (the function raised) or "not written"
    result.errors        # {"dx": (error vs reference, error vs numerical gradient), ...}
"""
import traceback

import numpy as np

from ..gradcheck import numerical_gradient, rel_error
from ..kernels import numpy_ops
from ..layers.activations import SoftmaxFn
from ..layers.dense import Dense
from ..losses import CategoricalCrossentropy

TOLERANCE = 1e-6           # against the reference: the same float64 arithmetic, reordered at most
NUMERIC_TOLERANCE = 1e-5   # against central differences (h = 1e-5), which carry their own error


class CheckResult:
    """The verdict on one exercise: status, the report's lines and every output's errors."""

    def __init__(self, exercise):
        self.exercise = exercise
        self.status = "correct"
        self.case = None           # description of the case that failed, if any
        self.lines = []            # one line per output of that case
        self.errors = {}           # output name -> (vs reference, vs numerical or None)

    @property
    def passed(self):
        return self.status == "correct"

    def __bool__(self):
        return self.passed

    def fail(self, status, line):
        if self.status == "correct":
            self.status = status
        self.lines.append(line)

    def report(self):
        head = {"correct": "correct", "wrong": "WRONG", "error": "ERROR", "not written": "not written yet"}
        title = f"{self.exercise}: {head[self.status]}"
        if self.case and self.status in ("wrong", "error"):
            title += f" in {self.case}"
        return "\n".join([title] + ["  " + line for line in self.lines])

    def __str__(self):
        return self.report()

    def __repr__(self):
        return f"<CheckResult {self.exercise}: {self.status}>"


# ----------------------------------------------------------------------------------------
# Comparing one output
# ----------------------------------------------------------------------------------------
def shape_of(a):
    return tuple(np.shape(a))


def shape_hint(received, expected, batch):
    """A guess at the mistake behind a wrong shape."""
    if len(received) == len(expected) == 2 and received == expected[::-1]:
        return " It is the transpose of the expected shape: a swapped matrix product or a missing .T?"
    if int(np.prod(received)) == int(np.prod(expected)):
        return f" Same number of entries: reshape it to {expected}."
    if received == (batch,) + expected:
        return " It keeps the batch axis: sum over the batch (axis 0)."
    return ""


def value_hint(received, expected, batch):
    """A guess at the mistake behind wrong values: a constant factor, a transpose or a sign."""
    if expected.ndim == 2 and expected.shape[0] == expected.shape[1] and np.allclose(received, expected.T):
        return " It equals the transpose of the expected answer: a swapped matrix product or .T?"
    denom = float(np.sum(expected * expected))
    if denom == 0:
        return ""
    factor = float(np.sum(received * expected)) / denom
    if abs(factor - 1) < 1e-3 or not np.allclose(received, factor * expected, rtol=1e-6, atol=1e-12):
        return ""
    if abs(factor + 1) < 1e-6:
        return " It is the expected answer with its sign flipped."
    if batch and abs(factor - batch) < 1e-6 * batch:
        return f" It is the expected answer times {batch} = N, the batch size: a missing 1/N?"
    if batch and abs(factor - 1 / batch) < 1e-6:
        return f" It is the expected answer divided by {batch} = N, the batch size: a 1/N too many?"
    return f" It is the expected answer times {factor:.6g}: a missing or extra constant factor?"


def compare(result, name, received, expected, numeric=None, batch=None, hint=None):
    """Check one output; append a line to the report. Returns True when it is right."""
    expected = np.asarray(expected, dtype=np.float64)
    label = f"{name:<6}"
    if received is None:
        result.fail("wrong", f"{label} WRONG: received None; expected an array of shape {expected.shape}. "
                             f"Did you forget to return it?")
        return False
    try:
        received = np.asarray(received, dtype=np.float64)
    except (TypeError, ValueError):
        result.fail("wrong", f"{label} WRONG: expected an array of shape {expected.shape}; "
                             f"received {type(received).__name__}, which is not numeric")
        return False
    if received.shape != expected.shape:
        result.fail("wrong", f"{label} WRONG shape: expected {expected.shape}, received {received.shape}."
                             + shape_hint(received.shape, expected.shape, batch))
        return False
    if not np.isfinite(received).all():
        bad = int((~np.isfinite(received)).sum())
        result.fail("wrong", f"{label} WRONG: the shape {received.shape} is right, but {bad} of {received.size} "
                             f"entries are NaN or inf (an overflow? np.exp of a large number is inf)")
        return False
    err_ref = rel_error(received, expected)
    err_num = None if numeric is None else rel_error(received, numeric)
    result.errors[name] = (err_ref, err_num)
    errors = f"max relative error {err_ref:.1e} vs reference"
    if err_num is not None:
        errors += f", {err_num:.1e} vs numerical gradient"
    if err_ref <= TOLERANCE and (err_num is None or err_num <= NUMERIC_TOLERANCE):
        shape = f"shape {received.shape}" if received.ndim else "one number"
        result.lines.append(f"{label} ok     {shape}, {errors}")
        return True
    where = np.unravel_index(np.argmax(np.abs(received - expected) /
                                       np.maximum(1e-8, np.abs(received) + np.abs(expected))), expected.shape)
    entry = f"{name}[{', '.join(map(str, where))}]" if expected.ndim else name
    extra = (hint(received, expected) if hint else "") or value_hint(received, expected, batch)
    shape = f"shape {received.shape} is right" if received.ndim else "one number, as expected"
    result.fail("wrong", f"{label} WRONG: {shape}, {errors} (tolerance {TOLERANCE:g}). "
                         f"Worst entry {entry}: expected {expected[where]:.6g}, received "
                         f"{received[where]:.6g}.{extra}")
    return False


def call(result, fn, inputs):
    """Call the student's function on copies of the inputs; None (and a report line) if it failed."""
    copies = {k: np.copy(a) if isinstance(a, np.ndarray) else a for k, a in inputs.items()}
    try:
        out = fn(*copies.values())
    except NotImplementedError:
        result.status = "not written"
        result.lines.append(f"{getattr(fn, '__name__', 'the function')} raises NotImplementedError: "
                            f"replace that line with your code, then run this check again.")
        return None
    except Exception as err:       # the student's bug: report it instead of crashing the notebook
        result.fail("error", f"{type(err).__name__}: {err}{where_raised(err, fn)}")
        result.lines.append(f"inputs: {describe_inputs(inputs)}")
        return None
    for name, before in inputs.items():
        if isinstance(before, np.ndarray) and not np.array_equal(before, copies[name]):
            result.fail("wrong", f"{name} was changed in place by your function; compute new arrays "
                                 f"instead (e.g. dx = dout * mask, not dout *= mask).")
            return None
    return out


def where_raised(err, fn):
    """' (at line 7 of dense_backward: dx = dout @ w)', the student's line that failed."""
    frames = traceback.extract_tb(err.__traceback__)
    code = getattr(fn, "__code__", None)
    mine = [f for f in frames if code is not None and f.filename == code.co_filename]
    if not mine:
        return ""
    frame, inner = mine[-1], frames[-1]
    text = f" (at line {frame.lineno} of {frame.name}" + (f": {frame.line}" if frame.line else "")
    if inner is not frame:
        text += f", inside {inner.name}"
    return text + ")"


def describe_inputs(inputs):
    return ", ".join(f"{k} {shape_of(v)}" if isinstance(v, np.ndarray) else f"{k}={v!r}"
                     for k, v in inputs.items())


def unpack(result, out, names):
    """The returned tuple, checked for its length; None (with a report line) if it does not fit."""
    if len(names) == 1:
        return [out]
    if not isinstance(out, (tuple, list)) or len(out) != len(names):
        got = f"{len(out)} values" if isinstance(out, (tuple, list)) else f"one {type(out).__name__}"
        result.fail("wrong", f"expected a tuple of {len(names)} values ({', '.join(names)}); received {got}")
        return None
    return list(out)


def run_cases(exercise, fn, cases, verbose):
    """cases: list of (title, inputs dict, function(outputs, result) -> None). Stops at the first failure."""
    result = CheckResult(exercise)
    for number, (title, inputs, judge) in enumerate(cases, 1):
        result.case = f"case {number} of {len(cases)} ({title})"
        result.lines = []
        out = call(result, fn, inputs)
        if out is not None:
            judge(out, result)
        if not result.passed:
            break
    if result.passed:
        result.lines.insert(0, f"all {len(cases)} cases agree; the last one ({title}):")
    if verbose:
        print(result.report())
    return result


# ----------------------------------------------------------------------------------------
# 1. Dense backward
# ----------------------------------------------------------------------------------------
def reference_dense(dout, x, w, b):
    layer = Dense(w.shape[1], name="reference_dense")
    layer.build((w.shape[0],))
    layer.params = {"kernel": w.copy(), "bias": b.copy()}
    layer.forward(x, training=True)
    dx = layer.backward(dout)
    return dx, layer.grads["kernel"], layer.grads["bias"]


def check_dense_backward(fn, verbose=True):
    """Check dense_backward(dout, x, w) -> (dx, dw, db) for z = x @ w + b."""
    cases = []
    for title, (N, D, M), seed in (("N=4 samples, 5 inputs, 3 units", (4, 5, 3), 0),
                                    ("N=3, 4 inputs, 4 units: a square kernel", (3, 4, 4), 1)):
        rng = np.random.default_rng(seed)
        x, w, b = rng.standard_normal((N, D)), rng.standard_normal((D, M)), rng.standard_normal(M)
        dout = rng.standard_normal((N, M))
        cases.append((title, {"dout": dout, "x": x, "w": w}, dense_judge(dout, x, w, b)))
    return run_cases("dense_backward", fn, cases, verbose)


def dense_judge(dout, x, w, b):
    return gradients_judge(reference_dense(dout, x, w, b), lambda: float(np.sum((x @ w + b) * dout)), x, w, b)


def gradients_judge(expected, loss, x, w, b):
    """A judge for a backward returning (dx, dw, db): compare each with the reference and with the
    numerical gradient of the scalar loss() with respect to x, w and b."""
    numeric = [numerical_gradient(loss, a) for a in (x, w, b)]

    def judge(out, result):
        out = unpack(result, out, ["dx", "dw", "db"])
        if out is not None:
            for name, r, e, n in zip(["dx", "dw", "db"], out, expected, numeric):
                compare(result, name, r, e, n, batch=len(x))
    return judge


# ----------------------------------------------------------------------------------------
# 2. Softmax + cross-entropy
# ----------------------------------------------------------------------------------------
def reference_softmax_ce(z, y):
    p = SoftmaxFn().forward(z)
    loss_fn = CategoricalCrossentropy()
    return loss_fn(y, p), loss_fn.gradient_logits(y, p)


def check_softmax_cross_entropy(fn, verbose=True):
    """Check softmax_cross_entropy(z, y) -> (loss, dz): the mean loss and dL/dz."""
    cases = []
    for title, (N, K), shift, seed in (("N=4 samples, 3 classes", (4, 3), 0.0, 0),
                                       ("N=5, 6 classes, logits near 1000", (5, 6), 1000.0, 1)):
        rng = np.random.default_rng(seed)
        z = rng.standard_normal((N, K)) + shift
        y = np.eye(K)[rng.integers(0, K, N)]
        cases.append((title, {"z": z, "y": y}, softmax_judge(z, y)))
    return run_cases("softmax_cross_entropy", fn, cases, verbose)


def softmax_judge(z, y):
    loss, dz = reference_softmax_ce(z, y)
    zc = z.copy()
    numeric = numerical_gradient(lambda: reference_softmax_ce(zc, y)[0], zc)

    def judge(out, result):
        out = unpack(result, out, ["loss", "dz"])
        if out is None:
            return
        if np.ndim(out[0]) != 0 and np.size(out[0]) != 1:
            result.fail("wrong", f"loss   WRONG: expected one number (the mean over the batch); received "
                                 f"an array of shape {shape_of(out[0])}. Average over the samples.")
        else:
            compare(result, "loss", np.reshape(out[0], ()), loss, batch=len(z))
        compare(result, "dz", out[1], dz, numeric, batch=len(z))
    return judge


# ----------------------------------------------------------------------------------------
# 3. Conv2D backward via col2im
# ----------------------------------------------------------------------------------------
def check_conv2d_backward(fn, verbose=True):
    """Check conv2d_backward(dout, x, w, stride, pads) -> (dx, dw, db) for out = conv(x, w) + b."""
    cases = []
    for title, x_shape, w_shape, stride, pads, seed in (
            ("x (2, 5, 6, 3), 3x2 kernel, 4 filters, stride 1, no padding", (2, 5, 6, 3), (3, 2, 3, 4),
             (1, 1), (0, 0, 0, 0), 0),
            ("x (1, 6, 5, 2), 3x3 kernel, 3 filters, stride 2, padding 1", (1, 6, 5, 2), (3, 3, 2, 3),
             (2, 2), (1, 1, 1, 1), 1)):
        rng = np.random.default_rng(seed)
        x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
        b = rng.standard_normal(w_shape[-1])
        out, _ = numpy_ops.conv2d_forward(x, w, b, stride, pads)
        dout = rng.standard_normal(out.shape)
        inputs = {"dout": dout, "x": x, "w": w, "stride": stride, "pads": pads}
        cases.append((title, inputs, conv_judge(dout, x, w, b, stride, pads)))
    return run_cases("conv2d_backward", fn, cases, verbose)


def conv_judge(dout, x, w, b, stride, pads):
    _, saved = numpy_ops.conv2d_forward(x, w, b, stride, pads)
    expected = numpy_ops.conv2d_backward(dout, saved)
    return gradients_judge(expected, lambda: float(np.sum(numpy_ops.conv2d_forward(x, w, b, stride, pads)[0] * dout)),
                           x, w, b)


# ----------------------------------------------------------------------------------------
# 4. MaxPooling2D backward
# ----------------------------------------------------------------------------------------
def distinct_values(shape, rng):
    """No ties, gaps far wider than the finite-difference step: the max of a window is clear."""
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) - n / 2 + 0.5) / n * 4


def routing_hint(received, expected):
    """Which cells got gradient that should not have, and which maxima got none."""
    wrong_cells = int(np.sum((received != 0) & (expected == 0)))
    starved = int(np.sum((received == 0) & (expected != 0)))
    if wrong_cells == 0 and starved == 0:
        return ""
    return (f" Routing: {wrong_cells} cell(s) that are not their window's max received gradient, and "
            f"{starved} of the {int(np.sum(expected != 0))} maxima received none. Each window must send "
            f"its whole dout to the one cell that held its max, and 0 to the others.")


def check_maxpool_backward(fn, verbose=True):
    """Check maxpool_backward(dout, x, pool_size) -> dx, non-overlapping windows (stride = pool)."""
    cases = []
    for title, x_shape, pool, seed in (("x (2, 4, 6, 3), 2x2 windows", (2, 4, 6, 3), (2, 2), 0),
                                        ("x (1, 6, 4, 2), 3x2 windows (3 rows, 2 columns)", (1, 6, 4, 2),
                                         (3, 2), 1)):
        rng = np.random.default_rng(seed)
        x = distinct_values(x_shape, rng)
        out, _ = numpy_ops.maxpool_forward(x, pool, pool, (0, 0, 0, 0))
        dout = rng.standard_normal(out.shape)
        cases.append((title, {"dout": dout, "x": x, "pool_size": pool}, maxpool_judge(dout, x, pool)))
    return run_cases("maxpool_backward", fn, cases, verbose)


def maxpool_judge(dout, x, pool):
    pads = (0, 0, 0, 0)
    _, saved = numpy_ops.maxpool_forward(x, pool, pool, pads)
    expected = numpy_ops.maxpool_backward(dout, saved)

    def loss():
        return float(np.sum(numpy_ops.maxpool_forward(x, pool, pool, pads)[0] * dout))

    numeric = numerical_gradient(loss, x)

    def judge(out, result):
        compare(result, "dx", out, expected, numeric, batch=len(x), hint=routing_hint)
    return judge


# ----------------------------------------------------------------------------------------
# 5. The Adam step
# ----------------------------------------------------------------------------------------
ADAM = dict(learning_rate=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-7)


def reference_adam(p, g, m, v, t, textbook=False):
    """tinycnn's Adam kernel on copies; textbook=True adds epsilon to sqrt(v_hat) instead."""
    p, m, v = p.copy(), m.copy(), v.copy()
    b1, b2, lr, eps = ADAM["beta_1"], ADAM["beta_2"], ADAM["learning_rate"], ADAM["epsilon"]
    if textbook:                    # eps scaled so that both forms are one formula
        eps = eps * np.sqrt(1 - b2 ** t)
    numpy_ops.adam_update(p, g, m, v, lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t), b1, b2, eps)
    return p, m, v


def check_adam_step(fn, verbose=True):
    """Check adam_step(p, g, m, v, t, learning_rate, beta_1, beta_2, epsilon) -> (p, m, v).

    Four steps in a row (t = 1..4), the student's own m and v carried over, each compared with
    tinycnn's kernel numpy_ops.adam_update. An optimizer has no gradient to check numerically:
    the reference is the only oracle here. p is compared through its step p_new - p, which is
    tiny next to p itself, so a wrong step cannot hide behind p's size. The textbook form
    (epsilon added to sqrt(v_hat)) differs from Keras's by about epsilon and is accepted.
    """
    rng = np.random.default_rng(0)
    p = rng.standard_normal((3, 4))
    m, v = np.zeros_like(p), np.zeros_like(p)
    result = CheckResult("adam_step")
    steps = 4
    for t in range(1, steps + 1):
        g = rng.standard_normal(p.shape)
        result.case = f"step t={t} of {steps} (p, g, m, v of shape {p.shape}, learning_rate=0.01)"
        result.lines = []
        inputs = {"p": p, "g": g, "m": m, "v": v, "t": t, **ADAM}
        out = call(result, fn, inputs)
        out = None if out is None else unpack(result, out, ["p", "m", "v"])
        if out is None:
            break
        keras, textbook = reference_adam(p, g, m, v, t), reference_adam(p, g, m, v, t, textbook=True)
        step = np.asarray(out[0], dtype=np.float64) - p if shape_of(out[0]) == p.shape else out[0]
        ref = keras
        if shape_of(out[0]) == p.shape and rel_error(step, keras[0] - p) > TOLERANCE \
                and rel_error(step, textbook[0] - p) <= TOLERANCE:
            ref = textbook
            result.lines.append("(your p follows the textbook form, epsilon added to sqrt(v_hat): "
                                "accepted; Keras adds it to sqrt(v))")
        compare(result, "p", step, ref[0] - p, hint=bias_correction_hint(t))
        compare(result, "m", out[1], ref[1])
        compare(result, "v", out[2], ref[2])
        if not result.passed:
            result.lines.append("(p is compared through its step p_new - p_old)")
            break
        p, m, v = (np.asarray(a, dtype=np.float64) for a in out)
    if result.passed:
        result.lines.insert(0, f"all {steps} steps agree with tinycnn's Adam; the last one:")
    if verbose:
        print(result.report())
    return result


def bias_correction_hint(t):
    b1, b2 = ADAM["beta_1"], ADAM["beta_2"]
    missing = (1 - b1 ** t) / np.sqrt(1 - b2 ** t)     # the step without bias correction, relative

    def hint(received, expected):
        factor = float(np.sum(received * expected) / np.sum(expected * expected))
        if np.allclose(received, factor * expected, rtol=1e-4) and abs(factor - missing) < 1e-3 * missing:
            return (f" It is the expected step times {factor:.4g} = (1 - beta_1^t) / sqrt(1 - beta_2^t): "
                    f"the bias correction is missing.")
        return ""
    return hint


CHECKERS = {
    "dense_backward": check_dense_backward,
    "softmax_cross_entropy": check_softmax_cross_entropy,
    "conv2d_backward": check_conv2d_backward,
    "maxpool_backward": check_maxpool_backward,
    "adam_step": check_adam_step,
}
