"""Kernels: the arithmetic behind the layers, one module per backend with the same functions.

    numpy_ops  the readable reference (im2col, col2im, ...), always available
    numba_ops  compiled with Numba: the same signatures, faster
Pick one with tinycnn.set_backend("numpy" | "numba").
"""
