"""Every core at work: split the batch into chunks and give each core one.

The Numba kernels run on slices of the batch: image n never touches image m's output,
so chunk k of the batch can be computed by thread k, products included, with no locks.
Each thread calls single-threaded kernels (Numba's nogil functions and the BLAS matmul
both let go of Python's lock while they compute).

Why not simply let OpenBLAS thread its products and Numba thread its loops? On 2 cores
the two thread pools fight: OpenBLAS's idle workers spin for a while after each product,
and Numba's threads wait behind them (the seed model's step took 112 ms instead of 24).
So while a split runs, the BLAS is told to use one thread, and the cores are ours.

    for_each_chunk(n, body, work)  calls body(k, lo, hi) for chunks [lo, hi) of range(n)
    n_chunks(n, work)              how many chunks for_each_chunk would make
    one_blas_thread()              with-block: NumPy's BLAS runs single-threaded inside it
    blocks(lo, hi, bytes_each)     splits a chunk into blocks whose buffers stay in the core's cache
    keep_freed_memory()            asks the C allocator to keep big freed blocks for the next step

If the BLAS cannot be told (not OpenBLAS, or not on Linux), there is one chunk: the
kernels run on one thread, and the BLAS threads its products itself. TINYCNN_THREADS=n
in the environment sets the number of chunks (1: no threads of our own).
"""
import contextlib
import ctypes
import os
import threading

import numpy as np  # (also loads NumPy's BLAS, so that _find_openblas can see it)
from numba import njit, types


def _find_openblas():
    """(get_num_threads, set_num_threads) of the OpenBLAS NumPy loaded, or None."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    except OSError:                                  # not Linux
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas_", "openblas_"):      # NumPy's wheels, system OpenBLAS
            for suffix in ("64_", ""):
                get = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
                set_ = getattr(lib, f"{prefix}set_num_threads{suffix}", None)
                if get is not None and set_ is not None:
                    set_.argtypes, set_.restype = [ctypes.c_int], None
                    return get, set_
    return None


def _threads_wanted():
    """One thread per core we may use, or TINYCNN_THREADS if it is set."""
    setting = os.environ.get("TINYCNN_THREADS", "").strip()
    if not setting:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if not setting.isdigit() or int(setting) < 1:
        raise ValueError(f"TINYCNN_THREADS must be a whole number >= 1; received {setting!r}")
    return int(setting)


def keep_freed_memory():
    """Ask glibc's malloc to keep the big blocks a training step frees, for the next step.

    Every step allocates the same big arrays again (conv1's output alone is 11 MB at batch
    128). By default glibc gives a block that big back to the system when it is freed, and
    the next step's copy page-faults its way back in, a 4 KB page at a time: 200-500 faults
    and about 1.5 ms of CPU time per step, measured. With the two settings below, blocks up to
    32 MB come from the process's own heap and up to 256 MB of freed heap is kept: the faults
    disappear. The seed model's training step, 12 interleaved process pairs on a busy host:
    median 21.0 -> 20.3 ms (faster in 9 of 12), CPU time 33.4 -> 32.2 ms per step. The cost:
    memory the process once used stays with it until it exits (its peak stays the same).
    Returns True if the settings were made (Linux with glibc), False otherwise."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):                # not glibc (macOS, musl without mallopt, Windows)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3      # from glibc's malloc.h
    return bool(mallopt(M_MMAP_THRESHOLD, 32 << 20) and mallopt(M_TRIM_THRESHOLD, 256 << 20))


_blas = _find_openblas()
THREADS = _threads_wanted() if _blas is not None else 1
_workers, _workers_pid = [], None
_lock = threading.Lock()
_dispatch = threading.Lock()              # held while the workers run one split
_blas_users, _blas_before = 0, None


