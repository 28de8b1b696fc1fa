"""The exercises: five functions for you to write. Each has a checker in tinycnn.exercises.

Copy a function into your notebook (or edit a copy of this file), replace the
`raise NotImplementedError` with your code, and run its checker:

    from tinycnn import exercises as ex
    ex.check_dense_backward(dense_backward)

The checker compares your answer with tinycnn's reference and with a numerical gradient,
and tells you which output is wrong, at what shape and by how much. Every function gets
float64 arrays and must return NEW arrays: never modify an input in place.
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
