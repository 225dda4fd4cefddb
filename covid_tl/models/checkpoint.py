"""Rebuild a trained model, and the run config it was trained with, from a checkpoint."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from covid_tl.errors import ConfigError
from covid_tl.models.classifier import build_classifier
from covid_tl.models.module import CovidClassifier
from covid_tl.torch_files import TRUST_CHECKPOINT, load_torch_file, reason


class CheckpointError(ConfigError):
    """A checkpoint path that cannot give back a covid-tl model; the message says why."""


def load_run(ckpt_path: str | Path, trust: bool = False) -> tuple[DictConfig, CovidClassifier]:
    """The run config recorded in the checkpoint and the model with its weights, in eval mode.

    Weights only (see covid_tl.torch_files) unless `trust`: checkpoints are shared files."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    checkpoint = load_torch_file(path, "PyTorch checkpoint", TRUST_CHECKPOINT, trust, CheckpointError)
    config = checkpoint.get("hyper_parameters", {}).get("config") if isinstance(checkpoint, dict) else None
    if not config or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a covid-tl checkpoint: it carries no run config")
    cfg = OmegaConf.create(config)
    net = build_classifier(cfg.backbone, keep_fc=cfg.get("freeze", {}).get("keep_fc"), load_pretrained=False)
    model = CovidClassifier(net, optimizer=instantiate(cfg.optimizer), threshold=decision_threshold(checkpoint),
                            config=config)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        raise CheckpointError(f"{path} does not match the {cfg.backbone.name} model its config describes ({reason(error)})") from None
    return cfg, model.eval()


def decision_threshold(checkpoint: Mapping[str, Any]) -> float:
    """The probability at or above which the checkpoint's model calls COVID-19 (`model.threshold`
    after load_run). Read here only, so a threshold the checkpoint itself carries (one chosen on
    validation) takes the run config's place in one line."""
    return float(checkpoint["hyper_parameters"]["config"]["threshold"])


def saved_epoch(ckpt_path: str | Path) -> int:
    """The epoch a Lightning checkpoint was saved at (0-based, as metrics.csv counts), read
    without loading the weights into memory."""
    return int(torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)["epoch"])
