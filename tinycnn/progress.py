"""A Keras-style progress bar:

    469/469 [==============================] - 15s 32ms/step - loss: 0.2615 - accuracy: 0.9196

On a terminal or in a notebook it redraws one line in place ("\\r") while running; in a
log file (stdout not a terminal) it writes only the final line, so logs stay short.
"""
import sys
import time

import numpy as np

WIDTH = 30


def in_notebook():
    """True inside a running Jupyter kernel. Having imported ipykernel is not enough: a
    process that starts kernels (nbclient, as the notebook tests do) imports it too."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if hasattr(ipython, "get_ipython") else None
    return shell is not None and hasattr(shell, "kernel")


def dynamic_display(stream):
    return (hasattr(stream, "isatty") and stream.isatty()) or in_notebook()


def format_value(v):
    return f"{v:.4f}" if abs(v) > 1e-3 or v == 0 else f"{v:.4e}"


def format_duration(seconds):
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    if seconds >= 60:
        return f"{seconds // 60}:{seconds % 60:02d}"
    return f"{seconds}s"


def per_step(seconds):
    if seconds >= 1:
        return f"{seconds:.0f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"


class ProgressBar:
    """ProgressBar(target, verbose=1); call update(step, {"loss": ...}) after every step.

    verbose=1: the bar; verbose=2: only the final line; verbose=0: nothing.
    """

    def __init__(self, target, verbose=1, stream=None, interval=None):
        self.target, self.verbose = int(target), verbose
        self.stream = stream or sys.stdout
        self.dynamic = dynamic_display(self.stream)
        self.interval = interval if interval is not None else (0.5 if in_notebook() else 0.1)
        self.start = time.perf_counter()
        self.last_draw = 0.0
        self.width_drawn = 0

    def note(self, text):
        """Show `text` on the bar's line before the first step (for example while kernels compile)."""
        if self.verbose == 1:
            self.write(f"{self.bar(0)} - {text}", end="\n" if not self.dynamic else "")

    def restart(self):
        """Start the clock again: what happened before (a compilation) stays out of the ETA."""
        self.start = time.perf_counter()

    def bar(self, current):
        digits = len(str(self.target))
        filled = int(WIDTH * current / self.target)
        text = f"{current:{digits}d}/{self.target} ["
        if filled > 0:
            text += "=" * (filled - 1) + (">" if current < self.target else "=")
        return text + "." * (WIDTH - filled) + "]"

    def line(self, current, values, finished):
        elapsed = time.perf_counter() - self.start
        text = self.bar(current)
        if finished:
            text += f" - {elapsed:.0f}s {per_step(elapsed / max(current, 1))}"
        else:
            eta = elapsed / max(current, 1) * (self.target - current)
            text += f" - ETA: {format_duration(eta)}"
        for name, value in values.items():
            text += f" - {name}: {format_value(float(np.mean(value)))}"
        return text

    def update(self, current, values=None, finished=None):
        """Draw step `current` of `target`; the last step (or finished=True) ends the line."""
        values = values or {}
        finished = current >= self.target if finished is None else finished
        if self.verbose == 0 or (self.verbose == 2 and not finished):
            return
        now = time.perf_counter()
        if not finished and (not self.dynamic or self.verbose != 1 or now - self.last_draw < self.interval):
            return
        self.last_draw = now
        self.write(self.line(current, values, finished), end="\n" if finished else "")

    def write(self, text, end):
        if self.dynamic and self.verbose == 1:
            pad = " " * max(self.width_drawn - len(text), 0)   # wipe what a longer line left behind
            self.stream.write("\r" + text + pad)
            self.width_drawn = len(text)
        else:
            self.stream.write(text)
        self.stream.write(end)
        self.stream.flush()
