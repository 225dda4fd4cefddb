"""Turn an 8-bit grayscale X-ray into what a backbone expects (its InputSpec)."""
from __future__ import annotations

import cv2
import numpy as np

from covid_tl.models.spec import InputSpec


def to_model_input(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """uint8 (H, W) -> float32 (C, size, size), resized, scaled to [0, 1], normalised.

    Area interpolation when shrinking keeps thin structures (and burned-in text) as the
    radiograph has them instead of aliasing them away.
    """
    if image.ndim != 2:
        raise ValueError(f"expected a single-channel (H, W) image, got shape {image.shape}")
    height, width = image.shape
    shrinking = height > spec.size or width > spec.size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    resized = cv2.resize(image, (spec.size, spec.size), interpolation=interpolation)
    scaled = resized.astype(np.float32) / 255.0
    mean = np.asarray(spec.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(spec.std, dtype=np.float32)[:, None, None]
    return (np.broadcast_to(scaled, (spec.channels, spec.size, spec.size)) - mean) / std
