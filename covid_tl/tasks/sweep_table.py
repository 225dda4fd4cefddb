"""The table half of the sweep report (covid_tl.tasks.report): one row per run dir of a sweep,
read through covid_tl.reporting.results, and those rows pooled per setting.

A setting is what a user chose (group options, overrides, the threshold *rule*); what a run
measured or chose for itself (metrics, the threshold value youden picked, CAM scores) is an
outcome, pooled into mean and spread over the seeds and CV folds of one setting.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from omegaconf import OmegaConf

from covid_tl.stats.calibration import CALIBRATION_METRICS
from covid_tl.core.errors import ConfigError
from covid_tl.engine.model_card import group_choices
from covid_tl.stats.metrics import METRICS
from covid_tl.reporting.results import read_results

#: Overrides that repeat a setting rather than change it: pooled into mean and spread.
REPEAT_KEYS = ("seed", "data.fold", "data.split_seed", "data.sample_seed")
#: Config groups whose chosen option names a setting (from .hydra/hydra.yaml).
GROUPS = ("data", "backbone", "preprocessing", "freeze", "augment", "optimizer", "scheduler", "trainer", "experiment")
#: Keys of the composed config a reader needs to know the run (absent or null ones are skipped).
CONFIG_KEYS = ("seed", "data.split_seed", "threshold", "backbone.name", "backbone.weights", "backbone.input_size",
               "backbone.keep_fc", "freeze.trainable", "freeze.bn", "trainer.max_epochs", "trainer.precision",
               "optimizer.lr", "optimizer.weight_decay", "data.batch_size", "data.num_folds",
               "data.holdout_source", "watermark.p", "model.backbone_lr_scale", "model.pos_weight")
#: The threshold each run's rule chose on its validation split: an outcome, pooled like a metric.
CHOSEN = "chosen_threshold"


class ReportError(ConfigError):
    pass


def is_missing(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def natural_key(value: Any) -> tuple:
    """Sort key that reads numbers as numbers ("2" < "10", "resnet50" < "resnet101"); missing last."""
    if is_missing(value):
        return (2,)
    try:
        numeric = float(value)
    except (TypeError, ValueError):
        numeric = math.nan
    if not math.isnan(numeric):
        return (0, numeric)
    return (1, tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(re.split(r"(\d+)", str(value)))))


def label(values: Mapping[str, Any], keys: Sequence[str], names: bool = True, sep: str = ", ") -> str:
    """`backbone=vgg16, freeze.trainable=2` (or the values alone); a missing value is left out,
    never printed as nan."""
    return sep.join(f"{k}={values[k]}" if names else str(values[k]) for k in keys if not is_missing(values.get(k)))


def find_runs(sweep_dir: Path) -> list[Path]:
    """Run dirs below sweep_dir, in natural order (job 2 before job 10)."""
    runs = {p.parent for p in sweep_dir.rglob("results.json")}
    if not runs:
        raise ReportError(f"no run with a results.json under {sweep_dir}")
    return sorted(runs, key=lambda p: [natural_key(part) for part in p.relative_to(sweep_dir).parts])


def read_overrides(run_dir: Path) -> dict[str, str]:
    path = run_dir / ".hydra" / "overrides.yaml"
    items = yaml.safe_load(path.read_text()) if path.is_file() else []
    pairs = (item.split("=", 1) for item in items or [] if "=" in item and not item.startswith("hydra."))
    return {key.lstrip("+~"): value for key, value in pairs}


def read_settings(run_dir: Path, overrides: dict[str, str]) -> dict[str, str]:
    """Chosen group options and CONFIG_KEYS of the run's composed config, as text (empty
    when the run has no .hydra record); the run's overrides win where they name the same key."""
    settings: dict[str, str] = {}
    config_file = run_dir / ".hydra" / "config.yaml"
    choices = group_choices(run_dir)
    settings.update({g: choices[g] for g in GROUPS if g in choices})
    if config_file.is_file():
        config = OmegaConf.create(yaml.safe_load(config_file.read_text()) or {})
        for key in CONFIG_KEYS:
            try:
                value = OmegaConf.select(config, key)
            except Exception:  # an interpolation only a live Hydra run resolves
                value = OmegaConf.select(config, key, throw_on_resolution_failure=False)
            if value is not None:
                settings[key] = str(value)
    return {**settings, **overrides}


def code_record(run: dict[str, Any]) -> tuple[str, str]:
    """(commit, versions) of a run's results.json, as text; empty when not recorded."""
    git = run.get("git") or {}
    commit = git.get("commit", "")[:12] + (" (uncommitted changes)" if git.get("dirty") else "")
    versions = ", ".join(f"{name} {version}" for name, version in (run.get("versions") or {}).items() if version)
    return commit, versions


def tested_images(run_dir: Path) -> frozenset[str] | None:
    """The paths of the run's test images (splits.csv, else predictions.csv), None when neither
    is there: equal counts do not make equal test sets."""
    for name, column in (("splits.csv", "split"), ("predictions.csv", "set")):
        path = run_dir / name
        try:
            frame = pd.read_csv(path, usecols=["path", column], dtype=str)
        except (OSError, ValueError):  # absent, or without the columns that name images and sets
            continue
        return frozenset(frame.loc[frame[column] == "test", "path"])
    return None


