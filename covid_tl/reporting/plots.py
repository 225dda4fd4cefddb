"""Figures for evaluation and sweep reports (matplotlib, written straight to files)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from textwrap import wrap
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from covid_tl.core.labels import DISPLAY  # noqa: E402
from covid_tl.stats.metrics import wilson_interval  # noqa: E402
from covid_tl.stats.operating_point import cut_decimals  # noqa: E402

#: How metric names are printed on figures.
METRIC_NAMES = {"sensitivity": "sensitivity", "specificity": "specificity", "accuracy": "accuracy", "auroc": "AUROC"}


def _save(fig: Figure, path: Path) -> Figure:
    """Write and release the figure; the returned object still holds its artists (for tests)."""
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return fig


def confusion_matrices(matrices: Mapping[str, Mapping[str, Any]], path: Path, title: str | None = None) -> Figure:
    """Named confusion matrices side by side, counts and row percentages in each cell."""
    n = len(matrices)
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 3.4), squeeze=False)
    for ax, (name, cm) in zip(axes[0], matrices.items()):
        counts = np.asarray(cm["matrix"], dtype=float)
        rows = counts.sum(axis=1, keepdims=True)
        share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        labels = [DISPLAY.get(label, label) for label in cm["labels"]]
        ax.set_xticks(range(len(labels)), labels)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(name, fontsize=9)
        for (i, j), value in np.ndenumerate(counts):
            ax.text(j, i, f"{int(value)}\n{share[i, j]:.0%}", ha="center", va="center",
                    color="white" if share[i, j] > 0.6 else "black", fontsize=9)
    fig.suptitle("\n".join(wrap(title or "Confusion matrices (count and share of the true class)", 40 * n)), fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def roc_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray, float | None, tuple[float, float] | None]],
               path: Path, threshold: float) -> Figure:
    """ROC curves with their AUROC, each with its operating point: the (1 - specificity,
    sensitivity) of calling COVID-19 at p >= `threshold`. Curves along 0 and 1 stay visible."""
    fig, ax = plt.subplots(figsize=(4.6, 4.6))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="chance")
    for name, (fpr, tpr, area, point) in curves.items():
        line, = ax.plot(fpr, tpr, lw=1.6, clip_on=False, zorder=3,
                        label=f"{name} (AUROC {area:.3f})" if area is not None else name)
        if point is not None:
            ax.plot(*point, "o", ms=7, color=line.get_color(), mec="black", mew=0.8, clip_on=False, zorder=4)
    ax.plot([], [], "o", color="white", mec="black",
            label=f"operating point (p(COVID-19) \u2265 {threshold:.{cut_decimals(threshold)}f})")
    ax.set_xlabel("1 - specificity (false positive rate)")
    ax.set_ylabel("sensitivity (true positive rate)")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.set_title("ROC curves (positive class: COVID-19)", fontsize=10)
    ax.legend(fontsize=7.5, loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def whiskers(table, metric: str) -> np.ndarray | None:
    """(2, n) error-bar lengths below and above each value, their ends clipped to [0, 1].

    Ends come from `<metric>_low` / `<metric>_high` (an interval), else `<metric>_std` (mean
    +- one standard deviation); None when the table has neither.
    """
    values = table[metric].to_numpy(float)
    if f"{metric}_low" in table:
        low, high = table[f"{metric}_low"].to_numpy(float), table[f"{metric}_high"].to_numpy(float)
    elif f"{metric}_std" in table:
        spread = table[f"{metric}_std"].to_numpy(float)
        low, high = values - spread, values + spread
    else:
        return None
    # NaN (no interval known) draws no whisker; a value outside its interval gets length 0.
    return np.vstack([np.maximum(values - np.clip(low, 0, 1), 0), np.maximum(np.clip(high, 0, 1) - values, 0)])


def _whisker_handle(label: str) -> Line2D:
    return Line2D([], [], color="black", marker="|", markersize=12, markeredgewidth=1.2, linestyle="none", label=label)


def metric_lines(table, x: str, metrics: Sequence[str], series: str, path: Path,
                 whisker_label: str = "whiskers: mean \u00b1 1 SD", xlabel: str | None = None,
                 title: str | None = None, legend_title: str | None = None) -> Figure:
    """One panel per metric: value against `x`, a line per value of `series` (in the table's
    order, its points joined in order of x), whiskers from whiskers()."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.4 * len(metrics), 3.4), squeeze=False, sharey=True)
    xs = np.sort(table[x].dropna().unique())
    for ax, metric in zip(axes[0], metrics):
        for name in dict.fromkeys(table[series]):
            group = table[table[series] == name].sort_values(x)
            ax.errorbar(group[x], group[metric], yerr=whiskers(group, metric), marker="o", capsize=3, label=str(name))
        if len(xs) and np.allclose(xs, np.round(xs)):  # integer settings get integer ticks
            ax.set_xticks(xs, [str(int(v)) for v in xs])
        ax.set_title(METRIC_NAMES.get(metric, metric))
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test value")
    handles, labels = axes[0][-1].get_legend_handles_labels()
    axes[0][-1].legend([*handles, _whisker_handle(whisker_label)], [*labels, "\n".join(wrap(whisker_label, 28))],
                       fontsize=7.5, title=series if legend_title is None else legend_title, title_fontsize=8, loc="center left",
                       bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.supxlabel(xlabel or x, fontsize=10)
    fig.suptitle(title or f"Test metrics against {x}", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def metric_bars(table, group: str, metrics: Sequence[str], path: Path,
                whisker_label: str = "whiskers: mean \u00b1 1 SD", xlabel: str | None = None,
                title: str | None = None) -> Figure:
    """Grouped bars: one group per row of `table` (labelled by `group`), one bar per metric."""
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(table) * len(metrics) + 1.0), 3.6))
    width = 0.8 / len(metrics)
    positions = np.arange(len(table))
    for k, metric in enumerate(metrics):
        ax.bar(positions + k * width, table[metric], width, yerr=whiskers(table, metric), capsize=2,
               label=METRIC_NAMES.get(metric, metric))
    ax.set_xticks(positions + width * (len(metrics) - 1) / 2, table[group], rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("test value")
    ax.set_xlabel(xlabel or group)
    ax.grid(axis="y", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    ax.legend([*handles, _whisker_handle(whisker_label)], [*labels, "\n".join(wrap(whisker_label, 28))],
              fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title(title or "Test metrics per setting", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


#: A reliability bin of fewer images is drawn hollow, with no line through it: one image moves
#: its share of COVID-19 by more than 0.2, so a spike there is noise, not miscalibration.
SPARSE = 5


def _bin_points(bins: Sequence[Mapping[str, float]]) -> tuple[np.ndarray, ...]:
    """(mean p, share of COVID-19, images, Wilson 95% low and high of the share) per bin."""
    xs, ys, ns = (np.array([b[k] for b in bins], dtype=float) for k in ("mean_probability", "share_covid", "n"))
    intervals = [wilson_interval(int(round(y * n)), int(n)) for y, n in zip(ys, ns)]
    return xs, ys, ns, np.array([i[0] for i in intervals]), np.array([i[1] for i in intervals])


def reliability_diagram(sets: Mapping[str, tuple[Sequence[Mapping[str, float]], float | None]], path: Path,
                        note: str = "") -> Figure:
    """Per set, the share of COVID-19 against the mean p(COVID-19) of each probability bin
    (covid_tl.stats.calibration.reliability_bins) with its 95% Wilson interval, and the diagonal of
    perfect calibration; a marker's area grows with its bin's images, and a bin of fewer than
    SPARSE is hollow, labelled with its count and left off the line. Below, the images per bin.
    The legend carries each set's ECE."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 6.0), sharex=True, gridspec_kw={"height_ratios": [3, 1.2]})
    top.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="perfect calibration")
    width = 0.1 / max(1, len(sets))
    largest = max((b["n"] for bins, _ in sets.values() for b in bins), default=1)
    for k, (name, (bins, ece)) in enumerate(sets.items()):
        xs, ys, ns, low, high = _bin_points(bins)
        dense = ns >= SPARSE
        line, = top.plot(xs, np.where(dense, ys, np.nan), "-", lw=1.4, clip_on=False,
                         label=f"{name} (ECE {ece:.3f})" if ece is not None else name)
        colour = line.get_color()
        # Clipped at 0: at a share of exactly 0 or 1 the interval's end can miss it by a rounding error.
        top.errorbar(xs, ys, yerr=np.clip([ys - low, high - ys], 0, None), fmt="none", ecolor=colour, elinewidth=0.8, alpha=0.5,
                     capsize=2, clip_on=False)
        top.scatter(xs, ys, s=10 + 110 * ns / largest, facecolors=[colour if d else "none" for d in dense],
                    edgecolors=colour, linewidths=1.0, clip_on=False, zorder=3)
        for x, y, n in zip(xs[~dense], ys[~dense], ns[~dense]):
            shift = 4 + 8 * k  # each set's labels at their own height: sparse bins of two sets often meet
            top.annotate(f"n={int(n)}", (x, y), xytext=(4, -shift - 5 if y > 0.5 else shift), textcoords="offset points",
                         fontsize=6.5, color=colour)
        bottom.bar([b["low"] + (k + 0.5) * width for b in bins], [b["n"] for b in bins], width,
                   color=colour, label=name)
    handles, labels = top.get_legend_handles_labels()
    extra = [Line2D([], [], marker="o", mfc="none", mec="grey", ls="none", label=f"bin of under {SPARSE} images "
                    "(no line through it)"), _whisker_handle("95% Wilson interval; marker area: images")]
    top.set_ylabel("share of COVID-19 among the bin's images")
    top.set_xlim(0, 1)
    top.set_ylim(-0.02, 1.02)
    top.grid(alpha=0.3)
    # Beside the panel: markers, whiskers and labels of sparse bins fill any corner inside it.
    top.legend([*handles, *extra], [*labels, *("\n".join(wrap(h.get_label(), 24)) for h in extra)], fontsize=7,
               loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    top.set_title("Reliability of p(COVID-19), 10 bins" + (f" ({note})" if note else ""), fontsize=10)
    bottom.set_xlabel("predicted p(COVID-19) (bin mean above; bin range below)")
    bottom.set_ylabel("images per bin")
    bottom.set_xticks(np.linspace(0, 1, 11))
    bottom.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def ensemble_figure(pooled: Mapping[int, float | None], folds: Mapping[int, Mapping[int, float | None]], chosen: int,
                    point: Mapping[str, Any], path: Path) -> Figure:
    """A fold ensemble's two choices: the epoch (pooled out-of-fold AUROC by epoch beside each
    fold's own) and the threshold (each fold's own cut beside the pooled one)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for fold, curve in folds.items():
        epochs = [e for e, a in curve.items() if a is not None]
        left.plot(epochs, [curve[e] for e in epochs], lw=1, alpha=0.6, marker=".", label=f"fold {fold} alone")
    epochs = [e for e, a in pooled.items() if a is not None]
    left.plot(epochs, [pooled[e] for e in epochs], color="black", lw=2.5, marker="o", label="pooled out-of-fold")
    left.axvline(chosen, color="black", ls="--", lw=1)
    left.set(xlabel="epoch", ylabel="AUROC", title=f"epoch {chosen}: the highest pooled AUROC")
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.legend(fontsize=8, loc="best", framealpha=0.6)
    cuts = [(f["fold"], f["threshold"]) for f in point.get("per_fold", [])]
    right.scatter([c[0] for c in cuts], [c[1] for c in cuts], color="tab:blue", zorder=3,
                  label=f"each fold's own {point.get('rule')} cut")
    right.axhline(point["threshold"], color="black", lw=2,
                  label=f"pooled ({point.get('n')} films): {point['threshold']:.{cut_decimals(point['threshold'])}f}")
    right.set(xlabel="fold", ylabel="threshold on p(COVID-19)", ylim=(0, 1), xticks=[c[0] for c in cuts],
              title="operating point")
    right.legend(fontsize=8, loc="upper right")
    return _save(fig, path)


def how_many_films_figure(curve: Mapping[int, Mapping[str, np.ndarray]], lines: Mapping[str, Mapping[str, float]],
                          path: Path, title: str) -> Figure:
    """What n labelled films per class buy at a new site: per n, the spread over draws of the
    sensitivity and specificity a cut chosen on n + n films gives on the site's other films
    (median, 25-75% and 5-95% of draws), beside fixed cuts' rates on all its films (`lines`:
    label -> {sensitivity, specificity}, e.g. the model's own cut, a label-free one)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    ns = sorted(curve)
    styles = ["--", ":", "-."]
    for ax, metric in zip(axes, ("sensitivity", "specificity")):
        values = [np.asarray(curve[n][metric], dtype=float) for n in ns]
        values = [v[~np.isnan(v)] for v in values]
        if ns:
            low, q1, median, q3, high = (np.array([np.quantile(v, q) for v in values]) for q in (0.05, 0.25, 0.5, 0.75, 0.95))
            ax.fill_between(ns, low, high, color="tab:blue", alpha=0.15, label="5-95% of draws")
            ax.fill_between(ns, q1, q3, color="tab:blue", alpha=0.3, label="25-75% of draws")
            ax.plot(ns, median, color="tab:blue", marker="o", lw=2, label="median, cut from n + n site films")
        for (label, rates), style in zip(lines.items(), styles):
            if rates.get(metric) is not None:
                ax.axhline(rates[metric], color="black", ls=style, lw=1.2, label=label)
        ax.set(xscale="log", xlabel="labelled films per class (n)", title=f"{metric} on the site's other films",
               ylim=(-0.02, 1.02))
        ax.set_xticks(ns or [1])
        ax.set_xticklabels([str(n) for n in ns] or ["-"])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("rate")
    axes[1].legend(fontsize=8, loc="lower right", framealpha=0.8)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)
