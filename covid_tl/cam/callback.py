"""Grad-CAM every few epochs on a fixed, balanced set of validation images."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

from covid_tl.reporting.grid import WHITE
from covid_tl.core.labels import DISPLAY, LABELS
from covid_tl.cam.compute import compute_cams
from covid_tl.cam.overlay import OUTLINE, cam_grid, cam_title
from covid_tl.cam.scores import mean_scores
from covid_tl.cam.images import lung_legend, score_cams, scoring_images, shown_lungs
from covid_tl.cam.options import CamOptions
from covid_tl.stats.operating_point import cut_decimals, describe_cut

log = logging.getLogger(__name__)

RIGHT, WRONG = (120, 230, 120), (255, 110, 110)  # caption colours of a right and a wrong call
EPOCH_VAL = "this epoch's val"  # where a rule's per-epoch cut is chosen (CovidClassifier.validation_cut)


def balanced_rows(targets: np.ndarray, n: int) -> list[int]:
    """Up to n row positions alternating COVID-19 and no-finding, in manifest order."""
    by_class = [list(np.flatnonzero(targets == c)) for c in (1, 0)]
    rows: list[int] = []
    while len(rows) < n and any(by_class):
        for queue in by_class:
            if queue and len(rows) < n:
                rows.append(int(queue.pop(0)))
    return rows


def image_name(row: Mapping[str, Any]) -> str:
    return str(row.get("path", "?"))


def describe(error: Exception) -> str:
    """One line: the exception's type and message."""
    return f"{type(error).__name__}: {error}".splitlines()[0]


def captions(labels: list[str | None], probabilities: np.ndarray, threshold: float
             ) -> tuple[list[list[str]], list[list[tuple[int, int, int]]]]:
    """Two caption lines per image (true label; COVID-19 probability and the call at `threshold`)
    and their colours: the call green when right, red when wrong, white when the truth is unknown.
    p has as many decimals as tell it from the cut (0.07 against 0.063: 0.070)."""
    lines, colours = [], []
    decimals = cut_decimals(threshold)
    for label, p in zip(labels, probabilities):
        called = LABELS[int(p >= threshold)]
        truth = DISPLAY.get(label, "unknown") if label else "unknown"
        lines.append([f"true: {truth}", f"p(COVID-19)={p:.{decimals}f} -> {DISPLAY[called]}"])
        verdict = WHITE if label not in LABELS else RIGHT if label == called else WRONG
        colours.append([WHITE, verdict])
    return lines, colours


def caption_key(threshold: float, lungs: str | None = None, source: str | None = None
                ) -> list[tuple[tuple[int, int, int], str]]:
    """The legend of captions()' colours (the cut, and `source`: where it came from, e.g. `youden
    on this epoch's val`), and of the lung outline (`lungs`: its text) where one is drawn."""
    key = [(RIGHT, f"called right (COVID-19 at {describe_cut(threshold)}{': ' + source if source else ''})"),
           (WRONG, "called wrong")]
    return key + [(OUTLINE, lungs)] if lungs else key


