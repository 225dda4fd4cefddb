"""Random training augmentation (albumentations) on uint8 images at the backbone's input size.

The study used small random rotations, shear and zoom; brightness/contrast is an option.
`augment=acquisition` varies the imaging chain instead (JPEG, resolution, blur, LUT, noise).
Deterministic preprocessing (crop, inpainting) happens before this and is cached; this part is
random, so it runs every time an image is drawn for training, never for evaluation.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import albumentations as A
import cv2

from covid_tl.errors import ConfigError


def build_augmentation(
    rotate: float = 0.0, shear: float = 0.0, zoom: float = 0.0, brightness_contrast: float = 0.0
) -> A.Compose | None:
    """An albumentations pipeline, or None when every amount is zero (no augmentation).

    rotate and shear are maximum degrees either way, zoom and brightness_contrast maximum
    fractions either way. Borders revealed by rotation are filled by reflection, as a black
    wedge would be a class-independent but learnable artefact.
    """
    for name, value in {"rotate": rotate, "shear": shear, "zoom": zoom, "brightness_contrast": brightness_contrast}.items():
        if value < 0:
            raise ConfigError(f"augment.{name} must be >= 0, got {value}")
    if zoom >= 1 or brightness_contrast >= 1:
        raise ConfigError("augment.zoom and augment.brightness_contrast must be below 1")
    transforms: list[A.BasicTransform] = []
    if rotate or shear or zoom:
        transforms.append(
            A.Affine(rotate=(-rotate, rotate), shear=(-shear, shear), scale=(1 - zoom, 1 + zoom),
                     border_mode=cv2.BORDER_REFLECT_101, p=1.0)
        )
    if brightness_contrast:
        transforms.append(A.RandomBrightnessContrast(brightness_contrast, brightness_contrast, p=1.0))
    return A.Compose(transforms, seed=0) if transforms else None


def _gamma(amount: tuple[float, float], p: float) -> A.BasicTransform:
    return A.RandomGamma(gamma_limit=(100 * amount[0], 100 * amount[1]), p=p)  # albumentations: percent


def _brightness(amount: tuple[float, float], p: float) -> A.BasicTransform:
    return A.RandomBrightnessContrast(brightness_limit=amount, contrast_limit=(0.0, 0.0), p=p)


def _contrast(amount: tuple[float, float], p: float) -> A.BasicTransform:
    return A.ColorJitter(brightness=(1.0, 1.0), contrast=amount, saturation=(1.0, 1.0), hue=(0.0, 0.0), p=p)


def _downscale(amount: tuple[float, float], p: float) -> A.BasicTransform:
    return A.Downscale(scale_range=amount, interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR}, p=p)


#: Each key of augment=acquisition -> its albumentations transform given (range, p), in the order
#: of an imaging chain: position, exposure and display, detector, export.
ACQUISITION_STEPS = {
    "rotate": lambda r, p: A.Rotate(limit=r, border_mode=cv2.BORDER_REFLECT_101, p=p),  # degrees
    "gamma": _gamma,  # LUT exponent (below 1: brighter)
    "brightness": _brightness,  # added, fraction of full scale
    "contrast": _contrast,  # factor around the image's mean
    "downscale": _downscale,  # fraction of the size kept (area average), then back up
    "blur": lambda r, p: A.GaussianBlur(sigma_limit=r, blur_limit=0, p=p),  # sigma, pixels of the model input
    "noise": lambda r, p: A.GaussNoise(std_range=r, mean_range=(0.0, 0.0), p=p),  # std, fraction of full scale
    "jpeg": lambda r, p: A.ImageCompression(quality_range=(round(r[0]), round(r[1])), p=p),  # quality 1-100
}


def _step(name: str, options: Mapping[str, Any]) -> A.BasicTransform | None:
    """One key's transform ({p, range}); None when p is 0."""
    if set(options) != {"p", "range"}:
        raise ConfigError(f"augment.{name} takes p and range, got {sorted(options)}")
    p, (low, high) = float(options["p"]), options["range"]
    if not 0 <= p <= 1 or low > high:
        raise ConfigError(f"augment.{name}: p must be in [0, 1] and range ordered [low, high], got p={p}, range={[low, high]}")
    if p == 0:
        return None
    try:
        return ACQUISITION_STEPS[name]((float(low), float(high)), p)
    except ValueError as error:  # albumentations' own bounds (jpeg 1-100, downscale (0, 1], ...)
        raise ConfigError(f"augment.{name}: {_reason(error)}") from None


