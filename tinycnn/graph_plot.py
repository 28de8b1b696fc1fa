"""plot_model: a picture of the model, a box per layer and an arrow where data flows, as Keras 3's.

Keras draws it with graphviz; here matplotlib draws it, in two steps:

    model_graph(model, ...)  -> nodes [(id, rows)], edges [(from id, to id)]   what to draw
    draw(nodes, edges, ...)  -> a matplotlib Figure                             how to draw it

A Sequential's edges are layer i -> layer i + 1 (as Keras 3, no box for the Input); a model
that is a graph only has to give other edges. The layout: a node's rank is the length of the
longest path to it from a node without inputs; ranks go top to bottom (rankdir "TB"), left to
right ("LR"), or reversed ("BT", "RL"); the nodes of one rank stand side by side.
A box, as Keras's: "name (Class)" (or "Class") on black, then "Activation: relu", then one row
of cells: "Input shape", "Output shape", "Output dtype", "Trainable" (green) / "Non-trainable"
(red), each when asked for.
"""
import os

FONT = 9                          # points
CHAR = 0.62 * FONT / 72           # inches: a character's mean width (DejaVu Sans, a little generous)
ROW, PAD, GAP = 0.3, 0.12, 0.45   # inches: a row's height, a cell's padding, the space between ranks
WHITE, BLACK, GREEN, RED = "white", "black", "forestgreen", "firebrick"


def cell(text, face=WHITE, color=BLACK, bold=False):
    return {"text": text, "face": face, "color": color, "bold": bold}


def layer_rows(layer, show_shapes, show_dtype, show_layer_names, show_layer_activations, show_trainable):
    """A layer's box, as rows of cells, with what Keras 3 writes in it."""
    kind = type(layer).__name__
    rows = [[cell(f"{layer.name} ({kind})" if show_layer_names else kind, BLACK, WHITE, bold=True)]]
    activation = getattr(layer, "activation", None)
    if show_layer_activations and activation is not None:
        rows.append([cell(f"Activation: {getattr(activation, 'name', None) or str(activation)}")])
    cells = []
    if show_shapes:
        shapes = [(None, *s) for s in layer.in_shape] if layer.multi_input else (None, *layer.in_shape)
        cells += [cell(f"Input shape: {shapes}"), cell(f"Output shape: {(None, *layer.out_shape)}")]
    if show_dtype:
        cells.append(cell("Output dtype: float32"))            # tinycnn computes in float32 only
    if show_trainable and layer.weights:                        # as Keras: only layers that have weights
        cells.append(cell("Trainable", GREEN, WHITE, True) if layer.trainable
                     else cell("Non-trainable", RED, WHITE, True))
    return rows + ([cells] if cells else [])


def model_graph(model, **show):
    """A model as nodes and edges. A Sequential: a box per layer, an arrow from each layer to the next.
    A functional model (tinycnn/graph.py): a box per Input and per layer, an arrow per tensor a layer reads."""
    graph = getattr(model, "_graph", None)
    if graph is None:
        nodes = [(layer.name, layer_rows(layer, **show)) for layer in model.layers]
        return nodes, [(a.name, b.name) for a, b in zip(model.layers, model.layers[1:])]
    nodes = [(t.input_layer.name, [[cell(f"{t.input_layer.name} (InputLayer)" if show["show_layer_names"]
                                         else "InputLayer", BLACK, WHITE, bold=True)]]
                                   + ([[cell(f"Output shape: {t.shape}")]] if show["show_shapes"] else []))
             for t in graph.inputs]
    nodes += [(layer.name, layer_rows(layer, **show)) for layer in graph.layers]
    edges = list(dict.fromkeys((t.input_layer.name if t.node is None else t.node.layer.name, node.layer.name)
                               for node in graph.nodes for t in node.inputs))
    return nodes, edges


def ranks(nodes, edges):
    """Each node's rank: the longest path reaching it (edges must not form a cycle)."""
    rank = {name: 0 for name, _ in nodes}
    for _ in range(len(nodes)):                                 # relax: after n rounds, longest paths are found
        changed = False
        for a, b in edges:
            if rank[b] < rank[a] + 1:
                rank[b], changed = rank[a] + 1, True
        if not changed:
            return rank
    raise ValueError("plot_model: the model's graph has a cycle; expected data to flow one way")


def box_size(rows):
    """(width, height) in inches: the widest row, a row's height each."""
    width = max(sum(len(c["text"]) * CHAR + 2 * PAD for c in row) for row in rows)
    return width, ROW * len(rows)


