"""Watermark transplant: paste COVID-19 images' burned-in marks onto no-finding images.

The original study tried this to take the shortcut away (if both classes carry the same
letters, letters stop predicting the label) and failed because a global threshold cut out
bones and body parts along with the text. Here the marks come from the mark detector
(covid_tl.preprocess.marks), which leaves anatomy alone, and only compact, text-like
groups of bounded size enter the bank: nothing larger than `max_area_fraction` of its
image or with a side beyond `max_side_fraction` of the image's shorter side.

A Stamp keeps the mark's own grey values and an alpha saying how far each pixel rises
from the background under it (the inpainted image) towards the mark's level, so rims
blend in. Stamps are pasted rescaled to the target image (same size relative to the
image as where they came from), at the places real marks sit: corner bands, edge bands,
and now and then mid-image. The bank is a plain .npz (no pickle), so it can be cached.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from covid_tl.preprocess.detector_params import DetectorParams
from covid_tl.preprocess.marks import check_image, detect_marks, local_background

POSITIONS: tuple[str, ...] = ("corner", "edge", "mid")
#: How often each place is drawn unless position_weights says otherwise: real letters and
#: markers sit mostly in corners, captions along edges, arrows now and then mid-image.
DEFAULT_WEIGHTS: dict[str, float] = {"corner": 0.5, "edge": 0.35, "mid": 0.15}


@dataclass(frozen=True)
class Stamp:
    """One burned-in mark cut to its box: grey values, blending alpha, where it came from."""

    values: np.ndarray  # uint8 (h, w): the mark's pixels as they were
    alpha: np.ndarray  # float32 (h, w) in [0, 1]: 1 = the mark, 0 = background
    source_shape: tuple[int, int]  # (H, W) of the image it was cut from
    bbox: tuple[int, int, int, int]  # (y0, x0, y1, x1) in that image
    source: str = ""  # the image's id (a path), for audits

    @property
    def pixels(self) -> np.ndarray:
        """Bool (h, w): the pixels the mark covers."""
        return self.alpha > 0

    @property
    def area_fraction(self) -> float:
        """Mark pixels as a fraction of the source image's area."""
        return float(self.pixels.sum()) / float(self.source_shape[0] * self.source_shape[1])

    @property
    def side_fraction(self) -> float:
        """Longer box side as a fraction of the source image's shorter side."""
        return max(self.values.shape) / float(min(self.source_shape))


def _check_fraction(name: str, value: float, upper: float = 1.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not 0.0 < float(value) <= upper:
        raise ValueError(f"{name} must be a number in (0, {upper}], got {value!r}")
    return float(value)


def extract_stamps(image: np.ndarray, params: DetectorParams | Mapping | None = None,
                   max_area_fraction: float = 0.004, max_side_fraction: float = 0.15,
                   group_gap_fraction: float = 0.01, min_pixels: int = 6, source: str = "",
                   mask: np.ndarray | None = None, **overrides: object) -> list[Stamp]:
    """Marks of one image as stamps: detected glyphs grouped into words (gaps up to
    `group_gap_fraction`), each group kept only within the size bounds."""
    image = check_image(image)
    max_area_fraction = _check_fraction("max_area_fraction", max_area_fraction)
    max_side_fraction = _check_fraction("max_side_fraction", max_side_fraction)
    if mask is None:
        mask = detect_marks(image, params, **overrides)
    elif mask.shape != image.shape:
        raise ValueError(f"mask shape {mask.shape} differs from image shape {image.shape}")
    mask = np.asarray(mask, bool)
    if not mask.any():
        return []
    height, width = image.shape
    short = min(height, width)
    gap = max(1, int(round(group_gap_fraction * short)))
    grouped = cv2.dilate(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * gap + 1,) * 2))
    n, labels = cv2.connectedComponents(grouped, connectivity=8)
    labels = np.where(mask, labels, 0)
    # the background under the marks, to say how far each mark pixel rises above it
    ring = max(2, int(round(0.01 * short)))
    around = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    ground = local_background(image, around, ring)
    img = image.astype(np.float32)
    stamps = []
    for k in range(1, n):
        own = labels == k
        count = int(own.sum())
        if count < min_pixels or count > max_area_fraction * height * width:
            continue
        ys, xs = np.nonzero(own)
        y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        if max(y1 - y0, x1 - x0) > max_side_fraction * short:
            continue
        box_own = own[y0:y1, x0:x1]
        level = float(np.percentile(img[y0:y1, x0:x1][box_own], 90))
        rise = img[y0:y1, x0:x1] - ground[y0:y1, x0:x1]
        full = max(1.0, level - float(np.median(ground[y0:y1, x0:x1][box_own])))
        alpha = np.clip(rise / full, 0.0, 1.0) * box_own
        if not (alpha > 0).any():
            continue
        stamps.append(Stamp(image[y0:y1, x0:x1].copy(), alpha.astype(np.float32),
                            (height, width), (y0, x0, y1, x1), source))
    return stamps


