"""Turn an 8-bit grayscale X-ray into what a backbone expects (its InputSpec)."""
from __future__ import annotations

import cv2
import numpy as np

from covid_tl.models.spec import InputSpec


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
