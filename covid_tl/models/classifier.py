"""Backbone features plus a new head that ends in one COVID-19 logit."""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from covid_tl.models.spec import Backbone
from covid_tl.models.backbones import build_backbone
from covid_tl.models.weights import load_weights


class Head(nn.Sequential):
    """Fully connected layers down to a single logit (the study's head: FC layers, one output)."""

    def __init__(self, in_features: int, hidden: Sequence[int] = (64,), dropout: float = 0.0) -> None:
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"head dropout must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = []
        width = in_features
        for units in hidden:
            layers += [nn.Linear(width, int(units)), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = int(units)
        layers.append(nn.Linear(width, 1))
        super().__init__(*layers)


class Classifier(nn.Module):
    """Image batch (N, C, H, W) to COVID-19 logits (N,).

    Carries what freezing and Grad-CAM need from the backbone (units, kept FC layers, CAM
    layer). BatchNorm modules named in `frozen_norms` (set by `apply_freeze`) stay in eval
    mode, keeping their running statistics, whenever the model is put in train mode; this is
    done in `train()`, which Lightning calls through the LightningModule.
    """

    def __init__(self, backbone: Backbone, head: Head) -> None:
        super().__init__()
        self.backbone_name = backbone.name
        self.input_spec = backbone.input_spec
        self.cam_layer = backbone.cam_layer
        self.units = backbone.units
        self.fc_layers = backbone.fc_layers
        self.keep_fc = len(backbone.fc_layers)
        self.features = backbone.features
        self.head = head
        self.frozen_norms: tuple[str, ...] = ()
        #: Logits are divided by it: 1 while training; a checkpoint's fitted temperature
        #: (covid_tl.stats.calibration) once loaded, so every probability computed from it is calibrated.
        self.temperature = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_logits(self.features(x))

    def head_logits(self, features: torch.Tensor) -> torch.Tensor:
        """COVID-19 logits (N,) of backbone features (what the frozen fast path trains on)."""
        logits = self.head(features).squeeze(1)
        return logits if self.temperature == 1.0 else logits / self.temperature

    def freeze_norms(self, names: Iterable[str]) -> None:
        """Keep these BatchNorm modules (dotted paths inside `features`) in eval mode from now on."""
        self.frozen_norms = tuple(names)
        for name in self.frozen_norms:
            self.features.get_submodule(name)  # fail now on a wrong name, not at the next train()
        self.train(self.training)

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        if mode:
            for name in self.frozen_norms:
                self.features.get_submodule(name).eval()
        return self


def build_classifier(
    backbone_cfg: Mapping[str, Any], keep_fc: int | None = None, load_pretrained: bool = True
) -> Classifier:
    """The classifier a `backbone` config describes: `name` (a builder in backbones.py), the
    builder's options, `keep_fc`, `weights` (`trust_weights`: let a weights file unpickle any
    object), `head`.

    `keep_fc` (the argument, else the config's, else 0) is how many pretrained FC layers of
    the backbone stay under the new head. `load_pretrained=False` skips `weights` (the caller
    loads a checkpoint over the whole model anyway, so nothing is downloaded).
    """
    options = dict(backbone_cfg)
    name = options.pop("name")
    head_options = dict(options.pop("head", None) or {})
    weights: str | os.PathLike | None = options.pop("weights", None)
    configured_fc = options.pop("keep_fc", None)
    keep_fc = keep_fc if keep_fc is not None else configured_fc
    trust_weights = bool(options.pop("trust_weights", False))
    backbone = build_backbone(name, keep_fc=int(keep_fc or 0), **options)
    if load_pretrained:
        load_weights(backbone, weights, trust_weights)
    return Classifier(backbone, Head(backbone.num_features, **head_options))
