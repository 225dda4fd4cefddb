"""Find burned-in marks (letters, captions, digits, arrows, symbols); covid_tl.preprocess.inpaint
paints them out, covid_tl.preprocess.detector_params holds the knobs.

A global threshold (what the original study used) also takes bright bone, the spine, metal
and over-exposed body parts. Here a mark has to pass four tests, each relative to the
image itself:

1. seeds: pixels near the top of the image's own range AND much brighter than a white
   top-hat's opening (an element a little wider than a text stroke), or, for grey captions
   on a dark ground, standing out so much that no bone would; grown by hysteresis;
2. glyph shape, per connected component: small area, short sides, thin strokes, not a
   line, not sparse, not a frame strip along the image edge;
3. glyph contrast: the component's median outshines the ring around it (saturated glyphs
   need less, which keeps captions on bright tissue);
4. completion: text lines gather faint letters next to accepted ones; each glyph is then
   binarised locally against an inpainted background (arrow heads, bold letters the
   top-hat misses), completions that flood a bright region are undone, and a 1 px rim
   grows where pixels still stand out (anti-aliasing).

Lengths are fractions of the shorter side, so one parameter set serves 32 px thumbnails
and 4000 px originals: larger images are analysed at `work_size` and the mask is refined
back glyph by glyph. Only numpy and OpenCV (no torch). How the defaults were chosen:
benchmarks/mark_detector.py and its docstring.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import cv2
import numpy as np

from covid_tl.preprocess.detector_params import DetectorParams

def check_image(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W) only: silently casting a float or RGB image would change every threshold."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 2:
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"expected a uint8 single-channel (H, W) image, got {got}")
    if min(image.shape) < 1:
        raise ValueError(f"empty image {image.shape}")
    return image


def _odd(n: float, minimum: int = 3) -> int:
    k = max(minimum, int(round(n)))
    return k if k % 2 else k + 1


def _disk(diameter: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (diameter, diameter))


def intensity_range(image: np.ndarray, dark_quantile: float = 0.01) -> tuple[float, float]:
    """(dark, top): the scale every brightness/contrast fraction refers to."""
    hist = np.bincount(image.ravel(), minlength=256)
    cdf = np.cumsum(hist)
    dark = float(np.searchsorted(cdf, dark_quantile * cdf[-1], side="left"))
    top = float(np.nonzero(hist)[0][-1])
    return dark, top


def white_tophat(image: np.ndarray, tophat_size: float) -> np.ndarray:
    """How much brighter each pixel is than the brightest element-sized patch covering it."""
    diameter = _odd(tophat_size * min(image.shape), minimum=5)
    return cv2.morphologyEx(image, cv2.MORPH_TOPHAT, _disk(diameter))


@dataclass(frozen=True)
class Component:
    """One candidate bright component and the shape figures the filter looks at."""

    label: int
    bbox: tuple[int, int, int, int]  # y0, x0, y1, x1 (exclusive)
    area: int
    stroke: float  # px: twice the largest distance to the background
    fill: float
    aspect: float
    level: float  # median value, as a fraction of the (dark, top) range
    contrast: float  # level minus the median of the ring around it, same scale
    accepted: bool
    reason: str  # "" when accepted, else why it was rejected


def _components(cand: np.ndarray, img: np.ndarray, dark: float, span: float, short: int,
                p: DetectorParams) -> tuple[np.ndarray, list[Component]]:
    """Label candidate pixels and judge each component's shape, then its contrast."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(cand.astype(np.uint8), connectivity=8)
    if n <= 1:
        return labels, []
    dist = cv2.distanceTransform(cand.astype(np.uint8), cv2.DIST_L2, 3)
    max_dist = np.zeros(n, np.float32)
    np.maximum.at(max_dist, labels.ravel(), dist.ravel())
    height, width = cand.shape
    area_px = height * width
    min_area = max(p.min_area_px, p.min_area_fraction * area_px)
    max_area = p.max_area_fraction * area_px
    max_side = max(3.0, p.max_side_fraction * short)
    max_height = max(3.0, p.max_height_fraction * short)
    long_side = max(3.0, p.long_fraction * short)
    max_stroke = max(4.0, p.max_stroke_fraction * short)
    ring = max(2, int(round(p.ring_fraction * short)))
    margin = int(math.ceil(p.border_fraction * short)) if p.border_fraction > 0 else 0
    frame = p.frame_fraction * short
    frame_width = p.frame_width_fraction * short
    out = []
    for k in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[k])
        stroke = max(1.0, 2.0 * float(max_dist[k]) - 1.0)
        fill = area / float(w * h)
        aspect = max(w, h) / max(1.0, min(w, h))
        if area < min_area:
            reason = "small"
        elif (x < margin or y < margin or x + w > width - margin or y + h > height - margin):
            reason = "border"
        elif ((min(x, width - x - w) < frame and h >= p.frame_aspect * w
               and (w <= frame_width or stroke >= p.frame_solid * w))
              or (min(y, height - y - h) < frame and w >= p.frame_aspect * h
                  and (h <= frame_width or stroke >= p.frame_solid * h))):
            reason = "frame"
        elif area > max_area:
            reason = "large"
        elif max(w, h) > max_side or min(w, h) > max_height:
            reason = "long"
        elif max(w, h) > long_side and fill < p.long_min_fill:
            reason = "long-sparse"
        elif stroke > max_stroke:
            reason = "thick"
        elif aspect > p.max_aspect:
            reason = "line"
        elif fill < p.min_fill:
            reason = "sparse"
        else:
            reason = ""
        level = contrast = 0.0
        if not reason:
            level, contrast = _ring_contrast(img, labels, k, (y, x, y + h, x + w), ring)
            level, contrast = (level - dark) / span, contrast / span
            saturated = level >= p.saturated_fraction
            if contrast < (p.saturated_ring_contrast_fraction if saturated else p.ring_contrast_fraction):
                reason = "dim"
        out.append(Component(k, (y, x, y + h, x + w), area, stroke, fill, aspect, level, contrast,
                             not reason, reason))
    return labels, out


