"""Burned-in marks (letters, arrows, scanner text): the shortcut planted per class."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import cv2
import numpy as np
from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field
from pydantic.dataclasses import dataclass as checked_dataclass

from covid_tl.data.synthetic.raster import ONE, SHIFT

MARK_KINDS: tuple[str, ...] = ("letter", "arrow", "text")
MARK_POSITIONS: tuple[str, ...] = ("corner", "mid")
LETTERS: tuple[str, ...] = ("L", "R", "A", "B", "C", "D")
WORDS: tuple[str, ...] = ("PORTABLE", "AP", "SUPINE", "ERECT")
_FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
)


def _listed(value: object) -> object:
    """The command line sometimes hands over a bare string for a list of one."""
    return (value,) if isinstance(value, str) else value


def _known(valid: tuple[str, ...]) -> AfterValidator:
    def check(values: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [v for v in values if v not in valid]
        if unknown:
            raise ValueError(f"unknown value(s) {unknown}; valid: {list(valid)}")
        return values

    return AfterValidator(check)


Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Names = Annotated[tuple[str, ...], BeforeValidator(_listed), Field(min_length=1)]


@checked_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class ShortcutSpec:
    """Which images carry burned-in marks, per class: the knob that plants a shortcut."""

    p_covid: Probability = 0.0  # probability a COVID-19 image carries marks
    p_no_finding: Probability = 0.0  # probability a no-finding image carries marks
    kinds: Annotated[Names, _known(MARK_KINDS)] = MARK_KINDS
    positions: Annotated[Names, _known(MARK_POSITIONS)] = MARK_POSITIONS
    max_marks: Annotated[int, Field(ge=1)] = 2


@dataclass(frozen=True)
class Mark:
    """One burned-in mark; bbox is (y0, x0, y1, x1) with exclusive ends."""

    kind: str
    position: str
    bbox: tuple[int, int, int, int]


def _stroke(thickness: int) -> int:
    """Hairlines drawn anti-aliased would have no saturated core, so they are drawn solid."""
    return cv2.LINE_AA if thickness >= 2 else cv2.LINE_8


def _crop(canvas: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(canvas)
    if len(ys) == 0:
        return canvas[:1, :1]
    return canvas[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]


def text_sprite(text: str, font: int, height: float, max_width: float) -> np.ndarray:
    """Alpha sprite (uint8) of Hershey text with cap height ~`height` px, cropped to its ink."""
    (tw, th), baseline = cv2.getTextSize(text, font, 1.0, 1)
    scale = min(height / th, max_width / tw)
    thickness = max(1, int(round(scale * th / 7)))
    pad = thickness + 2
    canvas = np.zeros((int(scale * (th + baseline)) + 2 * pad + 2, int(scale * tw) + 2 * pad + 2),
                      np.uint8)
    origin = (pad, int(round(scale * th)) + pad)
    cv2.putText(canvas, text, origin, font, scale, 255, thickness, _stroke(thickness))
    # OpenCV 5 renders Hershey fonts anti-aliased whatever the line type, so small text would
    # have no saturated core; doubling the coverage (saturating) gives burned-in-looking strokes
    return _crop(cv2.add(canvas, canvas))


def arrow_sprite(length: float, angle: float, thickness: int) -> np.ndarray:
    """Alpha sprite (uint8) of an arrow (shaft and head) pointing along `angle`."""
    size = int(length + 4 * thickness + 8)
    c = size / 2
    dx, dy = math.cos(angle) * length / 2, math.sin(angle) * length / 2
    canvas = np.zeros((size, size), np.uint8)
    p0 = (int(round((c - dx) * ONE)), int(round((c - dy) * ONE)))
    p1 = (int(round((c + dx) * ONE)), int(round((c + dy) * ONE)))
    cv2.arrowedLine(canvas, p0, p1, 255, thickness, _stroke(thickness), SHIFT, 0.35)
    return _crop(canvas)


def mark_sprite(rng: np.random.Generator, kind: str, height: int, width: int) -> np.ndarray:
    """One mark's alpha sprite; its size scales with the image."""
    short = min(height, width)
    if kind == "letter":
        text = LETTERS[int(rng.integers(len(LETTERS)))]
        font = _FONTS[int(rng.integers(len(_FONTS)))]
        return text_sprite(text, font, rng.uniform(0.06, 0.12) * height, 0.4 * width)
    if kind == "text":
        choice = int(rng.integers(len(WORDS) + 1))
        if choice == len(WORDS):
            digits = int(rng.integers(2, 5))
            text = str(int(rng.integers(10 ** (digits - 1), 10**digits)))
        else:
            text = WORDS[choice]
        font = _FONTS[int(rng.integers(2))]  # the plain fonts, like scanner overlays
        return text_sprite(text, font, rng.uniform(0.05, 0.08) * height, 0.7 * width)
    if kind == "arrow":
        length = rng.uniform(0.12, 0.22) * short
        thickness = max(1, int(round(rng.uniform(0.010, 0.018) * short)))
        return arrow_sprite(length, rng.uniform(0, 2 * math.pi), thickness)
    raise ValueError(f"unknown mark kind {kind!r}; valid: {list(MARK_KINDS)}")


def place_sprite(rng: np.random.Generator, position: str, sprite_shape: tuple[int, int],
                 height: int, width: int) -> tuple[int, int]:
    """Top-left corner: in a band along the border near a corner, or anywhere central."""
    sh, sw = sprite_shape
    if position == "corner":
        margin = max(1, int(round(0.02 * min(height, width))))
        oy = int(rng.integers(margin, margin + max(1, int(0.08 * height)) + 1))
        ox = int(rng.integers(margin, margin + max(1, int(0.12 * width)) + 1))
        corner = int(rng.integers(4))
        y0 = oy if corner < 2 else height - sh - oy
        x0 = ox if corner % 2 == 0 else width - sw - ox
    elif position == "mid":
        lo_y, lo_x = int(0.12 * height), int(0.12 * width)
        y0 = int(rng.integers(lo_y, max(lo_y, int(0.88 * height) - sh) + 1))
        x0 = int(rng.integers(lo_x, max(lo_x, int(0.88 * width) - sw) + 1))
    else:
        raise ValueError(f"unknown mark position {position!r}; valid: {list(MARK_POSITIONS)}")
    return int(np.clip(y0, 0, max(0, height - sh))), int(np.clip(x0, 0, max(0, width - sw)))


def burn_marks(image: np.ndarray, rng: np.random.Generator,
               spec: ShortcutSpec) -> tuple[np.ndarray, np.ndarray, tuple[Mark, ...]]:
    """Composite 1..max_marks near-white marks; the mask is exactly the pixels that changed."""
    height, width = image.shape
    out = image.astype(np.float32)
    marks = []
    for _ in range(int(rng.integers(1, spec.max_marks + 1))):
        kind = spec.kinds[int(rng.integers(len(spec.kinds)))]
        position = spec.positions[int(rng.integers(len(spec.positions)))]
        sprite = mark_sprite(rng, kind, height, width)[:height, :width]
        y0, x0 = place_sprite(rng, position, sprite.shape, height, width)
        y1, x1 = y0 + sprite.shape[0], x0 + sprite.shape[1]
        value = float(rng.integers(230, 256))
        alpha = sprite.astype(np.float32) * (1.0 / 255.0)
        region = out[y0:y1, x0:x1]
        out[y0:y1, x0:x1] = region + (value - region) * alpha
        marks.append(Mark(kind, position, (y0, x0, y1, x1)))
    marked = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return marked, marked != image, tuple(marks)
