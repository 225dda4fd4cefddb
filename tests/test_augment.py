import numpy as np
import pytest
import torch

from hydra import compose, initialize_config_dir

from conftest import ROOT
from covid_tl.build import build_datamodule
from covid_tl.data.dataset import SeededAugmentation
from covid_tl.errors import ConfigError
from covid_tl.preprocess.augment import build_acquisition_augmentation, build_augmentation
from covid_tl.preprocess.model_input import InputSpec

IMAGE = np.tile(np.linspace(0, 255, 48).astype(np.uint8), (48, 1))


def test_no_amounts_means_no_augmentation():
    assert build_augmentation() is None


def test_study_augmentation_changes_images_but_keeps_size_and_type():
    augment = SeededAugmentation(build_augmentation(rotate=10, shear=5, zoom=0.1, brightness_contrast=0.2))
    out = augment(IMAGE)
    assert out.shape == IMAGE.shape and out.dtype == np.uint8
    assert not np.array_equal(out, IMAGE)


def test_augmentation_is_reproducible_per_torch_seed_and_differs_between_seeds():
    def draws(seed: int) -> list[np.ndarray]:
        torch.manual_seed(seed)  # what a DataLoader worker's seed looks like to the dataset
        augment = SeededAugmentation(build_augmentation(rotate=15, zoom=0.1))
        return [augment(IMAGE) for _ in range(3)]

    a, b, c = draws(1), draws(1), draws(2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[0], a[1])  # a stream, not one fixed transform


@pytest.mark.parametrize("bad", [{"rotate": -1}, {"zoom": 1.0}])
def test_bad_amounts_are_refused(bad):
    with pytest.raises(ValueError, match="augment"):
        build_augmentation(**bad)


# ------------------------------------------------------------------------- augment=acquisition

def one_step(name: str, low: float, high: float | None = None, p: float = 1.0):
    return build_acquisition_augmentation(**{name: {"p": p, "range": [low, low if high is None else high]}})


def apply(name: str, image: np.ndarray, low: float, high: float | None = None) -> np.ndarray:
    return one_step(name, low, high)(image=image)["image"]


FLAT = np.full((32, 32), 128, np.uint8)
HALVES = np.hstack([np.full((32, 16), 100, np.uint8), np.full((32, 16), 200, np.uint8)])  # mean 150
TEXTURE = np.random.default_rng(0).integers(0, 256, (64, 64)).astype(np.uint8)


def test_gamma_brightness_and_contrast_by_hand():
    assert np.all(apply("gamma", FLAT, 2.0) == 64)  # 255 * (128 / 255) ** 2 = 64.25
    assert np.all(apply("brightness", FLAT, 0.2) == 179)  # 128 + 0.2 * 255
    out = apply("contrast", HALVES, 0.5)  # halfway to the mean, 150
    assert np.all(out[:, :16] == 125) and np.all(out[:, 16:] == 175)


def test_blur_is_a_gaussian_of_the_sigma_it_names():
    row = apply("blur", HALVES, 2.0)[0].astype(float)
    # pixel centres 0.5 px either side of the step: 100 + 100 * Phi(-/+ 0.25) = 140.1, 159.9
    assert row[15] == pytest.approx(140, abs=1) and row[16] == pytest.approx(160, abs=1)


def test_downscale_loses_what_the_smaller_grid_cannot_hold():
    checker = (np.indices((32, 32)).sum(0) % 2 * 255).astype(np.uint8)
    assert np.all(np.abs(apply("downscale", checker, 0.5).astype(int) - 127.5) <= 1)


def test_jpeg_quality_10_loses_far_more_than_100():
    err = {q: np.abs(apply("jpeg", TEXTURE, q).astype(int) - TEXTURE).mean() for q in (10, 100)}
    assert err[100] < 1 and err[10] > 20


def test_noise_std_is_a_fraction_of_full_scale():
    out = apply("noise", np.full((128, 128), 128, np.uint8), 0.1)
    assert abs(out.std() - 25.5) < 1.5 and abs(out.mean() - 128) < 1


def test_rotate_turns_counter_clockwise_by_its_degrees():
    assert np.array_equal(apply("rotate", TEXTURE, 90.0), np.rot90(TEXTURE))


def test_p_zero_is_the_identity_and_p_one_always_applies():
    assert build_acquisition_augmentation(**{k: {"p": 0.0, "range": [1, 1]} for k in ("gamma", "jpeg")}) is None
    assert build_acquisition_augmentation() is None
    half = SeededAugmentation(one_step("gamma", 2.0, p=0.5))
    changed = [not np.array_equal(half(FLAT), FLAT) for _ in range(200)]
    assert 70 < sum(changed) < 130


def test_ranges_are_drawn_per_image():
    augment = SeededAugmentation(one_step("gamma", 0.5, 2.0))
    means = {float(augment(FLAT).mean()) for _ in range(20)}
    assert len(means) > 10 and min(means) >= 64 - 1 and max(means) <= 181 + 1  # 255 * (128/255) ** [2, 0.5]


@pytest.mark.parametrize("steps, message", [
    ({"gama": {"p": 1, "range": [1, 2]}}, "unknown augment key"),
    ({"gamma": {"p": 1.5, "range": [1, 2]}}, "augment.gamma"),
    ({"gamma": {"p": 1, "range": [2, 1]}}, "augment.gamma"),
    ({"jpeg": {"p": 1, "range": [0, 200]}}, "augment.jpeg"),
    ({"blur": {"range": [1, 2]}}, "augment.blur takes p and range"),
])
def test_bad_acquisition_settings_are_refused_naming_the_key(steps, message):
    with pytest.raises(ConfigError, match=message):
        build_acquisition_augmentation(**steps)


def test_acquisition_composes_with_the_watermark_transplant():
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["augment=acquisition", "augment.watermark.p=0.5", "augment.jpeg.p=0"])
    datamodule = build_datamodule(cfg, InputSpec(size=32))
    names = [type(t).__name__ for t in datamodule.augmentation.transforms]
    assert names == ["Rotate", "RandomGamma", "RandomBrightnessContrast", "ColorJitter", "Downscale", "GaussianBlur",
                     "GaussNoise"]
    assert datamodule.watermark_options["p"] == 0.5


@pytest.mark.parametrize("override, message", [("augment.jpeg.range=[0,200]", "augment.jpeg: All values in"),
                                               ("augment.rotate.p=2", "augment.rotate: p must be in")])
def test_a_bad_augment_key_reaches_the_user_as_one_config_error(override, message):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["augment=acquisition", override])
    with pytest.raises(ConfigError, match=message):
        build_datamodule(cfg, InputSpec(size=32))
