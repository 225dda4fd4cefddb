"""Binary COVID-19 vs no-finding metrics, the same definitions for training logs and reports.

Positive class is COVID-19: sensitivity is recall on COVID-19, specificity recall on
no-finding. Rates come with 95% Wilson intervals because test sets here hold tens of images.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torchmetrics.functional.classification import binary_auroc, binary_confusion_matrix, binary_roc

from covid_tl.core.labels import LABELS

RATES = ("sensitivity", "specificity", "accuracy")
METRICS = (*RATES, "auroc")


def confusion_matrix(targets: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """Counts with named rows (true class) and columns (predicted class)."""
    matrix = binary_confusion_matrix(_tensor(predicted), _tensor(targets)).tolist()
    return {"labels": list(LABELS), "rows": "true", "columns": "predicted", "matrix": matrix}


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float] | None:
    """95% Wilson score interval for a proportion; None when there is nothing to count."""
    if n == 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _tensor(values: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(values))  # a copy: pandas may hand over a read-only view


def _both_classes(targets: np.ndarray) -> bool:
    return bool((targets == 1).any() and (targets == 0).any())


def auroc(targets: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (ties averaged), as in training; None with one class only."""
    if not _both_classes(targets):
        return None
    return float(binary_auroc(_tensor(scores), _tensor(targets)))


def summarize(targets: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """Every reported figure for one set of predictions (JSON-ready; None where undefined)."""
    targets = np.asarray(targets).astype(np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if targets.shape != probabilities.shape:
        raise ValueError(f"{targets.shape[0]} targets but {probabilities.shape[0]} probabilities")
    predicted = (probabilities >= threshold).astype(np.int64)
    correct = predicted == targets
    counts = {
        "sensitivity": (int(correct[targets == 1].sum()), int((targets == 1).sum())),
        "specificity": (int(correct[targets == 0].sum()), int((targets == 0).sum())),
        "accuracy": (int(correct.sum()), len(targets)),
    }
    summary: dict[str, Any] = {}
    for name, (k, n) in counts.items():
        summary[name] = k / n if n else None
        interval = wilson_interval(k, n)
        summary[f"{name}_ci95"] = list(interval) if interval else None
    summary["auroc"] = auroc(targets, probabilities)
    summary["confusion_matrix"] = confusion_matrix(targets, predicted)
    summary["n"] = len(targets)
    summary["n_per_class"] = {label: int((targets == i).sum()) for i, label in enumerate(LABELS)}
    summary["threshold"] = threshold
    return summary


def roc_points(targets: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(false positive rates, true positive rates) at every threshold; None with one class."""
    targets = np.asarray(targets).astype(np.int64)
    if not _both_classes(targets):
        return None
    fpr, tpr, _ = binary_roc(_tensor(scores), _tensor(targets))
    return fpr.numpy(), tpr.numpy()


def patient_resamples(n: int, groups: np.ndarray | None, resamples: int, seed: int):
    """Row indices of `resamples` bootstrap draws of whole groups (patients; each row its own
    group when None), with replacement, as many groups as there are."""
    if groups is None:
        groups = np.arange(n)
    _, group_index = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    members = [np.flatnonzero(group_index == g) for g in range(group_index.max() + 1)] if n else []
    rng = np.random.default_rng(seed)
    for _ in range(resamples if members else 0):
        yield np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])


def bootstrap_mean(values: np.ndarray, groups: np.ndarray | None = None, resamples: int = 1000,
                   seed: int = 0) -> list[float] | None:
    """95% percentile bootstrap interval of the mean of per-image values (Dice, say), whole
    patients resampled; None when there is nothing to resample."""
    values = np.asarray(values, dtype=np.float64)
    means = [float(values[rows].mean()) for rows in patient_resamples(len(values), groups, resamples, seed)]
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))] if means else None


def bootstrap_intervals(
    targets: np.ndarray,
    probabilities: np.ndarray,
    groups: np.ndarray | None = None,
    threshold: float = 0.5,
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, list[float] | None]:
    """95% percentile bootstrap intervals of every metric.

    With `groups` (patient ids) whole patients are resampled, as their images are not
    independent; a metric undefined in a resample (one class drawn) is left out of it.
    """
    targets = np.asarray(targets).astype(np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    draws: dict[str, list[float]] = {m: [] for m in METRICS}
    for rows in patient_resamples(len(targets), groups, resamples, seed):
        t, p = targets[rows], probabilities[rows]
        predicted = p >= threshold
        if (t == 1).any():
            draws["sensitivity"].append(float(predicted[t == 1].mean()))
        if (t == 0).any():
            draws["specificity"].append(float((~predicted[t == 0]).mean()))
        draws["accuracy"].append(float((predicted == (t == 1)).mean()))
        area = auroc(t, p)
        if area is not None:
            draws["auroc"].append(area)
    return {
        m: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] if len(v) >= resamples // 2 else None
        for m, v in draws.items()
    }
