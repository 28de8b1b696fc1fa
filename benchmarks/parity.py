"""Keras parity: the seed model's weights move both ways between tinycnn and Keras through
get_weights()/set_weights() (same order: per layer kernel then bias; same layouts: conv
(KH, KW, C, F), dense (in, out)), and both give the same predictions within float32 round-off.

Used by worker_keras.py (task "parity", in the benchmark report) and tests/test_keras_parity.py.
"""
import numpy as np


def keras_seed_model(size=28):
    """The seed tutorial's model in Keras, built, uncompiled."""
    import keras
    from keras import layers
    return keras.Sequential([
        keras.Input(shape=(size, size, 1)),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Dropout(0.25),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Dropout(0.25),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ])


def compare_predictions(tiny_model, keras_model, x, batch=128):
    """Predictions of both models on x: the largest and mean absolute difference, and how
    often their argmax agrees."""
    p_tiny = tiny_model.predict(x, batch_size=batch, verbose=0)
    p_keras = np.asarray(keras_model.predict(x, batch_size=batch, verbose=0))
    diff = np.abs(p_tiny.astype(np.float64) - p_keras)
    return {"images": int(len(x)), "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "argmax_agreement": float((p_tiny.argmax(-1) == p_keras.argmax(-1)).mean()),
            "argmax_disagreements": int((p_tiny.argmax(-1) != p_keras.argmax(-1)).sum()),
            "_probs": (p_tiny, p_keras)}


def _same(a_list, b_list):
    return len(a_list) == len(b_list) and all(
        a.shape == b.shape and np.array_equal(a, b) for a, b in zip(a_list, b_list))


def check(x, y=None, tiny_weights=None, keras_weights=None, batch=128):
    """Both directions. tiny_weights/keras_weights: the weights to move (e.g. trained ones);
    None means each model's own initial weights. Returns a JSON-able dict."""
    import keras

    from tinycnn import seed
    tiny, ker = seed.build_model(), keras_seed_model()
    result = {"tinycnn_shapes": [list(w.shape) for w in tiny.get_weights()],
              "keras_shapes": [list(np.shape(w)) for w in ker.get_weights()]}
    result["same_order_and_shapes"] = result["tinycnn_shapes"] == result["keras_shapes"]
    labels = None if y is None else np.asarray(y).argmax(-1)
    for direction, source, target in (("tinycnn_to_keras", tiny, ker), ("keras_to_tinycnn", ker, tiny)):
        given = tiny_weights if direction == "tinycnn_to_keras" else keras_weights
        if given is not None:
            source.set_weights([np.asarray(w, dtype=np.float32) for w in given])
        elif direction == "keras_to_tinycnn":                 # a fresh Keras init, not tinycnn's
            keras.utils.set_random_seed(1)
            ker_fresh = keras_seed_model()
            ker.set_weights(ker_fresh.get_weights())
        moved = [np.asarray(w) for w in source.get_weights()]
        target.set_weights(moved)
        back = [np.asarray(w) for w in target.get_weights()]
        entry = {"weights": "given" if given is not None else "initial",
                 "round_trip_exact": _same(moved, back)}
        entry.update(compare_predictions(tiny, ker, x, batch))
        p_tiny, p_keras = entry.pop("_probs")
        if labels is not None:
            entry["tinycnn_accuracy"] = float((p_tiny.argmax(-1) == labels).mean())
            entry["keras_accuracy"] = float((p_keras.argmax(-1) == labels).mean())
        result[direction] = entry
    return result
