"""The functional API's graph: symbolic tensors, the nodes that join them, and backprop through it.

    inputs = tinycnn.Input(shape=(28, 28, 1))      a KerasTensor: a shape and a dtype, no numbers
    x = layers.Conv2D(32, 3)(inputs)                calling a layer on one adds a Node to the graph
    y = layers.Add()([x, x2])                       a merge layer's node has several inputs
    model = tinycnn.Model(inputs, outputs)          Graph(inputs, outputs) puts the nodes in order

How backprop flows through a graph (Graph.forward and Graph.backward below):

    forward:   visit the nodes in topological order (every node after the nodes it reads from);
               each computes its output from its inputs' values.
    backward:  visit them in reverse. A node's output gradient is the SUM of what every node that
               read its output sent back: where a tensor fans out to two consumers, its value
               moved the loss through both, so dL/dx = dL/dx via consumer 1 + via consumer 2.
               Each node hands dL/d(each of its inputs) to the nodes that made them.

A layer called twice (a shared layer) has one node per call and one set of weights: its
weight gradients from the calls add up, for the same reason. A Sequential is the special case
of one chain: each node has one consumer, so the sum has one term and the graph is a list.

Speed is the backend's business, as for a Sequential: a run of single-input layers, each read
only by the next, is one stage that the backend's plan runs (tinycnn.backend.build_plan), so
the fast backend fuses a convolution, its ReLU and its pooling inside a branch too.
"""
import numpy as np

from . import backend
from .outputs import Arrays


class GraphError(ValueError):
    """A functional model that cannot be built: disconnected, mismatched, cyclic, or mixed graphs."""


class KerasTensor:
    """A symbolic tensor: its shape (None for the batch) and dtype, and the node that makes it."""

    def __init__(self, shape, dtype="float32", name=None, node=None):
        self.shape = tuple(shape)            # e.g. (None, 28, 28, 1)
        self.dtype = dtype
        self.name = name
        self.node = node                     # None for an Input

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}, name={self.name}>"

    @property
    def ndim(self):
        return len(self.shape)


class Node:
    """One call of a layer in a graph: which tensors it reads, which one it makes."""

    def __init__(self, layer, inputs):
        self.layer, self.inputs = layer, list(inputs)
        self.output = None
        self.cache = None                    # this call's cache (a shared layer has one per call)


def is_symbolic(x):
    return isinstance(x, KerasTensor) or (isinstance(x, (list, tuple)) and any(isinstance(a, KerasTensor) for a in x))


def connect(layer, x):
    """layer(x) on symbolic tensors: build the layer for their shapes, add a Node, return its output."""
    from .layers.base import shape_str
    inputs = list(x) if isinstance(x, (list, tuple)) else [x]
    if not all(isinstance(t, KerasTensor) for t in inputs):
        raise GraphError(f"{layer}: its inputs mix symbolic tensors (from tinycnn.Input) and arrays; "
                         f"call a layer on symbolic tensors only, or on arrays only")
    if layer.multi_input != isinstance(x, (list, tuple)):
        raise GraphError(f"{layer} takes {'a list of tensors' if layer.multi_input else 'one tensor'}; "
                         f"received {len(inputs) if isinstance(x, (list, tuple)) else 1}")
    shapes = [t.shape[1:] for t in inputs]
    if not layer.built:
        layer.build(shapes if layer.multi_input else shapes[0])
    elif (list(layer.in_shape) if layer.multi_input else [layer.in_shape]) != shapes:
        expected = layer.in_shape if layer.multi_input else [layer.in_shape]
        raise GraphError(f"{layer} was built for inputs of shape {', '.join(map(shape_str, expected))}; this call "
                         f"gives {', '.join(map(shape_str, shapes))}. A shared layer needs the same shapes at every call.")
    node = Node(layer, inputs)
    node.output = KerasTensor((None,) + tuple(layer.out_shape), name=layer.name, node=node)
    return node.output


def flatten(structure):
    """A tensor, a list of them or a dict of them -> (list of tensors, the keys or None)."""
    if isinstance(structure, dict):
        return list(structure.values()), list(structure)
    if isinstance(structure, (list, tuple)):
        return list(structure), None
    return [structure], None


