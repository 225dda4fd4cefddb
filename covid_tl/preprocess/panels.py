"""Preview panels: the original with the crop box (green), the marks the detector finds (red),
with preprocessing=lungs the lung mask (blue, with the lung box) and the lung crop before
standardising, and the model input: the prepared image resized to the backbone's square, as
the model gets it (before augmentation and normalisation).
`python -m covid_tl.tasks.preview` draws them for a sample of a data config.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from covid_tl.reporting.grid import column_headers, grid, labelled, legend, wrapped
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


def _square(image: np.ndarray, tile: int = TILE) -> np.ndarray:
    """A square model input filling the tile (enlarged by nearest neighbour, so its pixels show)."""
    shrinking = image.shape[0] > tile
    shown = cv2.resize(image, (tile, tile), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_NEAREST)
    return np.repeat(shown[:, :, None], 3, axis=2)


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


def panels(original: np.ndarray, prepared: Prepared, marks: np.ndarray | None, model_input: np.ndarray,
           lungs: list[np.ndarray] | None = None) -> list[np.ndarray]:
    """[original with crop box, marks in red, (lung panels,) model input] as RGB tiles; the
    originals keep their aspect ratio, the model input (square, uint8) fills its tile, so a
    wide film shows squeezed as the model gets it."""
    if model_input.ndim != 2 or model_input.shape[0] != model_input.shape[1]:
        raise ValueError(f"the model input is a square grayscale image, got shape {model_input.shape}")
    rgb = np.repeat(original[:, :, None], 3, axis=2)
    boxed = rgb.copy()
    y0, x0, y1, x1 = prepared.box
    thickness = max(1, min(original.shape) // 150)
    cv2.rectangle(boxed, (x0, y0), (x1 - 1, y1 - 1), (0, 255, 0), thickness)
    marked = rgb.copy()
    if marks is not None:
        grown = cv2.dilate(marks.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=thickness) > 0
        marked[grown] = (255, 0, 0)
    return [_fit(boxed), _fit(marked), *(lungs or []), _square(model_input)]


def caption_lines(captions: Sequence[str], width: int, scale: float) -> list[list[str]]:
    """Each caption whole, wrapped to `width` pixels, all padded to as many lines as the longest:
    the panels of one grid row then start at one height."""
    lines = [wrapped(c, width, scale) for c in captions]
    most = max(len(ls) for ls in lines)
    return [ls + [""] * (most - len(ls)) for ls in lines]


def preview_grid(rows: Sequence[list[np.ndarray]], captions: Sequence[str], per_row: int = 2,
                 input_size: int | None = None) -> np.ndarray:
    """Rows of panels, `per_row` images per grid row, each under its whole caption; a header
    names the columns (three, or five with the lung panels; the model input's with its size
    in pixels) and a legend the colours."""
    lungs = len(rows[0]) == len(LUNG_COLUMNS)
    width = sum(panel.shape[1] for panel in rows[0])
    triplets = [labelled(np.hstack(p), lines, 0.45) for p, lines in zip(rows, caption_lines(captions, width, 0.45))]
    names = list(LUNG_COLUMNS if lungs else COLUMNS)
    if input_size:
        names[-1] = f"{names[-1]} {input_size}x{input_size}"
    header = column_headers(names, rows[0][0].shape[1], 0.5)
    headers = grid([header] * min(per_row, len(triplets)), columns=per_row)
    body = grid(triplets, columns=per_row)
    return np.vstack([headers[:-4], body, legend(KEY + (LUNG_KEY if lungs else []), body.shape[1], 0.5)])  # one pad between header and body
