"""Patient-grouped, label-stratified splits.

Cohen's set has several images per patient; a split that puts one patient in train and test
leaks. So patients, not images, are assigned to splits, separately within each label.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from covid_tl.data.manifest import Manifest
from covid_tl.core.errors import ConfigError

log = logging.getLogger(__name__)

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


#: What a fold is under k-fold CV (`data.fold_split`): the test split, or the validation split
#: of a development set whose test split is carved first, as without folds.
FOLD_SPLITS: tuple[str, str] = ("test", "val")


def _held_out(manifest: Manifest, key: str, column: str, value: str) -> np.ndarray:
    """Rows of every patient with a film whose `column` is `value`: the test split of a
    leave-one-out run. A patient's other films go with it (no patient in two splits)."""
    frame = manifest.frame
    hit = (frame[column] == value).to_numpy()
    if not hit.any():
        raise ConfigError(f"data.{key}={value!r} matches no image; {column}s: {sorted(frame[column].astype(str).unique())}")
    is_test = frame["patient_id"].isin(set(frame.loc[hit, "patient_id"])).to_numpy()
    if is_test.all():
        raise ConfigError(f"data.{key}={value!r} holds out every image: nothing is left to train on")
    if (is_test & ~hit).any():
        log.warning("data.%s=%s: %d image(s) of other %ss go to the test split with their patients",
                    key, value, int((is_test & ~hit).sum()), column)
    return is_test


def _test_rows(manifest: Manifest, test_fraction: float, seed: int, num_folds: int | None, fold: int,
               fold_split: str, holdout: tuple[str, str, str] | None) -> np.ndarray:
    """Which rows are the test split: held out, one fold, or `test_fraction` of patients."""
    if holdout is not None:
        return _held_out(manifest, *holdout)
    if num_folds is not None and fold_split == "test":
        return _folds_by_patient(manifest, num_folds, seed) == fold
    return split_by_patient(manifest, 0.0, test_fraction, seed) == "test"


def assign_splits(
    manifest: Manifest,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    num_folds: int | None = None,
    fold: int = 0,
    holdout_source: str | None = None,
    fold_split: str = "test",
    holdout_view: str | None = None,
) -> np.ndarray:
    """Split names for every row, all grouped by patient: first the test split, then
    train/val of the rest.

    - test: `test_fraction` of patients per label (default); fold `fold` of `num_folds`
      (`fold_split=test`, so `-m data.fold=0,...,k-1` is a whole CV); or every image of a
      held-out source or view (`holdout_source`, `holdout_view`; their patients' other films too);
    - val: `val_fraction` of the remaining patients, or with `fold_split=val` fold `fold` of
      the remaining patients dealt into `num_folds` (a k-fold ensemble's development folds:
      the test split is the same for every fold).
    """
    holdouts = [(k, c, v) for k, c, v in (("holdout_source", "source", holdout_source),
                                          ("holdout_view", "view", holdout_view)) if v is not None]
    if len(holdouts) > 1:
        raise ConfigError("choose data.holdout_source or data.holdout_view, not both")
    if fold_split not in FOLD_SPLITS:
        raise ConfigError(f"data.fold_split must be one of {list(FOLD_SPLITS)}, got {fold_split!r}")
    if num_folds is not None:
        if holdouts and fold_split == "test":
            raise ConfigError(f"choose k-fold test splits (data.num_folds) or data.{holdouts[0][0]}, not both "
                              "(data.fold_split=val deals the rest into validation folds)")
        if num_folds < 2:
            raise ConfigError(f"data.num_folds must be at least 2, got {num_folds}")
        if not 0 <= fold < num_folds:
            raise ConfigError(f"data.fold must be in 0..{num_folds - 1}, got {fold}")
    if num_folds is None and not holdouts:
        return split_by_patient(manifest, val_fraction, test_fraction, seed)
    is_test = _test_rows(manifest, test_fraction, seed, num_folds, fold, fold_split, holdouts[0] if holdouts else None)
    names = np.full(len(manifest), "test", dtype=object)
    rest = np.flatnonzero(~is_test)
    if num_folds is not None and fold_split == "val":
        in_fold = _folds_by_patient(manifest.subset(rest), num_folds, seed) == fold
        names[rest] = np.where(in_fold, "val", "train")
    else:
        names[rest] = split_by_patient(manifest.subset(rest), val_fraction, 0.0, seed)
    return names
