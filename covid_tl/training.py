"""One training run from a composed config: fit, test the best checkpoint, write results."""
from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from covid_tl.data.datamodule import XrayDataModule
from covid_tl.metrics import summarize
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
# Rendering phantoms in the main process is the intended default on small machines.
warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def instantiate_all(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a name -> config mapping (callbacks, loggers); null skips."""
    return [instantiate(entry) for entry in (group or {}).values() if entry is not None]


#: Keys of a data config that only feed interpolations (`data=manifest data.path=...`).
DATA_ANCHORS = ("path", "root")


def build_datamodule(cfg: DictConfig, net) -> XrayDataModule:
    """The DataModule of `cfg.data`: its `sources` instantiated, its other keys as arguments."""
    options = {k: v for k, v in cfg.data.items() if k not in ("sources", *DATA_ANCHORS)}
    sources = {name: instantiate(source) for name, source in cfg.data.sources.items() if source is not None}
    preprocess, cache = build_preprocessing(cfg)
    return XrayDataModule(
        sources,
        net.input_spec,
        preprocess=preprocess,
        augmentation=build_augmentation(**cfg.augment),
        cache=cache,
        **OmegaConf.to_container(DictConfig(options), resolve=True),
    )


def build_preprocessing(cfg: DictConfig) -> tuple[Preprocess, PreprocessCache | None]:
    """The deterministic preprocessing of `cfg.preprocessing` and its disk cache (if on)."""
    steps = OmegaConf.to_container(cfg.preprocessing, resolve=True)
    cache_dir, use_cache = steps.pop("cache_dir"), steps.pop("cache")
    return build_preprocess(**steps), PreprocessCache(cache_dir, steps) if use_cache else None


def predict_splits(
    trainer: pl.Trainer,
    model: CovidClassifier,
    datamodule: XrayDataModule,
    ckpt_path: str | None,
    splits: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """COVID-19 probability of every image of each asked-for (default: every), non-empty
    evaluation set, in row order."""
    splits = [s for s in (splits or datamodule.eval_sets) if len(datamodule.subset(s))]
    loaders = [datamodule.dataloader(s) for s in splits]
    outputs = trainer.predict(model, dataloaders=loaders, ckpt_path=ckpt_path)
    if len(loaders) == 1:
        outputs = [outputs]
    return {s: torch.cat(batches).float().cpu().numpy() for s, batches in zip(splits, outputs)}


def write_predictions(path: Path, datamodule: XrayDataModule, probabilities: dict[str, np.ndarray], threshold: float) -> None:
    frames = []
    for split, prob in probabilities.items():
        frame = datamodule.subset(split).frame.copy()
        frame.insert(0, "split", split)
        frame["prob_covid"] = prob
        frame["predicted"] = np.where(prob >= threshold, "covid", "no_finding")
        frames.append(frame)
    pd.concat(frames, ignore_index=True).to_csv(path, index=False)


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train as `cfg` says, writing everything into `run_dir`; returns results.json's content."""
    run_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.seed, workers=True)
    net = build_classifier(cfg.backbone, keep_fc=cfg.freeze.get("keep_fc", 0))
    trainable, total = apply_freeze(net, **cfg.freeze)
    log.info("backbone %s: %s of %s parameters trainable", net.backbone_name, f"{trainable:,}", f"{total:,}")

    datamodule = build_datamodule(cfg, net)
    datamodule.setup("fit")
    print_data_summary(datamodule.write_data_files(run_dir), run_dir)
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    model = CovidClassifier(
        net,
        optimizer=instantiate(cfg.optimizer),
        scheduler=scheduler,
        threshold=cfg.threshold,
        config=OmegaConf.to_container(cfg, resolve=True),
    )
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=instantiate_all(cfg.get("callbacks")), logger=instantiate_all(cfg.get("logger")) or False
    )
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))

    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    best = best or None
    if len(datamodule.subset("test")):
        trainer.test(model, datamodule=datamodule, ckpt_path=best, verbose=False)
    probabilities = predict_splits(trainer, model, datamodule, best)
    write_predictions(run_dir / "predictions.csv", datamodule, probabilities, cfg.threshold)

    targets = {s: datamodule.subset(s).targets for s in probabilities}
    results: dict[str, Any] = {s: summarize(targets[s], p, cfg.threshold) for s, p in probabilities.items()}
    results["run"] = {
        "backbone": net.backbone_name,
        "best_checkpoint": str(Path(best).relative_to(run_dir)) if best and Path(best).is_relative_to(run_dir) else best,
        "epochs_trained": trainer.current_epoch,
        "parameters": {"trainable": trainable, "total": total},
        "seed": cfg.seed,
    }
    (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print_results(results, run_dir)
    return results
