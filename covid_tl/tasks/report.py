"""Turn a Hydra sweep into a table and plots: `python -m covid_tl.tasks.report multirun/<date>/<time>`.

Reads every run dir below the sweep (results.json, .hydra/overrides.yaml, .hydra/config.yaml
and the group choices in .hydra/hydra.yaml) and writes, into the sweep dir (or --out):
summary.csv and summary.md (the settings fixed for the sweep and the code that ran, then one row
per run: the settings that vary, test metrics with 95% intervals, extra no-finding
specificity, CAM scores, best epoch, wall time, parameters), settings.csv (seeds and CV folds
of one setting pooled into mean and spread), plots (metric against a numeric setting such as
freeze depth, a line per backbone, the study's Figure 7; grouped bars per setting; the test
confusion matrices side by side) and report.html, all of it in one file that stands alone.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from omegaconf import OmegaConf

from covid_tl.calibration import CALIBRATION_METRICS
from covid_tl.metrics import METRICS
from covid_tl.page import Block, Heading, Image, Table, Text, html_page, markdown
from covid_tl.plots import confusion_matrices, metric_bars, metric_lines

#: Overrides that repeat a setting rather than change it: pooled into mean and spread.
REPEAT_KEYS = ("seed", "data.fold", "data.split_seed", "data.sample_seed")
#: Numeric settings worth a line plot, in order of preference, with their axis label.
DEPTH_KEYS = ("freeze.trainable", "backbone.keep_fc")
DEPTH_LABELS = {"freeze.trainable": "trainable layers (freeze.trainable)",
                "backbone.keep_fc": "kept fully connected layers (backbone.keep_fc)"}
#: Config groups whose chosen option names a setting (from .hydra/hydra.yaml).
GROUPS = ("data", "backbone", "preprocessing", "freeze", "augment", "optimizer", "scheduler", "trainer", "experiment")
#: Keys of the composed config a reader needs to know the run (absent or null ones are skipped).
CONFIG_KEYS = ("seed", "data.split_seed", "threshold", "backbone.model", "backbone.weights", "backbone.input_size",
               "backbone.keep_fc", "freeze.trainable", "freeze.bn", "trainer.max_epochs", "trainer.precision",
               "optimizer.lr", "optimizer.weight_decay", "data.batch_size", "data.num_folds",
               "data.holdout_source", "augment.watermark.p", "model.backbone_lr_scale", "model.pos_weight")
#: Headers of the per-run training record (results.json's `run` block), see training_columns().
TRAINING = ("best epoch", "epochs", "wall time (s)", "trainable / total parameters")
WHISKERS = {"ci": "95% bootstrap CI (by patient)", "std": "mean \u00b1 1 SD over seeds / folds"}


class ReportError(ValueError):
    pass


def find_runs(sweep_dir: Path) -> list[Path]:
    runs = sorted({p.parent for p in sweep_dir.rglob("results.json")}, key=lambda p: str(p))
    if not runs:
        raise ReportError(f"no run with a results.json under {sweep_dir}")
    return runs


def read_overrides(run_dir: Path) -> dict[str, str]:
    path = run_dir / ".hydra" / "overrides.yaml"
    items = yaml.safe_load(path.read_text()) if path.is_file() else []
    pairs = (item.split("=", 1) for item in items or [] if "=" in item and not item.startswith("hydra."))
    return {key.lstrip("+~"): value for key, value in pairs}


def read_settings(run_dir: Path, overrides: dict[str, str]) -> dict[str, str]:
    """Chosen group options and CONFIG_KEYS of the run's composed config, as text (empty
    when the run has no .hydra record); the run's overrides win where they name the same key."""
    settings: dict[str, str] = {}
    hydra_file, config_file = run_dir / ".hydra" / "hydra.yaml", run_dir / ".hydra" / "config.yaml"
    if hydra_file.is_file():
        choices = (yaml.safe_load(hydra_file.read_text()) or {}).get("hydra", {}).get("runtime", {}).get("choices", {})
        settings.update({g: str(choices[g]) for g in GROUPS if choices.get(g) is not None})
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


