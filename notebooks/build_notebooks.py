"""Write the teaching notebooks from the cell sources in notebooks/sources/, run them, keep their outputs.

    python notebooks/build_notebooks.py                 # build and execute every notebook
    python notebooks/build_notebooks.py 03_pool_dropout_relu --no-execute

Each notebook's source is a plain Python file, notebooks/sources/<name>.py, whose cells are
separated by lines starting with `# %%` (code) or `# %% [markdown]` (markdown, each line
behind "# "). Lines of the form `# @skeleton <function>` are replaced by that exercise's
skeleton from tinycnn/exercises/skeletons.py, so the notebook and the package never drift.

Execution: nbclient, kernel python3, working directory notebooks/. The stored outputs are
tidied so that they read well on GitHub: consecutive stream outputs are merged, progress-bar
redraws ("\\r") keep only their final state, and no timing metadata is stored.
"""
import argparse
import inspect
import os
import re
import sys
import time

import nbformat
from nbclient import NotebookClient

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = os.path.join(HERE, "sources")
NOTEBOOKS = ("01_dense_softmax_backprop", "02_conv_im2col", "03_pool_dropout_relu", "04_mnist_cnn", "05_speed",
             "06_backprop_through_a_graph", "07_one_training_step", "08_deep_networks")
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def skeleton_source(name):
    sys.path.insert(0, os.path.dirname(HERE))
    from tinycnn.exercises import skeletons
    return inspect.getsource(getattr(skeletons, name)).rstrip("\n")


def parse_cells(text):
    """'# %%' / '# %% [markdown]' separated source -> [(kind, source)]."""
    cells, kind, lines = [], None, []

    def flush():
        body = "\n".join(lines).strip("\n")
        if kind is not None and body:
            cells.append((kind, body))

    for line in text.splitlines():
        if line.startswith("# %%"):
            flush()
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
        elif kind == "markdown":
            lines.append(re.sub(r"^# ?", "", line))
        elif kind == "code" and line.startswith("# @skeleton "):
            lines.append(skeleton_source(line.split()[-1]))
        elif kind is not None:
            lines.append(line)
    flush()
    return cells


def build(name):
    with open(os.path.join(SOURCES, f"{name}.py"), encoding="utf-8") as f:
        cells = parse_cells(f.read())
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = KERNELSPEC
    nb.metadata["language_info"] = {"name": "python"}
    for i, (kind, source) in enumerate(cells):
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        nb.cells.append(make(source, id=f"c{i:02d}"))
    return nb


def tidy_stream(text):
    """Keep what a terminal would show: for each line, the text after its last carriage return."""
    lines = [line.split("\r")[-1].rstrip() for line in text.split("\n")]
    return "\n".join(lines)


def tidy(nb):
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.metadata.pop("execution", None)
        merged = []
        for out in cell.outputs:
            if out.output_type == "stream" and merged and merged[-1].output_type == "stream" \
                    and merged[-1].name == out.name:
                merged[-1].text += out.text
            else:
                merged.append(out)
        for out in merged:
            if out.output_type == "stream":
                out.text = tidy_stream(out.text)
        cell.outputs = merged
    return nb


def execute(nb, timeout=600):
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": HERE}})
    client.execute()
    return nb


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"notebooks to build (default: all of {', '.join(NOTEBOOKS)})")
    parser.add_argument("--no-execute", action="store_true", help="write the cells without running them")
    args = parser.parse_args(argv)
    for name in args.names or NOTEBOOKS:
        name = os.path.splitext(os.path.basename(name))[0]
        nb = build(name)
        seconds = 0.0
        if not args.no_execute:
            start = time.perf_counter()
            tidy(execute(nb))
            seconds = time.perf_counter() - start
        nbformat.validate(nb)
        path = os.path.join(HERE, f"{name}.ipynb")
        with open(path, "w", encoding="utf-8") as f:
            nbformat.write(nb, f)
        print(f"{name}.ipynb: {len(nb.cells)} cells" + ("" if args.no_execute else f", executed in {seconds:.1f} s"),
              f"({os.path.getsize(path) / 1024:.0f} KiB)", flush=True)


if __name__ == "__main__":
    main()
