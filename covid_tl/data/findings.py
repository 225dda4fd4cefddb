"""ChestX-ray14's 14 findings for task=pretrain: read as published, bad images refused, split by
patient, served as (image, 14 targets) batches."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from covid_tl.data.datamodule import EpochShuffle, default_num_workers
from covid_tl.data.images import read_xray
from covid_tl.data.sources import NIHSource
from covid_tl.core.labels import NIH_FINDINGS
from covid_tl.data.validate import ON_BAD, drop_bad_rows, find_undecodable
from covid_tl.core.errors import ConfigError
from covid_tl.preprocess.model_input import InputSpec, to_model_input

log = logging.getLogger(__name__)


class FindingsDataset(Dataset):
    def __init__(self, frame: pd.DataFrame, spec: InputSpec) -> None:
        self.paths = frame["path"].tolist()
        self.targets = torch.tensor(frame[list(NIH_FINDINGS)].to_numpy(), dtype=torch.float32)
        self.spec = spec

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return torch.from_numpy(np.ascontiguousarray(to_model_input(read_xray(self.paths[i]), self.spec))), self.targets[i]


def usable_rows(frame: pd.DataFrame, on_bad: str) -> pd.DataFrame:
    """The rows whose image decodes, checked as classification checks them (every file decoded
    before training, so nothing fails mid-epoch); bad ones raise or are skipped as `on_bad` says."""
    frame = frame.reset_index(drop=True)
    bad = find_undecodable(frame, range(len(frame)), lambda row: read_xray(row["path"]))
    return drop_bad_rows(frame, bad, on_bad)


def split_patients(frame: pd.DataFrame, val_fraction: float, seed: int) -> np.ndarray:
    """True for validation rows: a seeded `val_fraction` of patients (at least one)."""
    patients = np.array(sorted(frame["patient_id"].unique()), dtype=object)
    np.random.default_rng(seed).shuffle(patients)
    val = set(patients[: max(1, int(round(val_fraction * len(patients))))])
    return frame["patient_id"].isin(val).to_numpy()


class FindingsDataModule(pl.LightningDataModule):
    """Every image of `views` with its 14 findings; a seeded `val_fraction` of patients validates.

    Arguments are the keys of conf/data/nih14.yaml plus `input_spec`, which the backbone decides.
    Files are checked in `setup`, so a bad image stops the run before training starts.
    """

    def __init__(
        self,
        input_spec: InputSpec,
        root: str | Path,
        metadata: str = "Data_Entry_2017.csv",
        views: Sequence[str] | None = ("PA", "AP"),
        val_fraction: float = 0.1,
        split_seed: int = 0,
        on_bad: str = "raise",
        batch_size: int = 32,
        num_workers: int | str = "auto",
    ) -> None:
        super().__init__()
        if on_bad not in ON_BAD:
            raise ConfigError(f"unknown data.on_bad {on_bad!r}; valid: {', '.join(ON_BAD)}")
        if not 0 < val_fraction < 1:
            raise ConfigError(f"data.val_fraction must be in (0, 1), got {val_fraction}")
        self.input_spec = input_spec
        self.root, self.metadata, self.views = root, metadata, views
        self.val_fraction, self.split_seed, self.on_bad = val_fraction, split_seed, on_bad
        self.batch_size = batch_size
        self.num_workers = default_num_workers() if num_workers == "auto" else int(num_workers)
        self.pin_memory = torch.cuda.is_available()
        self.frame: pd.DataFrame | None = None  # the usable rows with their `split`

    def setup(self, stage: str | None = None) -> None:
        if self.frame is not None:  # Lightning calls setup again for validate
            return
        source = NIHSource(self.root, metadata=self.metadata, views=self.views)
        frame = usable_rows(source.findings_frame(), self.on_bad)
        is_val = split_patients(frame, self.val_fraction, self.split_seed)
        self.frame = frame.assign(split=np.where(is_val, "val", "train"))
        log.info("NIH findings: %d training and %d validation images", *self.sizes().values())

    def sizes(self) -> dict[str, int]:
        return {split: int((self.frame["split"] == split).sum()) for split in ("train", "val")}

    def write_splits(self, path: Path) -> None:
        self.frame.to_csv(path, index=False)

    def dataset(self, split: str) -> FindingsDataset:
        return FindingsDataset(self.frame[self.frame["split"] == split], self.input_spec)

    def train_dataloader(self) -> DataLoader:
        dataset = self.dataset("train")
        return DataLoader(dataset, batch_size=self.batch_size, num_workers=self.num_workers,
                          sampler=EpochShuffle(len(dataset), self.split_seed), pin_memory=self.pin_memory,
                          persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset("val"), batch_size=self.batch_size, num_workers=self.num_workers,
                          pin_memory=self.pin_memory, persistent_workers=self.num_workers > 0)
