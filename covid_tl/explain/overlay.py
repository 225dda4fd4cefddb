"""Heatmap pictures: pure numpy/OpenCV, image and CAM in, RGB uint8 out."""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def blend(image: np.ndarray, cam: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """Transparent superposition of a JET-coloured CAM on a grayscale image.

    Unlike multiplying the image by the heatmap, dark lungs stay visible under the colour.
    """
    if image.shape != cam.shape:
        cam = cv2.resize(cam.astype(np.float32), (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    heat = cv2.applyColorMap(np.uint8(np.clip(cam, 0, 1) * 255), cv2.COLORMAP_JET)[:, :, ::-1]
    gray = np.repeat(image[:, :, None], 3, axis=2).astype(np.float32)
    return np.uint8(np.clip((1 - alpha) * gray + alpha * heat, 0, 255))


def labelled(tile: np.ndarray, lines: Sequence[str], scale: float = 0.4) -> np.ndarray:
    """The tile with a black caption band above it (one row per line)."""
    height = int(16 * scale / 0.4)
    band = np.zeros((height * len(lines), tile.shape[1], 3), np.uint8)
    for i, text in enumerate(lines):
        cv2.putText(band, text, (2, height * (i + 1) - 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return np.vstack([band, tile])


def grid(tiles: Sequence[np.ndarray], columns: int = 4, pad: int = 4) -> np.ndarray:
    """Tiles of equal size in rows of `columns`, on black."""
    if not tiles:
        raise ValueError("no tiles to put in a grid")
    h, w = tiles[0].shape[:2]
    rows = -(-len(tiles) // columns)
    canvas = np.zeros((rows * (h + pad) + pad, min(columns, len(tiles)) * (w + pad) + pad, 3), np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        canvas[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = tile
    return canvas
