"""Evaluate a model on named image sets: metrics with intervals, per-source breakdowns,
predictions.csv, confusion_matrix.png and roc.png. Used at the end of training and by evaluate.py.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset

from covid_tl.checkpoint import load_run
from covid_tl.data.dataset import PreparedImages, XrayDataset
from covid_tl.data.manifest import LABELS, Manifest
from covid_tl.data.sources import ManifestSource
from covid_tl.data.validate import drop_bad_rows, find_bad_rows
from covid_tl.errors import ConfigError
from covid_tl.metrics import bootstrap_intervals, roc_points, summarize
from covid_tl.plots import confusion_matrices, roc_curves
from covid_tl.reporting import print_results

ImageSets = Mapping[str, tuple[Manifest, Dataset]]


def pick_device(device: str = "auto") -> torch.device:
    """`auto` (and Lightning's `gpu`) mean CUDA when there is one."""
    if device in ("auto", "gpu"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


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
    device = device or pick_device()
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
        if points is not None:
            curves[name] = (*points, results[name]["auroc"])
    output_dir.mkdir(parents=True, exist_ok=True)
    if frames:
        pd.concat(frames, ignore_index=True).to_csv(output_dir / "predictions.csv", index=False)
        confusion_matrices({n: r["confusion_matrix"] for n, r in results.items()}, output_dir / "confusion_matrix.png")
    if curves:
        roc_curves(curves, output_dir / "roc.png")
    return results


def external_set(path: str, run_cfg: DictConfig, prepare_with: PreparedImages, spec) -> tuple[str, tuple[Manifest, Dataset]]:
    """A manifest CSV evaluated in full, with the checkpoint's preprocessing."""
    source = ManifestSource(path, name=Path(path).stem)
    frame = source.frame()
    manifest = Manifest(drop_bad_rows(frame, find_bad_rows(frame), run_cfg.data.get("on_bad", "raise")))
    prepare = PreparedImages(source.load_image, prepare_with.preprocess, prepare_with.cache, lambda row: True)
    return f"external:{Path(path).stem}", (manifest, XrayDataset(manifest, prepare, spec))


def evaluate(cfg: DictConfig, output_dir: Path) -> dict[str, Any]:
    """What evaluate.py does: the checkpoint on its test split, extra sets and external data."""
    from covid_tl.training import build_datamodule  # training imports this module

    run_cfg, model = load_run(cfg.ckpt_path, cfg.trust_checkpoint)
    if cfg.get("data") is not None:  # other data, the checkpoint's preprocessing and input spec
        run_cfg.data = OmegaConf.create(OmegaConf.to_container(cfg.data, resolve=False))
    datamodule = build_datamodule(run_cfg, model.net)
    datamodule.setup("test")
    names = list(cfg.splits) if cfg.get("splits") else ["test", *datamodule.extra_sets]
    unknown = sorted(set(names) - set(datamodule.eval_sets))
    if unknown:
        raise ConfigError(f"unknown split(s) {unknown}; valid: {', '.join(datamodule.eval_sets)}")
    sets = {n: (datamodule.subset(n), datamodule.dataset(n)) for n in names if len(datamodule.subset(n))}
    for path in cfg.get("external") or []:
        name, pair = external_set(path, run_cfg, datamodule.prepared, model.net.input_spec)
        sets[name] = pair
    results = evaluate_sets(model.net, sets, output_dir, run_cfg.threshold, cfg.bootstrap, run_cfg.seed,
                            pick_device(cfg.device), cfg.batch_size)
    results["run"] = {"checkpoint": str(cfg.ckpt_path), "backbone": run_cfg.backbone.name}
    (output_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print_results(results, output_dir)
    return results
