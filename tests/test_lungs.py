"""preprocessing=lungs: the lung field's box, blanking and standardising worked out by hand on
small images with known rectangle masks, the fallback on implausible masks, the cache key
(lungs settings and segmenter digest), composition after crop_inpaint. End to end (training,
preview): tests/test_lungs_e2e.py."""
from __future__ import annotations

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from conftest import ROOT
from covid_tl.engine.build import build_preprocessing
from covid_tl.core.errors import ConfigError
from covid_tl.models.segmenter import LungSegmenter
from covid_tl.preprocess.lungs import LungParams, lung_box, lung_field
from covid_tl.preprocess.pipeline import build_preprocess


def rectangle(shape, y0, x0, y1, x1):
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def compose_train(*overrides):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def test_box_is_the_masks_box_grown_by_the_margin_and_clipped():
    mask = rectangle((100, 80), 20, 10, 60, 50)  # 40 x 40
    assert lung_box(mask, 0.1) == (16, 6, 64, 54)
    assert lung_box(mask, 0.0) == (20, 10, 60, 50)
    assert lung_box(mask, 0.5) == (0, 0, 80, 70)  # 20 px each side, clipped at the top and left


def test_fill_blanks_outside_the_lungs_to_the_exact_value_and_keeps_the_inside():
    image = np.random.default_rng(0).integers(0, 256, (100, 80), dtype=np.uint8)
    mask = rectangle(image.shape, 20, 10, 60, 50)
    field = lung_field(image, mask, LungParams(margin=0.1, outside="fill", fill=7, standardize="none"))
    assert field.box == (16, 6, 64, 54) and field.image.shape == (48, 48) and not field.fallback
    inside = rectangle((48, 48), 4, 4, 44, 44)
    assert (field.image[~inside] == 7).all()
    assert np.array_equal(field.image[inside], image[20:60, 10:50].ravel())


def test_equalize_is_fitted_on_lung_pixels_and_applied_to_the_crop():
    image = np.full((40, 40), 25, np.uint8)  # outside the lungs: 25, between two lung levels
    image[10:30, 10:30] = np.repeat([10, 20, 30, 40], 100).reshape(20, 20)  # four levels, 100 px each
    field = lung_field(image, rectangle(image.shape, 10, 10, 30, 30), LungParams(margin=0.25, standardize="equalize"))
    # cdf at 10, 20, 30, 40: 100, 200, 300, 400 -> 255 * (cdf - 100) / 300 = 0, 85, 170, 255; 25 -> cdf(25) = 200 -> 85
    assert field.box == (5, 5, 35, 35)
    assert sorted(np.unique(field.image[5:25, 5:25])) == [0, 85, 170, 255]
    assert (field.image[:5] == 85).all()


def test_zscore_puts_the_lungs_mean_at_mid_grey_and_a_sd_at_a_sixth_of_the_range():
    image = np.full((40, 40), 130, np.uint8)
    image[10:30, 10:30] = 100
    image[10:30, 20:30] = 140  # lungs: half 100, half 140 -> mean 120, sd 20
    field = lung_field(image, rectangle(image.shape, 10, 10, 30, 30), LungParams(margin=0.25, standardize="zscore"))
    lungs = field.image[5:25, 5:25]
    assert set(np.unique(lungs)) == {85, 170}  # 127.5 -/+ 42.5
    assert lungs.mean() == pytest.approx(127.5) and field.image[0, 0] == 149  # 130: z 0.5 -> 148.75


def test_implausible_masks_fall_back_to_the_whole_film_and_are_counted_once_per_image():
    image = np.arange(100 * 100, dtype=np.int64).reshape(100, 100).astype(np.uint8)
    for mask in (np.zeros((100, 100), bool), rectangle((100, 100), 0, 0, 20, 20), rectangle((100, 100), 0, 0, 95, 95)):
        field = lung_field(image, mask, LungParams())  # shares 0, 0.04, 0.9025
        assert field.fallback and field.box == (0, 0, 100, 100)
    assert not lung_field(image, rectangle((100, 100), 0, 0, 30, 30), LungParams()).fallback  # 0.09
    segment = lambda film: np.zeros(film.shape, bool)  # noqa: E731
    steps = build_preprocess(lungs={}, segment=segment)
    other = image.copy()
    other[0, 0] += 1
    for film in (image, image, other):
        assert steps(film).box == (0, 0, 100, 100)
    assert steps.fallback_summary().startswith("preprocessing.lungs: 2 of 2 images segmented")


def test_lungs_after_crop_inpaint_give_the_box_in_the_original_film():
    image = np.full((100, 100), 90, np.uint8)
    segment = lambda film: rectangle(film.shape, 20, 20, 60, 60)  # noqa: E731  (on the 80 x 80 crop)
    steps = build_preprocess(crop={"fraction": 0.1, "auto": False}, lungs={"margin": 0.0}, segment=segment)
    prepared = steps(image)
    assert prepared.box == (30, 30, 70, 70) and prepared.image.shape == (40, 40)


def test_bad_lungs_keys_are_one_line_config_errors():
    segment = lambda film: film > 0  # noqa: E731
    with pytest.raises(ConfigError, match="preprocessing.lungs: outside must be one of keep, blur, fill"):
        build_preprocess(lungs={"outside": "black"}, segment=segment)
    with pytest.raises(ConfigError, match=r"preprocessing.lungs: unknown key\(s\) \['marign'\]"):
        build_preprocess(lungs={"marign": 0.1}, segment=segment)
    with pytest.raises(ConfigError, match="needs a lung segmenter"):
        build_preprocess(lungs={})


def test_cache_key_changes_with_the_lungs_settings_and_the_segmenter(tmp_path):
    other = tmp_path / "other.pt"
    LungSegmenter.create(encoder="tu-mobilenetv3_small_050", encoder_weights="none", encoder_depth=3,
                         decoder_channels=(16, 8, 8), input_size=32).save(other)
    directories = []
    for overrides in ([], ["preprocessing.lungs.margin=0.1"], [f"preprocessing.lungs.model={other}"], []):
        _, cache = build_preprocessing(compose_train("preprocessing=lungs", f"preprocessing.cache_dir={tmp_path}", *overrides))
        directories.append(cache.directory)
    assert len(set(directories)) == 3 and directories[0] == directories[3]


def test_lungs_crop_inpaint_paints_marks_then_takes_the_lung_field():
    cfg = compose_train("preprocessing=lungs_crop_inpaint", "preprocessing.lungs.outside=fill")
    assert cfg.preprocessing.inpaint.method == "telea" and cfg.preprocessing.crop.fraction == 0.05
    assert cfg.preprocessing.lungs.outside == "fill" and cfg.preprocessing.lungs.standardize == "equalize"


def test_experiment_robust_fine_tunes_efficientnet_lite0_on_equalised_lung_fields():
    cfg = compose_train("experiment=robust", "data=synthetic_shift")
    assert cfg.backbone.name == "efficientnet_lite0" and cfg.backbone.weights == "imagenet_offline"
    assert cfg.freeze.policy == "last_n" and cfg.freeze.trainable == 2 and cfg.freeze.bn == "frozen"
    assert cfg.preprocessing.lungs.standardize == "equalize" and cfg.preprocessing.crop is None
    assert cfg.trainer.max_epochs == 8 and cfg.data.holdout_source == "hospital_c" and cfg.threshold == "youden"
