"""model_card.md: what a trained model is, what it was trained and tested on, how well it did,
what it is for, and the shortcuts that may explain its numbers, in markdown a person reads.

Written at the end of training from the run's own record, never from defaults: results.json's
record (metrics, operating point, CAM scores, the code's versions and commit), the composed run
config, the data summary, the network's input spec and the lung segmenter the run used. Every
preprocessing and augmentation step the config turned on is named with its settings, and the
shortcut section is worked out from this run's data and steps, not boilerplate.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from covid_tl.models.ensemble import ENSEMBLE_FILE
from covid_tl.reporting.audit_table import audit_lines
from covid_tl.core.formatting import markdown_table, number
from covid_tl.core.labels import LABELS, POSITIVE
from covid_tl.stats.metrics import RATES
from covid_tl.preprocess.model_input import InputSpec
from covid_tl.reporting.results import Results

if TYPE_CHECKING:
    from covid_tl.models.segmenter import LungSegmenter

INTENDED_USE = ("research on transfer learning and shortcut learning in chest X-ray classifiers; not for "
                "diagnosis, triage or any clinical decision (not clinically validated, not a medical device)")
CAM_SCORES = {
    "artifact_fraction": "share of the heatmap on detected burned-in marks and the film border (lower is better)",
    "lung_fraction": "share of the heatmap inside the lungs (the data's masks, else the lung segmenter's; higher is better)",
    "lung_area": "the lungs' share of the model's input: the lung_fraction of a heatmap spread evenly (chance level)",
}
#: Trainer keys that make a run something other than full epochs over the training split.
SHORT_RUNS = {
    "limit_train_batches": "at most {} training batch(es) per epoch (trainer.limit_train_batches)",
    "overfit_batches": "the same {} training batch(es) every epoch (trainer.overfit_batches)",
}


def setting(value: Any) -> str:
    """A config value as the config writes it (lists in brackets), so a reader finds the key's value."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(setting(v) for v in value) + "]"
    return "null" if value is None else str(value)


def group_choices(run_dir: Path) -> dict[str, str]:
    """Group -> option of a Hydra run (`.hydra/hydra.yaml`): which preset each group is; {} without one."""
    path = Path(run_dir) / ".hydra" / "hydra.yaml"
    if not path.is_file():
        return {}
    choices = ((yaml.safe_load(path.read_text()) or {}).get("hydra") or {}).get("runtime", {}).get("choices") or {}
    return {group: str(option) for group, option in choices.items() if option is not None}


def preset(group: str, choices: Mapping[str, str]) -> str:
    return f" `{choices[group]}`" if group in choices else ""


def inpaint_step(options: Mapping[str, Any]) -> str:
    return ("inpaint: burned-in marks (letters, arrows, text) detected (covid_tl.preprocess.marks; settings under "
            f"`preprocessing.inpaint.detector`) and painted over by OpenCV `{options.get('method')}`, radius "
            f"{setting(options.get('radius'))} of the shorter side, mask grown by {setting(options.get('dilate'))}")


def crop_step(options: Mapping[str, Any]) -> str:
    auto = (f"uniform black, white or constant border rows and columns removed from the outside in (at most "
            f"{setting(options.get('max_border'))} per side, keeping at least {setting(options.get('min_keep'))} of "
            "each side), then " if options.get("auto") else "")
    return f"crop: {auto}{setting(options.get('fraction'))} of what is left cut from each side"


def lungs_step(options: Mapping[str, Any], segmenter: LungSegmenter | None) -> str:
    """The lung field with every setting that changes what the model sees, and which segmenter found the lungs."""
    model = options.get("model")
    which = "the bundled lung segmenter" if model is None else f"the lung segmenter `{model}`"
    digest = f"digest `{segmenter.digest}`" if segmenter is not None else "digest not recorded"
    outside = {"keep": "kept", "fill": f"filled with grey {setting(options.get('fill'))}",
               "blur": f"blurred (sigma {setting(options.get('blur'))} of the crop's shorter side)"}
    standardize = {"equalize": "histogram equalisation", "zscore": "z-score", "none": "none",
                   "clahe": f"CLAHE (clip {setting(options.get('clahe_clip'))}, "
                            f"{setting(options.get('clahe_tiles'))} tiles a side)"}
    return (f"lungs: {which} ({digest}) finds the lungs; the film is cut to their box plus a margin of "
            f"{setting(options.get('margin'))} of its height and width on each side; inside the box, pixels outside the lungs are "
            f"{outside.get(options.get('outside'), setting(options.get('outside')))}; intensity standardised on lung "
            f"pixels only: {standardize.get(options.get('standardize'), setting(options.get('standardize')))} "
            f"(`standardize={options.get('standardize')}`). A mask covering under {setting(options.get('min_area'))} "
            f"or over {setting(options.get('max_area'))} of the film is refused and the whole film used")


