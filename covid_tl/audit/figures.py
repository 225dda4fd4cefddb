"""audit_examples.png: a few films of each class as the model saw them, and as it saw them
under each intervention, with its call before and after (a changed call in red)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from covid_tl.core.labels import DISPLAY, LABELS
from covid_tl.preprocess.model_input import resize_square
from covid_tl.reporting.grid import WHITE, column_headers, grid, labelled, legend, wrapped

CHANGED, KEPT, OUTLINE = (235, 70, 60), (255, 255, 255), (60, 200, 90)


def _tile(image: np.ndarray, size: int, lungs: np.ndarray | None = None) -> np.ndarray:
    """A uint8 film as an RGB tile of `size` px a side, the lung outline drawn where given."""
    tile = cv2.cvtColor(resize_square(image, size), cv2.COLOR_GRAY2RGB)
    if lungs is not None and lungs.any():
        mask = cv2.resize(lungs.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(tile, contours, -1, OUTLINE, 1)
    return tile


def _call(p: float, threshold: float) -> str:
    return DISPLAY[LABELS[int(p >= threshold)]]


def example_figure(rows: Sequence[Mapping], columns: Sequence[str], threshold: float, title: str,
                   size: int = 192, same_model: bool = True) -> np.ndarray:
    """rows: one per film, {"label", "images": {column: uint8 image}, "p": {column: probability},
    "lungs": bool mask on the first column's grid or None, "set": its set's name or None}; the
    first column is the film as seen.
    `same_model`: one model's p in every column (its call before and after); else each column's
    p comes from a model of its own (mode=data's probes), shown alone."""
    tiles = []
    for row in rows:
        first = columns[0]
        for column in columns:
            if column not in row["images"]:
                tiles.append(labelled(np.zeros((size, size, 3), np.uint8), ["not run", ""]))
                continue
            p = float(row["p"][column])
            tile = _tile(row["images"][column], size, row.get("lungs") if column == first else None)
            if column == first or not same_model:
                lines = [f"true: {DISPLAY[row['label']]}", f"p={p:.3f} {_call(p, threshold)}"]
                colours = [WHITE, WHITE]
            else:
                before = float(row["p"][first])
                changed = _call(p, threshold) != _call(before, threshold)
                lines = [f"p {before:.3f} -> {p:.3f}", f"now {_call(p, threshold)}"]
                colours = [WHITE, CHANGED if changed else KEPT]
            if row.get("set"):  # several sets: which one, over every tile of the row
                lines, colours = [wrapped(row["set"], size, 0.4)[0] if column == first else "", *lines], [WHITE, *colours]
            tiles.append(labelled(tile, lines, colours=colours))
    body = grid(tiles, columns=len(columns))
    width = body.shape[1]
    heads = column_headers(list(columns), (width - 4) // len(columns))
    heads = np.pad(heads, ((0, 0), (4, width - 4 - heads.shape[1]), (0, 0)))
    top = np.vstack([labelled(np.zeros((0, width, 3), np.uint8), wrapped(title, width, 0.45), scale=0.45), heads])
    calls = ([(CHANGED, f"call changed (COVID-19 at p >= {threshold:.3g})"), (KEPT, "call kept")] if same_model
             else [(KEPT, "p: out of fold, from each column's own probe")])
    key = legend([*calls, (OUTLINE, "lung fields taken away / kept")], width)
    return np.vstack([top, body, key])
