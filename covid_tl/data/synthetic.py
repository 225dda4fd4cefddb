"""Seeded synthetic "phantom" chest X-rays: the embedded default data source.

The phantoms exist so that the whole pipeline (splits, training, transfer learning, shortcut
audits) can run and be tested without downloading anything. They are built to have the
properties the research questions need, not photo-realism:

* a label signal with a known location: COVID-19 images carry bilateral, peripheral,
  lower-zone ground-glass opacities inside the lung fields (``opacity_mask`` says where);
* a controllable shortcut: burned-in marks (letters, arrows, text) planted per class with the
  probabilities of a :class:`ShortcutSpec`, with their exact pixels (``mark_mask``), so that
  saliency and "does the model read the marks?" checks have ground truth;
* patient structure: anatomy is drawn per patient, so follow-up images look alike and a split
  that leaks patients is measurably optimistic.

Everything is a pure function of ``(seed, index)``: every random draw comes from a
``SeedSequence`` keyed by (stream, patient[, image]), never from global state, so DataLoader
workers may render images in any order. Only numpy and OpenCV are used (no torch).
"""
from __future__ import annotations

import argparse
import functools
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields

import cv2
import numpy as np
import pandas as pd

from covid_tl.labels import LABELS, POSITIVE
from covid_tl.data.manifest import Manifest

SOURCE = "synthetic"
VIEW = "PA"
MARK_KINDS: tuple[str, ...] = ("letter", "arrow", "text")
MARK_POSITIONS: tuple[str, ...] = ("corner", "mid")
LETTERS: tuple[str, ...] = ("L", "R", "A", "B", "C", "D")
WORDS: tuple[str, ...] = ("PORTABLE", "AP", "SUPINE", "ERECT")

# Stream tags: the first spawn-key word, so that the streams never share random numbers.
_S_LABELS, _S_COUNTS, _S_MARKED, _S_PATIENT, _S_IMAGE, _S_MARKS = range(6)
_SHIFT = 4  # sub-pixel bits for cv2 drawing
_ONE = 1 << _SHIFT
_FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
)
#: Opacity counts as noticeable where it raises the density by at least this much (the lungs
#: are ~0.35 darker than soft tissue, so this is ~1/8 of the way to soft-tissue grey).
OPACITY_VISIBLE = 0.045
_MEDIAL_DOME = 0.85  # diaphragm height at the medial end, relative to the dome's peak


# --------------------------------------------------------------------------------------------
# Public records
# --------------------------------------------------------------------------------------------


def _as_tuple(value: object, name: str) -> tuple[str, ...]:
    """Hydra hands over ListConfig, the CLI sometimes a bare string; normalise both."""
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, Iterable):
        raise ValueError(f"{name} must be a list of strings, got {value!r}")
    return tuple(str(v) for v in value)


