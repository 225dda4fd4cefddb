"""CAM scores of every image of named sets, and where the CAMs fall per class and source with
patient-level bootstrap intervals (evaluate.py cams=true): cams.csv and results.json's `cams`.

lung_fraction means little alone: a CAM spread evenly over the input scores the lungs' share
of it (lung_area). `above_chance` is their difference, image by image.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset

from covid_tl.cam.compute import compute_cams
from covid_tl.cam.images import score_cams, scoring_images
from covid_tl.cam.options import CamOptions, build_cam
from covid_tl.data.manifest import Manifest
from covid_tl.data.sources import read_mask
from covid_tl.core.labels import LABELS
from covid_tl.stats.metrics import bootstrap_mean

MaskLoader = Callable[[Mapping[str, Any]], "np.ndarray | None"]
COLUMNS = ("set", "path", "label", "patient_id", "source", "view")
SUMMED = ("lung_fraction", "lung_area", "above_chance", "artifact_fraction")


def record_cams(results: dict[str, Any], net: torch.nn.Module, sets: Mapping[str, tuple[Manifest, Dataset]],
                cfg: DictConfig, run_cfg: DictConfig, datamodule: Any, threshold: float, output_dir: Path) -> None:
    """evaluate.py cams=true: cams.csv, and a `cams` block in each set's results (cfg: the
    evaluate config's cam and bootstrap keys; run_cfg: the checkpoint's preprocessing)."""
    masks = given_masks(datamodule.load_lung_mask, datamodule.sources)
    detector = mark_detector(OmegaConf.to_container(run_cfg.preprocessing, resolve=True))
    blocks = evaluate_cams(net, sets, masks, build_cam(cfg.cam), threshold, output_dir, cfg.bootstrap, run_cfg.seed,
                           detector)
    for name, block in blocks.items():
        results[name]["cams"] = block


def given_masks(load_lung_mask: MaskLoader, readers: Mapping[str, Any]) -> MaskLoader:
    """The data's lung masks: its sources' own for its rows, a `lung_mask` column's file for
    the rows of an external manifest."""
    return lambda row: load_lung_mask(row) if row.get("reader") in readers else read_mask(row.get("lung_mask"))


def mark_detector(preprocessing: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The mark detector settings of a run's preprocessing (crop_inpaint's), if any."""
    return (preprocessing.get("inpaint") or {}).get("detector")


def score_set(net: torch.nn.Module, manifest: Manifest, dataset: Dataset, masks: MaskLoader, cam: CamOptions,
              threshold: float, detector: Mapping[str, Any] | None = None,
              batch_size: int = 16) -> pd.DataFrame:
    """One row per image: manifest columns, prob_covid, predicted and the CAM scores; images
    are taken `batch_size` at a time, so memory does not grow with the set."""
    rows = manifest.frame.to_dict("records")
    prepare = dataset.prepare
    records = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        items = scoring_images(chunk, prepare.load_image, prepare, masks, net.input_spec, detector, cam.lungs)
        cams, probabilities = compute_cams(net, torch.stack([item.input for item in items]), cam.method,
                                           cam.target, cam.layer, batch_size, threshold)
        for row, p, scores in zip(chunk, probabilities, score_cams(cams, items)):
            records.append({**{k: row.get(k) for k in COLUMNS[1:]}, "prob_covid": float(p),
                            "predicted": LABELS[int(p >= threshold)], **scores})
    table = pd.DataFrame.from_records(records)
    if len(table):
        table["above_chance"] = table["lung_fraction"].astype(float) - table["lung_area"].astype(float)
    return table


def summarize_scores(table: pd.DataFrame, resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Means of SUMMED over the images that have each score, with 95% patient-level bootstrap
    intervals, the images counted by lung_source."""
    out: dict[str, Any] = {"n": len(table), "patients": int(table["patient_id"].nunique()),
                           "lung_source": {str(k): int(v) for k, v in table["lung_source"].value_counts().items()}}
    for name in SUMMED:
        scored = table[table[name].notna()] if name in table else table.iloc[:0]
        values = scored[name].to_numpy(float) if len(scored) else np.zeros(0)
        out[name] = float(values.mean()) if len(values) else None
        out[f"{name}_ci95"] = bootstrap_mean(values, scored["patient_id"].to_numpy(), resamples, seed) if len(values) else None
    return out


def lung_summary(table: pd.DataFrame, resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Per class, and per source within it: summarize_scores."""
    out: dict[str, Any] = {}
    if not len(table):
        return out
    for label, rows in table.groupby("label", sort=True):
        out[str(label)] = {**summarize_scores(rows, resamples, seed), "per_source": {
            str(source): summarize_scores(part, resamples, seed) for source, part in rows.groupby("source", sort=True)}}
    return out


def evaluate_cams(net: torch.nn.Module, sets: Mapping[str, tuple[Manifest, Dataset]], masks: MaskLoader, cam: CamOptions,
                  threshold: float, output_dir: Path, resamples: int = 1000, seed: int = 0,
                  detector: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Writes cams.csv (every image of every set); returns {set: results.json's `cams` block}."""
    tables, summaries = [], {}
    for name, (manifest, dataset) in sets.items():
        table = score_set(net, manifest, dataset, masks, cam, threshold, detector)
        table.insert(0, "set", name)
        tables.append(table)
        summaries[name] = {"method": cam.method, "target": cam.target, "lungs": cam.lungs.mode,
                           **lung_summary(table, resamples, seed)}
    if tables:
        pd.concat(tables, ignore_index=True).to_csv(output_dir / "cams.csv", index=False)
    return summaries
