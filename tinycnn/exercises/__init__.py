"""tinycnn.exercises: write the backward passes yourself, check them, then train with them.

    from tinycnn import exercises as ex
    def dense_backward(dout, x, w):
        ...                                    # your code
    ex.check_dense_backward(dense_backward)    # prints a report, returns a CheckResult
    ex.check_all(my_answers)                   # every exercise a module (your file) defines
    ex.hint("dense_backward", level=1)         # stuck? hints in three levels, from a nudge to the equation
    with ex.use(my_answers):                   # tinycnn's layers call your functions (see use.py)
        model.fit(x, y)
    ex.train_with(my_answers, limit=2000)      # the seed CNN on MNIST: your accuracy beside the reference's

The exercises are the skeletons, with their docstrings, in tinycnn/exercises/skeletons.py (ex.EXERCISES
lists them). A checker runs your function beside tinycnn's reference and a numerical gradient, and
says which output is wrong, its shape (expected vs received) and the largest relative error, or
that your answer is correct.

From a terminal (an autograder: exit status 1 when an answer is wrong, see __main__.py):
    python -m tinycnn.exercises check answers.py [--json] [--require-all]
    python -m tinycnn.exercises course-copy DEST    # a teacher's copy for students, without the solutions

The worked answers are not loaded by `import tinycnn.exercises`; a teacher imports them explicitly:
    from tinycnn.exercises import solutions
"""
import functools

from . import skeletons
from .checkers import CHECKERS, CheckResult
from .hints import hint
from .use import ExerciseError, train_with, use
from .use import suspended as _suspended

EXERCISES = tuple(CHECKERS)


def _checker(name):
    """check_<name>: the checker, run against tinycnn's own code even inside `with ex.use(...)`."""
    original = CHECKERS[name]

    @functools.wraps(original)
    def check(fn, verbose=True):
        with _suspended():
            return original(fn, verbose=verbose)
    return check


for _name in CHECKERS:
    globals()[f"check_{_name}"] = _checker(_name)


def not_written(name, module):
    result = CheckResult(name)
    result.status = "not written"
    result.lines.append(f"{getattr(module, '__name__', module)} has no function {name}")
    return result


def check_all(module, verbose=True):
    """Run every checker on the functions of the same names in `module` (e.g. your own file).

    Returns {exercise name: CheckResult}. Exercises the module lacks are reported as not written.
    """
    results = {}
    for name in CHECKERS:
        fn = getattr(module, name, None)
        if fn is None:
            results[name] = not_written(name, module)
            if verbose:
                print(results[name].report())
        else:
            results[name] = globals()[f"check_{name}"](fn, verbose=verbose)
    return results


def __getattr__(name):
    if name == "solutions":
        raise AttributeError("tinycnn.exercises does not load the worked answers; try the exercises first. "
                             "A teacher imports them explicitly: from tinycnn.exercises import solutions")
    raise AttributeError(f"module 'tinycnn.exercises' has no attribute {name!r}")


__all__ = ["EXERCISES", "CheckResult", "ExerciseError", "check_all", "hint", "skeletons", "train_with", "use"] + \
    [f"check_{name}" for name in CHECKERS]
