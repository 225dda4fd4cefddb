"""Loader throughput on xray-mini: decode + resize to 224, with 0 and 2 DataLoader workers.

    python benchmarks/loader.py [--xray-mini DIR] [--epochs 3]

Prints images/s per worker count (the first epoch, which warms the page cache, is not timed).
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

from covid_tl.data.datamodule import XrayDataModule
from covid_tl.data.sources import ManifestSource
from covid_tl.preprocess.model_input import InputSpec

DEFAULT = Path(os.environ.get("COVID_TL_XRAY_MINI", Path(__file__).resolve().parents[2] / "shared" / "data" / "xray-mini"))


def images_per_second(root: Path, workers: int, epochs: int) -> float:
    dm = XrayDataModule({"xray_mini": ManifestSource(root / "manifest.csv")}, InputSpec(size=224, channels=3),
                        val_fraction=0.1, test_fraction=0.0, batch_size=32, num_workers=workers)
    dm.setup()
    loader = dm.dataloader("train")
    for _ in loader:  # warm-up: page cache, worker start
        pass
    start, n = time.perf_counter(), 0
    for _ in range(epochs):
        for images, _targets in loader:
            n += len(images)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--xray-mini", type=Path, default=DEFAULT)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    if not (args.xray_mini / "manifest.csv").is_file():
        raise SystemExit(f"xray-mini not found at {args.xray_mini}: pass --xray-mini DIR")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; images decoded + resized to 224x224x3")
    for workers in (0, 2):
        print(f"num_workers={workers}: {images_per_second(args.xray_mini, workers, args.epochs):.0f} images/s")


if __name__ == "__main__":
    main()
