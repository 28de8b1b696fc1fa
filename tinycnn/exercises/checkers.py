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
    result.plot()        # a wrong answer: expected, received and where they differ, as a figure

A wrong answer's report says how many entries are wrong and where (which rows, channels...),
names a constant factor only when every entry is off by the same one, and traces a NaN or
inf back to the line and operation of the student's function that produced it.
"""
import ast
import io
import linecache
import sys
import traceback

import numpy as np

from ..gradcheck import numerical_gradient, rel_error
from ..kernels import numpy_ops
from ..layers.activations import Relu, SoftmaxFn
from ..layers.dense import Dense
from ..layers.dropout import Dropout
from ..layers.pooling import AveragePooling2D, GlobalAveragePooling2D
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
        self.wrong = None          # the first wrong output: {"name", "received", "expected", "bad"}
        self.source = None         # (function, inputs) of the last call, to trace a NaN back

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

    def plot(self):
        """A figure of the first wrong output: expected, received, and the wrong entries marked.

        Arrays are drawn as images: (N, H, W, C) as one row of channels per sample. Returns the
        matplotlib Figure, or None when no output had wrong values (correct, or a wrong shape).
        """
        if self.wrong is None:
            return None
        import matplotlib.pyplot as plt
        w = self.wrong
        expected, received, bad = (as_image(w[k]) for k in ("expected", "received", "bad"))
        bad = bad > 0
        shape = np.shape(w["expected"])
        wide = expected.shape[1] / max(1, expected.shape[0])
        fig, axes = plt.subplots(1, 3, figsize=(min(13, 3 + 9 * min(wide, 1.5)), 3.8), layout="constrained")
        vmax = float(max(np.abs(expected).max(), np.abs(received).max(), 1e-12))
        for ax, image, title in ((axes[0], expected, "expected"), (axes[1], received, "received")):
            shown = ax.imshow(image, cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto", interpolation="nearest")
            ax.set_title(f"{w['name']} {title}")
        fig.colorbar(shown, ax=axes[:2], fraction=0.03)
        diff = np.ma.masked_where(~bad, np.abs(received - expected))
        axes[2].imshow(np.where(bad, 1.0, 0.0), cmap="Greys", vmin=0, vmax=4, aspect="auto", interpolation="nearest")
        marked = axes[2].imshow(diff, cmap="Reds", aspect="auto", interpolation="nearest")
        fig.colorbar(marked, ax=axes[2], fraction=0.05, label="|received - expected|")
        axes[2].set_title(f"wrong: {int(bad.sum())} of {bad.size} entries")
        rows, cols = image_axes(shape)
        for ax in axes:
            ax.set_ylabel(rows)
            ax.set_xlabel(cols)
            if len(shape) == 4:                         # lines between samples and between channels
                N, H, W, C = shape
                for k in range(1, N):
                    ax.axhline(k * H - 0.5, color="k", lw=0.8)
                for k in range(1, C):
                    ax.axvline(k * W - 0.5, color="k", lw=0.8)
                ax.set_yticks([k * H + (H - 1) / 2 for k in range(N)], [f"n{k}" for k in range(N)])
                ax.set_xticks([k * W + (W - 1) / 2 for k in range(C)], [f"c{k}" for k in range(C)])
        fig.suptitle(f"{self.exercise}: {w['name']}, shape {shape}", fontsize=10)
        return fig

    def _repr_mimebundle_(self, include=None, exclude=None):
        """In a notebook, a wrong answer displays as its picture (the report is printed already)."""
        bundle = {"text/plain": repr(self)}
        fig = self.plot()
        if fig is not None:
            import matplotlib.pyplot as plt
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
            plt.close(fig)
            bundle["image/png"] = buffer.getvalue()
        return bundle


def as_image(a):
    """Any array as a 2-D image: (N, H, W, C) -> (N*H, C*W), each sample a row of channel tiles."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 4:
        N, H, W, C = a.shape
        return a.transpose(0, 1, 3, 2).reshape(N * H, C * W)
    if a.ndim <= 1:
        return a.reshape(1, -1)
    return a.reshape(-1, a.shape[-1])


def image_axes(shape):
    if len(shape) == 4:
        return "sample n, its rows", "channel c, its columns"
    if len(shape) <= 1:
        return "", "entry"
    return ("row" if len(shape) == 2 else "all axes but the last"), "column"


# ----------------------------------------------------------------------------------------
# Comparing one output
# ----------------------------------------------------------------------------------------
def shape_of(a):
    return tuple(np.shape(a))


AXES = {1: ("entry",), 2: ("row", "column"), 3: ("axis-0 index", "axis-1 index", "axis-2 index"),
        4: ("sample", "row", "column", "channel")}


def shape_hint(received, expected, batch):
    """A guess at the mistake behind a wrong shape."""
    if len(received) == len(expected) == 2 and received == expected[::-1]:
        return " It is the transpose of the expected shape: a swapped matrix product or a missing .T?"
    if len(received) == len(expected) > 2 and sorted(received) == sorted(expected):
        return (" The same axes in another order: a transpose, or a reshape in the wrong order "
                "(channels-first instead of channels-last?).")
    if int(np.prod(received)) == int(np.prod(expected)):
        return f" Same number of entries: reshape it to {expected}."
    if received == (batch,) + expected:
        return " It keeps the batch axis: sum over the batch (axis 0)."
    return ""


