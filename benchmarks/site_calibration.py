"""Site calibration at a new site: per model, on the site's films, today's cut (the model's own,
chosen on the training validation split or the pooled out-of-fold predictions), a cut from n + n
of the site's films (one seeded draw, and the spread over draws), and label-free cuts (score
matching at the reference films' prevalence, at EM's estimate, and at given wrong ones).

    python benchmarks/site_calibration.py --models RUN_OR_CHECKPOINT ... [--labelled 4]
        [--prevalences 0.25 0.75] [--site phantom_c|xray_views] [--out table.md] [override ...]
    python benchmarks/site_calibration.py --seeds 1 2 3 --runs DIR [...]

The sites: `phantom_c`, phantom hospital C (data=synthetic_shift: models trained on hospitals A
and B, C never seen); `xray_views`, the AP films of ../shared/data/xray-views for models trained
on xray-mini's PA films, less the patients in the model's train or val split (splits.csv: the 7
NIH patients with films of both views), which calibrate_site.py would refuse.
Each model is calibrated with labelled=n, labelled=0, labelled=0 prevalence=em and labelled=0
prevalence=p for each of --prevalences, into `<its run dir>/site_<site>/`. `--seeds` trains
`experiment=robust data=synthetic_shift seed=S` into `<runs>/seed<S>/` first (a run dir holding
results.json is read, not trained again). `--tiny`: the small CNN at 32 px, one epoch, 16
patients per hospital, in a temporary folder.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from covid_tl.core.formatting import median_range, number
from covid_tl.models.site_profile import model_run_dir
from harness import calibrate_site, machine, train, xray_views

PHANTOM_C = ["data=synthetic_shift", "source=hospital_c", "site=hospital_c"]
RECIPE = ["experiment=robust", "data=synthetic_shift", "logger=none", "callbacks.grad_cam=null"]
TINY = ["data=synthetic_shift", "data.phantoms.n_patients=16", "data.phantoms.image_size=48", "backbone=simple_cnn",
        "backbone.input_size=32", "trainer.max_epochs=1", "threshold=youden", "logger=none", "callbacks.grad_cam=null",
        "preprocessing.cache=false"]
TINY_SITE = ["data.phantoms.n_patients=16", "data.phantoms.image_size=48", "resamples=20", "bootstrap=20"]


def calibrations(model: Path, site: list[str], out: Path, labelled: int, prevalences: list[float],
                 overrides: list[str]) -> dict[str, dict[str, Any]]:
    """The profiles of one model: n + n films, label-free (at the reference's prevalence, EM's,
    and each of `prevalences`)."""
    modes = {"labelled": [f"labelled={labelled}"], "label_free": ["labelled=0"],
             "label_free_em": ["labelled=0", "prevalence=em"],
             **{f"label_free_{p:g}": ["labelled=0", f"prevalence={p}"] for p in prevalences}}
    return {name: calibrate_site([f"ckpt_path={model}", *site, *extra, *overrides], out / name)
            for name, extra in modes.items()}


def views_site(model: Path, out: Path) -> list[str]:
    """xray-views' AP films less the patients of the model's train and val split (its run's
    splits.csv), as a manifest calibrate_site.py takes."""
    views = xray_views()
    if views is None:
        raise SystemExit("xray-views is absent (../shared/data/xray-views or $COVID_TL_XRAY_VIEWS)")
    splits = pd.read_csv(model_run_dir(model) / "splits.csv", dtype=str)
    seen = set(splits.loc[splits["split"] != "test", "patient_id"])
    films = pd.read_csv(views / "manifest.csv", dtype=str)
    films = films[(films["view"] == "AP") & ~films["patient_id"].isin(seen)]
    films = films.assign(path=[str(views / p) for p in films["path"]]).drop(columns=["lung_mask"], errors="ignore")
    out.mkdir(parents=True, exist_ok=True)
    films.to_csv(out / "site_manifest.csv", index=False)
    return ["data=manifest", f"data.path={out / 'site_manifest.csv'}", "site=xray_views_ap"]


def row(name: str, profiles: dict[str, dict[str, Any]], labelled: int, prevalences: list[float]) -> dict[str, Any]:
    """One model's figures: sensitivity and specificity on C's films at each cut."""
    free, em, drawn = profiles["label_free"], profiles["label_free_em"], profiles["labelled"]
    today = free["rates"]["all_model_cut"]
    spread = drawn["how_many_films"]["per_n"].get(str(labelled), {})
    held = drawn["rates"].get("held_out_site_cut", {})

    return {"model": name, "auroc": today["auroc"], "today_cut": free["model"]["operating_point"]["threshold"],
            "today": (today["sensitivity"], today["specificity"]),
            "drawn_cut": drawn["operating_point"]["threshold"], "drawn": (held.get("sensitivity"), held.get("specificity")),
            "draws": (median_range(spread.get("sensitivity")), median_range(spread.get("specificity"))),
            "free_cut": free["operating_point"]["threshold"],
            "free": (free["rates"]["all_site_cut"]["sensitivity"], free["rates"]["all_site_cut"]["specificity"]),
            "em_cut": em["operating_point"]["threshold"], "em_prevalence": em["label_free"]["em_prevalence"],
            "prevalence": em["label_free"]["site_prevalence_from_labels"],
            "em": (em["rates"]["all_site_cut"]["sensitivity"], em["rates"]["all_site_cut"]["specificity"]),
            "wrong": {p: (profiles[f"label_free_{p:g}"]["rates"]["all_site_cut"]["sensitivity"],
                          profiles[f"label_free_{p:g}"]["rates"]["all_site_cut"]["specificity"]) for p in prevalences}}


def table(rows: list[dict[str, Any]], labelled: int, prevalences: list[float]) -> str:
    head = ["model", "AUROC at the site", "today: cut", "today: sens / spec", f"{labelled}+{labelled}: cut (seed 0)",
            "sens / spec on the rest", f"{labelled}+{labelled}: sens over draws", "spec over draws", "label-free: cut",
            "sens / spec", "EM prevalence (true)", "label-free at EM's: sens / spec",
            *(f"label-free at {p:g}: sens / spec" for p in prevalences)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        pair = lambda p: f"{number(p[0])} / {number(p[1])}"  # noqa: E731
        lines.append("| " + " | ".join([
            r["model"], number(r["auroc"]), f"{r['today_cut']:.3f}", pair(r["today"]), f"{r['drawn_cut']:.3f}",
            pair(r["drawn"]), r["draws"][0], r["draws"][1], f"{r['free_cut']:.3f}", pair(r["free"]),
            f"{r['em_prevalence']:.2f} ({r['prevalence']:.2f})", pair(r["em"]),
            *(pair(r["wrong"][p]) for p in prevalences)]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", type=Path, default=[], help="run dirs (fold ensembles) or checkpoints")
    parser.add_argument("--seeds", nargs="*", type=int, default=[], help="train experiment=robust at these seeds first")
    parser.add_argument("--runs", type=Path, default=Path("multirun/site_calibration"))
    parser.add_argument("--labelled", type=int, default=4)
    parser.add_argument("--prevalences", nargs="*", type=float, default=[], help="label-free at these (wrong) prevalences too")
    parser.add_argument("--site", choices=("phantom_c", "xray_views"), default="phantom_c")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--tiny", action="store_true")
    args, overrides = parser.parse_known_args(argv)
    if args.tiny:
        args.runs, args.seeds, args.labelled = Path(tempfile.mkdtemp(prefix="site_calibration_")), [1], 2
        args.prevalences = [0.25]
        overrides = [*overrides, *TINY_SITE]
    models = [(model_run_dir(m).name, m) for m in args.models]
    for seed in args.seeds:
        run = train([*(TINY if args.tiny else RECIPE), f"seed={seed}"], args.runs / f"seed{seed}", reuse=True)
        models.append((f"seed {seed}", best_model(run.directory)))
    rows = []
    for name, model in models:
        out = model_run_dir(model) / f"site_{args.site}"
        site = PHANTOM_C if args.site == "phantom_c" else views_site(model, out)
        profiles = calibrations(model, site, out, args.labelled, args.prevalences, overrides)
        rows.append(row(name, profiles, args.labelled, args.prevalences))
    text = (table(rows, args.labelled, args.prevalences) + f"\n\nsite {args.site}; {machine()}; today: the model's own cut; "
            f"{args.labelled}+{args.labelled}: one seeded draw of films by patient, its rates on the site's other films, and "
            "the median [5-95%] over draws; label-free: score matching at the reference films' prevalence; every rate "
            "on the site's films.\n")
    print(text)
    if args.out:
        args.out.write_text(text)
    return rows


def best_model(run_dir: Path) -> Path:
    """A run's model: its dir for a fold ensemble, else the best checkpoint results.json names."""
    if (run_dir / "ensemble.json").is_file():
        return run_dir
    record = json.loads((run_dir / "results.json").read_text())
    return run_dir / record["run"]["best_checkpoint"]  # relative to the run dir


if __name__ == "__main__":
    main()
