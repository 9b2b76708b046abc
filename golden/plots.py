"""Figures of a training run: learning curves, sigma schedule and learned delays."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plot_run", "plot_accuracy"]


def plot_accuracy(ax, metrics: dict, train_label: str, val_label: str) -> list[int]:
    """Train and validation accuracy per epoch of ``metrics['history']`` on ``ax``; returns the epochs."""
    history = metrics["history"]
    epochs = [h["epoch"] + 1 for h in history]
    ax.plot(epochs, [h["train_accuracy"] for h in history], label=train_label)
    ax.plot(epochs, [h["val_accuracy"] for h in history], label=val_label)
    ax.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1.02),
           title=f"{metrics['task']} / {metrics['model']} (seed {metrics['seed']})")
    ax.legend(loc="lower right")
    return epochs


def plot_run(metrics: dict, model, path) -> Path:
    """Save a three-panel PNG: accuracy per epoch, sigma per epoch, integer-delay histograms."""
    history = metrics["history"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    epochs = plot_accuracy(axes[0], metrics, "train (real delays)", "val (integer delays)")
    ax = axes[1]
    ax.plot(epochs, [h["sigma"] for h in history])
    ax.set(xlabel="epoch", ylabel="sigma", title="spread width schedule", yscale="log")
    ax = axes[2]
    modules = model.delay_modules()
    if modules:
        for name, module in zip(metrics["delays"], modules):
            ax.hist(module.delay.detach().flatten().numpy(), bins=40, alpha=0.6, label=name)
        ax.set(xlabel="delay (steps)", ylabel="count", title="learned delays")
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "no delays in this model", ha="center", va="center")
        ax.set_axis_off()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
