"""A checkpoint and the labelled image sets a script runs it on (evaluate.py, audit.py): its
test split (and extra sets) or other data's, and external manifests, each checked at setup,
with the checkpoint's preprocessing, input spec and operating point. Built once here, so both
scripts read the same films the same way and list the same bad rows."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from covid_tl.core.errors import ConfigError
from covid_tl.data.datamodule import XrayDataModule
from covid_tl.data.external import external_names, external_set, patient_overlap
from covid_tl.data.images import MAX_MEGAPIXELS
from covid_tl.data.validate import write_bad_rows
from covid_tl.engine.build import pick_device
from covid_tl.engine.evaluation import ImageSets, checkpoint_data, script_operating_point
from covid_tl.models.checkpoint import load_run
from covid_tl.models.module import CovidClassifier
from covid_tl.stats.operating_point import is_rule


@dataclass
class CheckpointSets:
    """The checkpoint's run config and model (at the operating point `point`), its own data
    (`own`: None where nothing needed it), the data the sets come from, the sets by name, and
    each external set's patients shared with the checkpoint's train and val splits."""

    run_cfg: DictConfig
    model: CovidClassifier
    device: torch.device
    point: dict[str, Any]
    own: XrayDataModule | None
    datamodule: XrayDataModule
    sets: ImageSets
    overlaps: dict[str, dict[str, int]]


def checkpoint_sets(cfg: DictConfig, output_dir: Path, need_own: bool = False) -> CheckpointSets:
    """The sets a script's `ckpt_path`, `data`, `splits`, `external`, `threshold` and `device`
    name; rows left out under on_bad=skip go to `output_dir`/bad_rows.csv. `need_own`: set up
    the checkpoint's own data even where no key needs it (the audit cuts marks from its train
    split)."""
    run_cfg, model = load_run(cfg.ckpt_path, cfg.trust_checkpoint)
    device = pick_device(cfg.device)
    external = external_names(cfg.get("external") or [])  # a file named twice stops here, before any work
    other_data = other_data_config(cfg.get("data"))
    take_on_bad(cfg, run_cfg)
    # The checkpoint's own data and split: its test split, the val split a threshold rule is
    # chosen on, and the patients external sets are checked against (whatever data= says).
    own = None
    if need_own or not other_data or external or (cfg.get("threshold") is not None and is_rule(cfg.threshold)):
        own = checkpoint_data(run_cfg, model.net.input_spec)
    point = script_operating_point(cfg, run_cfg, model, device, own)
    datamodule = own
    if other_data:  # other data, the checkpoint's preprocessing and input spec
        run_cfg.data = OmegaConf.create(OmegaConf.to_container(cfg.data, resolve=False))
        datamodule = checkpoint_data(run_cfg, model.net.input_spec)
    sets = data_sets(datamodule, cfg.get("splits"))
    skipped = [datamodule.bad_rows, *([own.bad_rows] if own not in (None, datamodule) else [])]
    overlaps = {}
    for path, name in external.items():
        manifest, dataset, bad = external_set(path, name, datamodule.prepared, model.net.input_spec,
                                              run_cfg.data.get("on_bad", "raise"),
                                              run_cfg.data.get("max_megapixels", MAX_MEGAPIXELS))  # older checkpoints lack it
        sets[name] = (manifest, dataset)
        skipped.append(bad)
        overlaps[name] = patient_overlap(name, manifest, own.subset("train"), own.subset("val"))
    if any(len(bad) for bad in skipped):  # on_bad=skip: what was left out, as training lists it
        write_bad_rows(pd.concat([bad for bad in skipped if len(bad)], ignore_index=True), output_dir)
    return CheckpointSets(run_cfg, model, device, point, own, datamodule, sets, overlaps)


def take_on_bad(cfg: DictConfig, run_cfg: DictConfig) -> None:
    """`data.on_bad=skip` (as a bad-input error advises) for the checkpoint's own data and the
    external sets: the script's block, where no other data config takes its place."""
    on_bad = (cfg.get("data") or {}).get("on_bad")
    if not other_data_config(cfg.get("data")) and on_bad is not None:
        run_cfg.data.on_bad = on_bad


def other_data_config(data: DictConfig | None) -> bool:
    """Whether `data` is a data config (data=<option>), not the script's own `data.on_bad`
    block for the checkpoint's data."""
    return data is not None and "_target_" in data


def data_sets(datamodule: XrayDataModule, splits: Any) -> dict[str, tuple]:
    """The data's sets to evaluate (`splits`, else test and any extra set), the empty left out."""
    names = list(splits) if splits else ["test", *datamodule.extra_sets]
    unknown = sorted(set(names) - set(datamodule.eval_sets))
    if unknown:
        raise ConfigError(f"unknown split(s) {unknown}; valid: {', '.join(datamodule.eval_sets)}")
    return {n: (datamodule.subset(n), datamodule.dataset(n)) for n in names if len(datamodule.subset(n))}
