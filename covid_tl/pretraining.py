"""task=pretrain: a 14-finding multi-label model on NIH ChestX-ray14, whose checkpoint then
serves as `backbone.weights=<path>` in transfer runs (the study's NIH-pretrained model)."""
from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader, Dataset

from covid_tl.data.datamodule import EpochShuffle
from covid_tl.data.images import check_image_file, read_xray
from covid_tl.data.sources import NIH_FINDINGS, NIHSource
from covid_tl.data.validate import ON_BAD, BadInputError
from covid_tl.errors import ConfigError
from covid_tl.metrics import auroc
from covid_tl.models.classifier import build_classifier
from covid_tl.models.spec import InputSpec
from covid_tl.preprocess.model_input import to_model_input
from covid_tl.training import instantiate_all

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
    """The rows whose image file can be read; bad ones raise or are skipped as `on_bad` says."""
    if on_bad not in ON_BAD:
        raise ConfigError(f"unknown data.on_bad {on_bad!r}; valid: {', '.join(ON_BAD)}")
    reasons = frame["path"].map(check_image_file)
    bad = reasons.notna()
    if bad.any() and on_bad == "raise":
        lines = [f"  {p}: {r}" for p, r in zip(frame.loc[bad, "path"], reasons[bad])]
        raise BadInputError(f"{int(bad.sum())} of {len(frame)} images cannot be used (data.on_bad=skip leaves them out):\n"
                            + "\n".join(lines))
    if bad.any():
        log.warning("skipping %d unreadable image(s), e.g. %s", int(bad.sum()), frame.loc[bad, "path"].iloc[0])
    return frame[~bad].reset_index(drop=True)


def split_patients(frame: pd.DataFrame, val_fraction: float, seed: int) -> np.ndarray:
    """True for validation rows: a seeded `val_fraction` of patients (at least one)."""
    if not 0 < val_fraction < 1:
        raise ConfigError(f"data.val_fraction must be in (0, 1), got {val_fraction}")
    patients = np.array(sorted(frame["patient_id"].unique()), dtype=object)
    np.random.default_rng(seed).shuffle(patients)
    val = set(patients[: max(1, int(round(val_fraction * len(patients))))])
    return frame["patient_id"].isin(val).to_numpy()


class FindingsModule(pl.LightningModule):
    """Backbone plus a 14-way linear layer; BCE per finding, AUROC per finding.

    The network sits at `net` with its backbone at `net.features`, as in CovidClassifier, so
    a checkpoint of this module loads as `backbone.weights=<path>` in a transfer run.
    """

    def __init__(self, net: nn.Module, optimizer, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net", "optimizer"], logger=False)
        self.net = net
        self.optimizer_factory = optimizer
        self.val_outputs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.head(self.net.features(x))

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.binary_cross_entropy_with_logits(self(x).float(), y)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        logits = self(x).float()
        self.log("val/loss", F.binary_cross_entropy_with_logits(logits, y), on_epoch=True, prog_bar=True, batch_size=len(y))
        self.val_outputs.append((torch.sigmoid(logits).cpu(), y.cpu()))

    def on_validation_epoch_end(self) -> None:
        """AUROC per finding where the validation images hold both classes; their mean."""
        if not self.val_outputs:
            return
        probs, targets = (torch.cat(t).numpy() for t in zip(*self.val_outputs))
        self.val_outputs.clear()
        values = {name: auroc(targets[:, i], probs[:, i]) for i, name in enumerate(NIH_FINDINGS)}
        defined = {k: v for k, v in values.items() if v is not None}
        self.log_dict({f"val/auroc/{k}": v for k, v in defined.items()})
        if defined:
            self.log("val/auroc", float(np.mean(list(defined.values()))), prog_bar=True)

    def configure_optimizers(self):
        return self.optimizer_factory([p for p in self.parameters() if p.requires_grad])


def pretrain(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train on ChestX-ray14's findings; returns (and writes) results.json."""
    data: Mapping[str, Any] = cfg.data
    if "sources" in data:
        raise ConfigError("task=pretrain needs findings data: data=nih14 (data.root=<ChestX-ray14 dir>)")
    run_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.seed, workers=True)
    net = build_classifier(cfg.backbone)
    net.head = nn.Linear(net.head[0].in_features, len(NIH_FINDINGS))
    frame = usable_rows(NIHSource(data.root, metadata=data.metadata, views=data.views).findings_frame(), data.on_bad)
    is_val = split_patients(frame, data.val_fraction, data.split_seed)
    frame.assign(split=np.where(is_val, "val", "train")).to_csv(run_dir / "splits.csv", index=False)
    train_set, val_set = FindingsDataset(frame[~is_val], net.input_spec), FindingsDataset(frame[is_val], net.input_spec)
    log.info("NIH findings: %d training and %d validation images", len(train_set), len(val_set))
    loaders = {
        "train_dataloaders": DataLoader(train_set, batch_size=data.batch_size, num_workers=data.num_workers,
                                        sampler=EpochShuffle(len(train_set), data.split_seed)),
        "val_dataloaders": DataLoader(val_set, batch_size=data.batch_size, num_workers=data.num_workers),
    }
    module = FindingsModule(net, instantiate(cfg.optimizer), config=OmegaConf.to_container(cfg, resolve=True))
    # The Grad-CAM callback explains the COVID-19 logit, which this task does not have.
    callbacks = instantiate_all(cfg.get("callbacks"), skip=("grad_cam",))
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=instantiate_all(cfg.get("logger")) or False)
    trainer.fit(module, **loaders, ckpt_path=cfg.get("ckpt_path"), weights_only=not cfg.trust_checkpoint)
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    metrics = trainer.validate(module, dataloaders=loaders["val_dataloaders"], ckpt_path=best or None, verbose=False, weights_only=True)[0]
    results = {
        "val_auroc": metrics.get("val/auroc"),
        "val_auroc_per_finding": {f: metrics.get(f"val/auroc/{f}") for f in NIH_FINDINGS},
        "backbone_checkpoint": best or None,
        "images": {"train": len(train_set), "val": len(val_set)},
    }
    (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    defined = sum(v is not None for v in results["val_auroc_per_finding"].values())
    mean = results["val_auroc"]
    print(f"mean validation AUROC over {defined} of 14 findings (those with both classes in validation): "
          + (f"{mean:.3f}" if mean is not None else "-"))
    print(f"transfer with: python train.py backbone={cfg.backbone.name} backbone.weights={best}")
    return results
