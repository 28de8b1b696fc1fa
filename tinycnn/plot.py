"""Plots for people who would rather look than read. Every function returns its Figure.

    fig = tinycnn.plot.history(history)     # accuracy and loss per epoch, train vs validation
"""
import matplotlib.pyplot as plt


def history(history, figsize=(12, 4)):
    """Two panels, as in the tutorial: accuracy (left) and loss (right) per epoch.

    Accepts a History (what fit returns) or its .history dict.
    """
    logs = getattr(history, "history", history)
    if not isinstance(logs, dict) or "loss" not in logs:
        raise TypeError("plot.history expects the History that fit() returns (or its .history dict)")
    fig, axes = plt.subplots(1, 2, figsize=figsize)
    for ax, metric, title in ((axes[0], "accuracy", "Model Accuracy"), (axes[1], "loss", "Model Loss")):
        epochs = range(1, len(logs.get(metric, [])) + 1)
        if metric in logs:
            ax.plot(epochs, logs[metric], marker="o", label=f"Training {metric.title()}")
        if "val_" + metric in logs:
            ax.plot(epochs, logs["val_" + metric], marker="o", label=f"Validation {metric.title()}")
        ax.set_title(title)
        ax.set_xlabel("Epoch")
        ax.set_ylabel(metric.title())
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    return fig


__all__ = ["history"]