@contextlib.contextmanager
def one_blas_thread():
    """Inside the block, NumPy's matrix products run on the calling thread only.

    Blocks may nest or overlap across threads: the first one in sets the BLAS to one
    thread, the last one out gives it back the count it had before.
    """
    global _blas_users, _blas_before
    if _blas is None:
        yield
        return
    get, set_ = _blas
    with _lock:
        if _blas_users == 0:
            _blas_before = get()
            set_(1)
        _blas_users += 1
    try:
        yield
    finally:
        with _lock:
            _blas_users -= 1
            if _blas_users == 0:
                set_(_blas_before)


# Handing a chunk to another thread and waiting for it costs 15-90 us here (measured on 2
# cores with an empty chunk; it is bimodal: more when the other core has gone to sleep), and
# one thread needs 15-35 us for a quarter of a million element-steps: smaller jobs run whole.
# The threshold was a million element-steps; at a quarter million, the seed model's second
# max-pool (forward and backward) and its first dropout (forward and backward) are split too,
# 0.07-0.3 ms jobs on one core. The step, alternating the two thresholds in one process:
# faster in 40 of 60 rounds of 20 steps (medians 17.5 -> 16.2 ms) and in 23 of 40 rounds of 40.
# A BLAS product does about 16 multiply-adds in the time a Numba loop takes one element-step.
MIN_WORK = 1 << 18
MACS_PER_STEP = 16


_inside = threading.local()               # .chunk is True on a thread while it runs a chunk


def _as_chunk(body, k, lo, hi):
    _inside.chunk = True
    try:
        body(k, lo, hi)
    finally:
        _inside.chunk = False


_sched_yield = types.ExternalFunction("sched_yield", types.int32())     # the C library's


@njit(cache=True, nogil=True)
def _yield_while(counts, i, value, rounds):
    """Give the core away (sched_yield) while counts[i] == value, at most `rounds` times,
    without Python's lock. True if counts[i] changed. The core stays awake meanwhile."""
    n = 0
    while counts[i] == value and n < rounds:
        _sched_yield()                                # an outside call: counts[i] is read again
        n += 1
    return counts[i] != value


# Before either side of a hand-over sleeps on its lock, it yields the core for up to this many
# rounds (about 1 ms here), watching a counter. A thread woken from sleep on a core that went
# idle took 60-130 us to get going on this (virtual) machine; one that kept yielding, 20-65 us.
# An empty split: median 80-100 us -> 40 us. The seed model's training step, alternating
# YIELD_ROUNDS = 0 and 2000 in one process every 30 steps: faster in 36 of 40 rounds, medians
# 14.65 -> 12.26 ms (500 rounds: slower, 10 of 30; 8000: no different, 17 of 30). The price:
# an idle worker keeps its core busy for up to 1 ms after each chunk.
YIELD_ROUNDS = 2000


class _Worker:
    """A thread of our own that runs one chunk at a time. The hand-over is two locks, the
    cheapest thing Python's threads can wait on: the caller releases `go` to start a chunk,
    the worker releases `done` when it has finished. Each side first yields its core for a
    while, watching counts (chunks handed over, chunks finished), and sleeps on the lock only
    if nothing came (see YIELD_ROUNDS). (A ThreadPoolExecutor's futures cost more than the
    locks: the seed model's step, alternating the two in one process every 40 steps, 3 x 20
    rounds, was faster with the locks in 39 of 60 rounds, medians 16.5 -> 15.4, 15.2 -> 14.9
    and 14.6 -> 14.0 ms.)"""

    def __init__(self, name):
        self.go, self.done = threading.Lock(), threading.Lock()
        self.go.acquire()
        self.done.acquire()
        self.job, self.error = None, None
        self.counts = np.zeros(2, dtype=np.int64)    # [0] chunks handed over, [1] chunks finished
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def _run(self):
        started = 0
        while True:
            _yield_while(self.counts, 0, started, YIELD_ROUNDS)
            self.go.acquire()                         # sleeps until start() hands over a chunk
            started += 1
            try:
                _as_chunk(*self.job)
            except BaseException as error:            # kept for the caller to raise
                self.error = error
            self.counts[1] += 1
            self.done.release()

    def start(self, body, k, lo, hi):
        self.job, self.error = (body, k, lo, hi), None
        self.counts[0] += 1
        self.go.release()

    def wait(self):
        """Block until the chunk has finished; returns the exception it raised, or None."""
        _yield_while(self.counts, 1, self.counts[0] - 1, YIELD_ROUNDS)
        self.done.acquire()
        self.job = None
        return self.error


