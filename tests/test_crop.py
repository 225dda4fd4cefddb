"""Border cropping: fixed margins, the uniform frame found from the outside in, boxes that
crop masks alike, and never cropping everything."""
from __future__ import annotations

import numpy as np
import pytest

from covid_tl.preprocess.crop import apply_box, crop_borders, find_border


def texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A busy, mid-grey 'radiograph' with no uniform rows or columns."""
    rng = np.random.default_rng(seed)
    return rng.integers(60, 200, size=(height, width), dtype=np.uint8)


def framed(seed: int = 0) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Texture inside a frame: black top, white left, flat grey bottom, black-then-white right."""
    img = texture(200, 240, seed)
    img[:12] = 0  # black band
    img[:, :9] = 255  # white band
    img[-7:] = 128  # flat grey collimation
    img[:, -5:] = 0  # NIH: black outside ...
    img[:, -11:-5] = 250  # ... a white film edge inside it
    return img, (12, 9, 200 - 7, 240 - 11)


def test_fixed_fraction_box_and_shape():
    img = texture(100, 200)
    out, box = crop_borders(img, fraction=0.1, auto=False)
    assert box == (10, 20, 90, 180)
    assert out.shape == (80, 160)
    assert np.array_equal(out, img[10:90, 20:180])


def test_fixed_fraction_per_side():
    img = texture(100, 200)
    out, box = crop_borders(img, fraction=[0.0, 0.2, 0.05, 0.0], auto=False)  # top, bottom, left, right
    assert box == (0, 10, 80, 200)
    assert out.shape == (80, 190)


def test_box_crops_masks_alike():
    img, _ = framed()
    mask = np.zeros(img.shape, bool)
    mask[50:60, 70:90] = True
    out, box = crop_borders(img, fraction=0.05)
    cropped = apply_box(mask, box)
    assert cropped.shape == out.shape
    assert cropped.sum() == mask.sum()  # the mask lies inside the kept area
    y0, x0, _, _ = box
    ys, xs = np.nonzero(cropped)
    assert (ys.min() + y0, xs.min() + x0) == (50, 70)


@pytest.mark.parametrize("bad", [-0.1, 0.5, 0.7, [0.1, 0.1, 0.1], "wide", [0.1, 0.1, 0.1, 0.6]])
def test_bad_fractions_raise(bad):
    with pytest.raises(ValueError, match="fraction"):
        crop_borders(texture(50, 50), fraction=bad)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="min_keep"):
        crop_borders(texture(50, 50), fraction=0.1, min_keep=0.0)
    with pytest.raises(ValueError, match="uint8"):
        crop_borders(texture(50, 50).astype(np.float32), fraction=0.1)
    with pytest.raises(ValueError, match="max_border"):
        find_border(texture(50, 50), max_border=0.5)
    with pytest.raises(ValueError, match="does not fit"):
        apply_box(texture(50, 50), (0, 0, 60, 10))


def test_min_keep_holds_for_large_fractions():
    img = texture(100, 100)
    out, box = crop_borders(img, fraction=0.45, auto=False, min_keep=0.5)  # would keep 10%
    assert out.shape[0] >= 50 and out.shape[1] >= 50
    y0, _, y1, _ = box
    assert abs(y0 - (100 - y1)) <= 1  # shrunk evenly


def test_finds_the_uniform_frame_exactly():
    img, inner = framed()
    assert find_border(img) == inner


def test_white_frame_inside_black_one_comes_off():
    img = texture(120, 120, seed=3)
    img[:, :4] = 0
    img[:, 4:10] = 245
    img[:, -4:] = 0
    img[:, -10:-4] = 245
    y0, x0, y1, x1 = find_border(img)
    assert (x0, x1) == (10, 110)
    assert (y0, y1) == (0, 120)


def test_small_marker_in_the_margin_does_not_stop_the_scan():
    img = texture(200, 200)
    img[:20] = 0
    img[5:12, 150:156] = 255  # an "L" marker in the black margin: 3% of those rows
    assert find_border(img)[0] == 20


def test_anatomy_is_not_a_border():
    """Rows that are dark only at the sides (air beside the neck) are kept."""
    img = texture(200, 200)
    img[:30, :70] = 0
    img[:30, 130:] = 0
    assert find_border(img) == (0, 0, 200, 200)


def test_auto_then_fraction_of_what_is_left():
    img, (y0, x0, y1, x1) = framed()
    out, box = crop_borders(img, fraction=0.1)
    h, w = y1 - y0, x1 - x0
    assert box == (y0 + round(0.1 * h), x0 + round(0.1 * w), y1 - round(0.1 * h), x1 - round(0.1 * w))
    assert out.shape == (box[2] - box[0], box[3] - box[1])


def test_never_crops_everything():
    for value in (0, 255, 128):
        flat = np.full((80, 120), value, np.uint8)  # every row and column is "border"
        out, box = crop_borders(flat, fraction=0.2, max_border=0.49)
        assert out.shape[0] >= 40 and out.shape[1] >= 60, (value, box)


def test_max_border_limits_each_side():
    img = texture(100, 100)
    img[:40] = 0
    y0, _, _, _ = find_border(img, max_border=0.25)
    assert y0 == 25


@pytest.mark.parametrize("size", [32, 4000])
def test_any_size(size):
    img = texture(size, size)
    img[: size // 10] = 0
    out, box = crop_borders(img, fraction=0.05)
    assert box[0] >= size // 10
    assert min(out.shape) >= size // 2
