"""tinycnn.exercises: write the backward passes yourself, and check them.

    from tinycnn import exercises as ex
    def dense_backward(dout, x, w):
        ...                                    # your code
    ex.check_dense_backward(dense_backward)    # prints a report, returns a CheckResult

The exercises (skeletons with docstrings in tinycnn/exercises/skeletons.py):
    dense_backward(dout, x, w)                   -> dx, dw, db         notebook 01
    softmax_cross_entropy(z, y)                  -> loss, dz           notebook 01
    conv2d_backward(dout, x, w, stride, pads)    -> dx, dw, db         notebook 02
    maxpool_backward(dout, x, pool_size)         -> dx                 notebook 03
    adam_step(p, g, m, v, t, lr, b1, b2, eps)    -> p, m, v            notebook 04

A checker runs your function beside tinycnn's reference and a numerical gradient, and
says which output is wrong, its shape (expected vs received) and the largest relative
error, or that your answer is correct. Worked answers: tinycnn/exercises/solutions.py.
"""
from . import skeletons, solutions
from .checkers import (CHECKERS, CheckResult, check_adam_step, check_conv2d_backward,
                       check_dense_backward, check_maxpool_backward, check_softmax_cross_entropy)

EXERCISES = tuple(CHECKERS)


def check_all(module, verbose=True):
    """Run every checker on the functions of the same names in `module` (e.g. your own file).

    Returns {exercise name: CheckResult}. Exercises the module lacks are reported as not written.
    """
    results = {}
    for name, checker in CHECKERS.items():
        fn = getattr(module, name, None)
        if fn is None:
            result = CheckResult(name)
            result.status = "not written"
            result.lines.append(f"{getattr(module, '__name__', module)} has no function {name}")
            if verbose:
                print(result.report())
        else:
            result = checker(fn, verbose=verbose)
        results[name] = result
    return results


__all__ = ["EXERCISES", "CheckResult", "check_adam_step", "check_all", "check_conv2d_backward",
           "check_dense_backward", "check_maxpool_backward", "check_softmax_cross_entropy",
           "skeletons", "solutions"]