def count_factors(name, q, meaning=None):
    """The two factors a count q (the batch size N, a window's PH*PW cells...) causes:
    times q, a missing 1/q, and times 1/q, a mean where a sum belongs."""
    braced = name if name.isalnum() else f"({name})"
    return [(q, f"{q:g} = {name}" + (f" ({meaning})" if meaning else ""), f"a missing 1/{braced}?"),
            (1 / q, f"{1 / q:.3g} = 1/{q:g} = 1/{braced}", f"a mean where a sum belongs, or a 1/{braced} too many?")]


def constant_ratio(received, expected):
    """received / expected when it is one and the same number for every entry, else None."""
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    if scale == 0:
        return None
    nonzero = np.abs(expected) > 1e-9 * scale
    if np.any(np.abs(received[~nonzero]) > 1e-9 * scale):
        return None
    ratios = received[nonzero] / expected[nonzero]
    ratio = float(np.median(ratios))
    if np.all(np.abs(ratios - ratio) <= 1e-6 * abs(ratio) + 1e-12):
        return ratio
    return None


def value_hint(received, expected, factors=()):
    """A guess at the mistake behind wrong values: a transpose, a sign, or a constant factor.

    factors: (value, "4 = N", "a missing 1/N?") triples, the exercise's likely factors. A factor
    is named only when EVERY entry is off by it; a single number (a loss) is off by some factor
    whatever the mistake, so for it only the exercise's own factors are named.
    """
    if expected.ndim == 2 and expected.shape[0] == expected.shape[1] and np.allclose(received, expected.T):
        return " It equals the transpose of the expected answer: a swapped matrix product or .T?"
    factor = constant_ratio(received, expected)
    if factor is None or abs(factor - 1) < 1e-6:
        return ""
    if abs(factor + 1) < 1e-6:
        return " It is the expected answer with its sign flipped."
    for value, label, meaning in factors:
        if abs(factor - value) <= 1e-6 * abs(value):
            return f" It is the expected answer times {label}: {meaning}"
    if np.count_nonzero(expected) >= 2:
        return f" Every entry is the expected one times {factor:.4g}: a missing or extra constant factor?"
    return ""


def wrong_entries(received, expected):
    """The entries off by more than the tolerance (elementwise, like rel_error)."""
    return np.abs(received - expected) > TOLERANCE * np.maximum(1e-8, np.abs(received) + np.abs(expected))


def indices(idx):
    idx = [int(i) for i in idx]
    return ", ".join(map(str, idx)) if len(idx) <= 8 else f"{', '.join(map(str, idx[:6]))}, ... ({len(idx)} of them)"


def where_wrong(bad, axes=None):
    """'12 of 60 entries are wrong, only in channel 2 (of 3)': how many, and along which axes."""
    axes = axes or AXES.get(bad.ndim, tuple(f"axis-{i} index" for i in range(bad.ndim)))
    text = f"{int(bad.sum())} of {bad.size} entries are wrong"
    if bad.ndim == 0:
        return text
    hit = np.nonzero(bad)
    where = [f"{name}{'s' if len(set(h)) > 1 else ''} {indices(np.unique(h))} (of {n})"
             for name, h, n in zip(axes, hit, bad.shape) if len(np.unique(h)) < n]
    return text + (", only in " + "; ".join(where) if where else ", spread over every " + ", ".join(axes))


def compare(result, name, received, expected, numeric=None, batch=None, hint=None, factors=None, axes=None,
            numeric_name="numerical gradient"):
    """Check one output; append a line to the report. Returns True when it is right.

    factors: the exercise's likely constant factors (see value_hint); by default the batch size N.
    axes: names of the output's axes for the report ("sample", "channel", ...).
    numeric_name: what the second oracle is, for a forward pass ("direct sum").
    """
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
        bad = ~np.isfinite(received)
        if result.wrong is None:
            result.wrong = {"name": name, "received": np.where(bad, 0.0, received), "expected": expected, "bad": bad}
        count = where_wrong(bad, axes).replace("are wrong", "are NaN or inf")
        what = f"the shape {received.shape} is right, but {count}" if received.ndim else f"it is {received}"
        result.fail("wrong", f"{label} WRONG: {what}.{nan_source(result)}")
        return False
    err_ref = rel_error(received, expected)
    err_num = None if numeric is None else rel_error(received, numeric)
    result.errors[name] = (err_ref, err_num)
    errors = f"max relative error {err_ref:.1e} vs reference"
    if err_num is not None:
        errors += f", {err_num:.1e} vs {numeric_name}"
    if err_ref <= TOLERANCE and (err_num is None or err_num <= NUMERIC_TOLERANCE):
        shape = f"shape {received.shape}" if received.ndim else "one number"
        result.lines.append(f"{label} ok     {shape}, {errors}")
        return True
    bad = wrong_entries(received, expected)
    if result.wrong is None:
        result.wrong = {"name": name, "received": received, "expected": expected, "bad": bad}
    where = np.unravel_index(np.argmax(np.abs(received - expected) /
                                       np.maximum(1e-8, np.abs(received) + np.abs(expected))), expected.shape)
    entry = f"{name}[{', '.join(map(str, where))}]" if expected.ndim else name
    if factors is None:
        factors = count_factors("N", batch, "the batch size") if batch else ()
    extra = (hint(received, expected) if hint else "") or value_hint(received, expected, factors)
    shape = f"shape {received.shape} is right" if received.ndim else "one number, as expected"
    count = f" {where_wrong(bad, axes)}." if received.ndim else ""
    result.fail("wrong", f"{label} WRONG: {shape}, {errors} (tolerance {TOLERANCE:g}).{count} "
                         f"Worst entry {entry}: expected {expected[where]:.6g}, received "
                         f"{received[where]:.6g}.{extra}")
    return False


