"""Turn a Hydra sweep into a table and plots: `python -m covid_tl.tasks.report multirun/<date>/<time>`.

Reads every run dir below the sweep (results.json + .hydra/overrides.yaml) and writes, into
the sweep dir (or --out): summary.csv and summary.md (one row per run: the overrides that
vary, test metrics with 95% intervals, extra no-finding specificity, CAM scores), settings.csv
(seeds and CV folds of one setting pooled into mean and spread), and plots: metric against a
numeric setting such as freeze depth (a line per backbone, the study's Figure 7), grouped bars
per setting, and the test confusion matrices side by side.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from covid_tl.metrics import METRICS
from covid_tl.plots import confusion_matrices, metric_bars, metric_lines

#: Overrides that repeat a setting rather than change it: pooled into mean and spread.
REPEAT_KEYS = ("seed", "data.fold", "data.split_seed", "data.sample_seed")
#: Numeric settings worth a line plot, in order of preference.
DEPTH_KEYS = ("freeze.trainable", "backbone.keep_fc")


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


def run_row(run_dir: Path, sweep_dir: Path) -> dict[str, Any]:
    results = json.loads((run_dir / "results.json").read_text())
    row: dict[str, Any] = {"run": str(run_dir.relative_to(sweep_dir)) or "."}
    row.update(read_overrides(run_dir))
    test = results.get("test", {})
    for metric in METRICS:
        row[metric] = test.get(metric)
        interval = (test.get("bootstrap_ci95") or {}).get(metric) or test.get(f"{metric}_ci95")
        row[f"{metric}_ci95"] = f"[{interval[0]:.2f}, {interval[1]:.2f}]" if interval else ""
    row["n_test"] = test.get("n")
    if "extra_no_finding" in results:
        row["extra_specificity"] = results["extra_no_finding"].get("specificity")
    for name, value in (results.get("cam") or {}).items():
        row[f"cam_{name}"] = value
    row["_confusion"] = test.get("confusion_matrix")
    return row


def summarize_sweep(sweep_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """(one row per run, the override keys whose values differ between runs)."""
    rows = [run_row(r, sweep_dir) for r in find_runs(sweep_dir)]
    table = pd.DataFrame(rows)
    override_keys = [k for k in table.columns if k not in rows[0] or k in read_overrides(find_runs(sweep_dir)[0])]
    override_keys = [k for k in dict.fromkeys(override_keys) if k not in ("run", "_confusion") and not k.startswith(tuple(METRICS))]
    varying = [k for k in override_keys if table[k].astype(str).nunique() > 1]
    return table, varying


def pool_repeats(table: pd.DataFrame, varying: Sequence[str]) -> pd.DataFrame:
    """Mean and standard deviation of the metrics over seeds/folds of each setting."""
    settings = [k for k in varying if k not in REPEAT_KEYS]
    value_columns = [c for c in table.columns if c in METRICS or c == "extra_specificity" or c.startswith("cam_")]
    numeric = table[value_columns].apply(pd.to_numeric, errors="coerce")
    grouped = pd.concat([table[settings], numeric], axis=1).groupby(settings, dropna=False) if settings else [((), pd.concat([numeric], axis=1))]
    rows = []
    for key, group in grouped:
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(settings, key))
        row["runs"] = len(group)
        for column in value_columns:
            row[column] = group[column].mean()
            row[f"{column}_std"] = group[column].std(ddof=1) if len(group) > 1 else 0.0
        rows.append(row)
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame, columns: Sequence[str]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "" if pd.isna(value) else f"{value:.3f}"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for _, row in table.iterrows()]
    return "\n".join(lines)


def label(row: pd.Series, keys: Sequence[str]) -> str:
    return ", ".join(f"{k}={row[k]}" for k in keys) or row.get("run", "run")


def write_report(sweep_dir: Path, out_dir: Path | None = None) -> pd.DataFrame:
    out_dir = out_dir or sweep_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    table, varying = summarize_sweep(sweep_dir)
    shown = ["run", *varying, *[c for m in METRICS for c in (m, f"{m}_ci95")], "n_test"]
    shown += [c for c in table.columns if c == "extra_specificity" or c.startswith("cam_")]
    table[shown].to_csv(out_dir / "summary.csv", index=False)
    pooled = pool_repeats(table, varying)
    pooled.to_csv(out_dir / "settings.csv", index=False)
    settings = [k for k in varying if k not in REPEAT_KEYS]
    text = [f"# Sweep {sweep_dir}", "", f"{len(table)} runs; varying: {', '.join(varying) or 'nothing'}.", "",
            "## Runs (test split, 95% bootstrap intervals)", "", markdown(table, shown)]
    if len(pooled) < len(table):
        columns = [*settings, "runs", *[c for m in METRICS for c in (m, f"{m}_std")]]
        text += ["", "## Settings (mean and standard deviation over seeds / folds)", "", markdown(pooled, columns)]
    (out_dir / "summary.md").write_text("\n".join(text) + "\n")

    metrics = [m for m in ("sensitivity", "specificity", "accuracy") if pooled[m].notna().any()]
    depth = next((k for k in DEPTH_KEYS if k in settings), None)
    if depth is not None:
        series = next((k for k in settings if k != depth), None)
        lines = pooled.assign(**{depth: pd.to_numeric(pooled[depth], errors="coerce")})
        lines = lines.assign(setting=lines[series] if series else "all")
        metric_lines(lines, depth, metrics, "setting", out_dir / f"metrics_vs_{depth.split('.')[-1]}.png")
    bars = pooled.assign(setting=[label(r, settings) for _, r in pooled.iterrows()])
    metric_bars(bars, "setting", metrics, out_dir / "metrics_bars.png")
    matrices = {label(r, varying) or r["run"]: r["_confusion"] for _, r in table.iterrows() if r["_confusion"]}
    if matrices:
        confusion_matrices(matrices, out_dir / "confusion_matrices.png")
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
    print(f"{len(table)} runs -> {(args.out or args.sweep_dir) / 'summary.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
