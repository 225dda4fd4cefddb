"""Check every listed image before training, so a bad file stops the run at setup, never mid-epoch.

`on_bad=raise` stops with one message naming every bad row; `on_bad=skip` drops them with one
warning line per kind, and the caller writes the dropped rows to the run dir.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import pandas as pd

from covid_tl.data.images import check_image_file
from covid_tl.labels import LABELS
from covid_tl.data.manifest import REQUIRED_COLUMNS
from covid_tl.errors import ConfigError

log = logging.getLogger(__name__)

ON_BAD = ("raise", "skip")


class BadInputError(ConfigError):
    """Rows that cannot be used; the message lists each with its reason."""


def _row_problem(row: pd.Series, check_file: Callable[[str], str | None] | None) -> str | None:
    if row["label"] not in LABELS:
        return f"unknown label {row['label']!r}"
    if pd.isna(row["patient_id"]) or str(row["patient_id"]).strip() == "":
        return "no patient id"
    return check_file(str(row["path"])) if check_file else None


def find_bad_rows(frame: pd.DataFrame, check_files: bool | Sequence[bool] = True) -> pd.DataFrame:
    """One row per unusable input: its position, path and reason (empty when all is well).

    `check_files` says, for all rows or row by row, whether `path` is a file to check
    (generated images have no file).
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise BadInputError(f"the data has no column(s) {missing}; every source must give {list(REQUIRED_COLUMNS)}")
    per_row = [check_files] * len(frame) if isinstance(check_files, bool) else list(check_files)
    reasons = [
        _row_problem(row, check_image_file if check else None)
        for (_, row), check in zip(frame.iterrows(), per_row)
    ]
    duplicated = frame["path"].duplicated()
    reasons = [r or ("listed twice" if dup else None) for r, dup in zip(reasons, duplicated)]
    bad = frame.assign(reason=reasons).dropna(subset=["reason"])
    return bad[["path", "label", "patient_id", "source", "reason"]].rename_axis("row").reset_index()


def kind(reason: str) -> str:
    """The reason's kind, for one warning line per kind: 'corrupt (PNG truncated)' -> 'corrupt'."""
    return reason.split(" (")[0] if not reason.startswith("unknown label") else "unknown label"


def drop_bad_rows(frame: pd.DataFrame, bad: pd.DataFrame, on_bad: str) -> pd.DataFrame:
    """The usable rows; raises BadInputError naming each bad row when on_bad is 'raise'."""
    if on_bad not in ON_BAD:
        raise ConfigError(f"unknown data.on_bad {on_bad!r}; valid: {', '.join(ON_BAD)}")
    if bad.empty:
        return frame.reset_index(drop=True)
    if on_bad == "raise":
        lines = [f"  row {r.row}: {r.path} ({r.source}): {r.reason}" for r in bad.itertuples()]
        raise BadInputError(
            f"{len(bad)} of {len(frame)} listed images cannot be used (data.on_bad=skip leaves them out):\n"
            + "\n".join(lines)
        )
    for reason_kind, group in bad.groupby(bad["reason"].map(kind)):
        log.warning("skipping %d image(s): %s, e.g. %s", len(group), reason_kind, group["path"].iloc[0])
    return frame.drop(index=frame.index[bad["row"].to_numpy()]).reset_index(drop=True)
