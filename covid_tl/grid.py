"""Pictures made of tiles, pure numpy/OpenCV: one caption band and one grid for every layer
(phantom previews, preprocessing previews, Grad-CAM overlays)."""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def labelled(tile: np.ndarray, lines: Sequence[str], scale: float = 0.4,
             colour: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """The tile with a black caption band above it (one row per line)."""
    height = int(16 * scale / 0.4)
    band = np.zeros((height * len(lines), tile.shape[1], 3), np.uint8)
    for i, text in enumerate(lines):
        cv2.putText(band, text, (2, height * (i + 1) - 4), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)
    return np.vstack([band, tile])


def grid(tiles: Sequence[np.ndarray], columns: int = 4, pad: int = 4, fill: int = 0) -> np.ndarray:
    """Colour tiles in rows of `columns`, each in a cell the size of the largest, on grey `fill`."""
    if not tiles:
        raise ValueError("no tiles to put in a grid")
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    rows = -(-len(tiles) // columns)
    canvas = np.full((rows * (h + pad) + pad, min(columns, len(tiles)) * (w + pad) + pad, 3), fill, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        canvas[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
    return canvas