def run_row(run_dir: Path, sweep_dir: Path) -> dict[str, Any]:
    results = json.loads((run_dir / "results.json").read_text())
    row: dict[str, Any] = {"run": str(run_dir.relative_to(sweep_dir)) or "."}
    overrides = read_overrides(run_dir)
    settings = read_settings(run_dir, overrides)
    row.update(settings)
    test = results.get("test", {})
    intervals = {}
    for metric in METRICS:
        row[metric] = test.get(metric)
        interval = (test.get("bootstrap_ci95") or {}).get(metric) or test.get(f"{metric}_ci95")
        row[f"{metric}_ci95"] = f"[{interval[0]:.2f}, {interval[1]:.2f}]" if interval else ""
        intervals[metric] = interval
    row["n_test"] = test.get("n")
    point = (results.get("run") or {}).get("operating_point") or {}
    if point:  # the threshold the rates are at, and the rule that chose it
        row["threshold"] = f"{point['threshold']:.3f} ({point['rule']})" if point.get("rule") != point.get("threshold") \
            else f"{point['threshold']:.3f}"
    for name in CALIBRATION_METRICS:
        row[name] = test.get(name)
    if "extra_no_finding" in results:
        row["extra_specificity"] = results["extra_no_finding"].get("specificity")
    for name, value in (results.get("cam") or {}).items():
        row[f"cam_{name}"] = value
    run = results.get("run") or {}
    parameters = run.get("parameters") or {}
    row.update({key: run.get(key) for key in ("best_epoch", "epochs_trained", "wall_time_s")})
    row["trainable_params"], row["total_params"] = parameters.get("trainable"), parameters.get("total")
    row["commit"], row["versions"] = code_record(run)
    row.update(_confusion=test.get("confusion_matrix"), _intervals=intervals, _settings=list(settings),
               _overridden=list(overrides))
    return row


def summarize_sweep(sweep_dir: Path) -> tuple[pd.DataFrame, list[str], dict[str, str]]:
    """(one row per run, the settings whose values differ between runs, those fixed: value)."""
    rows = [run_row(r, sweep_dir) for r in find_runs(sweep_dir)]
    table = pd.DataFrame(rows)
    keys = list(dict.fromkeys(key for row in rows for key in row["_settings"]))
    text = table[keys].astype(object).where(table[keys].notna(), "").astype(str) if keys else table[[]]
    varying = [k for k in keys if text[k].nunique() > 1]
    overridden = {k for row in rows for k in row["_overridden"]}
    # A config key that only follows another (data.split_seed = ${seed}) adds a column, not news.
    varying = [k for i, k in enumerate(varying)
               if k in overridden or not any(text[k].equals(text[j]) for j in varying[:i])]
    fixed = {k: text[k].iloc[0] for k in keys if text[k].nunique() == 1 and text[k].iloc[0]}
    return table, varying, fixed


def pool_repeats(table: pd.DataFrame, varying: Sequence[str]) -> pd.DataFrame:
    """Mean and standard deviation of the metrics over seeds/folds of each setting, and the
    whisker ends of each metric: mean +- SD where a setting has several runs, else the run's
    95% bootstrap interval (`whiskers`: "std" or "ci")."""
    settings = [k for k in varying if k not in REPEAT_KEYS]
    value_columns = [c for c in table.columns if c in METRICS or c == "extra_specificity" or c.startswith("cam_")]
    numeric = table[value_columns].apply(pd.to_numeric, errors="coerce")
    frame = pd.concat([table[settings], numeric, table[["_intervals"]]], axis=1)
    grouped = frame.groupby(settings, dropna=False, sort=True) if settings else [((), frame)]
    rows = []
    for key, group in grouped:
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(settings, key))
        row["runs"] = len(group)
        row["whiskers"] = "std" if len(group) > 1 else "ci"
        for column in value_columns:
            row[column] = group[column].mean()
            row[f"{column}_std"] = group[column].std(ddof=1) if len(group) > 1 else 0.0
        for metric in METRICS:
            interval = group["_intervals"].iloc[0].get(metric) if len(group) == 1 else None
            spread = row[f"{metric}_std"]
            low, high = interval or ((row[metric] - spread, row[metric] + spread) if len(group) > 1 else (None, None))
            row[f"{metric}_low"], row[f"{metric}_high"] = low, high
        rows.append(row)
    return pd.DataFrame(rows)


