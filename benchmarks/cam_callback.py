"""Cost of the Grad-CAM callback relative to epoch time.

    python benchmarks/cam_callback.py [--epochs 3] [override ...]
    python benchmarks/cam_callback.py data=xray_mini backbone=efficientnet_lite0 backbone.weights=none
    python benchmarks/cam_callback.py --tiny     # small phantoms, 2 epochs (seconds)

Trains the same configuration once, timing every epoch (train + validation) and, inside it,
the callback's own work (K=8 CAMs, the grid, the PNG and the TensorBoard image). Prints the
mean epoch time, the mean callback time and their ratio; the first epoch is left out (warm-up).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

import covid_tl.engine.build as building
from covid_tl.cam.callback import GradCAMCallback
from harness import TINY, machine, train


class EpochTimer(pl.Callback):
    def __init__(self) -> None:
        self.epochs: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.epochs.append(time.perf_counter() - self.start)


def timed_run(overrides: list[str], run_dir: Path) -> tuple[list[float], list[float]]:
    """Seconds of every epoch and of the callback's work in it, for one train.py run."""
    callback_times: list[float] = []
    original, build = GradCAMCallback.on_validation_epoch_end, building.instantiate_all

    def timed(self, trainer, pl_module):
        start = time.perf_counter()
        original(self, trainer, pl_module)
        if not trainer.sanity_checking:
            callback_times.append(time.perf_counter() - start)

    timer = EpochTimer()
    GradCAMCallback.on_validation_epoch_end = timed
    building.instantiate_all = lambda group, *args: build(group, *args) + ([timer] if group and "grad_cam" in group else [])
    try:
        train(overrides, run_dir)
    finally:
        GradCAMCallback.on_validation_epoch_end, building.instantiate_all = original, build
    return timer.epochs, callback_times


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="small phantoms, 2 epochs")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    if args.tiny:
        args.epochs, args.overrides = 2, [*TINY, *args.overrides]
    with tempfile.TemporaryDirectory() as run_dir:
        all_epochs, all_cams = timed_run(["logger=default", *args.overrides, f"trainer.max_epochs={args.epochs}"],
                                         Path(run_dir))
    epochs, cams = all_epochs[1:], all_cams[1:]
    mean_epoch, mean_cam = sum(epochs) / len(epochs), sum(cams) / len(cams)
    print(f"{machine()}; overrides: {' '.join(args.overrides) or '(defaults)'}")
    print(f"epoch (train + validation, callback included): {mean_epoch:.2f} s; Grad-CAM callback: {mean_cam:.3f} s "
          f"({100 * mean_cam / mean_epoch:.1f}% of the epoch, mean of epochs 2..{args.epochs})")
    return {"epochs": all_epochs, "callback": all_cams, "share": mean_cam / mean_epoch}


if __name__ == "__main__":
    main()
