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
