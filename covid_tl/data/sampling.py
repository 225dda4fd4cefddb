"""The study's class balance: as many no-finding images as COVID-19 images, plus an extra
no-finding set held out for a specificity check on images the model never trained on; and
weights that balance training draws over (label, view) cells.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from covid_tl.data.manifest import Manifest

log = logging.getLogger(__name__)


def balance_no_finding(manifest: Manifest, extra: int, seed: int) -> tuple[Manifest, Manifest]:
    """(balanced manifest, extra no-finding manifest).

    No-finding images are taken patient by patient in a seeded order, so the same seed picks the
    same images and no patient of the extra set appears in the balanced one.
    """
    frame = manifest.frame
    is_covid = (frame["label"] == "covid").to_numpy()
    wanted = int(is_covid.sum())
    no_finding = frame[~is_covid].sort_values("path", kind="stable")
    patients = np.array(sorted(no_finding["patient_id"].unique()), dtype=object)
    np.random.default_rng(seed).shuffle(patients)
    rows_of = no_finding.groupby("patient_id").indices
    positions = no_finding.index.to_numpy()
    main: list[int] = []
    held: list[int] = []
    for patient in patients:
        rows = positions[rows_of[patient]].tolist()
        if len(main) < wanted:
            main += rows[: wanted - len(main)]  # the rest of this patient is left out, not held
        elif len(held) < extra:
            held += rows[: extra - len(held)]
        else:
            break
    if len(main) < wanted:
        log.warning("only %d no-finding images for %d COVID-19 images: classes stay unbalanced", len(main), wanted)
    if len(held) < extra:
        log.warning("extra no-finding set holds %d images, fewer than the %d asked for", len(held), extra)
    keep = np.sort(np.concatenate([np.flatnonzero(is_covid), np.array(main, dtype=np.int64)]))
    return manifest.subset(keep), manifest.subset(np.array(held, dtype=np.int64))


def cell_balanced_weights(frame: pd.DataFrame, columns: tuple[str, ...] = ("label", "view")) -> np.ndarray:
    """A draw probability per row so that every cell (each combination of the columns' values
    present) carries the same total: 1 / (cells x rows in its cell). Over (label, view) the view
    says nothing of the label in what the model trains on (half of each view's draws are
    COVID-19), where in the data one class may be mostly AP films."""
    if frame.empty:
        return np.zeros(0)
    codes = frame[list(columns)].fillna("").astype(str).groupby(list(columns)).ngroup().to_numpy()
    counts = np.bincount(codes)
    return 1.0 / (len(counts) * counts[codes])
