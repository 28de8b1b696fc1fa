"""The steps of a fast plan: one or more neighbouring layers computed together on a slice of the batch.

Every step keeps the contract of the layers it stands for: forward gives their output, backward
their dL/dx, and their grads are filled with dL/dparams summed over every slice of the batch
(end()). What a slice needs for backward lives in the step, per slice, never in the layer.

    ConvStep       Conv2D (ReLU or none), and the 2x2 max-pool and the dropout after it
    DenseStep      Dense on (N, in), and the dropout after it (ReLU or none); other activations
                   as written, but not those whose backward needs z (needs_z): they run as LayerStep
    PoolStep       MaxPooling2D, and the dropout after a 2x2 one
    DropoutStep    Dropout on its own
    ReshapeStep    Flatten
    ActivationStep Activation layers, with the layer's own activation functions (not needs_z)
    BatchNormStep  BatchNormalization, and the ReLU after it (norm_steps.py): on the whole batch
    LayerStep      any other layer: its own forward and backward, on the whole batch
"""
import numpy as np

from ...layers import Activation, BatchNormalization, Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from . import blocks, elementwise, pooling
from .conv import EMPTY, NO_DROPOUT, Conv, apply_dropout, dropout_args, gradients
from ..numpy_ops import offset_dtype


def own(layer, kind):
    """Is `layer` a `kind` whose forward and backward are tinycnn's own (not a subclass's, not patched)?"""
    return (isinstance(layer, kind) and (type(layer).forward, type(layer).backward) == (kind.forward, kind.backward)
            and "forward" not in vars(layer) and "backward" not in vars(layer))


def _two_by_two(layer):
    return own(layer, MaxPooling2D) and layer.pool_size == layer.strides == (2, 2) and layer.pads == (0, 0, 0, 0)


def total(parts, out):
    """out = the sum of the slices' parts (out: a buffer kept by the step)."""
    np.copyto(out, parts[0])
    for part in parts[1:]:
        out += part
    return out


class Step:
    parallel = True            # runs on slices of the batch, one per core
    kernels = ()               # the Numba functions it calls (to know what a first run compiles)

    def __init__(self, layers):
        self.layers, self.slices = layers, []
        self.blocks = []                  # per slice: buffers for one block at a time, shared by every step

    def slice(self, k):
        """Slice k's own state and the buffers it keeps from forward to backward."""
        while len(self.slices) <= k:
            self.slices.append({"scratch": blocks.Scratch()})
        while len(self.blocks) <= k:
            self.blocks.append(blocks.Scratch())
        return self.slices[k]

    def grads(self, layer, parts, **summed):
        """layer.grads[name] = the sum over the slices of summed[name] (a slice's key), in buffers kept here."""
        kept = self.__dict__.setdefault("kept", blocks.Scratch())
        for name, key in summed.items():
            if name in layer.params:
                p = layer.params[name]
                out = kept(name, p.shape, p.dtype)
                layer.grads[name] = total([self.slices[k][key].reshape(p.shape) for k in range(parts)], out)

    def begin(self, training, seed=None):
        """On the calling thread, before the slices: this step's weights and dropout seed."""

    def end(self, parts):
        """After every slice's backward: each layer's grads, summed over the slices."""

    def flops(self):
        return 0


def _dropout(layer, training, seed):
    if layer is None or not training:
        return NO_DROPOUT
    return dropout_args(layer.rate, layer.draw_seed() if seed is None else seed)


