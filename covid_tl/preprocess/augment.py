"""Random training augmentation (albumentations) on uint8 images at the backbone's input size.

The study used small random rotations, shear and zoom; brightness/contrast is an option.
Deterministic preprocessing (crop, inpainting) happens before this and is cached; this part is
random, so it runs every time an image is drawn for training, never for evaluation.
"""
from __future__ import annotations

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
