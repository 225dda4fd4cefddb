"""Mark detection and inpainting: phantoms with ground-truth marks, anatomy that must be
left alone, sizes from 32 to 4000 px, and the real xray-mini set when it is present.

Phantom figures (`python benchmarks/mark_detector.py`, seeds 0-4, 40 images each): pooled
IoU 0.83 at 128 px (per seed 0.82-0.86) and 0.905 at 256 px (0.89-0.92). The tests use
seed 0 (0.819 and 0.908): the 128 px case has little headroom over the 0.8 target, so a
change to the phantom generator's marks may need the detector re-tuned, not the bar.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import XRAY_MINI, mask_iou, needs_xray_mini

from covid_tl.data.synthetic.marks import ShortcutSpec
from covid_tl.data.synthetic.source import SyntheticSource
from covid_tl.preprocess.detector_params import DetectorParams
from covid_tl.preprocess.marks import detect_marks, explain_marks, intensity_range
from covid_tl.preprocess.inpaint import inpaint_marks, remove_marks

ROOT = Path(__file__).resolve().parents[1]
N_IMAGES = 40


xray_mini = needs_xray_mini


def source(size: int, marked: bool = True, seed: int = 0) -> SyntheticSource:
    shortcut = ShortcutSpec(p_covid=1.0, p_no_finding=1.0) if marked else None
    return SyntheticSource(n_patients=N_IMAGES, images_per_patient=(1, 1), image_size=size,
                           shortcut=shortcut, seed=seed)


@pytest.fixture(scope="module", params=[128, 256])
def phantoms(request):
    """(size, phantoms, detected masks) for 40 marked phantoms."""
    src = source(request.param)
    renders = [src.render(i) for i in range(N_IMAGES)]
    return request.param, renders, [detect_marks(ph.image) for ph in renders]


# ----------------------------------------------------------------------------------- phantoms


def test_marks_found_with_iou_over_0_8(phantoms):
    size, renders, masks = phantoms
    inter = sum(int((m & ph.mark_mask).sum()) for ph, m in zip(renders, masks))
    union = sum(int((m | ph.mark_mask).sum()) for ph, m in zip(renders, masks))
    per_image = [mask_iou(m, ph.mark_mask) for ph, m in zip(renders, masks)]
    assert inter / union >= 0.8, f"{size}px pooled IoU {inter / union:.3f}"
    assert np.mean(per_image) >= 0.75, f"{size}px per-image mean IoU {np.mean(per_image):.3f}"
    # every image's marks are found at least in part
    assert sum(iou > 0 for iou in per_image) >= N_IMAGES - 1


def test_lungs_are_left_alone(phantoms):
    """At most 1% of lung pixels masked that are not a true mark (marks may lie on the lungs).

    Asserted over all images; the images whose marks miss the lungs must be cleaner still.
    """
    size, renders, masks = phantoms
    false_lung = sum(int((m & ph.lung_mask & ~ph.mark_mask).sum()) for ph, m in zip(renders, masks))
    lung = sum(int(ph.lung_mask.sum()) for ph in renders)
    assert false_lung / lung <= 0.01, f"{size}px: {false_lung / lung:.3%} of lung pixels masked"
    clear = [(ph, m) for ph, m in zip(renders, masks) if not (ph.mark_mask & ph.lung_mask).any()]
    assert len(clear) >= 10
    false_clear = sum(int((m & ph.lung_mask).sum()) for ph, m in clear)
    assert false_clear / sum(int(ph.lung_mask.sum()) for ph, _ in clear) <= 0.001


@pytest.mark.parametrize("size", [128, 256])
def test_unmarked_phantoms_give_almost_nothing(size):
    src = source(size)
    masks = [detect_marks(src.render(i, with_marks=False).image) for i in range(N_IMAGES)]
    assert sum(m.any() for m in masks) <= 2
    assert sum(int(m.sum()) for m in masks) <= 0.0005 * size * size * N_IMAGES


def test_better_than_a_global_threshold():
    """The study's global threshold at the detector's own seed level takes spine, clavicles
    and bright body parts of unmarked phantoms; the detector takes none of it."""
    src = source(256)
    glob = det = 0
    for i in range(10):
        image = src.render(i, with_marks=False).image
        dark, top = intensity_range(image)
        glob += int((image >= dark + DetectorParams().bright_fraction * (top - dark)).sum())
        det += int(detect_marks(image).sum())
    assert glob > 1000 and det <= glob / 100


# ---------------------------------------------------------------------- anatomy-like shapes


def body_scene(size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """A textured body with spine, clavicle, ribs, a wire, a pacemaker can and a bright
    diaphragm, plus one white letter; returns (image, where the letter is)."""
    rng = np.random.default_rng(1)
    img = np.full((size, size), 20, np.float32)
    cv2.ellipse(img, (size // 2, size // 2), (int(size * 0.44), int(size * 0.62)), 0, 0, 360, 150, -1)  # body
    img[int(size * 0.72):, :] = np.maximum(img[int(size * 0.72):, :], 0) * 0 + 20
    cv2.ellipse(img, (size // 2, int(size * 0.72)), (int(size * 0.44), int(size * 0.06)), 0, 0, 360, 150, -1)
    img[int(size * 0.72):int(size * 0.97), int(size * 0.06):int(size * 0.94)] = 185  # diaphragm, abdomen
    for cx in (0.3, 0.7):  # dark lungs
        cv2.ellipse(img, (int(size * cx), int(size * 0.45)), (int(size * 0.14), int(size * 0.25)), 0, 0, 360, 70, -1)
    img = cv2.GaussianBlur(img, (0, 0), 0.02 * size)  # soft tissue has no sharp corners
    cv2.rectangle(img, (size // 2 - size // 30, 0), (size // 2 + size // 30, size), 200, -1)  # spine
    for k in range(5):  # ribs
        y = int(size * (0.28 + 0.09 * k))
        cv2.ellipse(img, (size // 2, y), (int(size * 0.33), int(size * 0.06)), 0, 180, 360, 120, max(2, size // 60))
    for sign in (-1, 1):  # clavicles
        inner = (size // 2 + sign * size // 20, int(size * 0.2))
        outer = (size // 2 + sign * int(size * 0.33), int(size * 0.15))
        cv2.line(img, inner, outer, 205, max(3, size // 30))
    pts = np.array([[0.55, 0.3], [0.62, 0.45], [0.58, 0.6], [0.66, 0.75]]) * size
    cv2.polylines(img, [pts.astype(np.int32)], False, 230, 1)  # a wire
    cv2.circle(img, (int(size * 0.75), int(size * 0.3)), size // 14, 240, -1)  # a pacemaker can
    img = cv2.GaussianBlur(img, (0, 0), 1.0) + rng.normal(0, 4, img.shape)
    letter = np.zeros((size, size), np.uint8)
    cv2.putText(letter, "R", (int(size * 0.12), int(size * 0.92)), cv2.FONT_HERSHEY_SIMPLEX, size / 256, 255,
                max(1, size // 110), cv2.LINE_AA)
    img = np.where(letter > 0, img + (250 - img) * letter / 255.0, img)
    return np.clip(img, 0, 255).astype(np.uint8), letter > 0


@pytest.mark.parametrize("size", [256, 512])
def test_anatomy_left_alone_letter_taken(size):
    image, letter = body_scene(size)
    mask = detect_marks(image)
    assert mask_iou(mask, letter) >= 0.5
    outside = mask & ~(cv2.dilate(letter.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0)
    assert outside.sum() == 0, "anatomy, wire or can taken"


def test_explain_says_why():
    image, _ = body_scene()
    comps = explain_marks(image)
    assert any(c.accepted for c in comps)
    assert all(c.accepted == (c.reason == "") for c in comps)
    assert {c.reason for c in comps if not c.accepted} <= {
        "small", "border", "frame", "large", "long", "long-sparse", "thick", "line", "sparse", "dim", "faint"}


# ---------------------------------------------------------------------------------- sizes


def test_tiny_and_flat_images():
    assert not detect_marks(np.zeros((32, 32), np.uint8)).any()
    assert not detect_marks(np.full((40, 33), 200, np.uint8)).any()
    img = np.full((32, 32), 60, np.uint8)
    cv2.putText(img, "L", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.35, 255, 1)
    mask = detect_marks(img)
    assert mask.shape == img.shape and mask.dtype == bool
    assert mask_iou(mask, img > 150) >= 0.5


def test_large_image_is_refined_at_full_resolution():
    """A 256 px phantom blown up 12x (3000+ px): same marks, a fine mask, fast enough."""
    ph = source(256).render(3)
    big = cv2.resize(ph.image, None, fx=12, fy=12, interpolation=cv2.INTER_CUBIC)
    truth = cv2.resize(ph.mark_mask.astype(np.uint8), (big.shape[1], big.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    mask = detect_marks(big)
    assert mask.shape == big.shape
    assert mask_iou(mask, truth) >= 0.6


def test_large_unmarked_image_gives_a_mask_of_its_own_size():
    """Nothing found on a shrunken work copy still means a mask on the full grid (a 1024 px
    mask for a 4095 px radiograph once stopped CAM scoring and inpainting)."""
    flat = np.full((2000, 1500), 90, np.uint8)
    mask = detect_marks(flat)
    assert mask.shape == (2000, 1500) and not mask.any()
    painted, replaced = remove_marks(flat)
    assert np.array_equal(painted, flat) and replaced.shape == flat.shape


# ----------------------------------------------------------------------------------- inpaint


@pytest.mark.parametrize("method", ["telea", "ns"])
def test_inpainting_restores_the_unmarked_image(method):
    src = source(256)
    before = after = 0.0
    for i in range(6):
        ph = src.render(i)
        clean = src.render(i, with_marks=False).image.astype(np.float32)
        painted, mask = remove_marks(ph.image, method=method)
        marks = ph.mark_mask
        before += np.abs(ph.image[marks] - clean[marks]).mean()
        after += np.abs(painted[marks].astype(np.float32) - clean[marks]).mean()
        assert np.array_equal(painted[~mask], ph.image[~mask]), "pixels outside the mask changed"
    assert after < 0.25 * before


def test_inpaint_with_empty_mask_is_a_copy():
    image = source(128).render(0).image
    out = inpaint_marks(image, np.zeros(image.shape, bool))
    assert np.array_equal(out, image) and out is not image


def test_inpaint_validates():
    image = source(128).render(0).image
    with pytest.raises(ValueError, match="method"):
        inpaint_marks(image, image > 200, method="biharmonic")
    with pytest.raises(ValueError, match="shape"):
        inpaint_marks(image, np.zeros((3, 3), bool))


# -------------------------------------------------------------------------------- parameters


def test_params_from_mapping_and_overrides():
    p = DetectorParams.coerce({"tophat_size": 0.04, "_target_": "x"}, bright_fraction=0.9)
    assert p.tophat_size == 0.04 and p.bright_fraction == 0.9
    assert DetectorParams.coerce(p) == p


@pytest.mark.parametrize("bad", [{"nope": 1}, {"bright_fraction": 1.5}, {"tophat_size": -1},
                                 {"weak_contrast_fraction": 0.5}, {"work_size": 8}, {"min_fill": "a"}])
def test_bad_params_raise(bad):
    with pytest.raises(ValueError):
        DetectorParams.coerce(bad)


@pytest.mark.parametrize("bad", [np.zeros((20, 20), np.float32), np.zeros((20, 20, 3), np.uint8), [[0, 1]]])
def test_bad_images_raise(bad):
    with pytest.raises(ValueError, match="uint8"):
        detect_marks(bad)


def test_overrides_change_the_result():
    image = source(256).render(1).image
    assert detect_marks(image).any()
    assert not detect_marks(image, contrast_fraction=1.0, strong_contrast_fraction=1.0).any()


# --------------------------------------------------------------------------------- xray-mini


@xray_mini
def test_xray_mini_masks_stay_out_of_the_lungs():
    """Cohen lung masks: at most 2% of masked pixels inside them; most images of each
    source get a mask (Cohen: letters and captions, NIH: L/R markers)."""
    import pandas as pd

    manifest = pd.read_csv(XRAY_MINI / "manifest.csv")
    in_lung = masked = 0
    nonempty: dict[str, list[int]] = {}
    for row in manifest.itertuples():
        image = cv2.imread(str(XRAY_MINI / row.path), cv2.IMREAD_GRAYSCALE)
        mask = detect_marks(image)
        share = nonempty.setdefault(row.source, [0, 0])
        share[0] += bool(mask.any())
        share[1] += 1
        if isinstance(row.lung_mask, str):
            lung = cv2.imread(str(XRAY_MINI / row.lung_mask), cv2.IMREAD_GRAYSCALE) > 127
            in_lung += int((mask & lung).sum())
            masked += int(mask.sum())
    assert masked > 5000
    assert in_lung / masked <= 0.02, f"{in_lung / masked:.2%} of masked pixels inside the lungs"
    assert nonempty["cohen"][0] / nonempty["cohen"][1] >= 0.5, nonempty
    assert nonempty["nih"][0] / nonempty["nih"][1] >= 0.6, nonempty
