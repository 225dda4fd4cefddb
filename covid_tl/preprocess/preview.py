"""Preview panels: the original with the crop box (green), the marks the detector finds (red),
with preprocessing=lungs the lung mask (blue, with the lung box) and the lung crop before
standardising, and the image as the model will get it (before resizing).
`python -m covid_tl.tasks.preview` draws them for a sample of a data config.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from covid_tl.grid import column_headers, grid, labelled, legend
from covid_tl.preprocess.lungs import LungField
from covid_tl.preprocess.pipeline import Prepared

TILE = 192
COLUMNS = ("original + crop box", "detected marks", "model input")
LUNG_COLUMNS = ("original + crop box", "detected marks", "lung mask", "lung crop", "model input")
KEY = [((0, 255, 0), "crop box (the model sees what is inside)"), ((255, 0, 0), "burned-in marks the detector finds")]
LUNG_KEY = [((0, 128, 255), "lung mask (red box: refused, whole image used)")]


def _fit(image: np.ndarray, tile: int = TILE) -> np.ndarray:
    """RGB image letterboxed into a tile x tile square."""
    h, w = image.shape[:2]
    scale = tile / max(h, w)
    resized = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((tile, tile, 3), np.uint8)
    y, x = (tile - resized.shape[0]) // 2, (tile - resized.shape[1]) // 2
    canvas[y : y + resized.shape[0], x : x + resized.shape[1]] = resized
    return canvas


def lung_panels(base: np.ndarray, field: LungField) -> list[np.ndarray]:
    """[the segmented image with the mask in blue and the lung box, the crop before standardising]."""
    shown = np.repeat(base[:, :, None], 3, axis=2)
    y0, x0, y1, x1 = field.box
    full = np.zeros(base.shape, bool)
    full[y0:y1, x0:x1] = field.mask
    if not field.fallback:
        shown[full] = (0.5 * shown[full] + 0.5 * np.array((0, 128, 255))).astype(np.uint8)
    thickness = max(1, min(base.shape) // 150)
    cv2.rectangle(shown, (x0, y0), (x1 - 1, y1 - 1), (255, 0, 0) if field.fallback else (0, 128, 255), thickness)
    return [_fit(shown), _fit(np.repeat(field.crop[:, :, None], 3, axis=2))]


def panels(original: np.ndarray, prepared: Prepared, marks: np.ndarray | None,
           lungs: list[np.ndarray] | None = None) -> list[np.ndarray]:
    """[original with crop box, marks in red, (lung panels,) result] as RGB tiles."""
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
    return [_fit(boxed), _fit(marked), *(lungs or []), _fit(result)]


def preview_grid(rows: Sequence[list[np.ndarray]], captions: Sequence[str], per_row: int = 2) -> np.ndarray:
    """Rows of panels, `per_row` images per grid row, each captioned; a header names the
    columns (three, or five with the lung panels) and a legend the colours."""
    lungs = len(rows[0]) == len(LUNG_COLUMNS)
    triplets = [labelled(np.hstack(p), [c], 0.45) for p, c in zip(rows, captions)]
    header = column_headers(LUNG_COLUMNS if lungs else COLUMNS, rows[0][0].shape[1], 0.5)
    headers = grid([header] * min(per_row, len(triplets)), columns=per_row)
    body = grid(triplets, columns=per_row)
    return np.vstack([headers[:-4], body, legend(KEY + (LUNG_KEY if lungs else []), body.shape[1], 0.5)])  # one pad between header and body
