"""Lung regions for CAM scores on every image: the data's mask where there is one, the lung
segmenter's elsewhere (no-finding and external films have no drawn masks).

Segmenting is slow on a CPU (25-140 ms a film), so the segmenter is loaded on first use and
its masks are kept per image (bit-packed): a film is segmented once however often it is scored.
"""
from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from covid_tl.core.errors import ConfigError

#: segmenter: the data's mask, the segmenter elsewhere | segmenter_only: the segmenter on every
#: film (compare it with the masks) | masks: given masks only | none: no lung scores.
Mode = Literal["segmenter", "segmenter_only", "masks", "none"]
MODES = get_args(Mode)


@dataclass
class LungRegion:
    """An image's lung fields on its own grid (None: unknown) and where they came from."""

    mask: np.ndarray | None
    source: str  # mask | segmenter | none


class CamLungs:
    """Lung regions by `mode` (MODES); `model`: a task=segment `lung_segmenter.pt`, None the bundled one."""

    def __init__(self, mode: Mode = "segmenter", model: str | None = None,
                 segmenter: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        if mode not in MODES:
            raise ConfigError(f"unknown cam.lungs.mode {mode!r}; valid: {', '.join(MODES)}")
        self.mode, self.model = mode, model
        self._segmenter = segmenter
        self._masks: dict[Hashable, tuple[np.ndarray, tuple[int, int]]] = {}

    @property
    def segmenter(self) -> Callable[[np.ndarray], np.ndarray]:
        if self._segmenter is None:  # imported here: segmentation-models-pytorch and timm take a second to import
            from covid_tl.models.segmenter import LungSegmenter

            self._segmenter = LungSegmenter.load(self.model)
        return self._segmenter

    def segment(self, key: Hashable, film: np.ndarray) -> np.ndarray:
        """The segmenter's mask of `film`, made once per (key, film size)."""
        key = (key, film.shape)
        if key not in self._masks:
            mask = np.asarray(self.segmenter(film), bool)
            self._masks[key] = (np.packbits(mask), mask.shape)
        packed, shape = self._masks[key]
        return np.unpackbits(packed, count=shape[0] * shape[1]).reshape(shape).astype(bool)

    def region(self, key: Hashable, film: np.ndarray, given: np.ndarray | None) -> LungRegion:
        """The lung fields of `film` (uint8, its own grid); `given`: the data's mask, already on that grid."""
        if self.mode in ("segmenter", "masks") and given is not None and given.any():
            return LungRegion(given, "mask")
        if self.mode in ("segmenter", "segmenter_only"):
            return LungRegion(self.segment(key, film), "segmenter")
        return LungRegion(None, "none")


def image_key(row: Mapping[str, Any]) -> Hashable:
    """What names an image across calls: its reader and path."""
    return row.get("reader"), str(row.get("path"))
