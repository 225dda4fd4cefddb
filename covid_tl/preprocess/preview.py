"""Preview panels: the original with the crop box (green), the marks the detector finds (red),
and the image as the model will get it (before resizing). `python -m covid_tl.tasks.preview`
draws them for a sample of a data config.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from covid_tl.grid import column_headers, grid, labelled, legend
from covid_tl.preprocess.pipeline import Prepared

TILE = 192
COLUMNS = ("original + crop box", "detected marks", "model input")
KEY = [((0, 255, 0), "crop box (the model sees what is inside)"), ((255, 0, 0), "burned-in marks the detector finds")]


def _fit(image: np.ndarray, tile: int = TILE) -> np.ndarray:
    """RGB image letterboxed into a tile x tile square."""
    h, w = image.shape[:2]
    scale = tile / max(h, w)
    resized = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((tile, tile, 3), np.uint8)
    y, x = (tile - resized.shape[0]) // 2, (tile - resized.shape[1]) // 2
    canvas[y : y + resized.shape[0], x : x + resized.shape[1]] = resized
    return canvas


def panels(original: np.ndarray, prepared: Prepared, marks: np.ndarray | None) -> list[np.ndarray]:
    """[original with crop box, marks in red, result] as RGB tiles."""
    rgb = np.repeat(original[:, :, None], 3, axis=2)
    boxed = rgb.copy()
    y0, x0, y1, x1 = prepared.box
    thickness = max(1, min(original.shape) // 150)
    cv2.rectangle(boxed, (x0, y0), (x1 - 1, y1 - 1), (0, 255, 0), thickness)
    marked = rgb.copy()
    if marks is not None:
        grown = cv2.dilate(marks.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=thickness) > 0
        marked[grown] = (255, 0, 0)
    result = np.repeat(prepared.image[:, :, None], 3, axis=2)
    return [_fit(boxed), _fit(marked), _fit(result)]


def preview_grid(rows: Sequence[list[np.ndarray]], captions: Sequence[str], per_row: int = 2) -> np.ndarray:
    """Triplets of panels, `per_row` images per grid row, each captioned; a header names the
    three columns and a legend the colours."""
    triplets = [labelled(np.hstack(p), [c], 0.45) for p, c in zip(rows, captions)]
    header = column_headers(COLUMNS, rows[0][0].shape[1], 0.5)
    headers = grid([header] * min(per_row, len(triplets)), columns=per_row)
    body = grid(triplets, columns=per_row)
    return np.vstack([headers[:-4], body, legend(KEY, body.shape[1], 0.5)])  # one pad between header and body
