"""LightningDataModule over any data source that yields a Manifest and loads its images."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pytorch_lightning as pl
from torch.utils.data import DataLoader

from covid_tl.data.dataset import XrayDataset
from covid_tl.data.manifest import Manifest
from covid_tl.data.split import SPLITS, split_by_patient
from covid_tl.models.spec import InputSpec
from covid_tl.preprocess.pipeline import Preprocess, identity


class DataSource(Protocol):
    """What a data source provides: the table of images, and a way to read one."""

    def manifest(self) -> Manifest: ...

    def load_image(self, row: Mapping[str, Any]) -> np.ndarray: ...


class XrayDataModule(pl.LightningDataModule):
    """Splits a source's manifest by patient and serves train/val/test loaders.

    `input_spec` and `preprocess` come from the backbone and preprocessing configs, not the
    data config, so switching backbone needs no data change.
    """

    def __init__(
        self,
        source: DataSource,
        input_spec: InputSpec,
        preprocess: Preprocess = identity,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        split_seed: int = 0,
        batch_size: int = 32,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        if val_fraction <= 0:
            raise ValueError("val_fraction must be positive: checkpoints are chosen on the validation split")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.source = source
        self.input_spec = input_spec
        self.preprocess = preprocess
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.manifest: Manifest | None = None
        self.split_names: np.ndarray | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.manifest is not None:
            return
        manifest = self.source.manifest()
        self.split_names = split_by_patient(manifest, self.val_fraction, self.test_fraction, self.split_seed)
        self.manifest = manifest
        for split in ("train", "val"):
            counts = self.split_manifest(split).counts()
            if min(counts.values()) == 0:
                raise ValueError(f"the {split} split has no image of some class ({counts}); use more data")

    def split_manifest(self, split: str) -> Manifest:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
        if self.manifest is None or self.split_names is None:
            raise RuntimeError("call setup() before asking for a split")
        return self.manifest.subset(np.flatnonzero(self.split_names == split))

    def splits_frame(self):
        """One row per image: the manifest's columns plus its split (what splits.csv holds)."""
        if self.manifest is None:
            raise RuntimeError("call setup() before asking for the splits")
        return self.manifest.frame.assign(split=self.split_names)

    def write_splits(self, path: str | Path) -> None:
        self.splits_frame().to_csv(path, index=False)

    def dataloader(self, split: str, shuffle: bool = False) -> DataLoader:
        dataset = XrayDataset(self.split_manifest(split), self.source.load_image, self.input_spec, self.preprocess)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self.dataloader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self.dataloader("test")