def preprocessing_lines(config: Mapping[str, Any], segmenter: LungSegmenter | None,
                        choices: Mapping[str, str]) -> list[str]:
    """The preprocessing steps in the order covid_tl.preprocess.pipeline runs them: inpaint, crop, lungs."""
    options = config.get("preprocessing") or {}
    builders = {"inpaint": inpaint_step, "crop": crop_step, "lungs": lambda o: lungs_step(o, segmenter)}
    steps = [build(options[key]) for key, build in builders.items() if options.get(key) is not None]
    if not steps:
        return [f"- preprocessing{preset('preprocessing', choices)}: no step; each film goes to the model as loaded"]
    return ([f"- preprocessing{preset('preprocessing', choices)}, in this order:"]
            + [f"  {i}. {step}" for i, step in enumerate(steps, 1)])


def augment_steps(augment: Mapping[str, Any]) -> str:
    """The random steps an augment config turns on, as its builder reads them."""
    target = str(augment.get("_target_", "")).rsplit(".", 1)[-1]
    steps = {k: v for k, v in augment.items() if isinstance(v, Mapping) and v.get("p")}
    on = [f"{k} with p {setting(v['p'])}, range {setting(v.get('range'))}" for k, v in steps.items()]
    if set(steps) & {"rotate", "shear", "scale", "translate"}:
        on.append(f"borders revealed filled by {augment.get('border', 'reflect')}")
    return ("each training image: " + "; ".join(on) + f" (covid_tl.preprocess.augment.{target})" if on
            else "no random augmentation")


def augment_line(config: Mapping[str, Any], choices: Mapping[str, str]) -> str:
    augment, watermark = config.get("augment") or {}, config.get("watermark") or {}
    p = watermark.get("p") or 0
    transplant = (f"watermark transplant{preset('watermark', choices)}: marks cut from {POSITIVE} training images "
                  f"pasted onto no-finding training images with p {setting(p)}, {setting(watermark.get('n'))} per image"
                  if p else "no watermark transplant (watermark.p 0)")
    return f"- augmentation{preset('augment', choices)}: {augment_steps(augment)}; {transplant}"


def freeze_policy(freeze: Mapping[str, Any], keep_fc: int) -> str:
    """What trains under the policy (covid_tl.models.freeze), with the FC layers this backbone kept."""
    policy, kept = freeze.get("policy"), f"its {keep_fc} kept pretrained FC layer(s)"
    return {"none": "every parameter trains",
            "all": "every backbone parameter is frozen" + (f" ({kept} too)" if keep_fc else "") + ": only the new head trains",
            "conv_base": "the convolutional base is frozen; " + (f"{kept} train with the new head" if keep_fc
                                                                 else "only the new head trains (no FC layer kept)"),
            "last_n": f"the last {freeze.get('trainable')} unit(s) of the backbone train with the new head, the rest is frozen",
            }.get(policy, "as configured")


def freeze_line(config: Mapping[str, Any], params: Mapping[str, int]) -> str:
    freeze = config.get("freeze") or {}
    what = freeze_policy(freeze, (config.get("backbone") or {}).get("keep_fc") or 0)
    if freeze.get("policy") != "none" and freeze.get("bn"):
        what += ("; BatchNorm of frozen parts keeps its pretrained statistics" if freeze["bn"] == "frozen"
                 else "; BatchNorm statistics of frozen parts update (freeze.bn=train)")
    counts = f"; {params['trainable']:,} of {params['total']:,} parameters trained" if params else ""
    return f"- freeze policy `{freeze.get('policy')}`: {what}{counts}"


def no_checkpoint_reason(config: Mapping[str, Any]) -> str:
    if (config.get("trainer") or {}).get("fast_dev_run"):
        return "trainer.fast_dev_run skips choosing one"
    return "no checkpoint callback saved one"


def tested_weights(results: Results) -> str:
    """Which weights every result is of: the best checkpoint, or those at the end of training."""
    if ensemble := results.run.get("ensemble"):
        return f"ensemble of {len(ensemble['members'])} members at epoch {ensemble['epoch']}"
    return "best checkpoint" if results.run.get("best_checkpoint") else "weights at the end of training"


