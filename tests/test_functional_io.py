"""Functional models of several inputs and outputs, and models used as layers."""
import numpy as np
import pytest

import tinycnn
from tinycnn import layers as L
from tinycnn.models import load_model

RNG = np.random.default_rng(1)
X = [RNG.random((24, 8, 8, 1), dtype=np.float32), RNG.random((24, 4), dtype=np.float32)]
Y = {"cls": tinycnn.to_categorical(np.arange(24) % 3, 3), "reg": RNG.random((24, 1), dtype=np.float32)}


def two_by_two(reg_weight=0.5):
    tinycnn.set_random_seed(2)
    image, meta = tinycnn.Input((8, 8, 1), name="img"), tinycnn.Input((4,), name="meta")
    x = L.Flatten()(L.Conv2D(2, 3, activation="relu")(image))
    h = L.Concatenate()([x, L.Dense(4, activation="relu")(meta)])
    outputs = {"cls": L.Dense(3, activation="softmax", name="cls")(h), "reg": L.Dense(1, name="reg")(h)}
    model = tinycnn.Model([image, meta], outputs)
    model.compile("adam", loss={"cls": "categorical_crossentropy", "reg": "mse"},
                  loss_weights={"cls": 1.0, "reg": reg_weight}, metrics={"cls": ["accuracy"], "reg": ["mae"]})
    return model


def test_the_loss_is_the_weighted_sum_of_the_outputs_losses_and_logs_name_them_as_keras():
    model = two_by_two()
    logs = model.evaluate(X, Y, verbose=0, return_dict=True)
    assert list(logs) == ["loss", "cls_loss", "reg_loss", "cls_accuracy", "reg_mae"]
    assert logs["loss"] == pytest.approx(logs["cls_loss"] + 0.5 * logs["reg_loss"], rel=1e-6)
    out = model.predict(X, verbose=0)
    assert set(out) == {"cls", "reg"} and out["cls"].shape == (24, 3) and out["reg"].shape == (24, 1)
    mse = float(((out["reg"] - Y["reg"]) ** 2).mean())
    assert logs["reg_loss"] == pytest.approx(mse, rel=1e-5)
    history = model.fit(X, Y, epochs=2, batch_size=8, verbose=0, validation_split=0.25)
    assert history.history["val_reg_mae"][-1] > 0 and len(history.history["cls_loss"]) == 2


def test_an_output_of_weight_zero_gets_no_gradient():
    model = two_by_two(reg_weight=0.0)
    before = model.get_layer("reg").get_weights()
    model.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_layer("reg").get_weights()))
    assert not np.array_equal(model.get_layer("cls").get_weights()[0], two_by_two().get_layer("cls").get_weights()[0])


def test_inputs_by_list_or_by_name_give_the_same_outputs():
    model = two_by_two()
    by_list = model.predict(X, verbose=0)
    by_name = model.predict({"meta": X[1], "img": X[0]}, verbose=0)
    assert all(np.array_equal(by_list[k], by_name[k]) for k in by_list)


def test_several_inputs_and_outputs_save_and_load(tmp_path):
    model = two_by_two()
    model.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    model.save(tmp_path / "m.keras")
    again = load_model(tmp_path / "m.keras")
    assert again.evaluate(X, Y, verbose=0, return_dict=True) == model.evaluate(X, Y, verbose=0, return_dict=True)


@pytest.mark.parametrize("call, error", [
    (lambda m: m.predict(X[:1], verbose=0), r"2 inputs \(img, meta\): give a list of 2"),
    (lambda m: m.predict({"img": X[0], "other": X[1]}, verbose=0), r"one entry per \['img', 'meta'\]"),
    (lambda m: m.fit(X, [Y["cls"]], verbose=0), r"2 targets \(cls, reg\)"),
    (lambda m: m.fit([X[0], X[1][:5]], Y, verbose=0), "same number of samples"),
    (lambda m: m.fit(X, Y, class_weight={0: 2.0}, verbose=0), "class_weight is for models of one output"),
    (lambda m: m.compile("adam", "mse", metrics=["mae"]), "list of 2 lists or a dict"),
])
def test_several_inputs_and_outputs_get_clear_errors(call, error):
    with pytest.raises(ValueError, match=error):
        call(two_by_two())


def test_one_loss_for_every_output():
    model = two_by_two()
    model.compile("adam", loss="mse")
    logs = model.evaluate(X, Y, verbose=0, return_dict=True)
    assert logs["loss"] == pytest.approx(logs["cls_loss"] + logs["reg_loss"], rel=1e-6)


def test_a_model_used_as_a_layer_shares_its_weights_and_its_freezing():
    tinycnn.set_random_seed(4)
    base = tinycnn.Sequential([tinycnn.Input((8, 8, 1)), L.Conv2D(3, 3, activation="relu"), L.Flatten()])
    base.trainable = False
    inputs = tinycnn.Input((8, 8, 1))
    model = tinycnn.Model(inputs, L.Dense(3, activation="softmax")(base(inputs)))
    assert model.layers[:2] == base.layers                       # the same layer objects, inlined
    model.compile("adam", "categorical_crossentropy")
    frozen = base.get_weights()
    model.fit(X[0], Y["cls"], epochs=1, batch_size=8, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(frozen, base.get_weights()))
    assert np.allclose(base.predict(X[0], verbose=0), model.layers[1](model.layers[0](X[0])))
    stacked = tinycnn.Sequential([base, L.Dense(2)])              # a model inside a Sequential, too
    assert stacked.output_shape == (None, 2) and stacked.layers[:2] == base.layers


def test_plot_model_draws_a_graph_model_with_an_arrow_per_tensor_read(tmp_path):
    from tinycnn import graph_plot
    nodes, edges = graph_plot.model_graph(two_by_two(), show_shapes=True, show_dtype=False, show_layer_names=True,
                                          show_layer_activations=False, show_trainable=False)
    assert [name for name, _ in nodes][:2] == ["img", "meta"]
    assert ("flatten", "concatenate") in edges and ("dense", "concatenate") in edges
    assert ("concatenate", "cls") in edges and ("concatenate", "reg") in edges and len(edges) == 7
    tinycnn.utils.plot_model(two_by_two(), to_file=str(tmp_path / "m.png"), show_shapes=True)
    assert (tmp_path / "m.png").stat().st_size > 1000


def test_a_chain_prints_keras_3s_three_column_summary():
    tinycnn.utils.clear_session()
    inputs = tinycnn.Input((784,))
    hidden = L.Dense(64)(inputs)
    model = tinycnn.Model(inputs, L.Dense(10)(hidden))
    lines = []
    model.summary(print_fn=lines.append)
    assert lines[2] == "┃ Layer (type)                    ┃ Output Shape           ┃       Param # ┃"
    assert lines[6] == "│ dense (Dense)                   │ (None, 64)             │        50,240 │"
    assert lines[-3] == " Total params: 50,890 (198.79 KB)"        # as Keras 3.15 prints this model
