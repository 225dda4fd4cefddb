"""Rebuild a trained model, and the run config it was trained with, from a checkpoint."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from covid_tl.runtime.config_history import upgrade
from covid_tl.core.errors import ConfigError
from covid_tl.stats.operating_point import is_rule
from covid_tl.models.classifier import build_classifier
from covid_tl.models.ensemble import EnsembleNet, ensemble_file, read_ensemble
from covid_tl.models.module import CovidClassifier
from covid_tl.runtime.torch_files import TRAINING_ONLY, TRUST_CHECKPOINT, check_run_config, load_torch_file, reason

log = logging.getLogger(__name__)

#: The checkpoint key of the operating point chosen after training: {rule, threshold, temperature}.
OPERATING_POINT = "operating_point"
#: conf/preprocessing/*.yaml's cache_dir: where the run reading a checkpoint caches, whatever
#: the checkpoint recorded (current_cache_dir resolves it).
CACHE_DIR = "${oc.env:COVID_TL_CACHE,'~/.cache/covid-tl'}"


class CheckpointError(ConfigError):
    """A checkpoint path that cannot give back a covid-tl model; the message says why."""


def load_run(ckpt_path: str | Path, trust: bool = False, member: bool = False) -> tuple[DictConfig, CovidClassifier]:
    """The run config recorded in the checkpoint and the model with its weights, in eval mode;
    a fold ensemble (its ensemble.json, or the run dir holding one) as one model (load_ensemble).
    `member`: a checkpoint read as an ensemble member, whose operating point is the ensemble's
    (no warning that the file lacks its own).

    Weights only (see covid_tl.runtime.torch_files) unless `trust`: checkpoints are shared files, and
    so is the config they carry: unless `trust`, every `_target_` in it must name covid-tl's
    own code (torch_files.check_run_config) before Hydra sees it. The config that comes back
    holds no training-only block (nothing at inference builds an optimizer, a Trainer, callbacks
    or loggers) and caches where this run caches (inference_config)."""
    if (listing := ensemble_file(ckpt_path)) is not None:
        return load_ensemble(listing, trust)
    path = Path(ckpt_path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    checkpoint = load_torch_file(path, "PyTorch checkpoint", TRUST_CHECKPOINT, trust, CheckpointError)
    config = checkpoint.get("hyper_parameters", {}).get("config") if isinstance(checkpoint, dict) else None
    if not isinstance(config, dict) or not config or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a covid-tl checkpoint: it carries no run config")
    config = upgrade(config)
    if not trust:
        check_run_config(config, path, TRUST_CHECKPOINT, CheckpointError)
    config = inference_config(config)
    cfg = OmegaConf.create(config)
    net = build_classifier(cfg.backbone, keep_fc=cfg.get("freeze", {}).get("keep_fc"), load_pretrained=False)
    model = CovidClassifier(net, optimizer=not_for_training, threshold=decision_threshold(checkpoint, path, warn=not member),
                            config=config)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        raise CheckpointError(f"{path} does not match the {cfg.backbone.name} model its config describes ({reason(error)})") from None
    stored = checkpoint.get(OPERATING_POINT) or {"rule": cfg.threshold, "split": None}
    net.temperature = float(stored.get("temperature", 1.0))
    model.operating_point = {**stored, "threshold": model.threshold, "temperature": net.temperature}
    return cfg, model.eval()


def load_ensemble(path: Path, trust: bool = False) -> tuple[DictConfig, CovidClassifier]:
    """A fold ensemble's members (each loaded as load_run loads a checkpoint, after its digest
    is checked) as one model at the ensemble's out-of-fold operating point. The config is the
    first member's: members differ only in the fold they validated on (refused otherwise), and
    all share the test split."""
    try:
        listing = read_ensemble(path)
    except ConfigError as error:
        raise CheckpointError(str(error)) from None
    loaded = [load_run(member.checkpoint, trust, member=True) for member in listing.members]
    first = OmegaConf.to_container(loaded[0][0], resolve=False)
    for member, (cfg, _) in zip(listing.members[1:], loaded[1:]):
        if _without_fold(OmegaConf.to_container(cfg, resolve=False)) != _without_fold(first):
            raise CheckpointError(f"{path}: member {member.checkpoint} was trained with another config than "
                                  f"{listing.members[0].checkpoint} (beyond its fold)")
    point = listing.operating_point
    net = EnsembleNet([model.net for _, model in loaded])
    net.temperature = float(point.get("temperature", 1.0))
    model = CovidClassifier(net, optimizer=not_for_training, threshold=float(point["threshold"]), config=first)
    model.operating_point = {**point, "threshold": model.threshold, "temperature": net.temperature}
    return loaded[0][0], model.eval()


def _without_fold(config: Mapping[str, Any]) -> dict[str, Any]:
    """A member's config less the fold it validated on (what members may differ in)."""
    return {**config, "data": {k: v for k, v in (config.get("data") or {}).items() if k != "fold"}}


def inference_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A checkpoint's run config as inference may use it: the training-only blocks dropped, and
    the preprocessing cache in this run's cache dir (a path in a checkpoint never decides where
    to write)."""
    kept = {key: value for key, value in config.items() if key not in TRAINING_ONLY}
    if isinstance(kept.get("preprocessing"), Mapping):
        kept["preprocessing"] = {**kept["preprocessing"], "cache_dir": current_cache_dir()}
    return kept


def current_cache_dir() -> str:
    """CACHE_DIR resolved now ($COVID_TL_CACHE, else ~/.cache/covid-tl)."""
    return str(OmegaConf.create({"cache_dir": CACHE_DIR}).cache_dir)


def not_for_training(*args: Any, **kwargs: Any) -> None:
    """The optimizer factory of a model loaded for inference: training it is a mistake."""
    raise CheckpointError("a model loaded by load_run is for inference: it has no optimizer (train.py trains, "
                          "ckpt_path=<file> resumes)")


def decision_threshold(checkpoint: Mapping[str, Any], path: str | Path = "the checkpoint", warn: bool = True) -> float:
    """The probability at or above which the checkpoint's model calls COVID-19 (`model.threshold`
    after load_run; predict, export and the model card read it from there): the operating point
    chosen after training when the checkpoint carries one, else the run config's number. A rule
    (youden, sens@X, spec@X) without an operating point (a checkpoint other than the best) calls at 0.5."""
    if OPERATING_POINT in checkpoint:
        return float(checkpoint[OPERATING_POINT]["threshold"])
    threshold = checkpoint["hyper_parameters"]["config"]["threshold"]
    if is_rule(threshold):
        if warn:
            log.warning("%s carries no operating point for threshold=%s (only the best checkpoint does): calling at "
                        "0.5; threshold=%s chooses it on the validation split", path, threshold, threshold)
        return 0.5
    return float(threshold)


def store_operating_point(ckpt_path: str | Path, point: Mapping[str, Any]) -> None:
    """Write `point` ({rule, threshold, temperature}) into a checkpoint file, in place. Loaded
    weights-only: the file is written by this run, but the rule holds for every checkpoint."""
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    checkpoint[OPERATING_POINT] = dict(point)
    torch.save(checkpoint, ckpt_path)


def saved_epoch(ckpt_path: str | Path) -> int:
    """The epoch a Lightning checkpoint was saved at (0-based, as metrics.csv counts), read
    without loading the weights into memory."""
    return int(torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)["epoch"])
