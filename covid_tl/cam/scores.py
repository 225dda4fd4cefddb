"""CAM scores that turn the study's pictures into numbers (pure numpy/OpenCV).

artifact_fraction: share of the CAM's mass on burned-in marks (detected, dilated) or on a
band along the image border, where markers, text and collimation edges sit.
lung_fraction: share of the CAM's mass inside the lung fields (a drawn mask or the lung
segmenter's, covid_tl/cam/lungs.py); lung_area, the lungs' share of the model's input, is its
chance level.
Both are taken on the original image, so models trained on cropped or inpainted images are
scored against the same regions as those trained on raw ones.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import cv2
import numpy as np

from covid_tl.preprocess.crop import Box


def to_original(cam: np.ndarray, box: Box, shape: tuple[int, int]) -> np.ndarray:
    """A CAM over the (cropped, square-resized) model input, laid back onto the original image."""
    y0, x0, y1, x1 = box
    full = np.zeros(shape, np.float32)
    full[y0:y1, x0:x1] = cv2.resize(cam.astype(np.float32), (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    return full


def border_band(shape: tuple[int, int], fraction: float) -> np.ndarray:
    """True within `fraction` of the shorter side from any edge."""
    width = max(1, int(round(fraction * min(shape))))
    band = np.zeros(shape, bool)
    band[:width], band[-width:], band[:, :width], band[:, -width:] = True, True, True, True
    return band


def artifact_region(marks: np.ndarray, dilate_fraction: float = 0.01, border_fraction: float = 0.05) -> np.ndarray:
    """Detected marks grown by `dilate_fraction` of the shorter side, plus the border band."""
    radius = max(1, int(round(dilate_fraction * min(marks.shape))))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    grown = cv2.dilate(marks.astype(np.uint8), kernel) > 0
    return grown | border_band(marks.shape, border_fraction)


def on_grid(region: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """`region` resized (nearest) to `shape` where it was made on another grid, so a mask of
    another size costs precision, never the run."""
    if region.shape == shape:
        return region
    return cv2.resize(region.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0


def mass_fraction(cam: np.ndarray, region: np.ndarray) -> float | None:
    """Share of the CAM's total mass inside `region`; None for an all-zero CAM."""
    total = float(cam.sum())
    return float(cam[on_grid(region, cam.shape)].sum()) / total if total > 0 else None


def share_inside(region: np.ndarray | None, box: Box) -> float | None:
    """Share of the `box` (y0, x0, y1, x1) inside `region`; None without a region or box area."""
    y0, x0, y1, x1 = box
    if region is None or y1 <= y0 or x1 <= x0:
        return None
    return float(region[y0:y1, x0:x1].mean())


def cam_scores(cam: np.ndarray, artifacts: np.ndarray, lungs: np.ndarray | None) -> dict[str, float | None]:
    """Scores of one CAM already on the original image's grid."""
    return {
        "artifact_fraction": mass_fraction(cam, artifacts),
        "lung_fraction": mass_fraction(cam, lungs) if lungs is not None and lungs.any() else None,
    }


def mean_scores(scores: Iterable[Mapping[str, float | None]], labels: Iterable[str] | None = None) -> dict[str, float | None]:
    """Means over images (None values and words such as lung_source left out), overall and
    `<score>/<label>` per class."""
    scores, labels = list(scores), list(labels) if labels is not None else None
    out: dict[str, float | None] = {}
    names = sorted({k for s in scores for k, v in s.items() if not isinstance(v, str)})
    groups = {"": range(len(scores))}
    if labels is not None:
        groups.update({f"/{label}": [i for i, l in enumerate(labels) if l == label] for label in sorted(set(labels))})
    for suffix, members in groups.items():
        for name in names:
            values = [scores[i][name] for i in members if scores[i].get(name) is not None]
            out[name + suffix] = float(np.mean(values)) if values else None
    return out
