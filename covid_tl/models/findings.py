"""The LightningModule of task=pretrain: a backbone learning ChestX-ray14's 14 findings, saved
so that its checkpoint loads as `backbone.weights=<path>` in a transfer run."""
from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MultilabelAUROC
from torchmetrics.utilities import dim_zero_cat

from covid_tl.core.labels import NIH_FINDINGS


class FindingsAUROC(MultilabelAUROC):
    """AUROC per finding over every process's validation images; NaN where they hold one class."""

    def __init__(self) -> None:
        super().__init__(num_labels=len(NIH_FINDINGS), average=None)

    def compute(self) -> torch.Tensor:
        target = dim_zero_cat(self.target)  # all processes' targets: compute runs on synced states
        defined = (target == 1).any(0) & (target == 0).any(0)
        with warnings.catch_warnings():  # torchmetrics warns of each undefined finding; NaN says it
            warnings.filterwarnings("ignore", "No (positive|negative) samples")
            values = super().compute()
        return torch.where(defined, values, torch.nan)


class FindingsModule(pl.LightningModule):
    """Backbone plus a 14-way linear layer; BCE per finding, AUROC per finding.

    The network sits at `net` with its backbone at `net.features`, as in CovidClassifier, so
    a checkpoint of this module loads as `backbone.weights=<path>` in a transfer run.
    """

    def __init__(self, net: nn.Module, optimizer, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net", "optimizer"], logger=False)
        self.net = net
        spec = net.input_spec  # one blank image: the model summary then shows real FLOPs and tensor sizes
        self.example_input_array = torch.zeros(1, spec.channels, spec.size, spec.size)
        self.optimizer_factory = optimizer
        self.val_auroc = FindingsAUROC()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.head(self.net.features(x))

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.binary_cross_entropy_with_logits(self(x).float(), y)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        logits = self(x).float()
        self.log("val/loss", F.binary_cross_entropy_with_logits(logits, y), on_epoch=True, prog_bar=True, batch_size=len(y))
        self.val_auroc.update(torch.sigmoid(logits), y.long())

    def on_validation_epoch_end(self) -> None:
        """AUROC per finding where the validation images hold both classes; their mean."""
        if not self.val_auroc.update_called:
            return
        values = self.val_auroc.compute().tolist()
        self.val_auroc.reset()
        defined = {name: v for name, v in zip(NIH_FINDINGS, values) if not math.isnan(v)}
        self.log_dict({f"val/auroc/{k}": v for k, v in defined.items()})
        if defined:
            self.log("val/auroc", float(np.mean(list(defined.values()))), prog_bar=True)

    def configure_optimizers(self):
        return self.optimizer_factory([p for p in self.parameters() if p.requires_grad])
