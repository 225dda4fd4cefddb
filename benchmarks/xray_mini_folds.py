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
`--tiny`: the small CNN for 1 epoch, 2 folds, CAMs against the drawn lung masks only, in a
temporary folder (seconds). Skips with a message when xray-mini is absent.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from covid_tl.core.formatting import number
from covid_tl.core.labels import DISPLAY
from covid_tl.stats.metrics import bootstrap_mean
from harness import TINY_XRAY_MINI, Run, evaluate, machine, pooled_out_of_fold, train, xray_mini_or_skip, xray_mini_data

BASE = ["logger=none", "callbacks.grad_cam=null"]
RECIPES = {
    "today": ["backbone=efficientnet_lite0", "backbone.weights=imagenet_offline", "freeze=all", "preprocessing=crop_inpaint"],
    "robust": ["experiment=robust"],  # EfficientNet-Lite0, last 2 blocks fine-tuned on lung fields, youden
    "cnn_lungs": ["backbone=simple_cnn", "backbone.weights=none", "freeze=none", "preprocessing=lungs",
                  "trainer.max_epochs=20"],  # the small CNN from scratch on lung fields
    "lite0_lungs": ["backbone=efficientnet_lite0", "backbone.weights=imagenet_offline", "freeze=all", "preprocessing=lungs"],
    "tiny": TINY_XRAY_MINI,  # --tiny: the small CNN, 1 epoch
}


def cam_scores(run: Run, lungs: str) -> pd.DataFrame:
    """cams.csv of `evaluate.py cams=true` on the fold's best checkpoint (its test films)."""
    out = run.directory / "cam_scores"
    if not (out / "cams.csv").is_file():
        evaluate([f"ckpt_path={run.directory / run.results.run['best_checkpoint']}", "cams=true",
                  f"cam.lungs.mode={lungs}"], out)
    return pd.read_csv(out / "cams.csv")


def cam_rows(name: str, frame: pd.DataFrame, seed: int) -> list[str]:
    """Per class: lung_fraction, lung_area (chance) and their difference, 95% patient bootstrap."""
    lines = []
    for label, part in frame[frame["lung_fraction"].notna()].groupby("label", sort=True):
        cells = []
        for column in ("lung_fraction", "lung_area", "above_chance"):
            values = part[column].to_numpy(float)
            cells.append(number(float(values.mean()), bootstrap_mean(values, part["patient_id"].to_numpy(), seed=seed)))
        sources = ", ".join(f"{k} {v}" for k, v in part["lung_source"].value_counts().items())
        lines.append(f"| {name} | {DISPLAY.get(label, label)} | {len(part)} ({part['patient_id'].nunique()}) | "
                     f"{sources} | {' | '.join(cells)} |")
    return lines


def recipe(name: str, overrides: list[str], folds: int, seed: int, runs: Path) -> dict[str, Any]:
    """The recipe's runs over every fold (trained, or read where results.json is there) and
    its figures: per-fold test AUROC, their mean and sd, the pooled out-of-fold AUROC."""
    fold_runs = []
    for k in range(folds):
        run = train([*BASE, *RECIPES[name], f"data.num_folds={folds}", f"data.fold={k}", f"seed={seed}", *overrides],
                    runs / name / f"fold{k}", reuse=True)
        test = run.results.set("test")
        fold_runs.append(run)
        print(f"{name} fold {k}: AUROC {number(test['auroc'], test['bootstrap_ci95']['auroc'])} (n {test['n']}, "
              f"{'read' if run.fit_s is None else f'{run.wall_s:.0f} s'})", flush=True)
    values = [r.results.set("test")["auroc"] for r in fold_runs]
    walls = [r.wall_s for r in fold_runs if r.fit_s is not None]
    return {"runs": fold_runs, "aurocs": values, "mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)),
            "pooled": pooled_out_of_fold([r.predictions("test") for r in fold_runs], seed=seed),
            "wall_s": float(np.mean(walls)) if walls else 0.0}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=["robust", "today"], choices=list(RECIPES))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=Path, default=Path("/work/runs/xray5fold"))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--cams", action="store_true", help="also the CAM lung_fraction per class (evaluate.py cams=true)")
    parser.add_argument("--tiny", action="store_true", help="the small CNN, 1 epoch, 2 folds, CAMs, a temporary folder")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    if (root := xray_mini_or_skip()) is None:
        return {}
    print(machine())
    if args.tiny:
        args.recipes, args.folds, args.cams = ["tiny"], 2, True
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) if args.tiny else args.runs
        return report(args, [*xray_mini_data(root), *args.overrides], runs, "masks" if args.tiny else "segmenter")


def report(args: argparse.Namespace, overrides: list[str], runs: Path, lungs: str) -> dict[str, Any]:
    head = ["recipe", *[f"fold {k}" for k in range(args.folds)], "mean ± sd over folds", "pooled out-of-fold", "wall s/run"]
    lines = [f"| {' | '.join(head)} |", "|" + "---|" * len(head)]
    cams = ["| recipe | class | test films (patients) | lungs from | lung_fraction | lung_area (chance) | above chance |",
            "|---|---|---|---|---|---|---|"]
    recipes = {}
    for name in args.recipes:
        r = recipes[name] = recipe(name, overrides, args.folds, args.seed, runs)
        cells = [number(t["auroc"], t["bootstrap_ci95"]["auroc"]) for t in (x.results.set("test") for x in r["runs"])]
        lines.append(f"| {name} | {' | '.join(cells)} | {r['mean']:.3f} ± {r['sd']:.3f} | "
                     f"{number(r['pooled']['auroc'], r['pooled']['auroc_ci95'])} | {r['wall_s']:.0f} |")
        if args.cams:
            r["cams"] = pd.concat([cam_scores(x, lungs) for x in r["runs"]])
            cams += cam_rows(name, r["cams"], args.seed)
    text = "\n".join(lines) + f"\n\nAUROC on each fold's test patients [95% patient-bootstrap interval]; seed {args.seed}."
    if args.cams:
        text += "\n\n" + "\n".join(cams) + "\n\nGrad-CAM lung_fraction of every fold's test films, pooled; [95% patient bootstrap]."
    print("\n" + text)
    if args.out:
        args.out.write_text(text + "\n")
    return recipes


if __name__ == "__main__":
    main()
