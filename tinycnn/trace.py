"""model.trace(x, y): one training step with every tensor kept, to look at layer by layer.

    trace = model.trace(x_batch, y_batch)
    trace.loss                  the step's loss (the compiled loss + the regularizers' penalties)
    trace.forward[i]            .layer (name), .input, .output            in forward order
    trace.backward[i]           .layer, .dout (dL/d output), .dx (dL/d input), .grads {weight: dL/dW}
                                                                          in backward order
    trace.summary()             a table: shapes and norms of every layer's tensors
    trace.plot()                the network, each arrow labelled with ||activation|| and ||gradient||
    for step in trace.steps():  one layer's forward or backward each: equation, shapes, a picture

What runs is the training step of Model._train_batch, on the NumPy reference: every layer's own
forward(x, training=True), in order (a functional model's nodes in topological order, each
call's cache kept apart), the loss and its gradient, then every backward in reverse, the
gradient of a tensor read by several layers summed (as tinycnn/graph.py's Graph.backward), the
regularizers' gradients added (training.penalties). Then nothing is left changed: the weights,
BatchNormalization's moving statistics, the layers' grads and caches, and the random streams
are put back, and the optimizer is never called. So the dropout masks a trace shows are the
ones the next train_on_batch will draw, and set_random_seed(s) before it repeats it exactly.

Two choices a reader should know:
  * softmax + cross-entropy: the loss hands the softmax dL/dz = (p - y) / N for its input z,
    not dL/dp (tinycnn/layers/activations.py, LogitsGradient). The last layer's .dout is that
    dL/dz, a plain array, and its record has .logits = True; dL/dp itself never exists.
  * a layer called several times (a shared layer) has a record per call; .grads is the layer's
    whole dL/dW (the sum over its calls, plus its regularizer), what the optimizer applies,
    and .call_grads this call's share.
"""
import base64
import html
import io

import numpy as np

from . import backend, outputs, training, validation
from .graph import add
from .layers.activations import Activation, LogitsGradient
from .utils import rng


class Forward:
    """One layer call's forward: .layer (its name), .kind (its class), .input (a list for a merge), .output."""

    def __init__(self, layer, call, inputs, output):
        self.layer, self.kind, self.call = layer.name, type(layer).__name__, call
        self.input, self.output = inputs, output

    def __repr__(self):
        return f"<Forward {label(self)}: {shapes(self.input)} -> {shapes(self.output)}>"


class Backward:
    """One layer call's backward: .dout = dL/d(output), .dx = dL/d(input) (a list for a merge),
    .grads = {weight name: dL/dW} (the regularizer's share included); .logits: dout is dL/dz."""

    def __init__(self, layer, call, dout, dx, call_grads, logits):
        self.layer, self.kind, self.call = layer.name, type(layer).__name__, call
        self.dout, self.dx, self.logits = dout, dx, logits
        self.call_grads, self.grads = call_grads, None       # grads: filled once every call is done

    def __repr__(self):
        return f"<Backward {label(self)}: dout {shapes(self.dout)} -> dx {shapes(self.dx)}>"


class Call:
    """One call of a layer: the tensors (any hashable keys) it reads and the one it makes."""

    def __init__(self, layer, inputs, output, index):
        self.layer, self.inputs, self.output, self.index = layer, list(inputs), output, index


def calls_of(model):
    """(input tensors, calls in forward order, output tensors). A Sequential is one chain."""
    g = getattr(model, "_graph", None)
    if g is None:
        tensors = [object() for _ in range(len(model.layers) + 1)]     # x, then each layer's output
        return tensors[:1], [Call(l, [tensors[i]], tensors[i + 1], 0) for i, l in enumerate(model.layers)], \
            tensors[-1:]
    seen, calls = {}, []
    for node in g.nodes:                                      # topological order
        index = seen[id(node.layer)] = seen.get(id(node.layer), -1) + 1
        calls.append(Call(node.layer, node.inputs, node.output, index))
    return list(g.inputs), calls, list(g.outputs)


