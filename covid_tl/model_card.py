"""model_card.md: what a trained model is, what it was trained and tested on, how well it did,
what it is for, and the shortcuts that may explain its numbers, in markdown a person reads.

Written at the end of training from results.json's content, the run config and the data
summary. The shortcut section is worked out from this run's data (which sources each class
comes from, whether marks were painted over, whether a source was held out), not boilerplate.
"""
from __future__ import annotations

import math
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from covid_tl import __version__
from covid_tl.labels import LABELS, POSITIVE
from covid_tl.metrics import RATES
from covid_tl.results import Results

INTENDED_USE = ("research on transfer learning and shortcut learning in chest X-ray classifiers; not for "
                "diagnosis, triage or any clinical decision (not clinically validated, not a medical device)")
CAM_SCORES = {
    "artifact_fraction": "share of the heatmap on detected burned-in marks and the film border (lower is better)",
    "lung_fraction": "share of the heatmap inside the lungs (the data's masks, else the lung segmenter's; higher is better)",
    "lung_area": "the lungs' share of the model's input: the lung_fraction of a heatmap spread evenly (chance level)",
}


def provenance() -> dict[str, Any]:
    """covid-tl's version and, when it runs from a git checkout, the commit and whether files differ from it."""
    folder = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"covid_tl_version": __version__, "git_commit": commit, "git_dirty": bool(status) if commit else None}


