"""Data time of one epoch on xray-mini with crop_inpaint: no cache, cold cache, warm cache.

    python benchmarks/preprocess_cache.py [--xray-mini DIR] [--preprocessing crop_inpaint|lungs] [--size 224]
    python benchmarks/preprocess_cache.py --tiny     # 12 synthetic films of 96 px, 32 px inputs (seconds)

Iterates the training split's DataLoader (no model) three times: without a cache, filling a
fresh cache, and reading it back. Prints seconds per epoch and the no-cache / warm ratio, and
the setup time with a cold and a warm cache (setup decodes every file, and with a cache
preprocesses and stores it: a cold cache is filled there, not in the epoch).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from covid_tl.engine.build import build_preprocessing
from covid_tl.data.datamodule import XrayDataModule
from covid_tl.data.sources import ManifestSource
from covid_tl.preprocess.model_input import InputSpec
from covid_tl.preprocess.cache import PreprocessCache
from covid_tl.preprocess.pipeline import Preprocess
from films import render_films
from harness import composed, machine, xray_mini


def epoch_seconds(root: Path, preprocess: Preprocess, cache: PreprocessCache | None, size: int) -> float:
    """Seconds of one training epoch's data; with a cache, setup (which decodes every file,
    and so fills a cold cache) is timed too, in `epoch_seconds.setup`."""
    dm = XrayDataModule({"xray_mini": ManifestSource(root / "manifest.csv")}, InputSpec(size=size, channels=3),
                        preprocess=preprocess, cache=cache, val_fraction=0.1, test_fraction=0.0)
    start = time.perf_counter()
    dm.setup()
    epoch_seconds.setup = time.perf_counter() - start
    start = time.perf_counter()
    for _ in dm.dataloader("train"):
        pass
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--xray-mini", type=Path, default=None, help="default: $COVID_TL_XRAY_MINI or ../shared/data")
    parser.add_argument("--preprocessing", default="crop_inpaint")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--tiny", action="store_true", help="12 synthetic films of 96 px, 32 px inputs")
    args = parser.parse_args(argv)
    size = 32 if args.tiny else args.size
    with tempfile.TemporaryDirectory() as directory:
        root = render_films(Path(directory) / "films", 12, 96).parent if args.tiny else args.xray_mini or xray_mini()
        if root is None or not (root / "manifest.csv").is_file():
            raise SystemExit(f"xray-mini not found at {root}: pass --xray-mini DIR")
        figures = timings(root, args.preprocessing, size, Path(directory) / "cache")
    print(f"{machine()}; {root}, preprocessing={args.preprocessing}, input {size} px, num_workers=0")
    print(f"epoch data time: no cache {figures['none']:.2f} s, cold cache {figures['cold']:.2f} s, warm cache "
          f"{figures['warm']:.2f} s; no cache / warm = {figures['none'] / figures['warm']:.1f}x")
    print(f"setup (decodes every file; with a cache, fills it when cold): cold cache {figures['cold_setup']:.2f} s, "
          f"warm cache {figures['warm_setup']:.2f} s")
    return figures


def timings(root: Path, preprocessing: str, size: int, cache_dir: Path) -> dict[str, float]:
    """Epoch data time with no cache, a cold and a warm cache, and setup time cold and warm."""
    cfg = composed("train", [f"preprocessing={preprocessing}", f"preprocessing.cache_dir={cache_dir}"], cache_dir.parent)
    preprocess, cache = build_preprocessing(cfg)
    none = epoch_seconds(root, preprocess, None, size)
    cold = epoch_seconds(root, preprocess, cache, size)
    cold_setup = epoch_seconds.setup
    warm = epoch_seconds(root, preprocess, build_preprocessing(cfg)[1], size)
    return {"none": none, "cold": cold, "warm": warm, "cold_setup": cold_setup, "warm_setup": epoch_seconds.setup}


if __name__ == "__main__":
    main()