@dataclass(frozen=True)
class ShortcutSpec:
    """Which images carry burned-in marks, per class: the knob that plants a shortcut."""

    p_covid: float = 0.0  # probability a COVID-19 image carries marks
    p_no_finding: float = 0.0  # probability a no-finding image carries marks
    kinds: tuple[str, ...] = MARK_KINDS
    positions: tuple[str, ...] = MARK_POSITIONS
    max_marks: int = 2

    def __post_init__(self) -> None:
        for name in ("p_covid", "p_no_finding"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ValueError(f"ShortcutSpec.{name} must be a number in [0, 1], got {value!r}")
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"ShortcutSpec.{name} must be in [0, 1], got {value!r}")
            object.__setattr__(self, name, float(value))
        for name, valid in (("kinds", MARK_KINDS), ("positions", MARK_POSITIONS)):
            values = _as_tuple(getattr(self, name), f"ShortcutSpec.{name}")
            if not values:
                raise ValueError(f"ShortcutSpec.{name} is empty; choose from {list(valid)}")
            unknown = [v for v in values if v not in valid]
            if unknown:
                raise ValueError(
                    f"ShortcutSpec.{name} has unknown value(s) {unknown}; valid: {list(valid)}"
                )
            object.__setattr__(self, name, values)
        mm = self.max_marks
        if isinstance(mm, bool) or not isinstance(mm, (int, np.integer)) or mm < 1:
            raise ValueError(f"ShortcutSpec.max_marks must be an integer >= 1, got {mm!r}")
        object.__setattr__(self, "max_marks", int(mm))

    @classmethod
    def coerce(cls, value: ShortcutSpec | Mapping | None) -> ShortcutSpec:
        """A spec from a spec, a mapping (e.g. an omegaconf DictConfig) or None (no marks)."""
        if value is None:
            return cls()
        if isinstance(value, ShortcutSpec):
            return value
        if isinstance(value, Mapping):
            valid = [f.name for f in fields(cls)]
            items = {str(k): v for k, v in value.items() if str(k) != "_target_"}
            unknown = sorted(set(items) - set(valid))
            if unknown:
                raise ValueError(f"shortcut has unknown key(s) {unknown}; valid keys: {valid}")
            return cls(**items)
        raise ValueError(f"shortcut must be a ShortcutSpec, a mapping or None, got {value!r}")

    def probability(self, label: str) -> float:
        return self.p_covid if label == POSITIVE else self.p_no_finding


@dataclass(frozen=True)
class Mark:
    """One burned-in mark; bbox is (y0, x0, y1, x1) with exclusive ends."""

    kind: str
    position: str
    bbox: tuple[int, int, int, int]


@dataclass(frozen=True)
class Phantom:
    """One rendered image with its ground truth (lungs, marks, opacities)."""

    image: np.ndarray  # uint8 (H, W)
    lung_mask: np.ndarray  # bool (H, W): the lung fields
    mark_mask: np.ndarray  # bool (H, W): union of mark pixels (all False when unmarked)
    opacity_mask: np.ndarray  # bool (H, W): where the ground-glass opacity is noticeable
    marks: tuple[Mark, ...]
    label: str  # "covid" or "no_finding"


# --------------------------------------------------------------------------------------------
# Random streams
# --------------------------------------------------------------------------------------------


