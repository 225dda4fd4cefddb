"""Turn a Hydra sweep into a table and plots: `python -m covid_tl.tasks.report multirun/<date>/<time>`.

Reads every run dir below the sweep (results.json through covid_tl.reporting.results, .hydra/overrides.yaml,
.hydra/config.yaml, the group choices in .hydra/hydra.yaml, the test images of splits.csv) and
writes, into the sweep dir (or --out): summary.csv and summary.md (the settings fixed for the
sweep and the code that ran, notes such as which runs were tested on other images, then one row
per run: the settings that vary, the threshold by its rule, test metrics with 95% intervals, the
threshold the rule chose, calibration, extra no-finding specificity, CAM scores, best epoch, wall
time, parameters), settings.csv (one row per setting: seeds and CV folds pooled into mean and
spread), plots (test metrics against freeze depth, a line per backbone or other setting, the
study's Figure 7; grouped bars per setting; the test confusion matrices side by side) and
report.html, all of it in one file that stands alone. The table half is tasks/sweep_table.py.
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from covid_tl.stats.calibration import CALIBRATION_METRICS
from covid_tl.core.errors import ConfigError
from covid_tl.core.formatting import number
from covid_tl.stats.metrics import METRICS
from covid_tl.reporting.page import Block, Heading, Image, Table, Text, html_page, markdown
from covid_tl.reporting.plots import confusion_matrices, metric_bars, metric_lines
from covid_tl.tasks.sweep_table import CHOSEN, REPEAT_KEYS, label, pool_repeats, summarize_sweep

#: Numeric settings worth a line plot, in order of preference, with their axis label.
DEPTH_KEYS = ("freeze.trainable", "backbone.keep_fc")
DEPTH_LABELS = {"freeze.trainable": "trainable layers (freeze.trainable)",
                "backbone.keep_fc": "kept fully connected layers (backbone.keep_fc)"}
#: Headers of the per-run training record (results.json's `run` block), see training_columns().
TRAINING = ("best epoch", "epochs", "wall time (s)", "trainable / total parameters")
WHISKERS = {"ci": "95% bootstrap CI (by patient)", "std": "mean \u00b1 1 SD over seeds / folds"}


def training_columns(table: pd.DataFrame) -> pd.DataFrame:
    """The training record as text cells: counts with thousands separators, absent as `-`."""
    def whole(value: Any) -> str:
        return number(None) if value is None or pd.isna(value) else f"{int(value):,}"

    out = pd.DataFrame({"run": table["run"]})
    out["best epoch"] = table["best_epoch"].map(whole)
    out["epochs"] = table["epochs_trained"].map(whole)
    out["wall time (s)"] = [number(None if pd.isna(v) else float(v), digits=1) for v in table["wall_time_s"]]
    out["trainable / total parameters"] = [f"{whole(a)} / {whole(b)}" if not pd.isna(b) else number(None)
                                           for a, b in zip(table["trainable_params"], table["total_params"])]
    return out


def other_outcomes(table: pd.DataFrame) -> list[str]:
    """Per-run columns after the metrics that some run has: test size, chosen threshold,
    calibration, extra no-finding specificity, CAM scores."""
    columns = ["n_test", CHOSEN, *CALIBRATION_METRICS, "extra_specificity", *[c for c in table if c.startswith("cam_")]]
    return [c for c in columns if c in table.columns and table[c].notna().any()]


def runs_view(table: pd.DataFrame, varying: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    """The runs table of summary.md: each metric with its 95% interval in one cell."""
    view = table[["run", *varying]].copy()
    for metric in METRICS:
        view[metric] = [number(value, intervals.get(metric)) for value, intervals in zip(table[metric], table["_intervals"])]
    extra = other_outcomes(table)
    return view.join(table[extra]), ["run", *varying, *METRICS, *extra]


def runs_text(runs: Sequence[str]) -> str:
    return ("run " if len(runs) == 1 else "runs ") + ", ".join(runs)


def test_set_notes(table: pd.DataFrame) -> list[Block]:
    """Which runs were tested on which images: equal counts are not equal sets (the test image
    lists of splits.csv or predictions.csv; counts where the lists do not tell them apart)."""
    lists: dict[frozenset[str], list[str]] = {}
    unlisted = []
    for run, images in zip(table["run"], table["_test_images"]):
        if images is None:
            unlisted.append(run)
        else:
            lists.setdefault(images, []).append(run)
    why = ("each run is tested on its own split, which follows `seed` unless `data.split_seed` is fixed (folds and "
           "held-out sources change it too), so rows are not scores on the same images.")
    blocks: list[Block] = []
    if len(lists) > 1:
        sets = "; ".join(f"{runs_text(runs)}: {len(images)} images" for images, runs in lists.items())
        blocks.append(Text(f"the test set differs between runs ({len(lists)} different test image lists: {sets}): "
                           + why, note=True))
    sizes = sorted({int(n) for n in table["n_test"].dropna()})
    if len(lists) < 2 and len(sizes) > 1:  # sizes that differ are sets that differ
        blocks.append(Text(f"the test set differs between runs (n = {', '.join(map(str, sizes))}): " + why, note=True))
    if len(unlisted) == len(table) > 1:
        blocks.append(Text("no run left a list of its test images (splits.csv or predictions.csv): the test sets "
                           "were compared by size only.", note=True))
    elif unlisted and len(table) > 1:
        blocks.append(Text(f"{runs_text(unlisted)} left no list of test images (splits.csv or predictions.csv): "
                           "whether they were tested on the same images as the others is not known.", note=True))
    return blocks


def notes(table: pd.DataFrame) -> list[Block]:
    """Warnings a reader must see before comparing rows."""
    blocks = test_set_notes(table)
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


def setting_labels(frame: pd.DataFrame, keys: Sequence[str], sep: str = "\n") -> list[str]:
    """Each row's values of `keys`, in the keys' order (the axis or legend title names them);
    key=value, `sep` between, where a value is missing (left out, the others would shift under
    the wrong key) or values alone collide. Empty where no key has a value."""
    names = [label(row, keys, names=False) for _, row in frame.iterrows()]
    settings = {tuple(map(str, values)) for values in frame[list(keys)].itertuples(index=False)}
    if frame[list(keys)].isna().any(axis=None) or len(set(names)) < len(settings):
        names = [label(row, keys, sep=sep) for _, row in frame.iterrows()]
    return names


def depth_lines(pooled: pd.DataFrame, settings: Sequence[str]) -> tuple[str, list[str], pd.DataFrame] | None:
    """(the depth key, the other settings, the pooled rows that have a depth, with a `series`
    naming their other settings): a line per backbone (or other setting) across freeze depth,
    the study's Figure 7. None when no depth key varies or no line would join two depths."""
    depth = next((k for k in DEPTH_KEYS if k in settings), None)
    if depth is None:
        return None
    others = [k for k in settings if k != depth]
    frame = pooled.assign(**{depth: pd.to_numeric(pooled[depth], errors="coerce")}).dropna(subset=[depth])
    frame = frame.assign(series=[name or "all runs" for name in setting_labels(frame, others, ", ")])
    if frame.empty or frame.groupby("series")[depth].nunique().max() < 2:
        return None
    return depth, others, frame


