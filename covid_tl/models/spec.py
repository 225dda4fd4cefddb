"""What a backbone is to the rest of covid-tl, and where its weights come from: shared types
at the bottom of `models`, so the registry (backbones.py) and the loaders (weights.py) both
import them and not each other."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from covid_tl.preprocess.model_input import InputSpec

StateDict = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class WeightSource:
    """A named place weights come from: `fetch()` returns a state dict in the backbone's layout."""

    description: str
    fetch: Callable[[], StateDict]


Unit = tuple[str, ...]


@dataclass
class Backbone:
    """A feature extractor with what the rest of covid-tl needs to know about it.

    Names in `cam_layer`, `units`, `fc_layers` and `ignore_keys` are dotted paths inside
    `features` (a module, or a parameter held directly by a module, as in ViT's cls_token).
    """

    name: str
    features: nn.Module
    num_features: int
    input_spec: InputSpec
    cam_layer: str | None  # None where no spatial layer exists
    #: The trainable units from the input to the output (VGG: conv layers; timm models: the
    #: layer groups of timm's `group_matcher`, i.e. stem, blocks, head conv). Together they
    #: cover every parameter of `features` except the kept FC layers.
    units: tuple[Unit, ...] = ()
    #: The pretrained fully connected layers kept on top of the conv base, in order.
    fc_layers: tuple[str, ...] = ()
    #: Named weight sources besides `none` and a file path (e.g. `imagenet`).
    sources: Mapping[str, WeightSource] = field(default_factory=dict)
    #: Keys of a full pretrained state dict that `features` leaves out on purpose (the
    #: ImageNet classifier, FC layers not kept); a loaded state dict may carry them.
    ignore_keys: tuple[str, ...] = ()
