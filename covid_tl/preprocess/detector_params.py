"""The mark detector's settings (covid_tl.preprocess.marks), one dataclass that is also the Hydra
structured config `preprocessing.inpaint.detector` (registered in covid_tl.preprocess.schema)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

import numpy as np


@dataclass
class DetectorParams:
    """Mark detector settings; field names are the Hydra keys one to one: this dataclass is the
    structured config `preprocessing.inpaint.detector` (covid_tl/preprocess/schema.py), so its
    defaults live here only. Not frozen: Hydra overrides write into it.

    Fractions of the dynamic range are relative to (dark, top) = (the `dark_quantile`
    intensity, the brightest pixel); lengths are fractions of the image's shorter side.
    """

    # what counts as "bright and standing out"
    tophat_size: float = 0.035  # element diameter: strokes thinner than this stand out
    bright_fraction: float = 0.85  # seeds at least this far up the range (near saturated)
    contrast_fraction: float = 0.28  # seeds at least this much brighter than the opening
    strong_contrast_fraction: float = 0.45  # ... or, if only fairly bright, this much
    weak_bright_fraction: float = 0.6  # hysteresis: grow seeds into pixels this bright ...
    weak_contrast_fraction: float = 0.14  # ... and standing out this much (rest of a glyph)
    dark_quantile: float = 0.01  # the range's dark end: this quantile, robust to a few black pixels
    min_range: float = 40.0  # grey levels; flatter images have no marks to find
    # what a glyph looks like (per connected component)
    min_area_fraction: float = 4e-5  # of the image area (and at least min_area_px)
    min_area_px: int = 4
    max_area_fraction: float = 0.012
    max_side_fraction: float = 0.6  # bbox long side: longer is a wire, an edge, a frame
    max_height_fraction: float = 0.2  # bbox short side: text lines are long but low
    long_fraction: float = 0.25  # components longer than this must be dense (a word) ...
    long_min_fill: float = 0.3  # ... a curved wire or an edge is not
    max_stroke_fraction: float = 0.04  # twice the largest inner distance: thicker is anatomy
    max_aspect: float = 12.0  # bbox long/short side: straighter-longer is a line
    min_fill: float = 0.08  # area / bbox area: sparser is a curved wire
    border_fraction: float = 0.01  # this close to the image edge: a frame, a collimator edge
    frame_fraction: float = 0.05  # this close to an edge and ...
    frame_aspect: float = 4.0  # ... this elongated along it ...
    frame_width_fraction: float = 0.025  # ... and this thin (or solid: stroke >= frame_solid
    frame_solid: float = 0.6  # of its width, not letters): a film frame or collimator band
    ring_fraction: float = 0.02  # width of the ring around a glyph that is its background ...
    ring_contrast_fraction: float = 0.35  # ... which a glyph must outshine by this much, ...
    saturated_fraction: float = 0.9  # ... unless the glyph is this close to the top ...
    saturated_ring_contrast_fraction: float = 0.1  # ... where this much will do
    # text lines, rims
    group_gap_fraction: float = 0.02  # small bright bits this close to a glyph join it
    group_rounds: int = 3  # how many times a text line may grow by one gap
    group_tolerance: float = 0.1  # a joining bit may be this much darker than its neighbours
    rim_width_fraction: float = 0.004  # grow (at least 1 px) into anti-aliased rims ...
    rim_contrast_fraction: float = 0.07  # ... where pixels still stand out this much
    fill_level: float = 0.6  # completion: between inpainted ground (0) and glyph value (1) ...
    fill_reach: float = 0.3  # ... within this fraction of the glyph's size from it ...
    plateau_reach: float = 0.6  # further out, pixels as bright as the glyph join ...
    plateau_tolerance: float = 0.03  # ... within this much of its value (arrow heads)
    max_growth: float = 3.0  # a completion that grows a glyph beyond this many times is undone
    dilate_fraction: float = 0.0  # then dilate unconditionally (>0: at least 1 px)
    work_size: int = 1024  # longer side analysed; larger images are shrunk, mask refined

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ValueError(f"DetectorParams.{f.name} must be a number, got {value!r}")
            if value < 0:
                raise ValueError(f"DetectorParams.{f.name} must be >= 0, got {value!r}")
        for name in ("min_area_px", "group_rounds", "work_size"):
            if not isinstance(getattr(self, name), (int, np.integer)):
                raise ValueError(f"DetectorParams.{name} must be an integer, got {getattr(self, name)!r}")
        for name in ("bright_fraction", "contrast_fraction", "weak_bright_fraction",
                     "weak_contrast_fraction", "dark_quantile", "max_area_fraction", "min_fill"):
            if getattr(self, name) > 1:
                raise ValueError(f"DetectorParams.{name} must be in [0, 1], got {getattr(self, name)!r}")
        if self.weak_bright_fraction > self.bright_fraction or self.weak_contrast_fraction > self.contrast_fraction:
            raise ValueError("DetectorParams: the weak (hysteresis) thresholds must not exceed the seed ones")
        if self.work_size < 32:
            raise ValueError(f"DetectorParams.work_size must be >= 32, got {self.work_size!r}")

    @classmethod
    def coerce(cls, params: DetectorParams | Mapping | None = None, **overrides: object) -> DetectorParams:
        """Params from params, a mapping (a Hydra DictConfig) or None, with keyword overrides."""
        if params is None:
            base: dict = {}
        elif isinstance(params, DetectorParams):
            base = asdict(params)
        elif isinstance(params, Mapping):
            base = {str(k): v for k, v in params.items() if str(k) != "_target_"}
        else:
            raise ValueError(f"params must be DetectorParams, a mapping or None, got {params!r}")
        base.update(overrides)
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(base) - set(valid))
        if unknown:
            raise ValueError(f"unknown mark detector parameter(s) {unknown}; valid: {valid}")
        return cls(**base)
