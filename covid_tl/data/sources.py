"""Readers that turn published dataset layouts, and a user's own files, into manifest rows.

Each reader returns a raw table (the Manifest's columns plus the source's own columns, kept
for later breakdowns); validation and bad-file handling happen once, in `validate.py`.
Roots are plain arguments: the configs fill them from keys with environment-variable defaults.
Every row carries `source_line`, where the source lists it: the line of its CSV as a text editor
numbers it (header = line 1), or for class folders the file's place in the sorted listing, so a
bad-input report points at the line to fix.
"""
from __future__ import annotations

import csv
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from covid_tl.data.images import IMAGE_SUFFIXES, read_xray
from covid_tl.core.labels import LABELS, NIH_FINDINGS
from covid_tl.core.errors import ConfigError

log = logging.getLogger(__name__)


class SourceError(ConfigError):
    """A source that cannot be read as configured; the message says which key to change."""


def _existing_dir(root: str | Path, what: str) -> Path:
    path = Path(root).expanduser()
    if not path.is_dir():
        raise SourceError(f"{what} root {str(path)!r} is not a directory")
    return path


def existing_file(path: str | Path, what: str, kind: str = ".csv") -> Path:
    """`path` as a file that exists. A folder given for it (`data.path=<dataset folder>`) is
    answered with the files of `kind` it holds, so the user sees which one to give."""
    path = Path(path).expanduser()
    if path.is_dir():
        found = sorted(str(p) for p in path.glob(f"*{kind}"))
        hint = (f"give the {kind} file in it: {found[0]}" if len(found) == 1 else
                f"give one of its {kind} files: {', '.join(found)}" if found else f"it holds no {kind} file")
        raise SourceError(f"{what} {str(path)!r} is a folder, not a {kind} file; {hint}")
    if not path.is_file():
        raise SourceError(f"{what} {str(path)!r} does not exist")
    return path


def _first_column(frame: pd.DataFrame, names: Sequence[str], where: Path) -> str:
    for name in names:
        if name in frame.columns:
            return name
    raise SourceError(f"{where} has none of the columns {list(names)}")


def _record_lines(path: Path) -> list[int]:
    """The line each data record of a CSV starts on (header = line 1), skipping blank lines as
    pandas does; a quoted field may span lines, so this is not simply position + 2."""
    starts = []
    with path.open(newline="", encoding="utf-8-sig") as stream:
        reader = csv.reader(stream)
        next(reader, None)
        start = reader.line_num + 1
        for record in reader:
            if record and not (len(record) == 1 and not record[0].strip()):
                starts.append(start)
            start = reader.line_num + 1
    return starts


def read_listing(path: Path, what: str = "metadata") -> pd.DataFrame:
    """A CSV as published, every value a string, plus `source_line` (see the module docstring);
    `what` names the file in errors."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:  # 0 bytes, or blank lines only: not even a header
        raise SourceError(f"{what} {str(path)!r} is empty: not even a header line") from None
    lines = _record_lines(path)
    if len(lines) != len(frame):
        raise SourceError(f"{path}: {len(frame)} rows read but {len(lines)} records counted; is it a CSV file?")
    return frame.assign(source_line=lines)


def _as_list(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else [str(v) for v in value]


class FileSource:
    """Base for sources whose rows point at image files."""

    reads_files = True
    listing: str  # the CSV (or folder) whose lines `source_line` counts, named in bad-input reports

    def load_image(self, row: Mapping[str, Any]) -> np.ndarray:
        return read_xray(row["path"])

    def load_lung_mask(self, row: Mapping[str, Any]) -> np.ndarray | None:
        """The row's `lung_mask` file (white = lung) as a bool array, or None where it has none."""
        return read_mask(row.get("lung_mask"))


def read_mask(path: Any) -> np.ndarray | None:
    if path is None or (isinstance(path, float) and np.isnan(path)) or str(path) == "":
        return None
    return read_xray(str(path)) > 127


