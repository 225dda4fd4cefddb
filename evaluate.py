"""Evaluate a trained checkpoint: `python evaluate.py ckpt_path=<path> [data=...] [external=[...]]`."""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from covid_tl.errors import ConfigError
    from covid_tl.tasks.evaluate import evaluate

    try:
        evaluate(cfg, Path(HydraConfig.get().runtime.output_dir))
    except ConfigError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
