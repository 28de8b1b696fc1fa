"""Threads: every core works on its own slice of the batch.

    count()        how many threads tinycnn uses: TINYCNN_THREADS if set, else the usable cores
    parts(n, flops)  how many slices a job of n images and `flops` operations in all is cut into
    run(jobs)      calls every job (a function of no arguments) at once, one per thread, and
                   returns their results in order; the first job runs on the calling thread
    inside()       True on a thread while it runs a job: a split requested there runs serially

The slices of a batch are independent (image n never touches image m's outputs), so each job
runs the kernels and the matrix products of its slice with no locks; the Numba kernels and
NumPy's products release Python's lock while they compute. While jobs run, the BLAS is held to
one thread (blas.py). Each worker thread waits on a queue.SimpleQueue of its own: an idle
worker sleeps and holds no core. (A concurrent.futures pool did the same with 3 to 5 times the
cost per hand-over: see benchmarks/DECISIONS.md, "Threads".) Workers start on first use, not at
import, and a forked child starts its own.
"""
import os
import queue
import threading

import numpy as np

from . import blas

_local = threading.local()
_pool = {"workers": [], "pid": None}
_pool_lock = threading.Lock()


class _Worker:
    """A thread that runs the jobs put on its queue, and answers each on the queue that came with it."""

    def __init__(self, name):
        self.jobs = queue.SimpleQueue()
        threading.Thread(target=self._loop, name=name, daemon=True).start()

    def _loop(self):
        while True:
            job, errors, answer = self.jobs.get()             # sleeps until a job comes
            try:
                answer.put((_as_job(job, errors), None))
            except BaseException as error:                    # handed to the caller, raised there
                answer.put((None, error))


def usable_cores():
    """The cores this process may run on (its affinity where the OS tells it), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):                    # macOS and Windows have no sched_getaffinity
        return max(1, os.cpu_count() or 1)


def count():
    """TINYCNN_THREADS (a whole number >= 1), else the usable cores."""
    setting = os.environ.get("TINYCNN_THREADS", "").strip()
    if not setting:
        return usable_cores()
    if not (setting.isascii() and setting.isdigit()) or int(setting) < 1:
        raise ValueError(f"TINYCNN_THREADS must be a whole number >= 1; received {setting!r}")
    return int(setting)


# A hand-over to a sleeping thread costs tens of microseconds on any OS: a slice is worth a
# thread of its own from about half a millisecond of work (see benchmarks/DECISIONS.md, "Threads").
MIN_FLOPS_PER_SLICE = 16e6


def parts(n, flops):
    """One slice per thread, at most one per image, and none smaller than MIN_FLOPS_PER_SLICE."""
    by_work = int(flops // MIN_FLOPS_PER_SLICE) if MIN_FLOPS_PER_SLICE > 0 else n
    return max(1, min(count(), n, by_work))


def inside():
    return getattr(_local, "inside", False)


def _as_job(job, errors=None):
    """job(), marked as inside a job, under the caller's np.errstate (NumPy keeps it per thread)."""
    _local.inside = True
    try:
        if errors is None:
            return job()
        with np.errstate(**errors):
            return job()
    finally:
        _local.inside = False


def _workers(n):
    """n worker threads of this process (a forked child has none of its parent's: it starts its own)."""
    with _pool_lock:
        if _pool["pid"] != os.getpid():
            _pool.update(workers=[], pid=os.getpid())
        workers = _pool["workers"]
        while len(workers) < n:
            workers.append(_Worker(f"tinycnn-{len(workers) + 1}"))
        return workers[:n]


_busy = threading.Lock()             # held while one caller's jobs have the workers


def run(jobs):
    """[job() for job in jobs], the jobs running at the same time. Errors are raised after all have finished.
    If another thread's jobs have the workers, these run one after the other on the calling thread."""
    if len(jobs) == 1 or inside() or not _busy.acquire(blocking=False):
        return [job() for job in jobs]
    try:
        with blas.one_thread():
            answers = [queue.SimpleQueue() for _ in jobs[1:]]
            errors = np.geterr()
            for worker, job, answer in zip(_workers(len(jobs) - 1), jobs[1:], answers):
                worker.jobs.put((job, errors, answer))
            try:
                results = [(_as_job(jobs[0]), None)]
            except BaseException as error:
                results = [(None, error)]
            results += [answer.get() for answer in answers]    # every job finishes before anything is raised
    finally:
        _busy.release()
    for _, error in results:
        if error is not None:
            raise error
    return [result for result, _ in results]


def bounds(n, parts):
    """[lo, hi) of `parts` consecutive slices of range(n), as equal as can be."""
    return [(n * k // parts, n * (k + 1) // parts) for k in range(parts)]
