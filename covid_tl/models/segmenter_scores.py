"""A lung segmenter judged on films at full size: Dice and IoU where a true mask is known,
plausibility everywhere, summaries with patient-level 95% bootstrap intervals, preview grids."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
from rich.progress import track

from covid_tl.reporting.grid import grid, labelled
from covid_tl.stats.metrics import bootstrap_mean
from covid_tl.models.segmenter_module import dice_iou
from covid_tl.models.segmenter import LungSegmenter
from covid_tl.preprocess.lung_mask import plausibility, resize_to

Row = Mapping[str, Any]
ReadPair = Callable[[Row], tuple[np.ndarray, np.ndarray | None]]


def mask_scores(predicted: np.ndarray, truth: np.ndarray | None) -> dict[str, Any]:
    """Plausibility of a predicted mask, and its Dice and IoU against the true one (if any)."""
    scores: dict[str, Any] = plausibility(predicted)
    if truth is not None:
        dice, iou = dice_iou(torch.from_numpy(predicted)[None, None], torch.from_numpy(truth)[None, None])
        scores.update(dice=float(dice[0]), iou=float(iou[0]))
    return scores


def score_films(segmenter: LungSegmenter, rows: Sequence[Row], read_pair: ReadPair,
                keep: Iterable[str] = ("split", "path", "patient_id", "source", "reader")) -> pd.DataFrame:
    """One row per film: the kept columns of its row (`reader`, the data.sources key, as `set`)
    plus mask_scores of the segmenter's mask."""
    records = []
    for row in track(rows, description="segmenting", transient=True, disable=len(rows) < 20):
        image, truth = read_pair(row)
        records.append({**{k: row[k] for k in keep if k in row}, **mask_scores(segmenter(image), truth)})
    return pd.DataFrame(records).rename(columns={"reader": "set"})  # the data.sources key


def summarize_group(table: pd.DataFrame, resamples: int, seed: int) -> dict[str, Any]:
    """Means of Dice and IoU with 95% patient-level bootstrap intervals, and plausibility: the
    share of masks in two components, median area share and median left/right balance."""
    summary: dict[str, Any] = {"n": len(table), "patients": int(table["patient_id"].nunique())}
    for name in ("dice", "iou"):
        if name in table and table[name].notna().any():
            known = table[table[name].notna()]
            summary[name] = float(known[name].mean())
            summary[f"{name}_ci95"] = bootstrap_mean(known[name].to_numpy(), known["patient_id"].to_numpy(), resamples, seed)
    summary["two_components"] = float((table["components"] == 2).mean())
    summary["area_share_median"] = float(table["area_share"].median())
    summary["balance_median"] = float(table["balance"].median())
    return summary


def summarize_by(table: pd.DataFrame, by: Sequence[str], resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """summarize_group of the whole table, then `per_<column>` for each column of `by`."""
    summary = summarize_group(table, resamples, seed)
    for column in by:
        summary[f"per_{column}"] = {str(k): summarize_group(g, resamples, seed) for k, g in table.groupby(column, sort=True)}
    return summary


def _tint(image: np.ndarray, mask: np.ndarray | None, colour: tuple[int, int, int], size: int) -> np.ndarray:
    """The film at `size` in colour, the mask tinted and outlined on it."""
    tile = cv2.cvtColor(resize_to(image, size), cv2.COLOR_GRAY2BGR)
    if mask is None:
        return tile
    small = resize_to(mask, size)
    tile[small] = (0.6 * tile[small] + 0.4 * np.array(colour)).astype(np.uint8)
    contours, _ = cv2.findContours(small.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return cv2.drawContours(tile, contours, -1, colour, 1)


def mask_grid(segmenter: LungSegmenter, rows: Sequence[Row], read_pair: ReadPair, size: int = 192) -> np.ndarray:
    """A BGR grid, one film per row: film | true mask (green) | predicted mask (red), captioned."""
    tiles = []
    for row in rows:
        image, truth = read_pair(row)
        predicted = segmenter(image)
        scores = mask_scores(predicted, truth)
        quality = f"Dice {scores['dice']:.3f}" if "dice" in scores else f"{scores['components']} comp."
        where = f"{row.get('reader') or row.get('source', '')} {row.get('split', '')}"  # data set (or source), split
        tiles += [labelled(_tint(image, None, (0, 0, 0), size), [where]),
                  labelled(_tint(image, truth, (0, 200, 0), size), ["true mask" if truth is not None else "no true mask"]),
                  labelled(_tint(image, predicted, (0, 0, 230), size), [f"predicted: {quality}"])]
    return grid(tiles, columns=3)


def spread_over(rows: Sequence[Row], key: str, n: int) -> list[Row]:
    """Up to `n` rows taken in turn from each value of `key` (every source shown), in row order."""
    groups: dict[Any, list[Row]] = {}
    for row in rows:
        groups.setdefault(row.get(key), []).append(row)
    chosen: list[Row] = []
    while len(chosen) < min(n, len(rows)):
        for group in groups.values():
            if group and len(chosen) < n:
                chosen.append(group.pop(0))
    return chosen
