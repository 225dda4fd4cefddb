"""Data time of one epoch on xray-mini with crop_inpaint: no cache, cold cache, warm cache.

    python benchmarks/preprocess_cache.py [--xray-mini DIR] [--preprocessing crop_inpaint|lungs] [--size 224]

Iterates the training split's DataLoader (no model) three times: without a cache, filling a
fresh cache, and reading it back. Prints seconds per epoch and the no-cache / warm ratio, and
the setup time with a cold and a warm cache (setup decodes every file, and with a cache
preprocesses and stores it: a cold cache is filled there, not in the epoch).
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from covid_tl.build import build_preprocessing
from covid_tl.data.datamodule import XrayDataModule
from covid_tl.data.sources import ManifestSource
from covid_tl.preprocess.model_input import InputSpec
from covid_tl.preprocess.cache import PreprocessCache
from covid_tl.preprocess.pipeline import Preprocess

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = Path(os.environ.get("COVID_TL_XRAY_MINI", ROOT.parent / "shared" / "data" / "xray-mini"))


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--xray-mini", type=Path, default=DEFAULT)
    parser.add_argument("--preprocessing", default="crop_inpaint")
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    if not (args.xray_mini / "manifest.csv").is_file():
        raise SystemExit(f"xray-mini not found at {args.xray_mini}: pass --xray-mini DIR")
    with tempfile.TemporaryDirectory() as directory:
        with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
            cfg = compose("train", overrides=[f"preprocessing={args.preprocessing}", f"preprocessing.cache_dir={directory}"])
        preprocess, cache = build_preprocessing(cfg)
        none = epoch_seconds(args.xray_mini, preprocess, None, args.size)
        cold = epoch_seconds(args.xray_mini, preprocess, cache, args.size)
        cold_setup = epoch_seconds.setup
        warm = epoch_seconds(args.xray_mini, preprocess, build_preprocessing(cfg)[1], args.size)
        warm_setup = epoch_seconds.setup
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; preprocessing={args.preprocessing}, input {args.size} px, num_workers=0")
    print(f"epoch data time: no cache {none:.2f} s, cold cache {cold:.2f} s, warm cache {warm:.2f} s; "
          f"no cache / warm = {none / warm:.1f}x")
    print(f"setup (decodes every file; with a cache, fills it when cold): cold cache {cold_setup:.2f} s, "
          f"warm cache {warm_setup:.2f} s")


if __name__ == "__main__":
    main()
