"""evaluate.py: a trained checkpoint on its test split, extra sets, other data and external manifests."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from covid_tl.engine.build import pick_device
from covid_tl.cam.sets import record_cams
from covid_tl.reporting.console import print_results
from covid_tl.data.datamodule import XrayDataModule
from covid_tl.data.external import external_names, external_set, patient_overlap
from covid_tl.data.images import MAX_MEGAPIXELS
from covid_tl.data.validate import BadInputError, write_bad_rows
from covid_tl.core.errors import ConfigError
from covid_tl.models.checkpoint import load_run
from covid_tl.stats.operating_point import is_rule
from covid_tl.runtime.run_checks import check_script_config
from covid_tl.engine.evaluation import checkpoint_data, evaluate_sets, requested_operating_point, shift_summary
from covid_tl.core.provenance import provenance
from covid_tl.reporting.results import Results, write_results


def evaluate(cfg: DictConfig, output_dir: Path) -> Results:
    """What evaluate.py does: the checkpoint on its test split, extra sets and external data.
    Bad input stops it with bad_rows.csv in `output_dir`."""
    check_script_config(cfg)  # required values and counts, before the checkpoint is read
    try:
        return _evaluate(cfg, output_dir)
    except BadInputError as error:
        raise error.written_to(output_dir) from None


def _evaluate(cfg: DictConfig, output_dir: Path) -> Results:
    run_cfg, model = load_run(cfg.ckpt_path, cfg.trust_checkpoint)
    device = pick_device(cfg.device)
    external = external_names(cfg.get("external") or [])  # a file named twice stops here, before any work
    other_data = other_data_config(cfg.get("data"))
    take_on_bad(cfg, run_cfg)
    # The checkpoint's own data and split: its test split, the val split a threshold rule is
    # chosen on, and the patients external sets are checked against (whatever data= says).
    own = None
    if not other_data or external or (cfg.get("threshold") is not None and is_rule(cfg.threshold)):
        own = checkpoint_data(run_cfg, model.net.input_spec)
    point = requested_operating_point(cfg.get("threshold"), run_cfg, model, device, cfg.batch_size, own)
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
    blocks = evaluate_sets(model.net, sets, output_dir, model.threshold, cfg.bootstrap, run_cfg.seed,
                           device, cfg.batch_size)
    for name, overlap in overlaps.items():
        blocks[name]["overlap"] = overlap
    if cfg.cams:  # Grad-CAM of every image: cams.csv, and each set's `cams` block
        record_cams(blocks, model.net, sets, cfg, run_cfg, datamodule, model.threshold, output_dir)
    results = Results(sets=blocks, operating_point=point,
                      shift=shift_summary(blocks, datamodule.holdout_source),  # with splits=[val,test]
                      run={"checkpoint": str(cfg.ckpt_path), "backbone": run_cfg.backbone.name, **provenance()})
    write_results(output_dir, results)
    print_results(results, output_dir)
    return results


def take_on_bad(cfg: DictConfig, run_cfg: DictConfig) -> None:
    """`data.on_bad=skip` (as a bad-input error advises) for the checkpoint's own data and the
    external sets: the script's block, where no other data config takes its place."""
    on_bad = (cfg.get("data") or {}).get("on_bad")
    if not other_data_config(cfg.get("data")) and on_bad is not None:
        run_cfg.data.on_bad = on_bad


def other_data_config(data: DictConfig | None) -> bool:
    """Whether `data` is a data config (data=<option>), not evaluate.yaml's own `data.on_bad`
    block for the checkpoint's data."""
    return data is not None and "_target_" in data


def data_sets(datamodule: XrayDataModule, splits: Any) -> dict[str, tuple]:
    """The data's sets to evaluate (`splits`, else test and any extra set), the empty left out."""
    names = list(splits) if splits else ["test", *datamodule.extra_sets]
    unknown = sorted(set(names) - set(datamodule.eval_sets))
    if unknown:
        raise ConfigError(f"unknown split(s) {unknown}; valid: {', '.join(datamodule.eval_sets)}")
    return {n: (datamodule.subset(n), datamodule.dataset(n)) for n in names if len(datamodule.subset(n))}
