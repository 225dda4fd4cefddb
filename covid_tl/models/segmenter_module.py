"""The LightningModule of task=segment: a lung segmenter's network trained on Dice plus
binary cross-entropy (segmentation-models-pytorch's losses), judged by Dice and IoU per image."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric


def dice_iou(logits_or_masks: torch.Tensor, targets: torch.Tensor, threshold: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Dice and IoU of every image of a batch (N, 1, H, W): probabilities or logits are cut at
    `threshold` (logits after a sigmoid); two empty masks agree fully (1.0)."""
    predicted = logits_or_masks if logits_or_masks.dtype == torch.bool else torch.sigmoid(logits_or_masks) >= threshold
    tp, fp, fn, tn = smp.metrics.get_stats(predicted.long(), targets.long(), mode="binary")
    return (smp.metrics.f1_score(tp, fp, fn, tn, reduction="none")[:, 0],
            smp.metrics.iou_score(tp, fp, fn, tn, reduction="none")[:, 0])


class LungSegmentationModule(pl.LightningModule):
    """Trains `net` (the segmenter's smp network); logs `<split>/loss`, `/dice`, `/iou`."""

    def __init__(self, net: nn.Module, optimizer: Callable, scheduler: Callable | None = None,
                 threshold: float = 0.5, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        self.net = net.train()  # a segmenter's network may come in eval mode; Lightning keeps modes as found
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.threshold = threshold
        self.dice_loss = smp.losses.DiceLoss(mode="binary", from_logits=True)
        self.scores = nn.ModuleDict({f"{split}_{name}": MeanMetric() for split in ("train", "val") for name in ("dice", "iou")})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch, split: str) -> torch.Tensor:
        x, y = batch
        logits = self(x).float()
        loss = self.dice_loss(logits, y) + F.binary_cross_entropy_with_logits(logits, y)
        dice, iou = dice_iou(logits.detach(), y, self.threshold)
        self.scores[f"{split}_dice"].update(dice)
        self.scores[f"{split}_iou"].update(iou)
        self.log(f"{split}/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        for name in ("dice", "iou"):
            self.log(f"{split}/{name}", self.scores[f"{split}_{name}"], on_step=False, on_epoch=True,
                     prog_bar=name == "dice" and split == "val", batch_size=len(y))
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer)}
