"""xray-mini, 5 folds grouped by patient: test AUROC (with its patient-bootstrap interval) per
fold and recipe, and the pooled out-of-fold AUROC, of the robust recipe beside today's and
the other lung-field recipes.

    python benchmarks/xray_mini_folds.py [--recipes robust today] [--folds 5] [--seed 1]
        [--runs /work/runs/xray5fold] [--out table.md] [--cams] [override ...]

Every run is `python train.py data=xray_mini data.num_folds=K data.fold=k seed=S` plus the
recipe's overrides into `<runs>/<recipe>/fold<k>/` (kept: checkpoints, predictions.csv, for CAM
scores later). A run dir that already holds results.json is read, not trained again.
`--cams` then runs `evaluate.py cams=true` on each fold's best checkpoint (into
`<run>/cam_scores/`, likewise read when there) and adds, per recipe and class, the Grad-CAM
lung_fraction of the test films pooled over folds beside its chance level (lung_area).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from covid_tl.labels import DISPLAY
from covid_tl.metrics import auroc, bootstrap_intervals, bootstrap_mean

ROOT = Path(__file__).resolve().parents[1]

BASE = ["data=xray_mini", "logger=none", "callbacks.grad_cam=null"]
RECIPES = {
    "today": ["backbone=efficientnet_lite0", "backbone.weights=imagenet_offline", "freeze=all", "preprocessing=crop_inpaint"],
    "robust": ["experiment=robust"],  # EfficientNet-Lite0, last 2 blocks fine-tuned on lung fields, youden
    "cnn_lungs": ["backbone=simple_cnn", "backbone.weights=none", "freeze=none", "preprocessing=lungs",
                  "trainer.max_epochs=20"],  # the small CNN from scratch on lung fields
    "lite0_lungs": ["backbone=efficientnet_lite0", "backbone.weights=imagenet_offline", "freeze=all", "preprocessing=lungs"],
}


def run(overrides: list[str], run_dir: Path) -> tuple[dict, float]:
    """The test block of one train.py run's results.json, and its wall seconds (0: read)."""
    if not (run_dir / "results.json").is_file():
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(ROOT / "train.py"), *overrides, f"hydra.run.dir={run_dir}"],
                              cwd=ROOT, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"train.py {' '.join(overrides)} failed:\n{proc.stderr[-3000:]}")
        wall = time.perf_counter() - start
    else:
        wall = 0.0
    return json.loads((run_dir / "results.json").read_text())["test"], wall


def pooled(run_dirs: list[Path], seed: int) -> tuple[float, list[float] | None]:
    """AUROC of every film's out-of-fold probability, with a patient-bootstrap interval."""
    frame = pd.concat([pd.read_csv(d / "predictions.csv").query("set == 'test'") for d in run_dirs])
    targets = (frame["label"] == "covid").to_numpy().astype(int)
    probabilities = frame["prob_covid"].to_numpy()
    interval = bootstrap_intervals(targets, probabilities, frame["patient_id"].to_numpy(), seed=seed)["auroc"]
    return auroc(targets, probabilities), interval


def cam_scores(run_dir: Path) -> pd.DataFrame:
    """cams.csv of `evaluate.py cams=true` on the fold's best checkpoint (its test films)."""
    out = run_dir / "cam_scores"
    if not (out / "cams.csv").is_file():
        ckpt = run_dir / json.loads((run_dir / "results.json").read_text())["run"]["best_checkpoint"]
        proc = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), f"ckpt_path={ckpt}", "cams=true",
                               f"hydra.run.dir={out}"], cwd=ROOT, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"evaluate.py cams=true on {ckpt} failed:\n{proc.stderr[-3000:]}")
    return pd.read_csv(out / "cams.csv")


def cam_rows(name: str, frame: pd.DataFrame, seed: int) -> list[str]:
    """Per class: lung_fraction, lung_area (chance) and their difference, 95% patient bootstrap."""
    lines = []
    for label, part in frame[frame["lung_fraction"].notna()].groupby("label", sort=True):
        cells = []
        for column in ("lung_fraction", "lung_area", "above_chance"):
            values = part[column].to_numpy(float)
            cells.append(fmt(values.mean(), bootstrap_mean(values, part["patient_id"].to_numpy(), seed=seed)))
        sources = ", ".join(f"{k} {v}" for k, v in part["lung_source"].value_counts().items())
        lines.append(f"| {name} | {DISPLAY.get(label, label)} | {len(part)} ({part['patient_id'].nunique()}) | "
                     f"{sources} | {' | '.join(cells)} |")
    return lines


def fmt(value: float | None, interval: list[float] | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=["robust", "today"], choices=list(RECIPES))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=Path, default=Path("/work/runs/xray5fold"))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--cams", action="store_true", help="also the CAM lung_fraction per class (evaluate.py cams=true)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    head = ["recipe", *[f"fold {k}" for k in range(args.folds)], "mean ± sd over folds", "pooled out-of-fold", "wall s/run"]
    lines = [f"| {' | '.join(head)} |", "|" + "---|" * len(head)]
    cams = ["| recipe | class | test films (patients) | lungs from | lung_fraction | lung_area (chance) | above chance |",
            "|---|---|---|---|---|---|---|"]
    for name in args.recipes:
        tests, walls, dirs = [], [], []
        for fold in range(args.folds):
            run_dir = args.runs / name / f"fold{fold}"
            overrides = [*BASE, *RECIPES[name], f"data.num_folds={args.folds}", f"data.fold={fold}",
                         f"seed={args.seed}", *args.overrides]
            test, wall = run(overrides, run_dir)
            tests.append(test)
            walls.append(wall)
            dirs.append(run_dir)
            print(f"{name} fold {fold}: AUROC {fmt(test['auroc'], test['bootstrap_ci95']['auroc'])} "
                  f"(n {test['n']}, {wall:.0f} s)", flush=True)
        values = [t["auroc"] for t in tests]
        cells = [fmt(t["auroc"], t["bootstrap_ci95"]["auroc"]) for t in tests]
        lines.append(f"| {name} | {' | '.join(cells)} | {np.mean(values):.3f} ± {np.std(values, ddof=1):.3f} | "
                     f"{fmt(*pooled(dirs, args.seed))} | {np.mean([w for w in walls if w] or [0]):.0f} |")
        if args.cams:
            cams += cam_rows(name, pd.concat([cam_scores(d) for d in dirs]), args.seed)
    text = "\n".join(lines) + f"\n\nAUROC on each fold's test patients [95% patient-bootstrap interval]; seed {args.seed}."
    if args.cams:
        text += "\n\n" + "\n".join(cams) + "\n\nGrad-CAM lung_fraction of every fold's test films, pooled; [95% patient bootstrap]."
    print("\n" + text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
