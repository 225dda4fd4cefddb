"""External sets (evaluate.py `external=[...]`): manifest CSVs evaluated in full, each named by
its path, and how many of their patients the checkpoint was trained or tuned on.

Sets are named by the shortest tail of their path that no other set shares
(`external:xray-views/manifest.csv` beside `external:xray-mini/manifest.csv`): a file's stem
alone would let one set overwrite another of the same name without a word.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import Any

import pandas as pd
from torch.utils.data import Dataset

from covid_tl.data.dataset import PreparedImages, XrayDataset
from covid_tl.data.images import MAX_MEGAPIXELS
from covid_tl.data.manifest import Manifest
from covid_tl.data.sources import ManifestSource
from covid_tl.data.validate import drop_bad_rows, find_bad_rows, find_undecodable
from covid_tl.core.errors import ConfigError

log = logging.getLogger(__name__)

PREFIX = "external:"


def external_names(paths: str | Sequence[str]) -> dict[str, str]:
    """Path as given -> set name, the shortest path tail telling the sets apart; the same file
    listed twice (however spelled, links followed) is refused. One path may come bare
    (`external=a.csv`)."""
    paths = [paths] if isinstance(paths, str) else [str(p) for p in paths]
    seen: dict[Path, str] = {}
    for path in paths:
        real = Path(path).expanduser().resolve()
        if real in seen:
            raise ConfigError(f"external lists the file {real} twice ({seen[real]} and {path}): name each set once")
        seen[real] = str(path)
    parts = [Path(os.path.abspath(Path(p).expanduser())).parts for p in paths]
    return {str(p): PREFIX + _shortest_tail(own, [o for o in parts if o is not own]) for p, own in zip(paths, parts)}


def _shortest_tail(own: tuple[str, ...], others: list[tuple[str, ...]]) -> str:
    """The fewest trailing parts of `own` that are not the trailing parts of any of `others`
    (the whole path where every tail is shared)."""
    for k in range(1, len(own) + 1):
        if all(other[-k:] != own[-k:] for other in others):
            return str(PurePath(*own[-k:]))
    return str(PurePath(*own))


def external_set(path: str, name: str, prepare_with: PreparedImages, spec: Any, on_bad: str = "raise",
                 max_megapixels: float = MAX_MEGAPIXELS) -> tuple[Manifest, Dataset, pd.DataFrame]:
    """A manifest CSV evaluated in full with the checkpoint's preprocessing, and the rows left
    out (on_bad=skip; bad_rows.csv's columns); bad rows are named by the CSV's path and line,
    and raise or are skipped as `on_bad` says."""
    source = ManifestSource(path, name=Path(path).stem)
    frame = source.frame().assign(reader=name)
    listings = {name: source.listing}
    bad = find_bad_rows(frame, max_megapixels=max_megapixels, listings=listings)
    frame = drop_bad_rows(frame, bad, on_bad)
    prepare = PreparedImages(source.load_image, prepare_with.preprocess, prepare_with.cache, lambda row: True)
    # Every image decoded now, as training's setup does, so nothing fails mid-evaluation.
    undecodable = find_undecodable(frame, range(len(frame)), prepare.check, listings)
    manifest = Manifest(drop_bad_rows(frame, undecodable, on_bad))
    skipped = pd.concat([bad, undecodable], ignore_index=True).drop(columns="row")
    return manifest, XrayDataset(manifest, prepare, spec), skipped


def shared_patients(films: Manifest, train: Manifest, val: Manifest) -> tuple[set[str], set[str]]:
    """(patients of `films` in the train split, those in val). Patients match by patient_id, as
    the split groups them (sources prefix their ids with their name, so ids of different
    sources differ)."""
    ids = set(films.frame["patient_id"].astype(str))
    return ids & set(train.frame["patient_id"].astype(str)), ids & set(val.frame["patient_id"].astype(str))


def patient_overlap(name: str, external: Manifest, train: Manifest, val: Manifest) -> dict[str, int]:
    """{train_patients, val_patients, images}: the external set's patients the checkpoint was
    trained on, those its operating point was chosen on (val), and the set's images of either;
    a warning names them (shared_patients)."""
    ids = external.frame["patient_id"].astype(str)
    in_train, in_val = shared_patients(external, train, val)
    block = {"train_patients": len(in_train), "val_patients": len(in_val),
             "images": int(ids.isin(in_train | in_val).sum())}
    if in_train or in_val:
        log.warning("%s shares %d of its %d patients (%d of its %d images) with the checkpoint's data: %d in its "
                    "train split, %d in val (which chose the checkpoint and any threshold rule's cut); its metrics are "
                    "not those of unseen patients", name, len(in_train | in_val), ids.nunique(), block["images"], len(ids),
                    block["train_patients"], block["val_patients"])
    return block
