"""Fold ensembles on both views (data=xray_mini_views, train.py cv=5): per recipe and seed, the
pooled out-of-fold AUROC, the out-of-fold cut beside the cuts each fold alone gives, the test
split's rates at that cut overall and per view, and the audit; with --leave-view-out, single
runs trained on one view and tested on the other.

    python benchmarks/ensembles.py [--recipes robust_v2 robust_cv] [--seeds 1 2 3] [--runs DIR]
        [--leave-view-out] [--out table.md] [override ...]

Every run is `python train.py <recipe> data=xray_mini_views cv=5 seed=S audit=true
shortcuts.cams=false` into `<runs>/<recipe>/seed<S>/`; a run dir that holds results.json is read,
not trained again. `--leave-view-out` adds `python train.py experiment=robust
data=xray_mini_views data.holdout_view=V seed=1` for V = AP, PA into `<runs>/lvo/robust_<V>/`:
its val split (the trained view's unseen patients) beside the held-out view (test).
`--tiny`: the small CNN at 32 px, 2 members, 1 epoch, no audit, in a temporary folder. Skips with
a message when xray-mini or xray-views is absent.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from covid_tl.core.formatting import number
from harness import TINY_XRAY_MINI, audit_numbers, machine, train, xray_mini_or_skip, xray_views

RECIPES = {
    "robust_v2": ["experiment=robust_v2"],
    "robust_cv": ["experiment=robust", "cv=5"],  # robust_v2 without view-balanced draws
    "tiny": [*TINY_XRAY_MINI, "cv=2", "threshold=youden"],
}
AUDITED = ["audit=true", "shortcuts.cams=false"]
BASE = ["data=xray_mini_views", "logger=none", "callbacks.grad_cam=null"]


def data_overrides(mini: Path, views: Path) -> list[str]:
    return [*BASE, f"data.path={mini / 'manifest.csv'}", f"data.sources.xray_views.path={views / 'manifest.csv'}"]


def row(run_dir: Path, results) -> dict[str, Any]:
    """One ensemble run's figures."""
    point, oof, test = results.operating_point, results.set("oof"), results.set("test")
    cuts = [f["threshold"] for f in point["per_fold"]]
    audit = audit_numbers(_audit(run_dir), "test") if (run_dir / "audit" / "audit.json").is_file() else {}
    views = test.get("per_view", {})
    return {"oof_auroc": oof["auroc"], "oof_auroc_ci95": oof["bootstrap_ci95"]["auroc"], "threshold": point["threshold"],
            "fold_cuts": (min(cuts), max(cuts)), "oof_sens": oof["sensitivity"], "oof_spec": oof["specificity"],
            "test_auroc": test["auroc"], "test_auroc_ci95": test["bootstrap_ci95"]["auroc"],
            "test_sens": test["sensitivity"], "test_spec": test["specificity"],
            **{f"{view}_{m}": views.get(view, {}).get(metric) for view in ("AP", "PA")
               for m, metric in (("sens", "sensitivity"), ("spec", "specificity"))},
            "epoch": results.run["ensemble"]["epoch"], "lungs_removed": audit.get("lungs_removed"),
            "view_probe": audit.get("view_probe"), "wall_s": results.run.get("wall_time_s")}


def _audit(run_dir: Path) -> dict:
    return json.loads((run_dir / "audit" / "audit.json").read_text())


COLUMNS = [("epoch", "epoch"), ("oof_auroc", "pooled OOF AUROC"), ("threshold", "OOF cut"),
           ("fold_cuts", "each fold's own cut"), ("oof_sens", "OOF sens"), ("oof_spec", "OOF spec"),
           ("test_auroc", "test AUROC"), ("test_sens", "test sens"), ("test_spec", "test spec"),
           ("AP_sens", "AP sens"), ("AP_spec", "AP spec"), ("PA_sens", "PA sens"), ("PA_spec", "PA spec"),
           ("lungs_removed", "AUROC lungs removed"), ("view_probe", "view probe, no finding"), ("wall_s", "wall s")]


def cell(key: str, value: Any, r: dict[str, Any]) -> str:
    if key == "fold_cuts":
        return f"{value[0]:.3f}-{value[1]:.3f}"
    if key in ("oof_auroc", "test_auroc"):
        return number(value, r.get(f"{key}_ci95"))
    if key in ("epoch", "wall_s"):
        return "-" if value is None else f"{value:.0f}"
    return number(value)


