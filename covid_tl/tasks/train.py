"""One training run from a composed config: fit, test the best checkpoint, write results."""
from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from covid_tl.build import build_datamodule, instantiate_all, pick_device
from covid_tl.console import print_data_summary, print_results
from covid_tl.data.frozen_features import FeatureDataModule, fast_path_blocker
from covid_tl.data.validate import BadInputError
from covid_tl.models.checkpoint import load_run
from covid_tl.models.classifier import build_classifier
from covid_tl.models.module import CovidClassifier
from covid_tl.results import evaluate_sets, shift_summary

log = logging.getLogger(__name__)

# Lightning's pytree helper trips a deprecation in newer torch on every step; harmless.
warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated")
# Epoch metrics come from torchmetrics, already gathered across DDP processes (see module.py).
warnings.filterwarnings("ignore", message=".*sync_dist=True.*when logging on epoch level")
# Rendering phantoms in the main process is the intended default on small machines.
warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train as `cfg` says, writing everything into `run_dir`; returns results.json's content."""
    run_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.seed, workers=True)
    net = build_classifier(cfg.backbone)
    trainable, total = instantiate(cfg.freeze)(net)
    log.info("backbone %s: %s of %s parameters trainable", net.backbone_name, f"{trainable:,}", f"{total:,}")

    datamodule = build_datamodule(cfg, net.input_spec)
    try:
        datamodule.setup("fit")
    except BadInputError as error:  # the full list goes where the user looks for the run's files
        raise (error.written_to(run_dir) if rank_zero_only.rank == 0 else error) from None
    if rank_zero_only.rank == 0:  # under DDP every process runs this; one writes
        print_data_summary(datamodule.write_data_files(run_dir), run_dir)
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    model: CovidClassifier = instantiate(cfg.model)(
        net,
        optimizer=instantiate(cfg.optimizer),
        scheduler=scheduler,
        threshold=cfg.threshold,
        config=OmegaConf.to_container(cfg, resolve=True),
    )
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=instantiate_all(cfg.get("callbacks")), logger=instantiate_all(cfg.get("logger")) or False
    )
    started = time.perf_counter()
    fit_data = datamodule
    if cfg.fast_frozen:
        blocker = fast_path_blocker(net, datamodule)
        if blocker is None:
            fit_data = FeatureDataModule(datamodule, net.features, pick_device(cfg.trainer.accelerator))
            model.head_only = True
        else:
            log.info("frozen fast path off: %s", blocker)
    trainer.fit(model, datamodule=fit_data, ckpt_path=cfg.get("ckpt_path"))
    log.info("training took %.1f s (features included)", time.perf_counter() - started)

    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if len(datamodule.subset("test")):
        trainer.test(model, datamodule=fit_data, ckpt_path=best or None, verbose=False)
    model.head_only = False
    if not trainer.is_global_zero:
        return {}
    # Final figures on one process, with the best weights, every image once (no DDP padding).
    final = load_run(best)[1] if best else model
    sets = {s: (datamodule.subset(s), datamodule.dataset(s)) for s in datamodule.eval_sets if len(datamodule.subset(s))}
    results = evaluate_sets(final.net, sets, run_dir, cfg.threshold, cfg.bootstrap, cfg.seed, pick_device(cfg.trainer.accelerator))
    shift = shift_summary(results, datamodule.holdout_source)
    if shift is not None:
        results["shift"] = shift
    results["run"] = {
        "backbone": net.backbone_name,
        "best_checkpoint": str(Path(best).relative_to(run_dir)) if best and Path(best).is_relative_to(run_dir) else best or None,
        "epochs_trained": trainer.current_epoch,
        "parameters": {"trainable": trainable, "total": total},
        "seed": cfg.seed,
    }
    (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print_results(results, run_dir)
    return results
