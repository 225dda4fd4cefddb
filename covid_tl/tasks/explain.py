"""CAM pictures and a table for a checkpoint, on files or on a split of its data (explain.py)."""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from covid_tl.models.checkpoint import load_run
from covid_tl.models.ensemble import member_count
from covid_tl.data.dataset import PreparedImages
from covid_tl.data.images import MAX_MEGAPIXELS, image_files, read_xray
from covid_tl.data.validate import readable_files
from covid_tl.data.sources import read_mask
from covid_tl.core.labels import LABELS
from covid_tl.core.errors import ConfigError
from covid_tl.cam.callback import balanced_rows, caption_key, captions
from covid_tl.cam.compute import compute_cams
from covid_tl.cam.overlay import cam_grid, cam_title
from covid_tl.cam.scores import mean_scores
from covid_tl.cam.images import lung_legend, score_cams, scoring_images, shown_lungs
from covid_tl.cam.options import build_cam
from covid_tl.cam.sets import mark_detector
from covid_tl.engine.build import build_datamodule, build_preprocessing, pick_device
from covid_tl.runtime.run_checks import check_script_config
from covid_tl.engine.evaluation import script_operating_point

log = logging.getLogger(__name__)


def mask_finder(masks: str | None) -> Callable[[Mapping[str, Any]], np.ndarray | None]:
    """Lung masks from a folder, matched by file name (any image suffix), for `images=` runs."""
    if not masks:
        return lambda row: None
    folder = Path(masks).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"masks={masks!r} is not a folder")
    by_stem = {p.stem: p for p in folder.iterdir() if p.is_file()}
    return lambda row: read_mask(by_stem.get(Path(str(row["path"])).stem))


def explain(cfg: DictConfig, output_dir: Path) -> pd.DataFrame:
    """Writes cams/<n>_<name>.png per image, grid.png, cams.csv and cam_scores.json into output_dir."""
    check_script_config(cfg)  # required values and counts, before the checkpoint is read
    run_cfg, model = load_run(cfg.ckpt_path, cfg.trust_checkpoint)
    # A rule (threshold=youden) is chosen on the checkpoint's own validation split, whatever data= says.
    point = script_operating_point(cfg, run_cfg, model, pick_device("auto"))
    threshold = point["threshold"]
    if cfg.get("data") is not None:  # a split of other data, with the checkpoint's preprocessing
        run_cfg.data = OmegaConf.create(OmegaConf.to_container(cfg.data, resolve=False))
    net = model.net
    if cfg.images:
        preprocess, cache = build_preprocessing(run_cfg)
        load = lambda row: read_xray(row["path"])  # noqa: E731
        prepare = PreparedImages(load, preprocess, cache, lambda row: True)
        # Checked as predict's files are (header size first: a bomb is never decoded); the first n.
        readable = readable_files(image_files(cfg.images), prepare.check, cfg.images, output_dir,
                                  run_cfg.data.get("max_megapixels", MAX_MEGAPIXELS))
        if len(readable) > cfg.n:
            log.info("explaining the first %d of the %d readable files (n=%d)", cfg.n, len(readable), cfg.n)
        rows = [{"path": row["path"], "label": None} for row in readable[: cfg.n]]
        lungs = mask_finder(cfg.get("masks"))
    else:
        datamodule = build_datamodule(run_cfg, net.input_spec)
        datamodule.setup("test")
        manifest = datamodule.subset(cfg.split)
        if not len(manifest):
            raise ConfigError(f"the {cfg.split} split of this checkpoint's data is empty")
        rows = [manifest.frame.iloc[i].to_dict() for i in balanced_rows(manifest.targets, cfg.n)]
        load, prepare = datamodule.load_image, datamodule.prepared
        masks = mask_finder(cfg.get("masks"))
        lungs = lambda row: masks(row) if cfg.get("masks") else datamodule.load_lung_mask(row)  # noqa: E731
    detector = mark_detector(OmegaConf.to_container(run_cfg.preprocessing, resolve=True))
    cam = build_cam(cfg.cam)
    items = scoring_images(rows, load, prepare, lungs, net.input_spec, detector, cam.lungs)
    batch = torch.stack([item.input for item in items])
    cams, probabilities = compute_cams(net, batch, cam.method, cam.target, cam.layer, cfg.batch_size, threshold)
    scores = score_cams(cams, items)

    labels = [row["label"] or "unknown" for row in rows]
    shown = [item.shown for item in items]
    lines, colours = captions([row["label"] for row in rows], probabilities, threshold)
    where = f", {cfg.split} split" if not cfg.images else ""
    title = cam_title(cam.method, cam.layer or net.cam_layer, cam.target,
                      f"{where} ({Path(str(cfg.ckpt_path)).name}{members_note(member_count(net))}"
                      + (f", cut of site {point['site']}" if point.get("site") else "") + ")")
    picture, overlays = cam_grid(shown, cams, lines, cam.overlay, cam.alpha, cam.tile, title=title, colours=colours,
                                 key=caption_key(threshold, lung_legend(items)),
                                 lungs=[shown_lungs(item) for item in items])
    (output_dir / "cams").mkdir(parents=True, exist_ok=True)
    records = []
    for i, (row, image, probability, score) in enumerate(zip(rows, overlays, probabilities, scores)):
        name = f"{i:03d}_{Path(str(row['path'])).stem}.png"
        cv2.imwrite(str(output_dir / "cams" / name), image[:, :, ::-1])
        records.append({"path": row["path"], "label": row["label"], "prob_covid": float(probability),
                        "predicted": LABELS[int(probability >= threshold)], **score, "overlay": f"cams/{name}"})
    cv2.imwrite(str(output_dir / "grid.png"), picture[:, :, ::-1])
    table = pd.DataFrame(records)
    table.to_csv(output_dir / "cams.csv", index=False)
    summary = mean_scores(scores, labels)
    (output_dir / "cam_scores.json").write_text(json.dumps(summary, indent=2) + "\n")
    return table


def members_note(members: int | None) -> str:
    """', mean of N members' for a fold ensemble (its CAM is the members' mean), else ''."""
    return f", mean of {members} members" if members else ""