# ----------------------------------------------------------------------------------------
# Where a NaN or inf came from
# ----------------------------------------------------------------------------------------
CAUSES = (   # (numpy's words, the operation in the student's line) -> what it means
    ("overflow", "exp", "np.exp of a large number is inf (subtract the max before np.exp)"),
    ("overflow", "", "a number beyond float64's range (about 1.8e308)"),
    ("divide by zero", "log", "log(0) is -inf: a probability of exactly 0 (shift by the max, or clip)"),
    ("divide by zero", "", "a division by zero is inf: a denominator that is 0 (is an epsilon missing?)"),
    ("invalid", "divide", "0/0 (or inf/inf) is NaN: a denominator that is 0 (is an epsilon missing?)"),
    ("invalid", "sqrt", "the square root of a negative number is NaN"),
    ("invalid", "log", "the log of a negative number is NaN"),
    ("invalid", "", "inf - inf or 0 * inf is NaN (an inf made earlier)"),
)


def explain(numpy_message):
    for words, op, meaning in CAUSES:
        if words in numpy_message and (op in numpy_message or not op):
            return meaning
    return numpy_message


def nan_source(result):
    """' It first appears at line 5 of adam_step: ... : a division by zero ...': run the student's
    function again, with NumPy raising on the first overflow, division by zero or invalid value;
    if the function silences those (np.errstate), follow it line by line instead."""
    if result.source is None:
        return ""
    fn, inputs = result.source
    args = [np.copy(a) if isinstance(a, np.ndarray) else a for a in inputs.values()]
    try:
        with np.errstate(all="raise"):
            fn(*args)
    except FloatingPointError as err:
        code = getattr(fn, "__code__", None)
        mine = [f for f in traceback.extract_tb(err.__traceback__) if code and f.filename == code.co_filename]
        at = f" at line {mine[-1].lineno} of {mine[-1].name} ({mine[-1].line})" if mine else ""
        return f" The first NaN or inf appears{at}: {err}, that is, {explain(str(err))}."
    except Exception:
        return ""
    found = first_nonfinite_line(fn, [np.copy(a) if isinstance(a, np.ndarray) else a for a in inputs.values()])
    if found is None:
        return " (An overflow? A division by zero?)"
    lineno, names, text, namespace = found
    failing = failing_operation(text, namespace)
    cause = f": {failing[0]} gives {failing[1]}, that is, {explain(failing[1])}" if failing else ""
    made = f", making {', '.join(names)} NaN or inf" if names else ""
    return f" The first NaN or inf appears at line {lineno} of {fn.__name__} ({text.strip()}){made}{cause}."


def failing_operation(text, namespace):
    """(source, NumPy's message) of the first operation of a line, inner ones first, that NumPy
    flags (overflow, division by zero, invalid value) when evaluated on the line's inputs; or None."""
    try:
        tree = ast.parse(text.strip())
    except SyntaxError:
        return None
    nodes = []

    def post_order(node):
        for child in ast.iter_child_nodes(node):
            post_order(child)
        if isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Call)):
            nodes.append(node)
    post_order(tree)
    for node in nodes:
        try:
            with np.errstate(all="raise"):
                eval(compile(ast.Expression(node), "<line>", "eval"), dict(namespace))
        except FloatingPointError as err:
            return ast.unparse(node), str(err)
        except Exception:
            continue
    return None


def first_nonfinite_line(fn, args):
    """(line number, [local names], line text, the names the line saw) of the first line of fn
    after which a local (or the returned value) holds a NaN or inf; None if none does."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return None
    state = {"line": None, "bad": set(), "found": None}

    def nonfinite(value):
        try:
            return isinstance(value, (np.ndarray, float, np.floating)) and not np.all(np.isfinite(value))
        except TypeError:
            return False

    def local(frame, event, arg):
        if state["found"] is None and event in ("line", "return"):
            bad = {k for k, v in frame.f_locals.items() if nonfinite(v)}
            new = sorted(bad - state["bad"])
            if new and state["line"] is not None:
                state["found"] = (state["line"], new, state["before"])
            elif event == "return" and any(map(nonfinite, arg if isinstance(arg, tuple) else (arg,))):
                line, before = state.get("return", (frame.f_lineno, dict(frame.f_locals)))
                state["found"] = (line, [], before)       # made in the return statement itself
            if event == "line" and linecache.getline(code.co_filename, frame.f_lineno).strip().startswith("return"):
                state["return"] = (frame.f_lineno, dict(frame.f_locals))   # a `with` block exits after it
            state["bad"], state["line"], state["before"] = bad, frame.f_lineno, dict(frame.f_locals)
        return local

    def outer(frame, event, arg):
        return local if frame.f_code is code else None

    previous = sys.gettrace()
    sys.settrace(outer)
    try:
        fn(*args)
    except Exception:
        pass
    finally:
        sys.settrace(previous)
    if state["found"] is None:
        return None
    lineno, names, before = state["found"]
    return lineno, names, linecache.getline(code.co_filename, lineno), {**fn.__globals__, **before}


def call(result, fn, inputs):
    """Call the student's function on copies of the inputs; None (and a report line) if it failed."""
    copies = {k: np.copy(a) if isinstance(a, np.ndarray) else a for k, a in inputs.items()}
    result.source = (fn, inputs)
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


