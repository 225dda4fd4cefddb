"""Border cropping: a fixed margin per side, after the film's own uniform borders.

The study cropped borders because burned-in letters, scanner frames and collimation edges
sit there and models read them. NIH images carry black and white frames around the film;
Cohen figures come with captions on flat bands. `find_border` walks rows and columns from
the outside in and stops at the first one that is not near-uniform (near-black,
near-white or near-constant); `crop_borders` removes that border and then a fixed fraction
of what is left. Every function returns the crop box (y0, x0, y1, x1), exclusive ends, in
the input's coordinates, so lung masks, mark masks or CAMs can be cropped alike
(`apply_box`). No crop ever keeps less than `min_keep` of either axis.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from covid_tl.preprocess.marks import check_image

Box = tuple[int, int, int, int]  # y0, x0, y1, x1 (exclusive)


def _sides(fraction: float | Sequence[float]) -> tuple[float, float, float, float]:
    """(top, bottom, left, right) from one number or four (Hydra lists arrive as sequences)."""
    if isinstance(fraction, (int, float, np.integer, np.floating)) and not isinstance(fraction, bool):
        values = (float(fraction),) * 4
    else:
        try:
            values = tuple(float(v) for v in fraction)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise ValueError(f"fraction must be a number or [top, bottom, left, right], got {fraction!r}") from None
        if len(values) != 4:
            raise ValueError(f"fraction must be a number or [top, bottom, left, right], got {fraction!r}")
    if any(not 0.0 <= v < 0.5 for v in values):
        raise ValueError(f"crop fractions must be in [0, 0.5), got {fraction!r}")
    return values  # type: ignore[return-value]


def _check_min_keep(min_keep: float) -> float:
    if not 0.0 < min_keep <= 1.0:
        raise ValueError(f"min_keep must be in (0, 1], got {min_keep!r}")
    return float(min_keep)


def _keep_enough(lo: int, hi: int, size: int, min_keep: float) -> tuple[int, int]:
    """Shrink a crop [lo, hi) of an axis of `size` back towards the full axis, in proportion
    to what each side takes, until it keeps at least `min_keep` of the axis."""
    need = max(1, int(np.ceil(min_keep * size)))
    if hi - lo >= need:
        return lo, hi
    cut_lo, cut_hi = lo, size - hi
    spare = size - need  # pixels that may be cut in all
    total = cut_lo + cut_hi
    new_lo = int(np.floor(spare * cut_lo / total)) if total else 0
    new_hi = spare - new_lo if total else 0
    return new_lo, size - new_hi


def apply_box(array: np.ndarray, box: Box) -> np.ndarray:
    """The same crop for any array whose first two axes are the image's (masks, CAMs, RGB)."""
    y0, x0, y1, x1 = box
    if not (0 <= y0 < y1 <= array.shape[0] and 0 <= x0 < x1 <= array.shape[1]):
        raise ValueError(f"crop box {box} does not fit an array of shape {array.shape}")
    return array[y0:y1, x0:x1]


def _uniform(lines: np.ndarray, dark_level: int, bright_level: int, tolerance: int, share: float) -> np.ndarray:
    """Per row of `lines`: is it border (mostly black, mostly white or mostly one grey)?"""
    if lines.shape[0] == 0 or lines.shape[1] == 0:
        return np.zeros(lines.shape[0], bool)
    n = lines.shape[1]
    dark = (lines <= dark_level).sum(axis=1) >= share * n
    bright = (lines >= bright_level).sum(axis=1) >= share * n
    median = np.median(lines, axis=1, keepdims=True)
    flat = (np.abs(lines.astype(np.int16) - median) <= tolerance).sum(axis=1) >= share * n
    return dark | bright | flat


def _run(flags: np.ndarray, limit: int) -> int:
    """Length of the leading run of True, at most `limit`."""
    if limit <= 0 or len(flags) == 0:
        return 0
    stop = np.flatnonzero(~flags[:limit])
    return int(stop[0]) if len(stop) else min(limit, len(flags))


def find_border(image: np.ndarray, dark_level: int = 20, bright_level: int = 235, tolerance: int = 12,
                share: float = 0.95, max_border: float = 0.25, passes: int = 3) -> Box:
    """Box inside the uniform frame: rows/columns peeled from the outside in while at least
    `share` of their pixels are <= dark_level, >= bright_level or within `tolerance` of
    their median. At most `max_border` of the height/width per side.

    Rows are judged over the columns still kept, and the sides are peeled in `passes`
    rounds, so a white frame inside a black one (NIH) comes off once the black is gone.
    """
    image = check_image(image)
    if not 0.0 <= max_border < 0.5:
        raise ValueError(f"max_border must be in [0, 0.5), got {max_border!r}")
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must be in (0, 1], got {share!r}")
    if not (0 <= dark_level <= 255 and 0 <= bright_level <= 255 and 0 <= tolerance <= 255):
        raise ValueError("dark_level, bright_level and tolerance are grey levels in [0, 255]")
    height, width = image.shape
    y0, x0, y1, x1 = 0, 0, height, width
    lim_y, lim_x = int(max_border * height), int(max_border * width)

    def flags(lines: np.ndarray) -> np.ndarray:
        return _uniform(lines, dark_level, bright_level, tolerance, share)

    # only the outer max_border of each side can be border: just those lines are judged
    for _ in range(max(1, passes)):
        before = (y0, x0, y1, x1)
        y0 += _run(flags(image[y0:lim_y, x0:x1]), max(0, lim_y - y0))
        y1 -= _run(flags(image[max(y0, height - lim_y):y1, x0:x1][::-1]), max(0, lim_y - (height - y1)))
        x0 += _run(flags(image[y0:y1, x0:lim_x].T), max(0, lim_x - x0))
        x1 -= _run(flags(image[y0:y1, max(x0, width - lim_x):x1].T[::-1]), max(0, lim_x - (width - x1)))
        if (y0, x0, y1, x1) == before:
            break
    return y0, x0, y1, x1


def crop_borders(image: np.ndarray, fraction: float | Sequence[float] = 0.0, auto: bool = True,
                 dark_level: int = 20, bright_level: int = 235, tolerance: int = 12,
                 share: float = 0.95, max_border: float = 0.25,
                 min_keep: float = 0.5) -> tuple[np.ndarray, Box]:
    """Remove the uniform frame (`auto`, see find_border), then `fraction` of what is left
    per side; never keeps less than `min_keep` of the original height or width."""
    image = check_image(image)
    top, bottom, left, right = _sides(fraction)
    min_keep = _check_min_keep(min_keep)
    height, width = image.shape
    if auto:
        y0, x0, y1, x1 = find_border(image, dark_level=dark_level, bright_level=bright_level,
                                     tolerance=tolerance, share=share, max_border=max_border)
    else:
        y0, x0, y1, x1 = 0, 0, height, width
    h, w = y1 - y0, x1 - x0
    y0, y1 = y0 + int(round(top * h)), y1 - int(round(bottom * h))
    x0, x1 = x0 + int(round(left * w)), x1 - int(round(right * w))
    y0, y1 = _keep_enough(y0, y1, height, min_keep)
    x0, x1 = _keep_enough(x0, x1, width, min_keep)
    box = (y0, x0, y1, x1)
    return apply_box(image, box), box


__all__ = ["Box", "apply_box", "find_border", "crop_borders"]
