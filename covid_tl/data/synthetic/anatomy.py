"""Patient-level anatomy and image-level framing of the phantoms, in anatomy units.

x runs across the body (0 = midline, image right positive), y down the body; one unit is the
body scale in pixels. The thorax spans about y = 0.1 .. 0.85. Side 0 is the patient's right
lung (image left, as a PA film is read), side 1 the patient's left.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from covid_tl.data.synthetic import streams
from covid_tl.data.synthetic.raster import ONE

_MEDIAL_DOME = 0.85  # diaphragm height at the medial end, relative to the dome's peak


@dataclass(frozen=True)
class Anatomy:
    """Patient-level shape parameters, shared by all of a patient's images (follow-ups)."""

    scale: float
    tissue: float
    lung_depth: float
    neck: float
    shoulder: float
    shoulder_y: float
    chest: float
    apex_y: tuple[float, float]
    base_y: tuple[float, float]
    dome: tuple[float, float]
    medial: tuple[float, float]
    lateral: tuple[float, float]
    apex_d: tuple[float, float]
    heart: tuple[float, float]
    spine: float
    rib_y0: float
    rib_step: float
    rib_rise: float
    rib_drop: float
    clavicle_y: float
    vessels: tuple[np.ndarray, ...]  # polylines (k, 2) in anatomy units


def draw_anatomy(rng: np.random.Generator) -> Anatomy:
    """Patient-level shape draws; the right lung is wider, the left one carries the heart."""
    u = rng.uniform
    base = u(0.78, 0.88)
    apex = u(0.10, 0.16)
    medial = u(0.05, 0.08)
    lateral_l = u(0.31, 0.38)
    params = dict(
        scale=u(0.86, 1.04),
        tissue=u(0.50, 0.58),
        lung_depth=u(0.34, 0.40),
        neck=u(0.10, 0.13),
        shoulder=u(0.47, 0.53),
        shoulder_y=u(0.0, 0.05),
        chest=u(0.42, 0.46),
        apex_y=(apex + u(-0.01, 0.01), apex + u(-0.01, 0.01)),
        # the right hemidiaphragm sits higher (liver), the right lung is wider
        base_y=(base - u(0.01, 0.04), base),
        dome=(u(0.08, 0.12), u(0.07, 0.11)),
        medial=(medial + u(0.0, 0.01), medial),
        lateral=(lateral_l + u(0.015, 0.035), lateral_l),
        apex_d=(u(0.16, 0.19), u(0.15, 0.18)),
        heart=(u(0.01, 0.03), u(0.07, 0.13)),
        spine=u(0.026, 0.034),
        rib_y0=u(0.08, 0.11),
        rib_step=u(0.068, 0.078),
        rib_rise=u(0.025, 0.04),
        rib_drop=u(0.12, 0.16),
        clavicle_y=u(0.11, 0.14),
    )
    vessels = []
    for side, sign in ((0, -1.0), (1, 1.0)):
        hilum = np.array([sign * (params["medial"][side] + params["heart"][side] * 0.3 + 0.03), 0.44])
        for _ in range(7):
            angle = u(-1.2, 1.3) + np.cumsum(rng.normal(0.0, 0.25, 3))  # lateral, up (-) or down (+)
            step = np.stack([sign * np.cos(angle), np.sin(angle)], 1) * (u(0.12, 0.26) / 3)
            vessels.append(np.vstack([hilum, hilum + np.cumsum(step, 0)]))
    return Anatomy(**params, vessels=tuple(vessels))


def _rise(v: np.ndarray, knee: float) -> np.ndarray:
    """0 -> 1 with a vertical start (a rounded apex), flat after the knee."""
    return np.sqrt(np.sin(0.5 * np.pi * np.clip(v / knee, 0.0, 1.0)))


def dome_profile(t: np.ndarray) -> np.ndarray:
    """Diaphragm height from the costophrenic angle (t=0, sharp) to the medial end (t=1).

    Peaks at 1 about 60% of the way in and sags medially to the cardiophrenic angle.
    """
    peak = 0.6
    up = np.sin(0.5 * np.pi * np.clip(t / peak, 0.0, 1.0)) ** 0.6
    down = 1.0 - (1.0 - _MEDIAL_DOME) * np.clip((t - peak) / (1 - peak), 0.0, 1.0) ** 2
    return np.where(t <= peak, up, down)


