"""The frozen fast path: when nothing before the head trains and training images are not
augmented, every image's backbone features are computed once and the head trains on them.
"""
from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from covid_tl.data.datamodule import EpochShuffle, XrayDataModule
from covid_tl.data.split import SPLITS

log = logging.getLogger(__name__)


def fast_path_blocker(net: nn.Module, datamodule: XrayDataModule) -> str | None:
    """Why the fast path cannot stand in for training on images here, or None when it can."""
    if any(p.requires_grad for p in net.features.parameters()):
        return "part of the backbone trains"
    if datamodule.augmentation is not None or datamodule.watermark is not None:
        return "training images are augmented"
    if any(isinstance(m, nn.Dropout) for m in net.features.modules()):
        return "the frozen layers hold dropout, which changes features from epoch to epoch"
    return None


@torch.inference_mode()
def extract(features: nn.Module, loader: DataLoader, device: torch.device) -> TensorDataset:
    out, targets = [], []
    for images, target in loader:
        out.append(features(images.to(device)).float().cpu())
        targets.append(target)
    return TensorDataset(torch.cat(out), torch.cat(targets))


class FeatureDataModule(pl.LightningDataModule):
    """Serves (features, target) batches for train/val/test; everything else (subsets, images
    for Grad-CAM, lung masks) comes from the image DataModule it wraps."""

    def __init__(self, images: XrayDataModule, features: nn.Module, device: torch.device) -> None:
        super().__init__()
        self.images = images
        was_training = features.training
        features.eval().to(device)
        self.sets = {s: extract(features, images.dataloader(s), device) for s in SPLITS if len(images.subset(s))}
        features.train(was_training)
        log.info("frozen fast path: features of %d images computed once",
                 sum(len(d) for d in self.sets.values()))

    def __getattr__(self, name: str) -> Any:
        if name in ("images", "sets") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.images, name)

    def _loader(self, split: str, train: bool = False) -> DataLoader:
        data = self.sets[split]
        sampler = EpochShuffle(len(data), self.images.split_seed) if train else None
        return DataLoader(data, batch_size=self.images.batch_size, sampler=sampler)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