class Saved:
    """Everything a step changes, copied, to be put back: weights (moving statistics too), grads,
    caches (the layers' and a graph's nodes'), the random generators."""

    def __init__(self, model):
        self.layers = [(layer, dict(layer.params), {k: np.array(v) for k, v in layer.params.items()},
                        dict(layer.grads), {k: np.array(v) for k, v in layer.grads.items()}, layer.cache)
                       for layer in model.layers]
        self.nodes = [(n, n.cache) for n in getattr(getattr(model, "_graph", None), "nodes", [])]
        generators = [rng()] + [l.generator for l in model.layers if getattr(l, "generator", None) is not None]
        self.generators = [(g, g.bit_generator.state) for g in generators]

    def restore(self):
        for layer, params, values, grads, grad_values, cache in self.layers:
            for store, originals, copies in ((layer.params, params, values), (layer.grads, grads, grad_values)):
                for key, array in originals.items():
                    np.copyto(array, copies[key])             # the same arrays, their old values
                store.clear()
                store.update(originals)
            layer.cache = cache
        for node, cache in self.nodes:
            node.cache = cache
        for g, state in self.generators:
            g.bit_generator.state = state


def trace(model, x, y, sample_weight=None):
    """model.trace(x, y): one training step's tensors, recorded in a Trace; nothing is changed."""
    model._require_compiled("trace")
    x = validation.inputs(model, x, "trace")
    y = validation.targets(model, y, outputs.rows(x), "trace")
    sample_weight = validation.sample_weights(model, sample_weight, outputs.rows(x), "trace")
    saved = Saved(model)
    try:
        with backend.using("numpy"), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return run(model, x, y, sample_weight)         # NaN and inf are recorded, not refused
    finally:
        saved.restore()


def run(model, x, y, sample_weight):
    """The step on checked arrays: every call's forward, the loss, every backward in reverse."""
    inputs, calls, outs = calls_of(model)
    values = dict(zip(map(id, inputs), list(x) if isinstance(x, outputs.Arrays) else [x]))   # tensor -> array
    forward, caches = [], []
    for call in calls:
        layer, xs = call.layer, [values[id(t)] for t in call.inputs]
        arg = xs if layer.multi_input else xs[0]
        values[id(call.output)] = layer.forward(arg, training=True)
        caches.append(layer.cache)                            # this call's: a shared layer has one per call
        forward.append(Forward(layer, call.index, arg, values[id(call.output)]))
    out = [values[id(t)] for t in outs]
    out = outputs.Arrays(out) if len(out) > 1 else out[0]
    data_loss = model.loss(y, out, sample_weight=sample_weight)
    start = model._loss_gradient(y, out, sample_weight)
    grads, by_tensor, sent = {}, {}, {}       # tensor -> dL/d tensor (summed over readers); (tensor, reader) -> share
    for t, d in zip(outs, start if len(outs) > 1 else [start]):
        add(grads, t, d)
        sent[id(t), "loss"] = d.dz if isinstance(d, LogitsGradient) else d
    shared = {id(c.layer) for c in calls if c.index > 0}
    backward, totals = [], {}                                 # layer -> its grads summed over its calls
    for call, cache in zip(reversed(calls), reversed(caches)):
        layer = call.layer
        dout = grads.pop(id(call.output), None)
        if dout is None:                                      # nothing downstream reads it: no gradient
            dout = np.zeros_like(values[id(call.output)])
        layer.cache = cache
        dx = layer.backward(dout)                             # fills layer.grads
        mine = {k: np.array(layer.grads[k]) for k in layer.trained_keys()}
        total = totals.setdefault(id(layer), (layer, {}))[1]
        for k, g in mine.items():
            total[k] = total[k] + g if k in total else g
        dxs = list(dx) if layer.multi_input else [dx]
        for t, d in zip(call.inputs, dxs):
            add(grads, t, d)
            sent[id(t), id(call.output)] = d
        logits = isinstance(dout, LogitsGradient)
        dout = dout.dz if logits else dout                    # dL/dz: what softmax + cross-entropy hands over
        by_tensor[id(call.output)] = dout
        backward.append(Backward(layer, call.index, dout, dxs if layer.multi_input else dx,
                                 mine if id(layer) in shared else None, logits))
    for layer, total in totals.values():
        layer.grads.update(total)
    penalty = training.penalties(model, add_gradients=True)  # the real step's code: loss and grads
    final = {id(layer): {k: np.array(layer.grads[k]) for k in layer.trained_keys()} for layer, _ in totals.values()}
    for record, call in zip(backward, reversed(calls)):
        record.grads = final[id(call.layer)]
    for t in inputs:
        by_tensor[id(t)] = grads.get(id(t))
    return Trace(model, outputs.rows(x), data_loss + penalty, data_loss, penalty, forward, backward, inputs, calls,
                 outs, values, by_tensor, sent)


