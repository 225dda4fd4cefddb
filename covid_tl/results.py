"""A model's results on named image sets: metrics with intervals, per-source breakdowns,
predictions.csv, confusion_matrix.png and roc.png. Used at the end of training and by evaluate.py.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset

from covid_tl.data.dataset import PreparedImages, XrayDataset
from covid_tl.labels import LABELS
from covid_tl.data.manifest import Manifest
from covid_tl.data.sources import ManifestSource
from covid_tl.data.validate import drop_bad_rows, find_bad_rows, find_undecodable
from covid_tl.metrics import METRICS, bootstrap_intervals, roc_points, summarize
from covid_tl.plots import confusion_matrices, roc_curves

ImageSets = Mapping[str, tuple[Manifest, Dataset]]


@torch.inference_mode()
def predict(net: torch.nn.Module, dataset: Dataset, device: torch.device, batch_size: int = 64) -> np.ndarray:
    """COVID-19 probability of every image, in dataset order."""
    was_training = net.training
    net.eval().to(device)
    out = [torch.sigmoid(net(x.to(device)).float()).cpu() for x, _ in DataLoader(dataset, batch_size=batch_size)]
    net.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros(0)


def assess(manifest: Manifest, probabilities: np.ndarray, threshold: float, resamples: int, seed: int) -> dict[str, Any]:
    """summarize() plus patient-level bootstrap intervals and a per-source breakdown."""
    targets = manifest.targets
    result = summarize(targets, probabilities, threshold)
    result["bootstrap_ci95"] = bootstrap_intervals(
        targets, probabilities, manifest.frame["patient_id"].to_numpy(), threshold, resamples, seed
    )
    sources = manifest.frame["source"].astype(str).to_numpy()
    result["per_source"] = {
        source: summarize(targets[sources == source], probabilities[sources == source], threshold)
        for source in sorted(set(sources))
    }
    return result


def evaluate_sets(
    net: torch.nn.Module,
    sets: ImageSets,
    output_dir: Path,
    threshold: float = 0.5,
    resamples: int = 1000,
    seed: int = 0,
    device: torch.device | None = None,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Metrics per set; writes predictions.csv, confusion_matrix.png and roc.png."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results: dict[str, Any] = {}
    frames, curves = [], {}
    for name, (manifest, dataset) in sets.items():
        probabilities = predict(net, dataset, device, batch_size)
        results[name] = assess(manifest, probabilities, threshold, resamples, seed)
        frame = manifest.frame.copy()
        frame.insert(0, "set", name)
        frame["prob_covid"] = probabilities
        frame["predicted"] = np.where(probabilities >= threshold, LABELS[1], LABELS[0])
        frames.append(frame)
        points = roc_points(manifest.targets, probabilities)
        if points is not None:  # both classes present: sensitivity and specificity are defined
            operating = (1 - results[name]["specificity"], results[name]["sensitivity"])
            curves[name] = (*points, results[name]["auroc"], operating)
    output_dir.mkdir(parents=True, exist_ok=True)
    if frames:
        pd.concat(frames, ignore_index=True).to_csv(output_dir / "predictions.csv", index=False)
        confusion_matrices({n: r["confusion_matrix"] for n, r in results.items()}, output_dir / "confusion_matrix.png")
    if curves:
        roc_curves(curves, output_dir / "roc.png", threshold)
    return results


def shift_summary(results: Mapping[str, Any], held_out: str | None) -> dict[str, Any] | None:
    """With a held-out source (`data.holdout_source`), each metric in distribution (val: the
    training sources' unseen patients) beside the same metric on the held-out source (test),
    and the drop from one to the other; None without a held-out source or one of the splits."""
    if held_out is None or "val" not in results or "test" not in results:
        return None
    ours, theirs = results["val"], results["test"]
    block: dict[str, Any] = {"source": held_out, "in_distribution": "val", "shifted": "test",
                             "n": {"in_distribution": ours["n"], "shifted": theirs["n"]}}
    for metric in METRICS:
        a, b = ours[metric], theirs[metric]
        block[metric] = {"in_distribution": a, "shifted": b, "drop": None if a is None or b is None else a - b}
    return block


def external_set(path: str, run_cfg: DictConfig, prepare_with: PreparedImages, spec) -> tuple[str, tuple[Manifest, Dataset]]:
    """A manifest CSV evaluated in full, with the checkpoint's preprocessing."""
    source = ManifestSource(path, name=Path(path).stem)
    frame = source.frame()
    on_bad = run_cfg.data.get("on_bad", "raise")
    frame = drop_bad_rows(frame, find_bad_rows(frame), on_bad)
    prepare = PreparedImages(source.load_image, prepare_with.preprocess, prepare_with.cache, lambda row: True)
    # Every image decoded now, as training's setup does, so nothing fails mid-evaluation.
    manifest = Manifest(drop_bad_rows(frame, find_undecodable(frame, range(len(frame)), prepare.check), on_bad))
    return f"external:{Path(path).stem}", (manifest, XrayDataset(manifest, prepare, spec))
