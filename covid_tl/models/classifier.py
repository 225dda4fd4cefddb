"""Backbone features plus a new head that ends in one COVID-19 logit."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from covid_tl.models.backbones import Backbone, build_backbone


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
    """Image batch (N, C, H, W) to COVID-19 logits (N,)."""

    def __init__(self, backbone: Backbone, head: Head) -> None:
        super().__init__()
        self.backbone_name = backbone.name
        self.input_spec = backbone.input_spec
        self.cam_layer = backbone.cam_layer
        self.features = backbone.features
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(1)


def build_classifier(backbone_cfg: Mapping[str, Any]) -> Classifier:
    """The classifier a `backbone` config describes: `name`, the builder's options, `head`."""
    options = dict(backbone_cfg)
    name = options.pop("name")
    head_options = dict(options.pop("head", None) or {})
    backbone = build_backbone(name, **options)
    return Classifier(backbone, Head(backbone.num_features, **head_options))
