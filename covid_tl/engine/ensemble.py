"""What a fold ensemble (train.py cv=k) is chosen on: every member's predictions on the fold
it never trained on, pooled.

With k members, every development film has one out-of-fold prediction per epoch, so the epoch
and the operating point are chosen on all of them (a few hundred films) rather than on one
validation split of a few dozen, where youden's cut and the best epoch are noise.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from covid_tl.core.errors import ConfigError
from covid_tl.data.manifest import Manifest
from covid_tl.engine.evaluation import checkpoint_data, operating_point_of, predict_logits
from covid_tl.models.checkpoint import load_run, saved_epoch
from covid_tl.stats.metrics import auroc

log = logging.getLogger(__name__)

#: How a config names its run dir; a member's paths name the member's own folder instead.
RUN_DIR = "${hydra:runtime.output_dir}"
MEMBERS = "members"


def member_dir(run_dir: Path, fold: int) -> Path:
    return run_dir / MEMBERS / f"fold_{fold}"


def member_config(cfg: DictConfig, fold: int, folder: Path) -> DictConfig:
    """The run config of member `fold`: `cfg` validating on that fold of the development patients
    (data.num_folds=cv, data.fold_split=val), every path under the run dir moved into `folder`,
    every epoch's checkpoint kept (the epoch is chosen on all members' pooled predictions), no
    audit (the ensemble is audited, not each member)."""
    container = _moved(OmegaConf.to_container(cfg, resolve=False), str(folder))
    member = OmegaConf.create(container)
    member.data.num_folds, member.data.fold, member.data.fold_split = int(cfg.cv), fold, "val"
    member.cv, member.audit, member.ckpt_path = None, False, None
    checkpoints = (member.get("callbacks") or {}).get("model_checkpoint")
    if checkpoints is None:
        raise ConfigError("cv trains a fold ensemble from each member's checkpoints: keep callbacks.model_checkpoint")
    checkpoints.save_top_k = -1
    return member


def _moved(value: Any, folder: str) -> Any:
    if isinstance(value, str):
        return value.replace(RUN_DIR, folder)
    if isinstance(value, Mapping):
        return {key: _moved(item, folder) for key, item in value.items()}
    if isinstance(value, list):
        return [_moved(item, folder) for item in value]
    return value


def epoch_checkpoints(folder: Path) -> dict[int, Path]:
    """A member's checkpoint of each epoch (last*.ckpt, a link or a copy, left out)."""
    files = [p for p in sorted((folder / "checkpoints").glob("*.ckpt")) if not p.name.startswith("last")]
    return {saved_epoch(p): p for p in files}


def out_of_fold(folders: Sequence[Path], device: torch.device, batch_size: int = 64) -> pd.DataFrame:
    """Every member's logits on its own val fold, for each epoch it kept: one row per film and
    epoch, with the fold, the manifest's columns and `target`."""
    frames = []
    for fold, folder in enumerate(folders):
        checkpoints = epoch_checkpoints(folder)
        if not checkpoints:
            raise ConfigError(f"member {folder} kept no checkpoint")
        run_cfg, model = load_run(next(iter(checkpoints.values())), member=True)
        val = checkpoint_data(run_cfg, model.net.input_spec)
        manifest, dataset = val.subset("val"), val.dataset("val")
        for epoch, path in checkpoints.items():
            net = load_run(path, member=True)[1].net
            net.temperature = 1.0  # the best epoch's file may carry the member's own; the pooled one is fitted here
            frame = manifest.frame.assign(fold=fold, epoch=epoch, target=manifest.targets,
                                          logit=predict_logits(net, dataset, device, batch_size))
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def choose_epoch(oof: pd.DataFrame) -> tuple[int, dict[int, float | None]]:
    """(the epoch whose pooled out-of-fold AUROC is highest, the earliest on a tie; the pooled
    AUROC of every epoch all members kept)."""
    folds = oof["fold"].nunique()
    common = [e for e, g in oof.groupby("epoch") if g["fold"].nunique() == folds]
    curve = {int(e): auroc(oof.loc[oof.epoch == e, "target"].to_numpy(), oof.loc[oof.epoch == e, "logit"].to_numpy())
             for e in sorted(common)}
    scored = {e: a for e, a in curve.items() if a is not None}
    if not scored:
        raise ConfigError("the pooled out-of-fold predictions hold one class only: no epoch can be chosen on AUROC")
    best = max(scored.values())
    return min(e for e, a in scored.items() if a == best), curve


def fold_curves(oof: pd.DataFrame) -> dict[int, dict[int, float | None]]:
    """Each fold's own AUROC by epoch (on its few val films: what one fold alone would choose on)."""
    return {int(fold): {int(e): auroc(g["target"].to_numpy(), g["logit"].to_numpy()) for e, g in group.groupby("epoch")}
            for fold, group in oof.groupby("fold")}


def pooled_point(oof: pd.DataFrame, rule: Any, calibrate: bool) -> dict[str, Any]:
    """The operating point on the pooled out-of-fold logits of one epoch, with what each fold's
    own films alone would have chosen (`per_fold`: how much a cut from one validation fold moves)."""
    point = operating_point_of(oof["logit"].to_numpy(np.float64), oof["target"].to_numpy(), rule, calibrate,
                               1.0, "oof")
    per_fold = []
    for fold, group in oof.groupby("fold"):
        alone = operating_point_of(group["logit"].to_numpy(np.float64), group["target"].to_numpy(), rule, calibrate,
                                   1.0, f"fold {fold}")
        per_fold.append({"fold": int(fold), "n": int(len(group)), "threshold": alone["threshold"],
                         "temperature": alone["temperature"]})
    return {**point, "per_fold": per_fold}


def oof_manifest(oof: pd.DataFrame) -> Manifest:
    """The pooled out-of-fold films as a manifest (for assess: intervals by patient, per source
    and per view)."""
    return Manifest(oof.drop(columns=["epoch", "target", "logit"]).reset_index(drop=True))