def lung_edges(anatomy: Anatomy, side: int, n: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Lateral and medial edges as (d, y) rows, d = distance from the midline, top to bottom."""
    apex, base, dome = anatomy.apex_y[side], anatomy.base_y[side], anatomy.dome[side]
    apex_d = anatomy.apex_d[side]
    v = np.linspace(0.0, 1.0, n)
    lat = np.stack([apex_d + (anatomy.lateral[side] - apex_d) * _rise(v, 0.8),
                    apex + (base - apex) * v], 1)
    # medial edge: mediastinum, then the heart border bulging into the lower lung (concave edge)
    s = np.clip((v - 0.42) / 0.58, 0.0, 1.0)
    bulge = anatomy.heart[side] * np.sqrt(1.0 - (1.0 - s) ** 2)
    med = np.stack([apex_d - (apex_d - anatomy.medial[side]) * _rise(v, 0.3) + bulge,
                    apex + (base - dome * _MEDIAL_DOME - apex) * v], 1)
    return lat, med


def mirror(side: int) -> np.ndarray:
    return np.array([-1.0 if side == 0 else 1.0, 1.0])


def lung_outline(anatomy: Anatomy, side: int, n: int = 20) -> np.ndarray:
    """Closed outline (x, y): down the lateral edge, along the diaphragm, up the medial edge."""
    lat, med = lung_edges(anatomy, side, n)
    t = np.linspace(0.0, 1.0, n)[1:-1]
    d0, d1 = lat[-1, 0], med[-1, 0]
    dome = anatomy.base_y[side] - anatomy.dome[side] * dome_profile(t)
    diaphragm = np.stack([d0 + (d1 - d0) * t, dome], 1)
    return np.vstack([lat, diaphragm, med[::-1]]) * mirror(side)


def body_outline(anatomy: Anatomy) -> np.ndarray:
    """Neck, sloping shoulders and chest wall, extended past the image so only the sides show."""
    a = anatomy
    t = np.linspace(0.0, 1.0, 8)
    sy = a.shoulder_y
    slope = np.stack([a.neck + (a.shoulder - a.neck) * t, sy + 0.02 + 0.10 * t**1.6], 1)
    arm = np.array([[a.shoulder + 0.015, sy + 0.17], [a.shoulder, sy + 0.26]])
    wall = np.array([[a.chest + 0.01, 0.40], [a.chest + 0.015, 0.62], [a.chest, 0.85],
                     [a.chest - 0.02, 1.2], [a.chest - 0.03, 2.0]])
    right = np.vstack([[a.neck * 0.95, -1.0], slope, arm, wall])
    return np.vstack([right, right[::-1] * np.array([-1.0, 1.0])])


def rib_paths(anatomy: Anatomy, side: int, count: int = 9) -> list[np.ndarray]:
    """Posterior ribs: from the spine up a little, then sweeping down to the chest wall."""
    t = np.linspace(0.0, 1.0, 12)
    start, end = anatomy.spine + 0.005, anatomy.chest + 0.01
    d = start + (end - start) * t
    paths = []
    for k in range(count):
        y0 = anatomy.rib_y0 + k * anatomy.rib_step
        y = y0 - anatomy.rib_rise * np.sin(np.pi * t * 0.9) + anatomy.rib_drop * (1 + 0.04 * k) * t**2
        paths.append(np.stack([d, y], 1) * mirror(side))
    return paths


def anterior_rib_paths(anatomy: Anatomy, side: int, count: int = 6) -> list[np.ndarray]:
    """Anterior ribs (fainter): from the chest wall down and in towards the sternum."""
    t = np.linspace(0.0, 1.0, 10)
    d = anatomy.chest - (anatomy.chest - 0.12) * t
    paths = []
    for k in range(count):
        y = anatomy.rib_y0 + 0.05 + k * anatomy.rib_step * 1.1 + 0.11 * t - 0.03 * np.sin(np.pi * t)
        paths.append(np.stack([d, y], 1) * mirror(side))
    return paths


def clavicle_path(anatomy: Anatomy, side: int) -> np.ndarray:
    """Medial end low by the sternum, rising laterally with a gentle S."""
    t = np.linspace(0.0, 1.0, 8)
    y = anatomy.clavicle_y - 0.05 * t + 0.012 * np.sin(2 * np.pi * t)
    return np.stack([0.045 + 0.27 * t, y], 1) * mirror(side)


@dataclass(frozen=True)
class Patient:
    """A patient's anatomy and its shapes (anatomy units), built once, shared by follow-ups."""

    anatomy: Anatomy
    shapes: dict[str, tuple[np.ndarray, ...]]
    edges: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]  # per side

    def in_pixels(self, frame: Frame) -> dict[str, list[np.ndarray]]:
        """Every shape in fixed-point pixels, with one matrix product for them all."""
        names = list(self.shapes)
        parts = [p for name in names for p in self.shapes[name]]
        fixed = frame.fixed(np.concatenate(parts))
        pieces = np.split(fixed, np.cumsum([len(p) for p in parts])[:-1])
        out, k = {}, 0
        for name in names:
            n = len(self.shapes[name])
            out[name], k = pieces[k: k + n], k + n
        return out


