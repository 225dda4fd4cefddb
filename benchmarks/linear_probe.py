"""Frozen EfficientNet-Lite0 on xray-mini: covid-tl's head against logistic regression on the
same pooled features, 5 folds grouped by patient; then the study's figure configs at
threshold 0.5 and at youden.

    python benchmarks/linear_probe.py [--folds 5] [--figure-epochs 3] [--skip-figures] [--skip-probe]

Probe: each fold runs `train.py experiment=frozen_head` (head on the frozen fast path, early
stopping on val/loss), and fits scikit-learn's LogisticRegression on the train split's features
from covid-tl's own feature code (covid_tl.data.frozen_features), both called at 0.5 on the
fold's test split. Every image is tested once over the folds: the pooled AUROC has a 95%
bootstrap interval over patients, the rates 95% Wilson intervals.

Figures: one run per point with threshold=youden; the 0.5 row comes from the same run's
test probabilities (predictions.csv). Runs that train on images are cut to --figure-epochs
(the figures' own 20 epochs take an hour each on 2 loaded cores); fast-path points keep theirs.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
XRAY_MINI = Path(os.environ.get("COVID_TL_XRAY_MINI", ROOT.parent / "shared" / "data" / "xray-mini"))
MODEL = ["data=xray_mini", "backbone=efficientnet_lite0", "backbone.weights=imagenet_offline"]
QUIET = ["logger=none", "callbacks.grad_cam=null", "bootstrap=200"]
#: (label, overrides, trains on images: epochs cut to --figure-epochs)
FIGURES = [
    ("fig7_exp3 trainable=0", ["experiment=paper/fig7_exp3", "freeze.trainable=0"], False),
    ("fig7_exp3 trainable=1", ["experiment=paper/fig7_exp3", "freeze.trainable=1"], True),
    ("fig10 preprocessing=none", ["experiment=paper/fig10", "preprocessing=none"], True),
    ("fig11 augment=watermark", ["experiment=paper/fig11", "augment=watermark"], True),
]


def train(run_dir: Path, *overrides: str) -> tuple[dict, pd.DataFrame, float]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={run_dir}", *overrides],
                          cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    results = json.loads((run_dir / "results.json").read_text())
    return results, pd.read_csv(run_dir / "predictions.csv"), time.perf_counter() - start


def logistic_regression(fold: int, folds: int) -> pd.DataFrame:
    """Test-split probabilities of LogisticRegression fitted on the fold's train features."""
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate
    from sklearn.linear_model import LogisticRegression

    from covid_tl.build import build_datamodule
    from covid_tl.data.frozen_features import FeatureDataModule
    from covid_tl.models.classifier import build_classifier

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[*MODEL, "experiment=frozen_head", f"data.num_folds={folds}",
                                          f"data.fold={fold}", "hydra.run.dir=/tmp/linear_probe"], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    net = build_classifier(cfg.backbone)
    instantiate(cfg.freeze)(net)
    datamodule = build_datamodule(cfg, net.input_spec)
    datamodule.setup("fit")
    features = FeatureDataModule(datamodule, net.features, torch.device("cpu")).sets
    (x_train, y_train), (x_test, _) = (features[s].tensors for s in ("train", "test"))
    model = LogisticRegression(max_iter=5000).fit(x_train.numpy(), y_train.numpy())
    frame = datamodule.subset("test").frame[["path", "label", "patient_id"]].copy()
    frame["prob_covid"] = model.predict_proba(x_test.numpy())[:, 1]
    return frame


def pooled(frame: pd.DataFrame, threshold: float = 0.5) -> dict:
    from covid_tl.metrics import bootstrap_intervals, summarize

    targets = (frame["label"] == "covid").to_numpy().astype(int)
    probabilities = frame["prob_covid"].to_numpy()
    result = summarize(targets, probabilities, threshold)
    result["auroc_ci95"] = bootstrap_intervals(targets, probabilities, frame["patient_id"].astype(str).to_numpy(),
                                               threshold, 1000, 0)["auroc"]
    return result


def cell(r: dict, metric: str) -> str:
    interval = r.get(f"{metric}_ci95")
    return f"{r[metric]:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


def probe(folds: int, tmp: Path) -> None:
    heads, lrs, epochs, wall = [], [], [], 0.0
    for fold in range(folds):
        results, predictions, seconds = train(tmp / f"fold{fold}", *MODEL, *QUIET, "experiment=frozen_head",
                                              f"data.num_folds={folds}", f"data.fold={fold}")
        heads.append(predictions[predictions["set"] == "test"])
        epochs.append(results["run"]["epochs_trained"])
        wall += seconds
        lrs.append(logistic_regression(fold, folds))
        print(f"fold {fold}: head AUROC {results['test']['auroc']:.3f} after {epochs[-1]} epochs ({seconds:.0f} s)",
              flush=True)
    rows = {"covid-tl head (experiment=frozen_head)": pooled(pd.concat(heads)),
            "LogisticRegression, same features": pooled(pd.concat(lrs))}
    print(f"\n{folds} folds by patient, every image tested once (n={rows[next(iter(rows))]['n']}), threshold 0.5; "
          f"head epochs per fold (early stopping): {epochs}; covid-tl runs {wall:.0f} s in all\n")
    print("| model | AUROC [95% bootstrap CI] | sensitivity [95% Wilson] | specificity [95% Wilson] |")
    print("|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {cell(r, 'auroc')} | {cell(r, 'sensitivity')} | {cell(r, 'specificity')} |")


def figures(epochs: int, tmp: Path) -> None:
    print("\n| figure point | epochs | test AUROC | sens / spec at 0.5 | youden threshold | sens / spec at youden | wall |")
    print("|---|---|---|---|---|---|---|")
    for k, (name, overrides, on_images) in enumerate(FIGURES):
        cut = [f"trainer.max_epochs={epochs}"] if on_images else []
        results, predictions, seconds = train(tmp / f"figure{k}", *overrides, *MODEL, *QUIET, *cut, "threshold=youden")
        test = predictions[predictions["set"] == "test"]
        half, youden = pooled(test), results["test"]
        print(f"| {name} | {results['run']['epochs_trained']} | {youden['auroc']:.3f} | "
              f"{half['sensitivity']:.3f} / {half['specificity']:.3f} | {results['run']['operating_point']['threshold']:.3f} | "
              f"{youden['sensitivity']:.3f} / {youden['specificity']:.3f} | {seconds:.0f} s |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--figure-epochs", type=int, default=3)
    parser.add_argument("--skip-probe", action="store_true")
    parser.add_argument("--skip-figures", action="store_true")
    args = parser.parse_args()
    if not (XRAY_MINI / "manifest.csv").is_file():
        print(f"skipped: xray-mini not found at {XRAY_MINI} (set COVID_TL_XRAY_MINI to its folder)")
        return
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_probe:
            probe(args.folds, Path(tmp))
        if not args.skip_figures:
            figures(args.figure_epochs, Path(tmp))


if __name__ == "__main__":
    main()
