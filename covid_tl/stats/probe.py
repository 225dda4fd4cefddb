"""Source decodability (Zech et al. 2018): can a linear probe on a model's own pooled features
tell apart the sources (hospitals, views) of films that share one label?

If it can, the features carry the source, and a classifier trained where source and label are
confounded may have learnt the source instead of the disease. The probe's score is out of fold,
with all of a patient's films in one fold, so it measures what generalises to unseen patients
rather than what a probe can memorise about patients it has seen.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from covid_tl.stats.metrics import auroc, patient_resamples

# A plain probe, not one tuned to the data: scikit-learn's default L2 strength on standardised
# features. A stronger (tuned) probe could only find more source signal, so this is a lower bound.
PROBE_C = 1.0
# lbfgs on a few hundred to a few thousand pooled features converges well inside this; the
# default 100 leaves warnings on wide features with few films.
PROBE_MAX_ITER = 2000


def probe_auroc(features: np.ndarray, classes: Sequence[str], groups: Sequence[str], folds: int = 5,
                seed: int = 0, resamples: int = 1000) -> dict[str, Any]:
    """How well a linear probe tells `classes` (sources) apart from `features` (n, d), out of fold.

    `groups` are patient ids: a patient's rows are always in one fold, and the 95% interval
    resamples whole patients. Folds: min(`folds`, the fewest patients any class has). The score
    is the AUROC of the second class (names sorted) for two classes, the macro one-vs-rest AUROC
    for more; 0.5 means the features carry no source, 1.0 that they identify it.

    Returns a dict with `auroc`, `ci95` ([lo, hi], None when fewer than half the bootstrap draws
    hold every class), `n`, `patients`, `classes` ({name: images}) and `folds`, plus two arrays
    for callers and tests, `oof` (n, n_classes: out-of-fold probabilities, columns in sorted
    class order) and `fold` (n: each row's test fold); callers drop these before writing JSON.
    """
    features, labels, patients, names = _checked_inputs(features, classes, groups)
    k = _fold_count(labels, patients, names, folds)
    oof, fold = _out_of_fold(features, labels, patients, len(names), k, seed)
    return {
        "auroc": _separability(labels, oof),
        "ci95": _bootstrap_interval(labels, oof, patients, resamples, seed),
        "n": len(labels),
        "patients": len(np.unique(patients)),
        "classes": {str(name): int((labels == i).sum()) for i, name in enumerate(names)},
        "folds": k,
        "oof": oof,
        "fold": fold,
    }


def _checked_inputs(features: np.ndarray, classes: Sequence[str], groups: Sequence[str]):
    """(features, class index per row, patient id per row, sorted class names), or ValueError."""
    features = np.asarray(features, dtype=np.float64)
    names, labels = np.unique(np.asarray(classes).astype(str), return_inverse=True)
    patients = np.asarray(groups).astype(str)
    if features.ndim != 2 or not len(features) == len(labels) == len(patients):
        raise ValueError(f"features {features.shape}, {len(labels)} classes and {len(patients)} groups "
                         "must have one row each per film")
    if len(names) < 2:
        raise ValueError(f"the source probe needs at least 2 classes; got {list(names)}")
    return features, labels.astype(np.int64), patients, names


def _fold_count(labels: np.ndarray, patients: np.ndarray, names: np.ndarray, folds: int) -> int:
    """min(folds, fewest patients of any class): with that many, StratifiedGroupKFold can give
    every class to every training part, so each fold's probe has seen every class."""
    counts = {str(name): len(np.unique(patients[labels == i])) for i, name in enumerate(names)}
    fewest = min(counts, key=counts.get)
    k = min(folds, counts[fewest])
    if k < 2:
        raise ValueError(f"class {fewest!r} has {counts[fewest]} patient(s); the source probe "
                         f"needs at least 2 per class (and folds >= 2, got {folds})")
    return k


def _out_of_fold(features: np.ndarray, labels: np.ndarray, patients: np.ndarray, n_classes: int,
                 k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(out-of-fold probabilities (n, n_classes), test fold of each row). A class a fold's probe
    never saw keeps probability 0 there rather than failing (predict_proba follows classes_)."""
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    oof = np.zeros((len(labels), n_classes))
    fold = np.full(len(labels), -1, dtype=np.int64)
    for index, (train, test) in enumerate(splitter.split(features, labels, patients)):
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=PROBE_C, max_iter=PROBE_MAX_ITER))
        probe.fit(features[train], labels[train])
        oof[np.ix_(test, np.asarray(probe.classes_, dtype=np.int64))] = probe.predict_proba(features[test])
        fold[test] = index
    return oof, fold


def _separability(labels: np.ndarray, oof: np.ndarray) -> float | None:
    """AUROC of the second class for two classes, else the mean one-vs-rest AUROC; None when a
    class is absent (a bootstrap draw that missed one)."""
    if oof.shape[1] == 2:
        return auroc(labels, oof[:, 1])
    areas = [auroc((labels == c).astype(np.int64), oof[:, c]) for c in range(oof.shape[1])]
    return None if any(a is None for a in areas) else float(np.mean(areas))


def _bootstrap_interval(labels: np.ndarray, oof: np.ndarray, patients: np.ndarray, resamples: int,
                        seed: int) -> list[float] | None:
    """95% percentile interval over whole-patient resamples of the out-of-fold scores (the probes
    are not refitted: the interval is of the score on these patients); None, as in
    `bootstrap_intervals`, when fewer than half the draws hold every class."""
    draws = []
    for rows in patient_resamples(len(labels), patients, resamples, seed):
        if len(np.unique(labels[rows])) == oof.shape[1]:
            draws.append(_separability(labels[rows], oof[rows]))
    if not draws or len(draws) < resamples // 2:
        return None
    return [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]
