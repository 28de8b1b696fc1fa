"""The exercises: functions for you to write. Each has a checker in tinycnn.exercises.

Copy a function into your notebook (or edit a copy of this file), replace the
`raise NotImplementedError` with your code, and run its checker:

    from tinycnn import exercises as ex
    ex.check_dense_backward(dense_backward)

The checker compares your answer with tinycnn's reference and with a numerical gradient,
and tells you which output is wrong, at what shape and by how much. Every function gets
float64 arrays and must return NEW arrays: never modify an input in place.
Stuck? ex.hint("dense_backward", level=1) nudges, level=3 gives the key equation.
Worked answers are in tinycnn/exercises/solutions.py; try first, look after.
"""
import numpy as np  # noqa: F401  (you will need it)

from tinycnn.kernels.numpy_ops import col2im, im2col  # noqa: F401  (for conv2d_backward)


def dense_backward(dout, x, w):
    """Backward pass of a Dense layer z = x @ w + b (no activation).

    Args:
        dout: dL/dz, the gradient from the layer above, shape (N, M).
        x:    the layer's input, kept from the forward pass, shape (N, D).
        w:    the kernel, shape (D, M).
    Returns:
        (dx, dw, db): dL/dx of shape (N, D), dL/dw of shape (D, M), dL/db of shape (M,).
    Hint: write z_nm = sum_d x_nd w_dm + b_m, and ask which z's each x_nd, w_dm and b_m
    touches. Every answer is one line; check your shapes against the ones above.
    """
    raise NotImplementedError


def softmax_cross_entropy(z, y):
    """Softmax followed by the mean cross-entropy, and its gradient with respect to the logits.

    Args:
        z: logits, shape (N, K).
        y: one-hot targets, shape (N, K).
    Returns:
        (loss, dz): loss is a float, -1/N sum_n sum_k y_nk log p_nk with p = softmax(z);
        dz = dL/dz, shape (N, K).
    Hint: subtract each row's max from z before np.exp (softmax does not change, and
    exp cannot overflow). The loss is a mean over N samples, so is its gradient.
    """
    raise NotImplementedError


def conv2d_backward(dout, x, w, stride, pads):
    """Backward pass of a convolution out = im2col(x) @ w.reshape(KH*KW*C, F) + b.

    Args:
        dout:   dL/dout, shape (N, OH, OW, F).
        x:      the input, shape (N, H, W, C).
        w:      the kernel, shape (KH, KW, C, F).
        stride: (SH, SW).
        pads:   (top, bottom, left, right) zeros around x.
    Returns:
        (dx, dw, db) of shapes (N, H, W, C), (KH, KW, C, F) and (F,).
    Hint: cols = im2col(x, KH, KW, stride, pads) is (N*OH*OW, KH*KW*C). The forward pass
    is one matrix product, so the backward is two (one per operand) plus a sum for the
    bias. col2im(dcols, x.shape, KH, KW, stride, pads) folds the columns back onto the image.
    """
    raise NotImplementedError


def maxpool_backward(dout, x, pool_size):
    """Backward pass of max pooling with non-overlapping windows (stride = pool size).

    Args:
        dout:      dL/dout, shape (N, OH, OW, C), OH = H // PH, OW = W // PW.
        x:         the input, shape (N, H, W, C); H and W are multiples of the pool size.
        pool_size: (PH, PW), the window's height and width.
    Returns:
        dx of shape (N, H, W, C).
    Hint: the window (i, j) of channel c is x[n, i*PH:(i+1)*PH, j*PW:(j+1)*PW, c]. Only
    its largest cell affects the output, so only that cell gets a gradient. Loops are fine.
    """
    raise NotImplementedError