def _number(value: float | None, interval: Sequence[float] | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def metrics_section(results: Results) -> list[str]:
    """Per set: rates with 95% Wilson intervals, AUROC with its patient-level bootstrap interval."""
    rows = [[name, r["n"], *(_number(r[m], r.get(f"{m}_ci95")) for m in RATES),
             _number(r["auroc"], r.get("bootstrap_ci95", {}).get("auroc"))] for name, r in
            results.sets.items()]
    lines = ["## Results (best checkpoint)", "",
             f"Positive class {POSITIVE}: sensitivity is recall on {POSITIVE}, specificity recall on no finding. "
             "Rates with 95% Wilson intervals, AUROC with a 95% bootstrap interval over patients "
             "(results.json also has bootstrap intervals of the rates).", ""]
    lines += _table(["set", "n", *RATES, "auroc"], rows)
    if "test" in results.sets:
        matrix = results.sets["test"]["confusion_matrix"]
        lines += ["", "Test confusion matrix (rows: true class, columns: predicted class):", ""]
        lines += _table(["", *matrix["labels"]], [[label, *row] for label, row in zip(matrix["labels"], matrix["matrix"])])
    rows = [[name, source, r["n"], *(_number(r[m]) for m in (*RATES, "auroc"))]
            for name, block in results.sets.items() for source, r in block.get("per_source", {}).items()]
    lines += ["", "### Per source", "", "A rate is `-` where the source has no image of the class it needs.", ""]
    return lines + _table(["set", "source", "n", *RATES, "auroc"], rows)


def data_section(summary: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    """Images and patients per split, label, source and view; the split rule."""
    data = config.get("data", {})
    readers = {name: (source or {}).get("_target_", "?") for name, source in (data.get("sources") or {}).items()}
    lines = ["## Data", "", f"{summary['images']} images of {summary['patients']} patients"
             + (f"; {summary['skipped']} listed images left out as unusable (bad_rows.csv)" if summary.get("skipped") else "")
             + ". Sources as configured: " + ", ".join(f"`{n}` ({t})" for n, t in readers.items()) + ".", ""]
    lines += _table(["split", "label", "source", "view", "images", "patients"],
                    [[r["split"], r["label"], r["source"], r["view"] or "-", r["images"], r["patients"]]
                     for r in summary["rows"]])
    if data.get("num_folds"):
        rule = f"{data['num_folds']}-fold cross-validation by patient, fold {data.get('fold', 0)} is the test split"
    elif data.get("holdout_source"):
        rule = f"every image of source `{data['holdout_source']}` is the test split (a source the model never saw)"
    else:
        rule = f"{data.get('val_fraction')} of patients for validation and {data.get('test_fraction')} for test, per label"
    return lines + ["", "## Splits", "", f"Grouped by patient (no patient in two splits), stratified by label: {rule}; "
                    f"split seed {data.get('split_seed')}. splits.csv lists every image's split.", ""]


def sources_by_label(summary: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """label -> source -> images, over every split."""
    counts: dict[str, dict[str, int]] = {}
    for row in summary["rows"]:
        by_source = counts.setdefault(row["label"], {})
        by_source[row["source"]] = by_source.get(row["source"], 0) + row["images"]
    return counts


def risks_section(summary: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    """The study's shortcut risks, as they apply to this run's data and preprocessing."""
    by_label = sources_by_label(summary)
    single = {label: next(iter(s)) for label, s in by_label.items() if len(s) == 1}
    if len(single) == len(LABELS) and len(set(single.values())) == len(LABELS):
        here = ("**In this run each class comes from one source** (" + "; ".join(f"{l}: `{s}`" for l, s in single.items())
                + "): the numbers above measure source recognition as much as disease.")
    else:
        mix = "; ".join(f"{label}: " + ", ".join(f"`{s}` {n}" for s, n in sources.items())
                        for label, sources in by_label.items())
        here = (f"Images per class and source in this run: {mix}. Where a source holds mostly one class the same "
                "risk applies; the per-source results show whether the model holds within a source.")
    confounding = ("In the study's data each class came from one source, so the label could be read off the source "
                   "(hospital, scanner, film processing, burned-in text) and a model could score 0.99 AUROC by "
                   "recognising the source. " + here)
    preprocessing = config.get("preprocessing") or {}
    marks = ("were detected and painted over (`preprocessing.inpaint`) before training" if preprocessing.get("inpaint")
             else "were left in the images (no `preprocessing.inpaint`)")
    holdout = config.get("data", {}).get("holdout_source")
    unseen = (f"The test split is source `{holdout}`, never seen in training." if holdout else
              "No source was held out, so the test split shares its sources with training: robustness to a new "
              "hospital is not measured here (`data.holdout_source=<source>`, or "
              "`python evaluate.py ckpt_path=... external=[...]` on another hospital's films).")
    return ["## Shortcut risks", "",
            f"- Source confounding. {confounding}",
            f"- Burned-in marks (letters, arrows, text) {marks}. A model can call the class from the marks a source "
            "prints; the CAM scores above show how much of its attention falls on them.",
            f"- Unseen sources. {unseen}",
            "- Small test sets: read the intervals, not the point values.",
            "- The study this framework grows out of found that such models were not fit for clinical use.", ""]


def cam_section(cam_scores: Sequence[tuple[str, Mapping[str, float]]]) -> list[str]:
    lines = ["## Where the model looks (Grad-CAM)", ""]
    if not cam_scores:
        return lines + ["No CAM scores were logged (callbacks without grad_cam, or a backbone without a spatial layer).", ""]
    names = sorted({name for _, scores in cam_scores for name in scores})
    lines += ["Mean over the fixed validation images of cams/epoch_XXX.png: " + "; ".join(
        f"`{n}`: {CAM_SCORES.get(n, n)}" for n in names) + ".", ""]
    return lines + _table(["epoch", *names], [[when, *(_number(s.get(n)) for n in names)] for when, s in cam_scores]) + [""]


def model_section(results: Results, config: Mapping[str, Any]) -> list[str]:
    run, backbone = results.run, config.get("backbone", {})
    params = run.get("parameters", {})
    preprocessing = config.get("preprocessing") or {}
    steps = [step for step in ("inpaint", "crop") if preprocessing.get(step)] or ["none"]
    freeze = config.get("freeze", {})
    return ["## Model", "",
            f"- backbone `{backbone.get('name')}`, weights `{backbone.get('weights')}`, "
            f"input {backbone.get('input_size', '?')} px",
            f"- freeze policy `{freeze.get('policy')}`"
            + (f", {params['trainable']:,} of {params['total']:,} parameters trained" if params else ""),
            f"- preprocessing: {', '.join(steps)}; seed {run.get('seed', config.get('seed'))}",
            f"- {run.get('epochs_trained', '?')} epoch(s), best checkpoint `{run.get('best_checkpoint')}`", ""]


def model_card(results: Results, config: Mapping[str, Any], summary: Mapping[str, Any],
               cam_scores: Sequence[tuple[str, Mapping[str, float]]] = ()) -> str:
    """The card's markdown. `cam_scores`: (which epoch, {score: value}) rows, as cam_rows gives them."""
    threshold = results.threshold if results.threshold is not None else config.get("threshold")
    point = results.operating_point or {}
    made = provenance()
    commit = ""
    if made["git_commit"]:
        commit = f", commit {made['git_commit'][:12]}" + (" with local changes" if made["git_dirty"] else "")
    lines = [f"# Model card: {results.run.get('backbone', 'covid-tl model')}, COVID-19 vs no finding", "",
             f"Written by covid-tl {made['covid_tl_version']}{commit} at the end of training. Details: results.json, "
             "data_summary.json, splits.csv, .hydra/config.yaml in this folder.", "",
             "## Intended use", "", INTENDED_USE[0].upper() + INTENDED_USE[1:] + ".", ""]
    lines += model_section(results, config)
    lines += ["## Threshold", "", f"An image is called {POSITIVE} when its probability is at or above **{threshold:.4g}**. "
              "Every rate below is at this threshold. " + threshold_origin(point), ""]
    lines += data_section(summary, config) + metrics_section(results) + [""] + cam_section(cam_scores)
    return "\n".join(lines + risks_section(summary, config))


def threshold_origin(point: Mapping[str, Any]) -> str:
    """Where the threshold (and the temperature) came from: the config, or a rule on a split."""
    temperature = point.get("temperature", 1.0)
    scaled = (f" Probabilities are temperature-scaled (logits divided by {temperature:.3f}, fitted on the "
              f"{point.get('split')} split's negative log-likelihood)." if temperature != 1.0 else "")
    rule = point.get("rule")
    if rule is None or rule == point.get("threshold"):
        return "It is the number the run config set (`threshold`), not chosen on data." + scaled
    how = ("Youden's rule (the highest sensitivity + specificity - 1)" if rule == "youden" else
           f"`{rule}` (the highest threshold whose sensitivity reaches {rule.split('@')[1]})")
    return (f"It was chosen after training with the best checkpoint by {how} on the {point.get('split')} split "
            f"({point.get('n')} images), midway between two of its probabilities." + scaled)


def write_model_card(run_dir: Path, results: Results, config: Mapping[str, Any], summary: Mapping[str, Any]) -> Path:
    """run_dir/model_card.md."""
    path = Path(run_dir) / "model_card.md"
    rows = [(f"{r['epoch']} ({r['which']})", {k: v for k, v in r.items() if k not in ("epoch", "which")}) for r in results.cam]
    path.write_text(model_card(results, config, summary, rows) + "\n")
    return path