def run_row(run_dir: Path, sweep_dir: Path) -> dict[str, Any]:
    """A run's settings (threshold by its rule) and outcomes (test metrics with their 95%
    bootstrap interval, the threshold value chosen, calibration, CAM scores, training record)."""
    results = read_results(run_dir)
    overrides = read_overrides(run_dir)
    settings = read_settings(run_dir, overrides)
    point = results.operating_point or {}
    if "threshold" not in settings and point.get("rule") is not None:
        settings["threshold"] = str(point["rule"])
    test = results.sets.get("test", {})
    row: dict[str, Any] = {"run": str(run_dir.relative_to(sweep_dir)) or ".", **settings}
    intervals = {}
    for metric in METRICS:
        row[metric] = test.get(metric)
        intervals[metric] = (test.get("bootstrap_ci95") or {}).get(metric) or test.get(f"{metric}_ci95")
        row[f"{metric}_ci95_low"], row[f"{metric}_ci95_high"] = intervals[metric] or (None, None)
    row["n_test"], row[CHOSEN] = test.get("n"), results.threshold
    row.update({name: test.get(name) for name in CALIBRATION_METRICS})
    if "extra_no_finding" in results.sets:
        row["extra_specificity"] = results.sets["extra_no_finding"].get("specificity")
    row.update({f"cam_{name}": value for name, value in results.cam_scores().items()})
    run = results.run
    parameters = run.get("parameters") or {}
    row.update({key: run.get(key) for key in ("best_epoch", "epochs_trained", "wall_time_s")})
    row["trainable_params"], row["total_params"] = parameters.get("trainable"), parameters.get("total")
    row["commit"], row["versions"] = code_record(run)
    row.update(_confusion=test.get("confusion_matrix"), _intervals=intervals, _settings=list(settings),
               _overridden=list(overrides), _test_images=tested_images(run_dir))
    return row


def setting_text(table: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """The settings as text, a missing one as ""."""
    return table[list(keys)].astype(object).where(table[list(keys)].notna(), "").astype(str)


def setting_order(key: str) -> tuple[int, int]:
    """Groups, then config keys (in CONFIG_KEYS order), then other overrides, then the repeats."""
    if key in REPEAT_KEYS:
        return (3, REPEAT_KEYS.index(key))
    if key in GROUPS:
        return (0, GROUPS.index(key))
    return (1, CONFIG_KEYS.index(key)) if key in CONFIG_KEYS else (2, 0)


def summarize_sweep(sweep_dir: Path) -> tuple[pd.DataFrame, list[str], dict[str, str]]:
    """(one row per run, the settings whose values differ between runs, those fixed: value)."""
    rows = [run_row(r, sweep_dir) for r in find_runs(sweep_dir)]
    table = pd.DataFrame(rows)
    table["n_test"] = table["n_test"].astype("Int64")  # a count stays whole where a run lacks it
    keys = list(dict.fromkeys(key for row in rows for key in row["_settings"]))
    keys.sort(key=setting_order)
    text = setting_text(table, keys)
    varying = [k for k in keys if text[k].nunique() > 1]
    overridden = {k for row in rows for k in row["_overridden"]}
    # A config key that only follows another (data.split_seed = ${seed}) adds a column, not news.
    varying = [k for i, k in enumerate(varying)
               if k in overridden or not any(text[k].equals(text[j]) for j in varying[:i])]
    fixed = {k: text[k].iloc[0] for k in keys if text[k].nunique() == 1 and text[k].iloc[0]}
    return table, varying, fixed


def outcome_columns(table: pd.DataFrame) -> list[str]:
    """The per-run numbers pooled per setting: metrics, chosen threshold, calibration, CAM scores."""
    named = [*METRICS, CHOSEN, *CALIBRATION_METRICS, "extra_specificity"]
    return [c for c in table.columns if c in named or c.startswith("cam_")]


def pool_repeats(table: pd.DataFrame, varying: Sequence[str]) -> pd.DataFrame:
    """One row per setting (seeds and CV folds pooled, `runs` counts them), in natural order:
    mean and standard deviation of every outcome, and the whisker ends of each metric: mean +-
    SD where a setting has several runs, else the run's 95% bootstrap interval (`whiskers`:
    "std" or "ci")."""
    settings = [k for k in varying if k not in REPEAT_KEYS]
    columns = outcome_columns(table)
    numeric = table[columns].apply(pd.to_numeric, errors="coerce")
    text = setting_text(table, settings)
    keys = [tuple(values) for values in text.itertuples(index=False)] if settings else [()] * len(table)
    rows = []
    for key in sorted(set(keys), key=lambda k: [natural_key(v) for v in k]):
        group = numeric[[k == key for k in keys]]
        several = len(group) > 1
        row: dict[str, Any] = {k: v or None for k, v in zip(settings, key)}
        row.update(runs=len(group), whiskers="std" if several else "ci")
        for column in columns:
            row[column] = group[column].mean()
            row[f"{column}_std"] = group[column].std(ddof=1) if several else 0.0
        for metric in METRICS:
            spread = row[f"{metric}_std"]
            interval = None if several else table.loc[group.index[0], "_intervals"].get(metric)
            low, high = interval or ((row[metric] - spread, row[metric] + spread) if several else (None, None))
            row[f"{metric}_low"], row[f"{metric}_high"] = low, high
        rows.append(row)
    return pd.DataFrame(rows)
