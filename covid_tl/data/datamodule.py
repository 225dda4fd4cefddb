"""LightningDataModule over one or more data sources combined into one Manifest."""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import albumentations as A
import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Sampler

from covid_tl.data.dataset import PreparedImages, WatermarkTransplant, XrayDataset
from covid_tl.data.manifest import Manifest
from covid_tl.data.sampling import balance_no_finding, cell_balanced_weights
from covid_tl.data.split import SPLITS, assign_splits
from covid_tl.data.summary import data_summary
from covid_tl.data.images import MAX_MEGAPIXELS, ImageReadError
from covid_tl.data.validate import find_bad_rows, find_undecodable, report_bad_rows, write_bad_rows
from covid_tl.preprocess.model_input import InputSpec
from covid_tl.preprocess.cache import PreprocessCache, config_digest
from covid_tl.preprocess.watermark import Stamp, bank_summary, build_bank, load_bank, save_bank
from covid_tl.preprocess.pipeline import Preprocess, identity
from covid_tl.core.errors import ConfigError

log = logging.getLogger(__name__)


def default_num_workers(cuda: bool | None = None) -> int:
    """DataLoader workers for `num_workers: auto`: min(cores - 1, 8) when CUDA trains, and 0 on
    the CPU, where workers compete with the model for the same cores (no clear gain measured,
    docs/benchmarks.md) and forking after threads exist can deadlock."""
    if not (torch.cuda.is_available() if cuda is None else cuda):
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(0, min(cores - 1, 8))


class DataSource(Protocol):
    """What a data source provides: a raw table of its images, and a way to read one."""

    reads_files: bool

    def frame(self) -> pd.DataFrame: ...

    def load_image(self, row: Mapping[str, Any]) -> np.ndarray: ...


class EpochShuffle(Sampler[int]):
    """A shuffle that depends only on (seed, epoch), so a run resumed from a checkpoint sees
    the same batches as one that never stopped (Lightning calls set_epoch every epoch)."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.size).tolist())

    def __len__(self) -> int:
        return self.size


class EpochWeightedDraw(Sampler[int]):
    """`len(weights)` rows drawn with replacement by `weights`, depending only on (seed, epoch)
    like EpochShuffle (a resumed run draws what an uninterrupted one would)."""

    def __init__(self, weights: np.ndarray, seed: int) -> None:
        self.p = np.asarray(weights, dtype=np.float64) / np.sum(weights)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        return iter(rng.choice(len(self.p), size=len(self.p), replace=True, p=self.p).tolist())

    def __len__(self) -> int:
        return len(self.p)


class ReadsFiles:
    """Whether a row's image is a file (picklable, for DataLoader workers)."""

    def __init__(self, sources: Mapping[str, DataSource]) -> None:
        self.flags = {name: bool(source.reads_files) for name, source in sources.items()}

    def __call__(self, row: Mapping[str, Any]) -> bool:
        return self.flags[row["reader"]]


