"""The LightningModule: binary COVID-19 classifier with per-split metrics, each logged beside
the cut its calls were made at (`<split>/threshold`)."""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from covid_tl.core.labels import LABELS
from covid_tl.core.errors import ConfigError
from covid_tl.stats.metrics import METRICS, summarize
from covid_tl.models.classifier import Classifier
from covid_tl.stats.operating_point import choose_threshold, is_rule

log = logging.getLogger(__name__)

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]


class CovidClassifier(pl.LightningModule):
    """Trains a `Classifier`; logs loss and metrics as `<split>/<metric>` once per epoch.

    `config` is the composed run config; it travels inside every checkpoint so that evaluate.py
    and explain.py rebuild the same model, input spec and data without being told.

    Training options (each one a config key):
      `backbone_lr_scale`: learning rate of the trainable backbone parameters relative to the
        head's (two optimizer param groups, `head` and `backbone`; 1.0: one group).
      `pos_weight`: BCE weight of the COVID-19 class: null (none), a number, or `balanced`
        (no-finding / COVID-19 count of the training split, read from the datamodule).
      `channels_last`: channels_last memory format for model and batches when on CUDA.
      `compile`: `torch.compile` the network for training (off by default).
    Gradient clipping is the Trainer's (`trainer.gradient_clip_val`).

    Rates are called at `threshold`; when the run's `threshold` (in `config`) is a rule, each
    validation epoch is called at the cut the rule gives on that epoch's validation predictions
    (what the final operating point does with the best checkpoint), and the training rates at
    the latest such cut. `<split>/threshold` logs the cut of every epoch's rates.
    """

    def __init__(
        self,
        net: Classifier,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        threshold: float = 0.5,
        config: dict[str, Any] | None = None,
        backbone_lr_scale: float = 1.0,
        pos_weight: float | str | None = None,
        channels_last: bool = True,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        if not backbone_lr_scale > 0:
            raise ConfigError(f"backbone_lr_scale must be positive (freeze layers instead), got {backbone_lr_scale}")
        if isinstance(pos_weight, str) and pos_weight != "balanced":
            raise ConfigError(f"pos_weight must be null, a positive number or 'balanced', got {pos_weight!r}")
        if isinstance(pos_weight, (int, float)) and not pos_weight > 0:
            raise ConfigError(f"pos_weight must be positive, got {pos_weight}")
        self.net = net
        if not compile:  # one blank image: the model summary then shows real FLOPs and tensor sizes
            spec = net.input_spec
            self.example_input_array = torch.zeros(1, spec.channels, spec.size, spec.size)
        self.head_only = False  # set by training for the frozen fast path (covid_tl.data.frozen_features)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.backbone_lr_scale = float(backbone_lr_scale)
        self.pos_weight_option = pos_weight
        self.pos_weight: torch.Tensor | None = None if pos_weight in (None, "balanced") else torch.tensor(float(pos_weight))
        self.channels_last = channels_last
        self.compile_net = compile
        self._memory_format_done = False
        # Separate attributes, not a ModuleDict: "train" would clash with Module.train().
        self.train_metrics = EpochCalls(threshold)
        self.val_metrics = EpochCalls(threshold, run_rule(config))
        self.use_threshold(threshold)  # self.threshold, and the test metrics at it

    def use_threshold(self, threshold: float) -> None:
        """Call (and log test metrics) at `threshold` from now on: the one chosen after training."""
        self.threshold = threshold
        self.test_metrics = EpochCalls(threshold).to(self.device)

    def validation_cut(self) -> tuple[float, str | None]:
        """The cut this validation epoch's calls are made at, and the rule that chose it on the
        epoch's validation predictions (None: a fixed number, or a rule lacking a class there).
        Every process must call it: under DDP it gathers the predictions (once; the epoch's
        log reuses them)."""
        self.val_metrics.compute()
        return self.val_metrics.cut, self.val_metrics.rule if self.val_metrics.chosen else None

    # --- setup ---------------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.compile_net and self.net._compiled_call_impl is None:
            self.net.compile()  # in place: state dict keys stay net.* for checkpoints

    def on_fit_start(self) -> None:
        if self.pos_weight_option == "balanced":
            datamodule = getattr(self.trainer, "datamodule", None)
            if datamodule is None or not hasattr(datamodule, "subset"):
                raise ConfigError("pos_weight=balanced needs a datamodule with a training split")
            self.pos_weight = balanced_pos_weight(datamodule.subset("train").targets)
            log.info("pos_weight (no-finding/COVID-19 in train): %.3f", float(self.pos_weight))
        self._use_memory_format()

    def on_validation_start(self) -> None:
        self._use_memory_format()

    def on_test_start(self) -> None:
        self._use_memory_format()

    @property
    def uses_channels_last(self) -> bool:
        return self.channels_last and self.device.type == "cuda"

    def _use_memory_format(self) -> None:
        if self.uses_channels_last and not self._memory_format_done:
            self.net.to(memory_format=torch.channels_last)
            self._memory_format_done = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and self.uses_channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def _shared_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        inputs, targets = batch
        # The frozen fast path feeds precomputed backbone features straight to the head.
        logits = self.net.head_logits(inputs) if self.head_only else self(inputs)
        pos_weight = None if self.pos_weight is None else self.pos_weight.to(logits.device)
        loss = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), pos_weight=pos_weight)
        probabilities = torch.sigmoid(logits.detach().float())
        metrics = getattr(self, f"{stage}_metrics")
        metrics.update(probabilities, targets)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(targets))
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def _log_epoch_metrics(self, stage: str) -> EpochCalls:
        metrics = getattr(self, f"{stage}_metrics")
        values = metrics.compute()
        metrics.reset()
        # torchmetrics has already gathered every process's predictions under DDP. (sync_dist=True
        # on top of that deadlocked a 2-process gloo run here, so Lightning's reminder is silenced.)
        self.log_dict({f"{stage}/{name}": value for name, value in values.items()}, prog_bar=stage == "val")
        self.log(f"{stage}/threshold", metrics.cut)
        return metrics

    def on_train_epoch_end(self) -> None:
        self._log_epoch_metrics("train")

    def on_validation_epoch_end(self) -> None:
        metrics = self._log_epoch_metrics("val")
        if not self.trainer.sanity_checking:  # training rates follow the latest validation cut
            self.train_metrics.threshold = metrics.cut

    def on_test_epoch_end(self) -> None:
        matrix = self._log_epoch_metrics("test").summary.get("confusion_matrix", {}).get("matrix")
        if matrix is None:
            return
        # Named cells, so a metrics.csv reader never has to guess the layout.
        for t, true_label in enumerate(LABELS):
            for p, predicted_label in enumerate(LABELS):
                self.log(f"test/confusion/{true_label}_as_{predicted_label}", float(matrix[t][p]))

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Trainable parameters as optimizer groups: `head` (and `backbone` if its lr differs)."""
        head = [p for p in self.net.head.parameters() if p.requires_grad]
        head_ids = {id(p) for p in self.net.head.parameters()}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in head_ids]
        if self.backbone_lr_scale == 1.0:
            return [{"params": head + rest, "name": "all"}]
        groups = [{"params": head, "name": "head"}, {"params": rest, "name": "backbone"}]
        return [g for g in groups if g["params"]]

    def configure_optimizers(self):
        groups = self.parameter_groups()
        optimizer = self.optimizer_factory(groups)
        for group in optimizer.param_groups:
            if group.get("name") == "backbone":
                group["lr"] *= self.backbone_lr_scale
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        config = {"scheduler": scheduler, "interval": "epoch"}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config["monitor"] = "val/loss"
        return {"optimizer": optimizer, "lr_scheduler": config}


def run_rule(config: dict[str, Any] | None) -> str | None:
    """The run's threshold rule (`youden`, `sens@X`, `spec@X`) from its config; None for a number."""
    value = (config or {}).get("threshold")
    return value if value is not None and is_rule(value) else None