def gradients_judge(expected, loss, x, w, b, factors=None, axes=None):
    """A judge for a backward returning (dx, dw, db): compare each with the reference and with the
    numerical gradient of the scalar loss() with respect to x, w and b. factors, axes: per output
    name, as compare() takes them."""
    numeric = [numerical_gradient(loss, a) for a in (x, w, b)]
    factors, axes = factors or {}, axes or {}

    def judge(out, result):
        out = unpack(result, out, ["dx", "dw", "db"])
        if out is not None:
            for name, r, e, n in zip(["dx", "dw", "db"], out, expected, numeric):
                compare(result, name, r, e, n, batch=len(x), factors=factors.get(name), axes=axes.get(name))
    return judge


def variants_hint(variants):
    """A hint naming a mistake by its result: variants is [(what that mistake returns, message)]."""
    def hint(received, expected):
        for wrong, message in variants:
            if wrong is None:
                continue
            wrong = np.asarray(wrong, dtype=np.float64)
            if wrong.shape == received.shape and np.allclose(received, wrong, rtol=1e-6, atol=1e-10):
                return " " + message
        return ""
    return hint


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
    p0 = np.exp(z - z.max(axis=0)) / np.exp(z - z.max(axis=0)).sum(axis=0)     # softmax down the batch
    axis_0 = ("Your softmax normalises over axis 0 (each class across the batch) instead of over each "
              "sample's K classes: use axis=1 (with keepdims=True).")
    loss_hint = variants_hint([(-np.sum(y * np.log(p0)) / len(z), axis_0)])
    dz_hint = variants_hint([((p0 - y) / len(z), axis_0)])
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
            compare(result, "loss", np.reshape(out[0], ()), loss, batch=len(z), hint=loss_hint)
        compare(result, "dz", out[1], dz, numeric, batch=len(z), hint=dz_hint)
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
    N, OH, OW, _ = dout.shape
    rows = count_factors("N*OH*OW", N * OH * OW, "the patches, one row each") + count_factors("N", N, "the batch size")
    return gradients_judge(expected, lambda: float(np.sum(numpy_ops.conv2d_forward(x, w, b, stride, pads)[0] * dout)),
                           x, w, b, factors={"dw": rows, "db": rows},
                           axes={"dw": ("kernel row", "kernel column", "input channel", "filter"), "db": ("filter",)})


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
    tiny next to p itself, so a wrong step cannot hide behind p's size. Two weights get a zero
    gradient at every step, so v stays 0 there and a missing epsilon shows. The textbook form
    (epsilon added to sqrt(v_hat)) differs from Keras's by about epsilon and is accepted.
    """
    rng = np.random.default_rng(0)
    p = rng.standard_normal((3, 4))
    m, v = np.zeros_like(p), np.zeros_like(p)
    result = CheckResult("adam_step")
    steps = 4
    for t in range(1, steps + 1):
        g = rng.standard_normal(p.shape)
        g[0, :2] = 0.0                       # two weights that never get a gradient (a dead unit): v stays 0
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


# ----------------------------------------------------------------------------------------
# 6. The softmax's Jacobian-vector product
# ----------------------------------------------------------------------------------------
def softmax_rows(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def check_softmax_jvp(fn, verbose=True):
    """Check softmax_jvp(p, v) -> J v, row by row, for p = softmax(z)."""
    cases = []
    for title, (N, K), seed in (("N=4 samples, 3 classes", (4, 3), 0), ("N=5, 5 classes: square", (5, 5), 1)):
        rng = np.random.default_rng(seed)
        z, v = rng.standard_normal((N, K)), rng.standard_normal((N, K))
        cases.append((title, {"p": softmax_rows(z), "v": v}, softmax_jvp_judge(z, v)))
    return run_cases("softmax_jvp", fn, cases, verbose)


def softmax_jvp_judge(z, v):
    p = softmax_rows(z)
    expected = SoftmaxFn().backward(v, p)
    h = 1e-5
    numeric = (softmax_rows(z + h * v) - softmax_rows(z - h * v)) / (2 * h)   # the slope along v
    N, K = p.shape
    rows_as_row = p * (v - np.sum(p * v, axis=1)[None, :]) if N == K else None    # only fits when N == K
    hint = variants_hint([
        (p * v, "It is p * v, the Jacobian's diagonal only: the term -p (p . v) is missing "
                "(J_ij = p_i (delta_ij - p_j) has off-diagonal entries -p_i p_j)."),
        (p * (v - np.sum(p * v, axis=0, keepdims=True)), "The dot product p . v is summed over axis 0 (the batch): "
                                                          "each sample needs its own, sum over axis 1."),
        (rows_as_row, "Each row's p . v was broadcast along the wrong axis: "
                                                    "keep it as a column with keepdims=True."),
        (p * (v - np.sum(v, axis=1, keepdims=True)), "The sum is of v alone: it must be p . v = sum_j p_j v_j."),
        (v - p * np.sum(p * v, axis=1, keepdims=True), "The first term is v: it must be p * v (J_ii = p_i - p_i^2)."),
    ])

    def judge(out, result):
        compare(result, "Jv", out, expected, numeric, hint=hint, factors=())
    return judge


# ----------------------------------------------------------------------------------------
# 7. A two-layer network's backward: the chain rule
# ----------------------------------------------------------------------------------------
def reference_two_layer(x, y, w1, b1, w2, b2):
    """tinycnn's layers: Dense, ReLU, Dense, softmax and the cross-entropy's dL/dz."""
    relu = Relu()
    first, second = Dense(w1.shape[1], name="first"), Dense(w2.shape[1], name="second")
    first.build((w1.shape[0],))
    second.build((w2.shape[0],))
    first.params, second.params = {"kernel": w1, "bias": b1}, {"kernel": w2, "bias": b2}
    h = relu.forward(first.forward(x, training=True))
    loss, dz = reference_softmax_ce(second.forward(h, training=True), y)
    first.backward(relu.backward(second.backward(dz), h))
    return loss, first.grads["kernel"], first.grads["bias"], second.grads["kernel"], second.grads["bias"]


def check_two_layer_backward(fn, verbose=True):
    """Check two_layer_backward(x, y, w1, b1, w2, b2) -> (loss, dw1, db1, dw2, db2)."""
    cases = []
    for title, (N, D, H, K), seed in (("N=4 samples, 5 inputs, 6 hidden units, 3 classes", (4, 5, 6, 3), 0),
                                      ("N=6, 3 inputs, 7 hidden units, 4 classes", (6, 3, 7, 4), 1)):
        rng = np.random.default_rng(seed)
        x, w1, b1 = rng.standard_normal((N, D)), rng.standard_normal((D, H)), rng.standard_normal(H)
        w2, b2 = rng.standard_normal((H, K)), rng.standard_normal(K)
        y = np.eye(K)[rng.integers(0, K, N)]
        inputs = {"x": x, "y": y, "w1": w1, "b1": b1, "w2": w2, "b2": b2}
        cases.append((title, inputs, two_layer_judge(**inputs)))
    return run_cases("two_layer_backward", fn, cases, verbose)


def two_layer_judge(x, y, w1, b1, w2, b2):
    expected = reference_two_layer(x, y, w1, b1, w2, b2)
    weights = [a.copy() for a in (w1, b1, w2, b2)]
    numeric = [numerical_gradient(lambda: reference_two_layer(x, y, *weights)[0], a) for a in weights]
    z1 = x @ w1 + b1
    dh = (softmax_rows(np.maximum(z1, 0) @ w2 + b2) - y) / len(x) @ w2.T     # dL/dh, before the gate
    no_mask = ("It matches the gradient without the ReLU's gate: multiply dh = dz @ w2.T by (x @ w1 + b1 > 0) "
               "before going on to w1 and b1.")
    h_mask = ("The gate multiplies by h = relu(x @ w1 + b1) itself: it must be 0 or 1, (h > 0).")
    hints = {"dw1": variants_hint([(x.T @ dh, no_mask), (x.T @ (dh * np.maximum(z1, 0)), h_mask)]),
             "db1": variants_hint([(dh.sum(axis=0), no_mask), ((dh * np.maximum(z1, 0)).sum(axis=0), h_mask)])}
    names = ["loss", "dw1", "db1", "dw2", "db2"]

    def judge(out, result):
        out = unpack(result, out, names)
        if out is None:
            return
        if np.size(out[0]) != 1:
            result.fail("wrong", f"loss   WRONG: expected one number (the mean over the batch); received "
                                 f"an array of shape {shape_of(out[0])}. Average over the samples.")
        else:
            compare(result, "loss", np.reshape(out[0], ()), expected[0], batch=len(x))
        for name, r, e, n in zip(names[1:], out[1:], expected[1:], numeric):
            compare(result, name, r, e, n, batch=len(x), hint=hints.get(name))
    return judge


# ----------------------------------------------------------------------------------------
# 8. Conv2D forward via im2col
# ----------------------------------------------------------------------------------------
def check_conv2d_forward(fn, verbose=True):
    """Check conv2d_forward(x, w, b, stride, pads) -> out (N, OH, OW, F), against tinycnn's kernel
    and a direct sum over the kernel window (a forward pass has no gradient to check)."""
    cases = []
    for title, x_shape, w_shape, stride, pads, seed in (
            ("x (2, 5, 6, 3), 3x2 kernel, 4 filters, stride 1, no padding", (2, 5, 6, 3), (3, 2, 3, 4),
             (1, 1), (0, 0, 0, 0), 0),
            ("x (1, 6, 5, 2), 3x3 kernel, 3 filters, stride 2, padding 1", (1, 6, 5, 2), (3, 3, 2, 3),
             (2, 2), (1, 1, 1, 1), 1)):
        rng = np.random.default_rng(seed)
        x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[-1])
        inputs = {"x": x, "w": w, "b": b, "stride": stride, "pads": pads}
        cases.append((title, inputs, conv_forward_judge(**inputs)))
    return run_cases("conv2d_forward", fn, cases, verbose)


def direct_conv(x, w, b, stride, pads):
    """out[n, i, j, f] = sum over (kh, kw, c) of xp[n, i*SH + kh, j*SW + kw, c] w[kh, kw, c, f] + b[f]."""
    xp = numpy_ops.pad_nhwc(x, pads)
    KH, KW, _, F = w.shape
    OH, OW = (xp.shape[1] - KH) // stride[0] + 1, (xp.shape[2] - KW) // stride[1] + 1
    out = np.zeros((x.shape[0], OH, OW, F))
    for kh in range(KH):
        for kw in range(KW):
            out += xp[:, kh:kh + stride[0] * OH:stride[0], kw:kw + stride[1] * OW:stride[1], :] @ w[kh, kw]
    return out + b


def conv_forward_judge(x, w, b, stride, pads):
    expected = numpy_ops.conv2d_forward(x, w, b, stride, pads)[0]
    direct = direct_conv(x, w, b, stride, pads)
    KH, KW, C, F = w.shape
    cols = numpy_ops.im2col(x, KH, KW, stride, pads)
    shape = expected.shape
    variants = [((cols @ w.reshape(F, -1).T + b).reshape(shape),
                 "The kernel is flattened as w.reshape(F, -1).T: that mixes up filters and patch entries. "
                 "im2col's columns are in (kh, kw, c) order, so use w.reshape(KH*KW*C, F).")]
    for order, name in (((2, 0, 1), "(c, kh, kw)"), ((1, 0, 2), "(kw, kh, c)"), ((0, 2, 1), "(kh, c, kw)"),
                        ((2, 1, 0), "(c, kw, kh)"), ((1, 2, 0), "(kw, c, kh)")):
        variants.append(((cols @ w.transpose(order + (3,)).reshape(-1, F) + b).reshape(shape),
                         f"The kernel is flattened in {name} order, but im2col's patch entries are in "
                         f"(kh, kw, c) order: use w.reshape(KH*KW*C, F) as it is, with no transpose."))
    variants.append((expected - b, "It is the answer without the bias: add b (shape (F,), broadcast over rows)."))
    hint = variants_hint(variants)

    def judge(out, result):
        compare(result, "out", out, expected, direct, hint=hint, factors=(), numeric_name="direct sum")
    return judge


# ----------------------------------------------------------------------------------------
# 9. ReLU and dropout backward: gates
# ----------------------------------------------------------------------------------------
def check_relu_backward(fn, verbose=True):
    """Check relu_backward(dout, x) -> dx; x holds some exact zeros, where the slope is 0."""
    cases = []
    for title, shape, seed in (("x (4, 5) with 3 exact zeros", (4, 5), 0),
                               ("x (2, 3, 4, 2), images, with 3 exact zeros", (2, 3, 4, 2), 1)):
        rng = np.random.default_rng(seed)
        x, dout = rng.standard_normal(shape), rng.standard_normal(shape)
        x.flat[rng.choice(x.size, 3, replace=False)] = 0.0
        cases.append((title, {"dout": dout, "x": x}, relu_judge(dout, x)))
    return run_cases("relu_backward", fn, cases, verbose)


def relu_judge(dout, x):
    expected = Relu().backward(dout, np.maximum(x, 0))
    xc = x.copy()
    numeric = numerical_gradient(lambda: float(np.sum(np.maximum(xc, 0) * dout)), xc)
    numeric[x == 0] = 0.0              # no slope at 0: central differences give 1/2 there; Keras takes 0
    hint = variants_hint([
        (dout * (x >= 0), "Wrong exactly where x == 0: ReLU's slope at 0 is taken as 0 (Keras's convention), "
                          "so the gate is x > 0, not x >= 0."),
        ((x > 0) * 1.0, "It is the gate (x > 0) alone: multiply it by dout."),
        (np.maximum(dout, 0), "It is relu(dout): the gate is decided by x (x > 0), not by the sign of dout."),
        (dout * np.maximum(x, 0), "It multiplies dout by relu(x): the slope is 0 or 1, (x > 0)."),
        (dout * (x < 0), "The gate is reversed: the gradient passes where x > 0."),
    ])

    def judge(out, result):
        compare(result, "dx", out, expected, numeric, hint=hint, factors=())
    return judge


def check_dropout_backward(fn, verbose=True):
    """Check dropout_backward(dout, keep, rate) -> dx for out = x * keep / (1 - rate)."""
    cases = []
    for title, shape, rate, seed in (("x (4, 5), rate 0.4", (4, 5), 0.4, 0),
                                     ("x (2, 3, 4, 2), images, rate 0.25", (2, 3, 4, 2), 0.25, 1)):
        rng = np.random.default_rng(seed)
        keep, dout = rng.random(shape) >= rate, rng.standard_normal(shape)
        cases.append((title, {"dout": dout, "keep": keep, "rate": rate}, dropout_judge(dout, keep, rate)))
    return run_cases("dropout_backward", fn, cases, verbose)


def dropout_judge(dout, keep, rate):
    layer = Dropout(rate, name="reference_dropout")
    layer.cache = keep / (1 - rate)                    # the mask its forward pass would have kept
    expected = layer.backward(dout)
    x = np.zeros(keep.shape)
    numeric = numerical_gradient(lambda: float(np.sum(x * keep / (1 - rate) * dout)), x)
    factors = [(1 - rate, f"{1 - rate:g} = 1 - rate",
                "the mask is not scaled by 1/(1 - rate), as the forward pass's is."),
               ((1 - rate) ** 2, f"{(1 - rate) ** 2:g} = (1 - rate)^2",
                "the mask is multiplied by (1 - rate) where it must be divided by it."),
               ((1 - rate) / rate, f"{(1 - rate) / rate:g} = (1 - rate)/rate",
                "divided by rate: rate is the fraction DROPPED; the kept units are scaled by 1/(1 - rate)."),
               (1 / (1 - rate), f"{1 / (1 - rate):g} = 1/(1 - rate)", "the 1/(1 - rate) is applied twice.")]

    def hint(received, expected):
        leaked = int(np.sum((received != 0) & ~keep))
        if leaked:
            return (f" {leaked} of the {int(np.sum(~keep))} dropped units received gradient: a dropped unit "
                    f"did not reach the output, so its gradient is 0 (multiply by keep).")
        return ""

    def judge(out, result):
        compare(result, "dx", out, expected, numeric, hint=hint, factors=factors)
    return judge


# ----------------------------------------------------------------------------------------
# 10. Average pooling backward: every cell gets its share
# ----------------------------------------------------------------------------------------
def check_avgpool_backward(fn, verbose=True):
    """Check avgpool_backward(dout, x, pool_size) -> dx, non-overlapping windows (stride = pool)."""
    cases = []
    for title, x_shape, pool, seed in (("x (2, 4, 6, 3), 2x2 windows", (2, 4, 6, 3), (2, 2), 0),
                                        ("x (1, 6, 4, 2), 3x2 windows (3 rows, 2 columns)", (1, 6, 4, 2),
                                         (3, 2), 1)):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(x_shape)
        dout = rng.standard_normal((x_shape[0], x_shape[1] // pool[0], x_shape[2] // pool[1], x_shape[3]))
        cases.append((title, {"dout": dout, "x": x, "pool_size": pool}, avgpool_judge(dout, x, pool)))
    return run_cases("avgpool_backward", fn, cases, verbose)


def avgpool_judge(dout, x, pool):
    layer = AveragePooling2D(pool, name="reference_avgpool")
    layer.build(x.shape[1:])
    layer.forward(x, training=True)
    expected = layer.backward(dout)
    xc = x.copy()
    numeric = numerical_gradient(lambda: float(np.sum(layer.forward(xc) * dout)), xc)
    PH, PW = pool
    factors = count_factors("PH*PW", PH * PW, "the window's cells") + count_factors("N", len(x), "the batch size")
    hint = routing_share_hint(PH * PW)

    def judge(out, result):
        compare(result, "dx", out, expected, numeric, hint=hint, factors=factors)
    return judge


def routing_share_hint(cells):
    def hint(received, expected):
        starved = int(np.sum((received == 0) & (expected != 0)))
        if starved:
            return (f" {starved} of the {expected.size} cells received no gradient: every cell of a window "
                    f"moves the mean, so each gets dout / {cells} (not only one cell per window).")
        return ""
    return hint


def check_global_avgpool_backward(fn, verbose=True):
    """Check global_avgpool_backward(dout, x) -> dx for out[n, c] = mean of x[n, :, :, c]."""
    cases = []
    for title, x_shape, seed in (("x (2, 4, 5, 3)", (2, 4, 5, 3), 0), ("x (3, 3, 2, 4)", (3, 3, 2, 4), 1)):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(x_shape)
        dout = rng.standard_normal((x_shape[0], x_shape[3]))
        cases.append((title, {"dout": dout, "x": x}, global_avgpool_judge(dout, x)))
    return run_cases("global_avgpool_backward", fn, cases, verbose)


def global_avgpool_judge(dout, x):
    layer = GlobalAveragePooling2D(name="reference_global_avgpool")
    layer.build(x.shape[1:])
    layer.forward(x, training=True)
    expected = layer.backward(dout)
    xc = x.copy()
    numeric = numerical_gradient(lambda: float(np.sum(layer.forward(xc) * dout)), xc)
    N, H, W, C = x.shape
    factors = count_factors("H*W", H * W, "the pixels per channel") + count_factors("N", N, "the batch size")

    def judge(out, result):
        compare(result, "dx", out, expected, numeric, hint=routing_share_hint(H * W), factors=factors)
    return judge


# ----------------------------------------------------------------------------------------
# 11. BatchNormalization backward, training mode: the classic
# ----------------------------------------------------------------------------------------
def reference_batchnorm(dout, x, gamma, beta, eps):
    mean, var = numpy_ops.batchnorm_stats(x)
    out, saved = numpy_ops.batchnorm_forward(x, mean, var, gamma, beta, eps)
    return out, numpy_ops.batchnorm_backward(dout, saved, True)


def check_batchnorm_backward(fn, verbose=True):
    """Check batchnorm_backward(dout, x, gamma, eps) -> (dx, dgamma, dbeta), the batch's own statistics."""
    cases = []
    for title, shape, seed in (("x (6, 3): 6 samples, 3 features", (6, 3), 0),
                               ("x (2, 3, 4, 5): images, statistics over N*H*W = 24 values", (2, 3, 4, 5), 1)):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(shape) * 2 + 1
        gamma, beta = rng.standard_normal(shape[-1]), rng.standard_normal(shape[-1])
        dout = rng.standard_normal(shape)
        inputs = {"dout": dout, "x": x, "gamma": gamma, "eps": 1e-3}
        cases.append((title, inputs, batchnorm_judge(dout, x, gamma, beta, 1e-3)))
    return run_cases("batchnorm_backward", fn, cases, verbose)


