"""audit.py: the shortcut audit of a trained checkpoint on its test split and external sets
(mode=model), or of a data set with no trained model (mode=data)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from covid_tl.audit.data_mode import audit_data
from covid_tl.audit.films import AuditSet, audit_sets
from covid_tl.audit.run import audit_model
from covid_tl.cam.options import build_cam
from covid_tl.cam.sets import given_masks, mark_detector
from covid_tl.core.errors import ConfigError
from covid_tl.core.provenance import provenance
from covid_tl.data.validate import BadInputError
from covid_tl.engine.checkpoint_sets import checkpoint_sets
from covid_tl.reporting.audit_table import audit_lines
from covid_tl.runtime.run_checks import check_script_config, instantiate_checked


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
    found = checkpoint_sets(cfg, output_dir, need_own=True)  # own: the train split the marks are cut from
    run_cfg, model, own = found.run_cfg, found.model, found.own
    sets = audit_sets(found.sets, given_masks(found.datamodule.load_lung_mask, found.datamodule.sources))
    train = AuditSet("train", own.subset("train"), own.prepared, given_masks(own.load_lung_mask, own.sources))
    about = {"subject": Path(str(cfg.ckpt_path)).name, "checkpoint": str(cfg.ckpt_path),
             "backbone": run_cfg.backbone.name, "operating_point": found.point, "run": provenance()}
    detector = mark_detector(OmegaConf.to_container(run_cfg.preprocessing, resolve=True))
    return audit_model(model.net, sets, train, model.threshold, options, build_cam(cfg.cam), found.device, output_dir,
                       about, cfg.bootstrap, cfg.seed, detector, cfg.batch_size)
