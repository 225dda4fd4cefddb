"""Check every listed image at setup, so a bad file stops the run there, never mid-epoch.

Two passes. `find_bad_rows` is cheap and sees every listed row: label, patient id, duplicate
path, file present (a broken link named as one), non-empty, header and trailer intact, and not
over `max_megapixels` by its header, so a decompression bomb is refused before any decode. `find_undecodable` then decodes the
files a run will use, in threads (cv2 and zlib release the GIL), through the very reader the
epochs use, so a file that passes is one they can read. `on_bad=raise` stops with one short
message (counts per kind, the first rows); `on_bad=skip` drops the rows with one warning per
kind. Either way the caller writes the full list to `bad_rows.csv` in the run dir.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np
import pandas as pd
from rich.progress import track

from covid_tl.data.images import MAX_MEGAPIXELS, ImageReadError, check_image_file
from covid_tl.data.manifest import REQUIRED_COLUMNS
from covid_tl.core.labels import LABELS
from covid_tl.core.errors import ConfigError

log = logging.getLogger(__name__)

ON_BAD = ("raise", "skip")
#: What bad_rows.csv holds: where the row is listed (file and line, see sources.py), the row, why.
COLUMNS = ["listed_in", "line", "path", "label", "patient_id", "source", "kind", "reason"]
SHOWN = 20  # rows named in an error message; bad_rows.csv has them all
PROGRESS_FROM = 200  # files; fewer are checked before a progress bar would draw

T = TypeVar("T")


class BadInputError(ConfigError):
    """Rows that cannot be used: the message counts them per kind and names the first;
    `rows` holds them all (the columns of bad_rows.csv)."""

    def __init__(self, message: str, rows: pd.DataFrame | None = None) -> None:
        super().__init__(message)
        self.rows = rows if rows is not None else pd.DataFrame(columns=COLUMNS)

    def written_to(self, run_dir: Path) -> BadInputError:
        """This error with its rows written to `run_dir/bad_rows.csv`, which the message names."""
        if self.rows.empty:
            return self
        path = write_bad_rows(self.rows, run_dir)
        return BadInputError(f"{self}\nall {len(self.rows)} listed in {path}", self.rows)


def write_bad_rows(bad: pd.DataFrame, run_dir: Path) -> Path:
    path = Path(run_dir) / "bad_rows.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    bad.reindex(columns=COLUMNS).to_csv(path, index=False)
    return path


def kind(reason: str) -> str:
    """The reason's kind, for counts and one warning line per kind: 'corrupt (PNG truncated)' -> 'corrupt'."""
    return reason.split(" (")[0] if not reason.startswith("unknown label") else "unknown label"


def in_threads(function: Callable[[Any], T], items: Sequence[Any], description: str) -> list[T]:
    """`function` over `items` in a thread pool, results in order, a progress bar on long work."""
    with ThreadPoolExecutor() as pool:
        results = pool.map(function, items)
        return list(track(results, description=description, total=len(items), transient=True,
                          disable=len(items) < PROGRESS_FROM))


def _bad_table(frame: pd.DataFrame, reasons: pd.Series, listings: Mapping[str, str] | None) -> pd.DataFrame:
    """Rows of `frame` with a reason, as `row` (position in frame) plus COLUMNS."""
    by_reader = "reader" in frame.columns
    # A source without a listing (generated images) numbers its rows in its own table.
    place = frame.groupby("reader").cumcount() + 1 if by_reader else pd.Series(np.arange(1, len(frame) + 1))
    lines = frame["source_line"].fillna(place) if "source_line" in frame.columns else place
    where = frame["reader"].map(listings) if listings and by_reader else frame["source"]
    table = frame.assign(listed_in=where, line=lines.astype(int), reason=reasons, row=np.arange(len(frame)))
    bad = table[table["reason"].notna()].copy()
    bad["kind"] = bad["reason"].map(kind)
    return bad.reindex(columns=["row", *COLUMNS]).reset_index(drop=True)  # findings rows have no label