def _reason(error: ValueError) -> str:
    """The reason albumentations gives, without pydantic's headers (it wraps a ValidationError)."""
    details = getattr(error.__cause__, "errors", None)
    if details is None:
        return str(error).splitlines()[0]
    return details()[0]["msg"].removeprefix("Value error, ")


def build_acquisition_augmentation(**steps: Mapping[str, Any] | None) -> A.Compose | None:
    """The imaging chain varied at training time, so that resolution, compression and exposure
    stop telling sources apart: each key (ACQUISITION_STEPS) applied with its probability `p`,
    its amount drawn uniformly from `range`. None when every p is 0 (no augmentation)."""
    unknown = sorted(set(steps) - set(ACQUISITION_STEPS))
    if unknown:
        raise ConfigError(f"unknown augment key(s) {unknown}; valid: {', '.join(ACQUISITION_STEPS)}")
    transforms = [_step(name, steps[name]) for name in ACQUISITION_STEPS if steps.get(name) is not None]
    transforms = [t for t in transforms if t is not None]
    return A.Compose(transforms, seed=0) if transforms else None


BORDERS = {"constant": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT_101}


def imaging_chain_augmentation(
    rotate: float = 10.0,
    scale: tuple[float, float] = (0.85, 1.3),
    translate: float = 0.06,
    gamma: tuple[float, float] = (0.6, 1.7),
    brightness_contrast: float = 0.3,
    blur_sigma: tuple[float, float] = (0.5, 2.0),
    jpeg_quality: tuple[int, int] = (20, 90),
    downscale: tuple[float, float] = (0.3, 0.8),
    noise_std: tuple[float, float] = (0.01, 0.05),
    p: float = 0.5,
    border: str = "constant",
) -> A.Compose:
    """Hard augmentation that imitates other hospitals' imaging chains, for a model trained on
    one source to meet others: a random crop or margin and a small rotation (always), then each
    with probability `p`: exposure (gamma), brightness and contrast, blur, JPEG compression,
    downscaling and sensor noise. A mask passed with the image moves with it.

    scale > 1 zooms in (a crop), < 1 out (a `border` margin: constant black, as a film's, or
    reflect); gamma is the exponent range; the others are ranges of the albumentations steps.
    """
    if border not in BORDERS:
        raise ConfigError(f"unknown augment.border {border!r}; valid: {', '.join(BORDERS)}")
    if not 0 <= p <= 1 or rotate < 0 or not 0 <= translate < 0.5:
        raise ConfigError(f"augment.p must be in [0, 1], rotate >= 0 and translate in [0, 0.5); got {p}, {rotate}, {translate}")
    if not (0 < scale[0] <= scale[1] and 0 < gamma[0] <= gamma[1] and 0 < downscale[0] <= downscale[1] < 1):
        raise ConfigError("augment.scale, gamma and downscale must be ordered positive ranges (downscale below 1)")
    return A.Compose([
        A.Affine(scale=tuple(scale), translate_percent=(-translate, translate), rotate=(-rotate, rotate),
                 border_mode=BORDERS[border], fill=0, fill_mask=0, p=1.0),
        A.RandomGamma(gamma_limit=(100 * gamma[0], 100 * gamma[1]), p=p),
        A.RandomBrightnessContrast(brightness_contrast, brightness_contrast, p=p),
        A.GaussianBlur(sigma_limit=tuple(blur_sigma), p=p),
        A.ImageCompression(quality_range=tuple(jpeg_quality), p=p),
        A.Downscale(scale_range=tuple(downscale), p=p),
        A.GaussNoise(std_range=tuple(noise_std), p=p),
    ], seed=0)
