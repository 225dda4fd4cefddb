"""Train a COVID-19 vs no-finding classifier: `python train.py [group=option ...] [key=value ...]`;
the lung segmenter: `python train.py --config-name segment [...]` (conf/segment.yaml)."""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import covid_tl.preprocess.schema  # noqa: F401  (structured configs, registered before Hydra composes)
from covid_tl.runtime.config_check import command_line_error

CONFIG_DIR = Path(__file__).resolve().parent / "conf"


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Runs the task; returns `optimized_metric` of its results, for a sweeper (hparams_search)."""
    from covid_tl.core.errors import ConfigError
    from covid_tl.runtime.run_checks import check_train_config
    from covid_tl.tasks.pretrain import pretrain  # heavy imports after Hydra has parsed the command line
    from covid_tl.tasks.segment import segment
    from covid_tl.tasks.train import train
    from covid_tl.runtime.tracking import metric_value

    tasks = {"classify": train, "pretrain": pretrain, "segment": segment}
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        if cfg.task not in tasks:
            raise ConfigError(f"unknown task {cfg.task!r}; valid: {', '.join(tasks)}")
        check_train_config(cfg)  # before the run dir holds anything beyond Hydra's .hydra/ and log
        results = tasks[cfg.task](cfg, run_dir)  # conf's hydra.callbacks.run_dir holds run.lock
        # Only the process that wrote results.json has results (under DDP the others return {}).
        return metric_value(results, cfg.optimized_metric) if cfg.get("optimized_metric") and results else None
    except ConfigError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    if error := command_line_error(sys.argv[1:], CONFIG_DIR, "train"):
        sys.exit(error)
    main()
