"""audit.py: the shortcut audit of a trained checkpoint on its test split and external sets
(mode=model), or of a data set with no trained model (mode=data)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from covid_tl.audit.data_mode import audit_data
from covid_tl.audit.films import AuditSet
from covid_tl.audit.run import audit_model
from covid_tl.cam.options import build_cam
from covid_tl.cam.sets import given_masks, mark_detector
from covid_tl.core.errors import ConfigError
from covid_tl.core.provenance import provenance
from covid_tl.data.external import external_names, external_set, patient_overlap
from covid_tl.data.images import MAX_MEGAPIXELS
from covid_tl.data.validate import BadInputError, write_bad_rows
from covid_tl.engine.build import pick_device
from covid_tl.engine.evaluation import checkpoint_data, requested_operating_point
from covid_tl.models.checkpoint import load_run
from covid_tl.reporting.audit_table import audit_lines
from covid_tl.runtime.run_checks import check_script_config, instantiate_checked
from covid_tl.tasks.evaluate import data_sets, other_data_config, take_on_bad

log = logging.getLogger(__name__)


def audit(cfg: DictConfig, output_dir: Path) -> dict[str, Any]:
    """What audit.py does; bad input stops it with bad_rows.csv in `output_dir`."""
    check_script_config(cfg)
    options = instantiate_checked(cfg.shortcuts)
    try:
        if "backbone" in cfg:  # mode=data composes a backbone (conf/mode/data.yaml); mode=model has the checkpoint's
            record = audit_data(cfg, options, output_dir)
        else:
            record = _audit_checkpoint(cfg, options, output_dir)
    except BadInputError as error:
        raise error.written_to(output_dir) from None
    print("\n".join(audit_lines(record)))
    print(f"\naudit written to {output_dir} (audit.md, audit.json, audit_films.csv, audit_examples.png)")
    return record


def _audit_checkpoint(cfg: DictConfig, options: Any, output_dir: Path) -> dict[str, Any]:
    if cfg.get("ckpt_path") is None:
        raise ConfigError("mode=model audits a trained model: give ckpt_path=<run dir>/checkpoints/<best>.ckpt "
                          "(mode=data audits a data set without one)")
    run_cfg, model = load_run(cfg.ckpt_path, cfg.trust_checkpoint)
    device = pick_device(cfg.device)
    external = external_names(cfg.get("external") or [])
    take_on_bad(cfg, run_cfg)
    own = checkpoint_data(run_cfg, model.net.input_spec)
    point = requested_operating_point(cfg.get("threshold"), run_cfg, model, device, cfg.batch_size, own)
    datamodule = own
    if other_data_config(cfg.get("data")):  # other data, the checkpoint's preprocessing and input spec
        run_cfg.data = OmegaConf.create(OmegaConf.to_container(cfg.data, resolve=False))
        datamodule = checkpoint_data(run_cfg, model.net.input_spec)
    masks = given_masks(datamodule.load_lung_mask, datamodule.sources)
    sets = [AuditSet(name, manifest, datamodule.prepared, masks)
            for name, (manifest, _) in data_sets(datamodule, cfg.get("splits")).items()]
    skipped = [datamodule.bad_rows]
    for path, name in external.items():
        manifest, dataset, bad = external_set(path, name, datamodule.prepared, model.net.input_spec,
                                              run_cfg.data.get("on_bad", "raise"),
                                              run_cfg.data.get("max_megapixels", MAX_MEGAPIXELS))
        skipped.append(bad)
        patient_overlap(name, manifest, own.subset("train"), own.subset("val"))
        sets.append(AuditSet(name, manifest, dataset.prepare, masks))
    if any(len(bad) for bad in skipped):
        write_bad_rows(pd.concat([bad for bad in skipped if len(bad)], ignore_index=True), output_dir)
    train = AuditSet("train", own.subset("train"), own.prepared, given_masks(own.load_lung_mask, own.sources))
    about = {"subject": Path(str(cfg.ckpt_path)).name, "checkpoint": str(cfg.ckpt_path),
             "backbone": run_cfg.backbone.name, "operating_point": point, "run": provenance()}
    detector = mark_detector(OmegaConf.to_container(run_cfg.preprocessing, resolve=True))
    return audit_model(model.net, sets, train, model.threshold, options, build_cam(cfg.cam), device, output_dir,
                       about, cfg.bootstrap, cfg.seed, detector, cfg.batch_size)
