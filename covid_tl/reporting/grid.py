"""Pictures made of tiles, pure numpy/OpenCV: one caption band, grid, column header, legend and
colour bar for every layer (phantom previews, preprocessing previews, Grad-CAM overlays)."""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE = (255, 255, 255)
RGB = tuple[int, int, int]


def fit_scale(lines: Sequence[str], width: int, largest: float = 0.8, smallest: float = 0.35) -> float:
    """The largest font scale, within [smallest, largest], at which every line fits `width` pixels."""
    def widest(scale: float) -> int:
        return max((cv2.getTextSize(text, FONT, scale, _thickness(scale))[0][0] for text in lines), default=0)

    scale = float(np.clip((width - 8) / max(widest(1.0), 1), smallest, largest))
    while scale > smallest and widest(scale) > width - 6:  # bolder strokes at larger scales widen the text
        scale = max(smallest, scale * 0.95)
    return scale


def _line_height(scale: float) -> int:
    return int(16 * scale / 0.4)


def _thickness(scale: float) -> int:
    return 1 if scale < 0.6 else 2


def _put(band: np.ndarray, text: str, x: int, baseline: int, scale: float, colour: Sequence[int]) -> None:
    cv2.putText(band, text, (x, baseline), FONT, scale, tuple(int(c) for c in colour), _thickness(scale), cv2.LINE_AA)


def text_width(text: str, scale: float) -> int:
    """Pixels `text` takes at `scale` in the grid's font."""
    return cv2.getTextSize(text, FONT, scale, _thickness(scale))[0][0]


def wrapped(text: str, width: int, scale: float, breaks: str = " |/_-.") -> list[str]:
    """`text` in lines of at most `width` pixels, nothing cut off but the spaces at a break: each
    line as long as fits, ended after the last of `breaks` in its second half where there is
    one (file names break between their parts), else after the last character that fits."""
    lines: list[str] = []
    while text:
        fits = max((k for k in range(1, len(text) + 1) if text_width(text[:k], scale) <= width - 6), default=1)
        cut = fits if fits == len(text) else max([k + 1 for k in range(fits // 2, fits) if text[k] in breaks] or [fits])
        lines.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    return lines


def labelled(tile: np.ndarray, lines: Sequence[str], scale: float = 0.4, colour: RGB = WHITE,
             colours: Sequence[RGB] | None = None) -> np.ndarray:
    """The tile with a black caption band above it (one row per line; `colours` per line)."""
    height = _line_height(scale)
    band = np.zeros((height * len(lines), tile.shape[1], 3), np.uint8)
    for i, text in enumerate(lines):
        _put(band, text, 3, height * (i + 1) - height // 4, scale, colours[i] if colours else colour)
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


def column_headers(texts: Sequence[str], width: int, scale: float = 0.45) -> np.ndarray:
    """A black band with each text centred over one of len(texts) equal columns of `width`."""
    height = _line_height(scale) + 4
    band = np.zeros((height, width * len(texts), 3), np.uint8)
    for i, text in enumerate(texts):
        text_width = cv2.getTextSize(text, FONT, scale, _thickness(scale))[0][0]
        _put(band, text, i * width + max(0, (width - text_width) // 2), height - height // 4 - 2, scale, WHITE)
    return band


def legend(items: Sequence[tuple[RGB, str]], width: int, scale: float = 0.45) -> np.ndarray:
    """A black band of colour swatches, each followed by its text, left to right, on as many rows
    as `width` needs (a grid of one or two tiles is narrower than the key); the font shrinks
    only when one item alone is wider."""
    side = _line_height(scale) - 2
    scale = min(scale, fit_scale([text for _, text in items], width - side - 11, largest=scale))
    height = _line_height(scale) + 8
    side = height - 10
    rows: list[list[tuple[RGB, str, int]]] = [[]]
    x = 6
    for colour, text in items:
        item_width = side + 5 + cv2.getTextSize(text, FONT, scale, _thickness(scale))[0][0]
        if rows[-1] and x + item_width > width - 4:
            rows.append([])
            x = 6
        rows[-1].append((colour, text, x))
        x += item_width + 20
    band = np.zeros((height * len(rows), width, 3), np.uint8)
    for r, row in enumerate(rows):
        for colour, text, x in row:
            band[r * height + 5 : r * height + 5 + side, x : x + side] = colour
            _put(band, text, x + side + 5, (r + 1) * height - height // 4 - 1, scale, WHITE)
    return band


def colour_bar(height: int, colours: np.ndarray, title: str, scale: float = 0.5) -> np.ndarray:
    """A vertical colour bar `height` tall: `colours` ((N, 3) RGB, low to high) from 0 at the
    bottom to 1 at the top, ticks 0, 0.5 and 1 to its right, `title` above it."""
    line = _line_height(scale)
    top, bottom, strip = line + line // 2 + 4, height - line // 2 - 4, 18
    labels = ("1.0", "0.5", "0.0")
    text_width = max(cv2.getTextSize(t, FONT, scale, _thickness(scale))[0][0] for t in labels)
    width = max(strip + 12 + text_width, cv2.getTextSize(title, FONT, scale, _thickness(scale))[0][0]) + 12
    bar = np.zeros((height, width, 3), np.uint8)
    if bottom - top < 8:
        return bar
    rows = np.linspace(len(colours) - 1, 0, bottom - top).round().astype(int)  # top row = highest value
    bar[top:bottom, 6 : 6 + strip] = np.asarray(colours, np.uint8)[rows][:, None, :]
    _put(bar, title, 4, line, scale, WHITE)
    for text, y in zip(labels, (top, (top + bottom) // 2, bottom - 1)):
        bar[y, 6 + strip : 10 + strip] = WHITE
        _put(bar, text, 14 + strip, y + line // 3, scale, WHITE)
    return bar
