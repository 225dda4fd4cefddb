"""The lung field as model input, pure numpy/OpenCV: given a film and its lung mask, crop to the
lungs' box with a margin, standardise intensity on lung pixels only, optionally blank what lies
outside the lungs.

Why: a model trained where each class comes from one hospital learns the hospital (exposure,
contrast, shutters, text, what lies around the lungs). Cutting to the lung fields and giving
every film the same lung-intensity distribution takes most of that away (docs/results.md,
Source shift). The mask comes from a segmenter the caller passes in (covid_tl.engine.build loads
covid_tl.models.segmenter.LungSegmenter); this module never imports one.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Optional

import cv2
import numpy as np

from covid_tl.preprocess.crop import Box

OUTSIDE = ("keep", "blur", "fill")
STANDARDIZE = ("equalize", "clahe", "zscore", "none")
ZSCORE_SCALE = 255 / 6  # zscore: the lungs' mean at mid-grey, +-3 sd spans 0..255


@dataclass
class LungParams:
    """`preprocessing.lungs`: field names are the Hydra keys one to one (the structured config
    `preprocessing/lung_field/default`, registered in covid_tl.preprocess.schema). Not frozen:
    Hydra overrides write into it."""

    model: Optional[str] = None  # segmenter checkpoint (task=segment's lung_segmenter.pt); null: the bundled one
    margin: float = 0.05  # added on each side of the lungs' box, fraction of its height / width
    outside: str = "keep"  # keep | blur | fill: what becomes of crop pixels outside the lungs
    fill: int = 0  # grey value outside the lungs under outside=fill
    blur: float = 0.05  # Gaussian sigma outside the lungs under outside=blur, fraction of the crop's shorter side
    standardize: str = "equalize"  # equalize | clahe | zscore | none, on lung pixels only, applied to the crop
    clahe_clip: float = 2.0  # CLAHE clip limit (cv2.createCLAHE) under standardize=clahe
    clahe_tiles: int = 8  # CLAHE tiles per side
    min_area: float = 0.05  # a mask below this share of the film is implausible: whole film instead
    max_area: float = 0.8  # ... and above this share

    def check(self) -> LungParams:
        """Itself, or ValueError naming the bad key."""
        if self.outside not in OUTSIDE:
            raise ValueError(f"outside must be one of {', '.join(OUTSIDE)}, got {self.outside!r}")
        if self.standardize not in STANDARDIZE:
            raise ValueError(f"standardize must be one of {', '.join(STANDARDIZE)}, got {self.standardize!r}")
        if not 0 <= self.margin <= 1:
            raise ValueError(f"margin must be in [0, 1], got {self.margin}")
        if not 0 <= self.fill <= 255:
            raise ValueError(f"fill must be a grey level in [0, 255], got {self.fill}")
        if self.blur <= 0 or self.clahe_clip <= 0 or self.clahe_tiles < 1:
            raise ValueError("blur, clahe_clip and clahe_tiles must be positive")
        if not 0 <= self.min_area < self.max_area <= 1:
            raise ValueError(f"need 0 <= min_area < max_area <= 1, got {self.min_area}, {self.max_area}")
        return self

    @classmethod
    def coerce(cls, options: Mapping[str, Any] | LungParams | None) -> LungParams:
        if isinstance(options, LungParams):
            return options.check()
        unknown = set(options or {}) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown key(s) {sorted(unknown)}")
        return cls(**dict(options or {})).check()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LungField:
    """The result and what made it: the crop box in the film, the mask cut to the box, the crop
    before standardising, and whether the mask was refused (whole film used)."""

    image: np.ndarray
    box: Box
    mask: np.ndarray
    crop: np.ndarray
    fallback: bool


def plausible(mask: np.ndarray, params: LungParams) -> bool:
    share = float(mask.mean()) if mask.size else 0.0
    return bool(mask.any()) and params.min_area <= share <= params.max_area


def lung_box(mask: np.ndarray, margin: float) -> Box:
    """(y0, x0, y1, x1), ends exclusive: the mask's bounding box grown by `margin` of its height
    (top and bottom) and width (left and right), rounded, clipped to the image."""
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, columns[0], columns[-1] + 1
    dy, dx = round(margin * (y1 - y0)), round(margin * (x1 - x0))
    height, width = mask.shape
    return (int(max(0, y0 - dy)), int(max(0, x0 - dx)), int(min(height, y1 + dy)), int(min(width, x1 + dx)))


def equalize_lut(values: np.ndarray) -> np.ndarray:
    """uint8 look-up table of histogram equalisation fitted to `values` (as cv2.equalizeHist:
    255 * (cdf - cdf_min) / (n - cdf_min)); grey levels between fitted ones follow the cdf."""
    cdf = np.cumsum(np.bincount(values.ravel(), minlength=256)).astype(np.float64)
    first = cdf[np.flatnonzero(cdf)[0]]
    if cdf[-1] == first:  # one grey level: nothing to spread
        return np.arange(256, dtype=np.uint8)
    return np.clip(np.round(255 * (cdf - first) / (cdf[-1] - first)), 0, 255).astype(np.uint8)


def standardize(crop: np.ndarray, lungs: np.ndarray, params: LungParams) -> np.ndarray:
    """The crop with its intensities mapped so the lung pixels (`lungs`, same shape) have the
    same distribution on every film; the map is fitted on lung pixels only."""
    inside = crop[lungs]
    if params.standardize == "none" or inside.size == 0:
        return crop
    if params.standardize == "equalize":
        return equalize_lut(inside)[crop]
    if params.standardize == "zscore":
        z = (crop.astype(np.float32) - float(inside.mean())) / max(float(inside.std()), 1.0)
        return np.clip(np.round(127.5 + ZSCORE_SCALE * z), 0, 255).astype(np.uint8)
    low, high = np.percentile(inside, (1, 99))  # clahe: the lungs' range stretched first, then local equalisation
    stretched = np.clip((crop.astype(np.float32) - low) * 255 / max(high - low, 1.0), 0, 255).astype(np.uint8)
    clahe = cv2.createCLAHE(clipLimit=params.clahe_clip, tileGridSize=(params.clahe_tiles, params.clahe_tiles))
    return clahe.apply(stretched)


def blank_outside(image: np.ndarray, lungs: np.ndarray, params: LungParams) -> np.ndarray:
    if params.outside == "keep":
        return image
    if params.outside == "fill":
        background = np.full_like(image, params.fill)
    else:
        background = cv2.GaussianBlur(image, (0, 0), max(0.5, params.blur * min(image.shape)))
    return np.where(lungs, image, background)


def lung_field(image: np.ndarray, mask: np.ndarray, params: LungParams) -> LungField:
    """uint8 (H, W) film and bool (H, W) lung mask -> the lung field as the model gets it.

    An implausible mask (empty, or a share of the film outside [min_area, max_area]) is not
    trusted: the whole film is standardised on all its pixels instead (`fallback`).
    """
    if mask.shape != image.shape:
        raise ValueError(f"lung mask of shape {mask.shape} for an image of shape {image.shape}")
    mask = mask.astype(bool)
    fallback = not plausible(mask, params)
    if fallback:
        mask, box = np.ones_like(mask), (0, 0, image.shape[0], image.shape[1])
    else:
        box = lung_box(mask, params.margin)
    y0, x0, y1, x1 = box
    crop, lungs = image[y0:y1, x0:x1], mask[y0:y1, x0:x1]
    result = blank_outside(standardize(crop, lungs, params), lungs, params)
    return LungField(np.ascontiguousarray(result), box, lungs, crop, fallback)