def summary_cell(key: str, rows: list[dict[str, Any]]) -> str:
    if key == "fold_cuts":
        return f"{min(r[key][0] for r in rows):.3f}-{max(r[key][1] for r in rows):.3f}"
    values = [r[key] for r in rows if r[key] is not None]
    if not values:
        return "-"
    if key in ("epoch", "wall_s"):
        return f"{np.mean(values):.0f} ± {np.std(values, ddof=1):.0f}" if len(values) > 1 else f"{values[0]:.0f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}" if len(values) > 1 else number(values[0])


def ensemble_table(rows: dict[str, dict[int, dict[str, Any]]]) -> str:
    head = ["recipe", "seed", *(title for _, title in COLUMNS)]
    lines = [f"| {' | '.join(head)} |", "|" + "---|" * len(head)]
    for name, seeds in rows.items():
        for seed, r in seeds.items():
            lines.append(f"| {name} | {seed} | {' | '.join(cell(k, r[k], r) for k, _ in COLUMNS)} |")
        if len(seeds) > 1:
            lines.append(f"| {name} | mean ± sd | {' | '.join(summary_cell(k, list(seeds.values())) for k, _ in COLUMNS)} |")
    return "\n".join(lines) + ("\n\nOOF: every development film scored by the member that never trained on it, pooled; "
                               "the cut (youden) and the epoch chosen on it (so its rates are optimistic). Test: the "
                               "ensemble (mean of the members) on the held-out patients at the OOF cut; per view on "
                               "the test split. Audit: audit.py on the test split (shortcuts.cams=false).")


def leave_view_out(overrides: list[str], runs: Path) -> str:
    lines = ["| trained on | tested on | in-dist AUROC | in-dist sens | in-dist spec | held-out AUROC | held-out sens "
             "| held-out spec | threshold |", "|---|---|---|---|---|---|---|---|---|"]
    for held, kept in (("AP", "PA"), ("PA", "AP")):
        done = train(["experiment=robust", *overrides, f"data.holdout_view={held}", "seed=1"],
                     runs / "lvo" / f"robust_{held}", reuse=True)
        shift = done.results.shift
        lines.append(f"| {kept} | {held} | " + " | ".join(
            number(shift[m][where]) for where in ("in_distribution", "shifted")
            for m in ("auroc", "sensitivity", "specificity")) + f" | {done.results.threshold:.3f} |")
    return "\n".join(lines) + ("\n\nexperiment=robust (one model, youden on its val split), seed 1; in-dist: the val "
                               "split (unseen patients of the trained view); held out: every film of the other view and "
                               "its patients' films (the test split).")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=["robust_v2", "robust_cv"], choices=list(RECIPES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--runs", type=Path, default=Path("/work/runs/ensembles"))
    parser.add_argument("--leave-view-out", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--tiny", action="store_true", help="small CNN, 2 members, 1 epoch, no audit, a temporary folder")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    mini, views = xray_mini_or_skip(), xray_views()
    if mini is None or views is None:
        if views is None:
            print("skipped: xray-views not found (set COVID_TL_XRAY_VIEWS to its folder)")
        return {}
    print(machine())
    overrides = [*data_overrides(mini, views), *args.overrides]
    if args.tiny:
        args.recipes, args.seeds = ["tiny"], [1]
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) if args.tiny else args.runs
        rows: dict[str, dict[int, dict[str, Any]]] = {}
        for name in args.recipes:
            for seed in args.seeds:
                audited = [] if args.tiny else AUDITED
                done = train([*RECIPES[name], *overrides, *audited, f"seed={seed}"], runs / name / f"seed{seed}",
                             reuse=True)
                rows.setdefault(name, {})[seed] = row(done.directory, done.results)
                print(f"{name} seed {seed}: " + ", ".join(f"{t} {cell(k, rows[name][seed][k], rows[name][seed])}"
                                                          for k, t in COLUMNS[:9]), flush=True)
        text = ensemble_table(rows)
        if args.leave_view_out:
            text += "\n\n" + leave_view_out(overrides, runs)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return rows


if __name__ == "__main__":
    main()