class CohenSource(FileSource):
    """Cohen's covid-chestxray-dataset, and Actualmed- and Figure1-style sets that share its columns.

    `findings` maps the last part of the `finding` column ("Pneumonia/Viral/COVID-19" ends in
    "COVID-19") to a covid-tl label; rows whose finding is not mapped are left out.
    Images are `root/<folder>/<filename>`, `root/images/<filename|imagename>`, or, where the
    metadata names no file (Figure1), `root/images/<patientid>.<any image suffix>`.
    """

    def __init__(
        self,
        root: str | Path,
        name: str = "cohen",
        metadata: str = "metadata.csv",
        views: Sequence[str] | str | None = ("PA",),
        modality: str | None = "X-ray",
        findings: Mapping[str, str] | None = None,
        images_dir: str = "images",
    ) -> None:
        self.root = _existing_dir(root, name)
        self.name = name
        self.metadata = self.root / metadata
        self.listing = str(self.metadata)
        self.views = _as_list(views)
        self.modality = modality
        self.findings = dict(findings) if findings is not None else {"COVID-19": "covid"}
        unknown = sorted(set(self.findings.values()) - set(LABELS))
        if unknown:
            raise SourceError(f"{name}.findings maps to unknown label(s) {unknown}; valid: {list(LABELS)}")
        self.images_dir = images_dir

    def _image_paths(self, frame: pd.DataFrame, patient_column: str) -> pd.Series:
        for column in ("filename", "imagename"):
            if column in frame.columns:
                names = frame[column].astype(str)
                if "folder" in frame.columns:
                    folders = frame["folder"].fillna(self.images_dir).astype(str)
                    return pd.Series([str(self.root / f / n) for f, n in zip(folders, names)], index=frame.index)
                return names.map(lambda n: str(self.root / self.images_dir / n))
        # Figure1 style: one image per patient id, suffix unknown.
        folder = self.root / self.images_dir
        by_stem = {p.stem: p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES} if folder.is_dir() else {}
        return frame[patient_column].astype(str).map(lambda pid: str(by_stem.get(pid, folder / f"{pid}.png")))

    def frame(self) -> pd.DataFrame:
        if not self.metadata.is_file():
            raise SourceError(f"{self.name}: no {self.metadata.name} in {self.root}")
        raw = read_listing(self.metadata)
        patient_column = _first_column(raw, ["patientid", "Patientid", "patient_id", "PatientID"], self.metadata)
        keep = pd.Series(True, index=raw.index)
        if self.modality is not None and "modality" in raw.columns:
            keep &= raw["modality"].str.strip().str.lower() == self.modality.lower()
        if self.views is not None:
            view_column = _first_column(raw, ["view", "View Position"], self.metadata)
            keep &= raw[view_column].str.strip().isin(self.views)
        finding_column = _first_column(raw, ["finding", "Finding"], self.metadata)
        # "Pneumonia/Viral/COVID-19" (later releases) and "COVID-19, ARDS" (early ones) are COVID-19.
        last = raw[finding_column].str.strip().str.split("/").str[-1].str.strip()
        labels = last.map(self.findings).fillna(last.str.split(",").str[0].str.strip().map(self.findings))
        keep &= labels.notna()
        frame = raw[keep].copy()
        frame.insert(0, "path", self._image_paths(frame, patient_column))
        frame.insert(1, "label", labels[keep])
        frame.insert(2, "patient_id", self.name + ":" + frame[patient_column].astype(str).str.strip())
        frame.insert(3, "source", self.name)
        view_values = frame["view"] if "view" in frame.columns else pd.Series("", index=frame.index)
        frame = frame.drop(columns=[c for c in ("view",) if c in frame.columns])
        frame.insert(4, "view", view_values.str.strip())
        return frame.reset_index(drop=True)


