"""Turn an 8-bit grayscale X-ray into what a backbone expects (its InputSpec).

The spec lives here, beside the code that obeys it, so data pipelines follow the backbone
(which declares it) without importing the models.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class InputSpec:
    """Square input size, channel count and per-channel normalisation of a backbone."""

    size: int
    channels: int = 1
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.25,)

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ValueError(f"input size must be at least 8 pixels, got {self.size}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        for name in ("mean", "std"):
            values = tuple(float(v) for v in getattr(self, name))
            if len(values) == 1:
                values = values * self.channels
            if len(values) != self.channels:
                raise ValueError(f"{name} has {len(values)} values for {self.channels} channel(s)")
            object.__setattr__(self, name, values)
        if min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {self.std}")



def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W) -> uint8 (size, size).

    Area interpolation when shrinking keeps thin structures (and burned-in text) as the
    radiograph has them instead of aliasing them away.
    """
    if image.ndim != 2:
        raise ValueError(f"expected a single-channel (H, W) image, got shape {image.shape}")
    shrinking = image.shape[0] > size or image.shape[1] > size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def normalize(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """uint8 (H, W) -> float32 (C, H, W): scaled to [0, 1], channels repeated, normalised."""
    scaled = image.astype(np.float32) / 255.0
    mean = np.asarray(spec.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(spec.std, dtype=np.float32)[:, None, None]
    return (np.broadcast_to(scaled, (spec.channels, *image.shape)) - mean) / std


def to_model_input(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """uint8 (H, W) -> float32 (C, size, size), what the backbone is fed at evaluation."""
    return normalize(resize_square(image, spec.size), spec)
