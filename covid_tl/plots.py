"""Figures for evaluation and sweep reports (matplotlib, written straight to files)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def confusion_matrices(matrices: Mapping[str, Mapping[str, Any]], path: Path) -> None:
    """Named confusion matrices side by side, counts and row percentages in each cell."""
    n = len(matrices)
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 3.2), squeeze=False)
    for ax, (title, cm) in zip(axes[0], matrices.items()):
        counts = np.asarray(cm["matrix"], dtype=float)
        rows = counts.sum(axis=1, keepdims=True)
        share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        labels = cm["labels"]
        ax.set_xticks(range(len(labels)), labels)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title, fontsize=9)
        for (i, j), value in np.ndenumerate(counts):
            ax.text(j, i, f"{int(value)}\n{share[i, j]:.0%}", ha="center", va="center",
                    color="white" if share[i, j] > 0.6 else "black", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def roc_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray, float | None]], path: Path) -> None:
    """ROC curves (false positive rate, sensitivity) with their AUROC in the legend."""
    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    for name, (fpr, tpr, area) in curves.items():
        ax.plot(fpr, tpr, lw=1.5, label=f"{name} (AUROC {area:.3f})" if area is not None else name)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def metric_lines(table, x: str, metrics: Sequence[str], series: str, path: Path) -> None:
    """One panel per metric: mean (with spread as error bars) against `x`, a line per `series`.

    `table` has columns x, series, and `<metric>` / `<metric>_std` for each metric.
    """
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for name, group in table.groupby(series, sort=True):
            group = group.sort_values(x)
            err = group[f"{metric}_std"] if f"{metric}_std" in group else None
            ax.errorbar(group[x], group[metric], yerr=err, marker="o", capsize=3, label=str(name))
        ax.set_xlabel(x)
        ax.set_title(metric)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, title=series)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def metric_bars(table, group: str, metrics: Sequence[str], path: Path) -> None:
    """Grouped bars: one group per row of `table` (labelled by `group`), one bar per metric."""
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(table) * len(metrics) / 2), 3.4))
    width = 0.8 / len(metrics)
    positions = np.arange(len(table))
    for k, metric in enumerate(metrics):
        err = table[f"{metric}_std"] if f"{metric}_std" in table else None
        ax.bar(positions + k * width, table[metric], width, yerr=err, capsize=2, label=metric)
    ax.set_xticks(positions + width * (len(metrics) - 1) / 2, table[group], rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8, ncol=len(metrics), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