class Stage:
    """What the graph runs as one: a chain of single-input layers (through the backend's plan),
    or one call of a merge or shared layer (its own forward and backward, with that call's cache)."""

    def __init__(self, nodes, input_grad):
        self.nodes = nodes
        self.layers = [node.layer for node in nodes]
        self.inputs, self.output = nodes[0].inputs, nodes[-1].output
        self.direct = len(nodes) == 1 and (nodes[0].layer.multi_input or nodes[0].shared)
        self.plan = None if self.direct else backend.build_plan(self.layers, input_grad=input_grad)

    def forward(self, xs, training):
        if not self.direct:
            return self.plan.forward(xs[0], training)
        node, layer = self.nodes[0], self.nodes[0].layer
        out = layer.forward(xs if layer.multi_input else xs[0], training=training)
        node.cache = layer.cache
        return out

    def backward(self, dout):
        if not self.direct:
            return [self.plan.backward(dout)]
        node, layer = self.nodes[0], self.nodes[0].layer
        layer.cache = node.cache                     # this call's cache, not the last call's
        dx = layer.backward(dout)
        return list(dx) if layer.multi_input else [dx]


class Graph:
    """The nodes between `inputs` and `outputs`, in topological order, checked; and the two loops."""

    def __init__(self, inputs, outputs, name="model"):
        self.inputs, self.input_keys = flatten(inputs)
        self.outputs, self.output_keys = flatten(outputs)
        for t in self.inputs + self.outputs:
            if not isinstance(t, KerasTensor):
                raise GraphError(f"{name}: inputs and outputs must be symbolic tensors, from tinycnn.Input(...) "
                                 f"and the layers called on them; received {type(t).__name__}")
        for t in self.inputs:
            if t.node is not None:
                raise GraphError(f"{name}: the inputs must be tinycnn.Input(...) tensors; {t.name!r} is the output "
                                 f"of layer '{t.node.layer.name}'")
        self.nodes = self._topological_order(name)
        self._check_connected(name)
        calls = {}
        for node in self.nodes:
            calls[id(node.layer)] = calls.get(id(node.layer), 0) + 1
        for node in self.nodes:
            node.shared = calls[id(node.layer)] > 1
        self.layers = list({id(node.layer): node.layer for node in self.nodes}.values())   # each once, in order
        self._stages = None

    def _topological_order(self, name):
        """Depth-first from the outputs: a node is listed after every node it reads from."""
        order, state = [], {}                   # state: 1 = on the current path, 2 = listed
        given = {id(t) for t in self.inputs}
        for out in self.outputs:
            stack = [(out, False)]
            while stack:
                t, inputs_done = stack.pop()
                node = t.node
                if node is None:
                    if id(t) not in given:
                        raise GraphError(f"{name}: the outputs depend on the input {t.name or t!r}, which is not in "
                                         f"inputs=; pass every Input the outputs are computed from (a tensor from "
                                         f"another graph cannot be used here)")
                    continue
                if inputs_done:
                    state[id(node)] = 2
                    order.append(node)
                    continue
                if state.get(id(node)) == 2:
                    continue
                if state.get(id(node)) == 1:
                    raise GraphError(f"{name}: the graph has a cycle through layer '{node.layer.name}'")
                state[id(node)] = 1
                stack.append((t, True))
                stack.extend((i, False) for i in reversed(node.inputs))
        return order

    def _check_connected(self, name):
        used = {id(t) for node in self.nodes for t in node.inputs} | {id(t) for t in self.outputs}
        for t in self.inputs:
            if id(t) not in used:
                raise GraphError(f"{name}: the input {t.name!r} (shape {t.shape}) is not connected to the outputs; "
                                 f"remove it from inputs= or use it")

    # -- the two loops ---------------------------------------------------------------------
    def stages(self):
        """The nodes grouped into stages: a chain of unshared single-input layers, each read only by
        the next, is one stage (rebuilt when the backend changes)."""
        key = backend.module()
        if self._stages is None or self._stages[0] is not key:
            readers = {}
            for node in self.nodes:
                for t in node.inputs:
                    readers[id(t)] = readers.get(id(t), 0) + 1
            outputs = {id(t) for t in self.outputs}
            model_inputs = {id(t) for t in self.inputs}
            stages, chain = [], []
            for node in self.nodes:
                alone = node.layer.multi_input or node.shared
                continues = (chain and not alone and node.inputs[0] is chain[-1].output
                             and readers.get(id(chain[-1].output)) == 1 and id(chain[-1].output) not in outputs)
                if chain and not continues:
                    stages.append(chain)
                    chain = []
                chain.append(node)
                if alone:
                    stages.append(chain)
                    chain = []
            if chain:
                stages.append(chain)
            # dL/dx at a stage's input is needed inside the graph, and at a model input read twice
            # (so that its sum is whole); a plain chain from a model input, as a Sequential, skips it
            self._stages = (key, [Stage(c, input_grad=any(id(t) not in model_inputs or readers[id(t)] > 1
                                                          for t in c[0].inputs)) for c in stages])
        return self._stages[1]

    def forward(self, xs, training=False):
        """xs: one array per input -> one array per output (an array, for one). Every stage in
        topological order."""
        xs = xs if isinstance(xs, (list, tuple)) else [xs]
        values = {id(t): x for t, x in zip(self.inputs, xs)}          # tensor -> its array
        for stage in self.stages():
            ins = [values[id(t)] for t in stage.inputs]              # each (N, ...)
            values[id(stage.output)] = stage.forward(ins, training)  # (N, ...)
        outs = [values[id(t)] for t in self.outputs]
        return Arrays(outs) if len(outs) > 1 else outs[0]

    def backward(self, douts):
        """douts: dL/d(each output) -> dL/d(each input). Every stage in reverse; a tensor read by
        several stages gets the SUM of their gradients; a shared layer's weight gradients add up.
        As a Sequential's plan, the fast backend skips dL/d(model input), which training never
        uses: it returns None there (the reference computes it)."""
        douts = douts if len(self.outputs) > 1 else [douts]
        grads = {}                                                    # tensor -> dL/d tensor, summed
        for t, d in zip(self.outputs, douts):
            add(grads, t, d)
        summed = {}                                                   # shared layer -> its summed grads
        skipped = set()                                               # tensors whose sum lacks a term
        for stage in reversed(self.stages()):
            dout = grads.pop(id(stage.output), None)                 # the sum over its consumers
            if dout is None:
                continue                                              # nothing downstream needs it
            dxs = stage.backward(dout)                                # one per input of the stage
            for layer in stage.layers if stage.direct and stage.nodes[0].shared else ():
                total = summed.setdefault(id(layer), (layer, {}))[1]
                for key, g in layer.grads.items():
                    total[key] = total[key] + g if key in total else np.array(g)   # a copy: kernels reuse buffers
            for t, dx in zip(stage.inputs, dxs):
                if dx is None:
                    skipped.add(id(t))                                # a model input the plan needs no dx for
                else:
                    add(grads, t, dx)                                 # gradients add where a tensor fans out
        for layer, total in summed.values():
            layer.grads.update(total)
        dxs = [None if id(t) in skipped else grads.get(id(t)) for t in self.inputs]   # never a partial sum
        return dxs if len(dxs) > 1 else dxs[0]

    # -- the rest of the plan interface (tinycnn/plans.py): a model runs a graph as a list -----
    @property
    def compiles(self):
        return any(stage.plan is not None and stage.plan.compiles for stage in self.stages())

    @property
    def compile_note(self):
        return next((stage.plan.compile_note for stage in self.stages() if stage.plan is not None
                     and stage.plan.compiles), "")

    def warm_up(self, x):
        """Let every stage's plan prepare for its inputs (the fast one compiles its kernels)."""
        for stage in self.stages():
            if stage.plan is not None:
                stage.plan.warm_up(np.zeros((2,) + tuple(stage.layers[0].in_shape), dtype=np.float32))


def add(grads, tensor, d):
    """grads[tensor] += d (a LogitsGradient from softmax + cross-entropy is kept as it is)."""
    key = id(tensor)
    grads[key] = d if key not in grads else grads[key] + np.asarray(d)
