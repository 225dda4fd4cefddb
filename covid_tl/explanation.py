"""Grad-CAM pictures for images of one split of a checkpoint's data (what explain.py runs)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

from covid_tl.checkpoint import load_run
from covid_tl.data.manifest import LABELS
from covid_tl.explain.cam import grad_cam
from covid_tl.explain.overlay import blend, grid, labelled
from covid_tl.preprocess.model_input import to_model_input
from covid_tl.training import build_datamodule
from covid_tl.errors import ConfigError

TILE = 160  # pixels per side of a picture in the grid: small inputs are shown enlarged


def balanced_rows(targets: np.ndarray, n: int) -> list[int]:
    """Up to n row positions alternating COVID-19 and no-finding, in manifest order."""
    by_class = [list(np.flatnonzero(targets == c)) for c in (1, 0)]
    rows: list[int] = []
    while len(rows) < n and any(by_class):
        for queue in by_class:
            if queue and len(rows) < n:
                rows.append(int(queue.pop(0)))
    return rows


def explain(ckpt_path: str, split: str, n: int, target: str, alpha: float, output_dir: Path) -> pd.DataFrame:
    """Writes one overlay PNG per image, grid.png and cams.csv into output_dir; returns the table."""
    if n < 1:
        raise ConfigError(f"n must be at least 1, got {n}")
    cfg, model = load_run(ckpt_path)
    net = model.net
    datamodule = build_datamodule(cfg, net)
    datamodule.setup("test")
    manifest = datamodule.subset(split)
    if not len(manifest):
        raise ConfigError(f"the {split} split of this checkpoint's data is empty")
    rows = [manifest.frame.iloc[i].to_dict() for i in balanced_rows(manifest.targets, n)]
    images = [datamodule.prepared(row) for row in rows]
    batch = torch.from_numpy(np.stack([to_model_input(im, net.input_spec) for im in images]))
    cams, probabilities = grad_cam(net, batch, target)

    (output_dir / "cams").mkdir(parents=True, exist_ok=True)
    tiles, records = [], []
    for i, (row, image, cam, probability) in enumerate(zip(rows, images, cams, probabilities)):
        shown = cv2.resize(image, (TILE, TILE), interpolation=cv2.INTER_AREA)
        overlay = blend(shown, cv2.resize(cam, (TILE, TILE)), alpha)
        predicted = LABELS[int(probability >= cfg.threshold)]
        name = f"{i:03d}_{Path(str(row['path'])).stem}.png"
        cv2.imwrite(str(output_dir / "cams" / name), overlay[:, :, ::-1])
        tiles.append(labelled(overlay, [f"true {row['label']}", f"pred {predicted} p={probability:.2f}"]))
        records.append({"path": row["path"], "label": row["label"], "prob_covid": float(probability),
                        "predicted": predicted, "overlay": f"cams/{name}"})
    cv2.imwrite(str(output_dir / "grid.png"), grid(tiles)[:, :, ::-1])
    table = pd.DataFrame(records)
    table.to_csv(output_dir / "cams.csv", index=False)
    return table
