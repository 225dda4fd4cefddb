"""Everything needed to score CAMs for a set of images, prepared once (callback, explain.py)."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from covid_tl.cam.lungs import CamLungs, image_key
from covid_tl.cam.scores import artifact_region, cam_scores, on_grid, share_inside, to_original
from covid_tl.preprocess.model_input import InputSpec
from covid_tl.preprocess.marks import detect_marks
from covid_tl.preprocess.model_input import normalize, resize_square
from covid_tl.preprocess.crop import Box
from covid_tl.preprocess.pipeline import Prepared


@dataclass
class ScoringImage:
    """One image: the model's input, the picture shown, and its regions on the original grid."""

    input: torch.Tensor  # (C, size, size), normalised
    shown: np.ndarray  # uint8 (size, size): what the model sees
    box: Box
    shape: tuple[int, int]
    artifacts: np.ndarray  # bool, original grid: detected marks (dilated) + border band
    lungs: np.ndarray | None  # bool, original grid
    lung_source: str = "none"  # mask | segmenter | none


def same_aspect(a: tuple[int, int], b: tuple[int, int], tolerance: float = 0.02) -> bool:
    """Whether two grids have the same height/width ratio, within `tolerance` of it."""
    return abs(a[0] * b[1] - b[0] * a[1]) <= tolerance * b[0] * a[1]


def scoring_images(
    rows: Sequence[Mapping[str, Any]],
    load_image: Callable[[Mapping[str, Any]], np.ndarray],
    prepare: Callable[[Mapping[str, Any]], Prepared],
    load_lung_mask: Callable[[Mapping[str, Any]], np.ndarray | None],
    spec: InputSpec,
    detector: Mapping[str, Any] | None = None,
    lungs: CamLungs | None = None,
) -> list[ScoringImage]:
    """Marks are detected on the original image (not the preprocessed one), so a model trained
    on inpainted images is scored against the marks it never saw. `lungs` says where the lung
    fields come from (default: the given masks only)."""
    lungs = lungs or CamLungs("masks")
    items = []
    for row in rows:
        original = load_image(row)
        prepared = prepare(row)
        shown = resize_square(prepared.image, spec.size)
        given = load_lung_mask(row) if lungs.mode != "none" else None
        if given is not None:  # a mask made at another size of this film is resized; one of another film dropped
            given = on_grid(given, original.shape) if same_aspect(given.shape, original.shape) else None
        region = lungs.region(image_key(row), original, given)
        items.append(ScoringImage(torch.from_numpy(np.ascontiguousarray(normalize(shown, spec))), shown, prepared.box,
                                  original.shape, artifact_region(detect_marks(original, detector)), region.mask,
                                  region.source))
    return items


def shown_lungs(item: ScoringImage) -> np.ndarray | None:
    """The item's lung fields on the grid of what the model sees (its crop box), for outlines."""
    if item.lungs is None:
        return None
    y0, x0, y1, x1 = item.box
    return item.lungs[y0:y1, x0:x1]


def lung_legend(items: Sequence[ScoringImage]) -> str | None:
    """What the lung outlines of `items` are drawn from, for a legend; None when none is drawn."""
    names = {"mask": "drawn mask", "segmenter": "lung segmenter"}
    sources = [names[s] for s in names if any(item.lung_source == s and item.lungs is not None for item in items)]
    return f"lungs ({' or '.join(sources)})" if sources else None


def score_cams(cams: np.ndarray, items: Sequence[ScoringImage]) -> list[dict[str, float | str | None]]:
    """artifact_fraction and lung_fraction of each CAM, on its original image's grid, with
    lung_area (the lungs' share of what the model sees: a CAM spread evenly over its input
    scores exactly this lung_fraction, the chance level) and lung_source."""
    return [{**cam_scores(to_original(cam, item.box, item.shape), item.artifacts, item.lungs),
             "lung_area": share_inside(item.lungs, item.box) if item.lung_source != "none" else None,
             "lung_source": item.lung_source} for cam, item in zip(cams, items)]