def find_bad_rows(frame: pd.DataFrame, check_files: bool | Sequence[bool] = True,
                  listings: Mapping[str, str] | None = None, max_megapixels: float = MAX_MEGAPIXELS) -> pd.DataFrame:
    """One row per unusable input (empty when all is well): `row`, its position in `frame`, and
    COLUMNS. The cheap pass: labels, patient ids, duplicates, file headers (not decoded), sizes.

    `check_files` says, for all rows or row by row, whether `path` is a file to check
    (generated images have no file); `listings` names each `reader`'s listing (its CSV); a file
    whose header gives more than `max_megapixels` is 'too large'.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise BadInputError(f"the data has no column(s) {missing}; every source must give {list(REQUIRED_COLUMNS)}")
    frame = frame.reset_index(drop=True)
    check = np.full(len(frame), check_files) if isinstance(check_files, bool) else np.asarray(check_files, bool)
    reasons = pd.Series(None, index=frame.index, dtype=object)
    no_patient = frame["patient_id"].isna() | (frame["patient_id"].astype(str).str.strip() == "")
    reasons[no_patient] = "no patient id"
    unknown = ~frame["label"].isin(LABELS)
    reasons[unknown] = [f"unknown label {label!r}" for label in frame.loc[unknown, "label"]]
    to_check = np.flatnonzero(reasons.isna().to_numpy() & check)
    reasons.iloc[to_check] = in_threads(lambda path: check_image_file(path, max_megapixels),
                                        [str(p) for p in frame["path"].iloc[to_check]], "checking files")
    reasons[reasons.isna() & frame["path"].duplicated()] = "listed twice"
    return _bad_table(frame, reasons, listings)


def _read_problem(read: Callable[[Mapping[str, Any]], Any], row: Mapping[str, Any]) -> str | None:
    try:
        read(row)
    except (ImageReadError, cv2.error) as error:
        text = str(error).removeprefix(str(row["path"])).lstrip(": ")
        return f"undecodable ({text})"
    return None


def find_undecodable(frame: pd.DataFrame, positions: Sequence[int], read: Callable[[Mapping[str, Any]], Any],
                     listings: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The rows at `positions` whose files `read` cannot decode (it raises ImageReadError), as
    find_bad_rows gives them. `read` is the epochs' own reader, so what passes here never fails there."""
    frame = frame.reset_index(drop=True)
    rows = frame.iloc[list(positions)].to_dict("records")
    started = time.perf_counter()
    problems = in_threads(lambda row: _read_problem(read, row), rows, "decoding images")
    if rows:
        log.info("decoded %d image(s) in %.1f s", len(rows), time.perf_counter() - started)
    reasons = pd.Series(None, index=frame.index, dtype=object)
    reasons.iloc[list(positions)] = problems
    return _bad_table(frame, reasons, listings)


def find_bad_files(frame: pd.DataFrame, read: Callable[[Mapping[str, Any]], Any],
                   max_megapixels: float = MAX_MEGAPIXELS) -> pd.DataFrame:
    """Bad rows, as find_bad_rows gives them, of a table of image files with no labels or
    patients (`path`, `source`; predict.py): the cheap file check (sizes included), then a
    decode of the rest."""
    frame = frame.reset_index(drop=True)
    reasons = pd.Series(in_threads(lambda path: check_image_file(path, max_megapixels),
                                   [str(p) for p in frame["path"]], "checking files"),
                        index=frame.index, dtype=object)
    unchecked = find_undecodable(frame, np.flatnonzero(reasons.isna().to_numpy()), read)
    bad = pd.concat([_bad_table(frame, reasons, None), unchecked], ignore_index=True)
    return bad.sort_values("row").reset_index(drop=True)


def report_bad_rows(bad: pd.DataFrame, listed: int, on_bad: str) -> None:
    """Raise BadInputError (on_bad='raise') or warn once per kind (on_bad='skip') about `bad`."""
    if on_bad not in ON_BAD:
        raise ConfigError(f"unknown data.on_bad {on_bad!r}; valid: {', '.join(ON_BAD)}")
    if bad.empty:
        return
    bad = bad.sort_values("row")
    if on_bad == "raise":
        counts = ", ".join(f"{n} {k}" for k, n in bad["kind"].value_counts().items())
        lines = [f"  {r.listed_in} line {r.line}: {r.path} ({r.source}): {r.reason}"
                 for r in bad.head(SHOWN).itertuples()]
        more = [f"  ... and {len(bad) - SHOWN} more"] if len(bad) > SHOWN else []
        raise BadInputError(f"{len(bad)} of {listed} listed images cannot be used ({counts}; data.on_bad=skip "
                            "leaves them out):\n" + "\n".join(lines + more), bad.drop(columns="row"))
    for reason_kind, group in bad.groupby("kind"):
        log.warning("skipping %d image(s): %s, e.g. %s", len(group), reason_kind, group["path"].iloc[0])


def drop_bad_rows(frame: pd.DataFrame, bad: pd.DataFrame, on_bad: str) -> pd.DataFrame:
    """The usable rows; raises BadInputError when on_bad is 'raise' and a row is bad."""
    report_bad_rows(bad, len(frame), on_bad)
    return frame.reset_index(drop=True).drop(index=bad["row"].to_numpy()).reset_index(drop=True)


def readable_files(paths: list[str], read: Callable[[Mapping[str, Any]], Any], pattern: str, output_dir: Path,
                  max_megapixels: float = MAX_MEGAPIXELS) -> list[dict[str, Any]]:
    """Rows ({path}) of the files of an `images=` glob (predict, explain) that `read` decodes;
    the others go to bad_rows.csv (line: place among the files sorted by path) with one warning
    per kind. ConfigError when none is left.

    The file check comes first because a truncated JPEG still decodes (its end grey), and it
    reads the header's size before any decode; `read` is the one the run reads with, so a file
    that passes does not fail mid-run."""
    frame = pd.DataFrame({"path": paths, "source": pattern})
    bad = find_bad_files(frame, read, max_megapixels)
    if not bad.empty:
        report_bad_rows(bad, len(frame), "skip")
        written = write_bad_rows(bad.drop(columns="row"), output_dir)
        log.warning("%d of %d file(s) left out, listed in %s", len(bad), len(frame), written)
    if len(bad) == len(frame):
        raise ConfigError(f"none of the {len(frame)} file(s) of images={pattern!r} can be read (see bad_rows.csv)")
    return frame.drop(index=bad["row"].to_numpy())[["path"]].to_dict("records")