# ------------------------------------------------------------------------------------------
# Reading a trace
# ------------------------------------------------------------------------------------------
def norm(a):
    """The Euclidean (Frobenius) norm of an array, of a list of them (all together), or None."""
    if a is None:
        return None
    if isinstance(a, (list, tuple)):
        return float(np.sqrt(sum(norm(b) ** 2 for b in a)))
    return float(np.sqrt(np.sum(np.square(np.asarray(a, dtype=np.float64)))))


def shapes(a):
    if a is None:
        return "-"
    if isinstance(a, (list, tuple)):
        return ", ".join(shapes(b) for b in a)
    return str(tuple(np.shape(a)))


def fmt(value):
    return "-" if value is None else f"{value:.3g}"


def label(record):
    return record.layer + (f" (call {record.call + 1})" if record.call else "")


class Text(str):
    """A string that a notebook does not show a second time after it was printed."""

    def _ipython_display_(self):
        pass


class Trace:
    """What model.trace(x, y) recorded (see the module docstring)."""

    def __init__(self, model, batch_size, loss, data_loss, penalty, forward, backward, inputs, calls, outs, values,
                 by_tensor, sent):
        self.model_name, self.loss_name = model.name, getattr(model.loss, "name", "loss")
        self.loss, self.data_loss, self.penalty = float(loss), float(data_loss), float(penalty)
        self.forward, self.backward = forward, backward
        self.batch_size = batch_size
        self._layers = {c.layer.name: c.layer for c in calls}
        self._inputs, self._calls, self._outs = inputs, calls, outs
        self._values, self._grads, self._sent = values, by_tensor, sent
        self.input_grad = [by_tensor[id(t)] for t in inputs]   # dL/d(each model input)
        self.input_grad = self.input_grad[0] if len(inputs) == 1 else self.input_grad

    def __repr__(self):
        return (f"<Trace of {self.model_name}: {len(self.forward)} layer calls, batch of {self.batch_size}, "
                f"loss {self.loss:.4g}>")

    @property
    def grads(self):
        """{layer name: {weight name: dL/dW}}: the gradients the optimizer would apply."""
        return {r.layer: r.grads for r in self.backward}

    def _backward_of(self, forward_record):
        return next(r for r in self.backward if r.layer == forward_record.layer and r.call == forward_record.call)

    # -- the table ------------------------------------------------------------------------------
    def summary(self, print_fn=None):
        """Print (through print_fn, default print) and return a table: every layer call in forward
        order, its input and output shapes, the norms ||out||, ||dout||, ||dx||, and each weight's
        shape and ||dL/dW||. Norms are Euclidean (Frobenius), over the whole batch."""
        head = ("Layer (type)", "Input shape", "Output shape", "|out|", "|dout|", "|dx|", "Weight", "|dW|")
        rows = []
        for f in self.forward:
            b = self._backward_of(f)
            name = f"{label(f)} ({f.kind})"
            weights = [(f"{k} {shapes(self._layers[f.layer].params[k])}", fmt(norm(g))) for k, g in b.grads.items()]
            first = weights[0] if weights else ("", "")
            rows.append((name, shapes(f.input), shapes(f.output), fmt(norm(f.output)),
                         fmt(norm(b.dout)) + ("*" if b.logits else ""), fmt(norm(b.dx)), *first))
            rows += [("",) * 6 + w for w in weights[1:]]
        widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
        line = lambda r: "  ".join(c.rjust(w) if 3 <= i <= 5 or i == 7 else c.ljust(w)
                                   for i, (c, w) in enumerate(zip(r, widths))).rstrip()
        rule = "-" * len(line(head))
        loss = f"loss {self.loss:.6g}" + (f" = {self.loss_name} {self.data_loss:.6g} + regularizers {self.penalty:.6g}"
                                          if self.penalty else f" ({self.loss_name})")
        text = [f'Trace of one training step: model "{self.model_name}", batch of {self.batch_size}, {loss}',
                rule, line(head), rule] + [line(r) for r in rows] + [rule]
        if any(b.logits for b in self.backward):
            text.append("* dL/dz, z the softmax's input: cross-entropy hands (p - y) / N to the softmax directly")
        text = "\n".join(text)
        for row in text.split("\n"):
            (print_fn or print)(row)
        return Text(text)

    # -- the picture of the network ------------------------------------------------------------
    def plot(self, figsize=None):
        """The network as boxes (each layer call with its output shape, the input(s), the loss) and,
        on every arrow, the norm of the activation going forward (blue, left) and of the gradient
        coming back (red, right) from that arrow's reader (where a tensor forks, the readers' shares
        add up to the producer's dout); the darker, the larger (log scale)."""
        import matplotlib.pyplot as plt
        from matplotlib import colormaps, colors

        from .graph_plot import ranks

        names = {id(c.output): label(r) for c, r in zip(self._calls, self.forward)}
        boxes = [(f"input{i or ''}", f"Input\n{shapes(self._values[id(t)])}") for i, t in enumerate(self._inputs)]
        names.update({id(t): boxes[i][0] for i, t in enumerate(self._inputs)})
        boxes += [(label(r), f"{label(r)} ({r.kind})\n{shapes(r.output)}") for r in self.forward]
        boxes.append(("loss", f"loss = {self.loss:.4g}"))
        edges = [(names[id(t)], names[id(c.output)], t, id(c.output)) for c in self._calls for t in c.inputs]
        edges += [(names[id(t)], "loss", t, "loss") for t in self._outs]
        rank = ranks(boxes, [(a, b) for a, b, _, _ in edges])
        levels = {}
        for name, _ in boxes:
            levels.setdefault(rank[name], []).append(name)
        width = max(len(v) for v in levels.values())
        xy = {n: ((i - (len(v) - 1) / 2) * 3.2, -r * 1.2) for r, v in levels.items() for i, n in enumerate(v)}
        fig, ax = plt.subplots(figsize=figsize or (max(6.0, 3.4 * width), 1.0 + 0.95 * len(levels)))
        fw = [norm(self._values[id(t)]) for _, _, t, _ in edges]
        bw = [norm(self._sent.get((id(t), reader))) for _, _, t, reader in edges]   # what this reader sent back

        def shade(cmap, vals):                      # log-scaled colours, kept visible (0.35 .. 1)
            logs = [np.log10(v) if v and np.isfinite(v) and v > 0 else None for v in vals]
            known = [v for v in logs if v is not None] or [0.0]
            scale = colors.Normalize(min(known), max(known) + 1e-12)
            return [colormaps[cmap](0.35 + 0.65 * scale(v)) if v is not None else "grey" for v in logs]
        xs, ys = [p[0] for p in xy.values()], [p[1] for p in xy.values()]
        span = (max(xs) - min(xs) + 3.4, max(ys) - min(ys) + 1.0)          # the axes' data size
        inch = (fig.get_size_inches()[0] / span[0], fig.get_size_inches()[1] / span[1])   # inches per unit
        for (a, b, _, _), f, g, cf, cg in zip(edges, fw, bw, shade("Blues", fw), shade("Reds", bw)):
            (xa, ya), (xb, yb) = xy[a], xy[b]
            bend = 0.3 if rank[b] - rank[a] > 1 and xa == xb else 0.0      # a skip: curved, around the boxes
            bulge = bend * abs(ya - yb) * inch[1] / inch[0] / 2             # how far the curve's middle moves
            for dx, start, end, c, text, ha in ((-0.18, (xa, ya - 0.2), (xb, yb + 0.2), cf, f"|a| {fmt(f)}", "right"),
                                                (0.18, (xb, yb + 0.2), (xa, ya - 0.2), cg, f"|g| {fmt(g)}", "left")):
                ax.annotate("", xy=(end[0] + dx, end[1]), xytext=(start[0] + dx, start[1]),
                            arrowprops={"arrowstyle": "-|>", "lw": 2.2, "color": c, "shrinkA": 0, "shrinkB": 0,
                                        "connectionstyle": f"arc3,rad={bend}"})
                ax.text((xa + xb) / 2 + 2.2 * dx + np.sign(dx) * bulge, (ya + yb) / 2, text, ha=ha, va="center",
                        fontsize=7, color=c)
        for name, text in boxes:
            ax.text(*xy[name], text, ha="center", va="center", fontsize=8,
                    bbox={"boxstyle": "round,pad=0.3", "facecolor": "white" if name != "loss" else "#fff3cd",
                          "edgecolor": "black"})
        ax.set_xlim(min(xs) - 1.7, max(xs) + 1.7)
        ax.set_ylim(min(ys) - 0.5, max(ys) + 0.5)
        ax.axis("off")
        ax.set_title(f"{self.model_name}: one training step (blue |a|: activation forward, "
                     f"red |g|: gradient back)", fontsize=9)
        fig.tight_layout()
        return fig

    # -- step by step ----------------------------------------------------------------------------
    def steps(self):
        """An iterator of Steps: every layer call's forward in order, then every backward in reverse.
        Each shows itself: its text in a terminal (print(step), or the REPL), and in a notebook its
        equation, shapes and a picture of its tensors."""
        total = len(self.forward) + len(self.backward)
        for i, f in enumerate(self.forward):
            yield Step(self, i + 1, total, "forward", f)
        for i, b in enumerate(self.backward):
            yield Step(self, len(self.forward) + i + 1, total, "backward", b)


