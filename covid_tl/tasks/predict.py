"""predict.py: COVID-19 probabilities of image files, with the model, preprocessing, input spec
and threshold recorded in a checkpoint; Grad-CAM overlays on request.

Every file is decoded before the first prediction (as training's setup does), so an unreadable
one is listed in bad_rows.csv and left out instead of stopping the run half-way. Predictions go
to predictions.csv.partial batch by batch: thousands of files stream through a DataLoader, and a
run that stops keeps what it wrote there; only a run that finished renames it predictions.csv.
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig
from rich.progress import track
from torch.utils.data import DataLoader

from covid_tl.engine.build import build_preprocessing, pick_device
from covid_tl.cam.callback import describe
from covid_tl.cam.compute import compute_cams, target_layers
from covid_tl.cam.options import CamOptions, build_cam
from covid_tl.cam.overlay import overlay
from covid_tl.data.dataset import ImageFiles, file_images
from covid_tl.data.images import image_files
from covid_tl.data.validate import readable_files
from covid_tl.reporting.grid import labelled
from covid_tl.core.labels import LABELS
from covid_tl.models.checkpoint import load_run
from covid_tl.models.classifier import Classifier
from covid_tl.runtime.run_checks import check_script_config
from covid_tl.engine.evaluation import script_operating_point

log = logging.getLogger(__name__)

COLUMNS = ["path", "prob_covid", "predicted"]
#: Suffix of predictions.csv while the run writes it: a file without it is complete.
PARTIAL = ".partial"


def write_overlays(shown: np.ndarray, cams: np.ndarray, probabilities: np.ndarray, calls: list[str],
                   names: list[str], cam: CamOptions, folder: Path) -> None:
    """One captioned overlay per image, `cam.tile` pixels a side, as cams/<name>."""
    for image, heatmap, probability, call, name in zip(shown, cams, probabilities, calls, names):
        shrink = image.shape[0] > cam.tile
        tile = cv2.resize(image, (cam.tile, cam.tile), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        picture = labelled(overlay(tile, heatmap, cam.overlay, cam.alpha), [f"{call} p={probability:.3f}"])
        if not cv2.imwrite(str(folder / name), picture[:, :, ::-1]):
            raise OSError(f"cannot write {folder / name}")


def probabilities_of(net: Classifier, inputs: torch.Tensor, cam: CamOptions | None, threshold: float,
                     device: torch.device) -> tuple[np.ndarray, np.ndarray | None]:
    """(COVID-19 probabilities, CAMs or None) of one batch; with `cam`, CAMs from the same forward
    pass. A CAM failure costs the batch its pictures (one warning), never its predictions."""
    if cam is not None:
        try:
            cams, probabilities = compute_cams(net, inputs, cam.method, cam.target, cam.layer, len(inputs), threshold)
            return probabilities, cams
        except Exception as error:
            log.warning("no CAMs for a batch of %d file(s): %s", len(inputs), describe(error))
    with torch.inference_mode():
        return torch.sigmoid(net(inputs.to(device)).float()).cpu().numpy(), None


def predict(cfg: DictConfig, output_dir: Path) -> pd.DataFrame:
    """Writes predictions.csv (path, prob_covid, predicted[, cam]), bad_rows.csv when a file
    cannot be read, and cams/ with cams=true; returns the predictions."""
    check_script_config(cfg)  # required values and counts, before the checkpoint is read
    run_cfg, model = load_run(cfg.ckpt_path, cfg.trust_checkpoint)
    device = pick_device(cfg.device)
    threshold = script_operating_point(cfg, run_cfg, model, device)["threshold"]
    net = model.net
    cam = build_cam(cfg.cam) if cfg.cams else None
    if cam is not None:
        target_layers(net, cam.layer)  # a layer the backbone lacks: refused before the first file
    paths = image_files(cfg.images)
    output_dir.mkdir(parents=True, exist_ok=True)
    prepare = file_images(*build_preprocessing(run_cfg))
    rows = readable_files(paths, prepare.check, cfg.images, output_dir, cfg.max_megapixels)
    loader = DataLoader(ImageFiles(rows, prepare, net.input_spec), batch_size=cfg.batch_size, num_workers=cfg.num_workers)
    net.eval().to(device)
    width = len(str(len(rows)))
    names = [f"{i:0{width}d}_{Path(row['path']).stem}.png" for i, row in enumerate(rows)]
    if cfg.cams:
        (output_dir / "cams").mkdir(exist_ok=True)
    written = output_dir / "predictions.csv"
    partial = written.with_name(written.name + PARTIAL)
    with partial.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS + (["cam"] if cfg.cams else []))
        start = 0
        for inputs, shown in track(loader, description="predicting", total=len(loader)):
            probabilities, cams = probabilities_of(net, inputs, cam, threshold, device)
            calls = [LABELS[int(p >= threshold)] for p in probabilities]
            done = range(start, start + len(inputs))
            if cams is not None:
                write_overlays(shown.numpy(), cams, probabilities, calls, names[start : done.stop], cam,
                               output_dir / "cams")
            for i, probability, call in zip(done, probabilities, calls):
                overlay_file = ([f"cams/{names[i]}" if cams is not None else ""] if cfg.cams else [])
                writer.writerow([rows[i]["path"], f"{probability:.6f}", call, *overlay_file])
            handle.flush()
            start = done.stop
    partial.replace(written)
    return pd.read_csv(written)