def training_line(results: Results, config: Mapping[str, Any]) -> str:
    run, trainer = results.run, config.get("trainer") or {}
    optimizer = config.get("optimizer") or {}
    fast = trainer.get("fast_dev_run")
    if fast:
        done = (f"{1 if fast is True else fast} batch(es) of training and validation (trainer.fast_dev_run): a check "
                "that the pipeline runs, not a model to use")
    else:
        done = f"{run.get('epochs_trained', '?')} epoch(s) of at most {trainer.get('max_epochs')} (trainer.max_epochs)"
        done += "".join(f", {text.format(trainer[key])}" for key, text in SHORT_RUNS.items() if trainer.get(key))
    best = run.get("best_checkpoint")
    if ensemble := run.get("ensemble"):
        done = (f"{len(ensemble['members'])} fold members of at most {trainer.get('max_epochs')} epoch(s) each "
                "(trainer.max_epochs)")
    kept = (f"the ensemble `{best}` (below)" if ensemble else
            f"best checkpoint `{best}` (epoch {run.get('best_epoch')}, {run.get('best_monitor')} "
            f"{number(run.get('best_score'))})" if best else
            f"no best checkpoint ({no_checkpoint_reason(config)}): every result is of the weights at the end of training")
    algorithm = str(optimizer.get("_target_", "?")).rsplit(".", 1)[-1]
    return (f"- training: {done}; optimizer {algorithm}, lr {setting(optimizer.get('lr'))}; seed "
            f"{run.get('seed', config.get('seed'))}; {kept}")


def model_section(results: Results, config: Mapping[str, Any], input_spec: InputSpec,
                  segmenter: LungSegmenter | None, choices: Mapping[str, str]) -> list[str]:
    """What the network is and every step between a film and its input, as this run did them."""
    backbone = config.get("backbone") or {}
    keep_fc = backbone.get("keep_fc")
    return ["## Model", "",
            f"- backbone `{backbone.get('name')}`, weights `{backbone.get('weights')}`"
            + (f", {keep_fc} pretrained FC layer(s) kept" if keep_fc else "")
            + f"; input {input_spec.size} x {input_spec.size} px, {input_spec.channels} channel(s): each film, "
            "after preprocessing, is resized to this square (aspect ratio not kept)",
            freeze_line(config, results.run.get("parameters") or {}),
            *preprocessing_lines(config, segmenter, choices),
            augment_line(config, choices),
            training_line(results, config), ""]


#: The threshold section's promise; a site's card (site_card) names its one exception.
EVERY_RATE = "Every rate below is at this threshold."


def threshold_section(results: Results, config: Mapping[str, Any]) -> list[str]:
    threshold = results.threshold if results.threshold is not None else config.get("threshold")
    return ["## Threshold", "", f"An image is called {POSITIVE} when its probability is at or above "
            f"**{threshold:.4g}**. {EVERY_RATE} "
            + threshold_origin(results.operating_point or {}, tested_weights(results)), ""]


def threshold_origin(point: Mapping[str, Any], weights: str = "best checkpoint") -> str:
    """Where the threshold (and the temperature) came from: the config, or a rule on a split's films."""
    temperature = point.get("temperature", 1.0)
    scaled = (f" Probabilities are temperature-scaled (logits divided by {temperature:.3f}, fitted on the "
              f"{point.get('split')} split's negative log-likelihood)." if temperature != 1.0 else "")
    rule = point.get("rule")
    if point.get("split") == "oof":
        return (f"It was chosen by {rule} on the pooled out-of-fold predictions of the {point.get('n')} development "
                "images, each scored by the member that never trained on it (oof_predictions.csv), and applied to the "
                "members' mean probability." + scaled.replace("split's", "predictions'"))
    if rule is None or rule == point.get("threshold"):
        return "It is the number the run config set (`threshold`), not chosen on data." + scaled
    how = ("Youden's rule (`threshold=youden`: the highest sensitivity + specificity - 1)" if rule == "youden" else
           f"`threshold={rule}` (the lowest threshold whose specificity reaches {rule.split('@')[1]})"
           if rule.startswith("spec@") else
           f"`threshold={rule}` (the highest threshold whose sensitivity reaches {rule.split('@')[1]})")
    return (f"It was chosen after training with the {weights} by {how} on the "
            f"{point.get('split')} split's {point.get('n')} images (listed in splits.csv), midway between the lowest of "
            f"their probabilities still called {POSITIVE} and the next lower one (0 if none is lower)." + scaled)


