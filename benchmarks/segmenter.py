"""A lung segmenter (the bundled one by default) on every xray-mini film: plausibility per
source, Dice and IoU where a true mask exists (patients the segmenter was not trained on
apart), and CPU inference time per film (resize, network, resize back, components).

    python benchmarks/segmenter.py [--checkpoint PATH] [--xray-mini DIR] [--csv per_film.csv] [--preview grid.png]
    python benchmarks/segmenter.py --tiny     # 8 films spread over xray-mini (seconds)

Prints the markdown table of docs/segmenter.md and the timing line of docs/benchmarks.md.
Skips with a message when xray-mini is absent.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from covid_tl.data.images import read_xray
from covid_tl.data.sources import ManifestSource, read_mask
from covid_tl.stats.metrics import bootstrap_mean
from covid_tl.models.segmenter import LungSegmenter
from covid_tl.models.segmenter_scores import mask_scores, mask_grid, spread_over
from harness import machine, xray_mini


def score_every_film(segmenter: LungSegmenter, root: Path, films: int | None = None) -> pd.DataFrame:
    """One row per xray-mini film (or per one of `films` spread over the sources): source,
    patient, held out or not, mask scores, milliseconds."""
    held_out = set(segmenter.notes.get("held_out_patients", []))
    rows = ManifestSource(root / "manifest.csv").frame().to_dict("records")
    rows = rows if films is None else spread_over(rows, "source", films)
    segmenter(read_xray(rows[0]["path"]))  # warm-up: first-call allocations are not timed
    records = []
    for row in rows:
        image, truth = read_xray(row["path"]), read_mask(row.get("lung_mask"))
        started = time.perf_counter()
        mask = segmenter(image)
        ms = 1000 * (time.perf_counter() - started)
        records.append({"path": row["path"], "source": row["source"], "patient_id": row["patient_id"],
                        "held_out": row["patient_id"] in held_out, "ms": ms, **mask_scores(mask, truth)})
    return pd.DataFrame(records)


def _quartiles(values: pd.Series) -> str:
    q1, q2, q3 = np.percentile(values, [25, 50, 75])
    return f"{q2:.3f} [{q1:.3f}, {q3:.3f}]"


def _dice(table: pd.DataFrame) -> str:
    known = table[table["dice"].notna()] if "dice" in table else table.iloc[:0]
    if known.empty:
        return "-"
    low, high = bootstrap_mean(known["dice"].to_numpy(), known["patient_id"].to_numpy())
    return f"{known['dice'].mean():.3f} [{low:.3f}, {high:.3f}] (n={len(known)})"


def markdown(table: pd.DataFrame) -> str:
    lines = ["| source | films | two components | lung share of image, median [IQR] | left/right balance, median [IQR] "
             "| Dice, held-out patients [95% CI] | Dice, all films with a mask [95% CI] |",
             "|---|---:|---:|---|---|---|---|"]
    for source, group in table.groupby("source"):
        lines.append(f"| {source} | {len(group)} | {(group['components'] == 2).mean():.1%} | {_quartiles(group['area_share'])} "
                     f"| {_quartiles(group['balance'])} | {_dice(group[group['held_out']])} | {_dice(group)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> pd.DataFrame | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="a lung_segmenter.pt (default: the bundled one)")
    parser.add_argument("--xray-mini", type=Path, default=None, help="default: $COVID_TL_XRAY_MINI or ../shared/data")
    parser.add_argument("--csv", type=Path, default=None, help="write the per-film scores here")
    parser.add_argument("--preview", type=Path, default=None, help="write film | true mask | predicted mask of 12 films here")
    parser.add_argument("--tiny", action="store_true", help="8 films spread over xray-mini")
    args = parser.parse_args(argv)
    root = args.xray_mini or xray_mini()
    if root is None or not (root / "manifest.csv").is_file():
        print(f"skipped: xray-mini not found at {root or '$COVID_TL_XRAY_MINI or ../shared/data'} (pass --xray-mini DIR)")
        return None
    segmenter = LungSegmenter.load(args.checkpoint)
    table = score_every_film(segmenter, root, 8 if args.tiny else None)
    if args.csv:
        table.to_csv(args.csv, index=False)
    if args.preview:
        rows = ManifestSource(root / "manifest.csv").frame().sample(frac=1, random_state=0).to_dict("records")
        pair = lambda row: (read_xray(row["path"]), read_mask(row.get("lung_mask")))  # noqa: E731
        cv2.imwrite(str(args.preview), mask_grid(segmenter, spread_over(rows, "source", 12), pair))
    print(f"segmenter {args.checkpoint or 'bundled'} (digest {segmenter.digest}, input {segmenter.input_size} px)\n")
    print(markdown(table))
    print(f"\nCPU inference, {len(table)} xray-mini films (<= 512 px): median {table['ms'].median():.0f} ms, "
          f"90th percentile {table['ms'].quantile(0.9):.0f} ms per film; {machine()}")
    return table


if __name__ == "__main__":
    main()