def _rng(seed: int, *key: int) -> np.random.Generator:
    """A generator for one (stream, patient, image) key: order-free and worker-safe."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tuple(int(k) for k in key)))


# --------------------------------------------------------------------------------------------
# Anatomy (patient level) and framing (image level)
# --------------------------------------------------------------------------------------------
# Anatomy units: x across the body (0 = midline, image right positive), y down the body; one
# unit is the body scale in pixels. The thorax spans about y = 0.1 .. 0.85. Side 0 is the
# patient's right lung (image left, as a PA film is read), side 1 the patient's left.


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


def _mirror(side: int) -> np.ndarray:
    return np.array([-1.0 if side == 0 else 1.0, 1.0])


def lung_outline(anatomy: Anatomy, side: int, n: int = 20) -> np.ndarray:
    """Closed outline (x, y): down the lateral edge, along the diaphragm, up the medial edge."""
    lat, med = lung_edges(anatomy, side, n)
    t = np.linspace(0.0, 1.0, n)[1:-1]
    d0, d1 = lat[-1, 0], med[-1, 0]
    dome = anatomy.base_y[side] - anatomy.dome[side] * dome_profile(t)
    diaphragm = np.stack([d0 + (d1 - d0) * t, dome], 1)
    return np.vstack([lat, diaphragm, med[::-1]]) * _mirror(side)


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
        paths.append(np.stack([d, y], 1) * _mirror(side))
    return paths


def anterior_rib_paths(anatomy: Anatomy, side: int, count: int = 6) -> list[np.ndarray]:
    """Anterior ribs (fainter): from the chest wall down and in towards the sternum."""
    t = np.linspace(0.0, 1.0, 10)
    d = anatomy.chest - (anatomy.chest - 0.12) * t
    paths = []
    for k in range(count):
        y = anatomy.rib_y0 + 0.05 + k * anatomy.rib_step * 1.1 + 0.11 * t - 0.03 * np.sin(np.pi * t)
        paths.append(np.stack([d, y], 1) * _mirror(side))
    return paths


def clavicle_path(anatomy: Anatomy, side: int) -> np.ndarray:
    """Medial end low by the sternum, rising laterally with a gentle S."""
    t = np.linspace(0.0, 1.0, 8)
    y = anatomy.clavicle_y - 0.05 * t + 0.012 * np.sin(2 * np.pi * t)
    return np.stack([0.045 + 0.27 * t, y], 1) * _mirror(side)


#: Line layers: (name, width in anatomy units, density added).
LINE_LAYERS: tuple[tuple[str, float, float], ...] = (
    ("ribs", 0.017, 0.055),
    ("anterior_ribs", 0.015, 0.03),
    ("clavicles", 0.028, 0.15),
    ("vessels", 0.010, 0.09),
    ("discs", 0.012, -0.05),
)


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
    a = draw_anatomy(_rng(seed, _S_PATIENT, patient))
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
        """Pixels as cv2 fixed point (_SHIFT fractional bits), for sub-pixel drawing."""
        return np.rint(self.to_pixels(pts) * _ONE).astype(np.int32)


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


# --------------------------------------------------------------------------------------------
# Raster helpers
# --------------------------------------------------------------------------------------------


def fill(shape: tuple[int, int], polys: Sequence[np.ndarray], aa: bool = False) -> np.ndarray:
    """uint8 canvas with fixed-point polygons filled with 255."""
    canvas = np.zeros(shape, np.uint8)
    cv2.fillPoly(canvas, list(polys), 255, cv2.LINE_AA if aa else cv2.LINE_8, _SHIFT)
    return canvas


def lines(shape: tuple[int, int], paths: Sequence[np.ndarray], thickness: int) -> np.ndarray:
    """float32 canvas in [0, 1] with anti-aliased fixed-point polylines."""
    canvas = np.zeros(shape, np.uint8)
    cv2.polylines(canvas, list(paths), False, 255, max(1, thickness), cv2.LINE_AA, _SHIFT)
    return canvas.astype(np.float32) * (1.0 / 255.0)


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with sigma in pixels (no-op below a tenth of a pixel)."""
    if sigma < 0.1:
        return img
    return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