def data_section(summary: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    """Images and patients per split, label, source and view; the split rule."""
    data = config.get("data", {})
    readers = {name: (source or {}).get("_target_", "?") for name, source in (data.get("sources") or {}).items()}
    lines = ["## Data", "", f"{summary['images']} images of {summary['patients']} patients"
             + (f"; {summary['skipped']} listed images left out as unusable (bad_rows.csv)" if summary.get("skipped") else "")
             + ". Sources as configured: " + ", ".join(f"`{n}` ({t})" for n, t in readers.items()) + ".", ""]
    lines += markdown_table(["split", "label", "source", "view", "images", "patients"],
                            [[r["split"], r["label"], r["source"], r["view"] or "-", r["images"], r["patients"]]
                             for r in summary["rows"]])
    held = (f"every image of source `{data['holdout_source']}` is the test split (a source the model never saw)"
            if data.get("holdout_source") else
            f"every `{data['holdout_view']}` film is the test split, with its patients' other films (a view the model never saw)"
            if data.get("holdout_view") else None)
    if config.get("cv"):
        test = held or f"{data.get('test_fraction')} of patients per label for test"
        rule = (f"{test}; the others (`dev`) in {config['cv']} folds by patient and label, member i validating on "
                "fold i (splits.csv: `fold`)")
    elif data.get("num_folds") and data.get("fold_split", "test") == "val":
        rule = (f"{held or 'the test split as without folds'}; the other patients in {data['num_folds']} folds by "
                f"patient, fold {data.get('fold', 0)} is the validation split")
    elif data.get("num_folds"):
        rule = f"{data['num_folds']}-fold cross-validation by patient, fold {data.get('fold', 0)} is the test split"
    elif held:
        rule = held
    else:
        rule = f"{data.get('val_fraction')} of patients for validation and {data.get('test_fraction')} for test, per label"
    draws = (" Training batches are drawn (with replacement, seeded) so that each label x view cell weighs the same "
             "(`data.balance_views`): the view cannot predict the label in them." if data.get("balance_views") else "")
    return lines + ["", "## Splits", "", f"Grouped by patient (no patient in two splits), stratified by label: {rule}; "
                    f"split seed {data.get('split_seed')}. splits.csv lists every image's split.{draws}", ""]


def metrics_section(results: Results, weights: str = "best checkpoint") -> list[str]:
    """Per set: rates with 95% Wilson intervals, AUROC with its patient-level bootstrap interval."""
    rows = [[name, r["n"], *(number(r[m], r.get(f"{m}_ci95")) for m in RATES),
             number(r["auroc"], r.get("bootstrap_ci95", {}).get("auroc"))] for name, r in results.sets.items()]
    lines = [f"## Results ({weights})", "",
             f"Positive class {POSITIVE}: sensitivity is recall on {POSITIVE}, specificity recall on no finding. "
             "Rates with 95% Wilson intervals, AUROC with a 95% bootstrap interval over patients "
             "(results.json also has bootstrap intervals of the rates).", ""]
    lines += markdown_table(["set", "n", *RATES, "auroc"], rows)
    if "test" in results.sets:
        matrix = results.sets["test"]["confusion_matrix"]
        lines += ["", "Test confusion matrix (rows: true class, columns: predicted class):", ""]
        lines += markdown_table(["", *matrix["labels"]],
                                [[label, *row] for label, row in zip(matrix["labels"], matrix["matrix"])])
    for column in ("source", "view"):
        rows = [[name, value, r["n"], *(r[m] for m in (*RATES, "auroc"))]
                for name, block in results.sets.items() for value, r in block.get(f"per_{column}", {}).items()]
        if column == "source" or rows:  # views where the manifest records them
            lines += ["", f"### Per {column}", "", f"A rate is `-` where the {column} has no image of the class it needs.", ""]
            lines += markdown_table(["set", column, "n", *RATES, "auroc"], rows)
    return lines + [""]


def ensemble_section(results: Results, summary: Mapping[str, Any]) -> list[str]:
    """A fold ensemble's members, the epoch and threshold chosen on their pooled out-of-fold
    predictions beside what each fold alone would have chosen, and the views it trained on."""
    ensemble = results.run.get("ensemble")
    if not ensemble:
        return []
    point = results.operating_point or {}
    own = {f["fold"]: f for f in point.get("per_fold", [])}
    rows = []
    for member in ensemble["members"]:
        alone = own.get(member["fold"]) or {}
        rates = alone.get("test") or {}
        rows.append([member["fold"], alone.get("n", "-"), member["epoch"], f"`{member['checkpoint']}`",
                     number(alone.get("threshold")), number(rates.get("sensitivity")), number(rates.get("specificity"))])
    if "test" in results.sets:
        rows.append(["pooled", point.get("n"), ensemble["epoch"], f"`{ensemble.get('file', 'ensemble.json')}`",
                     number(point.get("threshold")), number(results.sets["test"]["sensitivity"]),
                     number(results.sets["test"]["specificity"])])
    cuts = [f["threshold"] for f in point.get("per_fold", [])]
    views = summary.get("images_per_split_label_and_view", {}).get("dev", {})  # label -> view -> images
    lines = ["## Ensemble", "", f"{len(ensemble['members'])} members (ensemble.json: their checkpoints and sha256 digests); a "
             "film's probability is the members' mean. Each member trained on all development patients but one fold "
             f"and was scored on that fold. Epoch {ensemble['epoch']} was chosen for every member on the pooled "
             f"out-of-fold AUROC ({number(ensemble.get('pooled_oof_auroc'))}; optimistic by that choice: the test "
             "split is the unbiased figure); the threshold on the same pooled predictions (ensemble.png).", ""]
    lines += markdown_table(["fold", "val images", "epoch", "checkpoint", f"that fold's own {point.get('rule')} cut",
                             "test sensitivity at it", "test specificity at it"], rows)
    if cuts:
        lines += ["", f"One fold's films alone would have put the cut anywhere from {min(cuts):.3f} to {max(cuts):.3f}; "
                  f"the pooled cut is {point['threshold']:.3f}."]
    cells = sorted((view, label, n) for label, by_view in views.items() for view, n in by_view.items())
    if cells:
        lines += ["", "Trained and validated on (development images by view and label): "
                  + ", ".join(f"{view} {label} {n}" for view, label, n in cells) + "."]
    return lines + [""]


def cam_section(cam: Sequence[Mapping[str, Any]]) -> list[str]:
    """results.json's CAM rows (the best and the last epoch's scores), as the record has them."""
    lines = ["## Where the model looks (Grad-CAM)", ""]
    if not cam:
        return lines + ["No CAM scores were logged (callbacks without grad_cam, or a backbone without a spatial layer).", ""]
    names = sorted({name for row in cam for name in row if name not in ("epoch", "which")})
    lines += ["Mean over the fixed validation images of cams/epoch_XXX.png: " + "; ".join(
        f"`{n}`: {CAM_SCORES.get(n, n)}" for n in names) + ".", ""]
    return lines + markdown_table(["epoch", *names], [[f"{row['epoch']} ({row['which']})", *(row.get(n) for n in names)]
                                                      for row in cam]) + [""]


def sources_by_label(summary: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """label -> source -> images, over every split."""
    counts: dict[str, dict[str, int]] = {}
    for row in summary["rows"]:
        by_source = counts.setdefault(row["label"], {})
        by_source[row["source"]] = by_source.get(row["source"], 0) + row["images"]
    return counts


def marks_fate(config: Mapping[str, Any]) -> str:
    """What became of burned-in marks: painted over, cut away with the lung crop or the borders, or left."""
    preprocessing = config.get("preprocessing") or {}
    lungs = preprocessing.get("lungs")
    if preprocessing.get("inpaint") is not None:
        fate = "were detected and painted over (`preprocessing.inpaint`) before training"
    elif lungs is not None:
        fate = ("outside the lungs' box and its margin were cut away with the lung crop (`preprocessing.lungs`; "
                "not on a film whose lung mask was refused); marks inside it stayed (no `preprocessing.inpaint`)")
    elif preprocessing.get("crop") is not None:
        fate = ("on the film's borders were cut away with them (`preprocessing.crop`); marks further in stayed "
                "(no `preprocessing.inpaint`)")
    else:
        fate = "were left in the images (no `preprocessing.inpaint`, `crop` or `lungs`)"
    if lungs is not None and lungs.get("outside") in ("fill", "blur"):
        fate += f"; inside the box, pixels outside the lungs were {'filled' if lungs['outside'] == 'fill' else 'blurred'}"
    p = (config.get("watermark") or {}).get("p") or 0
    return fate + (f"; {POSITIVE} marks were also pasted onto no-finding training images (p {setting(p)})" if p else "")


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
    holdout = config.get("data", {}).get("holdout_source")
    unseen = (f"The test split is source `{holdout}`, never seen in training." if holdout else
              "No source was held out, so the test split shares its sources with training: robustness to a new "
              "hospital is not measured here (`data.holdout_source=<source>`, or "
              "`python evaluate.py ckpt_path=... external=[...]` on another hospital's films).")
    return ["## Shortcut risks", "",
            f"- Source confounding. {confounding}",
            f"- Burned-in marks (letters, arrows, text) {marks_fate(config)}. A model can call the class from the "
            "marks a source prints; the CAM scores above show how much of its attention falls on them.",
            f"- Unseen sources. {unseen}",
            "- Small test sets: read the intervals, not the point values.",
            "- The study this framework grows out of found that such models were not fit for clinical use.", ""]


def audit_section(audit: Mapping[str, Any] | None) -> list[str]:
    """The shortcut audit's table (train.py audit=true), or how to run one."""
    if audit is None:
        return ["## Shortcut audit", "", "Not run (`audit=true` runs it after training; `python audit.py "
                "ckpt_path=<this run's best checkpoint> external=[...]` at any time).", ""]
    if "failed" in audit:
        return ["## Shortcut audit", "", f"`audit=true` failed ({audit['failed']}); everything else in this folder is "
                "complete. `python audit.py ckpt_path=<this run's best checkpoint>` runs it again.", ""]
    where = ", ".join(f"{name} ({set_['n']} films)" for name, set_ in audit.get("sets", {}).items())
    subject = "The ensemble" if audit.get("subject") == ENSEMBLE_FILE else "The best checkpoint"
    return ["## Shortcut audit", "", f"{subject} under each intervention, on {where}; lung fields: "
            + ", ".join(f"{k}: {v}" for k, v in audit.get("lungs", {}).get("masks", {}).items())
            + ". Films under each intervention: audit/audit_examples.png; every film's probability under each: "
            "audit/audit_films.csv.", "", *audit_lines(audit), ""]


def made_by(run: Mapping[str, Any]) -> str:
    """The code that made the run, as results.json records it (one provenance for both files)."""
    version = (run.get("versions") or {}).get("covid-tl")
    git = run.get("git") or {}
    commit = (f", commit {git['commit'][:12]}" + (" with local changes" if git.get("dirty") else "")
              if git.get("commit") else "")
    return f"covid-tl {version}{commit}" if version else f"covid-tl{commit}"


def model_card(results: Results, config: Mapping[str, Any], summary: Mapping[str, Any], input_spec: InputSpec,
               segmenter: LungSegmenter | None = None, choices: Mapping[str, str] | None = None,
               audit: Mapping[str, Any] | None = None) -> str:
    """The card's markdown. `input_spec`: the network's (the size every film was resized to);
    `segmenter`: the lung segmenter preprocessing used (None without `lungs`); `choices`: group ->
    preset of the run (Hydra's), to name presets; `audit`: audit.json of the run's shortcut audit."""
    weights = tested_weights(results)
    lines = [f"# Model card: {results.run.get('backbone', 'covid-tl model')}, COVID-19 vs no finding", "",
             f"Written by {made_by(results.run)} at the end of training. Details: results.json, "
             "data_summary.json, splits.csv, .hydra/config.yaml in this folder.", "",
             "## Intended use", "", INTENDED_USE[0].upper() + INTENDED_USE[1:] + ".", ""]
    lines += model_section(results, config, input_spec, segmenter, choices or {})
    lines += threshold_section(results, config) + ensemble_section(results, summary) + data_section(summary, config)
    lines += metrics_section(results, weights)
    return "\n".join(lines + cam_section(results.cam) + audit_section(audit) + risks_section(summary, config))


def write_model_card(run_dir: Path, results: Results, config: Mapping[str, Any], summary: Mapping[str, Any],
                     input_spec: InputSpec, segmenter: LungSegmenter | None = None,
                     audit: Mapping[str, Any] | None = None) -> Path:
    """run_dir/model_card.md, naming the presets the run's .hydra/hydra.yaml records."""
    path = Path(run_dir) / "model_card.md"
    path.write_text(model_card(results, config, summary, input_spec, segmenter, group_choices(run_dir), audit) + "\n")
    return path

