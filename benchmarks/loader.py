"""Loader throughput: setup (every film decoded once to check it, its model input cached), then
images/s of an epoch reading the cache (first and second epoch) and of one decoding every film
(the cache off: what each epoch cost before), on xray-mini or synthetic NIH-like films.

    python benchmarks/loader.py [--xray-mini DIR] [--workers 0,2]
    python benchmarks/loader.py --films 1000,5000 [--film-dir /tmp/covid-tl-films] [--workers 0]
    python benchmarks/loader.py --tiny     # 16 films of 96 px in a temporary folder (seconds)

--films renders the largest count once to --film-dir (1024 px PNGs, outside the repository,
kept for later runs) and times the first N of them for each N, with the seconds per 1,000
images so a ChestX-ray14 run (112,120 films) can be planned. Setup (every file decoded once to
check it) is timed apart. Images go to 224x224x3 (EfficientNet-Lite0's input), batch 32.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from covid_tl.data.datamodule import XrayDataModule
from covid_tl.data.sources import ManifestSource
from covid_tl.preprocess.cache import PreprocessCache
from covid_tl.preprocess.model_input import InputSpec
from harness import machine, xray_mini


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


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--xray-mini", type=Path, default=None, help="default: $COVID_TL_XRAY_MINI or ../shared/data")
    parser.add_argument("--films", default=None, help="comma-separated counts of synthetic 1024 px films")
    parser.add_argument("--film-dir", type=Path, default=Path(tempfile.gettempdir()) / "covid-tl-films")
    parser.add_argument("--film-size", type=int, default=1024)
    parser.add_argument("--workers", default="0")
    parser.add_argument("--tiny", action="store_true", help="16 films of 96 px in a temporary folder")
    args = parser.parse_args(argv)
    print(f"{machine()}; images to 224x224x3, batch 32, cache on")
    workers = [int(w) for w in args.workers.split(",")]
    if args.tiny:
        with tempfile.TemporaryDirectory() as tmp:
            return films(["16"], Path(tmp), 96, workers)
    if args.films is None:
        root = args.xray_mini or xray_mini()
        if root is None or not (root / "manifest.csv").is_file():
            raise SystemExit(f"xray-mini not found at {root}: pass --xray-mini DIR or --films N")
        rates = {}
        for w in workers:
            with tempfile.TemporaryDirectory() as cache:
                rates[w] = epoch_rates(root / "manifest.csv", w, Path(cache))
                report("xray-mini", w, rates[w], 174)
        return rates
    return films(args.films.split(","), args.film_dir, args.film_size, workers)


def films(counts: list[str], film_dir: Path, size: int, workers: list[int]) -> dict[int, dict[int, dict[str, float]]]:
    """Renders the largest count of synthetic films once, then the rates of the first N of them."""
    from films import render_films  # benchmarks/films.py, beside this script

    counts = sorted(int(n) for n in counts)
    start = time.perf_counter()
    manifest = render_films(film_dir, counts[-1], size)
    print(f"{counts[-1]} films of {size} px in {film_dir} ({time.perf_counter() - start:.0f} s to render or find)")
    table = pd.read_csv(manifest)
    rates: dict[int, dict[int, dict[str, float]]] = {}
    for n in counts:
        subset = film_dir / f"manifest_{n}.csv"
        table.head(n).to_csv(subset, index=False)
        for w in workers:
            with tempfile.TemporaryDirectory() as cache:
                rates.setdefault(n, {})[w] = epoch_rates(subset, w, Path(cache))
                report(f"{n} films", w, rates[n][w], n)
    return rates


if __name__ == "__main__":
    main()
