"""The Keras (TensorFlow CPU) worker. Tasks: seed, course, scaling, parity.

Threads: TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS from run.py, also set through
tf.config.threading before any op runs.
"""
import os
import sys

import numpy as np

from . import common

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _tf():
    import tensorflow as tf
    intra = int(os.environ.get("TF_NUM_INTRAOP_THREADS", "0"))
    inter = int(os.environ.get("TF_NUM_INTEROP_THREADS", "0"))
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    except RuntimeError:        # already initialized: the environment variables did it
        pass
    return tf


class Keras(common.KerasStyleModel):
    def __init__(self):
        self.tf = _tf()
        import keras
        self.keras = keras

    def build(self, size, weights):
        from .parity import keras_seed_model
        self.keras.backend.clear_session()
        self.keras.utils.set_random_seed(common.SEED)
        self._setup(keras_seed_model(size), weights)

    def build_course(self, weights):
        from . import course
        self.keras.backend.clear_session()
        self.keras.utils.set_random_seed(common.SEED)
        self._setup(course.keras_model(), weights)

    def _setup(self, model, weights):
        self.model = model
        if weights is not None:
            self.model.set_weights(weights)
        self.model.compile(loss="categorical_crossentropy",
                           optimizer=self.keras.optimizers.Adam(learning_rate=1e-3, epsilon=1e-7),
                           metrics=["accuracy"])
        self.model.optimizer.build(self.model.trainable_variables)
        self.initial = [np.array(w) for w in self.model.get_weights()]
        self.initial_opt = [np.array(v.numpy()) for v in self.model.optimizer.variables]

    def reset(self):
        self.model.set_weights(self.initial)
        for v, value in zip(self.model.optimizer.variables, self.initial_opt):
            v.assign(value)



def versions(fw):
    tf = fw.tf
    out = {"tensorflow": tf.__version__, "keras": fw.keras.__version__,
           "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
           "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
           "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)")}
    return out


def run(cfg):
    task = cfg["task"]
    fw = Keras()
    if task == "seed":
        out = common.seed_task(fw, cfg)
        out["jit_compile"] = bool(getattr(fw.model, "jit_compile", False))
    elif task == "course":
        out = common.course_task(fw, cfg)
    elif task == "scaling":
        out = common.scaling_task(fw, cfg)
    elif task == "parity":
        import tinycnn
        from . import parity
        _, (xt, yt) = common.load_data(cfg)
        out = {"backends": {}}
        for backend in cfg["backends"]:
            tinycnn.set_backend(backend)
            out["backends"][backend] = parity.check(xt, yt, common.load_weights_list(cfg.get("tinycnn_weights")),
                                        common.load_weights_list(cfg.get("keras_weights")))
    else:
        raise ValueError(f"unknown task {task!r}")
    out["versions"] = versions(fw)
    return out


if __name__ == "__main__":
    sys.exit(common.worker_main(run, __doc__))
