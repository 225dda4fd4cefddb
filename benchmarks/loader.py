"""Loader throughput: setup (every film decoded once to check it, its model input cached), then
images/s of an epoch reading the cache (first and second epoch) and of one decoding every film
(the cache off: what each epoch cost before), on xray-mini or synthetic NIH-like films.

    python benchmarks/loader.py [--xray-mini DIR] [--workers 0,2]
    python benchmarks/loader.py --films 1000,5000 [--film-dir /tmp/covid-tl-films] [--workers 0]

--films renders the largest count once to --film-dir (1024 px PNGs, outside the repository,
kept for later runs) and times the first N of them for each N, with the seconds per 1,000
images so a ChestX-ray14 run (112,120 films) can be planned. Setup (every file decoded once to
check it) is timed apart. Images go to 224x224x3 (EfficientNet-Lite0's input), batch 32.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from covid_tl.data.datamodule import XrayDataModule
from covid_tl.data.sources import ManifestSource
from covid_tl.preprocess.cache import PreprocessCache
from covid_tl.preprocess.model_input import InputSpec

DEFAULT = Path(os.environ.get("COVID_TL_XRAY_MINI", Path(__file__).resolve().parents[2] / "shared" / "data" / "xray-mini"))


def epoch_rates(manifest: Path, workers: int, cache_dir: Path) -> dict[str, float]:
    """Setup seconds, then images/s of epochs over the training images of `manifest`."""
    start = time.perf_counter()
    dm = XrayDataModule({"films": ManifestSource(manifest)}, InputSpec(size=224, channels=3), val_fraction=0.01,
                        test_fraction=0.0, batch_size=32, num_workers=workers,
                        cache=PreprocessCache(cache_dir, {"steps": []}))
    dm.setup()
    rates = {"setup_s": time.perf_counter() - start}
    for epoch in ("first", "second", "uncached"):
        if epoch == "uncached":
            dm.prepared.input_cache = None
        start, n = time.perf_counter(), 0
        for images, _targets in dm.dataloader("train"):
            n += len(images)
        rates[epoch] = n / (time.perf_counter() - start)
    return rates


def report(name: str, workers: int, rates: dict[str, float], n: int) -> None:
    print(f"{name}, num_workers={workers}: setup {rates['setup_s']:.1f} s ({1000 * rates['setup_s'] / n:.1f} s per 1,000); "
          + "; ".join(f"{e} epoch {rates[e]:.0f} images/s ({1000 / rates[e]:.1f} s per 1,000)"
                      for e in ("first", "second", "uncached")), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--xray-mini", type=Path, default=DEFAULT)
    parser.add_argument("--films", default=None, help="comma-separated counts of synthetic 1024 px films")
    parser.add_argument("--film-dir", type=Path, default=Path(tempfile.gettempdir()) / "covid-tl-films")
    parser.add_argument("--workers", default="0")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; images to 224x224x3, batch 32, cache on")
    workers = [int(w) for w in args.workers.split(",")]
    if args.films is None:
        if not (args.xray_mini / "manifest.csv").is_file():
            raise SystemExit(f"xray-mini not found at {args.xray_mini}: pass --xray-mini DIR or --films N")
        for w in workers:
            with tempfile.TemporaryDirectory() as cache:
                report("xray-mini", w, epoch_rates(args.xray_mini / "manifest.csv", w, Path(cache)), 174)
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from films import render_films  # benchmarks/films.py

    counts = sorted(int(n) for n in args.films.split(","))
    start = time.perf_counter()
    manifest = render_films(args.film_dir, counts[-1], 1024)
    print(f"{counts[-1]} films of 1024 px in {args.film_dir} ({time.perf_counter() - start:.0f} s to render or find)")
    table = pd.read_csv(manifest)
    for n in counts:
        subset = args.film_dir / f"manifest_{n}.csv"
        table.head(n).to_csv(subset, index=False)
        for w in workers:
            with tempfile.TemporaryDirectory() as cache:
                report(f"{n} films", w, epoch_rates(subset, w, Path(cache)), n)


if __name__ == "__main__":
    main()
