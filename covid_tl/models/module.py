"""The LightningModule: binary COVID-19 classifier with per-split metrics."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics.classification import BinaryConfusionMatrix

from covid_tl.data.manifest import LABELS
from covid_tl.metrics import metric_collection
from covid_tl.models.classifier import Classifier

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]


class CovidClassifier(pl.LightningModule):
    """Trains a `Classifier`; logs loss and metrics as `<split>/<metric>` once per epoch.

    `config` is the composed run config; it travels inside every checkpoint so that evaluate.py
    and explain.py rebuild the same model, input spec and data without being told.
    """

    def __init__(
        self,
        net: Classifier,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        threshold: float = 0.5,
        config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.threshold = threshold
        # Separate attributes, not a ModuleDict: "train" would clash with Module.train().
        self.train_metrics = metric_collection(threshold)
        self.val_metrics = metric_collection(threshold)
        self.test_metrics = metric_collection(threshold)
        self.test_confusion = BinaryConfusionMatrix(threshold=threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _shared_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        images, targets = batch
        logits = self(images)
        loss = F.binary_cross_entropy_with_logits(logits.float(), targets.float())
        probabilities = torch.sigmoid(logits.detach().float())
        metrics = getattr(self, f"{stage}_metrics")
        metrics.update(probabilities, targets)
        if stage == "test":
            self.test_confusion.update(probabilities, targets)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(targets))
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        return torch.sigmoid(self(images).float())

    def _log_epoch_metrics(self, stage: str) -> None:
        metrics = getattr(self, f"{stage}_metrics")
        values = metrics.compute()
        metrics.reset()
        self.log_dict({f"{stage}/{name}": value for name, value in values.items()}, prog_bar=stage == "val")

    def on_train_epoch_end(self) -> None:
        self._log_epoch_metrics("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics("test")
        matrix = self.test_confusion.compute()
        self.test_confusion.reset()
        # Named cells, so a metrics.csv reader never has to guess the layout.
        for t, true_label in enumerate(LABELS):
            for p, predicted_label in enumerate(LABELS):
                self.log(f"test/confusion/{true_label}_as_{predicted_label}", matrix[t, p].float())

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params)
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "epoch"}}