def batchnorm_judge(dout, x, gamma, beta, eps):
    _, expected = reference_batchnorm(dout, x, gamma, beta, eps)
    arrays = [a.copy() for a in (x, gamma, beta)]
    numeric = [numerical_gradient(lambda: float(np.sum(reference_batchnorm(dout, *arrays, eps)[0] * dout)), a)
               for a in arrays]
    axes = tuple(range(x.ndim - 1))
    m, N = x.size // x.shape[-1], x.shape[0]
    inv_std = 1 / np.sqrt(x.var(axis=axes) + eps)
    xhat = (x - x.mean(axis=axes)) * inv_std
    dxhat = dout * gamma
    mean_term = dxhat.mean(axis=axes)                      # through mu
    var_term = xhat * (dxhat * xhat).mean(axis=axes)       # through var
    variants = [
        (dxhat * inv_std, "It is dout * gamma / sqrt(var + eps): the mean and the variance are treated as "
                          "constants (that is inference mode). In training they are computed from x, so dx "
                          "also needs the mean's term -mean(dxhat) and the variance's term -xhat * mean(dxhat * xhat), "
                          "with dxhat = dout * gamma."),
        (inv_std * (dxhat - var_term), "The mean's term is missing: subtract mean(dxhat) over the batch "
                                       "(dxhat = dout * gamma), the path through mu."),
        (inv_std * (dxhat - mean_term), "The variance's term is missing: subtract xhat * mean(dxhat * xhat), "
                                        "the path through var."),
        (dout * inv_std - inv_std * (dout.mean(axis=axes) + xhat * (dout * xhat).mean(axis=axes)) * gamma,
         "gamma multiplies only part of dx: scale dout by gamma first (dxhat = dout * gamma), then take "
         "both terms of dxhat."),
    ]
    if x.ndim > 2:
        variants.append((inv_std / N * (N * dxhat - dxhat.sum(axis=axes) - xhat * (dxhat * xhat).sum(axis=axes)),
                         f"The means are taken over N = {N} where a channel has m = N*H*W = {m} values: the "
                         f"statistics, and so their gradients, run over every axis but the channels."))
        variants.append((inv_std * (dxhat - dxhat.mean(axis=0) - xhat * (dxhat * xhat).mean(axis=0)),
                         "The means are taken over axis 0 only: for images they run over axes (0, 1, 2), "
                         "every value of a channel."))
    hints = {"dx": variants_hint(variants),
             "dgamma": variants_hint([((dout * x).sum(axis=axes),
                                      "It is sum(dout * x): dgamma multiplies xhat, the normalised x.")])}
    factors = count_factors("m", m, "the values per channel") + (count_factors("N", N, "the batch size")
                                                                  if N != m else [])
    names = ["dx", "dgamma", "dbeta"]

    def judge(out, result):
        out = unpack(result, out, names)
        if out is not None:
            for name, r, e, n in zip(names, out, expected, numeric):
                compare(result, name, r, e, n, batch=N, hint=hints.get(name),
                        factors=None if name == "dx" else factors, axes=(("channel",) if name != "dx" else None))
    return judge


CHECKERS = {                         # in the order of the course: notebooks 01, 02, 03, then 04
    "dense_backward": check_dense_backward,
    "softmax_cross_entropy": check_softmax_cross_entropy,
    "softmax_jvp": check_softmax_jvp,
    "two_layer_backward": check_two_layer_backward,
    "conv2d_forward": check_conv2d_forward,
    "conv2d_backward": check_conv2d_backward,
    "maxpool_backward": check_maxpool_backward,
    "relu_backward": check_relu_backward,
    "dropout_backward": check_dropout_backward,
    "avgpool_backward": check_avgpool_backward,
    "global_avgpool_backward": check_global_avgpool_backward,
    "batchnorm_backward": check_batchnorm_backward,
    "adam_step": check_adam_step,
}