class ConvStep(Step):
    def __init__(self, conv, pool=None, dropout=None):
        super().__init__([layer for layer in (conv, pool, dropout) if layer is not None])
        self.layer, self.dropout = conv, dropout
        relu = conv.activation.name == "relu"
        self.conv = Conv(conv.in_shape, conv.params["kernel"].shape, conv.strides, conv.pads, relu, pool is not None)
        self.kernels = self.conv.alg.kernels + (elementwise.dropout, elementwise.gradients)
        self.per = int(np.prod(self.conv.out_shape))
        self.seen = None                  # the kernel that self.ctx was prepared from

    def begin(self, training, seed=None):
        w = self.layer.params["kernel"]
        if self.seen is None or self.seen.shape != w.shape or not np.array_equal(self.seen, w):
            self.ctx, self.seen = self.conv.alg.prepare(w), w.copy()     # (inference reuses Winograd's U)
        self.b = self.layer.params.get("bias", np.zeros(w.shape[3], dtype=w.dtype))
        self.drop = _dropout(self.dropout, training, seed)

    def forward(self, k, x, lo, training):
        s, n = self.slice(k), len(x)
        scratch = s["scratch"]
        out = scratch("out", (n,) + self.conv.out_shape)
        argmax = scratch("argmax", (n,) + self.conv.out_shape, np.uint8) if training and self.conv.pool else EMPTY
        shape = self.conv.alg.saved_shape(n)
        saved = scratch("saved", shape) if training and shape else None
        self.conv.forward(x, self.ctx, self.b, self.drop, lo * self.per, out, argmax, saved, self.blocks[k])
        s.update(x=x, out=out, argmax=argmax, saved=saved, lo=lo)
        return out

    def backward(self, k, dout, need_dx):
        s = self.slice(k)
        s["dw"] = s["scratch"]("dw_sum", self.conv.alg.dw_shape(), dout.dtype)
        s["db"] = s["scratch"]("db_sum", (self.conv.F,), np.float64)
        s["dw"].fill(0)
        s["db"].fill(0)
        dx = s["scratch"]("dx", s["x"].shape) if need_dx else None
        self.conv.backward(dout, s["x"], s["out"], s["argmax"], self.ctx, s["saved"], self.drop, s["lo"] * self.per,
                           s["dw"], s["db"], dx, self.blocks[k])
        return dx

    def end(self, parts):
        dw = total([self.slices[k]["dw"] for k in range(parts)], self.slices[0]["dw"])    # in slice 0's buffer
        self.layer.grads["kernel"] = self.conv.alg.finish(dw)                          # (KH, KW, C, F)
        self.grads(self.layer, parts, bias="db")

    def flops(self):
        (KH, KW, C, F), (OH, OW) = self.layer.params["kernel"].shape, (self.conv.OH, self.conv.OW)
        return 2 * OH * OW * KH * KW * C * F


class DenseStep(Step):
    kernels = (elementwise.dropout, elementwise.gradients)

    def __init__(self, dense, dropout=None):
        super().__init__([layer for layer in (dense, dropout) if layer is not None])
        self.layer, self.dropout = dense, dropout
        self.fused = dense.activation.name in ("relu", "linear")     # else: the activation as written
        self.relu = dense.activation.name == "relu"
        self.units = dense.units

    def begin(self, training, seed=None):
        self.w = self.layer.params["kernel"]
        self.b = self.layer.params.get("bias", np.zeros(self.units, dtype=self.w.dtype))
        self.drop = _dropout(self.dropout, training, seed)

    def forward(self, k, x, lo, training):
        s, n = self.slice(k), len(x)
        z = s["scratch"]("z", (n, self.units))
        np.matmul(x, self.w, out=z)                                           # (n, units)
        if self.fused:
            out = np.add(z, self.b, out=s["scratch"]("out", (n, self.units)))         # small: NumPy does it
            if self.relu:
                np.maximum(out, 0, out=out)
            apply_dropout(out, self.drop, lo * self.units)
        else:
            out = self.layer.activation.forward(z + self.b)
        s.update(x=x, out=out, lo=lo)
        return out

    def backward(self, k, dout, need_dx):
        s = self.slice(k)
        x, out, n = s["x"], s["out"], len(s["x"])
        s["db"] = np.zeros(self.units)
        if self.fused:
            dz = gradients(dout, out, self.relu, self.drop, s["lo"] * self.units, s["scratch"]("dz", (n, self.units)),
                           s["db"])
        else:
            dz = self.layer.activation.backward(dout, out)                    # (n, units)
            s["db"] += dz.sum(axis=0)
        s["dw"] = np.matmul(x.T, dz, out=s["scratch"]("dw", self.w.shape))    # (in, units)
        return dz @ self.w.T if need_dx else None                            # (n, in)

    def end(self, parts):
        self.grads(self.layer, parts, kernel="dw", bias="db")

    def flops(self):
        return 2 * self.layer.params["kernel"].size


