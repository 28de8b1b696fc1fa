"""The exercises from a terminal: grade an answers file, or make a course copy without the solutions.

    python -m tinycnn.exercises check answers.py             a scorecard, one line per exercise
    python -m tinycnn.exercises check answers.py --json      the same, as JSON (for an autograder)
    python -m tinycnn.exercises check answers.py --require-all   an exercise not written fails too
    python -m tinycnn.exercises course-copy DEST             a copy for students (below)

check: answers.py is a Python file defining some of the exercise functions (dense_backward, ...,
named as in tinycnn/exercises/skeletons.py). Every exercise is "passed", "failed" (a wrong answer,
or the function raised) or "not written" (the file lacks it, or it still raises NotImplementedError),
with the checker's one-line reason. Exit status: 0 when nothing failed, 1 when an exercise failed
(with --require-all also when one is not written; by default a work in progress passes), 2 when the
file cannot be loaded.

course-copy DEST writes, into a new folder DEST:
    DEST/tinycnn/      the whole package, without tinycnn/exercises/solutions.py (nor __pycache__)
    DEST/notebooks/    the notebooks (*.ipynb, README.md), if this is a checkout that has them, with
                       every exercise cell reset to its skeleton and its outputs cleared, every code
                       cell and markdown line that mentions the solutions module removed
Students run it as usual (`import tinycnn`, from DEST); `from tinycnn.exercises import solutions`
fails there, and the worked answers appear nowhere in it. --notebooks DIR takes them from DIR.
"""
import argparse
import importlib.util
import inspect
import json
import math
import os
import re
import shutil
import sys

PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))        # .../tinycnn
STATUS = {"correct": "passed", "wrong": "failed", "error": "failed", "not written": "not written"}
MARK = {"passed": "PASS", "failed": "FAIL", "not written": "----"}


def load_answers(path):
    """The answers file as a module (its folder on sys.path, so it may import its neighbours)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such answers file: {path}")
    folder = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, folder)
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reason(result):
    """The checker's one-line reason: its first WRONG/ERROR line, or its first line."""
    lines = [line.strip() for line in result.lines if line.strip()]
    for line in lines:
        if "WRONG" in line or "Error" in line:
            return " ".join(line.split())
    return " ".join(lines[0].split()) if lines else ""


def number(value):
    """A float for JSON: NaN and inf as the strings "nan" and "inf" (JSON has no such numbers)."""
    return value if value is None or math.isfinite(value) else str(value)


def scorecard(module):
    from . import check_all
    rows = []
    for name, result in check_all(module, verbose=False).items():
        status = STATUS[result.status]
        rows.append({"exercise": name, "status": status, "checker_status": result.status,
                     "reason": "" if status == "passed" else reason(result), "case": result.case,
                     "errors": {k: [number(ref), number(num)] for k, (ref, num) in result.errors.items()}})
    return rows


def check(args):
    try:
        module = load_answers(args.answers)
    except Exception as err:
        message = f"cannot load {args.answers}: {type(err).__name__}: {err}"
        if args.json:
            print(json.dumps({"file": args.answers, "error": message, "ok": False}))
        else:
            print(message, file=sys.stderr)
        return 2
    rows = scorecard(module)
    counts = {s: sum(row["status"] == s for row in rows) for s in MARK}
    failing = {"failed", "not written"} if args.require_all else {"failed"}
    ok = not any(row["status"] in failing for row in rows)
    if args.json:
        print(json.dumps({"file": args.answers, "results": rows, "passed": counts["passed"],
                          "failed": counts["failed"], "not_written": counts["not written"],
                          "require_all": args.require_all, "ok": ok}, indent=2))
    else:
        width = max(len(row["exercise"]) for row in rows)
        print(f"Scorecard for {args.answers}")
        for row in rows:
            print(f"  {MARK[row['status']]}  {row['exercise']:{width}s}  {row['reason']}".rstrip())
        print(f"{counts['passed']} passed, {counts['failed']} failed, {counts['not written']} not written "
              f"of {len(rows)}" + ("" if ok else "  -> FAIL"))
    return 0 if ok else 1


