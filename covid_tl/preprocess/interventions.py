"""The shortcut audit's image interventions, pure numpy/OpenCV: take a region of a film away
(the lung fields, or everything but them) and see whether a model's call survives.

Lungs removed (Maguolo & Nanni 2021): if a model, or a model trained on such films, still
tells the classes apart, the label can be read outside the lungs. Lungs only is its mirror.
A region is filled with the mean of the pixels that are kept, never of those taken away: a
fill level computed from the lungs would carry the lungs' brightness (and so the opacity)
into the film. `blur` keeps the region's coarse shading instead (less strange to a model, but
it leaves low frequencies of what it covers); its sigma is a fraction of the shorter side, as
elsewhere in covid-tl.
"""
from __future__ import annotations

import cv2
import numpy as np

from covid_tl.preprocess.marks import check_image

FILLS = ("mean", "blur")


def grown(region: np.ndarray, fraction: float) -> np.ndarray:
    """A bool region dilated by `fraction` of the image's shorter side (an ellipse of that
    radius, rounded to whole pixels): a lung mask's edge misses a rim of the lung, where an
    opacity would otherwise survive its removal. 0: the region as it is."""
    if fraction < 0:
        raise ValueError(f"grow must be >= 0, got {fraction}")
    region = np.asarray(region, bool)
    radius = int(round(fraction * min(region.shape)))
    if radius == 0 or not region.any():
        return region
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(region.astype(np.uint8), kernel) > 0


def fill(image: np.ndarray, region: np.ndarray, how: str = "mean", blur: float = 0.05) -> np.ndarray:
    """A copy of a uint8 (H, W) film with the pixels of bool `region` replaced: by the rounded
    mean of the pixels outside it (`mean`), or by a Gaussian blur of the film with sigma `blur`
    of its shorter side (`blur`). A region that covers the whole film becomes mid-grey under
    `mean` (nothing is kept to take a level from)."""
    image = check_image(image)
    region = np.asarray(region, bool)
    if region.shape != image.shape:
        raise ValueError(f"region of shape {region.shape} for an image of shape {image.shape}")
    if how not in FILLS:
        raise ValueError(f"fill must be one of {', '.join(FILLS)}, got {how!r}")
    if how == "mean":
        kept = image[~region]
        level = int(np.rint(kept.mean())) if kept.size else 128
        return np.where(region, np.uint8(level), image)
    if not blur > 0:
        raise ValueError(f"blur must be positive, got {blur}")
    soft = cv2.GaussianBlur(image, (0, 0), max(0.5, blur * min(image.shape)))
    return np.where(region, soft, image)


def without_region(image: np.ndarray, region: np.ndarray, how: str = "mean", grow: float = 0.0,
                   blur: float = 0.05) -> np.ndarray:
    """The film with `region` (grown by `grow`) taken away: lungs removed."""
    return fill(image, grown(region, grow), how, blur)


def only_region(image: np.ndarray, region: np.ndarray, how: str = "mean", grow: float = 0.0,
                blur: float = 0.05) -> np.ndarray:
    """The film with everything outside `region` (grown by `grow`) taken away: lungs only."""
    return fill(image, ~grown(region, grow), how, blur)
