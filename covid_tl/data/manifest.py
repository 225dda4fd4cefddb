"""The one table every data source becomes.

Each row is one image: where it comes from (`path`, or a generator `index` for synthetic
images), its label, the patient it belongs to, its source and its view. Splits, datasets and
reports all read this table, so a new source only has to produce it.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from covid_tl.core.errors import ConfigError
from covid_tl.core.labels import LABELS, POSITIVE

REQUIRED_COLUMNS: tuple[str, ...] = ("path", "label", "patient_id", "source", "view")


class ManifestError(ConfigError):
    """A manifest that cannot be used as given; the message says which rows and why."""


@dataclass(frozen=True)
class Manifest:
    """A validated table of images. Extra columns (lung_mask, index, ...) are kept."""

    frame: pd.DataFrame

    def __post_init__(self) -> None:
        missing = [c for c in REQUIRED_COLUMNS if c not in self.frame.columns]
        if missing:
            raise ManifestError(
                f"manifest lacks column(s) {missing}; it needs {list(REQUIRED_COLUMNS)}"
            )
        bad = ~self.frame["label"].isin(LABELS)
        if bad.any():
            found = sorted(set(self.frame.loc[bad, "label"].astype(str)))
            raise ManifestError(f"unknown label(s) {found}; labels must be one of {list(LABELS)}")
        frame = self.frame.copy()
        # Patient ids are names, never numbers: "0012" and "12" are different patients.
        frame["patient_id"] = frame["patient_id"].where(frame["patient_id"].isna(), frame["patient_id"].astype(str))
        object.__setattr__(self, "frame", frame)
        no_patient = self.frame["patient_id"].isna() | (self.frame["patient_id"].astype(str) == "")
        if no_patient.any():
            rows = self.frame.index[no_patient][:5].tolist()
            raise ManifestError(f"{int(no_patient.sum())} row(s) have no patient_id, e.g. rows {rows}")
        if self.frame["path"].duplicated().any():
            dup = self.frame.loc[self.frame["path"].duplicated(), "path"].iloc[0]
            raise ManifestError(f"path listed more than once: {dup!r}")

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> Manifest:
        return cls(pd.DataFrame(list(records)).reset_index(drop=True))

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def targets(self) -> np.ndarray:
        """Class indices (1 = COVID-19) as int64, in row order."""
        return (self.frame["label"].to_numpy() == POSITIVE).astype(np.int64)

    def subset(self, rows: Sequence[int] | np.ndarray) -> Manifest:
        """Rows by position, renumbered from 0."""
        return Manifest(self.frame.iloc[np.asarray(rows, dtype=np.int64)].reset_index(drop=True))

    def counts(self) -> dict[str, int]:
        """Images per label, every label present (zero where absent)."""
        counts = self.frame["label"].value_counts()
        return {label: int(counts.get(label, 0)) for label in LABELS}
