"""Functional models: tinycnn.Model(inputs, outputs), Keras's functional API.

    inputs = tinycnn.Input(shape=(28, 28, 1))
    x = layers.Conv2D(32, 3, activation="relu")(inputs)
    outputs = layers.Dense(10, activation="softmax")(layers.Flatten()(x))
    model = tinycnn.Model(inputs=inputs, outputs=outputs)

A Functional model is a Model (tinycnn/models.py: compile, fit, evaluate, predict, weights,
saving, one training loop shared with Sequential) whose layers form a graph instead of a
list. How it runs, forward in topological order and backward in reverse with the gradients
of a fork summed, is tinycnn/graph.py.
"""
from . import graph
from .layers.activations import SoftmaxFn
from .layers.base import shape_str
from .models import Model


class Functional(Model):
    """A model of the layers between symbolic `inputs` and `outputs` (tensors, lists or dicts)."""

    def __init__(self, inputs, outputs, name=None, trainable=True):
        super().__init__(name=name)
        self._graph = graph.Graph(inputs, outputs, name=self.name)
        self.layers = self._graph.layers
        self._input_shapes = [tuple(t.shape[1:]) for t in self._graph.inputs]
        self.input_shape_ = self._input_shapes[0] if len(self._input_shapes) == 1 else None
        self._input_names = self._graph.input_keys or [t.input_layer.name for t in self._graph.inputs]
        self._output_names = self._graph.output_keys or [t.node.layer.name if t.node else t.name
                                                         for t in self._graph.outputs]
        self._softmax_outputs = [t.node is not None and isinstance(getattr(t.node.layer, "activation", None),
                                                                    SoftmaxFn) for t in self._graph.outputs]
        if not trainable:
            self.trainable = False

    # -- what Keras shows of the graph ---------------------------------------------------------
    @property
    def inputs(self):
        return list(self._graph.inputs)

    @property
    def outputs(self):
        return list(self._graph.outputs)

    @property
    def built(self):
        return True

    @property
    def input_shape(self):
        shapes = [t.shape for t in self._graph.inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self):
        shapes = [t.shape for t in self._graph.outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    def build(self, input_shape):
        shape = tuple(input_shape)
        shape = shape[1:] if shape and shape[0] is None else shape
        if tuple(shape) != self.input_shape_:
            raise ValueError(f"{self.name} is built for inputs of shape {shape_str(self.input_shape_)}; "
                             f"received {shape_str(shape)}")

    def _plan(self):
        return self._graph

    def _call_symbolic(self, x):
        """Inlined: every node of this graph called again, in order, on the new tensors."""
        made = {id(t): a for t, a in zip(self._graph.inputs, x if isinstance(x, (list, tuple)) else [x])}
        for node in self._graph.nodes:
            args = [made[id(t)] for t in node.inputs]
            made[id(node.output)] = node.layer(args if node.layer.multi_input else args[0])
        outs = [made[id(t)] for t in self._graph.outputs]
        return outs if len(outs) > 1 else outs[0]

    @property
    def _output_layer(self):
        return self._graph.outputs[0].node.layer

    def _history(self, tensor):
        """Keras's [layer name, node index, tensor index] of a tensor: which call made it."""
        if tensor.node is None:
            return [tensor.input_layer.name, 0, 0]
        calls = [n for n in self._graph.nodes if n.layer is tensor.node.layer]
        return [tensor.node.layer.name, calls.index(tensor.node), 0]

    def summary(self, print_fn=None):
        """Keras 3's table for a functional model: each layer call with what it is connected to
        (a model that is a plain chain gets Keras's three columns, without "Connected to")."""
        print_fn = print_fn or print
        chain = self._sequential_like()
        widths = (33, 24, 15) if chain else (21, 19, 12, 19)
        headers = ("Layer (type)", "Output Shape", "Param #", "Connected to")[:len(widths)]

        def cells(texts, right=(False, False, True, False)):
            rows = max(len(t) for t in texts)
            for i in range(rows):
                parts = []
                for texts_i, w, r in zip(texts, widths, right):
                    t = texts_i[i] if i < len(texts_i) else ""
                    t = t if len(t) <= w - 2 else t[:w - 3] + "…"
                    parts.append(" " + (t.rjust(w - 2) if r else t.ljust(w - 2)) + " ")
                yield "│" + "│".join(parts) + "│"

        def line(left, mid, right, fill="─"):
            return left + mid.join(fill * w for w in widths) + right

        print_fn(f'Model: "{self.name}"')
        print_fn(line("┏", "┳", "┓", "━"))
        print_fn("┃" + "┃".join(" " + h.ljust(w - 2) + " " if i != 2 else " " + h.rjust(w - 2) + " "
                                for i, (h, w) in enumerate(zip(headers, widths))) + "┃")
        print_fn(line("┡", "╇", "┩", "━"))
        rows = [([f"{t.input_layer.name} (InputLayer)"], [shape_str(t.shape[1:])], ["0"], ["-"])[:len(widths)]
                for t in self._graph.inputs]
        counted = set()
        for node in self._graph.nodes:
            params = 0 if id(node.layer) in counted else node.layer.count_params()
            counted.add(id(node.layer))
            sources = [f"{h[0]}[{h[1]}][{h[2]}]" for h in map(self._history, node.inputs)]
            kind = type(node.layer).__name__
            rows.append(([node.layer.name, f"({kind})"] if len(node.layer.name) + len(kind) + 3 > widths[0] - 2
                         else [f"{node.layer.name} ({kind})"], [shape_str(node.output.shape[1:])], [f"{params:,}"],
                         [s + ("," if i < len(sources) - 1 else "") for i, s in enumerate(sources)])[:len(widths)])
        for i, row in enumerate(rows):
            for text in cells(row):
                print_fn(text)
            print_fn(line("├", "┼", "┤") if i < len(rows) - 1 else line("└", "┴", "┘"))
        self._print_totals(print_fn, sizes=True)

    def _sequential_like(self):
        """One input, one output, and every node reads the one before it: a chain, as Keras's summary sees it."""
        g, previous = self._graph, self._graph.inputs
        if len(g.inputs) != 1 or len(g.outputs) != 1:
            return False
        for node in g.nodes:
            if node.layer.multi_input or node.shared or node.inputs != previous:
                return False
            previous = [node.output]
        return True

    # -- config: Keras's functional layout (inbound_nodes, input_layers, output_layers) -------
    def get_config(self):
        from . import saving

        def tensor(t):
            return {"class_name": "__keras_tensor__", "config": {"shape": list(t.shape), "dtype": "float32",
                                                                  "keras_history": self._history(t)}}
        entries = [{**saving.input_entry(t.input_layer.name, t.shape), "name": t.input_layer.name,
                    "inbound_nodes": []} for t in self._graph.inputs]
        for layer in self.layers:
            calls = [n for n in self._graph.nodes if n.layer is layer]
            entry = saving.layer_entry(layer)
            entry["name"] = layer.name
            entry["inbound_nodes"] = [{"args": [[tensor(t) for t in n.inputs] if layer.multi_input
                                                else tensor(n.inputs[0])], "kwargs": {}} for n in calls]
            entries.append(entry)
        ins, outs = ([self._history(t) for t in ts] for ts in (self._graph.inputs, self._graph.outputs))
        return {"name": self.name, "trainable": self.trainable, "layers": entries,      # one: flat, as Keras
                "input_layers": ins[0] if len(ins) == 1 else ins, "output_layers": outs[0] if len(outs) == 1 else outs}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """A new functional model (fresh weights) from get_config()'s dict, or Keras's: every layer is
        made from its entry, then called again on the tensors its inbound_nodes name."""
        from . import saving
        from .layers import Input
        made, calls = {}, {}                       # layer name -> its output tensors, one per call

        def lookup(arg):
            if isinstance(arg, list):
                return [lookup(a) for a in arg]
            name, node_index, _ = arg["config"]["keras_history"]
            return made[name][node_index]
        pending = list(config.get("layers", []))
        while pending:           # node by node: a call may wait on a later layer, or on its own earlier call
            progress = False
            for entry in list(pending):
                name = entry.get("name") or (entry.get("config") or {}).get("name")
                if entry.get("class_name") == "InputLayer":
                    c = entry.get("config") or {}
                    made[name] = [Input(batch_shape=tuple(c.get("batch_shape") or [None] + list(c["shape"])),
                                        name=name)]
                    pending.remove(entry)
                    progress = True
                    continue
                layer = calls.get(name) or saving.layer_from_entry(entry, custom_objects)
                calls[name] = layer
                nodes = entry.get("inbound_nodes", [])
                outputs = made.setdefault(name, [])
                while len(outputs) < len(nodes):
                    try:
                        arg = lookup(nodes[len(outputs)]["args"][0])
                    except (KeyError, IndexError):
                        break
                    outputs.append(layer(arg))
                    progress = True
                if len(outputs) == len(nodes):
                    pending.remove(entry)
                    progress = True
            if not progress:
                raise graph.GraphError(f"cannot rebuild the functional model {config.get('name')!r}: the layers "
                                       f"{[e.get('name') for e in pending]} read tensors no layer makes")

        def ends(key):
            items = config.get(key) or []
            items = [items] if items and not isinstance(items[0], list) else items
            return [made[name][index] for name, index, _ in items]
        inputs, outputs = ends("input_layers"), ends("output_layers")
        return cls(inputs[0] if len(inputs) == 1 else inputs, outputs[0] if len(outputs) == 1 else outputs,
                   name=config.get("name"), trainable=config.get("trainable", True))