# ----------------------------------------------------------------------------------------
# course-copy
# ----------------------------------------------------------------------------------------
def exercise_names():
    from . import skeletons
    return [name for name, fn in inspect.getmembers(skeletons, inspect.isfunction)
            if fn.__module__ == skeletons.__name__]


def strip_notebook(nb, names):
    """Exercise cells back to their skeletons, outputs cleared; cells naming the solutions removed."""
    from . import skeletons
    kept = []
    for cell in nb.cells:
        if "solutions" in cell.source:
            if cell.cell_type != "markdown":
                continue                                           # code that uses them goes
            cell.source = "\n".join(line for line in cell.source.split("\n") if "solutions" not in line)
        if cell.cell_type == "code":
            defined = [n for n in names if re.search(rf"^def {n}\(", cell.source, flags=re.M)]
            if defined:
                for name in defined:
                    cell.source = replace_function(cell.source, name, inspect.getsource(getattr(skeletons, name)))
                cell.outputs, cell.execution_count = [], None
        kept.append(cell)
    nb.cells = kept
    return nb


def replace_function(source, name, skeleton):
    """source with the top-level `def name(...)` block replaced by the skeleton's source."""
    lines = source.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(f"def {name}("))
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end][0] in " \t"):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():       # keep the blank lines after the block
        end -= 1
    return "\n".join(lines[:start] + skeleton.rstrip("\n").split("\n") + lines[end:])


def course_copy(args):
    dest = os.path.abspath(args.dest)
    if os.path.exists(dest) and os.listdir(dest):
        print(f"course-copy: {dest} exists and is not empty; give a new folder", file=sys.stderr)
        return 2
    shutil.copytree(PACKAGE, os.path.join(dest, "tinycnn"), dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    solutions = os.path.join(dest, "tinycnn", "exercises", "solutions.py")
    if os.path.exists(solutions):                                  # absent when copying a course copy
        os.remove(solutions)
    print(f"course-copy: {dest}/tinycnn (without exercises/solutions.py)")
    notebooks = args.notebooks or os.path.join(os.path.dirname(PACKAGE), "notebooks")
    if not os.path.isdir(notebooks):
        print(f"course-copy: no notebooks folder at {notebooks}; copied the package only")
        return 0
    import nbformat
    os.makedirs(os.path.join(dest, "notebooks"), exist_ok=True)
    names, written = exercise_names(), []
    for entry in sorted(os.listdir(notebooks)):
        source = os.path.join(notebooks, entry)
        if entry.endswith(".ipynb"):
            nb = strip_notebook(nbformat.read(source, as_version=4), names)
            nbformat.write(nb, os.path.join(dest, "notebooks", entry))
            written.append(entry)
        elif entry == "README.md":
            shutil.copy(source, os.path.join(dest, "notebooks", entry))
    print(f"course-copy: {dest}/notebooks ({len(written)} notebooks, exercise cells reset to their skeletons)")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tinycnn.exercises", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("check", help="grade an answers file: a scorecard per exercise")
    p.add_argument("answers", help="a Python file defining some of the exercise functions")
    p.add_argument("--json", action="store_true", help="print machine-readable results")
    p.add_argument("--require-all", action="store_true", help="an exercise not written fails too")
    p = sub.add_parser("course-copy", help="write a copy of tinycnn and the notebooks without the solutions")
    p.add_argument("dest", help="a new (or empty) folder")
    p.add_argument("--notebooks", help="the notebooks folder (default: the checkout's notebooks/)")
    args = parser.parse_args(argv)
    return check(args) if args.command == "check" else course_copy(args)


if __name__ == "__main__":
    sys.exit(main())
