"""Holding NumPy's BLAS to one thread while tinycnn's own threads run.

    one_thread()   with-block: NumPy's matrix products use only the calling thread inside it
    describe()     which BLAS control was found, for README-style reports and bug reports

Each of tinycnn's threads runs its share of the batch, matrix products included; if the BLAS
threaded those products too, two thread pools would fight over the same cores (see
benchmarks/DECISIONS.md, "Threads: splitting the batch across cores").

How the BLAS is reached: OpenBLAS (NumPy's wheels on Linux, Windows and Intel Macs) exports
set_num_threads; tinycnn looks for the library file in NumPy's folders and, on Linux, in
/proc/self/maps. Failing that, threadpoolctl, if it is installed, knows MKL, BLIS and others.
Every probe is guarded: where one fails (no /proc, a ctypes that cannot load the file, an
Accelerate or MKL build without threadpoolctl), the BLAS is left alone and keeps its threads.
"""
import contextlib
import ctypes
import os
import threading

import numpy as np

_lock = threading.Lock()
_users, _before = 0, None


def _library_files():
    """Paths of OpenBLAS libraries that NumPy may have loaded, best guesses first."""
    paths = []
    root = os.path.dirname(np.__file__)
    for folder in (root + ".libs", os.path.join(root, ".dylibs"), os.path.join(root, ".libs"), os.path.join(root, "_core")):
        try:
            paths += [os.path.join(folder, name) for name in sorted(os.listdir(folder)) if "openblas" in name.lower()]
        except OSError:                                  # no such folder on this platform
            pass
    try:
        with open("/proc/self/maps", errors="surrogateescape") as maps:    # Linux: every mapped library
            paths += sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line})
    except OSError:                                      # not Linux, or no /proc
        pass
    return list(dict.fromkeys(paths))


def _openblas(path):
    """(get_num_threads, set_num_threads) of the OpenBLAS at `path`, or None."""
    try:
        lib = ctypes.CDLL(path)
    except (OSError, TypeError, ValueError, AttributeError):     # cannot load it here
        return None
    for prefix in ("scipy_openblas_", "openblas_"):              # NumPy's wheels, a system OpenBLAS
        for suffix in ("64_", ""):
            get = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
            set_ = getattr(lib, f"{prefix}set_num_threads{suffix}", None)
            if get is not None and set_ is not None:
                get.argtypes, get.restype = [], ctypes.c_int
                set_.argtypes, set_.restype = [ctypes.c_int], None
                return get, set_
    return None


def _threadpoolctl():
    """(get, set) through threadpoolctl for whatever BLAS it finds, or None."""
    try:
        from threadpoolctl import ThreadpoolController
        blas = ThreadpoolController().select(user_api="blas")
        if not blas.lib_controllers:
            return None
    except Exception:                                    # not installed, or failing on this platform
        return None
    return (lambda: max(c.num_threads for c in blas.lib_controllers),
            lambda n: [c.set_num_threads(n) for c in blas.lib_controllers])


def find():
    """(get_num_threads, set_num_threads, description) for NumPy's BLAS, or None if it cannot be told."""
    for path in _library_files():
        found = _openblas(path)
        if found is not None:
            return found + (f"OpenBLAS at {path}",)
    found = _threadpoolctl()
    return None if found is None else found + ("a BLAS found by threadpoolctl",)


_control = "unprobed"


def control():
    """find(), probed once, when first needed."""
    global _control
    if _control == "unprobed":
        _control = find()
    return _control


def describe():
    found = control()
    return "not reachable: the BLAS keeps its own threads" if found is None else found[2]


@contextlib.contextmanager
def one_thread():
    """Inside the block, NumPy's matrix products run on the calling thread only.

    Blocks may nest or overlap across threads: the first one in sets the BLAS to one thread,
    the last one out gives it back the count it had before.
    """
    global _users, _before
    found = control()
    if found is None:
        yield
        return
    get, set_, _ = found
    with _lock:
        if _users == 0:
            _before = get()
            if _before != 1:
                set_(1)
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0 and _before != 1:
                set_(_before)
