"""Frozen fast path against training on images: a 10-epoch freeze=all run on xray-mini.

    python benchmarks/frozen_fast_path.py [--epochs 10] [override ...]

Runs train.py with `data=xray_mini backbone=efficientnet_lite0 backbone.weights=imagenet_offline
freeze=all` three times: fast_frozen=true with an empty cache dir (cold: features computed),
again (warm: features read from the cache, as in a seed or head sweep), then fast_frozen=false;
reports the training time each run logs (features included) and the whole command's wall time.
"""
from __future__ import annotations

import argparse
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE = ["data=xray_mini", "backbone=efficientnet_lite0", "backbone.weights=imagenet_offline", "freeze=all",
        "logger=none", "callbacks.grad_cam=null", "bootstrap=100"]


def run(fast: bool, epochs: int, extra: list[str], run_dir: Path, cache: Path) -> tuple[float, float]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), *BASE, f"trainer.max_epochs={epochs}",
                           f"fast_frozen={str(fast).lower()}", f"hydra.run.dir={run_dir}",
                           f"preprocessing.cache_dir={cache}", *extra],
                          cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    training = float(re.search(r"training took ([0-9.]+) s", proc.stdout + proc.stderr).group(1))
    return training, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        cold = run(True, args.epochs, args.overrides, Path(tmp) / "cold", cache)
        warm = run(True, args.epochs, args.overrides, Path(tmp) / "warm", cache)
        slow = run(False, args.epochs, args.overrides, Path(tmp) / "slow", cache)
    print(f"machine: {platform.machine()}; {args.epochs} epochs, {' '.join(BASE + args.overrides)}")
    for name, fast in (("cold", cold), ("warm", warm)):
        print(f"training, fast path {name}: {fast[0]:.1f} s, images {slow[0]:.1f} s -> {slow[0] / fast[0]:.1f}x; "
              f"whole command: {fast[1]:.1f} s vs {slow[1]:.1f} s -> {slow[1] / fast[1]:.1f}x")


if __name__ == "__main__":
    main()