# ------------------------------------------------------------------------------------------
# One step, shown: the equations per kind of layer
# ------------------------------------------------------------------------------------------
EQUATIONS = {           # class -> (forward, backward); z is the output before the activation, if any
    "Dense": ("z = x @ W + b", "dW = x^T @ dz,  db = sum over the batch of dz,  dx = dz @ W^T"),
    "Conv2D": ("z[n,i,j,f] = sum over (di,dj,c) of x[n, i*s+di, j*s+dj, c] * W[di,dj,c,f] + b[f]"
               "   (im2col: z = cols(x) @ W + b)",
               "dW = cols(x)^T @ dz,  db = sum over (n,i,j) of dz,  dx = col2im(dz @ W^T)"),
    "Conv1D": ("z[n,t,f] = sum over (dt,c) of x[n, t*s+dt, c] * W[dt,c,f] + b[f]",
               "dW = cols(x)^T @ dz,  db = sum over (n,t) of dz,  dx = col2im(dz @ W^T)"),
    "Conv2DTranspose": ("z = each input pixel x[n,i,j,:] @ W paints a KHxKW patch at (i*s, j*s), overlaps summed, + b",
                        "dx = the forward convolution of dz with W,  dW = sum of x (x) dz patches,  db = sum dz"),
    "DepthwiseConv2D": ("z[..., c] = conv(x[..., c], W[:, :, c]) + b[c]   (one filter per channel, no mixing)",
                        "dW, db, dx: Conv2D's formulas, channel by channel"),
    "SeparableConv2D": ("z = pointwise(depthwise(x)): a filter per channel, then a 1x1 convolution mixing them",
                        "backward through the 1x1 convolution, then through the depthwise one"),
    "MaxPooling2D": ("out[n,i,j,c] = max of x over the window at (i*s, j*s)",
                     "dx = dout routed to each window's largest input, 0 elsewhere"),
    "MaxPooling1D": ("out[n,t,c] = max of x over the window at t*s",
                     "dx = dout routed to each window's largest input, 0 elsewhere"),
    "AveragePooling2D": ("out[n,i,j,c] = mean of x over the window at (i*s, j*s)",
                         "dx = dout / (window size), spread over its window"),
    "GlobalAveragePooling2D": ("out[n,c] = mean over (i,j) of x[n,i,j,c]", "dx[n,i,j,c] = dout[n,c] / (H*W)"),
    "GlobalMaxPooling2D": ("out[n,c] = max over (i,j) of x[n,i,j,c]",
                           "dx = dout[n,c] at each channel's largest pixel, 0 elsewhere"),
    "Dropout": ("out = x * mask,  mask = (u >= rate) / (1 - rate),  u ~ U[0, 1)", "dx = dout * mask"),
    "Flatten": ("out = x.reshape(N, -1)", "dx = dout.reshape(x.shape)"),
    "Reshape": ("out = x.reshape(N, *target_shape)", "dx = dout.reshape(x.shape)"),
    "BatchNormalization": ("xhat = (x - mu) / sqrt(var + eps),  out = gamma * xhat + beta   (mu, var: this batch's,"
                           " per channel)",
                           "dbeta = sum dout,  dgamma = sum dout * xhat,  "
                           "dx = gamma / (m sqrt(var + eps)) * (m dout - dbeta - xhat dgamma)"),
    "ZeroPadding2D": ("out = x with a border of zeros", "dx = dout without the border"),
    "UpSampling2D": ("out = every pixel repeated into a block", "dx = dout summed over each block"),
    "Rescaling": ("out = x * scale + offset", "dx = dout * scale"),
    "Add": ("out = x1 + x2 + ...", "dx_k = dout   (each input receives the whole gradient)"),
    "Subtract": ("out = x1 - x2", "dx1 = dout,  dx2 = -dout"),
    "Multiply": ("out = x1 * x2 * ...", "dx_k = dout * (the product of the other inputs)"),
    "Average": ("out = (x1 + ... + xK) / K", "dx_k = dout / K"),
    "Maximum": ("out = elementwise max of the inputs", "dx_k = dout where x_k is the largest, 0 elsewhere"),
    "Minimum": ("out = elementwise min of the inputs", "dx_k = dout where x_k is the smallest, 0 elsewhere"),
    "Concatenate": ("out = the inputs joined along the last axis", "dx_k = dout's slice for x_k"),
}
ACTIVATIONS = {         # name -> (forward, backward) in a = f(z)
    "relu": ("a = max(z, 0)", "dz = da * (z > 0)"),
    "sigmoid": ("a = 1 / (1 + e^-z)", "dz = da * a * (1 - a)"),
    "tanh": ("a = tanh(z)", "dz = da * (1 - a^2)"),
    "softmax": ("a = e^z / sum(e^z)   (over the last axis)", "dz = a * (da - sum(da * a))"),
    "leaky_relu": ("a = z if z > 0 else s * z", "dz = da * (1 if z > 0 else s)"),
    "softplus": ("a = log(1 + e^z)", "dz = da * sigmoid(z)"),
    "elu": ("a = z if z > 0 else e^z - 1", "dz = da * (1 if z > 0 else e^z)"),
    "gelu": ("a = z * Phi(z)", "dz = da * (Phi(z) + z * phi(z))"),
    "silu": ("a = z * sigmoid(z)", "dz = da * s * (1 + z * (1 - s)),  s = sigmoid(z)"),
}
FUSED = "dz = (p - y) / N   (softmax + cross-entropy: the loss hands dL/dz to the softmax)"