def _ring_contrast(img: np.ndarray, labels: np.ndarray, k: int, bbox: tuple[int, int, int, int],
                   ring: int) -> tuple[float, float]:
    """(median value, median value minus the median of a ring `ring` px wide around it).

    Other candidate pixels (the rest of a split letter, the next letter) are left out of
    the ring: they are not the ground the glyph stands on.
    """
    y0, x0, y1, x1 = bbox
    height, width = img.shape
    ys = slice(max(0, y0 - ring - 1), min(height, y1 + ring + 1))
    xs = slice(max(0, x0 - ring - 1), min(width, x1 + ring + 1))
    own = (labels[ys, xs] == k).astype(np.uint8)
    inner = cv2.dilate(own, np.ones((3, 3), np.uint8))
    outer = cv2.dilate(own, _disk(2 * ring + 1))
    around = (outer > 0) & (inner == 0) & (labels[ys, xs] == 0)  # other candidates are no ground
    patch = img[ys, xs]
    level = float(np.median(patch[own > 0]))
    if not around.any():
        return level, 0.0
    return level, level - float(np.median(patch[around]))


def _detect_work(image: np.ndarray, p: DetectorParams) -> tuple[np.ndarray, np.ndarray, list[Component]]:
    """The detector at working resolution: (mask before dilation, labels, components)."""
    short = min(image.shape)
    dark, top = intensity_range(image, p.dark_quantile)
    span = top - dark
    if span < p.min_range:
        return np.zeros(image.shape, bool), np.zeros(image.shape, np.int32), []
    img = image.astype(np.float32)
    hat = white_tophat(image, p.tophat_size).astype(np.float32)
    # seeds: near the top of the range and standing out, or (captions on a dark ground)
    # standing out so much that no bone would
    seeds = (img >= dark + p.bright_fraction * span) & (hat >= p.contrast_fraction * span)
    seeds |= (img >= dark + p.weak_bright_fraction * span) & (hat >= p.strong_contrast_fraction * span)
    weak = (img >= dark + p.weak_bright_fraction * span) & (hat >= p.weak_contrast_fraction * span)
    weak |= seeds
    labels, comps = _components(weak, img, dark, span, short, p)
    seeded = np.zeros(len(comps) + 1, bool)
    seeded[labels[seeds]] = True
    seeded[0] = False
    comps = [replace(c, accepted=c.accepted and bool(seeded[c.label]),
                     reason=c.reason or ("" if seeded[c.label] else "faint")) for c in comps]
    keep = np.zeros(len(comps) + 1, bool)
    for c in comps:
        keep[c.label] = c.accepted
    mask = keep[labels]
    if mask.any() and p.group_gap_fraction > 0:
        # text lines: faint letters, dots and split strokes next to accepted glyphs join them
        joinable = np.zeros(len(comps) + 1, bool)
        for c in comps:
            joinable[c.label] = c.reason in ("small", "faint")
        gap = _disk(_odd(2 * p.group_gap_fraction * short + 1, 3))
        by_label = {c.label: c for c in comps}
        for _ in range(p.group_rounds):
            near = cv2.dilate(mask.astype(np.uint8), gap) > 0
            joined = []
            for k in np.unique(labels[near & joinable[labels]]):
                # as bright as the glyphs it sits next to: same burned-in value, not a bone
                y0, x0, y1, x1 = by_label[int(k)].bbox
                g = max(1, gap.shape[0])
                ys, xs = slice(max(0, y0 - g), y1 + g), slice(max(0, x0 - g), x1 + g)
                own = img[ys, xs][labels[ys, xs] == k]
                beside = img[ys, xs][mask[ys, xs]]
                if len(beside) and np.median(own) >= np.median(beside) - p.group_tolerance * span:
                    joined.append(int(k))
            if not joined:
                break
            keep[joined] = True
            joinable[joined] = False
            mask = keep[labels]
    if mask.any():
        mask = _complete(img, mask, span, short, p)
    return mask, labels, comps