@functools.lru_cache(maxsize=1024)
def patient_model(seed: int, patient: int) -> Patient:
    """The patient's anatomy from its own stream: cached, since follow-ups share it."""
    a = draw_anatomy(streams.rng(seed, streams.PATIENT, patient))
    sp = a.spine
    shapes = {
        "body": (body_outline(a),),
        "lungs": (lung_outline(a, 0), lung_outline(a, 1)),
        "spine": (np.array([[-sp, -1.0], [sp, -1.0], [sp * 1.15, 2.0], [-sp * 1.15, 2.0]]),),
        "ribs": tuple(rib_paths(a, 0) + rib_paths(a, 1)),
        "anterior_ribs": tuple(anterior_rib_paths(a, 0) + anterior_rib_paths(a, 1)),
        "clavicles": (clavicle_path(a, 0), clavicle_path(a, 1)),
        "vessels": a.vessels,
        "discs": tuple(np.array([[-sp, y], [sp, y]]) for y in np.arange(0.02, 1.2, 0.052)),
    }
    for group in shapes.values():
        for arr in group:
            arr.setflags(write=False)
    edges = (lung_edges(a, 0, 40), lung_edges(a, 1, 40))
    return Patient(a, shapes, edges)


@dataclass(frozen=True)
class Frame:
    """Image-level framing: size and the affine map from anatomy units to pixels."""

    height: int
    width: int
    unit: float  # pixels per anatomy unit
    angle: float  # degrees, the patient's tilt
    affine: np.ndarray  # (2, 3)

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    def to_pixels(self, pts: np.ndarray) -> np.ndarray:
        return pts @ self.affine[:, :2].T + self.affine[:, 2]

    def fixed(self, pts: np.ndarray) -> np.ndarray:
        """Pixels as cv2 fixed point (SHIFT fractional bits), for sub-pixel drawing."""
        return np.rint(self.to_pixels(pts) * ONE).astype(np.int32)


def draw_frame(rng: np.random.Generator, anatomy: Anatomy, image_size: int, size_jitter: float) -> Frame:
    """Detector size, patient position and tilt vary from exposure to exposure."""
    h = max(16, int(round(image_size * (1 + rng.uniform(-size_jitter, size_jitter)))))
    w = max(16, int(round(image_size * (1 + rng.uniform(-size_jitter, size_jitter)))))
    unit = min(h, w) * anatomy.scale * rng.uniform(0.98, 1.02)
    angle = rng.uniform(-2.5, 2.5)
    cx = w / 2 + rng.uniform(-0.02, 0.02) * w
    cy = h / 2 + rng.uniform(-0.02, 0.02) * h
    rad = math.radians(angle)
    lin = unit * np.array([[math.cos(rad), -math.sin(rad)], [math.sin(rad), math.cos(rad)]])
    offset = np.array([cx, cy]) - lin @ np.array([0.0, 0.5])
    return Frame(h, w, unit, angle, np.hstack([lin, offset[:, None]]))
