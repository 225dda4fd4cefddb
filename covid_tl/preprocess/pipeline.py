"""Deterministic per-image preprocessing, built from `conf/preprocessing/<name>.yaml`.

Each step is a key of that config (null: skip the step), so a sweep can vary them one by one.
A result keeps the crop box, so heatmaps and masks can be mapped back onto the original image.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from covid_tl.errors import ConfigError

Box = tuple[int, int, int, int]  # y0, x0, y1, x1 in the original image


@dataclass(frozen=True)
class Prepared:
    """A preprocessed image and where it lies in the original (its crop box)."""

    image: np.ndarray
    box: Box


Preprocess = Callable[[np.ndarray], Prepared]


def identity(image: np.ndarray) -> Prepared:
    return Prepared(image, (0, 0, image.shape[0], image.shape[1]))


def build_preprocess(crop: Mapping[str, Any] | None = None, inpaint: Mapping[str, Any] | None = None) -> Preprocess:
    """The preprocessing the config describes; `identity` when every step is null."""
    if crop is None and inpaint is None:
        return identity
    raise ConfigError("border crop and mark inpainting are not available yet")
