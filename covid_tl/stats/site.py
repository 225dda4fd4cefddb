"""A new site's operating point from few or none of its labels.

A model's COVID-19 probabilities move at a hospital it never saw (its scanners, its processing),
while the order of its films often holds: a cut chosen on the training data's validation films
then calls too many or too few. Here: films drawn n per class by patient, the rates a cut chosen
on them gives on the site's other films over many draws (what n films buy), and two label-free
estimates: the cut that calls the share of the site's films the model's own cut calls of its
reference films (score-distribution matching), and the site's prevalence if only the class
prior moved (EM, Saerens, Latinne & Decaestecker 2002).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from covid_tl.stats.operating_point import choose_threshold

#: Quantiles of the rates over draws that the how-many-films summary keeps.
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def patients_per_class(targets: np.ndarray, patients: np.ndarray) -> dict[int, int]:
    """{class: patients with at least one film of it}."""
    targets, patients = np.asarray(targets).astype(int), np.asarray(patients).astype(str)
    return {c: len(set(patients[targets == c])) for c in (0, 1)}


def draw_labelled(targets: np.ndarray, patients: np.ndarray, n: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(labelled, held_out) row indices: one film from each of n patients drawn at random per
    class (no patient drawn twice), and every film of the patients not drawn. A hospital
    labels films of different patients; a held-out film of a drawn patient would flatter it."""
    targets, patients = np.asarray(targets).astype(int), np.asarray(patients).astype(str)
    used: set[str] = set()
    labelled = []
    for c in (1, 0):
        candidates = [p for p in rng.permutation(sorted(set(patients[targets == c]))) if p not in used]
        if len(candidates) < n:
            raise ValueError(f"{n} films per class need {n} patients of each class; class {c} has {len(candidates)}")
        for patient in candidates[:n]:
            used.add(patient)
            labelled.append(int(rng.choice(np.flatnonzero((patients == patient) & (targets == c)))))
    held_out = np.flatnonzero(~np.isin(patients, sorted(used)))
    return np.asarray(labelled), held_out


def rates_at(probabilities: np.ndarray, targets: np.ndarray, cut: float) -> tuple[float, float]:
    """(sensitivity, specificity) at `cut` (NaN for a class with no film)."""
    called = np.asarray(probabilities) >= cut
    targets = np.asarray(targets).astype(int)
    sensitivity = called[targets == 1].mean() if (targets == 1).any() else np.nan
    specificity = (~called[targets == 0]).mean() if (targets == 0).any() else np.nan
    return float(sensitivity), float(specificity)


def how_many_films(probabilities: np.ndarray, targets: np.ndarray, patients: np.ndarray, rule: Any,
                   ns: Iterable[int], resamples: int, seed: int) -> dict[int, dict[str, np.ndarray]]:
    """Per n (films per class): over `resamples` draws (draw_labelled), the cut `rule` chooses on
    the n + n films and the sensitivity and specificity it gives on the site's other films. An n
    the site cannot afford (a class with n patients or fewer: nothing of it held out) is left out."""
    targets = np.asarray(targets).astype(int)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    have = patients_per_class(targets, patients)
    curve = {}
    for n in ns:
        if min(have.values()) <= n:
            continue
        rng = np.random.default_rng([seed, n])
        rows = []
        for _ in range(resamples):
            labelled, held_out = draw_labelled(targets, patients, n, rng)
            cut = choose_threshold(rule, probabilities[labelled], targets[labelled])
            rows.append((cut, *rates_at(probabilities[held_out], targets[held_out], cut)))
        cuts, sensitivity, specificity = np.asarray(rows).T
        curve[n] = {"cut": cuts, "sensitivity": sensitivity, "specificity": specificity}
    return curve


def spread(values: np.ndarray) -> dict[str, Any]:
    """Mean and QUANTILES of a rate over draws (NaN draws left out), JSON-ready."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if not values.size:
        return {"mean": None, "quantiles": None}
    return {"mean": float(values.mean()),
            "quantiles": {f"{q:g}": float(np.quantile(values, q)) for q in QUANTILES}}


def cut_between(probabilities: np.ndarray, called: int) -> float:
    """The cut that calls the `called` highest probabilities COVID-19: midway between the lowest
    of them and the next lower one (0 below the lowest, 1 above the highest), as
    operating_point.choose_threshold places a rule's cut. Ties at the boundary are all called."""
    ordered = np.sort(np.asarray(probabilities, dtype=np.float64))[::-1]
    called = int(np.clip(called, 0, ordered.size))
    if called == 0:
        return float((ordered[0] + 1) / 2) if ordered.size else 0.5
    below = ordered[called] if called < ordered.size else 0.0
    return float((ordered[called - 1] + below) / 2)


def matched_cut(site: np.ndarray, reference: np.ndarray, reference_targets: np.ndarray, cut: float,
                prevalence: float) -> dict[str, float]:
    """The label-free site cut: the one calling as large a share of the site's films COVID-19 as
    the model's `cut` calls of its reference films (validation, or pooled out-of-fold) reweighted
    to the site's `prevalence`: share = prevalence * sensitivity + (1 - prevalence) * (1 -
    specificity), both at `cut` on the reference.

    It assumes the site moves every film's score by one increasing map, whatever its class (the
    order of films across the two sites holds), and that `prevalence` is right; it fails where a
    scanner moves one class only, and a wrong prevalence moves the cut by as much."""
    if not 0 <= prevalence <= 1:
        raise ValueError(f"prevalence must be in [0, 1], got {prevalence}")
    sensitivity, specificity = rates_at(reference, reference_targets, cut)
    share = prevalence * sensitivity + (1 - prevalence) * (1 - specificity)
    called = int(round(share * len(site)))
    return {"threshold": cut_between(site, called), "share_called": share, "reference_sensitivity": sensitivity,
            "reference_specificity": specificity, "prevalence": prevalence}


def em_prevalence(probabilities: np.ndarray, trained: float, tol: float = 1e-8, max_iter: int = 10_000) -> float:
    """The site's COVID-19 prevalence by EM on the class prior (Saerens et al. 2002): each film's
    posterior is re-weighted by the prior ratio, the prior is set to the posteriors' mean, until
    it settles. `trained`: the prevalence the model's probabilities are calibrated to.

    It assumes only the prior moved (each class's films look as they did in training) and
    calibrated probabilities; a moved probability scale (a scanner) is read as a moved prior."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, 1 - 1e-12)
    if not 0 < trained < 1:
        raise ValueError(f"the trained prevalence must be in (0, 1), got {trained}")
    prior = trained
    for _ in range(max_iter):
        covid = prior / trained * p
        posterior = covid / (covid + (1 - prior) / (1 - trained) * (1 - p))
        updated = float(posterior.mean())
        if abs(updated - prior) < tol:
            return updated
        prior = updated
    return prior
