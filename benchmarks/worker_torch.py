"""The PyTorch CPU worker: the seed and course models in NCHW with equivalent layers.
Tasks: seed, course, scaling.

Threads: torch.set_num_threads(N) and set_num_interop_threads(N), N = OMP_NUM_THREADS from run.py.
The loss is cross-entropy on logits (softmax fused, as tinycnn and Keras fuse it in backward);
Adam(lr=1e-3, eps=1e-7). Initial weights come from tinycnn's (layouts converted).
"""
import os
import sys

import numpy as np

from . import common


class Torch:
    def __init__(self):
        import torch
        self.torch = torch
        n = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
        if n:
            torch.set_num_threads(n)
            try:
                torch.set_num_interop_threads(n)
            except RuntimeError:
                pass

    def build(self, size, weights):
        torch, nn = self.torch, self.torch.nn
        torch.manual_seed(common.SEED)
        side = common.flat_side(size)
        self.model = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.25),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.25),
            nn.Flatten(), nn.Linear(64 * side * side, 128), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(128, 10))
        if weights is not None:
            params = [p for p in self.model.parameters()]
            with torch.no_grad():
                for p, w in zip(params, common.keras_to_torch(weights, size)):
                    p.copy_(torch.from_numpy(np.ascontiguousarray(w)))
        self._setup()

    def build_course(self, weights):
        from . import course
        self.torch.manual_seed(common.SEED)
        self.model = course.torch_model()
        if weights is not None:
            missing, unexpected = self.model.load_state_dict(course.keras_to_torch(weights), strict=False)
            if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
                raise ValueError(f"course weights do not fit the torch model: {missing}, {unexpected}")
        self._setup()

    def _setup(self):
        self.initial = {k: v.clone() for k, v in self.model.state_dict().items()}
        self._optimizer()

    def _optimizer(self):
        self.opt = self.torch.optim.Adam(self.model.parameters(), lr=1e-3, eps=1e-7)

    def reset(self):
        self.model.load_state_dict(self.initial)
        self._optimizer()

    def prepare(self, x, y):
        """NHWC float32 -> NCHW tensor (once, outside the timings); one-hot -> class indices."""
        torch = self.torch
        return (torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))),
                torch.from_numpy(np.asarray(y).argmax(-1).astype(np.int64)))

    def _step(self, xb, yb):
        F = self.torch.nn.functional
        self.opt.zero_grad(set_to_none=True)
        logits = self.model(xb)
        loss = F.cross_entropy(logits, yb)
        loss.backward()
        self.opt.step()
        return loss.item(), int((logits.argmax(1) == yb).sum())

    def train_step(self, xb, yb):
        self.model.train()
        self._step(xb, yb)

    def _train_pass(self, x, y, batch):
        """One shuffled pass with running loss and accuracy (as Keras's fit keeps)."""
        self.model.train()
        order = self.torch.randperm(len(x))
        loss_sum, correct = 0.0, 0
        for s in range(0, len(x), batch):
            idx = order[s:s + batch]
            loss, right = self._step(x[idx], y[idx])
            loss_sum, correct = loss_sum + loss * len(idx), correct + right
        return loss_sum / len(x), correct / len(x)

    def fit_steps(self, x, y, batch, steps):
        """Exactly `steps` batches of the training loop: a pass over the first steps * batch samples."""
        n = steps * batch
        self._train_pass(x[:n], y[:n], batch)

    def fit_epoch(self, x, y, xv, yv, batch):
        """One shuffled training pass, then the validation loss and accuracy."""
        torch = self.torch
        self._train_pass(x, y, batch)
        self.model.eval()
        val_loss, val_correct = 0.0, 0
        with torch.no_grad():
            for s in range(0, len(xv), batch):
                logits = self.model(xv[s:s + batch])
                val_loss += float(torch.nn.functional.cross_entropy(logits, yv[s:s + batch], reduction="sum"))
                val_correct += int((logits.argmax(1) == yv[s:s + batch]).sum())
        return val_correct / len(xv)

    def predict(self, x, batch):
        torch = self.torch
        self.model.eval()
        outs = []
        with torch.no_grad():
            for s in range(0, len(x), batch):
                outs.append(torch.softmax(self.model(x[s:s + batch]), dim=1))
        return torch.cat(outs).numpy()

    def get_weights(self):
        return [p.detach().numpy().copy() for p in self.model.parameters()]


def forward_check(fw, cfg):
    """The same initial weights in tinycnn and PyTorch give the same predictions: checks the
    layout conversion, so the two start training from the same point."""
    import tinycnn
    from tinycnn import seed
    weights = common.load_weights_list(cfg.get("init_weights"))
    if weights is None:
        return None
    _, (xt, _) = common.load_data(dict(cfg, test_subset=256))
    tinycnn.set_backend("numpy")
    tiny = seed.build_model()
    tiny.set_weights(weights)
    fw.build(28, weights)
    p_torch = fw.predict(fw.prepare(xt, np.zeros((len(xt), 10)))[0], 128)
    p_tiny = tiny.predict(xt, batch_size=128, verbose=0)
    return {"images": len(xt), "max_abs_diff": float(np.abs(p_torch - p_tiny).max())}


def run(cfg):
    fw = Torch()
    if cfg["task"] == "seed":
        out = common.seed_task(fw, cfg)
        out["initial_forward_vs_tinycnn"] = forward_check(fw, cfg)
    elif cfg["task"] == "course":
        out = common.course_task(fw, cfg)
    elif cfg["task"] == "scaling":
        out = common.scaling_task(fw, cfg)
    else:
        raise ValueError(f"unknown task {cfg['task']!r}")
    torch = fw.torch
    out["versions"] = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                       "interop_threads": torch.get_num_interop_threads()}
    return out


if __name__ == "__main__":
    sys.exit(common.worker_main(run, __doc__))