def equation(step):
    """The step's equation lines: the layer's own, then its activation's (forward); the other way back."""
    layer = step.trace._layers[step.record.layer]
    act = getattr(getattr(layer, "activation", None), "name", None)
    if isinstance(layer, Activation):
        f, b = ACTIVATIONS.get(act, ("a = f(z)", "dz = da * f'(z)"))
        f = f.replace("a =", "out =").replace("z", "x")                      # in the layer's names: x -> out
        b = b.replace("dz", "dx").replace("da", "dout").replace("z", "x")
        return [f] if step.kind == "forward" else [FUSED.replace("dz", "dx") if step.record.logits else b]
    f, b = EQUATIONS.get(step.record.kind, ("out = f(x)", "dx = dout * df/dx   (the layer's backward)"))
    if act in (None, "linear"):
        if step.kind == "forward":
            return [f.replace("z =", "out =").replace("z[", "out[")]           # no activation: z is the output
        return [b.replace("dz", "dout")]
    fa, ba = ACTIVATIONS.get(act, ("a = f(z)", "dz = da * f'(z)"))
    if step.kind == "forward":
        return [f, fa.replace("a =", "out =")]
    return [FUSED if step.record.logits else ba.replace("da", "dout"), b]


class Step:
    """One layer call's forward or backward, shown: str() is text; in a notebook, HTML with a picture."""

    def __init__(self, trace, number, total, kind, record):
        self.trace, self.number, self.total, self.kind, self.record = trace, number, total, kind, record
        self.layer = record.layer
        self.equation = equation(self)
        if kind == "forward":                  # name -> array; the weights after the batched tensors
            self.tensors = {"x": record.input, "out": record.output, **self.trace._layers[record.layer].params}
        else:
            self.tensors = {"dout": record.dout, "dx": record.dx,
                            **{f"d{k}": g for k, g in (record.grads or {}).items()}}

    def items(self):
        """(name, array or None, batched) of each tensor, a merge's inputs (x1, x2, ...) one by one."""
        for name, a in self.tensors.items():
            batched = name in ("x", "out", "dout", "dx")
            if isinstance(a, list):
                yield from ((f"{name}{k + 1}", b, batched) for k, b in enumerate(a))
            else:
                yield name, a, batched

    def title(self):
        return f"Step {self.number}/{self.total}: {self.kind} through {label(self.record)} ({self.record.kind})"

    def rows(self):
        """(name, shape, norm, min, max) of each tensor; a merge's inputs and dx one by one."""
        return [(n, "-", "not needed", "", "") if a is None else
                (n, shapes(a), fmt(norm(a)), fmt(float(np.min(a))), fmt(float(np.max(a))))
                for n, a, _ in self.items()]

    def __str__(self):
        lines = [self.title(), *("  " + e for e in self.equation)]
        width = max(len(r[1]) for r in self.rows())
        for n, s, nm, lo, hi in self.rows():
            lines.append(f"  {n:<14} {s:<{width}}  norm {nm:<9}" + (f" min {lo:<9} max {hi}" if lo else ""))
        name, a = self.pictured()
        lines.append(f"  {name}:")
        lines += ["    " + row for row in text_picture(a)]
        return "\n".join(lines)

    __repr__ = __str__

    def pictured(self):
        """The tensor the text picture shows: the output going forward, dx coming back, as one sample's slice."""
        a = self.record.output if self.kind == "forward" else self.record.dx
        name = "out" if self.kind == "forward" else "dx"
        if isinstance(a, list):
            a, name = a[0], name + "1"
        if a is None:
            a, name = self.record.dout, "dout"
        return f"{name}{slice_name(np.ndim(a))}", first_slice(a)

    def figure(self):
        """A matplotlib Figure: each tensor of the step as a small image (one sample's slice, 0 white)."""
        from matplotlib.figure import Figure
        items = [item for item in self.items() if item[1] is not None]
        fig = Figure(figsize=(2.3 * len(items), 2.4))
        for i, (n, a, batched) in enumerate(items):
            ax = fig.add_subplot(1, len(items), i + 1)
            img = first_slice(a) if batched else weight_image(a)
            lim = float(np.nanmax(np.abs(img))) or 1.0
            im = ax.imshow(np.atleast_2d(img), cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest",
                           aspect="equal" if np.ndim(a) == 4 and not batched else "auto")
            ax.set_title(f"{n}{slice_name(np.ndim(a)) if batched else ''}\n{shapes(a)}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=6)
        fig.tight_layout()
        return fig

    def _repr_html_(self):
        buffer = io.BytesIO()
        self.figure().savefig(buffer, format="png", dpi=80)
        png = base64.b64encode(buffer.getvalue()).decode()
        cells = "".join(f"<tr><td><code>{html.escape(n)}</code></td><td>{s}</td><td>{nm}</td><td>{lo}</td>"
                        f"<td>{hi}</td></tr>" for n, s, nm, lo, hi in self.rows())
        return (f"<div><b>{html.escape(self.title())}</b><pre>{html.escape(chr(10).join(self.equation))}</pre>"
                f"<table><tr><th>tensor</th><th>shape</th><th>norm</th><th>min</th><th>max</th></tr>{cells}</table>"
                f"<img src='data:image/png;base64,{png}'/></div>")


def slice_name(ndim):
    return {2: "[:8, :28]", 3: "[0].T", 4: "[0, :, :, 0]"}.get(ndim, "[0]" if ndim > 4 else "")


def first_slice(a):
    """What a picture shows of a batched tensor: sample 0's first channel (images), a few rows (vectors)."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 4:
        return a[0, :, :, 0]                 # (H, W)
    if a.ndim == 3:
        return a[0].T                        # (C, steps)
    if a.ndim == 2:
        return a[:8, :28]
    return a[0].reshape(a.shape[1], -1) if a.ndim > 4 else np.atleast_2d(a)


def weight_image(w):
    """A weight as an image: a conv kernel's first 16 filters in a grid (input channel 0), a matrix as it is."""
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 4:
        return np.atleast_2d(w.reshape(w.shape[0], -1) if w.ndim > 2 else w)
    (KH, KW, _, F), n = w.shape, min(w.shape[3], 16)
    cols = int(np.ceil(np.sqrt(n)))
    rows = -(-n // cols)
    grid = np.full((rows * (KH + 1) - 1, cols * (KW + 1) - 1), np.nan)       # NaN: the gaps, left blank
    for f in range(n):
        r, c = divmod(f, cols)
        grid[r * (KH + 1):r * (KH + 1) + KH, c * (KW + 1):c * (KW + 1) + KW] = w[:, :, 0, f]
    return grid


RAMP = " .:-=+*#%@"


def text_picture(a):
    """A 2-D slice in text: its numbers if small, else |values| as characters, ' ' small to '@' largest."""
    a = np.atleast_2d(a)
    if a.size <= 32:
        return np.array2string(a, precision=3, suppress_small=True, max_line_width=100).split("\n")
    rows, cols = max(1, -(-a.shape[0] // 14)), max(1, -(-a.shape[1] // 28))      # at most 14 x 28 characters
    small = np.abs(a)[::rows, ::cols]
    top = small.max() or 1.0
    idx = np.clip((small / top * (len(RAMP) - 1)).round().astype(int), 0, len(RAMP) - 1)
    picture = ["".join(RAMP[i] for i in row) for row in idx]
    return [f"|value| from 0 (' ') to {top:.3g} ('@')" + ("" if rows == cols == 1 else
                                                          f", every {rows} row(s) and {cols} column(s)")] + \
        ["|" + p + "|" for p in picture]
