"""Frozen EfficientNet-Lite0 on xray-mini: covid-tl's head against logistic regression on the
same pooled features, 5 folds grouped by patient; then the study's figure configs at
threshold 0.5 and at youden.

    python benchmarks/linear_probe.py [--folds 5] [--figure-epochs 3] [--skip-figures] [--skip-probe]
    python benchmarks/linear_probe.py --tiny     # the small CNN, 1 epoch, 2 folds, one figure point (seconds)

Probe: each fold runs `train.py experiment=frozen_head` (head on the frozen fast path, early
stopping on val/loss), and fits scikit-learn's LogisticRegression on the train split's features
from covid-tl's own feature code (covid_tl.data.frozen_features), both called at 0.5 on the
fold's test split. Every image is tested once over the folds: the pooled AUROC has a 95%
bootstrap interval over patients, the rates 95% Wilson intervals.

Figures: one run per point with threshold=youden; the 0.5 row comes from the same run's
test probabilities (predictions.csv). Runs that train on images are cut to --figure-epochs
(the figures' own 20 epochs take an hour each on 2 loaded cores); fast-path points keep theirs.
Skips with a message when xray-mini is absent.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from covid_tl.core.formatting import markdown_table, number
from harness import TINY_XRAY_MINI, composed, machine, pooled_out_of_fold, train, xray_mini_or_skip, xray_mini_data

MODEL = ["backbone=efficientnet_lite0", "backbone.weights=imagenet_offline"]
QUIET = ["logger=none", "callbacks.grad_cam=null", "bootstrap=200"]
#: (label, overrides, trains on images: epochs cut to --figure-epochs)
FIGURES = [
    ("fig7_exp3 trainable=0", ["experiment=paper/fig7_exp3", "freeze.trainable=0"], False),
    ("fig7_exp3 trainable=1", ["experiment=paper/fig7_exp3", "freeze.trainable=1"], True),
    ("fig10 preprocessing=none", ["experiment=paper/fig10", "preprocessing=none"], True),
    ("fig11 watermark=transplant", ["experiment=paper/fig11", "watermark=transplant"], True),
]


def logistic_regression(overrides: list[str], run_dir: Path) -> pd.DataFrame:
    """Test-split probabilities of LogisticRegression fitted on the train split's frozen features
    of the config `overrides` give (seeded as train.py seeds: the same backbone as its run)."""
    import pytorch_lightning as pl
    import torch
    from hydra.utils import instantiate
    from sklearn.linear_model import LogisticRegression

    from covid_tl.engine.build import build_datamodule
    from covid_tl.data.frozen_features import FeatureDataModule
    from covid_tl.models.classifier import build_classifier

    cfg = composed("train", overrides, run_dir)
    pl.seed_everything(cfg.seed, workers=True)
    net = build_classifier(cfg.backbone)
    instantiate(cfg.freeze)(net)
    datamodule = build_datamodule(cfg, net.input_spec)
    datamodule.setup("fit")
    features = FeatureDataModule(datamodule, net.features, torch.device("cpu"))
    (x_train, y_train), (x_test, _) = (features.dataset(s).tensors for s in ("train", "test"))
    model = LogisticRegression(max_iter=5000).fit(x_train.numpy(), y_train.numpy())
    frame = datamodule.subset("test").frame[["path", "label", "patient_id"]].copy()
    frame["prob_covid"] = model.predict_proba(x_test.numpy())[:, 1]
    return frame


def probe(model: list[str], folds: int, tmp: Path) -> dict[str, Any]:
    heads, lrs, epochs, wall = [], [], [], 0.0
    for fold in range(folds):
        overrides = [*model, "experiment=frozen_head", f"data.num_folds={folds}", f"data.fold={fold}"]
        run = train([*QUIET, *overrides], tmp / f"fold{fold}")
        heads.append(run.predictions("test"))
        epochs.append(run.results.run["epochs_trained"])
        wall += run.wall_s
        lrs.append(logistic_regression(overrides, tmp / f"probe{fold}"))
        print(f"fold {fold}: head AUROC {number(run.results.set('test')['auroc'])} after {epochs[-1]} epochs "
              f"({run.wall_s:.0f} s)", flush=True)
    rows = {"covid-tl head (experiment=frozen_head)": pooled_out_of_fold(heads),
            "LogisticRegression, same features": pooled_out_of_fold(lrs)}
    print(f"\n{folds} folds by patient, every image tested once (n={rows[next(iter(rows))]['n']}), threshold 0.5; "
          f"head epochs per fold (early stopping): {epochs}; covid-tl runs {wall:.0f} s in all\n")
    print("\n".join(markdown_table(
        ["model", "AUROC [95% bootstrap CI]", "sensitivity [95% Wilson]", "specificity [95% Wilson]"],
        [[name, *(number(r[m], r[f"{m}_ci95"]) for m in ("auroc", "sensitivity", "specificity"))]
         for name, r in rows.items()])))
    return {"rows": rows, "epochs": epochs, "wall_s": wall}


def figures(model: list[str], points: list, epochs: int, tmp: Path) -> list[dict[str, Any]]:
    rows = []
    for k, (name, overrides, on_images) in enumerate(points):
        cut = [f"trainer.max_epochs={epochs}"] if on_images else []
        run = train([*QUIET, *overrides, *model, *cut, "threshold=youden"], tmp / f"figure{k}")
        test = run.results.set("test")
        half = pooled_out_of_fold([run.predictions("test")], resamples=0)
        rows.append({"point": name, "epochs": run.results.run["epochs_trained"], "auroc": test["auroc"],
                     "half": half, "threshold": run.results.threshold, "youden": test, "wall_s": run.wall_s})
    print("\n" + "\n".join(markdown_table(
        ["figure point", "epochs", "test AUROC", "sens / spec at 0.5", "youden threshold", "sens / spec at youden", "wall"],
        [[r["point"], r["epochs"], number(r["auroc"]), f"{number(r['half']['sensitivity'])} / {number(r['half']['specificity'])}",
          number(r["threshold"]), f"{number(r['youden']['sensitivity'])} / {number(r['youden']['specificity'])}",
          f"{r['wall_s']:.0f} s"] for r in rows])), flush=True)
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--figure-epochs", type=int, default=3)
    parser.add_argument("--skip-probe", action="store_true")
    parser.add_argument("--skip-figures", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="the small CNN, 1 epoch, 2 folds, one figure point")
    args = parser.parse_args(argv)
    if (root := xray_mini_or_skip()) is None:
        return {}
    print(machine())
    model = [*xray_mini_data(root), *(TINY_XRAY_MINI if args.tiny else MODEL)]
    folds, points, epochs = (2, FIGURES[:1], 1) if args.tiny else (args.folds, FIGURES, args.figure_epochs)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_probe:
            out["probe"] = probe(model, folds, Path(tmp))
        if not args.skip_figures:
            out["figures"] = figures(model, points, epochs, Path(tmp))
    return out


if __name__ == "__main__":
    main()
