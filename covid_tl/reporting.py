"""The end-of-run summary a person reads in the terminal."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from covid_tl.data.split import SPLITS
from covid_tl.metrics import METRICS


def _cell(value: float | None, interval: list[float] | None = None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")


def print_results(results: dict[str, Any], run_dir: Path, console: Console | None = None) -> None:
    """Metrics per split (95% intervals in brackets), the test confusion matrix, the run dir."""
    if console is None:
        console = Console()
        if not console.is_terminal:  # logs and pipes: wide enough that rows never wrap
            console = Console(width=120)
    table = Table(title="results (best checkpoint)")
    table.add_column("split")
    table.add_column("n", justify="right")
    for name in METRICS:
        table.add_column(name, justify="right")
    for split in SPLITS:
        if split in results:
            r = results[split]
            table.add_row(split, str(r["n"]), *(_cell(r[m], r.get(f"{m}_ci95")) for m in METRICS))
    console.print(table)
    if "test" in results:
        cm = results["test"]["confusion_matrix"]
        labels = cm["labels"]
        console.print("test confusion matrix (rows: true class, columns: predicted class)")
        matrix = Table()
        matrix.add_column("")
        for label in labels:
            matrix.add_column(label, justify="right")
        for label, row in zip(labels, cm["matrix"]):
            matrix.add_row(label, *(str(v) for v in row))
        console.print(matrix)
    console.print(f"run dir: {run_dir}")
