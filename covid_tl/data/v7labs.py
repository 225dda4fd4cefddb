"""Cohen's covid-chestxray-dataset as published, paired with the v7labs lung masks that
torchxrayvision ships as package data (`semantic_masks_v7labs_lungs.zip`), matched by file name.

The masks are the images' own size, white (255) lung on black; a few pixels carry 127 at
the edges, which torchxrayvision counts as background, and so does this reader.
"""
from __future__ import annotations

import logging
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np
import pandas as pd

from covid_tl.data.images import ImageReadError
from covid_tl.data.sources import CohenSource, FileSource, SourceError, existing_file

log = logging.getLogger(__name__)

V7LABS_ZIP = "semantic_masks_v7labs_lungs.zip"


def torchxrayvision_masks() -> Path:
    """The v7labs lung masks inside the installed torchxrayvision package."""
    try:
        import torchxrayvision
    except ImportError:
        raise SourceError("the v7labs lung masks ship with torchxrayvision: pip install 'covid-tl[xrv]' "
                          "(or give the zip as `masks`)") from None
    return Path(torchxrayvision.__file__).parent / "data" / V7LABS_ZIP


def mask_members(path: Path) -> dict[str, str]:
    """File name -> zip member of every mask in the archive."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile) as error:
        raise SourceError(f"v7labs masks {str(path)!r}: {error}") from None
    return {PurePosixPath(n).name: n for n in names if not n.endswith("/")}


class CohenV7LabsLungs(FileSource):
    """Cohen-layout images that have a v7labs lung mask; the others are left out (one info line).

    The arguments are CohenSource's (frontal views and both labels by default, as a lung
    segmenter wants every frontal film) plus `masks`, the zip (default: torchxrayvision's).
    Keep `name` equal to the name other Cohen-derived data uses ("cohen", as xray-mini does):
    patient ids are `<name>:<patientid>`, and a shared id keeps one patient in one split.
    """

    def __init__(self, root: str | Path, name: str = "cohen", metadata: str = "metadata.csv",
                 views: Sequence[str] | str | None = ("PA", "AP", "AP Supine"), modality: str | None = "X-ray",
                 findings: Mapping[str, str] | None = None, images_dir: str = "images",
                 masks: str | Path | None = None) -> None:
        findings = findings if findings is not None else {"COVID-19": "covid", "No Finding": "no_finding"}
        self.cohen = CohenSource(root, name, metadata, views, modality, findings, images_dir)
        self.name, self.listing = name, self.cohen.listing
        self.masks = Path(masks).expanduser() if masks is not None else torchxrayvision_masks()
        existing_file(self.masks, f"{name}: v7labs masks file", ".zip")

    def frame(self) -> pd.DataFrame:
        frame = self.cohen.frame()
        members = mask_members(self.masks)
        frame["lung_mask"] = frame["path"].map(lambda p: members.get(Path(p).name, ""))
        matched = frame["lung_mask"] != ""
        log.info("%s: %d of %d listed images have a v7labs lung mask", self.name, int(matched.sum()), len(frame))
        return frame[matched].reset_index(drop=True)

    def load_lung_mask(self, row: Mapping[str, Any]) -> np.ndarray | None:
        """The row's mask from the zip (opened per call: safe in threads and DataLoader workers)."""
        member = row.get("lung_mask")
        if not member:
            return None
        with zipfile.ZipFile(self.masks) as archive:
            data = np.frombuffer(archive.read(member), np.uint8)
        mask = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
        if mask is None:
            raise ImageReadError(f"{self.masks}:{member}: not a readable mask")
        return mask == 255
