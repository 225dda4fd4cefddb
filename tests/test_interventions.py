"""The audit's image interventions against values worked out by hand."""
import numpy as np
import pytest

from covid_tl.preprocess.interventions import fill, grown, only_region, without_region


def film():
    """4 x 4: a 2 x 2 'lung' of 200 in a film of 10s and one 50."""
    image = np.full((4, 4), 10, np.uint8)
    image[1:3, 1:3] = 200
    image[3, 3] = 50
    lungs = np.zeros((4, 4), bool)
    lungs[1:3, 1:3] = True
    return image, lungs


def test_lungs_removed_take_the_mean_of_the_kept_pixels_never_of_the_lungs():
    image, lungs = film()
    out = without_region(image, lungs)
    # kept: 11 pixels of 10 and one of 50 -> 160 / 12 = 13.33 -> 13; the lungs' 200 plays no part
    assert out[lungs].tolist() == [13] * 4
    assert np.array_equal(out[~lungs], image[~lungs])
    assert image[1, 1] == 200  # the input is not written to


def test_lungs_only_fill_everything_else_with_the_lungs_mean():
    image, lungs = film()
    out = only_region(image, lungs)
    assert out[~lungs].tolist() == [200] * 12 and out[lungs].tolist() == [200] * 4


def test_growing_a_region_by_a_fraction_of_the_shorter_side():
    region = np.zeros((20, 40), bool)
    region[10, 20] = True
    # 0.1 of the shorter side (20) is a radius of 2 pixels: OpenCV's 5 x 5 ellipse, rows of 1, 5, 5, 5, 1 pixels
    assert grown(region, 0.1).sum() == 17 and grown(region, 0.1)[10, 18:23].all() and grown(region, 0.1)[8:13, 20].all()
    assert np.array_equal(grown(region, 0.0), region)
    with pytest.raises(ValueError, match="grow must be >= 0"):
        grown(region, -0.1)


def test_a_region_covering_the_whole_film_becomes_mid_grey():
    image, _ = film()
    assert set(fill(image, np.ones((4, 4), bool)).ravel().tolist()) == {128}


def test_blur_keeps_the_regions_coarse_shading_and_leaves_the_rest():
    image = np.zeros((32, 32), np.uint8)
    image[:, 16:] = 255
    region = np.zeros((32, 32), bool)
    region[:, 12:20] = True
    out = fill(image, region, "blur", blur=0.1)
    assert np.array_equal(out[~region], image[~region])
    row = out[16, 12:20].astype(int)
    assert (np.diff(row) >= 0).all() and 0 < row[0] < 128 < row[-1] < 255  # the edge smoothed, not flattened


def test_bad_input_is_refused_in_one_line():
    image, lungs = film()
    with pytest.raises(ValueError, match="region of shape"):
        fill(image, lungs[:3])
    with pytest.raises(ValueError, match="fill must be one of mean, blur"):
        fill(image, lungs, "zero")
    with pytest.raises(ValueError, match="uint8"):
        fill(image.astype(np.float32), lungs)
