"""Watermark transplant: a bounded, text-only stamp bank that survives a round trip to
.npz, and seeded pasting at plausible places that the detector recognises as marks."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import XRAY_MINI, mask_iou, needs_xray_mini

from covid_tl.data.synthetic.marks import ShortcutSpec
from covid_tl.data.synthetic.source import SyntheticSource
from covid_tl.preprocess.marks import detect_marks
from covid_tl.preprocess.watermark import (
    Stamp,
    bank_summary,
    build_bank,
    extract_stamps,
    load_bank,
    paste_stamps,
    save_bank,
)

ROOT = Path(__file__).resolve().parents[1]


xray_mini = needs_xray_mini


@pytest.fixture(scope="module")
def marked():
    src = SyntheticSource(n_patients=12, images_per_patient=(1, 1), image_size=256,
                          shortcut=ShortcutSpec(p_covid=1.0, p_no_finding=1.0), seed=2)
    return [src.render(i) for i in range(12)]


@pytest.fixture(scope="module")
def bank(marked):
    return build_bank([ph.image for ph in marked], names=[f"ph{i}" for i in range(len(marked))])


@pytest.fixture(scope="module")
def target():
    src = SyntheticSource(n_patients=4, images_per_patient=(1, 1), image_size=256, seed=9)
    return src.render(0).image


def test_bank_holds_the_marks_within_bounds(marked, bank):
    assert len(bank) >= len(marked) // 2  # phantom words and arrows are often beyond 0.15
    assert all(isinstance(s, Stamp) for s in bank)
    assert all(s.area_fraction <= 0.004 and s.side_fraction <= 0.15 for s in bank)
    looser = build_bank([ph.image for ph in marked], max_area_fraction=0.02, max_side_fraction=0.5)
    assert len(looser) > len(bank)
    # stamps come from the true marks, not from anatomy
    for s in bank:
        ph = marked[int(s.source[2:])]
        y0, x0, y1, x1 = s.bbox
        truth = ph.mark_mask[y0:y1, x0:x1]
        assert (truth & s.pixels).sum() >= 0.6 * s.pixels.sum()
        assert s.values.dtype == np.uint8 and s.alpha.dtype == np.float32
        assert 0.0 <= s.alpha.min() and s.alpha.max() <= 1.0 and s.alpha.max() > 0.9


def test_nothing_larger_than_the_bound_enters(marked):
    image = marked[0].image.copy()
    cv2.putText(image, "B", (60, 200), cv2.FONT_HERSHEY_SIMPLEX, 3.0, 255, 12)  # a huge letter
    big = detect_marks(image, max_area_fraction=0.05, max_height_fraction=0.5, max_stroke_fraction=0.2)
    loose = extract_stamps(image, mask=big, max_area_fraction=0.05, max_side_fraction=0.5)
    tight = extract_stamps(image, mask=big, max_area_fraction=0.004, max_side_fraction=0.15)
    assert max(s.area_fraction for s in loose) > 0.004  # the big letter is a candidate ...
    assert all(s.area_fraction <= 0.004 and s.side_fraction <= 0.15 for s in tight)  # ... and is left out
    assert len(tight) < len(loose)


def test_bound_arguments_validated(marked):
    with pytest.raises(ValueError, match="max_area_fraction"):
        extract_stamps(marked[0].image, max_area_fraction=0.0)
    with pytest.raises(ValueError, match="shape"):
        extract_stamps(marked[0].image, mask=np.zeros((3, 3), bool))


def test_unmarked_images_give_an_empty_bank():
    src = SyntheticSource(n_patients=6, images_per_patient=(1, 1), image_size=256, seed=4)
    assert build_bank(src.render(i).image for i in range(6)) == []


def test_bank_round_trip(tmp_path, bank):
    path = save_bank(bank, tmp_path / "bank")  # no .npz suffix added behind our back
    assert path.exists() and path.name == "bank"
    again = load_bank(path)
    assert len(again) == len(bank)
    for a, b in zip(bank, again):
        assert np.array_equal(a.values, b.values) and np.array_equal(a.alpha, b.alpha)
        assert (a.source_shape, a.bbox, a.source) == (b.source_shape, b.bbox, b.source)
    assert bank_summary(again) == bank_summary(bank)


def test_paste_is_seeded(bank, target):
    a = paste_stamps(target, bank, np.random.default_rng(5), n=2)
    b = paste_stamps(target, bank, np.random.default_rng(5), n=2)
    c = paste_stamps(target, bank, np.random.default_rng(6), n=2)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_paste_changes_only_the_mask(bank, target):
    out, mask = paste_stamps(target, bank, np.random.default_rng(0), n=3)
    assert out.shape == target.shape and out.dtype == np.uint8
    assert mask.any()
    assert np.array_equal(out[~mask], target[~mask])
    assert np.abs(out[mask].astype(int) - target[mask]).mean() > 10
    unchanged, none = paste_stamps(target, bank, np.random.default_rng(0), n=0)
    assert np.array_equal(unchanged, target) and not none.any()


def _boxes(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    _, _, stats, _ = cv2.connectedComponentsWithStats(
        cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)), connectivity=8)
    return [(y, x, y + h, x + w) for x, y, w, h, _ in stats[1:]]


def test_positions(bank, target):
    h, w = target.shape
    for seed in range(8):
        _, mask = paste_stamps(target, bank, np.random.default_rng(seed), n=1, positions=["corner"])
        y0, x0, y1, x1 = _boxes(mask)[0]
        near_y = min(y0, h - y1) <= 0.2 * h
        near_x = min(x0, w - x1) <= 0.2 * w
        assert near_y and near_x, (seed, (y0, x0, y1, x1))
        _, mask = paste_stamps(target, bank, np.random.default_rng(seed), n=1, positions=["mid"])
        ys, xs = np.nonzero(mask)
        assert ys.min() >= 0.14 * h and xs.min() >= 0.14 * w
        assert ys.max() <= 0.86 * h and xs.max() <= 0.86 * w


def test_stamps_rescale_to_the_target(bank):
    """A stamp keeps its size relative to the image: twice the image, twice the stamp."""
    stamp = max(bank, key=lambda s: s.values.size)
    one = [stamp]
    small = np.full((256, 256), 60, np.uint8)
    large = np.full((512, 512), 60, np.uint8)
    _, m1 = paste_stamps(small, one, np.random.default_rng(1), n=1, scale_jitter=(1, 1))
    _, m2 = paste_stamps(large, one, np.random.default_rng(1), n=1, scale_jitter=(1, 1))
    ratio = m2.sum() / m1.sum()
    assert 3.0 <= ratio <= 5.0  # area scales with the square


def test_pasted_stamps_look_like_marks(bank):
    """The detector finds what was pasted: the transplant plants real-looking marks."""
    src = SyntheticSource(n_patients=10, images_per_patient=(1, 1), image_size=256, seed=11)
    inter = union = 0
    for i in range(10):
        out, mask = paste_stamps(src.render(i).image, bank, np.random.default_rng(i), n=2)
        found = detect_marks(out)
        inter += (found & mask).sum()
        union += (found | mask).sum()
    assert inter / union >= 0.5


def test_paste_validates(bank, target):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="positions"):
        paste_stamps(target, bank, rng, positions=["ceiling"])
    with pytest.raises(ValueError, match="Generator"):
        paste_stamps(target, bank, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        paste_stamps(target, [], rng, n=1)
    with pytest.raises(ValueError, match="position_weights"):
        paste_stamps(target, bank, rng, positions=["corner"], position_weights=[1, 1])
    with pytest.raises(ValueError, match="n must"):
        paste_stamps(target, bank, rng, n=(3, 1))


def test_paste_on_tiny_and_huge_images(bank):
    for size in (32, 3000):
        image = np.full((size, size), 80, np.uint8)
        out, mask = paste_stamps(image, bank, np.random.default_rng(3), n=2)
        assert out.shape == image.shape and mask.any()


@xray_mini
def test_xray_mini_bank_respects_the_bound():
    """The bank from the real COVID-19 images: no stamp beyond the bound, almost nothing
    from inside the lungs."""
    import pandas as pd

    manifest = pd.read_csv(XRAY_MINI / "manifest.csv")
    covid = manifest[manifest.label == "covid"]
    images = [cv2.imread(str(XRAY_MINI / p), cv2.IMREAD_GRAYSCALE) for p in covid.path]
    bank = build_bank(images, names=list(covid.path), max_area_fraction=0.004, max_side_fraction=0.15)
    assert len(bank) >= 20
    assert max(s.area_fraction for s in bank) <= 0.004
    assert max(s.side_fraction for s in bank) <= 0.15
    lungs = dict(zip(covid.path, covid.lung_mask))
    inside = total = 0
    for s in bank:
        lung = cv2.imread(str(XRAY_MINI / lungs[s.source]), cv2.IMREAD_GRAYSCALE) > 127
        y0, x0, y1, x1 = s.bbox
        inside += int((lung[y0:y1, x0:x1] & s.pixels).sum())
        total += int(s.pixels.sum())
    assert inside / total <= 0.02
    # the bank reproduces its marks: pasting a stamp back where it came from restores it
    s = bank[0]
    image = images[list(covid.path).index(s.source)]
    assert mask_iou(s.pixels, detect_marks(image)[s.bbox[0]:s.bbox[2], s.bbox[1]:s.bbox[3]]) >= 0.9