def label(row: pd.Series, keys: Sequence[str]) -> str:
    return ", ".join(f"{k}={row[k]}" for k in keys) or row.get("run") or f"all runs ({row.get('runs', 1)})"


def training_columns(table: pd.DataFrame) -> pd.DataFrame:
    """The training record as text cells: integers stay integers, absent is blank."""
    def whole(value: Any) -> str:
        return "" if value is None or pd.isna(value) else f"{int(value):,}"

    out = pd.DataFrame({"run": table["run"]})
    out["best epoch"] = table["best_epoch"].map(whole)
    out["epochs"] = table["epochs_trained"].map(whole)
    out["wall time (s)"] = table["wall_time_s"].map(lambda v: "" if v is None or pd.isna(v) else f"{v:.1f}")
    out["trainable / total parameters"] = [f"{whole(a)} / {whole(b)}" if whole(b) else ""
                                           for a, b in zip(table["trainable_params"], table["total_params"])]
    return out


def notes(table: pd.DataFrame) -> list[Block]:
    """Warnings a reader must see before comparing rows."""
    blocks: list[Block] = []
    sizes = sorted({int(n) for n in table["n_test"].dropna()})
    if len(sizes) > 1:
        blocks.append(Text(f"the test set differs between runs (n = {', '.join(map(str, sizes))}): each run is "
                           "tested on its own split, which follows `seed` unless `data.split_seed` is fixed (folds "
                           "and held-out sources change it too), so rows are not scores on the same images.", note=True))
    commits = sorted({c for c in table["commit"] if c})
    if len(commits) > 1:
        blocks.append(Text(f"the runs come from different code: commits {', '.join(commits)}.", note=True))
    if len({v for v in table["versions"] if v}) > 1:
        blocks.append(Text("the runs used different package versions (see the versions column of summary.csv).",
                           note=True))
    return blocks


def code_text(table: pd.DataFrame) -> str:
    commits = sorted({c for c in table["commit"] if c})
    versions = sorted({v for v in table["versions"] if v})
    commit = f"commit `{commits[0]}`" if len(commits) == 1 else "commit not recorded" if not commits else "several commits"
    version = versions[0] if len(versions) == 1 else "not recorded" if not versions else "several sets (see notes)"
    return f"Code: {commit}; versions: {version}."


