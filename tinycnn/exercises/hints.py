"""Hints in three levels for every exercise: a nudge, the method, the key equation.

    from tinycnn import exercises as ex
    ex.hint("batchnorm_backward")            # level 1: where to look
    ex.hint("batchnorm_backward", level=3)   # level 3: the equation to implement

hint() prints the hint and returns it as a string. Level 3 stops short of the code: the
worked answers are in tinycnn/exercises/solutions.py.
"""
LEVELS = (1, 2, 3)

HINTS = {
    "dense_backward": (
        "Write one entry: z_nm = sum_d x_nd w_dm + b_m. Which z's does each x_nd, w_dm and b_m touch?",
        "dL/dx_nd = sum_m dout_nm w_dm, dL/dw_dm = sum_n x_nd dout_nm, dL/db_m = sum_n dout_nm. "
        "Each sum is a matrix product or a sum over an axis.",
        "dx = dout @ w.T (N, D),  dw = x.T @ dout (D, M),  db = dout.sum(axis=0) (M,).",
    ),
    "softmax_cross_entropy": (
        "Compute p = softmax(z) row by row, stably: subtract each row's max before np.exp.",
        "The loss is -1/N sum_n log p_n,y_n (a mean). Differentiate log-softmax: d(-log p_y)/dz_k = p_k - y_k.",
        "loss = -sum(y * log p) / N,  dz = (p - y) / N.",
    ),
    "softmax_jvp": (
        "p_i = e^z_i / sum_j e^z_j depends on every z_j: differentiate it by the quotient rule.",
        "dp_i/dz_j = p_i (delta_ij - p_j). Then (J v)_i = sum_j p_i (delta_ij - p_j) v_j: split the sum in two.",
        "J v = p * v - p * (p . v), with p . v = np.sum(p * v, axis=1, keepdims=True), one number per row.",
    ),
    "two_layer_backward": (
        "Go backwards one layer at a time; every gradient has the shape of the thing it is the gradient of.",
        "dz = (p - y) / N (N, K); dw2 = h.T @ dz, db2 = dz.sum(0); dh = dz @ w2.T (N, H). Then the ReLU, then w1.",
        "dz1 = dh * (x @ w1 + b1 > 0)  (the ReLU's gate),  dw1 = x.T @ dz1,  db1 = dz1.sum(axis=0).",
    ),
    "conv2d_forward": (
        "im2col turns every patch into one row: the convolution becomes one matrix product.",
        "cols = im2col(x, KH, KW, stride, pads) is (N*OH*OW, KH*KW*C), patch entries in (kh, kw, c) order. "
        "Flatten the kernel in that same order.",
        "out = (cols @ w.reshape(KH*KW*C, F) + b).reshape(N, OH, OW, F), "
        "OH = (H + top + bottom - KH) // SH + 1 (OW alike).",
    ),
    "conv2d_backward": (
        "The forward pass is out = cols @ W + b with W = w.reshape(KH*KW*C, F): a Dense layer on the patches.",
        "So dW = cols.T @ dz, db = dz.sum(0), dcols = dz @ W.T, with dz = dout.reshape(-1, F). "
        "Then fold dcols back onto the image.",
        "dx = col2im(dz @ W.T, x.shape, KH, KW, stride, pads) (overlaps add up), dw = (cols.T @ dz).reshape(w.shape).",
    ),
    "maxpool_backward": (
        "Only the largest cell of each window changes the output: the others have slope 0.",
        "For every window (n, i, j, c) find the argmax of x[n, i*PH:(i+1)*PH, j*PW:(j+1)*PW, c].",
        "dx = 0 everywhere, then dx[n, i*PH + a, j*PW + b, c] = dout[n, i, j, c] at the argmax (a, b) of each window.",
    ),
    "relu_backward": (
        "relu(x) = max(x, 0) has slope 1 where x > 0 and 0 elsewhere (0 at x = 0, as Keras takes it).",
        "The chain rule multiplies dout by that slope, entry by entry: a gate.",
        "dx = dout * (x > 0).",
    ),
    "dropout_backward": (
        "In training, out = x * keep / (1 - rate): for the backward pass the mask is a constant.",
        "d out / d x = keep / (1 - rate), entry by entry: the same scaled mask as the forward pass.",
        "dx = dout * keep / (1 - rate)  (0 for the dropped units, dout / (1 - rate) for the kept ones).",
    ),
    "avgpool_backward": (
        "out[n, i, j, c] is the mean of PH*PW cells: how much does one cell move it?",
        "Each cell of a window has slope 1/(PH*PW), and each cell lies in exactly one window.",
        "dx = np.repeat(np.repeat(dout / (PH*PW), PH, axis=1), PW, axis=2).",
    ),
    "global_avgpool_backward": (
        "out[n, c] is the mean of H*W pixels of channel c: every pixel moves it by the same amount.",
        "d out[n, c] / d x[n, h, w, c] = 1 / (H*W) for every pixel (h, w).",
        "dx[n, h, w, c] = dout[n, c] / (H*W): broadcast dout[:, None, None, :] / (H*W) to x's shape.",
    ),
    "batchnorm_backward": (
        "In training, mu and var are computed from x: each x reaches the output directly, through mu "
        "and through var. Collect all three paths.",
        "With dxhat = dout * gamma: the direct path gives dxhat / sqrt(var + eps); the path through mu "
        "subtracts the channel's mean of dxhat; the path through var subtracts xhat * mean(dxhat * xhat). "
        "dgamma = sum(dout * xhat), dbeta = sum(dout), over every axis but the channels.",
        "dx = 1/sqrt(var + eps) * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), means over the m values "
        "of each channel (m = N, or N*H*W for images).",
    ),
    "adam_step": (
        "Two running averages: m of the gradient, v of its square; then a step of m / sqrt(v).",
        "m = beta_1 m + (1 - beta_1) g, v = beta_2 v + (1 - beta_2) g^2. Early on both are biased towards 0: "
        "the step size corrects for that with t.",
        "lr_t = lr sqrt(1 - beta_2^t) / (1 - beta_1^t),  p = p - lr_t m / (sqrt(v) + epsilon) "
        "(epsilon keeps the division finite where v = 0).",
    ),
}


def hint(name, level=1, verbose=True):
    """Print and return the hint of exercise `name` at `level` (1: a nudge, 2: the method, 3: the key equation)."""
    if name not in HINTS:
        raise ValueError(f"hint: no exercise named {name!r}; the exercises are {', '.join(HINTS)}")
    if isinstance(level, bool) or level not in LEVELS:
        raise ValueError(f"hint: level must be 1 (a nudge), 2 (the method) or 3 (the key equation); "
                         f"received {level!r}")
    text = f"{name}, hint {level} of 3: {HINTS[name][level - 1]}"
    if verbose:
        print(text)
    return text
