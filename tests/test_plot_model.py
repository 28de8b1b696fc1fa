"""plot_model: Keras 3's arguments and box contents, drawn with matplotlib from nodes and edges."""
import numpy as np
import pytest

from tinycnn.graph_plot import draw, model_graph, ranks
from tinycnn.layers import Conv2D, Dense, Dropout, Flatten, Input
from tinycnn.models import Sequential
from tinycnn.utils import plot_model

SHOW = dict(show_shapes=False, show_dtype=False, show_layer_names=False, show_layer_activations=False,
            show_trainable=False)


def small():
    model = Sequential([Input((8, 8, 1)), Conv2D(2, 3, activation="relu"), Flatten(), Dropout(0.5), Dense(3)])
    model.layers[0].trainable = False
    return model


def texts(rows):
    return [[c["text"] for c in row] for row in rows]


def test_sequential_graph_is_a_chain_with_keras_box_contents():
    nodes, edges = model_graph(small(), **{**SHOW, "show_shapes": True, "show_layer_names": True,
                                           "show_layer_activations": True, "show_trainable": True,
                                           "show_dtype": True})
    assert [n for n, _ in nodes] == ["conv2d", "flatten", "dropout", "dense"]
    assert edges == [("conv2d", "flatten"), ("flatten", "dropout"), ("dropout", "dense")]
    assert texts(nodes[0][1]) == [["conv2d (Conv2D)"], ["Activation: relu"],
                                  ["Input shape: (None, 8, 8, 1)", "Output shape: (None, 6, 6, 2)",
                                   "Output dtype: float32", "Non-trainable"]]
    assert nodes[0][1][2][3]["face"] == "firebrick"
    assert texts(nodes[1][1]) == [["flatten (Flatten)"],      # no weights: no trainable cell, as Keras
                                  ["Input shape: (None, 6, 6, 2)", "Output shape: (None, 72)", "Output dtype: float32"]]
    assert texts(nodes[3][1])[1] == ["Activation: linear"] and texts(nodes[3][1])[2][-1] == "Trainable"
    plain, _ = model_graph(small(), **SHOW)                     # Keras 3's defaults: the class name alone
    assert [texts(rows) for _, rows in plain] == [[["Conv2D"]], [["Flatten"]], [["Dropout"]], [["Dense"]]]


def test_layout_ranks_a_graph_by_longest_path():
    nodes = [(n, [[{"text": n, "face": "white", "color": "black", "bold": False}]]) for n in "abcd"]
    edges = [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("a", "d")]
    assert ranks(nodes, edges) == {"a": 0, "b": 1, "c": 1, "d": 2}
    fig = draw(nodes, edges)                                      # a diamond: two boxes side by side
    assert len(fig.axes[0].patches) == 4 and len(fig.axes[0].texts) == 4 + 5
    with pytest.raises(ValueError, match="cycle"):
        ranks(nodes, edges + [("d", "a")])


def test_writes_png_pdf_svg_and_returns_ipython_image(tmp_path):
    display = pytest.importorskip("IPython.display")
    model = small()
    image = plot_model(model, to_file=tmp_path / "m.png", show_shapes=True, dpi=50)
    assert isinstance(image, display.Image)
    assert (tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_model(model, to_file=str(tmp_path / "m.pdf"), rankdir="LR") is None
    assert (tmp_path / "m.pdf").read_bytes()[:5] == b"%PDF-"
    assert isinstance(plot_model(model, to_file=tmp_path / "m.svg"), display.SVG)
    assert "<svg" in (tmp_path / "m.svg").read_text()
    plot_model(model, to_file=tmp_path / "noext", dpi=20)          # no extension: PNG, as Keras
    assert (tmp_path / "noext").read_bytes()[:4] == b"\x89PNG"


def test_taller_with_more_layers_and_wider_left_to_right(tmp_path):
    from matplotlib.image import imread
    plot_model(small(), to_file=tmp_path / "tb.png", dpi=30)
    plot_model(small(), to_file=tmp_path / "lr.png", rankdir="LR", dpi=30)
    tb, lr = imread(tmp_path / "tb.png"), imread(tmp_path / "lr.png")
    assert tb.shape[0] > tb.shape[1] and lr.shape[1] > lr.shape[0]
    assert np.isclose(tb[..., :3].min(), 0)                        # the black headers are drawn


def test_bad_and_unsupported_arguments_are_refused(tmp_path):
    model, out = small(), tmp_path / "m.png"
    with pytest.raises(ValueError, match="has not been built"):
        plot_model(Sequential([Dense(2)]), to_file=out)
    with pytest.raises(ValueError, match="layer_range.*no longer supported"):
        plot_model(model, to_file=out, layer_range=["a", "b"])
    with pytest.raises(ValueError, match="unrecognized keyword arguments"):
        plot_model(model, to_file=out, colour="red")
    with pytest.raises(ValueError, match="rankdir must be"):
        plot_model(model, to_file=out, rankdir="XY")
    with pytest.raises(ValueError, match="splines must be 'ortho' or 'line'"):
        plot_model(model, to_file=out, splines="curved")
    with pytest.raises(ValueError, match="dpi must be a positive number"):
        plot_model(model, to_file=out, dpi=0)
    with pytest.raises(TypeError, match="show_shapes must be True or False"):
        plot_model(model, to_file=out, show_shapes="yes")
    with pytest.raises(ValueError, match=r"cannot write a \.docx file"):
        plot_model(model, to_file=tmp_path / "m.docx")
