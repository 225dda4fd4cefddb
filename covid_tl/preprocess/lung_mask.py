"""Lung masks, pure numpy/OpenCV: the segmenter's input scaling and clean-up, and the numbers
that say whether a mask is plausible on a film that has no true mask to compare with.

A mask that is worse on one source than another is a shortcut of its own (the classifier sees
more of one hospital's mediastinum, say), so its plausibility is measured per source.
"""
from __future__ import annotations

import cv2
import numpy as np


def segmenter_input(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W) -> float32 (H, W) of zero mean and unit spread: the film's own exposure and
    contrast, which differ most between hospitals, are taken out before the network sees it."""
    values = image.astype(np.float32)
    return (values - values.mean()) / max(float(values.std()), 1.0)


def resize_to(array: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """A 2-D array resized to `size` (square, or (H, W)): area averaging when shrinking,
    bilinear otherwise; a bool mask is resized as 0/1 and cut at one half."""
    height, width = (size, size) if isinstance(size, int) else size
    values = array.astype(np.float32) if array.dtype == bool else array
    shrinking = array.shape[0] > height or array.shape[1] > width
    resized = cv2.resize(values, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return resized >= 0.5 if array.dtype == bool else resized


def _components(mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """(count, label image, areas by label) of the 8-connected components of a bool mask."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return count - 1, labels, stats[1:, cv2.CC_STAT_AREA]


def largest_components(mask: np.ndarray, keep: int = 2) -> np.ndarray:
    """The `keep` largest connected components of a bool mask (two lungs); specks dropped."""
    count, labels, areas = _components(mask)
    if count <= keep:
        return mask.astype(bool)
    kept = 1 + np.argsort(areas, kind="stable")[::-1][:keep]
    return np.isin(labels, kept)


def plausibility(mask: np.ndarray) -> dict[str, float | int]:
    """What a lung mask of a frontal film should look like, in three numbers.

    - `components`: connected components (two lungs: 2; 1 means merged or a lung missing);
    - `area_share`: the mask's share of the image;
    - `balance`: the smaller over the larger of the mask's areas either side of the middle of
      its own horizontal extent (right lung a little larger: about 0.7-0.9; 0 when empty).
    """
    count, _, _ = _components(mask)
    columns = np.flatnonzero(mask.any(axis=0))
    balance = 0.0
    if len(columns):
        middle = (columns[0] + columns[-1] + 1) / 2
        per_column = mask.sum(axis=0)
        left = float(per_column[: int(np.ceil(middle))].sum())
        right = float(per_column.sum()) - left
        balance = min(left, right) / max(left, right)
    return {"components": int(count), "area_share": float(mask.mean()), "balance": balance}