class EpochCalls(Metric):
    """A split's predictions over one epoch (gathered across processes) and their rates at a cut
    known only once they are all in: the cut `rule` (youden, sens@X, spec@X) gives on them, else
    `threshold`. compute() gives METRICS by metrics.summarize, the definitions of results.json
    (COVID-19 at p >= cut; a rate the split cannot define is left out); `cut` then holds the cut
    they were called at, `summary` the rest (confusion matrix)."""

    full_state_update = False

    def __init__(self, threshold: float = 0.5, rule: str | None = None) -> None:
        super().__init__()
        self.threshold, self.rule = float(threshold), rule
        self.cut, self.chosen, self.summary = self.threshold, False, {}
        self.add_state("probabilities", default=[], dist_reduce_fx="cat")
        self.add_state("targets", default=[], dist_reduce_fx="cat")

    def update(self, probabilities: torch.Tensor, targets: torch.Tensor) -> None:
        self.probabilities.append(probabilities.detach().float().flatten())
        self.targets.append(targets.detach().long().flatten())

    def compute(self) -> dict[str, float]:
        if isinstance(self.probabilities, list) and not self.probabilities:
            self.cut, self.chosen, self.summary = self.threshold, False, {}
            return {}
        probabilities = dim_zero_cat(self.probabilities).cpu().double().numpy()
        targets = dim_zero_cat(self.targets).cpu().numpy()
        # The rule needs both classes (a sanity check's two batches may hold one): else `threshold`.
        self.chosen = self.rule is not None and len(set(targets.tolist())) == 2
        self.cut = choose_threshold(self.rule, probabilities, targets) if self.chosen else self.threshold
        self.summary = summarize(targets, probabilities, self.cut)
        return {name: float(self.summary[name]) for name in METRICS if self.summary[name] is not None}


def balanced_pos_weight(targets) -> torch.Tensor:
    """no-finding count / COVID-19 count: each class then weighs as much in the loss."""
    targets = torch.as_tensor(targets)
    positives = int((targets == 1).sum())
    negatives = int((targets == 0).sum())
    if positives == 0 or negatives == 0:
        raise ConfigError(f"pos_weight=balanced needs both classes in train, got {negatives} no-finding, {positives} COVID-19")
    return torch.tensor(negatives / positives)
