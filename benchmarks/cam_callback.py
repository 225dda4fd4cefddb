"""Cost of the Grad-CAM callback relative to epoch time.

    python benchmarks/cam_callback.py [--epochs 3] [override ...]
    python benchmarks/cam_callback.py data=xray_mini backbone=efficientnet_lite0 backbone.weights=none

Trains the same configuration once, timing every epoch (train + validation) and, inside it,
the callback's own work (K=8 CAMs, the grid, the PNG and the TensorBoard image). Prints the
mean epoch time, the mean callback time and their ratio; the first epoch is left out (warm-up).
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

import covid_tl.tasks.train as training
from covid_tl.cam.callback import GradCAMCallback

CONF = Path(__file__).resolve().parents[1] / "conf"


class EpochTimer(pl.Callback):
    def __init__(self) -> None:
        self.epochs: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.epochs.append(time.perf_counter() - self.start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    callback_times: list[float] = []
    original = GradCAMCallback.on_validation_epoch_end

    def timed(self, trainer, pl_module):
        start = time.perf_counter()
        original(self, trainer, pl_module)
        if not trainer.sanity_checking:
            callback_times.append(time.perf_counter() - start)

    GradCAMCallback.on_validation_epoch_end = timed
    timer = EpochTimer()
    build = training.instantiate_all
    training.instantiate_all = lambda group, **kw: build(group, **kw) + ([timer] if group is not None and "grad_cam" in group else [])
    with tempfile.TemporaryDirectory() as run_dir, initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"trainer.max_epochs={args.epochs}", "logger=default", *args.overrides],
                      return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = run_dir
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            del cfg["hydra"]  # as the task function of a real run sees it
        training.train(cfg, Path(run_dir))
    epochs, cams = timer.epochs[1:], callback_times[1:]
    mean_epoch, mean_cam = sum(epochs) / len(epochs), sum(cams) / len(cams)
    print(f"machine: {platform.machine()}, overrides: {' '.join(args.overrides) or '(defaults)'}")
    print(f"epoch (train + validation, callback included): {mean_epoch:.2f} s; Grad-CAM callback: {mean_cam:.3f} s "
          f"({100 * mean_cam / mean_epoch:.1f}% of the epoch, mean of epochs 2..{args.epochs})")


if __name__ == "__main__":
    main()