def plots(table: pd.DataFrame, pooled: pd.DataFrame, varying: Sequence[str], out_dir: Path) -> list[Image]:
    """The sweep's figures, written into out_dir; returned in reading order."""
    settings = [k for k in varying if k not in REPEAT_KEYS]
    metrics = [m for m in METRICS if pooled[m].notna().any()]
    kinds = set(pooled["whiskers"])
    whisker = "whiskers: " + (WHISKERS[kinds.pop()] if len(kinds) == 1 else
                              f"{WHISKERS['std']} (settings with several runs); {WHISKERS['ci']} (one run)")
    images = []
    lines = depth_lines(pooled, settings) if metrics else None
    if lines is not None:
        depth, others, frame = lines
        per = f", a line per {', '.join(others)}" if others else ""
        left_out = len(pooled) - len(frame)
        without = f"; {left_out} setting(s) without {depth} left out" if left_out else ""
        path = out_dir / f"metrics_vs_{depth.split('.')[-1]}.png"
        metric_lines(frame, depth, metrics, "series", path, whisker, DEPTH_LABELS.get(depth, depth),
                     f"Test metrics against {depth}{per}", legend_title=", ".join(others))
        images.append(Image(path, f"Test metrics against {depth}{per}{without}; {whisker}."))
    if metrics:
        names = setting_labels(pooled, settings)
        bars = pooled.assign(setting=[name or f"all runs ({n})" for name, n in zip(names, pooled["runs"])])
        metric_bars(bars, "setting", metrics, out_dir / "metrics_bars.png", whisker, ", ".join(settings) or "setting",
                    f"Test metrics per setting ({len(table)} runs)")
        images.append(Image(out_dir / "metrics_bars.png", f"Test metrics per setting; {whisker}."))
    matrices: dict[str, Any] = {}
    for _, row in table[table["_confusion"].notna()].iterrows():
        name = label(row, varying, sep="\n") or f"run {row['run']}"  # a line a setting: titles sit side by side
        matrices[name if name not in matrices else f"{name} (run {row['run']})"] = row["_confusion"]
    if matrices:
        confusion_matrices(matrices, out_dir / "confusion_matrices.png", "Test confusion matrices, one per run "
                           "(count and share of the true class)")
        images.append(Image(out_dir / "confusion_matrices.png", "Test confusion matrices, one per run."))
    return images


def pooled_columns(pooled: pd.DataFrame, settings: Sequence[str]) -> list[str]:
    """The pooled table's columns: settings, runs, then each outcome's mean and SD."""
    named = (*METRICS, CHOSEN, *CALIBRATION_METRICS, "extra_specificity")
    outcomes = [c for c in named if c in pooled and pooled[c].notna().any()]
    outcomes += [c for c in pooled if c.startswith("cam_") and not c.endswith("_std")]
    return [*settings, "runs", *[c for o in outcomes for c in (o, f"{o}_std")]]


def write_report(sweep_dir: Path, out_dir: Path | None = None) -> pd.DataFrame:
    out_dir = out_dir or sweep_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    table, varying, fixed = summarize_sweep(sweep_dir)
    view, shown = runs_view(table, varying)
    intervals = [c for m in METRICS for c in (f"{m}_ci95_low", f"{m}_ci95_high")]
    recorded = ["best_epoch", "epochs_trained", "wall_time_s", "trainable_params", "total_params", "commit", "versions"]
    rule = ["threshold"] if "threshold" in table and "threshold" not in varying else []  # what chose chosen_threshold
    columns = ["run", *varying, *rule, *METRICS, *intervals, *other_outcomes(table), *recorded]
    table[columns].to_csv(out_dir / "summary.csv", index=False)
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
        Heading("Runs (test split, 95% bootstrap intervals)"), Table(view, shown),
        Heading("Training"), Table(training, ["run", *varying, *TRAINING]),
    ]
    if len(pooled) < len(table):
        blocks += [Heading("Settings (mean and standard deviation over seeds / folds)"),
                   Table(pooled, pooled_columns(pooled, settings))]
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
    except ConfigError as error:  # no runs, or a results.json that cannot be read
        parser.exit(1, f"error: {error}\n")
    out = args.out or args.sweep_dir
    print(f"{len(table)} runs -> {out / 'summary.md'}, {out / 'report.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