def n_chunks(n, work):
    """How many chunks for_each_chunk(n, body, work) makes: one per core, if the work pays.
    One on a single thread, and one inside a chunk: waiting on the workers from one of their
    own threads would wait forever."""
    if THREADS == 1 or work < MIN_WORK or getattr(_inside, "chunk", False):
        return 1
    return max(1, min(THREADS, n))


def for_each_chunk(n, body, work):
    """body(k, lo, hi) for k = 0..n_chunks(n, work)-1, in parallel; chunk k is [lo, hi) of range(n).

    `work` is a rough count of the element-steps of the whole job (multiply-adds count
    1/MACS_PER_STEP each).
    Chunk 0 runs on the calling thread, the others on worker threads kept for the process.
    If another thread's split has the workers, the chunks run one after the other here.
    With THREADS > 1 the BLAS runs single-threaded throughout, even for one chunk, so its
    own threads never wake up to spin on the cores the chunks need.
    Exceptions in any chunk are raised here, after every chunk has finished.
    """
    global _workers, _workers_pid
    parts = n_chunks(n, work)
    bounds = [(k, n * k // parts, n * (k + 1) // parts) for k in range(parts)]
    if THREADS == 1:                     # no threads of our own: the BLAS may thread its products
        body(*bounds[0])
        return
    with one_blas_thread():
        if parts == 1:
            body(*bounds[0])
            return
        with _lock:
            if _workers_pid != os.getpid():        # first use, or a forked child: threads of its own
                _workers, _workers_pid = [], os.getpid()
            while len(_workers) < parts - 1:
                _workers.append(_Worker(f"tinycnn-{len(_workers) + 1}"))
        if not _dispatch.acquire(blocking=False):   # the workers are busy with another thread's split
            for b in bounds:
                _as_chunk(body, *b)
            return
        try:
            helpers = _workers[:parts - 1]
            for worker, b in zip(helpers, bounds[1:]):
                worker.start(body, *b)
            try:
                _as_chunk(body, *bounds[0])
            finally:
                errors = [worker.wait() for worker in helpers]     # wait for all before raising
        finally:
            _dispatch.release()
        for error in errors:
            if error is not None:
                raise error


# A chunk's intermediate buffers (Winograd's transformed tiles and products) are written by
# one step and read by the next. Done a few images at a time, they are still in the core's
# own cache when the next step reads them, instead of making a round trip through the cache
# both cores share (L2: 1 MB per core here, L3: 32 MB shared). Measured on the seed model:
#   * conv2's Winograd forward alone (2 cores, median of 30, 3 rounds): 2.9-3.5 ms for each
#     core's 64 images at once, 2.0-2.5 ms in blocks of 16;
#   * the training step, interleaved A/B in separate processes (6 x 150 steps): 18.1 ms
#     without blocks, 14.9 ms with blocks of 1 MB (faster in 5 of 6 pairs);
#   * block sizes, interleaved in one process (busy host, 8 x 60 steps): 0.5 MB 22.1 ms,
#     1 MB 20.6, 1.5 MB 19.5, 2 MB 19.3, 3 MB 20.3; no blocks 21.9 (6 x 60).
# im2col's forward (conv1) gained nothing from blocks (17.5 against 17.6 ms), so it has none.
BLOCK_BYTES = 2 << 20


def blocks(lo, hi, bytes_each):
    """[lo, hi) cut into consecutive (start, stop) blocks of about BLOCK_BYTES, at least one item each."""
    step = max(1, BLOCK_BYTES // max(1, bytes_each))
    return [(s, min(s + step, hi)) for s in range(lo, hi, step)]
