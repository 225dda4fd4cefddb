"""Evaluate a checkpoint on the splits of the data it was trained with."""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from covid_tl.checkpoint import load_run
from covid_tl.metrics import summarize
from covid_tl.reporting import print_results
from covid_tl.training import build_datamodule, predict_splits, write_predictions
from covid_tl.errors import ConfigError


def evaluate(ckpt_path: str, splits: Sequence[str], output_dir: Path, accelerator: str = "auto") -> dict[str, Any]:
    """Metrics of the checkpoint per split, written to output_dir/results.json and predictions.csv."""
    cfg, model = load_run(ckpt_path)
    datamodule = build_datamodule(cfg, model.net)
    datamodule.setup("test")
    unknown = sorted(set(splits) - set(datamodule.eval_sets))
    if unknown:
        raise ConfigError(f"unknown split(s) {unknown}; valid: {', '.join(datamodule.eval_sets)}")
    trainer = pl.Trainer(accelerator=accelerator, devices=1, logger=False, enable_checkpointing=False, enable_model_summary=False)
    probabilities = predict_splits(trainer, model, datamodule, None, splits)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_predictions(output_dir / "predictions.csv", datamodule, probabilities, cfg.threshold)
    results: dict[str, Any] = {
        s: summarize(datamodule.subset(s).targets, p, cfg.threshold) for s, p in probabilities.items()
    }
    results["run"] = {"checkpoint": str(ckpt_path), "backbone": cfg.backbone.name}
    (output_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print_results(results, output_dir)
    return results
