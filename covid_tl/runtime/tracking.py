"""What the experiment loggers get besides the epoch curves: the run config as flat
hyperparameters, the final results beside them (TensorBoard's HPARAMS tab, MLflow, W&B), and
the run's record, card and figures as files beside the run (MLflow, W&B), and the one number a
hyperparameter sweeper optimises."""
from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger, MLFlowLogger, TensorBoardLogger, WandbLogger

from covid_tl.core.errors import ConfigError
from covid_tl.reporting.results import Results

#: Rates of results.json that every logger gets at the end, as `results/<split>/<metric>`.
FINAL_METRICS = ("sensitivity", "specificity", "accuracy", "auroc")
#: Files of the run dir (globs) that MLflow and W&B keep with the run: the record (results.json),
#: the card, the figures (roc, confusion matrix, reliability) and the per-epoch Grad-CAM grids.
RUN_ARTIFACTS = ("results.json", "model_card.md", "*.png", "cams/*.png")

#: Log lines that tell a user nothing to act on: (logger name, text in the message).
_NOISE = (
    ("pytorch_lightning.utilities.rank_zero", "litlogger"),  # an advertisement on every Trainer
    ("pytorch_lightning.loggers.mlflow", "not found. Creating it."),  # every fresh per-run store
)


class _DropMessages(logging.Filter):
    def __init__(self, texts: Iterable[str]) -> None:
        super().__init__()
        self.texts = tuple(texts)

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(text in record.getMessage() for text in self.texts)


def quiet_lightning() -> None:
    """Drop the log lines of `_NOISE` (once per process, however often called)."""
    for name, text in _NOISE:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) and text in f.texts for f in logger.filters):
            logger.addFilter(_DropMessages([text]))


class QuietWandbLogger(WandbLogger):
    """Lightning's WandbLogger without the `anonymous=None` it always hands to wandb.init, which
    wandb (0.2x on) answers with a deprecation warning on every run."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)


def flat_config(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The composed config as `a.b.c: value`, the names that `key=value` overrides use."""
    container = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            flat[prefix[:-1]] = node

    walk(container, "")
    return flat


def final_metrics(results: Results) -> dict[str, float]:
    """`results/<split>/<metric>` for every set of results.json and each defined rate."""
    return {
        f"results/{split}/{name}": float(values[name])
        for split, values in results.sets.items()
        for name in FINAL_METRICS
        if isinstance(values.get(name), (int, float)) and not math.isnan(values[name])
    }


def log_config(loggers: Iterable[Logger], cfg: DictConfig) -> None:
    """Every logger gets the flat run config at the start (a crashed run keeps it)."""
    params = flat_config(cfg)
    for logger in loggers:
        logger.log_hyperparams(params)


def log_results(loggers: Iterable[Logger], cfg: DictConfig, results: Results, step: int, run_dir: Path) -> None:
    """Every logger gets the final metrics (at training's last `step`); TensorBoard pairs them
    with the config, so runs compare side by side in its HPARAMS tab; MLflow and W&B get the
    run's files of RUN_ARTIFACTS, so a tracked run is complete without its run dir."""
    metrics = final_metrics(results)
    files = run_artifacts(run_dir)
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(flat_config(cfg), metrics, step)
        else:
            logger.log_metrics(metrics, step)
        log_artifacts(logger, run_dir, files)
        logger.finalize("success")


def run_artifacts(run_dir: Path) -> list[Path]:
    """The files of RUN_ARTIFACTS that the run wrote, sorted."""
    return sorted({path for pattern in RUN_ARTIFACTS for path in run_dir.glob(pattern) if path.is_file()})


def log_artifacts(logger: Logger, run_dir: Path, files: Iterable[Path]) -> None:
    """`files` kept with the logger's run under their paths in the run dir (cams/...); loggers
    without a place for files (CSV, TensorBoard) are left alone."""
    for path in files:
        if isinstance(logger, MLFlowLogger):
            folder = path.parent.relative_to(run_dir).as_posix()
            logger.experiment.log_artifact(logger.run_id, str(path), None if folder == "." else folder)
        elif isinstance(logger, WandbLogger):
            logger.experiment.save(str(path), base_path=str(run_dir), policy="now")


def metric_value(results: Results, name: str) -> float:
    """The number `optimized_metric` names: `val/auroc` is results.json's set val -> auroc;
    undefined is NaN."""
    split, _, metric = name.partition("/")
    value = results.sets.get(split, {}).get(metric, "absent")
    if value == "absent" or isinstance(value, (Mapping, list)):
        splits = [s for s, v in results.sets.items() if "auroc" in v]
        examples = ", ".join(f"{s}/{m}" for s in splits[:2] for m in FINAL_METRICS) or ", ".join(results.sets)
        raise ConfigError(f"optimized_metric {name!r} is not in results.json; e.g. {examples}")
    return float("nan") if value is None else float(value)
