import numpy as np
import pytest

from covid_tl.data.synthetic.source import SyntheticSource
from covid_tl.cam.scores import artifact_region, border_band, cam_scores, mass_fraction, mean_scores, to_original


def test_cam_mass_on_regions_by_hand():
    cam = np.zeros((10, 10), np.float32)
    cam[0, 0] = 3.0  # in the border band
    cam[5, 5] = 1.0  # in the lungs
    lungs = np.zeros((10, 10), bool)
    lungs[4:7, 4:7] = True
    scores = cam_scores(cam, border_band(cam.shape, 0.1), lungs)
    assert scores == {"artifact_fraction": pytest.approx(0.75), "lung_fraction": pytest.approx(0.25)}
    assert cam_scores(cam, border_band(cam.shape, 0.1), None)["lung_fraction"] is None
    assert mass_fraction(np.zeros((3, 3)), np.ones((3, 3), bool)) is None


def test_cam_is_laid_back_into_its_crop_box():
    cam = np.ones((4, 4), np.float32)
    full = to_original(cam, (10, 20, 30, 60), (40, 80))
    assert full.shape == (40, 80) and full[10:30, 20:60].min() == 1 and full.sum() == 20 * 40


def test_artifact_region_grows_marks_and_adds_the_border():
    marks = np.zeros((100, 100), bool)
    marks[50, 50] = True
    region = artifact_region(marks, dilate_fraction=0.03, border_fraction=0.05)
    assert region[50, 53] and not region[50, 55] and region[0, 50] and not region[10, 50]


def test_means_per_class_leave_out_missing_values():
    scores = [{"a": 1.0, "b": None}, {"a": 0.0, "b": 0.5}, {"a": 0.5, "b": 1.0}]
    means = mean_scores(scores, ["covid", "no_finding", "no_finding"])
    assert means["a"] == pytest.approx(0.5) and means["b"] == pytest.approx(0.75)
    assert means["a/covid"] == 1.0 and means["b/covid"] is None and means["a/no_finding"] == pytest.approx(0.25)


def test_synthetic_rows_have_lung_masks():
    source = SyntheticSource(n_patients=2, image_size=32)
    row = source.frame().iloc[0].to_dict()
    mask = source.load_lung_mask(row)
    assert mask.dtype == bool and mask.shape == source.load_image(row).shape and mask.any()