def plots(table: pd.DataFrame, pooled: pd.DataFrame, varying: Sequence[str], out_dir: Path) -> list[Image]:
    """The sweep's figures, written into out_dir; returned in reading order."""
    settings = [k for k in varying if k not in REPEAT_KEYS]
    metrics = [m for m in METRICS if pooled[m].notna().any()]
    kinds = set(pooled["whiskers"])
    whisker = "whiskers: " + (WHISKERS[kinds.pop()] if len(kinds) == 1 else
                              f"{WHISKERS['std']} (settings with several runs); {WHISKERS['ci']} (one run)")
    images = []
    depth = next((k for k in DEPTH_KEYS if k in settings), None)
    if depth is not None and metrics:
        series = next((k for k in settings if k != depth), None)
        lines = pooled.assign(**{depth: pd.to_numeric(pooled[depth], errors="coerce")})
        lines = lines.assign(setting=lines[series] if series else "all")
        path = out_dir / f"metrics_vs_{depth.split('.')[-1]}.png"
        metric_lines(lines, depth, metrics, series or "setting", path, whisker, DEPTH_LABELS.get(depth, depth),
                     f"Test metrics against {depth}" + (f", a line per {series}" if series else ""))
        images.append(Image(path, f"Test metrics against {depth}; {whisker}."))
    if metrics:
        names = [", ".join(str(r[k]) for k in settings) or label(r, settings) for _, r in pooled.iterrows()]
        bars = pooled.assign(setting=names)
        metric_bars(bars, "setting", metrics, out_dir / "metrics_bars.png", whisker, ", ".join(settings) or "setting",
                    f"Test metrics per setting ({len(table)} runs)")
        images.append(Image(out_dir / "metrics_bars.png", f"Test metrics per setting; {whisker}."))
    matrices = {label(r, varying) or r["run"]: r["_confusion"] for _, r in table.iterrows() if r["_confusion"]}
    if matrices:
        confusion_matrices(matrices, out_dir / "confusion_matrices.png", "Test confusion matrices, one per run "
                           "(count and share of the true class)")
        images.append(Image(out_dir / "confusion_matrices.png", "Test confusion matrices, one per run."))
    return images


def write_report(sweep_dir: Path, out_dir: Path | None = None) -> pd.DataFrame:
    out_dir = out_dir or sweep_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    table, varying, fixed = summarize_sweep(sweep_dir)
    shown = ["run", *varying, *[c for m in METRICS for c in (m, f"{m}_ci95")], "n_test"]
    shown += [c for c in ("threshold", *CALIBRATION_METRICS) if c in table.columns and table[c].notna().any()]
    shown += [c for c in table.columns if c == "extra_specificity" or c.startswith("cam_")]
    recorded = ["best_epoch", "epochs_trained", "wall_time_s", "trainable_params", "total_params", "commit", "versions"]
    table[shown + recorded].to_csv(out_dir / "summary.csv", index=False)
    pooled = pool_repeats(table, varying)
    pooled.to_csv(out_dir / "settings.csv", index=False)
    settings = [k for k in varying if k not in REPEAT_KEYS]
    fixed_frame = pd.DataFrame({"setting": list(fixed), "value": list(fixed.values())})
    training = training_columns(table).join(table[varying])
    blocks: list[Block] = [
        Heading(f"Sweep {sweep_dir}", 1),
        Text(f"{len(table)} runs; varying: {', '.join(varying) or 'nothing'}. "
             "Each run's full configuration is in its `.hydra/config.yaml`."),
        *notes(table),
        Heading("Fixed settings (the same in every run)"),
        Table(fixed_frame, ["setting", "value"]) if fixed else Text("none recorded"),
        Text(code_text(table)),
        Heading("Runs (test split, 95% bootstrap intervals)"), Table(table, shown),
        Heading("Training"), Table(training, ["run", *varying, *TRAINING]),
    ]
    if len(pooled) < len(table):
        columns = [*settings, "runs", *[c for m in METRICS for c in (m, f"{m}_std")]]
        blocks += [Heading("Settings (mean and standard deviation over seeds / folds)"), Table(pooled, columns)]
    images = plots(table, pooled, varying, out_dir)
    blocks += [Heading("Plots"), *images] if images else []
    (out_dir / "summary.md").write_text(markdown(blocks, out_dir))
    (out_dir / "report.html").write_text(html_page(blocks, f"Sweep {sweep_dir}"))
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m covid_tl.tasks.report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun/<date>/<time> dir (or any dir holding run dirs)")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: the sweep dir)")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        parser.error(f"{args.sweep_dir} is not a directory")
    try:
        table = write_report(args.sweep_dir, args.out)
    except ReportError as error:
        parser.exit(1, f"error: {error}\n")
    out = args.out or args.sweep_dir
    print(f"{len(table)} runs -> {out / 'summary.md'}, {out / 'report.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