def draw(nodes, edges, rankdir="TB"):
    """The figure: the boxes laid out by rank, arrows from box to box."""
    from matplotlib.figure import Figure                         # no pyplot: no global state, no window
    from matplotlib.patches import Rectangle

    rank, sizes = ranks(nodes, edges), {name: box_size(rows) for name, rows in nodes}
    across = rankdir in ("LR", "RL")                             # ranks go left to right
    layers = [[name for name, _ in nodes if rank[name] == r] for r in range(max(rank.values()) + 1)]
    along = lambda name: sizes[name][0 if across else 1]         # a box's extent in the ranks' direction
    side = lambda name: sizes[name][1 if across else 0]          # and across it
    depth = [max(along(n) for n in names) for names in layers]
    breadth = [sum(side(n) for n in names) + GAP * (len(names) - 1) for names in layers]
    centre, pos, start = {}, max(breadth) / 2, 0.0
    for names, d, b in zip(layers, depth, breadth):
        offset = pos - b / 2
        for name in names:
            centre[name] = (start + d / 2, offset + side(name) / 2)   # (along, across)
            offset += side(name) + GAP
        start += d + GAP
    total = (start - GAP, max(breadth))
    if rankdir in ("BT", "RL"):
        centre = {n: (total[0] - a, c) for n, (a, c) in centre.items()}
    xy = {n: ((a, c) if across else (c, a)) for n, (a, c) in centre.items()}    # inches, y downwards
    width, height = (total if across else total[::-1])
    margin = 0.15
    fig = Figure(figsize=(width + 2 * margin, height + 2 * margin))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(-margin, width + margin)
    ax.set_ylim(height + margin, -margin)
    ax.axis("off")
    for name, rows in nodes:
        (cx, cy), (w, h) = xy[name], sizes[name]
        top = cy - h / 2
        for row in rows:
            natural = [len(c["text"]) * CHAR + 2 * PAD for c in row]
            left = cx - w / 2
            for c, n in zip(row, natural):
                cw = n * w / sum(natural)                         # the row's cells share the box's width
                ax.add_patch(Rectangle((left, top), cw, ROW, facecolor=c["face"], edgecolor=BLACK, lw=1))
                ax.text(left + cw / 2, top + ROW / 2, c["text"], ha="center", va="center", fontsize=FONT,
                        color=c["color"], fontweight="bold" if c["bold"] else "normal")
                left += cw
            top += ROW
    for a, b in edges:
        (sx, sy), (bx, by) = xy[a], xy[b]
        if across:
            sign = 1 if bx > sx else -1
            start_pt, end_pt = (sx + sign * sizes[a][0] / 2, sy), (bx - sign * sizes[b][0] / 2, by)
        else:
            sign = 1 if by > sy else -1
            start_pt, end_pt = (sx, sy + sign * sizes[a][1] / 2), (bx, by - sign * sizes[b][1] / 2)
        ax.annotate("", xy=end_pt, xytext=start_pt,
                    arrowprops={"arrowstyle": "-|>", "lw": 2, "color": BLACK, "shrinkA": 0, "shrinkB": 0})
    return fig


def check_flag(value, arg):
    if not isinstance(value, bool):
        raise TypeError(f"plot_model: {arg} must be True or False; received {value!r}")
    return value


def plot_model(model, to_file="model.png", show_shapes=False, show_dtype=False, show_layer_names=False,
               rankdir="TB", expand_nested=False, dpi=200, show_layer_activations=False, show_trainable=False,
               splines="ortho", **kwargs):
    """Draw the model to `to_file` (its extension sets the format: png, pdf, svg, ...; none: png).

    Returns an IPython.display.Image of the file (SVG: IPython.display.SVG) when IPython can be
    imported, as Keras 3 does, and None otherwise or for a PDF (or another format a notebook
    cannot show inline). Arguments and defaults are Keras 3's
    (show_layer_names=False); expand_nested has nothing to expand (a tinycnn Sequential holds
    layers, never models), and the arrows are straight: splines "ortho" (a chain's right-angle
    lines are straight) or "line".
    """
    if kwargs.pop("layer_range", None) is not None:
        raise ValueError("plot_model: argument `layer_range` is no longer supported (as in Keras 3)")
    if kwargs:
        raise ValueError(f"plot_model: unrecognized keyword arguments: {kwargs}")
    if not hasattr(model, "layers") or not hasattr(model, "built"):
        raise TypeError(f"plot_model expects a tinycnn model; received {type(model).__name__}")
    if not model.built:
        raise ValueError(f"plot_model: {model.name} has not been built yet: give the first layer input_shape=... "
                         f"(or start with Input(shape)), or call fit() or predict() once")
    show = {arg: check_flag(value, arg) for arg, value in [
        ("show_shapes", show_shapes), ("show_dtype", show_dtype), ("show_layer_names", show_layer_names),
        ("show_layer_activations", show_layer_activations), ("show_trainable", show_trainable)]}
    check_flag(expand_nested, "expand_nested")
    if rankdir not in ("TB", "LR", "BT", "RL"):
        raise ValueError(f"plot_model: rankdir must be 'TB' (top to bottom), 'LR' (left to right), 'BT' or 'RL'; "
                         f"received {rankdir!r}")
    if splines not in ("ortho", "line"):
        raise ValueError(f"plot_model: tinycnn draws straight arrows: splines must be 'ortho' or 'line'; "
                         f"received {splines!r}")
    if isinstance(dpi, bool) or not isinstance(dpi, (int, float)) or not dpi > 0:
        raise ValueError(f"plot_model: dpi must be a positive number; received {dpi!r}")
    to_file = os.fspath(to_file)
    extension = os.path.splitext(to_file)[1][1:].lower() or "png"
    fig = draw(*model_graph(model, **show), rankdir=rankdir)
    formats = fig.canvas.get_supported_filetypes()
    if extension not in formats:
        raise ValueError(f"plot_model: cannot write a .{extension} file; to_file's extension must be one of "
                         f"{', '.join(sorted(formats))}; received {to_file!r}")
    fig.savefig(to_file, dpi=dpi, format=extension)
    try:
        from IPython import display
    except ImportError:
        return None
    if extension == "svg":
        return display.SVG(filename=to_file)
    if extension in ("png", "jpg", "jpeg", "webp"):             # what a notebook shows inline
        return display.Image(filename=to_file, format=extension)
    return None                                                 # pdf, eps, ...: the file only
