"""Deterministic per-image preprocessing, built from `conf/preprocessing/<name>.yaml`.

Each step is a key of that config (null: skip the step), so a sweep can vary them one by one.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from covid_tl.errors import ConfigError

Preprocess = Callable[[np.ndarray], np.ndarray]


def identity(image: np.ndarray) -> np.ndarray:
    return image


def build_preprocess(crop: Mapping[str, Any] | None = None, inpaint: Mapping[str, Any] | None = None) -> Preprocess:
    """The preprocessing the config describes; `identity` when every step is null."""
    if crop is None and inpaint is None:
        return identity
    raise ConfigError("border crop and mark inpainting are not available yet")
