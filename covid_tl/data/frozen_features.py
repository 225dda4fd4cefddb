"""The frozen fast path: when nothing before the head trains and training images are not
augmented, every image's backbone features are computed once and the head trains on them.

A split's features are computed when a loader first asks for them (the test split's only when
testing), and where the image DataModule has a preprocessing cache they are stored beside its
entries, in `<its config digest>/features/`: the folder's name is the image cache's key (the
preprocessing options and, with `lungs`, the segmenter's digest), the file's the backbone's
weights, the input spec and the content of every file. A change that gives other images
(another preprocessing, another segmenter) thus gives other features, and a second run over the same images and backbone (a seed or head sweep,
`hparams_search=optuna`) reads them in a moment. Rows that are not files (synthetic phantoms)
are never cached.
"""
from __future__ import annotations

import hashlib
import logging
from functools import cached_property
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from covid_tl.data.datamodule import XrayDataModule
from covid_tl.core.files import write_atomically
from covid_tl.preprocess.cache import config_digest

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


def weights_digest(module: nn.Module) -> str:
    """Hash of every tensor in the module's state dict (names, shapes, values)."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class FeatureDataModule(pl.LightningDataModule):
    """Serves (features, target) batches for train/val/test; everything else (subsets, images
    for Grad-CAM, lung masks) comes from the image DataModule it wraps, and so does the cache:
    features are stored where its preprocessing cache is (nowhere without one)."""

    def __init__(self, images: XrayDataModule, features: nn.Module, device: torch.device) -> None:
        super().__init__()
        self.images = images
        self.features = features
        self.device = device
        self.sets: dict[str, TensorDataset] = {}

    def cache_path(self, split: str) -> Path | None:
        """Where the split's features are stored: in the image cache's own folder (so another
        preprocessing or segmenter moves them too), named by weights, input spec and files."""
        prepared = self.images.prepared
        rows = self.images.subset(split).frame.to_dict("records")
        if prepared.input_cache is None or not all(prepared.reads_files(r) for r in rows):
            return None
        spec = self.images.input_spec
        key = config_digest({"weights": self._weights_digest, "files": [prepared.file_key(r) for r in rows],
                             "input": [spec.size, spec.channels, list(spec.mean), list(spec.std)]})
        return prepared.input_cache.directory / "features" / f"{key}.pt"

    @cached_property
    def _weights_digest(self) -> str:
        """weights_digest of the frozen backbone, taken once for the three splits."""
        return weights_digest(self.features)

    def dataset(self, split: str) -> TensorDataset:
        """The split's (features, target) pairs: from memory, the cache, or the backbone."""
        if split in self.sets:
            return self.sets[split]
        path = self.cache_path(split)
        if path is not None and path.is_file():
            stored = torch.load(path, map_location="cpu", weights_only=True)
            self.sets[split] = TensorDataset(stored["features"], stored["targets"])
            log.info("frozen fast path: features of %d %s images read from %s", len(self.sets[split]), split, path)
            return self.sets[split]
        was_training = self.features.training
        self.features.eval().to(self.device)
        self.sets[split] = extract(self.features, self.images.dataloader(split), self.device)
        self.features.train(was_training)
        log.info("frozen fast path: features of %d %s images computed once", len(self.sets[split]), split)
        if path is not None:
            tensors = {"features": self.sets[split].tensors[0], "targets": self.sets[split].tensors[1]}
            write_atomically(path, lambda stream: torch.save(tensors, stream))
        return self.sets[split]

    def __getattr__(self, name: str) -> Any:
        if name in ("images", "sets", "features", "device") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.images, name)

    def _loader(self, split: str, train: bool = False) -> DataLoader:
        data = self.dataset(split)
        sampler = self.images.train_sampler(split) if train else None  # its rows are the split's, in order
        return DataLoader(data, batch_size=self.images.batch_size, sampler=sampler)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

