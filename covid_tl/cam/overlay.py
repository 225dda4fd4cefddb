"""Heatmap pictures: pure numpy/OpenCV, image and CAM in, RGB uint8 out."""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from pytorch_grad_cam.utils.image import show_cam_on_image

from covid_tl.grid import grid, labelled

OVERLAYS = ("blend", "multiply", "mask")


def fit(cam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The CAM resized to an image's (H, W)."""
    if cam.shape == shape:
        return cam
    return cv2.resize(cam.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def heat(cam: np.ndarray) -> np.ndarray:
    """JET colours of a [0, 1] map, RGB uint8."""
    return cv2.applyColorMap(np.uint8(np.clip(cam, 0, 1) * 255), cv2.COLORMAP_JET)[:, :, ::-1]


def overlay(image: np.ndarray, cam: np.ndarray, kind: str = "blend", alpha: float = 0.4) -> np.ndarray:
    """One of the study's three looks, RGB uint8 at the image's size.

    - blend: transparent superposition (pytorch-grad-cam's, brightest pixel scaled to white);
      dark lungs stay visible under the colour.
    - multiply: the image times the heatmap (the study's first look; hides dark lungs).
    - mask: the heatmap alone.
    """
    cam = np.clip(fit(cam, image.shape[:2]), 0, 1)
    gray = np.repeat(image[:, :, None], 3, axis=2).astype(np.float32)
    if kind == "blend":
        return show_cam_on_image(gray / 255, cam, use_rgb=True, image_weight=1 - alpha)
    if kind == "multiply":
        out = gray * cam[:, :, None]
    elif kind == "mask":
        out = heat(cam).astype(np.float32)
    else:
        raise ValueError(f"unknown overlay {kind!r}; valid: {', '.join(OVERLAYS)}")
    return np.uint8(np.clip(out, 0, 255))


def cam_grid(
    images: Sequence[np.ndarray],
    cams: Sequence[np.ndarray],
    captions: Sequence[Sequence[str]],
    kind: str = "blend",
    alpha: float = 0.4,
    tile: int = 160,
    columns: int = 4,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """(labelled grid, one overlay per image) at `tile` pixels a side: small inputs enlarged."""
    overlays = []
    for image in images:
        shown = cv2.resize(image, (tile, tile), interpolation=cv2.INTER_AREA if image.shape[0] > tile else cv2.INTER_LINEAR)
        overlays.append(shown)
    overlays = [overlay(shown, cam, kind, alpha) for shown, cam in zip(overlays, cams)]
    return grid([labelled(o, lines) for o, lines in zip(overlays, captions)], columns), overlays