def local_background(image: np.ndarray, exclude: np.ndarray, radius: float) -> np.ndarray:
    """What the excluded pixels would look like without the marks: their inpainting.

    Inpainting follows gradients (a glyph on the body edge, half on black, half on tissue)
    where a window mean would smear the dark side into the bright one.
    """
    filled = cv2.inpaint(image, exclude.astype(np.uint8), max(1.0, radius / 2), cv2.INPAINT_TELEA)
    return filled.astype(np.float32)


def _complete(img: np.ndarray, core: np.ndarray, span: float, short: int, p: DetectorParams) -> np.ndarray:
    """Complete accepted glyphs: the parts the top-hat misses (arrow heads, bold or merged
    letters: wider than its element), then the anti-aliased rims.

    Near each glyph (within `fill_reach` of its size) the background is estimated by
    inpainting, and a pixel joins when it lies `fill_level` of the way from that background
    up to the glyph's own median value (local text binarisation that follows an uneven
    background, e.g. a glyph on the body edge). A little further (`plateau_reach`), pixels
    within `plateau_tolerance` of the glyph's value join too: a burned-in mark is drawn in
    one grey, so its head grows from its shaft. Joining pixels must touch the glyph, so a
    glyph on a bone does not flood the bone.
    """
    height, width = img.shape
    reach = _odd(p.tophat_size * short, 5)
    image_u8 = np.clip(img, 0, 255).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(core.astype(np.uint8), connectivity=8)
    zone = np.zeros(img.shape, bool)
    plateau = np.zeros(img.shape, bool)
    level = np.zeros(img.shape, np.float32)
    for k in range(1, n):
        x, y, w, h, _ = (int(v) for v in stats[k])
        near_r = int(math.ceil(max(reach / 2, p.fill_reach * max(w, h))))
        far_r = int(math.ceil(max(near_r, p.plateau_reach * max(w, h))))
        y0, x0 = max(0, y - far_r - 1), max(0, x - far_r - 1)
        y1, x1 = min(height, y + h + far_r + 1), min(width, x + w + far_r + 1)
        glyph = (labels[y0:y1, x0:x1] == k).astype(np.uint8)
        value = float(np.median(img[y0:y1, x0:x1][glyph > 0]))
        near = cv2.dilate(glyph, _disk(2 * near_r + 1)) > 0
        far = cv2.dilate(glyph, _disk(2 * far_r + 1)) > 0
        zone[y0:y1, x0:x1] |= near
        patch_img = img[y0:y1, x0:x1]
        plateau[y0:y1, x0:x1] |= far & (patch_img >= value - p.plateau_tolerance * span)
        lv = level[y0:y1, x0:x1]
        lv[far] = np.maximum(lv[far], value)
    background = local_background(image_u8, zone, reach)
    fill = zone & (level - background >= p.weak_contrast_fraction * span)
    fill &= img >= background + p.fill_level * (level - background)
    fill |= plateau
    m, lab = cv2.connectedComponents((fill | core).astype(np.uint8), connectivity=8)
    touched = np.zeros(m, bool)
    touched[lab[core]] = True
    touched[0] = False
    mask = _drop_floods(touched[lab], core, short, p)
    if p.rim_width_fraction > 0:
        steps = max(1, int(round(p.rim_width_fraction * short)))
        around = cv2.dilate(mask.astype(np.uint8), _disk(2 * steps + 3)) > 0
        rim = img - local_background(image_u8, around, reach) >= p.rim_contrast_fraction * span
        cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
        for _ in range(steps):
            mask = mask | ((cv2.dilate(mask.astype(np.uint8), cross) > 0) & rim)
    return mask


