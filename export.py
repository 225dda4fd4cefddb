"""A checkpoint's network as a file others can run: `python export.py ckpt_path=<path> format=onnx|torchscript`."""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from covid_tl.runtime.config_check import check_required, command_line_error

CONFIG_DIR = Path(__file__).resolve().parent / "conf"


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> None:
    from covid_tl.core.errors import ConfigError

    output_dir = Path(cfg.output_dir or HydraConfig.get().runtime.output_dir)
    try:
        check_required(cfg)  # before the task's imports (seconds): a forgotten ckpt_path says so at once
        from covid_tl.tasks.export import export

        path = export(cfg, output_dir)
    except ConfigError as error:
        sys.exit(f"error: {error}")
    print(f"wrote {path} and {path.parent / 'model.json'} (how to prepare its input, its threshold)")


if __name__ == "__main__":
    if error := command_line_error(sys.argv[1:], CONFIG_DIR, "export"):
        sys.exit(error)
    main()
