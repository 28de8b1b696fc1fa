"""The roofline arithmetic: this machine's float32 matmul peak, and each layer's FLOPs.

FLOPs count the multiply-adds of the matrix products (2 per multiply-add):
    Conv2D forward   2 * N * OH * OW * KH * KW * C * F
    Dense forward    2 * N * in * out
    backward         dW costs as much as the forward, dx as much again: 2x the forward. A
                     layer's own backward always returns dx; a training step needs none for
                     the model's first layer, so the lower bound counts 1x there.
Pooling, dropout, flatten, bias and ReLU are memory traffic, not FLOPs: they count 0 here,
so their time is pure overhead above the bound.
"""
import time

import numpy as np


def matmul_peak(n=2048, repeats=5):
    """Best-of-`repeats` GFLOP/s of an n x n x n float32 matrix product with NumPy's BLAS."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=c)                          # wake the BLAS threads
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        np.matmul(a, b, out=c)
        times.append(time.perf_counter() - t)
    flops = 2.0 * n ** 3
    return {"n": n, "repeats": repeats, "best_s": min(times), "gflops": flops / min(times) / 1e9,
            "median_gflops": flops / float(np.median(times)) / 1e9}


def layer_flops(model, batch):
    """[{"forward": F, "backward": B}] for each layer of a built tinycnn Sequential."""
    rows = []
    for layer in model.layers:
        kind = type(layer).__name__
        fwd = 0
        if kind == "Conv2D":
            OH, OW, F = layer.out_shape
            KH, KW, C, _ = layer.params["kernel"].shape
            fwd = 2 * batch * OH * OW * KH * KW * C * F
        elif kind == "Dense":
            n_in, n_out = layer.params["kernel"].shape
            fwd = 2 * batch * n_in * n_out
        bwd = 2 * fwd
        rows.append({"forward": int(fwd), "backward": int(bwd)})
    return rows


def lower_bound(layers, peak_gflops, batch, train_images=60000, val_images=10000):
    """Seconds per epoch (training + validation) if every FLOP ran at the matmul peak."""
    needed = sum(r["forward_flops"] + r["backward_flops"] for r in layers) - layers[0]["forward_flops"]
    train = needed / batch                      # the first layer's dx is never needed
    forward = sum(r["forward_flops"] for r in layers) / batch
    total = train * train_images + forward * val_images
    return {"train_flops_per_image": train, "forward_flops_per_image": forward,
            "epoch_flops": total, "s_per_epoch": total / (peak_gflops * 1e9),
            "ms_per_step": 1000 * train * batch / (peak_gflops * 1e9)}
