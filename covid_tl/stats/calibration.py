"""Whether predicted probabilities mean what they say: expected calibration error, Brier score,
reliability bins, and temperature scaling (one number dividing the logits, fitted on
validation: it changes probabilities, never the order of the images, so AUROC stays)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar
from sklearn.metrics import brier_score_loss
from torchmetrics.functional.classification import binary_calibration_error

BINS = 10
#: The calibration scores results.json carries per set, beside the rates (metrics.METRICS).
CALIBRATION_METRICS = ("ece", "brier")
TEMPERATURE_BOUNDS = (0.05, 20.0)


def expected_calibration_error(probabilities: np.ndarray, targets: np.ndarray, bins: int = BINS) -> float | None:
    """Mean |p(COVID-19) - share of COVID-19| over `bins` equal-width probability bins, weighted
    by their images (torchmetrics); None for no images."""
    if len(targets) == 0:
        return None
    preds = torch.as_tensor(np.asarray(probabilities, dtype=np.float32))
    return float(binary_calibration_error(preds, torch.as_tensor(np.asarray(targets).astype(np.int64)), n_bins=bins))


def brier_score(probabilities: np.ndarray, targets: np.ndarray) -> float | None:
    """Mean squared difference between p(COVID-19) and the 0/1 label (scikit-learn); None for no images."""
    if len(targets) == 0:
        return None
    return float(brier_score_loss(np.asarray(targets).astype(int), probabilities, labels=[0, 1], pos_label=1))


def reliability_bins(probabilities: np.ndarray, targets: np.ndarray, bins: int = BINS) -> list[dict[str, float]]:
    """Per non-empty bin (as binary_calibration_error bins them): its range, the images in it,
    their mean p(COVID-19) and their share of COVID-19."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    targets = np.asarray(targets).astype(np.float64)
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.searchsorted(edges, probabilities, side="right") - 1, 0, bins - 1)  # [lo, hi), 1.0 in the last
    return [{"low": float(edges[b]), "high": float(edges[b + 1]), "n": int((index == b).sum()),
             "mean_probability": float(probabilities[index == b].mean()), "share_covid": float(targets[index == b].mean())}
            for b in range(bins) if (index == b).any()]


def negative_log_likelihood(logits: np.ndarray, targets: np.ndarray, temperature: float = 1.0) -> float:
    """Mean binary cross-entropy of sigmoid(logits / temperature) against the 0/1 targets."""
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64)) / temperature
    return float(F.binary_cross_entropy_with_logits(z, torch.as_tensor(np.asarray(targets, dtype=np.float64))))


def fit_temperature(logits: np.ndarray, targets: np.ndarray, bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> float:
    """The temperature in `bounds` that minimises the NLL of the (validation) logits (scipy's
    bounded scalar search): above 1 softens an overconfident model, below 1 sharpens."""
    result = minimize_scalar(lambda t: negative_log_likelihood(logits, targets, t), bounds=bounds, method="bounded")
    return float(result.x)
