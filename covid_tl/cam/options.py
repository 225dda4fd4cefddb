"""What every CAM picture and score is made with, defined once (conf/cam/default.yaml builds
it) for train.py's Grad-CAM callback, evaluate.py cams=true, explain.py and predict.py: the
same key means the same thing in each, and run_checks types each key by these fields."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field

from covid_tl.cam.compute import METHODS, TARGETS
from covid_tl.cam.lungs import CamLungs
from covid_tl.cam.overlay import OVERLAYS
from covid_tl.runtime.run_checks import instantiate_checked

Method = Literal[tuple(METHODS)]  # type: ignore[valid-type]
Target = Literal[TARGETS]  # type: ignore[valid-type]
Overlay = Literal[OVERLAYS]  # type: ignore[valid-type]


@dataclass(frozen=True)
class CamOptions:
    """`method` and `target` make the heatmap at `layer` (None: the backbone's own CAM layer);
    `overlay`, `alpha` and `tile` (pixels a side, at least 16 so a caption fits) draw it;
    `lungs` finds the lung fields its scores are measured in."""

    method: Method = "gradcam"
    target: Target = "predicted"
    layer: str | None = None
    overlay: Overlay = "blend"
    alpha: float = 0.4
    tile: Annotated[int, Field(ge=16)] = 320
    lungs: CamLungs = field(default_factory=CamLungs)


def build_cam(config: Any) -> CamOptions:
    """The CamOptions a `cam:` config names; a bad lung mode is its own one-line error."""
    return instantiate_checked(config)
