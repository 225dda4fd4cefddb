"""xray-mini, 5 folds grouped by patient: test AUROC (with its patient-bootstrap interval) per
fold and recipe, and the pooled out-of-fold AUROC, of the robust recipe beside today's and
the other lung-field recipes.

    python benchmarks/xray_mini_folds.py [--recipes robust today] [--folds 5] [--seed 1]
        [--runs /work/runs/xray5fold] [--out table.md] [--cams] [--no-audit] [override ...]

Every run is `python train.py data=xray_mini data.num_folds=K data.fold=k seed=S` plus the
recipe's overrides into `<runs>/<recipe>/fold<k>/` (kept: checkpoints, predictions.csv, for CAM
scores later). A run dir that already holds results.json is read, not trained again.
`--cams` then runs `evaluate.py cams=true` on each fold's best checkpoint (into
`<run>/cam_scores/`, likewise read when there) and adds, per recipe and class, the Grad-CAM
lung_fraction of the test films pooled over folds beside its chance level (lung_area).
Each fold's best checkpoint is also audited (`audit.py shortcuts.cams=false`, into `<run>/audit/`,
read when audit.json is there): per recipe, the lungs-removed AUROC of the test films pooled
over folds and the pooled share of no-finding films called COVID-19 once COVID-19 marks are
pasted on, each at its fold's operating point; `--no-audit` leaves them out.
`--tiny`: the small CNN for 1 epoch, 2 folds, CAMs against the drawn lung masks only, in a
temporary folder (seconds). Skips with a message when xray-mini is absent.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from covid_tl.core.formatting import number
from covid_tl.core.labels import DISPLAY, LABELS
from covid_tl.stats.metrics import bootstrap_mean
from harness import (TINY_XRAY_MINI, Run, audit, evaluate, last_override, machine, pooled_out_of_fold, train,
                     xray_mini_or_skip, xray_mini_data)

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


def audit_films(run: Run, bootstrap: str | None) -> pd.DataFrame:
    """The test films of audit.py on the fold's best checkpoint (audit_films.csv), with its
    operating point as a `threshold` column."""
    out = run.directory / "audit"
    if not (out / "audit.json").is_file():
        audit([f"ckpt_path={run.directory / run.results.run['best_checkpoint']}", "shortcuts.cams=false",
               *([f"bootstrap={bootstrap}"] if bootstrap else [])], out)
    frame = pd.read_csv(out / "audit_films.csv")
    threshold = json.loads((out / "audit.json").read_text())["threshold"]
    return frame[frame["set"] == "test"].assign(threshold=threshold)


def audit_pooled(frame: pd.DataFrame, seed: int) -> dict[str, Any]:
    """Lungs-removed AUROC pooled over folds (each film once, patient-bootstrap interval; None
    when the folds' audits skipped it) and the share of no-finding films whose call the
    transplant flips to COVID-19 at their fold's threshold (as the audit's own test counts)."""
    out: dict[str, Any] = {"films": len(frame), "lungs_removed": None, "lungs_removed_ci95": None}
    if "p_lungs_removed" in frame and frame["p_lungs_removed"].notna().all():
        pooled = pooled_out_of_fold([frame.drop(columns="p_as_is").rename(columns={"p_lungs_removed": "prob_covid"})],
                                    seed=seed)
        out["lungs_removed"], out["lungs_removed_ci95"] = pooled["auroc"], pooled["auroc_ci95"]
    if "p_mark_transplant" not in frame:  # no fold's audit pasted marks (no marks found in its training films)
        frame = frame.assign(p_mark_transplant=np.nan)
    part = frame[(frame["label"] == LABELS[0]) & frame["p_mark_transplant"].notna()]
    flipped = ((part["p_as_is"] < part["threshold"]) & (part["p_mark_transplant"] >= part["threshold"])).to_numpy(float)
    out["transplanted_films"] = len(part)
    out["flips_to_covid"] = float(flipped.mean()) if len(part) else None
    out["flips_to_covid_ci95"] = bootstrap_mean(flipped, part["patient_id"].astype(str).to_numpy(), seed=seed) if len(part) else None
    return out


def audit_row(name: str, pooled: dict[str, Any]) -> str:
    return (f"| {name} | {pooled['films']} | {number(pooled['lungs_removed'], pooled['lungs_removed_ci95'])} | "
            f"{number(pooled['flips_to_covid'], pooled['flips_to_covid_ci95'])} of {pooled['transplanted_films']} |")


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
    parser.add_argument("--no-audit", dest="audit", action="store_false", help="no audit.py of each fold's checkpoint")
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
    audits = ["| recipe | test films | AUROC lungs removed, pooled | no-finding films flipped to COVID-19 by marks, pooled |",
              "|---|---|---|---|"]
    recipes = {}
    for name in args.recipes:
        r = recipes[name] = recipe(name, overrides, args.folds, args.seed, runs)
        cells = [number(t["auroc"], t["bootstrap_ci95"]["auroc"]) for t in (x.results.set("test") for x in r["runs"])]
        lines.append(f"| {name} | {' | '.join(cells)} | {r['mean']:.3f} ± {r['sd']:.3f} | "
                     f"{number(r['pooled']['auroc'], r['pooled']['auroc_ci95'])} | {r['wall_s']:.0f} |")
        if args.cams:
            r["cams"] = pd.concat([cam_scores(x, lungs) for x in r["runs"]])
            cams += cam_rows(name, r["cams"], args.seed)
        if args.audit:
            bootstrap = last_override(overrides, "bootstrap")
            r["audit"] = audit_pooled(pd.concat([audit_films(x, bootstrap) for x in r["runs"]], ignore_index=True), args.seed)
            audits.append(audit_row(name, r["audit"]))
    text = "\n".join(lines) + f"\n\nAUROC on each fold's test patients [95% patient-bootstrap interval]; seed {args.seed}."
    if args.cams:
        text += "\n\n" + "\n".join(cams) + "\n\nGrad-CAM lung_fraction of every fold's test films, pooled; [95% patient bootstrap]."
    if args.audit:
        text += ("\n\n" + "\n".join(audits) + "\n\naudit.py (shortcuts.cams=false) of each fold's best checkpoint on its "
                 "test films, pooled over folds; flips at each fold's operating point; [95% patient bootstrap].")
    print("\n" + text)
    if args.out:
        args.out.write_text(text + "\n")
    return recipes


if __name__ == "__main__":
    main()
