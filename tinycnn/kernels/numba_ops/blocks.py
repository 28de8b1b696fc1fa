"""Blocks: a few images at a time, so that what one kernel writes is still in the core's cache
when the next kernel reads it (see benchmarks/DECISIONS.md, "Cache blocks").

    cache_bytes()               the size of one core's L2 cache, where the OS says it; else 1 MiB
    images_per_block(nbytes, rows)  images per block: their buffers (`nbytes` each) in about two
                                    L2s, and at least MIN_ROWS rows for each matrix product
    split(lo, hi, step)         [lo, hi) as consecutive (start, stop) blocks of `step` images
"""
import functools
import glob
import math
import os

import numpy as np

DEFAULT_CACHE = 1 << 20          # the L2 of a laptop core of the last decade is 0.25 to 2 MiB
MIN_ROWS = 64                    # a BLAS product of fewer rows spends its time starting up


@functools.lru_cache(maxsize=None)
def cache_bytes():
    """One core's L2, from Linux's sysfs; else DEFAULT_CACHE."""
    try:
        for folder in sorted(glob.glob("/sys/devices/system/cpu/cpu0/cache/index*")):
            with open(os.path.join(folder, "level")) as f:
                level = int(f.read())
            with open(os.path.join(folder, "size")) as f:
                size = f.read().strip().upper()
            if level == 2:
                factor = {"K": 1 << 10, "M": 1 << 20}.get(size[-1:], 1)
                return int(size.rstrip("KM")) * factor
    except (OSError, ValueError):                     # no sysfs (macOS, Windows), or a format we do not know
        pass
    return DEFAULT_CACHE


def images_per_block(nbytes, rows=MIN_ROWS):
    """Blocks of about twice the L2 (the rest spills to the shared L3), but long enough for BLAS."""
    return max(2 * cache_bytes() // max(1, nbytes), -(-MIN_ROWS // max(1, rows)), 1)


def split(lo, hi, step):
    return [(s, min(s + step, hi)) for s in range(lo, hi, step)]


class Scratch:
    """Buffers kept from one step to the next, so that a step's big arrays do not come fresh from
    the system (page faults) every time. scratch(name, shape, dtype) is a view of the buffer kept
    under that name, grown when a larger one is asked for. One Scratch per slice of the batch:
    a slice is computed by one thread at a time."""

    def __init__(self):
        self.buffers = {}

    def __call__(self, name, shape, dtype=np.float32):
        size = math.prod(shape)
        key = (name, np.dtype(dtype))
        buf = self.buffers.get(key)
        if buf is None or buf.size < size:
            buf = self.buffers[key] = np.empty(size, dtype=dtype)
        return buf[:size].reshape(shape)