class PoolStep(Step):
    def __init__(self, pool, dropout=None):
        super().__init__([layer for layer in (pool, dropout) if layer is not None])
        self.layer, self.dropout, self.fast = pool, dropout, _two_by_two(pool)
        self.kernels = ((elementwise.epilogue, elementwise.unpool, elementwise.dropout) if self.fast
                        else (pooling.maxpool, pooling.maxpool_backward))
        self.out_shape, self.per = pool.out_shape, int(np.prod(pool.out_shape))

    def begin(self, training, seed=None):
        self.drop = _dropout(self.dropout, training, seed)
        self.zeros = np.zeros(self.out_shape[-1], dtype=np.float32)

    def forward(self, k, x, lo, training):
        s, n = self.slice(k), len(x)
        out = s["scratch"]("out", (n,) + self.out_shape, x.dtype)
        argmax = (s["scratch"]("argmax", out.shape, offset_dtype(self.layer.pool_size)) if training else
                  np.zeros((0, 0, 0, 0), dtype=offset_dtype(self.layer.pool_size)))
        if self.fast:
            elementwise.epilogue(x, self.zeros, False, True, out, argmax)
            apply_dropout(out, self.drop, lo * self.per)
        else:
            (PH, PW), (SH, SW), pads = self.layer.pool_size, self.layer.strides, self.layer.pads
            pooling.maxpool(x, PH, PW, SH, SW, pads[0], pads[2], out, argmax)
        s.update(x_shape=x.shape, out=out, argmax=argmax, lo=lo)
        return out

    def backward(self, k, dout, need_dx):
        s = self.slice(k)
        dx = s["scratch"]("dx", s["x_shape"], dout.dtype)
        if self.fast:
            g = dout
            if self.drop[0]:
                g = s["scratch"]("g", dout.shape, dout.dtype)
                np.copyto(g, dout)
                apply_dropout(g, self.drop, s["lo"] * self.per)
            elementwise.unpool(g, s["argmax"], dx)
        else:
            (PH, PW), (SH, SW), pads = self.layer.pool_size, self.layer.strides, self.layer.pads
            pooling.maxpool_backward(dout, s["argmax"], PH, PW, SH, SW, pads[0], pads[2], dx)
        return dx


class DropoutStep(Step):
    kernels = (elementwise.dropout,)

    def __init__(self, dropout):
        super().__init__([dropout])
        self.layer, self.per = dropout, int(np.prod(dropout.out_shape))

    def begin(self, training, seed=None):
        self.drop = _dropout(self.layer, training, seed)

    def forward(self, k, x, lo, training):
        if not training:
            return x
        s = self.slice(k)
        out = s["scratch"]("out", x.shape, x.dtype)
        np.copyto(out, x)
        apply_dropout(out, self.drop, lo * self.per)
        s["lo"] = lo
        return out

    def backward(self, k, dout, need_dx):
        s = self.slice(k)
        dx = s["scratch"]("dx", dout.shape, dout.dtype)
        np.copyto(dx, dout)
        apply_dropout(dx, self.drop, s["lo"] * self.per)
        return dx


class ReshapeStep(Step):
    def __init__(self, layer):
        super().__init__([layer])
        self.in_shape, self.out_shape = layer.in_shape, layer.out_shape

    def forward(self, k, x, lo, training):
        return x.reshape((len(x),) + self.out_shape)

    def backward(self, k, dout, need_dx):
        return dout.reshape((len(dout),) + self.in_shape)


class ActivationStep(Step):
    def __init__(self, layer):
        super().__init__([layer])
        self.activation = layer.activation

    def forward(self, k, x, lo, training):
        out = self.activation.forward(x)
        self.slice(k)["out"] = out
        return out

    def backward(self, k, dout, need_dx):
        return self.activation.backward(dout, self.slice(k)["out"])


class LayerStep(Step):
    parallel = False

    def __init__(self, layer):
        super().__init__([layer])
        self.layer = layer

    def forward(self, x, training):
        return self.layer.forward(x, training=training)

    def backward(self, dout):
        return self.layer.backward(dout)


def steps_for(layers):
    """The layers, matched left to right to the steps above; what no step knows runs as itself."""
    from .norm_steps import BatchNormStep          # it builds on Step, defined here
    steps, i = [], 0

    def take(kind, test=lambda layer: True):
        nonlocal i
        if i < len(layers) and isinstance(layers[i], kind) and test(layers[i]):
            i += 1
            return layers[i - 1]
        return None

    while i < len(layers):
        layer = layers[i]
        i += 1
        if own(layer, Conv2D) and layer.activation.name in ("relu", "linear"):
            pool = take(MaxPooling2D, _two_by_two)
            steps.append(ConvStep(layer, pool, take(Dropout, lambda d: own(d, Dropout))))
        elif own(layer, Dense) and len(layer.in_shape) == 1 and not layer.activation.needs_z:   # (N, in) only
            fused = layer.activation.name in ("relu", "linear")
            steps.append(DenseStep(layer, take(Dropout, lambda d: own(d, Dropout)) if fused else None))
        elif own(layer, MaxPooling2D):
            steps.append(PoolStep(layer, take(Dropout, lambda d: own(d, Dropout)) if _two_by_two(layer) else None))
        elif own(layer, Dropout):
            steps.append(DropoutStep(layer))
        elif own(layer, Flatten):
            steps.append(ReshapeStep(layer))
        elif own(layer, BatchNormalization):
            steps.append(BatchNormStep(layer, take(Activation, lambda a: own(a, Activation)
                                                   and a.activation.name == "relu")))
        elif own(layer, Activation) and not layer.activation.needs_z:   # its backward gets the output
            steps.append(ActivationStep(layer))
        else:
            steps.append(LayerStep(layer))
    return steps