def adam_step(p, g, m, v, t, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """One Adam update of a weight array, in Keras's form.

    Args:
        p: the weights; g: their gradient; m, v: the running averages of g and g*g
           from the previous step (zeros before the first); all the same shape.
        t: the step number, 1 for the first update.
    Returns:
        (p, m, v), the new values (new arrays, the inputs left unchanged).
    The rule:  m <- beta_1 m + (1 - beta_1) g
               v <- beta_2 v + (1 - beta_2) g^2
               p <- p - lr_t m / (sqrt(v) + epsilon),  lr_t = lr sqrt(1 - beta_2^t) / (1 - beta_1^t)
    """
    raise NotImplementedError


def softmax_jvp(p, v):
    """The softmax's Jacobian times a vector, for every row: what softmax's backward computes.

    Args:
        p: the softmax's output p = softmax(z), shape (N, K); each row sums to 1.
        v: dL/dp, the gradient from above, shape (N, K).
    Returns:
        J v of shape (N, K), row by row, with J_ij = dp_i/dz_j = p_i (delta_ij - p_j), so that
        (J v)_i = sum_j J_ij v_j. (J is symmetric: this is also dL/dz = J^T v.)
    Hint: do not build the (K, K) matrix; expand the sum over j by hand.
    """
    raise NotImplementedError


def two_layer_backward(x, y, w1, b1, w2, b2):
    """A whole two-layer network, forward and backward: the chain rule end to end.

    The network:  h = relu(x @ w1 + b1),  z = h @ w2 + b2,  loss = mean cross-entropy of softmax(z).
    Args:
        x: inputs (N, D); y: one-hot targets (N, K);
        w1 (D, H), b1 (H,), w2 (H, K), b2 (K,).
    Returns:
        (loss, dw1, db1, dw2, db2): the mean loss (a float) and its gradients, each of
        the shape of its weight.
    Hint: go backwards one layer at a time, keeping each gradient's shape: dz (N, K),
    then dw2, db2, dh (N, H), then through the ReLU, then dw1, db1.
    """
    raise NotImplementedError


def conv2d_forward(x, w, b, stride, pads):
    """The forward pass of a convolution, as one matrix product (im2col).

    Args:
        x:      the input, shape (N, H, W, C).
        w:      the kernel, shape (KH, KW, C, F) (Keras's layout).
        b:      the bias, shape (F,).
        stride: (SH, SW).
        pads:   (top, bottom, left, right) zeros around x.
    Returns:
        out of shape (N, OH, OW, F), OH = (H + top + bottom - KH) // SH + 1 (OW alike).
    Hint: cols = im2col(x, KH, KW, stride, pads) is (N*OH*OW, KH*KW*C), each row one
    patch with its values in (kh, kw, c) order. Flatten w to match, multiply, add b, reshape.
    """
    raise NotImplementedError


def relu_backward(dout, x):
    """Backward pass of the ReLU a = max(x, 0).

    Args:
        dout: dL/da, shape like x.
        x:    the ReLU's input, any shape.
    Returns:
        dx, shape like x. At x = 0 the slope is taken as 0 (as Keras does).
    """
    raise NotImplementedError


def dropout_backward(dout, keep, rate):
    """Backward pass of (inverted) dropout: out = x * keep / (1 - rate) in training.

    Args:
        dout: dL/dout, shape like x.
        keep: booleans, shape like x: True for the units the forward pass kept.
        rate: the fraction of units dropped, in [0, 1).
    Returns:
        dx, shape like x.
    """
    raise NotImplementedError


def avgpool_backward(dout, x, pool_size):
    """Backward pass of average pooling with non-overlapping windows (stride = pool size).

    Args:
        dout:      dL/dout, shape (N, OH, OW, C), OH = H // PH, OW = W // PW.
        x:         the input, shape (N, H, W, C) (only its shape matters here).
        pool_size: (PH, PW).
    Returns:
        dx of shape (N, H, W, C).
    Hint: out[n, i, j, c] is the mean of its window's PH*PW cells. How much does each
    cell move it? np.repeat along axes 1 and 2 spreads a value over a window.
    """
    raise NotImplementedError


def global_avgpool_backward(dout, x):
    """Backward pass of global average pooling: out[n, c] = mean of x[n, :, :, c].

    Args:
        dout: dL/dout, shape (N, C).
        x:    the input, shape (N, H, W, C) (only its shape matters here).
    Returns:
        dx of shape (N, H, W, C).
    """
    raise NotImplementedError


def batchnorm_backward(dout, x, gamma, eps):
    """Backward pass of batch normalization in training mode (the batch's own statistics).

    Forward, per channel c over its m values (m = N for (N, C), N*H*W for (N, H, W, C)):
        mu = mean(x),  var = mean((x - mu)^2),  xhat = (x - mu) / sqrt(var + eps),
        out = gamma * xhat + beta
    Args:
        dout:  dL/dout, shape like x.
        x:     the input, shape (N, C) or (N, H, W, C).
        gamma: the scale, shape (C,).
        eps:   the small number added to var.
    Returns:
        (dx, dgamma, dbeta): dx like x, dgamma and dbeta of shape (C,).
    Hint: mu and var are computed from x itself, so every x_i reaches the output three
    ways: directly, through mu and through var. dx must collect all three.
    """
    raise NotImplementedError
