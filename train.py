"""Train a COVID-19 vs no-finding classifier: `python train.py [group=option ...] [key=value ...]`;
the lung segmenter: `python train.py --config-name segment [...]` (conf/segment.yaml)."""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import covid_tl.preprocess.schema  # noqa: F401  (structured configs, registered before Hydra composes)
from covid_tl.config_check import unknown_group_option

CONFIG_DIR = Path(__file__).resolve().parent / "conf"


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    from covid_tl.errors import ConfigError
    from covid_tl.tasks.pretrain import pretrain  # heavy imports after Hydra has parsed the command line
    from covid_tl.tasks.segment import segment
    from covid_tl.tasks.train import train

    tasks = {"classify": train, "pretrain": pretrain, "segment": segment}
    try:
        if cfg.task not in tasks:
            raise ConfigError(f"unknown task {cfg.task!r}; valid: {', '.join(tasks)}")
        tasks[cfg.task](cfg, Path(HydraConfig.get().runtime.output_dir))
    except ConfigError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    if error := unknown_group_option(sys.argv[1:], CONFIG_DIR):
        sys.exit(error)
    main()
