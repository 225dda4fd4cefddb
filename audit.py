"""The shortcut audit: `python audit.py ckpt_path=<path> [external=[...]]` or `python audit.py data=<option> mode=data`."""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import covid_tl.preprocess.schema  # noqa: F401  (mode=data composes preprocessing's structured configs)
from covid_tl.runtime.config_check import check_required, command_line_error

CONFIG_DIR = Path(__file__).resolve().parent / "conf"


@hydra.main(version_base="1.3", config_path="conf", config_name="audit")
def main(cfg: DictConfig) -> None:
    from covid_tl.core.errors import ConfigError

    try:
        check_required(cfg)  # before the task's imports (seconds): a forgotten ckpt_path says so at once
        from covid_tl.tasks.audit import audit

        audit(cfg, Path(HydraConfig.get().runtime.output_dir))
    except ConfigError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    if error := command_line_error(sys.argv[1:], CONFIG_DIR, "audit"):
        sys.exit(error)
    main()
