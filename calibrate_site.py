"""A model's operating point for a new hospital: `python calibrate_site.py ckpt_path=<model> site=<name> data=<its films> [labelled=n]`."""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from covid_tl.runtime.config_check import check_required, command_line_error

CONFIG_DIR = Path(__file__).resolve().parent / "conf"


@hydra.main(version_base="1.3", config_path="conf", config_name="calibrate_site")
def main(cfg: DictConfig) -> None:
    from covid_tl.core.errors import ConfigError

    try:
        check_required(cfg)  # before the task's imports (seconds): a forgotten ckpt_path says so at once
        from covid_tl.tasks.calibrate_site import calibrate_site

        calibrate_site(cfg, Path(HydraConfig.get().runtime.output_dir))
    except ConfigError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    if error := command_line_error(sys.argv[1:], CONFIG_DIR, "calibrate_site"):
        sys.exit(error)
    main()
