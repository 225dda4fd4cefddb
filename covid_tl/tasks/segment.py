"""task=segment: train the lung segmenter on films with lung masks, judge it on every split at
full size, and write the checkpoint that `LungSegmenter.load(path)` (and the bundled one) reads.

    python train.py --config-name segment [data=lung_masks] [segmenter.input_size=192] ...
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import cv2
import pandas as pd
import pytorch_lightning as pl
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from covid_tl.engine.build import instantiate_all
from covid_tl.reporting.console import print_data_summary
from covid_tl.data.segmentation import LungMaskDataModule
from covid_tl.data.split import SPLITS
from covid_tl.data.validate import BadInputError
from covid_tl.core.errors import ConfigError
from covid_tl.models.segmenter_module import LungSegmentationModule
from covid_tl.models.segmenter import LungSegmenter
from covid_tl.models.segmenter_scores import mask_grid, score_films, spread_over, summarize_by
from covid_tl.core.provenance import provenance
from covid_tl.reporting.results import Results, write_results

log = logging.getLogger(__name__)

CHECKPOINT = "lung_segmenter.pt"


def segment(cfg: DictConfig, run_dir: Path) -> Results | None:
    """Train as `cfg` says into `run_dir`; returns (and writes) results.json."""
    if "segmenter" not in cfg:
        raise ConfigError("task=segment has its own config: python train.py --config-name segment [overrides]")
    target = cfg.data.get("_target_")
    if target is None or not issubclass(get_class(target), LungMaskDataModule):
        raise ConfigError("task=segment needs lung-mask data: data=lung_masks or data=cohen_v7labs_lungs")
    run_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.seed, workers=True)
    segmenter: LungSegmenter = instantiate(cfg.segmenter)
    datamodule = _datamodule(cfg, segmenter.input_size, run_dir)
    module = LungSegmentationModule(segmenter.net, instantiate(cfg.optimizer),
                                    instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
                                    threshold=segmenter.threshold, config=OmegaConf.to_container(cfg, resolve=True))
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=instantiate_all(cfg.get("callbacks")),
                                      logger=instantiate_all(cfg.get("logger")) or False)
    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    seconds = time.perf_counter() - started
    if not trainer.is_global_zero:
        return None
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if best:  # the weights of the best validation loss, not the last epoch's
        module.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["state_dict"])
    # Judged as written: with half=true the figures are those of the float16 weights.
    segmenter = LungSegmenter.load(segmenter.to("cpu").save(run_dir / CHECKPOINT, half=cfg.half))
    sets = _evaluate(cfg, segmenter, datamodule, run_dir)
    results = Results(sets=sets, kind="segmenter", run={"epochs_trained": trainer.current_epoch, "training_seconds": round(seconds, 1),
                      "best_checkpoint": str(Path(best).relative_to(run_dir)) if best and Path(best).is_relative_to(run_dir) else best or None,
                      "seed": cfg.seed, "digest": segmenter.digest, **provenance()})
    segmenter.notes = {"trained_by": "task=segment", "test": {k: sets.get("test", {}).get(k) for k in ("n", "dice", "dice_ci95", "iou")},
                       "held_out_patients": sorted({r["patient_id"] for s in ("val", "test") for r in datamodule.rows(s)})}
    segmenter.save(run_dir / CHECKPOINT, half=cfg.half)
    write_results(run_dir, results)
    _print(sets, run_dir)
    return results


def _datamodule(cfg: DictConfig, image_size: int, run_dir: Path) -> LungMaskDataModule:
    """The data module at the segmenter's input size with the augment group's pipeline; its
    files read (bad ones reported), splits.csv and data_summary.json written."""
    if cfg.get("watermark") and cfg.watermark.get("p", 0) > 0:
        raise ConfigError("task=segment does not transplant watermarks: watermark.p must be 0 (watermark=none)")
    # Objects go in through the partial: passed to instantiate, a pipeline would become a config.
    datamodule = instantiate(cfg.data, _partial_=True, _convert_="all")(image_size=image_size, augmentation=instantiate(cfg.augment, _convert_="all"))
    try:
        datamodule.setup("fit")
    except BadInputError as error:
        raise (error.written_to(run_dir) if rank_zero_only.rank == 0 else error) from None
    if rank_zero_only.rank == 0:
        print_data_summary(datamodule.write_data_files(run_dir), run_dir)
    return datamodule


def _evaluate(cfg: DictConfig, segmenter: LungSegmenter, datamodule: LungMaskDataModule, run_dir: Path) -> dict[str, Any]:
    """masks.csv (every film's scores), results.json's splits, preview.png of held-out films."""
    tables = {split: score_films(segmenter, rows, datamodule.read_pair) for split in SPLITS if (rows := datamodule.rows(split))}
    pd.concat(tables.values(), ignore_index=True).to_csv(run_dir / "masks.csv", index=False)
    results = {split: summarize_by(table, ("source", "set"), cfg.bootstrap, cfg.seed) for split, table in tables.items()}
    shown = spread_over(datamodule.rows("test") or datamodule.rows("val"), "reader", cfg.preview)
    cv2.imwrite(str(run_dir / "preview.png"), mask_grid(segmenter, shown, datamodule.read_pair))
    return results


def _print(results: dict[str, Any], run_dir: Path) -> None:
    for split in (s for s in SPLITS if s in results):
        r = results[split]
        print(f"{split:5s} n={r['n']:3d}  Dice {r['dice']:.3f} {r['dice_ci95']}  IoU {r['iou']:.3f}  "
              f"two components {r['two_components']:.2f}")
    print(f"segmenter: {run_dir / CHECKPOINT}  (LungSegmenter.load(path); preview: {run_dir / 'preview.png'})")
