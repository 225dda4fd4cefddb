"""Binary COVID-19 vs no-finding metrics, the same definitions for training logs and reports.

Positive class is COVID-19: sensitivity is recall on COVID-19, specificity recall on
no-finding. Rates come with 95% Wilson intervals because test sets here hold tens of images.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC, BinaryRecall, BinarySpecificity

from covid_tl.data.manifest import LABELS

RATES = ("sensitivity", "specificity", "accuracy")
METRICS = (*RATES, "auroc")


def metric_collection(threshold: float = 0.5) -> MetricCollection:
    """torchmetrics for one split, fed with (probabilities, targets)."""
    return MetricCollection(
        {
            "sensitivity": BinaryRecall(threshold=threshold),
            "specificity": BinarySpecificity(threshold=threshold),
            "accuracy": BinaryAccuracy(threshold=threshold),
            "auroc": BinaryAUROC(),
        }
    )


def confusion_matrix(targets: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """Counts with named rows (true class) and columns (predicted class)."""
    matrix = [[int(np.sum((targets == t) & (predicted == p))) for p in range(2)] for t in range(2)]
    return {"labels": list(LABELS), "rows": "true", "columns": "predicted", "matrix": matrix}


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float] | None:
    """95% Wilson score interval for a proportion; None when there is nothing to count."""
    if n == 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def auroc(targets: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties averaged); None with one class only."""
    n_pos = int(targets.sum())
    n_neg = len(targets) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = pd.Series(scores).rank(method="average").to_numpy()
    return float((ranks[targets == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


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
