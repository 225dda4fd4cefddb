"""Backbone registry: a name in `conf/backbone/` maps to a function that builds the features.

Each entry knows its feature extractor, the size of the feature vector it emits, the input it
expects and the layer Grad-CAM should look at, so the rest of the code never special-cases a
backbone. Options of a builder are exactly the keys of its config file.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from covid_tl.models.simple import SimpleCNNFeatures, SimpleFCFeatures
from covid_tl.models.spec import InputSpec


@dataclass
class Backbone:
    """A feature extractor with what the rest of covid-tl needs to know about it."""

    name: str
    features: nn.Module
    num_features: int
    input_spec: InputSpec
    cam_layer: str | None  # dotted path inside `features`; None where no spatial layer exists


BACKBONES: dict[str, Callable[..., Backbone]] = {}


def register(name: str) -> Callable[[Callable[..., Backbone]], Callable[..., Backbone]]:
    def decorate(builder: Callable[..., Backbone]) -> Callable[..., Backbone]:
        BACKBONES[name] = builder
        return builder

    return decorate


class UnknownBackboneError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def build_backbone(name: str, **options) -> Backbone:
    """The backbone registered under `name`, built with its config options."""
    try:
        builder = BACKBONES[name]
    except KeyError:
        raise UnknownBackboneError(
            f"unknown backbone {name!r}; valid backbones: {', '.join(sorted(BACKBONES))}"
        ) from None
    return builder(**options)


@register("simple_fc")
def simple_fc(input_size: int = 64, channels: int = 1) -> Backbone:
    features = SimpleFCFeatures(channels, input_size)
    return Backbone("simple_fc", features, features.num_features, InputSpec(input_size, channels), None)


@register("simple_cnn")
def simple_cnn(
    input_size: int = 64, channels: int = 1, conv_channels: int = 16, kernel_size: int = 3, pool: int = 2
) -> Backbone:
    features = SimpleCNNFeatures(channels, input_size, conv_channels, kernel_size, pool)
    return Backbone("simple_cnn", features, features.num_features, InputSpec(input_size, channels), "conv")
