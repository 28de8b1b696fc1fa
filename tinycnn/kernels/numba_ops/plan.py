"""The fast plan: the reference plan's forward and backward, with fused kernels on every core.

The reference plan (tinycnn/plans.py) calls each layer's forward in order, then each backward
in reverse. This one computes the same numbers (tests/test_plans.py holds it to that), with
fewer passes over memory and fewer hand-overs between threads:
  * neighbouring layers are one step (steps.py): a convolution, its ReLU, the 2x2 max-pool and
    the dropout after it; a Dense layer, its ReLU and its dropout. The convolution's output is
    written a few images at a time into a buffer that stays in the core's cache, and only the
    pooled, dropped-out result goes to memory; a BatchNormalization and the ReLU after it
    (norm_steps.py), which run between the slices, on the whole batch, their kernels on every core;
  * the batch is cut into one slice per core (threads.py), and each core runs every step on its
    slice: one hand-over for the whole forward pass, one for the whole backward pass;
  * the first layer computes no dL/dx (backward returns None); inference keeps nothing;
  * buffers are kept from one step to the next (blocks.Scratch), and each slice's weight
    gradients are summed into the layers' grads at the end.
A layer no step knows runs as itself, its own forward and backward on the whole batch, between
the slices. Inputs or weights that are not float32 run on the reference plan.
"""
import functools
import os

import numpy as np

from ... import backend
from ...layers.activations import LogitsGradient
from ...plans import ReferencePlan
from . import blas, threads
from .steps import steps_for

_warmed = set()          # the kinds of step whose kernels this process has compiled (or loaded)


def _rows(d, lo, hi):
    return LogitsGradient(d.dz[lo:hi]) if isinstance(d, LogitsGradient) else d[lo:hi]


def _join(parts):
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _on_disk(kernel):
    """Has Numba's cache a compiled copy of this kernel? (A guess: its index file exists.)"""
    try:
        return os.path.exists(kernel._cache._cache_file._index_path)
    except Exception:                 # another Numba's internals: say "compiling"
        return False


def _from_numba(err):
    return type(err).__module__.split(".")[0] in ("numba", "llvmlite")


class FastPlan:
    def __init__(self, layers, input_grad=False):
        self.layers, self.input_grad = list(layers), input_grad
        self.steps = steps_for(self.layers)
        self.segments, run = [], []
        for step in self.steps:                     # runs of parallel steps; a LayerStep alone
            if step.parallel:
                run.append(step)
            else:
                self.segments += [run, [step]] if run else [[step]]
                run = []
        self.segments += [run] if run else []
        shared = []                                 # one block Scratch per slice, for every step
        for step in self.steps:
            step.blocks = shared
        self.reference = ReferencePlan(self.layers)
        self.flops = sum(step.flops() for step in self.steps)       # per image, forward
        self.warmed, self.on_reference, self.bounds = False, False, {}

    def __repr__(self):
        return "FastPlan(" + ", ".join(type(s).__name__ + "[" + "+".join(l.name for l in s.layers) + "]"
                                       for s in self.steps) + ")"

    def _keys(self):
        return {(type(step).__name__, getattr(getattr(step, "conv", None), "alg", None).__class__.__name__)
                for step in self.steps if step.parallel or hasattr(step, "warm")}

    @property
    def compiles(self):
        """Will the next call compile kernels (first use in this process)?"""
        return not self.warmed and not _warmed.issuperset(self._keys())

    @property
    def compile_note(self):
        kernels = [k for step in self.steps for k in step.kernels]
        return "loading the fast kernels" if all(map(_on_disk, kernels)) else "compiling the fast kernels, first run only"

    # -- forward and backward -------------------------------------------------------------
    def forward(self, x, training=False):
        self.on_reference = x.dtype != np.float32 or any(p.dtype != np.float32 for layer in self.layers
                                                         for p in layer.params.values())
        if self.on_reference:
            return self.reference.forward(x, training)
        fresh = False
        with blas.one_thread():                         # its idle threads would spin on the cores the slices use
            for i, segment in enumerate(self.segments):
                if segment[0].parallel:
                    x, fresh = self._forward(i, segment, x, training)
                else:                                   # a view of its input is as fresh as its input
                    y = segment[0].forward(x, training)
                    x, fresh = y, fresh or not np.may_share_memory(y, x)
        return x if fresh else x.copy()                 # a kept buffer is never handed out

    def _forward(self, i, segment, x, training):
        n = len(x)
        bounds = self.bounds[i] = threads.bounds(n, threads.parts(n, n * self.flops))
        for step in segment:
            step.begin(training)

        def job(k):
            lo, hi = bounds[k]
            a = x[lo:hi]
            for step in segment:
                a = step.forward(k, a, lo, training)
            return a
        parts = threads.run([functools.partial(job, k) for k in range(len(bounds))])
        return _join(parts), len(parts) > 1

    def backward(self, dout):
        if self.on_reference:
            return self.reference.backward(dout)
        with blas.one_thread():
            for i in reversed(range(len(self.segments))):
                segment = self.segments[i]
                if segment[0].parallel:
                    dout = self._backward(i, segment, dout, first=i == 0 and not self.input_grad)
                else:
                    dout = segment[0].backward(dout)
        return dout

    def _backward(self, i, segment, dout, first):
        bounds = self.bounds[i]

        def job(k):
            lo, hi = bounds[k]
            d = _rows(dout, lo, hi)
            for j in reversed(range(len(segment))):
                d = segment[j].backward(k, d, need_dx=not (first and j == 0))
            return d
        parts = threads.run([functools.partial(job, k) for k in range(len(bounds))])
        for step in segment:
            step.end(len(bounds))
        return None if first else _join(parts)

    # -- the first run --------------------------------------------------------------------
    def warm_up(self, x):
        """Compile (or load) every kernel the steps use, on two images of zeros per step, before
        the first real step. Runs steps of its own: touches no weight, no random generator, no
        layer's grads, and none of this plan's state or buffers."""
        kept = [dict(layer.grads) for layer in self.layers]
        steps = steps_for(self.layers)
        try:
            with blas.one_thread():                     # as in a real step: the BLAS's threads stay asleep
                self._warm(steps)
        except Exception as err:
            if _from_numba(err):
                raise backend.KernelCompileError(f"the numba backend could not compile its kernels "
                                                 f"({type(err).__name__}: {err})") from err
            raise
        finally:
            for layer, grads in zip(self.layers, kept):
                layer.grads = grads
        self.warmed = True
        _warmed.update(self._keys())

    @staticmethod
    def _warm(steps):
        for step in steps:
            if step.parallel:
                a = np.zeros((2,) + step.layers[0].in_shape, dtype=np.float32)
                step.begin(True, seed=0)
                out = step.forward(0, a, 0, True)
                step.backward(0, np.zeros_like(out), need_dx=step is not steps[0])
                step.end(1)
                step.begin(False, seed=0)
                step.forward(0, a, 0, False)
            elif hasattr(step, "warm"):             # a whole-batch step with kernels of its own
                step.warm()
