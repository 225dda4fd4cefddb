"""Heatmap pictures: pure numpy/OpenCV, image and CAM in, RGB uint8 out."""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from pytorch_grad_cam.utils.image import show_cam_on_image

from covid_tl.reporting.grid import RGB, colour_bar, fit_scale, grid, labelled, legend

OVERLAYS = ("blend", "multiply", "mask")
OUTLINE: RGB = (255, 255, 255)  # the lung outline drawn over a tile
METHOD_NAMES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "xgradcam": "XGrad-CAM", "layercam": "LayerCAM",
                "eigencam": "EigenCAM", "scorecam": "Score-CAM"}


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


def outline(picture: np.ndarray, region: np.ndarray | None, colour: RGB = OUTLINE) -> np.ndarray:
    """`picture` with the edge of `region` (a bool mask on any grid, resized to it) drawn on."""
    if region is None or not region.any():
        return picture
    height, width = picture.shape[:2]
    mask = cv2.resize(region.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return cv2.drawContours(picture.copy(), contours, -1, colour, max(1, round(width / 160)))


def colour_scale(kind: str) -> np.ndarray:
    """(256, 3) RGB colours an overlay gives CAM values 0..1: JET, or grey for multiply."""
    if kind == "multiply":
        return np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    return heat(np.linspace(0, 1, 256, dtype=np.float32)[None, :])[0]


def cam_title(method: str, layer: str | None, target: str, suffix: str = "") -> str:
    """What a CAM picture shows: the method, the layer it was taken at, the call it explains."""
    explains = {"predicted": "the predicted class", "covid": "COVID-19", "no_finding": "no finding"}.get(target, target)
    return f"{METHOD_NAMES.get(method, method)} at layer {layer or '?'}, explaining {explains}{suffix}"


def cam_grid(
    images: Sequence[np.ndarray],
    cams: Sequence[np.ndarray],
    captions: Sequence[Sequence[str]],
    kind: str = "blend",
    alpha: float = 0.4,
    tile: int = 320,
    columns: int = 4,
    title: str | None = None,
    colours: Sequence[Sequence[RGB]] | None = None,
    key: Sequence[tuple[RGB, str]] | None = None,
    lungs: Sequence[np.ndarray | None] | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """(grid with captions, a colour bar and `title`, one overlay per image) at `tile` pixels a
    side: small inputs enlarged. `colours`: per image, one colour per caption line, explained
    by `key` (colour, text) in a legend below. `lungs`: per image, the lung fields on its
    (square) input grid, outlined on the overlay."""
    overlays = []
    for image in images:
        shown = cv2.resize(image, (tile, tile), interpolation=cv2.INTER_AREA if image.shape[0] > tile else cv2.INTER_LINEAR)
        overlays.append(shown)
    overlays = [overlay(shown, cam, kind, alpha) for shown, cam in zip(overlays, cams)]
    if lungs is not None:
        overlays = [outline(o, region) for o, region in zip(overlays, lungs)]
    scale = fit_scale([line for lines in captions for line in lines], tile, largest=0.75)
    tiles = [labelled(o, lines, scale, colours=colours[i] if colours else None)
             for i, (o, lines) in enumerate(zip(overlays, captions))]
    picture = grid(tiles, columns)
    picture = np.hstack([picture, colour_bar(picture.shape[0], colour_scale(kind), "CAM", min(scale, 0.6))])
    if key:
        picture = np.vstack([picture, legend(key, picture.shape[1], min(scale, 0.6))])
    if title:
        picture = labelled(picture, [title], fit_scale([title], picture.shape[1], largest=0.8))
    return picture, overlays
