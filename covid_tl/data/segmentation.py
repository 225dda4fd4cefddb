"""Films with lung masks for task=segment: any sources whose rows carry a mask, read once at
setup (bad files found there), kept in memory at the segmenter's input size, split by patient
within each source, served as (standardised film, mask) pairs.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from covid_tl.data.datamodule import DataSource, EpochShuffle
from covid_tl.data.dataset import SeededAugmentation
from covid_tl.data.images import ImageReadError
from covid_tl.data.manifest import Manifest
from covid_tl.data.split import SPLITS, split_by_patient
from covid_tl.data.summary import data_summary
from covid_tl.data.validate import ON_BAD, find_bad_rows, find_undecodable, report_bad_rows, write_bad_rows
from covid_tl.core.errors import ConfigError
from covid_tl.preprocess.lung_mask import resize_to, segmenter_input

log = logging.getLogger(__name__)


class LungMaskDataset(Dataset):
    """(float32 (1, S, S) standardised film, float32 (1, S, S) mask) pairs; augmented when given
    a pipeline, which moves the mask with the film."""

    def __init__(self, images: list[np.ndarray], masks: list[np.ndarray], augmentation: A.Compose | None = None) -> None:
        self.images, self.masks = images, masks
        self.augment = SeededAugmentation(augmentation) if augmentation is not None else None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.images[i], self.masks[i].astype(np.uint8)
        if self.augment is not None:
            out = self.augment.apply(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        return torch.from_numpy(segmenter_input(image)[None]), torch.from_numpy(mask[None].astype(np.float32))


def masked_rows(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """The rows of one source that have a lung mask: a non-empty `lung_mask` where the source
    lists masks, every row where it makes them (phantoms know their lungs)."""
    if "lung_mask" not in frame.columns:
        return frame
    has = frame["lung_mask"].fillna("").astype(str) != ""
    if not has.all():
        log.info("%s: %d of %d images have a lung mask; the others are left out", name, int(has.sum()), len(frame))
    return frame[has]


class LungMaskDataModule(pl.LightningDataModule):
    """Every masked film of `sources`, split by patient within each source (so each source
    is in every split), at the segmenter's `image_size`.

    Arguments are the keys of conf/data/lung_masks.yaml plus `image_size` and `augmentation`,
    which the segmenter and augment configs decide. Masks that mark no lung are left out.
    """

    def __init__(self, sources: Mapping[str, DataSource | None], image_size: int, augmentation: A.Compose | None = None,
                 val_fraction: float = 0.15, test_fraction: float = 0.2, split_seed: int = 0, on_bad: str = "raise",
                 batch_size: int = 8, num_workers: int = 0) -> None:
        super().__init__()
        self.sources = {name: source for name, source in sources.items() if source is not None}
        if not self.sources:
            raise ConfigError("data.sources is empty: name at least one source with lung masks")
        if on_bad not in ON_BAD:
            raise ConfigError(f"unknown data.on_bad {on_bad!r}; valid: {', '.join(ON_BAD)}")
        if val_fraction <= 0:
            raise ConfigError("data.val_fraction must be positive: checkpoints are chosen on the validation split")
        self.image_size, self.augmentation = image_size, augmentation
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed
        self.on_bad, self.batch_size, self.num_workers = on_bad, batch_size, num_workers
        self.frame: pd.DataFrame | None = None  # the usable rows with `split`
        self.bad_rows = pd.DataFrame()
        self._pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def read_pair(self, row: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 film, bool mask) of a row at full size; ImageReadError when they do not fit."""
        source = self.sources[row["reader"]]
        image, mask = source.load_image(row), source.load_lung_mask(row)
        if mask is None:
            raise ImageReadError(f"{row['path']}: no lung mask")
        if mask.shape != image.shape:
            raise ImageReadError(f"{row['path']}: lung mask is {mask.shape[1]}x{mask.shape[0]} but the image "
                                 f"{image.shape[1]}x{image.shape[0]}")
        return image, mask

    def _keep_small(self, row: Mapping[str, Any]) -> None:
        image, mask = self.read_pair(row)
        self._pairs[str(row["path"])] = (resize_to(image, self.image_size), resize_to(mask, self.image_size))

    def setup(self, stage: str | None = None) -> None:
        if self.frame is not None:  # Lightning calls setup again for validate and test
            return
        frame = pd.concat([masked_rows(s.frame(), name).assign(reader=name) for name, s in self.sources.items()],
                          ignore_index=True)
        listings = {name: getattr(s, "listing", name) for name, s in self.sources.items()}
        reads_files = frame["reader"].map(lambda name: bool(self.sources[name].reads_files)).to_numpy()
        bad = find_bad_rows(frame, reads_files, listings)
        todo = np.setdiff1d(np.arange(len(frame)), bad["row"].to_numpy())
        bad = pd.concat([bad, find_undecodable(frame, todo, self._keep_small, listings)], ignore_index=True)
        self.bad_rows = bad.sort_values("row").drop(columns="row").reset_index(drop=True)
        report_bad_rows(bad, len(frame), self.on_bad)
        usable = frame.drop(index=bad["row"].to_numpy()).reset_index(drop=True)
        empty = usable["path"].astype(str).map(lambda p: not self._pairs[p][1].any())
        if empty.any():
            log.info("%d lung mask(s) mark no lung and are left out, e.g. %s", int(empty.sum()), usable.loc[empty, "path"].iloc[0])
        usable = usable[~empty].reset_index(drop=True)
        if usable.empty:
            raise ConfigError("no film with a lung mask in data.sources")
        self.frame = usable.assign(split=self._split(Manifest(usable)))
        for split in ("train", "val"):
            if not (self.frame["split"] == split).any():
                raise ConfigError(f"the {split} split is empty: use more data or other data.val_fraction/test_fraction")

    def _split(self, manifest: Manifest) -> np.ndarray:
        """Patient-grouped splits made within each source, so a small source is in every split."""
        names = np.empty(len(manifest), dtype=object)
        for _, rows in manifest.frame.groupby("source").indices.items():
            names[rows] = split_by_patient(manifest.subset(rows), self.val_fraction, self.test_fraction, self.split_seed)
        return names

    def rows(self, split: str) -> list[dict[str, Any]]:
        if self.frame is None:
            raise RuntimeError("call setup() first")
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
        return self.frame[self.frame["split"] == split].to_dict("records")

    def dataset(self, split: str, train: bool = False) -> LungMaskDataset:
        pairs = [self._pairs[str(row["path"])] for row in self.rows(split)]
        return LungMaskDataset([p[0] for p in pairs], [p[1] for p in pairs], self.augmentation if train else None)

    def write_data_files(self, run_dir: Path) -> dict[str, Any]:
        """splits.csv, data_summary.json's content (returned) and bad_rows.csv where there are any."""
        self.frame.to_csv(run_dir / "splits.csv", index=False)
        if len(self.bad_rows):
            write_bad_rows(self.bad_rows, run_dir)
        return data_summary(self.frame, skipped=len(self.bad_rows))

    def _loader(self, split: str, train: bool = False) -> DataLoader:
        dataset = self.dataset(split, train)
        return DataLoader(dataset, batch_size=self.batch_size, num_workers=self.num_workers,
                          sampler=EpochShuffle(len(dataset), self.split_seed) if train else None,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")
