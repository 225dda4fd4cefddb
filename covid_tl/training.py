"""One training run from a composed config: fit, test the best checkpoint, write results."""
from __future__ import annotations

import json
from collections.abc import Collection
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from covid_tl.data.datamodule import XrayDataModule
from covid_tl.data.features import FeatureDataModule, fast_path_blocker
from covid_tl.checkpoint import load_run
from covid_tl.errors import ConfigError
from covid_tl.evaluation import evaluate_sets, pick_device
from covid_tl.models.classifier import build_classifier
from covid_tl.models.freeze import apply_freeze
from covid_tl.models.module import CovidClassifier
from covid_tl.preprocess.augment import build_augmentation
from covid_tl.preprocess.cache import PreprocessCache
from covid_tl.preprocess.pipeline import Preprocess, build_preprocess
from covid_tl.reporting import print_data_summary, print_results

log = logging.getLogger(__name__)

# Lightning's pytree helper trips a deprecation in newer torch on every step; harmless.
warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated")
# Epoch metrics come from torchmetrics, already gathered across DDP processes (see module.py).
warnings.filterwarnings("ignore", message=".*sync_dist=True.*when logging on epoch level")
# Rendering phantoms in the main process is the intended default on small machines.
warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def instantiate_all(group: DictConfig | None, skip: Collection[str] = ()) -> list[Any]:
    """Instantiate every entry of a name -> config mapping (callbacks, loggers); null and
    names in `skip` are left out."""
    return [instantiate(entry) for name, entry in (group or {}).items() if entry is not None and name not in skip]


#: Keys of a data config that only feed interpolations (`data=manifest data.path=...`).
DATA_ANCHORS = ("path", "root")


def build_datamodule(cfg: DictConfig, net) -> XrayDataModule:
    """The DataModule of `cfg.data`: its `sources` instantiated, its other keys as arguments."""
    if "sources" not in cfg.data:
        raise ConfigError("this data config has no `sources`: it is for task=pretrain (data=nih14)")
    options = {k: v for k, v in cfg.data.items() if k not in ("sources", *DATA_ANCHORS)}
    sources = {name: instantiate(source) for name, source in cfg.data.sources.items() if source is not None}
    preprocess, cache = build_preprocessing(cfg)
    return XrayDataModule(
        sources,
        net.input_spec,
        preprocess=preprocess,
        augmentation=build_augmentation(**{k: v for k, v in cfg.augment.items() if k != "watermark"}),
        watermark=cfg.augment.get("watermark"),
        cache=cache,
        **OmegaConf.to_container(DictConfig(options), resolve=True),
    )


def build_preprocessing(cfg: DictConfig) -> tuple[Preprocess, PreprocessCache | None]:
    """The deterministic preprocessing of `cfg.preprocessing` and its disk cache (if on)."""
    steps = OmegaConf.to_container(cfg.preprocessing, resolve=True)
    cache_dir, use_cache = steps.pop("cache_dir"), steps.pop("cache")
    return build_preprocess(**steps), PreprocessCache(cache_dir, steps) if use_cache else None


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train as `cfg` says, writing everything into `run_dir`; returns results.json's content."""
    run_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.seed, workers=True)
    net = build_classifier(cfg.backbone, keep_fc=cfg.freeze.get("keep_fc", 0))
    trainable, total = apply_freeze(net, **cfg.freeze)
    log.info("backbone %s: %s of %s parameters trainable", net.backbone_name, f"{trainable:,}", f"{total:,}")

    datamodule = build_datamodule(cfg, net)
    datamodule.setup("fit")
    if rank_zero_only.rank == 0:  # under DDP every process runs this; one writes
        print_data_summary(datamodule.write_data_files(run_dir), run_dir)
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    model = CovidClassifier(
        net,
        optimizer=instantiate(cfg.optimizer),
        scheduler=scheduler,
        threshold=cfg.threshold,
        config=OmegaConf.to_container(cfg, resolve=True),
        **cfg.model,
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
    # Explicit: torch's default for weights_only can be flipped by an environment variable.
    trainer.fit(model, datamodule=fit_data, ckpt_path=cfg.get("ckpt_path"), weights_only=not cfg.trust_checkpoint)
    log.info("training took %.1f s (features included)", time.perf_counter() - started)

    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if len(datamodule.subset("test")):
        trainer.test(model, datamodule=fit_data, ckpt_path=best or None, verbose=False, weights_only=True)
    model.head_only = False
    if not trainer.is_global_zero:
        return {}
    # Final figures on one process, with the best weights, every image once (no DDP padding).
    final = load_run(best)[1] if best else model
    sets = {s: (datamodule.subset(s), datamodule.dataset(s)) for s in datamodule.eval_sets if len(datamodule.subset(s))}
    results = evaluate_sets(final.net, sets, run_dir, cfg.threshold, cfg.bootstrap, cfg.seed, pick_device(cfg.trainer.accelerator))
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
