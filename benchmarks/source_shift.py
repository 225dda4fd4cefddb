"""Source shift on phantoms (data=synthetic_shift): specificity and sensitivity in distribution
(val: hospitals A and B) against the held-out hospital C, per setting and seed.

    python benchmarks/source_shift.py [--settings NAME ...] [--seeds 1 2 3]
        [--add NAME="OVERRIDE OVERRIDE ..."] [--runs DIR] [--out table.md] [override ...]

Every run is `python train.py` with BASE (today's recipe: frozen ImageNet EfficientNet-Lite0),
the setting's overrides (the cnn_* settings train the small CNN from scratch instead), the seed
and the trailing overrides; `--add lungs="preprocessing=lungs"` adds a setting. Default: every
setting in SETTINGS, seed 1. `lungs` settings use the bundled lung segmenter
(preprocessing=lungs: lung-field crop, histogram equalisation on lung pixels). Prints a line
per finished run, then a markdown table (mean and, with several seeds, the spread over seeds);
`--runs` keeps the run dirs (results.json, predictions.csv). `--tiny`: the small CNN, 1 epoch,
20 phantom patients per hospital at 48 px, setting cnn_none (seconds).
"""
from __future__ import annotations

import argparse
import resource
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from covid_tl.core.formatting import number
from harness import machine, train

BASE = ["data=synthetic_shift", "backbone=efficientnet_lite0", "backbone.weights=imagenet_offline", "freeze=all",
        "logger=none", "callbacks.grad_cam=null", "bootstrap=200"]
CNN = ["backbone=simple_cnn", "backbone.weights=none", "freeze=none", "trainer.max_epochs=20"]  # trained from scratch
TINY = ["data.phantoms.n_patients=20", "data.phantoms.image_size=48", "backbone.input_size=32", "trainer.max_epochs=1",
        "bootstrap=20"]
SETTINGS = {
    "none": ["preprocessing=none"],
    "crop_inpaint": ["preprocessing=crop_inpaint"],
    "acquisition": ["preprocessing=crop_inpaint", "augment=acquisition"],
    "lungs": ["preprocessing=lungs"],
    "lungs_ft2": ["preprocessing=lungs", "freeze=last_n", "freeze.trainable=2"],  # experiment=robust (+ threshold=youden)
    "cnn_none": [*CNN, "preprocessing=none"],
    "cnn_crop_inpaint": [*CNN, "preprocessing=crop_inpaint"],
    "cnn_acquisition": [*CNN, "preprocessing=crop_inpaint", "augment=acquisition"],
    "cnn_lungs": [*CNN, "preprocessing=lungs"],
    "cnn_lungs_acquisition": [*CNN, "preprocessing=lungs", "augment=acquisition"],
}
COLUMNS = [("specificity", "in_distribution"), ("specificity", "shifted"), ("specificity", "drop"),
           ("sensitivity", "in_distribution"), ("sensitivity", "shifted"), ("auroc", "shifted")]


def cpu_seconds() -> float:
    """CPU seconds of this process so far (runs are in it): unlike wall time, it does not grow
    when other jobs share the cores."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def run(overrides: list[str], run_dir: Path) -> tuple[dict, float, float]:
    """One train.py run: (its results.json's shift block, wall seconds, CPU seconds)."""
    cpu = cpu_seconds()
    done = train(overrides, run_dir)
    return done.results.shift, done.wall_s, cpu_seconds() - cpu


def cell(values: list[float | None]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{np.mean(values):.2f}" + (f" ± {np.std(values, ddof=1):.2f}" if len(values) > 1 else "")


def table(rows: dict[str, list[tuple[dict, float, float]]], seeds: list[int]) -> str:
    head = ["setting", "spec in-dist", "spec at C", "spec drop", "sens in-dist", "sens at C", "AUROC at C",
            "wall s/run", "CPU s/run"]
    lines = [f"| {' | '.join(head)} |", "|" + "---|" * len(head)]
    for name, runs in rows.items():
        cells = [cell([shift[m][k] for shift, _, _ in runs]) for m, k in COLUMNS]
        times = [f"{np.mean([r[i] for r in runs]):.0f}" for i in (1, 2)]
        lines.append(f"| {name} | {' | '.join(cells + times)} |")
    return "\n".join(lines) + f"\n\nseeds {seeds}; mean ± sd over seeds where several."


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1])
    parser.add_argument("--add", action="append", default=[], metavar='NAME="OVERRIDES"')
    parser.add_argument("--runs", type=Path, help="keep the run dirs here (default: a temporary folder)")
    parser.add_argument("--out", type=Path, help="also write the table here")
    parser.add_argument("--tiny", action="store_true", help="the small CNN, 1 epoch, few small phantoms, cnn_none")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    if args.tiny:
        args.settings, args.seeds, args.overrides = ["cnn_none"], [1], [*args.overrides, *TINY]
    settings = dict(SETTINGS)
    for item in args.add:
        name, _, overrides = item.partition("=")
        settings[name] = overrides.split()
        if name not in args.settings:
            args.settings.append(name)
    unknown = [s for s in args.settings if s not in settings]
    if unknown:
        raise SystemExit(f"error: unknown setting(s) {unknown}; known: {', '.join(settings)} (or --add NAME=...)")
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = args.runs or Path(tmp)
        rows: dict[str, list[tuple[dict, float, float]]] = {}
        total, done = len(args.settings) * len(args.seeds), 0
        for name in args.settings:
            for seed in args.seeds:
                overrides = [*BASE, *settings[name], f"seed={seed}", *args.overrides]
                shift, wall, cpu = run(overrides, runs_dir / f"{name}_seed{seed}")
                rows.setdefault(name, []).append((shift, wall, cpu))
                done += 1
                spec, sens = (shift[m] for m in ("specificity", "sensitivity"))
                print(f"[{done}/{total}] {name} seed {seed}: specificity {number(spec['in_distribution'], digits=2)} -> "
                      f"{number(spec['shifted'], digits=2)}, sensitivity {number(sens['in_distribution'], digits=2)} -> "
                      f"{number(sens['shifted'], digits=2)} ({wall:.0f} s, CPU {cpu:.0f} s)", flush=True)
    text = table(rows, args.seeds)
    print(f"\n{machine()}; base: {' '.join(BASE + args.overrides)}\n\n{text}")
    if args.out:
        args.out.write_text(text + "\n")
    return rows


if __name__ == "__main__":
    main()
