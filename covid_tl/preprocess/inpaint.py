"""Paint detected marks out (cv2.inpaint), on a shrunken copy for large films."""
from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np

from covid_tl.preprocess.detector_params import DetectorParams
from covid_tl.preprocess.marks import check_image, detect_marks, dilate_mask

INPAINT_METHODS = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}


def inpaint_marks(image: np.ndarray, mask: np.ndarray, method: str = "telea", radius: float = 0.01,
                  dilate: float = 0.002, work_size: int = 1024) -> np.ndarray:
    """Fill masked pixels from their surroundings (cv2.inpaint).

    `radius` (the neighbourhood cv2.inpaint looks at) and `dilate` (how far the mask is
    widened first, at least 1 px when > 0, so no bright halo of a glyph is left to be
    smeared inwards) are fractions of the shorter side. Images larger than `work_size`
    are inpainted on a shrunken copy (the fill is smooth anyway) and only the masked
    pixels are taken from it, which keeps a 4000 px radiograph to a fraction of a second.
    """
    image = check_image(image)
    if method not in INPAINT_METHODS:
        raise ValueError(f"unknown inpaint method {method!r}; valid: {sorted(INPAINT_METHODS)}")
    mask = np.asarray(mask)
    if mask.shape != image.shape:
        raise ValueError(f"mask shape {mask.shape} differs from image shape {image.shape}")
    if radius < 0 or dilate < 0:
        raise ValueError(f"radius and dilate must be >= 0, got {radius!r}, {dilate!r}")
    if work_size < 32:
        raise ValueError(f"work_size must be >= 32, got {work_size!r}")
    mask = dilate_mask(mask.astype(bool), dilate)
    if not mask.any():
        return image.copy()
    height, width = image.shape
    scale = min(1.0, work_size / max(height, width))
    r = max(1.0, radius * min(height, width) * scale)
    if scale == 1.0:
        return cv2.inpaint(image, mask.astype(np.uint8), r, INPAINT_METHODS[method])
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    small_mask = cv2.resize(mask.astype(np.uint8) * 255, size, interpolation=cv2.INTER_AREA) > 0
    filled = cv2.inpaint(small, small_mask.astype(np.uint8), r, INPAINT_METHODS[method])
    up = cv2.resize(filled, (width, height), interpolation=cv2.INTER_LINEAR)
    out = image.copy()
    out[mask] = up[mask]
    return out


def remove_marks(image: np.ndarray, params: DetectorParams | Mapping | None = None,
                 method: str = "telea", radius: float = 0.01, dilate: float = 0.002,
                 **overrides: object) -> tuple[np.ndarray, np.ndarray]:
    """Detect and inpaint in one go: (clean image, mask of the pixels that were replaced)."""
    p = DetectorParams.coerce(params, **overrides)
    mask = dilate_mask(detect_marks(image, p), dilate)
    return inpaint_marks(image, mask, method=method, radius=radius, dilate=0.0, work_size=p.work_size), mask
