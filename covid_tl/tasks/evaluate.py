"""evaluate.py: a trained checkpoint on its test split, extra sets, other data and external manifests."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from covid_tl.build import build_datamodule, pick_device
from covid_tl.cam.sets import record_cams
from covid_tl.console import print_results
from covid_tl.errors import ConfigError
from covid_tl.models.checkpoint import load_run
from covid_tl.run_checks import check_script_config
from covid_tl.evaluation import evaluate_sets, external_set, requested_operating_point, shift_summary
from covid_tl.provenance import provenance
from covid_tl.results import Results, write_results


def evaluate(cfg: DictConfig, output_dir: Path) -> Results:
    """What evaluate.py does: the checkpoint on its test split, extra sets and external data."""
    check_script_config(cfg)  # required values and counts, before the checkpoint is read
    run_cfg, model = load_run(cfg.ckpt_path, cfg.trust_checkpoint)
    device = pick_device(cfg.device)
    datamodule = None
    if cfg.get("data") is None:  # the checkpoint's own data and split
        datamodule = build_datamodule(run_cfg, model.net.input_spec)
        datamodule.setup("test")
    # threshold=<rule> is chosen on the checkpoint's own validation split, whatever data= says.
    point = requested_operating_point(cfg.get("threshold"), run_cfg, model, device, cfg.batch_size, datamodule)
    if datamodule is None:  # other data, the checkpoint's preprocessing and input spec
        run_cfg.data = OmegaConf.create(OmegaConf.to_container(cfg.data, resolve=False))
        datamodule = build_datamodule(run_cfg, model.net.input_spec)
        datamodule.setup("test")
    names = list(cfg.splits) if cfg.get("splits") else ["test", *datamodule.extra_sets]
    unknown = sorted(set(names) - set(datamodule.eval_sets))
    if unknown:
        raise ConfigError(f"unknown split(s) {unknown}; valid: {', '.join(datamodule.eval_sets)}")
    sets = {n: (datamodule.subset(n), datamodule.dataset(n)) for n in names if len(datamodule.subset(n))}
    for path in cfg.get("external") or []:
        name, pair = external_set(path, run_cfg, datamodule.prepared, model.net.input_spec)
        sets[name] = pair
    blocks = evaluate_sets(model.net, sets, output_dir, model.threshold, cfg.bootstrap, run_cfg.seed,
                           device, cfg.batch_size)
    if cfg.cams:  # Grad-CAM of every image: cams.csv, and each set's `cams` block
        record_cams(blocks, model.net, sets, cfg, run_cfg, datamodule, model.threshold, output_dir)
    results = Results(sets=blocks, operating_point=point,
                      shift=shift_summary(blocks, datamodule.holdout_source),  # with splits=[val,test]
                      run={"checkpoint": str(cfg.ckpt_path), "backbone": run_cfg.backbone.name, **provenance()})
    write_results(output_dir, results)
    print_results(results, output_dir)
    return results