class GradCAMCallback(pl.Callback):
    """Saves `cams/epoch_XXX.png` and logs the grid to TensorBoard after validation.

    The same K validation images every time (half COVID-19), so epochs can be compared;
    runs on rank zero only and leaves the model's mode, flags and gradients as they were.
    A failure costs one warning naming the images, never the run: an image that cannot be
    prepared is left out at setup, an epoch whose CAMs fail gets no picture. `cam` says how each
    CAM is made and drawn (the `cam` config group); its lung regions are found once, at setup.
    """

    def __init__(
        self,
        output_dir: str | Path,
        every_n_epochs: int = 1,
        num_images: int = 8,
        cam: CamOptions | None = None,
    ) -> None:
        if every_n_epochs < 1 or num_images < 1:
            raise ValueError("every_n_epochs and num_images must be at least 1")
        self.output_dir = Path(output_dir)
        self.every_n_epochs = every_n_epochs
        self.num_images = num_images
        self.cam = cam or CamOptions()
        self.inputs: torch.Tensor | None = None
        #: epoch -> mean CAM scores of the grid's images; kept in checkpoints, so a resumed run has them all.
        self.scores: dict[int, dict[str, float | None]] = {}

    def state_dict(self) -> dict[str, Any]:
        return {"scores": {int(epoch): dict(means) for epoch, means in self.scores.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """A checkpoint's epochs join those already held, which win: resuming gets every earlier
        epoch, and testing the best checkpoint (an earlier epoch's state) drops none after it."""
        restored = {int(epoch): dict(means) for epoch, means in state_dict.get("scores", {}).items()}
        self.scores = {**restored, **self.scores}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        datamodule = trainer.datamodule
        if stage != "fit" or datamodule is None or self.inputs is not None:
            return
        if self.cam.layer is None and getattr(pl_module.net, "cam_layer", None) is None:
            log.warning("no Grad-CAM pictures: backbone %s has no spatial layer", pl_module.net.backbone_name)
            return
        subset = datamodule.subset("val")
        rows = [subset.frame.iloc[i].to_dict() for i in balanced_rows(subset.targets, self.num_images)]
        self.labels, self.items, self.names, failed = [], [], [], []
        for row in rows:  # one bad image costs its own tile, not the pictures
            try:
                self.items += scoring_images([row], datamodule.load_image, datamodule.prepared,
                                             datamodule.load_lung_mask, datamodule.input_spec, lungs=self.cam.lungs)
            except Exception as error:
                failed.append(f"{image_name(row)} ({describe(error)})")
                continue
            self.labels.append(row["label"])
            self.names.append(image_name(row))
        if failed:
            log.warning("Grad-CAM leaves out %d validation image(s): %s", len(failed), "; ".join(failed))
        if self.items:
            self.inputs = torch.stack([item.input for item in self.items])

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.inputs is None or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        cut = pl_module.validation_cut()  # on every process: under DDP it gathers the epoch's predictions
        if not trainer.is_global_zero:
            return
        try:
            self.explain_epoch(trainer, pl_module, *cut)
        except Exception as error:  # a CAM failure never stops training
            log.warning("no Grad-CAM pictures for epoch %d (images %s): %s; training goes on",
                        trainer.current_epoch, ", ".join(self.names), describe(error))

    def explain_epoch(self, trainer: pl.Trainer, pl_module: pl.LightningModule, threshold: float,
                      rule: str | None = None) -> None:
        """CAMs of the fixed images called at `threshold` (chosen by `rule` on this epoch's
        validation predictions, if given; the title and legend say which): the grid as PNG and
        TensorBoard image, mean scores as metrics."""
        cam = self.cam
        cams, probabilities = compute_cams(pl_module.net, self.inputs, cam.method, cam.target, cam.layer, threshold=threshold)
        shown = [item.shown for item in self.items]
        lines, colours = captions(self.labels, probabilities, threshold)
        title = cam_title(cam.method, cam.layer or pl_module.net.cam_layer, cam.target,
                          f", epoch {trainer.current_epoch} (validation images), called at "
                          f"{describe_cut(threshold, rule, EPOCH_VAL)}")
        source = f"{rule} on {EPOCH_VAL}" if rule else None
        picture, _ = cam_grid(shown, cams, lines, cam.overlay, cam.alpha, cam.tile, title=title, colours=colours,
                              key=caption_key(threshold, lung_legend(self.items), source),
                              lungs=[shown_lungs(item) for item in self.items])
        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.output_dir / f"epoch_{trainer.current_epoch:03d}.png"
        if not cv2.imwrite(str(path), picture[:, :, ::-1]):
            raise OSError(f"cannot write {path}")
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("cam/validation", picture, trainer.global_step, dataformats="HWC")
        means = mean_scores(score_cams(cams, self.items))
        self.scores[trainer.current_epoch] = {name: None if value is None else float(value) for name, value in means.items()}
        for name, value in means.items():
            if value is not None:
                pl_module.log(f"cam/{name}", value, rank_zero_only=True)
