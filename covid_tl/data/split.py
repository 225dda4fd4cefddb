"""Patient-grouped, label-stratified splits.

Cohen's set has several images per patient; a split that puts one patient in train and test
leaks. So patients, not images, are assigned to splits, separately within each label.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from covid_tl.data.manifest import Manifest

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


def split_by_patient(
    manifest: Manifest, val_fraction: float, test_fraction: float, seed: int
) -> np.ndarray:
    """Split name ("train", "val" or "test") for every manifest row, in row order.

    The same manifest and seed always give the same split; no patient is in two splits.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} must each be in "
            "[0, 1) and leave some data for training"
        )
    fractions = (1.0 - val_fraction - test_fraction, val_fraction, test_fraction)
    rng = np.random.default_rng(seed)
    labels = patient_labels(manifest)
    assignment: dict[str, str] = {}
    for label in sorted(labels.unique()):
        patients = np.array(sorted(labels.index[labels == label]), dtype=object)
        rng.shuffle(patients)
        n_train, n_val, _ = _allocate(len(patients), fractions)
        for i, patient in enumerate(patients):
            assignment[patient] = "train" if i < n_train else "val" if i < n_train + n_val else "test"
    return manifest.frame["patient_id"].map(assignment).to_numpy()