def build_bank(images: Iterable[np.ndarray], params: DetectorParams | Mapping | None = None,
               max_area_fraction: float = 0.004, max_side_fraction: float = 0.15,
               group_gap_fraction: float = 0.01, min_pixels: int = 6,
               names: Sequence[str] | None = None, **overrides: object) -> list[Stamp]:
    """Stamps from many (COVID-19 training) images; see extract_stamps for the bounds."""
    bank: list[Stamp] = []
    for i, image in enumerate(images):
        name = str(names[i]) if names is not None else str(i)
        bank.extend(extract_stamps(image, params, max_area_fraction=max_area_fraction,
                                   max_side_fraction=max_side_fraction,
                                   group_gap_fraction=group_gap_fraction, min_pixels=min_pixels,
                                   source=name, **overrides))
    return bank


def save_bank(bank: Sequence[Stamp], path: str | Path) -> Path:
    """Write the bank as a compressed .npz (arrays plus one JSON metadata string)."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    meta = []
    for i, s in enumerate(bank):
        arrays[f"values_{i}"] = s.values
        arrays[f"alpha_{i}"] = s.alpha
        meta.append({"source_shape": list(s.source_shape), "bbox": list(s.bbox), "source": s.source})
    arrays["meta"] = np.array(json.dumps({"version": 1, "stamps": meta}))
    with open(path, "wb") as fh:  # a file handle: np.savez would append ".npz" to a bare name
        np.savez_compressed(fh, **arrays)
    return path


def load_bank(path: str | Path) -> list[Stamp]:
    """Read a bank written by save_bank."""
    with np.load(Path(path), allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        if meta.get("version") != 1:
            raise ValueError(f"{path}: unknown stamp bank version {meta.get('version')!r}")
        return [Stamp(data[f"values_{i}"].astype(np.uint8), data[f"alpha_{i}"].astype(np.float32),
                      tuple(m["source_shape"]), tuple(m["bbox"]), m["source"])  # type: ignore[arg-type]
                for i, m in enumerate(meta["stamps"])]


def _count(n: int | Sequence[int], rng: np.random.Generator) -> int:
    if isinstance(n, (int, np.integer)) and not isinstance(n, bool):
        lo = hi = int(n)
    else:
        try:
            lo, hi = (int(v) for v in n)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise ValueError(f"n must be an integer or [low, high], got {n!r}") from None
    if lo < 0 or hi < lo:
        raise ValueError(f"n must be >= 0 (and low <= high), got {n!r}")
    return int(rng.integers(lo, hi + 1))


def _place(rng: np.random.Generator, position: str, shape: tuple[int, int],
           height: int, width: int) -> tuple[int, int]:
    """Top-left corner for a stamp of `shape`: corner band, edge band or central region."""
    sh, sw = shape
    short = min(height, width)
    margin = max(1, int(round(0.02 * short)))
    band = max(1, int(round(0.10 * short)))

    def along(size: int, extent: int) -> int:
        return int(rng.integers(margin, max(margin, extent - size - margin) + 1))

    def inward(size: int, extent: int, far: bool) -> int:
        off = int(rng.integers(margin, margin + band + 1))
        return extent - size - off if far else off

    if position == "corner":
        y0 = inward(sh, height, bool(rng.integers(2)))
        x0 = inward(sw, width, bool(rng.integers(2)))
    elif position == "edge":
        if rng.integers(2):  # top or bottom band
            y0, x0 = inward(sh, height, bool(rng.integers(2))), along(sw, width)
        else:
            y0, x0 = along(sh, height), inward(sw, width, bool(rng.integers(2)))
    elif position == "mid":
        lo_y, lo_x = int(0.15 * height), int(0.15 * width)
        y0 = int(rng.integers(lo_y, max(lo_y, int(0.85 * height) - sh) + 1))
        x0 = int(rng.integers(lo_x, max(lo_x, int(0.85 * width) - sw) + 1))
    else:
        raise ValueError(f"unknown stamp position {position!r}; valid: {list(POSITIONS)}")
    return int(np.clip(y0, 0, max(0, height - sh))), int(np.clip(x0, 0, max(0, width - sw)))


def paste_stamps(image: np.ndarray, bank: Sequence[Stamp], rng: np.random.Generator,
                 n: int | Sequence[int] = (1, 2), positions: Sequence[str] = POSITIONS,
                 position_weights: Sequence[float] | None = None,
                 scale_jitter: Sequence[float] = (0.8, 1.25)) -> tuple[np.ndarray, np.ndarray]:
    """Alpha-blend `n` random stamps onto a copy of `image`: (image, bool mask of the
    pixels the stamps cover).

    Each stamp keeps its size relative to the image's shorter side (times a factor drawn
    from `scale_jitter`), clipped to fit inside the image; `positions` are drawn with
    `position_weights` (None: DEFAULT_WEIGHTS of those positions). All randomness comes
    from `rng`.
    """
    image = check_image(image)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy Generator (np.random.default_rng(seed)), got {rng!r}")
    positions = (positions,) if isinstance(positions, str) else tuple(str(p) for p in positions)
    unknown = [p for p in positions if p not in POSITIONS]
    if not positions or unknown:
        raise ValueError(f"positions must be a non-empty subset of {list(POSITIONS)}, got {list(positions)}")
    if position_weights is None:
        weights = np.asarray([DEFAULT_WEIGHTS[p] for p in positions])
        weights = weights / weights.sum()
    else:
        weights = np.asarray([float(w) for w in position_weights], float)
        if len(weights) != len(positions) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"position_weights must be {len(positions)} non-negative numbers "
                             f"(one per position), got {list(position_weights)}")
        weights = weights / weights.sum()
    lo_s, hi_s = (float(v) for v in scale_jitter)
    if not 0 < lo_s <= hi_s:
        raise ValueError(f"scale_jitter must be [low, high] with 0 < low <= high, got {scale_jitter!r}")
    count = _count(n, rng)
    height, width = image.shape
    out = image.astype(np.float32)
    covered = np.zeros(image.shape, np.float32)
    if count and not bank:
        raise ValueError("the stamp bank is empty")
    for _ in range(count):
        stamp = bank[int(rng.integers(len(bank)))]
        position = positions[int(rng.choice(len(positions), p=weights))]
        factor = min(height, width) / float(min(stamp.source_shape)) * rng.uniform(lo_s, hi_s)
        sh, sw = stamp.values.shape
        th = min(height, max(1, int(round(sh * factor))))
        tw = min(width, max(1, int(round(sw * factor))))
        interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
        values = cv2.resize(stamp.values, (tw, th), interpolation=interp).astype(np.float32)
        alpha = np.clip(cv2.resize(stamp.alpha, (tw, th), interpolation=interp), 0.0, 1.0)
        y0, x0 = _place(rng, position, (th, tw), height, width)
        region = out[y0:y0 + th, x0:x0 + tw]
        out[y0:y0 + th, x0:x0 + tw] = region + alpha * (values - region)
        cover = covered[y0:y0 + th, x0:x0 + tw]
        np.maximum(cover, alpha, out=cover)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), covered > 0


def bank_summary(bank: Sequence[Stamp]) -> dict[str, float]:
    """Counts and size extremes, for logs and the benchmark."""
    if not bank:
        return {"stamps": 0, "sources": 0, "max_area_fraction": 0.0, "max_side_fraction": 0.0}
    return {
        "stamps": len(bank),
        "sources": len({s.source for s in bank}),
        "max_area_fraction": max(s.area_fraction for s in bank),
        "max_side_fraction": max(s.side_fraction for s in bank),
    }


__all__ = ["POSITIONS", "DEFAULT_WEIGHTS", "Stamp", "extract_stamps", "build_bank", "save_bank", "load_bank",
           "paste_stamps", "bank_summary"]
