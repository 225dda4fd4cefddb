"""evaluate.py: a trained checkpoint on its test split, extra sets, other data and external manifests."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from covid_tl.cam.sets import record_cams
from covid_tl.reporting.console import print_results
from covid_tl.data.validate import BadInputError
from covid_tl.runtime.run_checks import check_script_config
from covid_tl.engine.checkpoint_sets import checkpoint_sets
from covid_tl.engine.evaluation import evaluate_sets, shift_summary
from covid_tl.models.ensemble import member_count
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
    found = checkpoint_sets(cfg, output_dir)
    run_cfg, model, datamodule, sets = found.run_cfg, found.model, found.datamodule, found.sets
    blocks = evaluate_sets(model.net, sets, output_dir, model.threshold, cfg.bootstrap, run_cfg.seed,
                           found.device, cfg.batch_size)
    for name, overlap in found.overlaps.items():
        blocks[name]["overlap"] = overlap
    if cfg.cams:  # Grad-CAM of every image: cams.csv, and each set's `cams` block
        record_cams(blocks, model.net, sets, cfg, run_cfg, datamodule, model.threshold, output_dir)
    run = {"checkpoint": str(cfg.ckpt_path), "backbone": run_cfg.backbone.name, **provenance()}
    if members := member_count(model.net):  # a fold ensemble, recorded as train.py records it
        run["members"] = members
    results = Results(sets=blocks, operating_point=found.point,
                      shift=shift_summary(blocks, *datamodule.held_out), run=run)  # shift: with splits=[val,test]
    write_results(output_dir, results)
    print_results(results, output_dir)
    return results

