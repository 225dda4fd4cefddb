"""Patient-grouped, label-stratified splits.

Cohen's set has several images per patient; a split that puts one patient in train and test
leaks. So patients, not images, are assigned to splits, separately within each label.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from covid_tl.data.manifest import Manifest
from covid_tl.core.errors import ConfigError

SPLITS: tuple[str, str, str] = ("train", "val", "test")


def patient_labels(manifest: Manifest) -> pd.Series:
    """One label per patient: the most frequent among its images (ties broken by name)."""
    frame = manifest.frame
    counts = frame.groupby(["patient_id", "label"]).size().reset_index(name="n")
    counts = counts.sort_values(["patient_id", "n", "label"], ascending=[True, False, True])
    return counts.drop_duplicates("patient_id").set_index("patient_id")["label"]


def _allocate(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Patients per split for one label: rounded, with every asked-for split non-empty
    whenever there are enough patients to go round."""
    counts = [int(round(f * n)) for f in fractions[1:]]
    for i, f in enumerate(fractions[1:]):
        if f > 0 and counts[i] == 0 and n - sum(counts) > 1:
            counts[i] = 1
    while sum(counts) >= n and n > 0:  # keep at least one patient for training
        counts[int(np.argmax(counts))] -= 1
    return n - sum(counts), counts[0], counts[1]


def _shuffled_patients(manifest: Manifest, rng: np.random.Generator):
    """(label, that label's patients in a seeded order) for each label, in label order."""
    labels = patient_labels(manifest)
    for label in sorted(labels.unique()):
        patients = np.array(sorted(labels.index[labels == label]), dtype=object)
        rng.shuffle(patients)
        yield label, patients


def split_by_patient(
    manifest: Manifest, val_fraction: float, test_fraction: float, seed: int
) -> np.ndarray:
    """Split name ("train", "val" or "test") for every manifest row, in row order.

    The same manifest and seed always give the same split; no patient is in two splits.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} must each be in "
            "[0, 1) and leave some data for training"
        )
    fractions = (1.0 - val_fraction - test_fraction, val_fraction, test_fraction)
    assignment: dict[str, str] = {}
    for _, patients in _shuffled_patients(manifest, np.random.default_rng(seed)):
        n_train, n_val, _ = _allocate(len(patients), fractions)
        for i, patient in enumerate(patients):
            assignment[patient] = "train" if i < n_train else "val" if i < n_train + n_val else "test"
    return manifest.frame["patient_id"].map(assignment).to_numpy()


def _folds_by_patient(manifest: Manifest, num_folds: int, seed: int) -> np.ndarray:
    """Fold number of every row: patients of each label dealt round-robin after a seeded shuffle."""
    fold_of: dict[str, int] = {}
    for _, patients in _shuffled_patients(manifest, np.random.default_rng(seed)):
        fold_of.update({p: i % num_folds for i, p in enumerate(patients)})
    return manifest.frame["patient_id"].map(fold_of).to_numpy()


def assign_splits(
    manifest: Manifest,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    num_folds: int | None = None,
    fold: int = 0,
    holdout_source: str | None = None,
) -> np.ndarray:
    """Split names for every row under one of three schemes, all grouped by patient.

    - fractions (default): train/val/test by `val_fraction` and `test_fraction`;
    - k-fold CV (`num_folds`): fold `fold` is the test split and `val_fraction` of the
      remaining patients validates, so `-m data.fold=0,1,2,3,4` is a whole CV;
    - leave one source out (`holdout_source`): every image of that source is the test split.
    """
    if num_folds is not None and holdout_source is not None:
        raise ConfigError("choose k-fold (data.num_folds) or leave-one-source-out (data.holdout_source), not both")
    if num_folds is None and holdout_source is None:
        return split_by_patient(manifest, val_fraction, test_fraction, seed)
    if holdout_source is not None:
        is_test = (manifest.frame["source"] == holdout_source).to_numpy()
        if not is_test.any():
            sources = sorted(manifest.frame["source"].unique())
            raise ConfigError(f"data.holdout_source={holdout_source!r} matches no image; sources: {sources}")
        if is_test.all():
            raise ConfigError(f"every image comes from {holdout_source!r}: nothing is left to train on")
    else:
        if num_folds < 2:
            raise ConfigError(f"data.num_folds must be at least 2, got {num_folds}")
        if not 0 <= fold < num_folds:
            raise ConfigError(f"data.fold must be in 0..{num_folds - 1}, got {fold}")
        is_test = _folds_by_patient(manifest, num_folds, seed) == fold
    names = np.full(len(manifest), "test", dtype=object)
    rest = np.flatnonzero(~is_test)
    names[rest] = split_by_patient(manifest.subset(rest), val_fraction, 0.0, seed)
    return names
