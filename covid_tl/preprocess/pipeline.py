"""Deterministic per-image preprocessing chosen by `conf/preprocessing/<name>.yaml`.

So far only `none` exists; border cropping and mark inpainting will join it as further names.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from covid_tl.errors import ConfigError

Preprocess = Callable[[np.ndarray], np.ndarray]

PREPROCESSINGS = ("none",)


def identity(image: np.ndarray) -> np.ndarray:
    return image


def build_preprocess(name: str = "none") -> Preprocess:
    if name not in PREPROCESSINGS:
        raise ConfigError(f"unknown preprocessing {name!r}; valid: {', '.join(PREPROCESSINGS)}")
    return identity