class NIHSource(FileSource):
    """NIH ChestX-ray14 as published: `Data_Entry_2017.csv` and images under the root,
    its `images/` folder or the `images_0NN/images/` folders of the split download.

    Only rows whose finding is exactly "No Finding" are kept (as `no_finding`). Most users hold a
    few of its 12 archives, so rows whose image is not under the root are left out with one info
    line saying how many; a root holding none of the listed images is an error.
    """

    def __init__(
        self,
        root: str | Path,
        name: str = "nih",
        metadata: str = "Data_Entry_2017.csv",
        views: Sequence[str] | str | None = ("PA",),
    ) -> None:
        self.root = _existing_dir(root, name)
        self.name = name
        self.metadata = self.root / metadata
        self.listing = str(self.metadata)
        self.views = _as_list(views)

    def _index_images(self) -> dict[str, str]:
        folders = [self.root, self.root / "images", *sorted(self.root.glob("images_*/images")), *sorted(self.root.glob("images_*"))]
        found: dict[str, str] = {}
        for folder in folders:
            if folder.is_dir():
                with os.scandir(folder) as entries:
                    for entry in entries:
                        if entry.name.lower().endswith(IMAGE_SUFFIXES):
                            found.setdefault(entry.name, entry.path)
        return found

    def _rows(self, no_finding_only: bool) -> pd.DataFrame:
        if not self.metadata.is_file():
            raise SourceError(f"{self.name}: no {self.metadata.name} in {self.root}")
        raw = read_listing(self.metadata)
        for column in ("Image Index", "Finding Labels", "Patient ID", "View Position"):
            _first_column(raw, [column], self.metadata)
        keep = raw["Finding Labels"].str.strip() == "No Finding" if no_finding_only else pd.Series(True, index=raw.index)
        if self.views is not None:
            keep &= raw["View Position"].str.strip().isin(self.views)
        images = self._index_images()
        frame = self._present(raw[keep], images, "No Finding " if no_finding_only else "")
        frame.insert(0, "path", frame["Image Index"].map(images))
        frame.insert(1, "label", "no_finding")
        frame.insert(2, "patient_id", self.name + ":" + frame["Patient ID"].str.strip())
        frame.insert(3, "source", self.name)
        frame.insert(4, "view", frame["View Position"].str.strip())
        return frame.reset_index(drop=True)

    def _present(self, listed: pd.DataFrame, images: Mapping[str, str], finding: str) -> pd.DataFrame:
        """The listed rows whose image is under the root (a partial download is normal)."""
        present = listed["Image Index"].isin(images)
        what = f"{finding}{'/'.join(self.views) + ' ' if self.views else ''}images"
        if len(listed) and not present.any():
            raise SourceError(f"{self.name}: none of the {len(listed):,} {what} that {self.metadata.name} lists is in "
                              f"{self.root}, its images/ or its images_NNN/images/ folders: is the root right?")
        if not present.all():
            log.info("%s: %s of the %s listed %s are not under %s (a partial download): using the %s present",
                     self.name, f"{int((~present).sum()):,}", f"{len(listed):,}", what, self.root, f"{int(present.sum()):,}")
        return listed[present].copy()

    def frame(self) -> pd.DataFrame:
        return self._rows(no_finding_only=True)

    def findings_frame(self) -> pd.DataFrame:
        """Every image (of the views asked for) with one 0/1 column per ChestX-ray14 finding,
        for multi-label pretraining."""
        frame = self._rows(no_finding_only=False).drop(columns=["label"])
        findings = frame["Finding Labels"].str.split("|").map(lambda items: {i.strip() for i in items})
        for finding in NIH_FINDINGS:
            frame[finding] = findings.map(lambda present: int(finding in present))
        return frame


class ManifestSource(FileSource):
    """A CSV with path,label,patient_id[,source,view] (extra columns kept).

    Relative paths are taken from `root`, or from the CSV's own folder when no root is given.
    """

    def __init__(self, path: str | Path, root: str | Path | None = None, name: str = "manifest", view: str = "PA") -> None:
        self.path = Path(path).expanduser()
        self.listing = str(self.path)
        self.root = Path(root).expanduser() if root is not None else self.path.parent
        self.name = name
        self.view = view

    def frame(self) -> pd.DataFrame:
        frame = read_listing(existing_file(self.path, "manifest"), "manifest")
        for column in ("path", "label", "patient_id"):
            _first_column(frame, [column], self.path)
        frame["path"] = frame["path"].map(lambda p: p if os.path.isabs(p) else str(self.root / p))
        if "lung_mask" in frame.columns:
            frame["lung_mask"] = frame["lung_mask"].map(lambda p: p if not p or os.path.isabs(p) else str(self.root / p))
        if "source" not in frame.columns:
            frame["source"] = self.name
        if "view" not in frame.columns:
            frame["view"] = self.view
        frame["patient_id"] = frame["patient_id"].replace("", np.nan)
        return frame


class FolderSource(FileSource):
    """Class folders: `root/covid/*` and `root/no_finding/*`.

    Each file is its own patient (its stem) unless `patients` names a CSV with
    columns file,patient_id (file relative to root, e.g. `covid/a.png`). With no CSV listing the
    images, `source_line` is the file's place (from 1) among all its files sorted by that name.
    """

    def __init__(self, root: str | Path, name: str = "folders", view: str = "PA", patients: str | Path | None = None) -> None:
        self.root = _existing_dir(root, name)
        self.listing = f"{self.root} (sorted file list)"
        self.name = name
        self.view = view
        self.patients = Path(patients).expanduser() if patients else None

    def frame(self) -> pd.DataFrame:
        rows = []
        for label in LABELS:
            folder = self.root / label
            if folder.is_dir():
                for path in sorted(folder.rglob("*")):
                    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                        rows.append({"path": str(path), "label": label, "patient_id": f"{self.name}:{path.stem}",
                                     "source": self.name, "view": self.view, "file": str(path.relative_to(self.root))})
        if not rows:
            raise SourceError(f"{self.root} has no images in {' or '.join(f'{l}/' for l in LABELS)}")
        frame = pd.DataFrame(rows)
        frame["source_line"] = 1 + np.argsort(np.argsort(frame["file"].to_numpy(), kind="stable"))
        if self.patients is not None:
            table = pd.read_csv(existing_file(self.patients, f"{self.name}.patients"), dtype=str)
            mapping = dict(zip(table["file"], table["patient_id"]))
            frame["patient_id"] = frame["file"].map(lambda f: f"{self.name}:{mapping[f]}" if f in mapping else np.nan)
        return frame
