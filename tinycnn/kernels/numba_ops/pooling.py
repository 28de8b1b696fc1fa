"""Max-pooling of any window, stride and padding (2x2 windows at stride 2 take elementwise.epilogue).

    maxpool(x, PH, PW, SH, SW, top, left, out, argmax)         out = each window's max; argmax
                                                               (if not empty) its offset kh*PW + kw
    maxpool_backward(dout, argmax, PH, PW, SH, SW, top, left, dx)   each window's gradient to its winner
numpy_ops.maxpool_forward says what these compute. Padded cells are skipped, so they never win;
a tie keeps the first offset. Storing the winner's offset in its window means backward needs no search.
"""
from numba import njit

OPTS = dict(cache=True, nogil=True, error_model="numpy")


@njit(**OPTS)
def maxpool(x, PH, PW, SH, SW, top, left, out, argmax):
    N, H, W, C = x.shape
    _, OH, OW, _ = out.shape
    track = argmax.size > 0
    for n in range(N):
        for i in range(OH):
            for j in range(OW):
                first = True
                for kh in range(PH):
                    row = i * SH + kh - top
                    if row < 0 or row >= H:
                        continue
                    for kw in range(PW):
                        col = j * SW + kw - left
                        if col < 0 or col >= W:
                            continue
                        for c in range(C):                       # channels innermost: contiguous
                            v = x[n, row, col, c]
                            if first or v > out[n, i, j, c]:     # strict: a tie keeps the first
                                out[n, i, j, c] = v
                                if track:
                                    argmax[n, i, j, c] = kh * PW + kw
                        first = False


@njit(**OPTS)
def maxpool_backward(dout, argmax, PH, PW, SH, SW, top, left, dx):
    N, H, W, C = dx.shape
    _, OH, OW, _ = dout.shape
    zero = dx.dtype.type(0)
    for n in range(N):
        for row in range(H):
            for col in range(W):
                for c in range(C):
                    dx[n, row, col, c] = zero
        for i in range(OH):
            for j in range(OW):
                for kh in range(PH):
                    row = i * SH + kh - top
                    if row < 0 or row >= H:
                        continue
                    for kw in range(PW):
                        col = j * SW + kw - left
                        if col < 0 or col >= W:
                            continue
                        k = kh * PW + kw
                        for c in range(C):
                            if argmax[n, i, j, c] == k:
                                dx[n, row, col, c] += dout[n, i, j, c]
