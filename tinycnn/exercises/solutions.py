"""Worked answers to the exercises in skeletons.py. Try them yourself first!

Each passes its checker:  tinycnn.exercises.check_all(tinycnn.exercises.solutions)
"""
import numpy as np

from tinycnn.kernels.numpy_ops import col2im, im2col


def dense_backward(dout, x, w):
    dx = dout @ w.T                    # (N, D): each input collects the errors it fed
    dw = x.T @ dout                    # (D, M): input times output error, summed over N
    db = dout.sum(axis=0)              # (M,):   the bias touches every sample
    return dx, dw, db


def softmax_cross_entropy(z, y):
    N = z.shape[0]
    shifted = z - z.max(axis=1, keepdims=True)                         # (N, K), every row's max is 0
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # (N, K), log softmax
    loss = float(-np.sum(y * log_p) / N)
    dz = (np.exp(log_p) - y) / N                                       # (N, K): (p - y) / N
    return loss, dz


def conv2d_backward(dout, x, w, stride, pads):
    KH, KW, C, F = w.shape
    cols = im2col(x, KH, KW, stride, pads)                   # (N*OH*OW, KH*KW*C)
    dz = dout.reshape(-1, F)                                 # (N*OH*OW, F), one row per patch
    dw = (cols.T @ dz).reshape(KH, KW, C, F)                 # (KH, KW, C, F)
    db = dz.sum(axis=0)                                      # (F,)
    dcols = dz @ w.reshape(KH * KW * C, F).T                 # (N*OH*OW, KH*KW*C)
    dx = col2im(dcols, x.shape, KH, KW, stride, pads)        # (N, H, W, C), overlaps add up
    return dx, dw, db


def maxpool_backward(dout, x, pool_size):
    N, H, W, C = x.shape
    PH, PW = pool_size
    OH, OW = H // PH, W // PW
    windows = (x.reshape(N, OH, PH, OW, PW, C)
               .transpose(0, 1, 3, 5, 2, 4)
               .reshape(N, OH, OW, C, PH * PW))                          # (N, OH, OW, C, PH*PW)
    winner = windows.argmax(axis=-1)                                    # (N, OH, OW, C)
    dwindows = np.zeros_like(windows)                                   # (N, OH, OW, C, PH*PW)
    np.put_along_axis(dwindows, winner[..., None], dout[..., None], axis=-1)
    return (dwindows.reshape(N, OH, OW, C, PH, PW)
            .transpose(0, 1, 4, 2, 5, 3)
            .reshape(N, H, W, C))                                       # (N, H, W, C)


def adam_step(p, g, m, v, t, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    m = beta_1 * m + (1 - beta_1) * g                                   # running mean of g
    v = beta_2 * v + (1 - beta_2) * g * g                               # running mean of g^2
    lr_t = learning_rate * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)  # bias correction
    p = p - lr_t * m / (np.sqrt(v) + epsilon)
    return p, m, v


def softmax_jvp(p, v):
    pv = np.sum(p * v, axis=1, keepdims=True)    # (N, 1): each row's p . v
    return p * (v - pv)                          # (N, K): diag(p) v - p (p . v)


def two_layer_backward(x, y, w1, b1, w2, b2):
    z1 = x @ w1 + b1                             # (N, H)
    h = np.maximum(z1, 0)                        # (N, H)
    loss, dz = softmax_cross_entropy(h @ w2 + b2, y)   # dz (N, K) = (p - y) / N
    dw2 = h.T @ dz                               # (H, K)
    db2 = dz.sum(axis=0)                         # (K,)
    dh = dz @ w2.T                               # (N, H)
    dz1 = dh * (z1 > 0)                          # (N, H): the ReLU gate
    dw1 = x.T @ dz1                              # (D, H)
    db1 = dz1.sum(axis=0)                        # (H,)
    return loss, dw1, db1, dw2, db2


def conv2d_forward(x, w, b, stride, pads):
    N, H, W, _ = x.shape
    KH, KW, C, F = w.shape
    OH = (H + pads[0] + pads[1] - KH) // stride[0] + 1
    OW = (W + pads[2] + pads[3] - KW) // stride[1] + 1
    cols = im2col(x, KH, KW, stride, pads)             # (N*OH*OW, KH*KW*C), columns ordered (kh, kw, c)
    out = cols @ w.reshape(KH * KW * C, F) + b         # (N*OH*OW, F): the kernel flattened the same way
    return out.reshape(N, OH, OW, F)                   # (N, OH, OW, F)


def relu_backward(dout, x):
    return dout * (x > 0)                        # like x: the gate is open where x > 0 (0 at x = 0)


def dropout_backward(dout, keep, rate):
    return dout * keep / (1 - rate)              # like x: the same scaled mask as the forward pass


def avgpool_backward(dout, x, pool_size):
    PH, PW = pool_size
    share = dout / (PH * PW)                                     # (N, OH, OW, C): each cell's share
    return np.repeat(np.repeat(share, PH, axis=1), PW, axis=2)   # (N, H, W, C)


def global_avgpool_backward(dout, x):
    N, H, W, C = x.shape
    return np.broadcast_to(dout[:, None, None, :] / (H * W), x.shape).copy()   # (N, H, W, C)


def batchnorm_backward(dout, x, gamma, eps):
    axes = tuple(range(x.ndim - 1))                  # every axis but the channels
    m = x.size // x.shape[-1]                        # values per channel: N, or N*H*W for images
    mu = x.mean(axis=axes)                           # (C,)
    inv_std = 1 / np.sqrt(x.var(axis=axes) + eps)    # (C,)
    xhat = (x - mu) * inv_std                        # like x
    dbeta = dout.sum(axis=axes)                      # (C,)
    dgamma = (dout * xhat).sum(axis=axes)            # (C,)
    dxhat = dout * gamma                             # like x
    dx = inv_std / m * (m * dxhat - dxhat.sum(axis=axes) - xhat * (dxhat * xhat).sum(axis=axes))
    return dx, dgamma, dbeta                         # the mean's term and the variance's term
