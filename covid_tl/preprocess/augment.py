"""Random training augmentation (albumentations) on uint8 images at the backbone's input size.

One builder, one shape per step: `{p, range}`, the step applied with probability p, its amount
drawn uniformly from range (p: 0 turns it off); steps, units and valid amounts are those of
covid_tl.preprocess.steps.STEPS, which the phantom hospitals' chains read too. conf/augment/
holds presets: the study's rotation/shear/zoom, the imaging chain (acquisition), the same with a
crop and a film's black margin (imaging_chain). Deterministic preprocessing (crop, inpainting)
happens before this and is cached; this part is random, so it runs every time an image is drawn
for training, never for evaluation.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import albumentations as A
import cv2

from covid_tl.core.errors import ConfigError
from covid_tl.preprocess.steps import STEPS

Amount = tuple[float, float]


@dataclass(frozen=True)
class StepSetting:
    """One step's setting as a config writes it (run_checks types `augment.<step>` by it)."""

    p: float
    range: tuple[float, float]


class FractionalBlur(A.ImageOnlyTransform):
    """Gaussian blur of sigma a fraction of the shorter side (STEPS' unit, the phantoms' too), so
    a setting blurs a film alike at any input size; albumentations' GaussianBlur takes pixels."""

    def __init__(self, sigma_range: Amount, p: float = 0.5) -> None:
        super().__init__(p=p)
        self.sigma_range = sigma_range

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, float]:
        return {"sigma": self.py_random.uniform(*self.sigma_range) * min(params["shape"][:2])}

    def apply(self, img, sigma: float, **params):  # noqa: ANN001, ANN201  (albumentations' signature)
        return cv2.GaussianBlur(img, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101) if sigma > 0 else img

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("sigma_range",)


#: Albumentations' name of each geometric step's amount in one A.Affine.
AFFINE = {"rotate": "rotate", "shear": "shear", "scale": "scale", "translate": "translate_percent"}
#: Each other step's transform, given its amount (range) and p.
PIXEL = {
    "gamma": lambda r, p: A.RandomGamma(gamma_limit=(100 * r[0], 100 * r[1]), p=p),  # albumentations: percent
    "brightness": lambda r, p: A.RandomBrightnessContrast(brightness_limit=r, contrast_limit=(0.0, 0.0), p=p),
    "contrast": lambda r, p: A.ColorJitter(brightness=(1.0, 1.0), contrast=r, saturation=(1.0, 1.0), hue=(0.0, 0.0), p=p),
    "downscale": lambda r, p: A.Downscale(scale_range=r, p=p,
                                          interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR}),
    "blur": lambda r, p: FractionalBlur(r, p=p),
    "noise": lambda r, p: A.GaussNoise(std_range=r, mean_range=(0.0, 0.0), p=p),
    "jpeg": lambda r, p: A.ImageCompression(quality_range=(round(r[0]), round(r[1])), p=p),
}
BORDERS = {"constant": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT_101}


def build_augmentation(border: str = "reflect", **steps: Mapping[str, Any] | None) -> A.Compose | None:
    """The steps `steps` names (STEPS' keys, in STEPS' order), each `{p, range}`; None when none
    is on. Geometric steps fill what they reveal by `border`: reflect (a black wedge would be a
    class-independent but learnable artefact) or constant black (a film's own margin); a mask
    passed with the image moves with it."""
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        raise ConfigError(f"unknown augment key(s) {unknown}; valid: border, {', '.join(STEPS)}")
    if border not in BORDERS:
        raise ConfigError(f"unknown augment.border {border!r}; valid: {', '.join(BORDERS)}")
    on = {name: setting for name in STEPS if (setting := step_setting(name, steps.get(name))) is not None}
    transforms = _geometry({n: s for n, s in on.items() if n in AFFINE}, BORDERS[border])
    try:
        transforms += [PIXEL[name](*setting) for name, setting in on.items() if name in PIXEL]
    except ValueError as error:  # albumentations' own bounds, where narrower than STEPS'
        raise ConfigError(f"augment: {_reason(error)}") from None
    return A.Compose(transforms, seed=0) if transforms else None


def step_setting(name: str, options: Mapping[str, Any] | None) -> tuple[Amount, float] | None:
    """(range, p) of one step's `{p, range}`, checked against its STEPS bounds; None when off."""
    if options is None:
        return None
    if set(options) != {"p", "range"}:
        raise ConfigError(f"augment.{name} takes p and range, got {sorted(options)}")
    p, (low, high) = float(options["p"]), options["range"]
    step = STEPS[name]
    if not 0 <= p <= 1 or low > high:
        raise ConfigError(f"augment.{name}: p must be in [0, 1] and range ordered [low, high], got p={p}, range={[low, high]}")
    if not (step.holds(low) and step.holds(high)):
        raise ConfigError(f"augment.{name}: range {[low, high]} outside its valid {step.bounds()} ({step.unit})")
    return ((float(low), float(high)), p) if p else None


def _geometry(settings: dict[str, tuple[Amount, float]], border: int) -> list[A.BasicTransform]:
    """Geometric steps as A.Affine: those always applied (p 1) in one, as each resampling
    blurs; any other its own, with its p."""
    def affine(amounts: dict[str, Amount], p: float) -> A.Affine:
        return A.Affine(**{AFFINE[n]: r for n, r in amounts.items()}, border_mode=border, fill=0, fill_mask=0, p=p)

    always = {name: amount for name, (amount, p) in settings.items() if p == 1}
    sometimes = [affine({name: amount}, p) for name, (amount, p) in settings.items() if p < 1]
    return ([affine(always, 1.0)] if always else []) + sometimes


def _reason(error: ValueError) -> str:
    """The reason albumentations gives, without pydantic's headers (it wraps a ValidationError)."""
    details = getattr(error.__cause__, "errors", None)
    if details is None:
        return str(error).splitlines()[0]
    return details()[0]["msg"].removeprefix("Value error, ")