class XrayDataModule(pl.LightningDataModule):
    """Combines sources, checks every image, balances, splits by patient, serves loaders.

    Setup decodes every file the run uses (see validate.py), so nothing fails after it;
    `bad_rows` lists what it found (the caller writes it as bad_rows.csv).

    `input_spec` and `preprocess` come from the backbone and preprocessing configs, not the
    data config, so switching backbone needs no data change. Evaluation sets are the splits
    plus any held-out extra set (`extra_no_finding`).
    """

    def __init__(
        self,
        sources: Mapping[str, DataSource],
        input_spec: InputSpec,
        preprocess: Preprocess = identity,
        augmentation: A.Compose | None = None,
        watermark: Mapping[str, Any] | None = None,
        cache: PreprocessCache | None = None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        split_seed: int = 0,
        num_folds: int | None = None,
        fold: int = 0,
        holdout_source: str | None = None,
        fold_split: str = "test",
        holdout_view: str | None = None,
        balance: bool = False,
        balance_views: bool = False,
        extra_no_finding: int = 0,
        sample_seed: int = 0,
        on_bad: str = "raise",
        max_megapixels: float = MAX_MEGAPIXELS,
        batch_size: int = 32,
        num_workers: int | str = "auto",
        pin_memory: bool | str = "auto",
    ) -> None:
        super().__init__()
        if not sources:
            raise ConfigError("data.sources is empty: name at least one source")
        if val_fraction <= 0:
            raise ConfigError("val_fraction must be positive: checkpoints are chosen on the validation split")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        if not max_megapixels > 0:
            raise ConfigError(f"data.max_megapixels must be positive, got {max_megapixels}")
        if num_workers != "auto" and not (isinstance(num_workers, int) and num_workers >= 0):
            raise ConfigError(f"num_workers must be 'auto' or a count >= 0, got {num_workers!r}")
        if extra_no_finding and not balance:
            raise ConfigError("data.extra_no_finding needs data.balance=true (it is what balancing leaves over)")
        self.sources = dict(sources)
        self.input_spec = input_spec
        self.augmentation = augmentation
        self.watermark_options = dict(watermark or {})
        self.watermark: WatermarkTransplant | None = None
        self.prepared = PreparedImages(self.load_image, preprocess, cache, ReadsFiles(self.sources))
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.num_folds = num_folds
        self.fold = fold
        self.holdout_source = holdout_source
        self.fold_split = fold_split
        self.holdout_view = holdout_view
        self.balance = balance
        self.balance_views = balance_views
        self.extra_no_finding = extra_no_finding
        self.sample_seed = sample_seed
        self.on_bad = on_bad
        self.max_megapixels = max_megapixels
        self.batch_size = batch_size
        self.num_workers = default_num_workers() if num_workers == "auto" else num_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory == "auto" else bool(pin_memory)
        self.manifest: Manifest | None = None
        self.split_names: np.ndarray | None = None
        self.extra_sets: dict[str, Manifest] = {}
        self.bad_rows = pd.DataFrame()

    def _read_sources(self) -> pd.DataFrame:
        frames = [source.frame().assign(reader=name) for name, source in self.sources.items()]
        return pd.concat(frames, ignore_index=True)

    def setup(self, stage: str | None = None) -> None:
        if self.manifest is not None:
            return
        manifest, self.extra_sets = self._checked_selection(self._read_sources())
        self.split_names = assign_splits(
            manifest, self.val_fraction, self.test_fraction, self.split_seed, self.num_folds, self.fold,
            self.holdout_source, self.fold_split, self.holdout_view,
        )
        self.manifest = manifest
        for split in ("train", "val"):
            counts = self.subset(split).counts()
            if min(counts.values()) == 0:
                raise ConfigError(f"the {split} split has no image of some class ({counts}); use more data")
        if self.watermark_options.get("p", 0) > 0:
            options = dict(self.watermark_options)
            bank = self._watermark_bank(options.pop("max_area_fraction"), options.pop("max_side_fraction"))
            self.watermark = WatermarkTransplant(bank, **options)

    def _select(self, usable: pd.DataFrame) -> tuple[Manifest, dict[str, Manifest]]:
        """The rows a run uses: all usable ones, or a balanced sample plus the extra set."""
        manifest = Manifest(usable.reset_index(drop=True))
        if not self.balance:
            return manifest, {}
        manifest, extra = balance_no_finding(manifest, self.extra_no_finding, self.sample_seed)
        return manifest, ({"extra_no_finding": extra} if self.extra_no_finding else {})

    def _checked_selection(self, frame: pd.DataFrame) -> tuple[Manifest, dict[str, Manifest]]:
        """The selection from rows that pass the cheap checks, each of its files decoded.

        Only selected files are decoded (under balance a few hundred of NIH's 39,000). Under
        on_bad=skip a file that fails is dropped and the selection made again; files it then
        picks are decoded in turn.
        """
        listings = {name: getattr(source, "listing", name) for name, source in self.sources.items()}
        reads_files = frame["reader"].map(lambda name: bool(self.sources[name].reads_files)).to_numpy()
        bad = find_bad_rows(frame, reads_files, listings, self.max_megapixels)
        decoded = np.zeros(len(frame), bool)
        while True:
            usable = np.ones(len(frame), bool)
            usable[bad["row"].to_numpy()] = False
            manifest, extra = self._select(frame[usable])
            position = pd.Series(np.flatnonzero(usable), index=frame.loc[usable, "path"].to_numpy())
            chosen = position[pd.concat([manifest.frame, *(e.frame for e in extra.values())])["path"]].to_numpy()
            todo = chosen[reads_files[chosen] & ~decoded[chosen]]
            new = find_undecodable(frame, todo, self._read_files, listings)
            decoded[todo] = True
            bad = pd.concat([bad, new], ignore_index=True)
            if new.empty or self.on_bad == "raise":
                break
        self.bad_rows = bad.sort_values("row").drop(columns="row").reset_index(drop=True)
        report_bad_rows(bad, len(frame), self.on_bad)
        return manifest, extra

    def _read_files(self, row: Mapping[str, Any]) -> None:
        """Read a row's files as the epochs and the Grad-CAM callback will (ImageReadError if not)."""
        self.prepared.check(row, self.input_spec.size)
        try:
            self.load_lung_mask(row)
        except ImageReadError as error:
            raise ImageReadError(f"lung mask {error}") from None

    def _watermark_bank(self, max_area_fraction: float, max_side_fraction: float) -> list[Stamp]:
        """Marks cut from the COVID-19 training images (as preprocessed), cached on disk."""
        covid = self.subset("train").frame.query("label == 'covid'").to_dict("records")
        cache = self.prepared.cache
        path = None
        if cache is not None:
            keys = [cache.file_key(r["path"]) if self.prepared.reads_files(r) else str(r["path"]) for r in covid]
            digest = config_digest({"images": keys, "area": max_area_fraction, "side": max_side_fraction})
            path = cache.directory / f"watermark_bank_{digest}.npz"
            if path.is_file():
                return load_bank(path)
        bank = build_bank((self.prepared(r).image for r in covid), max_area_fraction=max_area_fraction,
                          max_side_fraction=max_side_fraction, names=[str(r["path"]) for r in covid])
        log.info("watermark bank: %d marks from %d COVID-19 training images", len(bank), len(covid))
        if not bank:
            log.warning("no marks found in the COVID-19 training images: nothing to transplant")
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_bank(bank, path)
        return bank

    @property
    def held_out(self) -> tuple[str | None, str]:
        """(value, column) a leave-one-out run tests on: (None, "source") without one."""
        return (self.holdout_view, "view") if self.holdout_view is not None else (self.holdout_source, "source")

    @property
    def eval_sets(self) -> list[str]:
        """Names of everything that can be evaluated: the splits, then extra sets."""
        return [*SPLITS, *self.extra_sets]

    def subset(self, name: str) -> Manifest:
        """The manifest of a split or an extra set."""
        if self.manifest is None or self.split_names is None:
            raise RuntimeError("call setup() first")
        if name in self.extra_sets:
            return self.extra_sets[name]
        if name not in SPLITS:
            raise ConfigError(f"unknown split {name!r}; valid: {', '.join(self.eval_sets)}")
        return self.manifest.subset(np.flatnonzero(self.split_names == name))

    def splits_frame(self) -> pd.DataFrame:
        """One row per image used: the manifest's columns plus `split` (what splits.csv holds)."""
        if self.manifest is None:
            raise RuntimeError("call setup() first")
        frames = [self.manifest.frame.assign(split=self.split_names)]
        frames += [extra.frame.assign(split=name) for name, extra in self.extra_sets.items()]
        return pd.concat(frames, ignore_index=True)

    def write_data_files(self, run_dir: Path) -> dict[str, Any]:
        """splits.csv, data_summary.json and (if any) bad_rows.csv; returns the summary."""
        frame = self.splits_frame()
        frame.to_csv(run_dir / "splits.csv", index=False)
        summary = data_summary(frame, skipped=len(self.bad_rows))
        if self.watermark is not None:
            summary["watermark_bank"] = bank_summary(self.watermark.bank)
        if len(self.bad_rows):
            write_bad_rows(self.bad_rows, run_dir)
        return summary

    def films(self, source: str | None = None) -> tuple[Manifest, XrayDataset]:
        """Every usable film of the sources (of those whose `source` column is `source`, chosen
        before any file is decoded), checked as setup checks them (what was left out in
        `bad_rows`) and not split: a set a trained model is run on whole (calibrate_site.py)."""
        frame = self._read_sources()
        if source is not None:
            present = sorted(frame["source"].astype(str).unique())
            if str(source) not in present:
                raise ConfigError(f"source={source}: the data has no such source; it has {', '.join(present)}")
            frame = frame[frame["source"].astype(str) == str(source)].reset_index(drop=True)
        manifest, _ = self._checked_selection(frame)
        return manifest, XrayDataset(manifest, self.prepared, self.input_spec)

    def load_image(self, row: Mapping[str, Any]) -> np.ndarray:
        return self.sources[row["reader"]].load_image(row)

    def load_lung_mask(self, row: Mapping[str, Any]) -> np.ndarray | None:
        """The row's lung mask where its source has one (for CAM scores), else None."""
        loader = getattr(self.sources[row["reader"]], "load_lung_mask", None)
        return loader(row) if loader is not None else None

    def dataset(self, name: str, train: bool = False) -> XrayDataset:
        """A split or extra set as (image, target) pairs; augmented only when `train`."""
        return XrayDataset(self.subset(name), self.prepared, self.input_spec,
                           self.augmentation if train else None, self.watermark if train else None)

    def train_sampler(self, name: str = "train") -> Sampler[int]:
        """Every film once per epoch in a seeded order, or with `balance_views` a seeded draw of
        as many films in which each (label, view) cell present weighs the same."""
        if not self.balance_views:
            return EpochShuffle(len(self.subset(name)), self.split_seed)
        return EpochWeightedDraw(cell_balanced_weights(self.subset(name).frame), self.split_seed)

    def dataloader(self, name: str, train: bool = False) -> DataLoader:
        dataset = self.dataset(name, train)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=self.train_sampler(name) if train else None,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self.dataloader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self.dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self.dataloader("test")
