"""The steps of an imaging chain, one table: their units and valid amounts.

Two things vary a film's look by the same steps: the training augmentation (covid_tl.preprocess
.augment) and the phantom hospitals' chains (covid_tl.preprocess.acquisition). Both name a step
and read its amount here, so a gamma of 1.4 or a JPEG quality of 60 means one thing in either,
and a test can hold the augmentation's ranges against every phantom hospital's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, Field


@dataclass(frozen=True)
class Step:
    """A step's unit and its valid amounts [low, high] (`open_low`: low itself excluded);
    `identity`: the amount at which the step leaves an image as it is (None: no such amount)."""

    unit: str
    low: float
    high: float
    identity: float | None
    open_low: bool = False

    def holds(self, amount: float) -> bool:
        return (self.low < amount if self.open_low else self.low <= amount) and amount <= self.high

    def bounds(self) -> str:
        return f"{'(' if self.open_low else '['}{self.low:g}, {self.high:g}]"


#: In the order of an imaging chain: position, exposure and display, detector, export.
STEPS = {
    "rotate": Step("degrees, counter-clockwise", -180.0, 180.0, 0.0),
    "shear": Step("degrees", -45.0, 45.0, 0.0),
    "scale": Step("zoom factor (above 1: in, a crop; below 1: out, a border)", 0.0, 10.0, 1.0, open_low=True),
    "translate": Step("shift, fraction of the side", -0.5, 0.5, 0.0),
    "gamma": Step("display LUT exponent (below 1: brighter)", 0.0, 10.0, 1.0, open_low=True),
    "brightness": Step("added, fraction of full scale", -1.0, 1.0, 0.0),
    "contrast": Step("factor around the image's mean", 0.0, 10.0, 1.0),
    "downscale": Step("fraction of the size sampled (area average), shown back at full size", 0.0, 1.0, 1.0, open_low=True),
    "blur": Step("Gaussian sigma, fraction of the shorter side", 0.0, 0.1, 0.0),
    "noise": Step("Gaussian std, fraction of full scale", 0.0, 0.5, 0.0),
    "jpeg": Step("JPEG quality", 1.0, 100.0, None),
}


def _ordered(pair: tuple) -> tuple:
    if pair[0] > pair[1]:
        raise ValueError(f"must be ordered [low, high], got {list(pair)}")
    return pair


def ordered_range(item: Any) -> Any:
    """The type of a [low, high] pair of `item`, ordered (a setting drawn per image)."""
    return Annotated[tuple[item, item], AfterValidator(_ordered)]


def step_range(name: str, item: Any = float) -> Any:
    """The type of an ordered [low, high] amount of step `name`, each end within its bounds."""
    step = STEPS[name]
    low = Field(gt=step.low) if step.open_low else Field(ge=step.low)
    return ordered_range(Annotated[item, low, Field(le=step.high)])
