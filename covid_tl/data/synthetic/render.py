"""One phantom's pixels: soft tissue, lungs, ground-glass opacities, bones, exposure."""
from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from covid_tl.data.synthetic.anatomy import Frame, Patient, draw_frame, mirror
from covid_tl.data.synthetic.raster import ONE, SHIFT, blur, fill, lines, smooth_noise, wide_blur

#: Opacity counts as noticeable where it raises the density by at least this much (the lungs
#: are ~0.35 darker than soft tissue, so this is ~1/8 of the way to soft-tissue grey).
OPACITY_VISIBLE = 0.045

#: Line layers: (name, width in anatomy units, density added).
LINE_LAYERS: tuple[tuple[str, float, float], ...] = (
    ("ribs", 0.017, 0.055),
    ("anterior_ribs", 0.015, 0.03),
    ("clavicles", 0.028, 0.15),
    ("vessels", 0.010, 0.09),
    ("discs", 0.012, -0.05),
)


Blob = tuple[float, float, float, float, float]  # x, y, rx, ry (anatomy units), weight


def opacity_blobs(rng: np.random.Generator, patient: Patient) -> list[Blob]:
    """Ground-glass blobs (x, y, rx, ry, weight): bilateral, peripheral, mostly lower zone."""
    a = patient.anatomy
    blobs = []
    for side in (0, 1):
        lat, med = patient.edges[side]
        sign = mirror(side)[0]
        apex, base, dome = a.apex_y[side], a.base_y[side], a.dome[side]
        for _ in range(int(rng.integers(3, 6))):
            v = 0.35 + 0.55 * math.sqrt(rng.uniform())  # biased towards the base
            y = apex + v * (base - 0.6 * dome - apex)
            d_lat = float(np.interp(y, lat[:, 1], lat[:, 0]))
            d_med = float(np.interp(y, med[:, 1], med[:, 0]))
            d = d_med + rng.uniform(0.6, 0.95) * (d_lat - d_med)  # peripheral
            r = rng.uniform(0.055, 0.095)
            rx, ry = r * rng.uniform(0.8, 1.2), r * rng.uniform(0.8, 1.3)
            blobs.append((sign * d, y, rx, ry, rng.uniform(0.7, 1.0)))
    return blobs


def opacity_field(frame: Frame, blobs: Sequence[Blob], lungs: np.ndarray,
                  patchy: np.ndarray) -> np.ndarray:
    """Soft blob field in [0, 1], confined to the (soft) lung fields."""
    canvas = np.zeros(frame.shape, np.float32)
    centres = frame.fixed(np.array([b[:2] for b in blobs]))
    for (cx, cy), (_, _, rx, ry, weight) in zip(centres.tolist(), blobs):
        axes = (int(round(rx * frame.unit * ONE)), int(round(ry * frame.unit * ONE)))
        cv2.ellipse(canvas, (cx, cy), axes, frame.angle, 0, 360, float(weight), -1, cv2.LINE_8, SHIFT)
    canvas = wide_blur(canvas, 0.03 * frame.unit)
    field = np.clip(canvas * 1.8, 0.0, 1.0) * (0.82 + 0.18 * np.clip(patchy, -1.0, 1.0))
    return field * lungs


def render_phantom(patient: Patient, rng: np.random.Generator, covid: bool, image_size: int,
                   size_jitter: float, opacity: tuple[float, float],
                   noise: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(uint8 image, lung mask, opacity mask): densities (bright = dense), then an exposure.

    Every image draws the same random numbers whatever its label, so a COVID-19 image differs
    from its no-finding counterfactual only by the opacities.
    """
    a = patient.anatomy
    frame = draw_frame(rng, a, image_size, size_jitter)
    shape, unit = frame.shape, frame.unit
    px = patient.in_pixels(frame)

    # soft tissue with smooth edges, thinner (darker) towards the sides, denser at the heart
    body = fill(shape, px["body"]).astype(np.float32) * (1.0 / 255.0)
    heart = np.zeros(shape, np.float32)
    c = frame.fixed(np.array([0.04 + a.heart[1] * 0.3, 0.66]))
    cv2.ellipse(heart, (int(c[0]), int(c[1])), (int(0.2 * unit * ONE), int(0.13 * unit * ONE)),
                frame.angle, 0, 360, 0.25, -1, cv2.LINE_8, SHIFT)
    body_edge = blur(body, 0.015 * unit)
    thickness = wide_blur(body + heart, 0.06 * unit)
    density = 0.03 + (a.tissue * (0.72 + 0.28 * thickness) - 0.03) * body_edge

    # lungs: air subtracts density, most in the middle of each field
    lung_u8 = fill(shape, px["lungs"])
    lung_mask = lung_u8 > 0
    lungs = blur(lung_u8.astype(np.float32) * (1.0 / 255.0), 0.008 * unit + 0.3)
    core = wide_blur(lungs, 0.06 * unit)
    texture = smooth_noise(rng, shape, 7)
    air = a.lung_depth * lungs * (0.6 + 0.4 * core) * (1.0 + 0.05 * texture)

    # ground-glass opacity: part of the air replaced by soft tissue (drawn for every image)
    blobs = opacity_blobs(rng, patient)
    strength = rng.uniform(*opacity)
    field = opacity_field(frame, blobs, lungs, smooth_noise(rng, shape, 9))
    if covid:
        # relative to the full air depth, so peripheral haze (where the lung is thin) still shows
        raise_by = np.minimum(air, strength * field * (a.lung_depth * lungs))
        air = air - raise_by
        opacity_mask = lung_mask & (raise_by >= OPACITY_VISIBLE)
    else:
        opacity_mask = np.zeros_like(lung_mask)
    density = density - air

    # bones and vessels on top
    spine = fill(shape, px["spine"], aa=True).astype(np.float32) * (0.19 / 255.0)
    extra = spine
    for name, width, weight in LINE_LAYERS:
        layer = lines(shape, px[name], int(round(width * unit)))
        extra = extra + weight * (layer * lungs if name == "vessels" else layer)
    density = density + blur(extra, 0.5) * body_edge

    # exposure: gain, gamma and offset per image, then detector blur and noise
    gain, gamma, offset = rng.uniform(0.9, 1.15), rng.uniform(0.8, 1.25), rng.uniform(-0.04, 0.05)
    img = offset + gain * np.power(np.clip(density, 0.0, 1.0), gamma)
    img = blur(img.astype(np.float32), rng.uniform(0.3, 0.8) * max(1.0, min(shape) / 128))
    img = img + noise * rng.standard_normal(shape, dtype=np.float32)
    image = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    return image, lung_mask, opacity_mask
