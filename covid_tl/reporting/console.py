"""What a person reads in the terminal: the data table at the start of a run, the results at its end."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from covid_tl.stats.calibration import CALIBRATION_METRICS
from covid_tl.core.formatting import median_range, number
from covid_tl.stats.metrics import METRICS
from covid_tl.reporting.results import Results


def _console() -> Console:
    console = Console()
    return console if console.is_terminal else Console(width=120)  # logs and pipes: rows never wrap


def print_results(results: Results, run_dir: Path, console: Console | None = None) -> None:
    """Metrics per split (95% intervals in brackets) with calibration (ECE, Brier), the
    operating point, the test confusion matrix, the run dir."""
    console = console or _console()
    members = results.run.get("members")  # a fold ensemble's, as train.py and evaluate.py record it
    table = Table(title=f"results (the ensemble of {members} members)" if members else "results (best checkpoint)")
    table.add_column("split")
    table.add_column("n", justify="right")
    for name in (*METRICS, *CALIBRATION_METRICS):
        table.add_column(name, justify="right")
    for split, r in results.sets.items():  # splits, then extra sets
        table.add_row(split, str(r["n"]), *(number(r[m], r.get(f"{m}_ci95")) for m in METRICS),
                      *(number(r.get(m)) for m in CALIBRATION_METRICS))
    console.print(table)
    if results.operating_point:
        console.print(operating_point_line(results.operating_point))
    if "test" in results.sets:
        cm = results.sets["test"]["confusion_matrix"]
        labels = cm["labels"]
        console.print("test confusion matrix (rows: true class, columns: predicted class)")
        matrix = Table()
        matrix.add_column("")
        for label in labels:
            matrix.add_column(label, justify="right")
        for label, row in zip(labels, cm["matrix"]):
            matrix.add_row(label, *(str(v) for v in row))
        console.print(matrix)
        console.print(breakdown_table(results.sets["test"]))
    if results.shift:
        console.print(shift_lines(results.shift))
    console.print(f"run dir: {run_dir}")


def breakdown_table(block: dict[str, Any]) -> Table:
    """One set's rates per source and per view: a shortcut often shows as one of them failing."""
    table = Table(title="test per source and per view")
    for name in ("by", "value", "n", *METRICS):
        table.add_column(name, justify="right" if name not in ("by", "value") else "left")
    for column in ("source", "view"):
        for value, r in block.get(f"per_{column}", {}).items():
            table.add_row(column, value, str(r["n"]), *(number(r[m]) for m in METRICS))
    return table


def operating_point_line(point: dict[str, Any]) -> str:
    """`threshold 0.3125 (youden on val, 26 images), temperature 1.00`; a site profile's
    `(youden on site hospital_c, 8 images)`, or `(label-free on site ...)`."""
    split = f"{point['split']} {point['site']}" if point.get("site") else point.get("split")
    where = f" on {split}" + (f", {point['n']} images" if point.get("n") else "") if split else ""
    how = "label-free" if point.get("method") == "label_free" else point["rule"]
    rule = "" if point["rule"] == point["threshold"] and not point.get("site") else f" ({how}{where})"
    return f"threshold {point['threshold']:.4g}{rule}, temperature {point.get('temperature', 1.0):.3g}"


def shift_lines(shift: dict[str, Any]) -> str:
    """Specificity and sensitivity in distribution -> on the held-out source, a line each."""
    column = "view" if "view" in shift else "source"
    lines = [f"{column} shift: {shift['in_distribution']} (in distribution) -> {shift[column]} (held out)"]
    for metric in ("specificity", "sensitivity"):
        m = shift[metric]
        drop = f" (drop {m['drop']:.3f})" if m["drop"] is not None else ""
        lines.append(f"  {metric} {number(m['in_distribution'])} -> {number(m['shifted'])}{drop}")
    return "\n".join(lines)


def print_summary(summary: dict[str, Any], console: Console | None = None) -> None:
    """data_summary.json as a table: one row per split x label x source x view."""
    console = console or Console()
    table = Table(title=f"data: {summary['images']} images, {summary['patients']} patients"
                  + (f", {summary['skipped']} skipped" if summary["skipped"] else ""))
    keys = list(summary["rows"][0]) if summary["rows"] else ["images", "patients"]
    for key in keys:
        table.add_column(key, justify="right" if key in ("images", "patients") else "left")
    for row in summary["rows"]:
        table.add_row(*(str(row[k]) for k in keys))
    console.print(table)


def print_data_summary(summary: dict[str, Any], run_dir: Path) -> None:
    """Print the data summary and save it as data_summary.json in the run dir."""
    (run_dir / "data_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_summary(summary, _console())


def print_site(record: dict[str, Any], profile: Path, console: Console | None = None) -> None:
    """A site profile's rates, each row at the cut it names, then the profile's path."""
    console = console or _console()
    if not record["rates"]:
        console.print(f"site {record['site']}: {operating_point_line(record['operating_point'])}; its files have no "
                      "labels, so no rate is measured")
        console.print(f"profile: {profile}")
        return
    table = Table(title=f"site {record['site']}: {operating_point_line(record['operating_point'])}")
    for column in ("films", "at", "n", "sensitivity", "specificity", "auroc"):
        table.add_column(column, justify="right" if column in ("n",) else "left")
    for name, block in record["rates"].items():
        table.add_row(name.replace("_", " "), block["at"], str(block["n"]),
                      *(number(block[m], block.get(f"{m}_ci95")) for m in ("sensitivity", "specificity")),
                      number(block["auroc"]))
    console.print(table)
    if record.get("cut_ci95"):
        console.print(f"the cut re-chosen on bootstrap resamples of the labelled films: {record['cut_ci95'][0]:.3f} to "
                      f"{record['cut_ci95'][1]:.3f} (95%)")
    for n, block in (record.get("how_many_films") or {}).get("per_n", {}).items():
        if block["sensitivity"]["quantiles"] and block["specificity"]["quantiles"]:
            console.print(f"n={n} per class: sensitivity {median_range(block['sensitivity'])}, specificity "
                          f"{median_range(block['specificity'])} (median [5-95%] of draws)")
    console.print(f"profile: {profile}")