def wide_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """A wide Gaussian blur done at reduced resolution: same look, a fraction of the time."""
    factor = int(min(4, sigma // 2))
    h, w = img.shape
    if factor < 2 or min(h, w) < 8 * factor:
        return blur(img, sigma)
    small = cv2.resize(img, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_AREA)
    small = blur(small, sigma / factor)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int = 6) -> np.ndarray:
    """Low-frequency noise (about unit variance) for lung texture and patchy opacities."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


# --------------------------------------------------------------------------------------------
# Opacities
# --------------------------------------------------------------------------------------------


Blob = tuple[float, float, float, float, float]  # x, y, rx, ry (anatomy units), weight


def opacity_blobs(rng: np.random.Generator, patient: Patient) -> list[Blob]:
    """Ground-glass blobs (x, y, rx, ry, weight): bilateral, peripheral, mostly lower zone."""
    a = patient.anatomy
    blobs = []
    for side in (0, 1):
        lat, med = patient.edges[side]
        sign = _mirror(side)[0]
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
        axes = (int(round(rx * frame.unit * _ONE)), int(round(ry * frame.unit * _ONE)))
        cv2.ellipse(canvas, (cx, cy), axes, frame.angle, 0, 360, float(weight), -1, cv2.LINE_8, _SHIFT)
    canvas = wide_blur(canvas, 0.03 * frame.unit)
    field = np.clip(canvas * 1.8, 0.0, 1.0) * (0.82 + 0.18 * np.clip(patchy, -1.0, 1.0))
    return field * lungs


# --------------------------------------------------------------------------------------------
# Marks
# --------------------------------------------------------------------------------------------


def _stroke(thickness: int) -> int:
    """Hairlines drawn anti-aliased would have no saturated core, so they are drawn solid."""
    return cv2.LINE_AA if thickness >= 2 else cv2.LINE_8


def _crop(canvas: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(canvas)
    if len(ys) == 0:
        return canvas[:1, :1]
    return canvas[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]


def text_sprite(text: str, font: int, height: float, max_width: float) -> np.ndarray:
    """Alpha sprite (uint8) of Hershey text with cap height ~`height` px, cropped to its ink."""
    (tw, th), baseline = cv2.getTextSize(text, font, 1.0, 1)
    scale = min(height / th, max_width / tw)
    thickness = max(1, int(round(scale * th / 7)))
    pad = thickness + 2
    canvas = np.zeros((int(scale * (th + baseline)) + 2 * pad + 2, int(scale * tw) + 2 * pad + 2),
                      np.uint8)
    origin = (pad, int(round(scale * th)) + pad)
    cv2.putText(canvas, text, origin, font, scale, 255, thickness, _stroke(thickness))
    # OpenCV 5 renders Hershey fonts anti-aliased whatever the line type, so small text would
    # have no saturated core; doubling the coverage (saturating) gives burned-in-looking strokes
    return _crop(cv2.add(canvas, canvas))


def arrow_sprite(length: float, angle: float, thickness: int) -> np.ndarray:
    """Alpha sprite (uint8) of an arrow (shaft and head) pointing along `angle`."""
    size = int(length + 4 * thickness + 8)
    c = size / 2
    dx, dy = math.cos(angle) * length / 2, math.sin(angle) * length / 2
    canvas = np.zeros((size, size), np.uint8)
    p0 = (int(round((c - dx) * _ONE)), int(round((c - dy) * _ONE)))
    p1 = (int(round((c + dx) * _ONE)), int(round((c + dy) * _ONE)))
    cv2.arrowedLine(canvas, p0, p1, 255, thickness, _stroke(thickness), _SHIFT, 0.35)
    return _crop(canvas)


def mark_sprite(rng: np.random.Generator, kind: str, height: int, width: int) -> np.ndarray:
    """One mark's alpha sprite; its size scales with the image."""
    short = min(height, width)
    if kind == "letter":
        text = LETTERS[int(rng.integers(len(LETTERS)))]
        font = _FONTS[int(rng.integers(len(_FONTS)))]
        return text_sprite(text, font, rng.uniform(0.06, 0.12) * height, 0.4 * width)
    if kind == "text":
        choice = int(rng.integers(len(WORDS) + 1))
        if choice == len(WORDS):
            digits = int(rng.integers(2, 5))
            text = str(int(rng.integers(10 ** (digits - 1), 10**digits)))
        else:
            text = WORDS[choice]
        font = _FONTS[int(rng.integers(2))]  # the plain fonts, like scanner overlays
        return text_sprite(text, font, rng.uniform(0.05, 0.08) * height, 0.7 * width)
    if kind == "arrow":
        length = rng.uniform(0.12, 0.22) * short
        thickness = max(1, int(round(rng.uniform(0.010, 0.018) * short)))
        return arrow_sprite(length, rng.uniform(0, 2 * math.pi), thickness)
    raise ValueError(f"unknown mark kind {kind!r}; valid: {list(MARK_KINDS)}")


def place_sprite(rng: np.random.Generator, position: str, sprite_shape: tuple[int, int],
                 height: int, width: int) -> tuple[int, int]:
    """Top-left corner: in a band along the border near a corner, or anywhere central."""
    sh, sw = sprite_shape
    if position == "corner":
        margin = max(1, int(round(0.02 * min(height, width))))
        oy = int(rng.integers(margin, margin + max(1, int(0.08 * height)) + 1))
        ox = int(rng.integers(margin, margin + max(1, int(0.12 * width)) + 1))
        corner = int(rng.integers(4))
        y0 = oy if corner < 2 else height - sh - oy
        x0 = ox if corner % 2 == 0 else width - sw - ox
    elif position == "mid":
        lo_y, lo_x = int(0.12 * height), int(0.12 * width)
        y0 = int(rng.integers(lo_y, max(lo_y, int(0.88 * height) - sh) + 1))
        x0 = int(rng.integers(lo_x, max(lo_x, int(0.88 * width) - sw) + 1))
    else:
        raise ValueError(f"unknown mark position {position!r}; valid: {list(MARK_POSITIONS)}")
    return int(np.clip(y0, 0, max(0, height - sh))), int(np.clip(x0, 0, max(0, width - sw)))


def burn_marks(image: np.ndarray, rng: np.random.Generator,
               spec: ShortcutSpec) -> tuple[np.ndarray, np.ndarray, tuple[Mark, ...]]:
    """Composite 1..max_marks near-white marks; the mask is exactly the pixels that changed."""
    height, width = image.shape
    out = image.astype(np.float32)
    marks = []
    for _ in range(int(rng.integers(1, spec.max_marks + 1))):
        kind = spec.kinds[int(rng.integers(len(spec.kinds)))]
        position = spec.positions[int(rng.integers(len(spec.positions)))]
        sprite = mark_sprite(rng, kind, height, width)[:height, :width]
        y0, x0 = place_sprite(rng, position, sprite.shape, height, width)
        y1, x1 = y0 + sprite.shape[0], x0 + sprite.shape[1]
        value = float(rng.integers(230, 256))
        alpha = sprite.astype(np.float32) * (1.0 / 255.0)
        region = out[y0:y1, x0:x1]
        out[y0:y1, x0:x1] = region + (value - region) * alpha
        marks.append(Mark(kind, position, (y0, x0, y1, x1)))
    marked = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return marked, marked != image, tuple(marks)


# --------------------------------------------------------------------------------------------
# The image
# --------------------------------------------------------------------------------------------


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
    cv2.ellipse(heart, (int(c[0]), int(c[1])), (int(0.2 * unit * _ONE), int(0.13 * unit * _ONE)),
                frame.angle, 0, 360, 0.25, -1, cv2.LINE_8, _SHIFT)
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


# --------------------------------------------------------------------------------------------
# The data source
# --------------------------------------------------------------------------------------------


def _pair(value: object, name: str, kind: type) -> tuple:
    """Two ordered numbers from a list/tuple/ListConfig."""
    try:
        items = tuple(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{name} must be two numbers [low, high], got {value!r}") from None
    if len(items) != 2 or any(isinstance(v, bool) for v in items):
        raise ValueError(f"{name} must be two numbers [low, high], got {value!r}")
    try:
        lo, hi = (kind(v) for v in items)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be two numbers [low, high], got {value!r}") from None
    if kind is int and (lo != items[0] or hi != items[1]):
        raise ValueError(f"{name} must be two integers [low, high], got {value!r}")
    if lo > hi:
        raise ValueError(f"{name} must be ordered low <= high, got {value!r}")
    return lo, hi


def _integer(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _number(value: object, name: str, lo: float, hi: float, hi_open: bool = False) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
    if ok:
        v = float(value)
        ok = lo <= v <= hi and not (hi_open and v == hi)
    if not ok:
        bracket = ")" if hi_open else "]"
        raise ValueError(f"{name} must be a number in [{lo}, {hi}{bracket}, got {value!r}")
    return float(value)


class SyntheticSource:
    """A data source of seeded phantoms: same arguments, same manifest, same images."""

    reads_files = False  # rows name generator indices, not files

    def __init__(self, n_patients: int = 200, images_per_patient: Sequence[int] = (1, 3),
                 covid_fraction: float = 0.5, image_size: int = 128, size_jitter: float = 0.15,
                 opacity: Sequence[float] = (0.4, 1.0), noise: float = 0.03,
                 shortcut: ShortcutSpec | Mapping | None = None, seed: int = 0) -> None:
        self.n_patients = _integer(n_patients, "n_patients", 2)
        lo, hi = _pair(images_per_patient, "images_per_patient", int)
        if lo < 1:
            raise ValueError(f"images_per_patient must be at least 1, got {images_per_patient!r}")
        self.images_per_patient = (lo, hi)
        self.covid_fraction = _number(covid_fraction, "covid_fraction", 0.0, 1.0)
        self.image_size = _integer(image_size, "image_size", 16)
        self.size_jitter = _number(size_jitter, "size_jitter", 0.0, 0.5, hi_open=True)
        o_lo, o_hi = _pair(opacity, "opacity", float)
        if not (0.0 <= o_lo and o_hi <= 1.0):
            raise ValueError(f"opacity must lie within [0, 1] (0 invisible, 1 strong), got {opacity!r}")
        self.opacity = (o_lo, o_hi)
        self.noise = _number(noise, "noise", 0.0, 0.5)
        self.shortcut = ShortcutSpec.coerce(shortcut)
        self.seed = _integer(seed, "seed", 0)

        # manifest-level facts, cheap and without rendering
        n_covid = round(self.covid_fraction * self.n_patients)
        order = _rng(self.seed, _S_LABELS).permutation(self.n_patients)
        covid = np.zeros(self.n_patients, bool)
        covid[order[:n_covid]] = True
        counts = _rng(self.seed, _S_COUNTS).integers(lo, hi + 1, size=self.n_patients)
        self._patient = np.repeat(np.arange(self.n_patients), counts)
        starts = np.cumsum(counts) - counts
        self._image_no = np.arange(len(self._patient)) - np.repeat(starts, counts)
        self._covid = covid[self._patient]
        # one uniform per image: raising a probability only adds marks, never moves them
        draw = _rng(self.seed, _S_MARKED).random(len(self._patient))
        p = np.where(self._covid, self.shortcut.p_covid, self.shortcut.p_no_finding)
        self._marked = draw < p

    def __len__(self) -> int:
        return len(self._patient)

    def __repr__(self) -> str:
        return (f"SyntheticSource(n_patients={self.n_patients}, images={len(self)}, "
                f"covid_fraction={self.covid_fraction}, image_size={self.image_size}, seed={self.seed}, "
                f"shortcut={self.shortcut})")

    def label(self, index: int) -> str:
        return LABELS[int(self._covid[self._check(index)])]

    def _check(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an integer, got {index!r}")
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} synthetic images")
        return int(index)

    def manifest(self) -> Manifest:
        n = len(self)
        pw = max(4, len(str(self.n_patients - 1)))
        iw = max(5, len(str(n - 1)))
        frame = pd.DataFrame({
            "path": [f"{SOURCE}/{i:0{iw}d}" for i in range(n)],
            "label": np.where(self._covid, LABELS[1], LABELS[0]),
            "patient_id": [f"{SOURCE}:{p:0{pw}d}" for p in self._patient],
            "source": SOURCE,
            "view": VIEW,
            "index": np.arange(n, dtype=np.int64),
            "marked": self._marked.copy(),
        })
        return Manifest(frame)

    def frame(self) -> pd.DataFrame:
        """The manifest's table: what the DataModule combines with other sources."""
        return self.manifest().frame

    def render(self, index: int, with_marks: bool = True) -> Phantom:
        """The phantom for one index; with_marks=False is the same image before marks are burned in.

        Unmarked renders report no marks and an empty mark_mask.
        """
        i = self._check(index)
        patient, image_no = int(self._patient[i]), int(self._image_no[i])
        covid = bool(self._covid[i])
        image, lung_mask, opacity_mask = render_phantom(
            patient_model(self.seed, patient), _rng(self.seed, _S_IMAGE, patient, image_no), covid,
            self.image_size, self.size_jitter, self.opacity, self.noise)
        marks: tuple[Mark, ...] = ()
        mark_mask = np.zeros_like(lung_mask)
        if with_marks and self._marked[i]:
            rng = _rng(self.seed, _S_MARKS, patient, image_no)
            image, mark_mask, marks = burn_marks(image, rng, self.shortcut)
        return Phantom(image, lung_mask, mark_mask, opacity_mask, marks, LABELS[int(covid)])

    def load_image(self, row: Mapping) -> np.ndarray:
        """The image for a manifest row (by its generator index): what the Dataset reads."""
        return self.render(int(row["index"])).image

    def load_lung_mask(self, row: Mapping) -> np.ndarray:
        """The phantom's lung fields, for CAM scores."""
        return self.render(int(row["index"])).lung_mask


# --------------------------------------------------------------------------------------------
# Preview
# --------------------------------------------------------------------------------------------


def outline(mask: np.ndarray) -> np.ndarray:
    """The one-pixel inner border of a mask."""
    m = mask.astype(np.uint8)
    return (m - cv2.erode(m, np.ones((3, 3), np.uint8))).astype(bool)


def preview_tile(ph: Phantom, index: int, scale: int = 2) -> np.ndarray:
    """BGR tile: the image, lungs outlined green, opacities yellow, marks red, and a title."""
    img = cv2.cvtColor(ph.image, cv2.COLOR_GRAY2BGR)
    img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)

    def up(mask: np.ndarray) -> np.ndarray:
        m = mask.astype(np.uint8)
        return cv2.resize(m, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST) > 0

    img[outline(up(ph.lung_mask))] = (60, 200, 60)
    img[outline(up(ph.opacity_mask))] = (0, 215, 255)
    marks = up(ph.mark_mask)
    around = cv2.dilate(marks.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    img[outline(around) & ~marks] = (40, 40, 255)  # just outside, so the mark stays visible
    title = np.full((18, img.shape[1], 3), 30, np.uint8)
    text = f"{index} {ph.label}{' marked' if ph.marks else ''}"
    colour = (120, 120, 255) if ph.label == POSITIVE else (220, 220, 220)
    cv2.putText(title, text, (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, colour, 1, cv2.LINE_AA)
    return np.vstack([title, img])


def preview_grid(source: SyntheticSource, indices: Sequence[int], columns: int = 4,
                 scale: int = 2) -> np.ndarray:
    """Tiles padded to a common size, laid out in a grid."""
    tiles = [preview_tile(source.render(i), i, scale) for i in indices]
    th = max(t.shape[0] for t in tiles) + 4
    tw = max(t.shape[1] for t in tiles) + 4
    rows = math.ceil(len(tiles) / columns)
    grid = np.full((rows * th, columns * tw, 3), 60, np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, columns)
        grid[r * th + 2: r * th + 2 + tile.shape[0], c * tw + 2: c * tw + 2 + tile.shape[1]] = tile
    return grid


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a labelled grid of synthetic phantoms.")
    parser.add_argument("out", help="PNG path")
    parser.add_argument("--n", type=int, default=16, help="number of images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--p-covid", type=float, default=0.8, help="mark probability, COVID-19")
    parser.add_argument("--p-no-finding", type=float, default=0.2, help="mark probability, no finding")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--opacity", type=float, nargs=2, default=(0.4, 1.0))
    parser.add_argument("--columns", type=int, default=4)
    parser.add_argument("--scale", type=int, default=2, help="pixel zoom of each tile")
    args = parser.parse_args(argv)
    source = SyntheticSource(n_patients=max(2, args.n), image_size=args.image_size, opacity=args.opacity,
                             shortcut=ShortcutSpec(p_covid=args.p_covid, p_no_finding=args.p_no_finding),
                             seed=args.seed)
    grid = preview_grid(source, range(min(args.n, len(source))), args.columns, args.scale)
    if not cv2.imwrite(args.out, grid):
        print(f"could not write {args.out}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {min(args.n, len(source))} phantoms, {grid.shape[1]}x{grid.shape[0]} px")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
