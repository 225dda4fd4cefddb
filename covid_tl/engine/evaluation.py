"""A model's results on named image sets: metrics with intervals, per-source breakdowns,
calibration, predictions.csv, confusion_matrix.png, roc.png and reliability.png; the operating
point (threshold, temperature) chosen on the validation split. Used at the end of training and
by evaluate.py, explain.py and predict.py.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset

from covid_tl.engine.build import build_datamodule
from covid_tl.core.errors import ConfigError
from covid_tl.core.labels import LABELS
from covid_tl.data.manifest import Manifest
from covid_tl.models.site_profile import site_operating_point
from covid_tl.stats.calibration import (brier_score, expected_calibration_error, fit_temperature,
                                  negative_log_likelihood, reliability_bins)
from covid_tl.stats.metrics import METRICS, bootstrap_intervals, roc_points, summarize
from covid_tl.stats.operating_point import choose_threshold, extreme_cut, is_rule, one_class_calls, parse_threshold
from covid_tl.reporting.plots import confusion_matrices, reliability_diagram, roc_curves
from covid_tl.core.files import write_text_atomically

ImageSets = Mapping[str, tuple[Manifest, Dataset]]

log = logging.getLogger(__name__)


@torch.inference_mode()
def outputs(module: torch.nn.Module, dataset: Dataset, device: torch.device, batch_size: int = 64) -> np.ndarray:
    """What `module` gives for the input of every (input, target) item, in dataset order, run in
    eval mode (its mode is given back)."""
    was_training = module.training
    module.eval().to(device)
    out = [module(x.to(device)).float().cpu() for x, _ in DataLoader(dataset, batch_size=batch_size)]
    module.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)


def predict_logits(net: torch.nn.Module, dataset: Dataset, device: torch.device, batch_size: int = 64) -> np.ndarray:
    """COVID-19 logit of every image (after the net's temperature), in dataset order."""
    return outputs(net, dataset, device, batch_size)


def predict(net: torch.nn.Module, dataset: Dataset, device: torch.device, batch_size: int = 64) -> np.ndarray:
    """COVID-19 probability of every image, in dataset order."""
    return torch.sigmoid(torch.from_numpy(predict_logits(net, dataset, device, batch_size))).numpy()


def script_operating_point(cfg: DictConfig, run_cfg: DictConfig, model, device: torch.device,
                           datamodule=None) -> dict[str, Any]:
    """The operating point a script's `threshold=` or `site=<profile>` asks for (never both),
    which `model` then uses: a site profile's threshold and temperature (refused when it was
    made for another model file), else requested_operating_point."""
    site, threshold = cfg.get("site"), cfg.get("threshold")
    if site is None:
        return requested_operating_point(threshold, run_cfg, model, device, cfg.batch_size, datamodule)
    if threshold is not None:
        raise ConfigError(f"site={site} and threshold={threshold} both set the operating point: give one")
    point = site_operating_point(site, cfg.ckpt_path)
    model.net.temperature = point["temperature"]
    model.use_threshold(point["threshold"])
    model.operating_point = point
    return {**point, "requested": True}


def requested_operating_point(requested: Any, run_cfg: DictConfig, model, device: torch.device,
                              batch_size: int = 64, datamodule=None) -> dict[str, Any]:
    """The operating point a command's `threshold=` asks for, which `model` then uses: null, the
    checkpoint's own (model.operating_point); a number; a rule, chosen again on the validation
    split of the checkpoint's own data (`datamodule`, set up, or built from `run_cfg`), at the
    checkpoint's temperature."""
    if requested is None:
        return dict(model.operating_point)
    if is_rule(requested) and model.operating_point.get("split") == "oof":
        raise ConfigError(f"threshold={requested}: a fold ensemble's rule is chosen on its pooled out-of-fold "
                          "predictions, which only training has; give a number, or null for its own "
                          f"({model.operating_point['threshold']:.4f})")
    val = None
    if is_rule(requested):
        if datamodule is None:
            datamodule = checkpoint_data(run_cfg, model.net.input_spec)
        val = (datamodule.subset("val"), datamodule.dataset("val"))
    point = choose_operating_point(model.net, val, requested, False, device, batch_size)
    model.use_threshold(point["threshold"])
    return {**point, "requested": True}


def checkpoint_data(run_cfg: DictConfig, input_spec: Any):
    """The DataModule of a checkpoint's run config (its data, or another put in its place), set
    up for evaluation: every split, its files checked."""
    datamodule = build_datamodule(run_cfg, input_spec)
    datamodule.setup("test")
    return datamodule


def choose_operating_point(net: torch.nn.Module, val: tuple[Manifest, Dataset], rule: Any, calibrate: bool,
                           device: torch.device, batch_size: int = 64) -> dict[str, Any]:
    """{rule, threshold, temperature, split, n}: the temperature fitted on the validation logits
    (`calibrate`; else the net's own), then the threshold `rule` gives on the validation
    probabilities at that temperature. A number needs no validation images."""
    temperature = float(getattr(net, "temperature", 1.0))
    if not (is_rule(parse_threshold(rule)) or calibrate):
        return operating_point_of(None, None, rule, False, temperature)
    manifest, dataset = val
    logits = predict_logits(net, dataset, device, batch_size).astype(np.float64)
    return operating_point_of(logits, manifest.targets, rule, calibrate, temperature, "val")


def operating_point_of(logits: np.ndarray | None, targets: np.ndarray | None, rule: Any, calibrate: bool,
                       temperature: float = 1.0, split: str | None = None) -> dict[str, Any]:
    """choose_operating_point on logits at hand (at `temperature` already): the validation
    split's, or a fold ensemble's pooled out-of-fold ones (`split` names which)."""
    rule = parse_threshold(rule)
    point: dict[str, Any] = {"rule": rule, "threshold": rule, "temperature": temperature, "split": None, "n": None}
    if logits is None or not (is_rule(rule) or calibrate):
        return point
    point.update(split=split, n=len(targets))
    if calibrate:
        fitted = fit_temperature(logits, targets)
        point[f"{split}_nll"] = {"before": negative_log_likelihood(logits, targets),
                                 "after": negative_log_likelihood(logits, targets, fitted)}
        point["temperature"] *= fitted
        logits = logits / fitted
    point["threshold"] = choose_threshold(rule, 1 / (1 + np.exp(-logits)), targets)
    if is_rule(rule) and (warning := extreme_cut(rule, point["threshold"], split, len(targets))):
        log.warning(warning)
    return point


def assess(manifest: Manifest, probabilities: np.ndarray, threshold: float, resamples: int, seed: int) -> dict[str, Any]:
    """summarize() plus patient-level bootstrap intervals and breakdowns per source and per view
    (where the manifest records views): a shortcut often shows as one source or view failing."""
    targets = manifest.targets
    result = summarize(targets, probabilities, threshold)
    result["ece"] = expected_calibration_error(probabilities, targets)
    result["brier"] = brier_score(probabilities, targets)
    result["bootstrap_ci95"] = bootstrap_intervals(
        targets, probabilities, manifest.frame["patient_id"].to_numpy(), threshold, resamples, seed
    )
    for column in ("source", "view"):
        if column in manifest.frame:
            result[f"per_{column}"] = breakdown(manifest.frame[column], targets, probabilities, threshold)
    return result


def breakdown(groups: pd.Series, targets: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict[str, Any]:
    """summarize() per value of a manifest column (rows without a value left out)."""
    known = groups.notna().to_numpy() & (groups.astype(str).str.len() > 0).to_numpy()
    values = groups.astype(str).to_numpy()
    return {value: summarize(targets[known & (values == value)], probabilities[known & (values == value)], threshold)
            for value in sorted(set(values[known]))}


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
    """Metrics per set; writes predictions.csv, confusion_matrix.png, roc.png and reliability.png."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results: dict[str, Any] = {}
    frames, curves, reliability = [], {}, {}
    for name, (manifest, dataset) in sets.items():
        probabilities = predict(net, dataset, device, batch_size)
        results[name] = assess(manifest, probabilities, threshold, resamples, seed)
        if warning := one_class_calls(probabilities, threshold, name, manifest.targets):
            log.warning(warning)
        reliability[name] = (reliability_bins(probabilities, manifest.targets), results[name]["ece"])
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
        write_text_atomically(output_dir / "predictions.csv", pd.concat(frames, ignore_index=True).to_csv(index=False))
        confusion_matrices({n: r["confusion_matrix"] for n, r in results.items()}, output_dir / "confusion_matrix.png")
    if curves:
        roc_curves(curves, output_dir / "roc.png", threshold)
    if reliability:
        temperature = float(getattr(net, "temperature", 1.0))
        reliability_diagram(reliability, output_dir / "reliability.png",
                            f"temperature {temperature:.2f}" if temperature != 1.0 else "no temperature scaling")
    return results


def shift_summary(results: Mapping[str, Any], held_out: str | None, column: str = "source",
                  in_distribution: str = "val") -> dict[str, Any] | None:
    """With a held-out source or view (`data.holdout_source`, `data.holdout_view`: `column`),
    each metric in distribution (val: unseen patients of what was trained on) beside the same
    metric on the held-out films (test), and the drop from one to the other; None without a
    held-out value or one of the splits. A fold ensemble's in-distribution set is `oof`."""
    if held_out is None or in_distribution not in results or "test" not in results:
        return None
    ours, theirs = results[in_distribution], results["test"]
    block: dict[str, Any] = {column: held_out, "in_distribution": in_distribution, "shifted": "test",
                             "n": {"in_distribution": ours["n"], "shifted": theirs["n"]}}
    for metric in METRICS:
        a, b = ours[metric], theirs[metric]
        block[metric] = {"in_distribution": a, "shifted": b, "drop": None if a is None or b is None else a - b}
    return block
