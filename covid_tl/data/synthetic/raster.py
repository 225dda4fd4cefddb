"""Raster helpers: cv2 drawing at sub-pixel precision (fixed point) and Gaussian blurs."""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

SHIFT = 4  # sub-pixel bits for cv2 drawing
ONE = 1 << SHIFT


def fill(shape: tuple[int, int], polys: Sequence[np.ndarray], aa: bool = False) -> np.ndarray:
    """uint8 canvas with fixed-point polygons filled with 255."""
    canvas = np.zeros(shape, np.uint8)
    cv2.fillPoly(canvas, list(polys), 255, cv2.LINE_AA if aa else cv2.LINE_8, SHIFT)
    return canvas


def lines(shape: tuple[int, int], paths: Sequence[np.ndarray], thickness: int) -> np.ndarray:
    """float32 canvas in [0, 1] with anti-aliased fixed-point polylines."""
    canvas = np.zeros(shape, np.uint8)
    cv2.polylines(canvas, list(paths), False, 255, max(1, thickness), cv2.LINE_AA, SHIFT)
    return canvas.astype(np.float32) * (1.0 / 255.0)


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with sigma in pixels (no-op below a tenth of a pixel)."""
    if sigma < 0.1:
        return img
    return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


def wide_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """A wide Gaussian blur done at reduced resolution: same look, a fraction of the time."""
    factor = int(min(4, sigma // 2))
    h, w = img.shape
    if factor < 2 or min(h, w) < 8 * factor:
        return blur(img, sigma)
    small = cv2.resize(img, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_AREA)
    small = blur(small, sigma / factor)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int = 6) -> np.ndarray:
    """Low-frequency noise (about unit variance) for lung texture and patchy opacities."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