def _drop_floods(mask: np.ndarray, core: np.ndarray, short: int, p: DetectorParams) -> np.ndarray:
    """Undo completions that spread far beyond their glyph: the glyph touches a bright
    region (a white border, a tube, over-exposed tissue) that is not part of the mark."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return mask
    core_area = np.bincount(labels[core], minlength=n)
    height, width = mask.shape
    max_area = p.max_area_fraction * height * width
    max_side = max(3.0, p.max_side_fraction * short)
    max_height = max(3.0, p.max_height_fraction * short)
    keep = np.zeros(n, bool)
    for k in range(1, n):
        _, _, w, h, area = (int(v) for v in stats[k])
        keep[k] = (area <= p.max_growth * core_area[k] and area <= max_area
                   and max(w, h) <= max_side and min(w, h) <= max_height)
    return keep[labels] | core


def detect_marks(image: np.ndarray, params: DetectorParams | Mapping | None = None,
                 **overrides: object) -> np.ndarray:
    """Bool (H, W) mask of burned-in marks; see DetectorParams for the knobs."""
    p = DetectorParams.coerce(params, **overrides)
    image = check_image(image)
    height, width = image.shape
    scale = min(1.0, p.work_size / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        work = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    else:
        work = image
    mask, _, _ = _detect_work(work, p)
    if scale < 1.0:  # back on the image's own grid, marks or none
        mask = _refine(image, mask, scale, p) if mask.any() else np.zeros(image.shape, bool)
    return dilate_mask(mask, p.dilate_fraction)


def dilate_mask(mask: np.ndarray, fraction: float) -> np.ndarray:
    """Widen a mask by `fraction` of the shorter side, at least 1 px (0: unchanged)."""
    if not mask.any() or fraction <= 0:
        return mask
    radius = max(1, int(round(fraction * min(mask.shape))))
    return cv2.dilate(mask.astype(np.uint8), _disk(2 * radius + 1)) > 0


def _refine(image: np.ndarray, small_mask: np.ndarray, scale: float, p: DetectorParams) -> np.ndarray:
    """Back to full resolution, glyph by glyph: within the upscaled glyph's neighbourhood keep
    the pixels above the midpoint (`fill_level`) between the ring around it and its value.

    Only the glyphs' boxes are touched, so a 4000 px radiograph costs little more than its
    shrunken copy.
    """
    height, width = image.shape
    up = cv2.resize(small_mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    pad = int(math.ceil(2.0 / scale)) + 1
    n, labels, stats, _ = cv2.connectedComponentsWithStats(up, connectivity=8)
    out = np.zeros(image.shape, bool)
    for k in range(1, n):
        x, y, w, h, _ = (int(v) for v in stats[k])
        ys = slice(max(0, y - 2 * pad), min(height, y + h + 2 * pad))
        xs = slice(max(0, x - 2 * pad), min(width, x + w + 2 * pad))
        own = (labels[ys, xs] == k).astype(np.uint8)
        near = cv2.dilate(own, _disk(2 * pad + 1)) > 0
        ring = (cv2.dilate(own, _disk(4 * pad + 1)) > 0) & ~near
        patch = image[ys, xs].astype(np.float32)
        level = float(np.median(patch[own > 0]))
        ground = float(np.median(patch[ring])) if ring.any() else float(patch.min())
        out[ys, xs] |= near & (patch >= ground + p.fill_level * (level - ground))
    return out


def explain_marks(image: np.ndarray, params: DetectorParams | Mapping | None = None,
                  **overrides: object) -> list[Component]:
    """Every candidate component with its figures and the reason it was (not) taken: the
    tool for tuning. Runs at the image's own resolution (no `work_size` shrinking)."""
    p = DetectorParams.coerce(params, **overrides)
    return _detect_work(check_image(image), p)[2]


__all__ = [
    "Component", "detect_marks", "dilate_mask", "explain_marks", "intensity_range", "white_tophat", "check_image",
]
