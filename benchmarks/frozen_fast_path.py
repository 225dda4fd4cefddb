"""Frozen fast path against training on images: a 10-epoch freeze=all run on xray-mini.

    python benchmarks/frozen_fast_path.py [--epochs 10] [override ...]
    python benchmarks/frozen_fast_path.py --tiny     # the small CNN, 1 epoch (seconds)

Runs train.py with `data=xray_mini backbone=efficientnet_lite0 backbone.weights=imagenet_offline
freeze=all` three times: fast_frozen=true with an empty cache dir (cold: features computed),
again (warm: features read from the cache, as in a seed or head sweep), then fast_frozen=false;
reports each run's training time (trainer.fit, features included) and its whole wall time as
results.json records it. Skips with a message when xray-mini is absent.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from harness import TINY_XRAY_MINI, machine, train, xray_mini_or_skip, xray_mini_data

MODEL = ["backbone=efficientnet_lite0", "backbone.weights=imagenet_offline"]
BASE = ["freeze=all", "logger=none", "callbacks.grad_cam=null", "bootstrap=100"]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--tiny", action="store_true", help="the small CNN, 1 epoch")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    if (root := xray_mini_or_skip()) is None:
        return {}
    model = TINY_XRAY_MINI if args.tiny else [*MODEL, f"trainer.max_epochs={args.epochs}"]
    overrides = [*xray_mini_data(root), *model, *BASE, *args.overrides]
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache = f"preprocessing.cache_dir={Path(tmp) / 'cache'}"
        for name, fast in (("cold", True), ("warm", True), ("images", False)):
            runs[name] = train([*overrides, f"fast_frozen={str(fast).lower()}", cache], Path(tmp) / name)
    print(f"{machine()}\n{' '.join(overrides)}")
    slow = runs["images"]
    for name in ("cold", "warm"):
        fast = runs[name]
        print(f"training, fast path {name}: {fast.fit_s:.1f} s, images {slow.fit_s:.1f} s -> {slow.fit_s / fast.fit_s:.1f}x; "
              f"whole run: {fast.wall_s:.1f} s vs {slow.wall_s:.1f} s -> {slow.wall_s / fast.wall_s:.1f}x")
    return runs


if __name__ == "__main__":
    main()
