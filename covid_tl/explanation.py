"""CAM pictures and a table for a checkpoint, on files or on a split of its data (explain.py)."""
from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from covid_tl.checkpoint import load_run
from covid_tl.data.dataset import PreparedImages
from covid_tl.data.images import read_xray
from covid_tl.data.manifest import LABELS
from covid_tl.errors import ConfigError
from covid_tl.explain.callback import balanced_rows, captions
from covid_tl.explain.cam import compute_cams
from covid_tl.explain.overlay import cam_grid
from covid_tl.preprocess.model_input import to_model_input
from covid_tl.training import build_datamodule, build_preprocessing


def rows_from_glob(pattern: str) -> list[dict[str, Any]]:
    """Rows for image files given by a glob; their labels are unknown."""
    paths = sorted(glob.glob(str(Path(pattern).expanduser()), recursive=True))
    if not paths:
        raise ConfigError(f"images={pattern!r} matches no file")
    return [{"path": p, "label": None} for p in paths]


def explain(cfg: DictConfig, output_dir: Path) -> pd.DataFrame:
    """Writes cams/<n>_<name>.png per image, grid.png and cams.csv into output_dir."""
    if cfg.n < 1:
        raise ConfigError(f"n must be at least 1, got {cfg.n}")
    run_cfg, model = load_run(cfg.ckpt_path)
    net = model.net
    if cfg.images:
        rows = rows_from_glob(cfg.images)
        preprocess, cache = build_preprocessing(run_cfg)
        prepare = PreparedImages(lambda row: read_xray(row["path"]), preprocess, cache, lambda row: True)
    else:
        datamodule = build_datamodule(run_cfg, net)
        datamodule.setup("test")
        manifest = datamodule.subset(cfg.split)
        if not len(manifest):
            raise ConfigError(f"the {cfg.split} split of this checkpoint's data is empty")
        rows = [manifest.frame.iloc[i].to_dict() for i in balanced_rows(manifest.targets, cfg.n)]
        prepare = datamodule.prepared
    images = [prepare(row).image for row in rows]
    batch = torch.from_numpy(np.stack([to_model_input(im, net.input_spec) for im in images]))
    cams, probabilities = compute_cams(net, batch, cfg.method, cfg.target, cfg.layer, cfg.batch_size, run_cfg.threshold)

    labels = [row["label"] or "unknown" for row in rows]
    picture, overlays = cam_grid(images, cams, captions(labels, probabilities, run_cfg.threshold), cfg.overlay, cfg.alpha)
    (output_dir / "cams").mkdir(parents=True, exist_ok=True)
    records = []
    for i, (row, shown, probability) in enumerate(zip(rows, overlays, probabilities)):
        name = f"{i:03d}_{Path(str(row['path'])).stem}.png"
        cv2.imwrite(str(output_dir / "cams" / name), shown[:, :, ::-1])
        records.append({"path": row["path"], "label": row["label"], "prob_covid": float(probability),
                        "predicted": LABELS[int(probability >= run_cfg.threshold)], "overlay": f"cams/{name}"})
    cv2.imwrite(str(output_dir / "grid.png"), picture[:, :, ::-1])
    table = pd.DataFrame(records)
    table.to_csv(output_dir / "cams.csv", index=False)
    return table
