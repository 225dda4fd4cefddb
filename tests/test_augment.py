import numpy as np
import pytest
import torch

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import ROOT
from covid_tl.engine.build import build_datamodule
from covid_tl.data.dataset import SeededAugmentation
from covid_tl.core.errors import ConfigError
from covid_tl.preprocess.augment import build_augmentation
from covid_tl.preprocess.steps import STEPS
from covid_tl.preprocess.model_input import InputSpec

IMAGE = np.tile(np.linspace(0, 255, 48).astype(np.uint8), (48, 1))


def test_no_amounts_means_no_augmentation():
    assert build_augmentation() is None


def around(centre: float, amount: float, p: float = 1.0) -> dict:
    return {"p": p, "range": [centre - amount, centre + amount]}


def test_study_augmentation_changes_images_but_keeps_size_and_type():
    augment = SeededAugmentation(build_augmentation(rotate=around(0, 10), shear=around(0, 5), scale=around(1, 0.1),
                                                    brightness=around(0, 0.2)))
    out = augment(IMAGE)
    assert out.shape == IMAGE.shape and out.dtype == np.uint8
    assert not np.array_equal(out, IMAGE)


def test_augmentation_is_reproducible_per_torch_seed_and_differs_between_seeds():
    def draws(seed: int) -> list[np.ndarray]:
        torch.manual_seed(seed)  # what a DataLoader worker's seed looks like to the dataset
        augment = SeededAugmentation(build_augmentation(rotate=around(0, 15), scale=around(1, 0.1)))
        return [augment(IMAGE) for _ in range(3)]

    a, b, c = draws(1), draws(1), draws(2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[0], a[1])  # a stream, not one fixed transform


def test_steps_always_applied_share_one_resampling_and_the_others_keep_their_p():
    """rotate and scale at p 1 are one A.Affine (each resampling blurs); shear at p 0.5 its own."""
    augment = build_augmentation(rotate=around(0, 10), scale=around(1, 0.1), shear=around(0, 5, p=0.5), gamma=around(1, 0.2))
    kinds = [(type(t).__name__, t.p) for t in augment.transforms]
    assert kinds == [("Affine", 1.0), ("Affine", 0.5), ("RandomGamma", 1.0)]
    assert augment.transforms[0].rotate == (-10, 10) and augment.transforms[0].shear == {"x": (0, 0), "y": (0, 0)}


def one_step(name: str, low: float, high: float | None = None, p: float = 1.0):
    return build_augmentation(**{name: {"p": p, "range": [low, low if high is None else high]}})


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


def test_blur_is_a_gaussian_of_the_sigma_it_names_as_a_fraction_of_the_shorter_side():
    row = apply("blur", HALVES, 2 / 32)[0].astype(float)  # 2 px of 32
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
    assert build_augmentation(**{k: {"p": 0.0, "range": [1, 1]} for k in ("gamma", "jpeg")}) is None
    assert build_augmentation() is None
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
    ({"jpeg": {"p": 1, "range": [0, 200]}}, r"augment.jpeg: range \[0, 200\] outside its valid \[1, 100\] \(JPEG quality\)"),
    ({"downscale": {"p": 1, "range": [0, 0.5]}}, r"augment.downscale: range \[0, 0.5\] outside its valid \(0, 1\]"),
    ({"rotate": {"p": 1, "range": [-5, 5]}, "border": "wrap"}, "unknown augment.border 'wrap'"),
    ({"blur": {"range": [1, 2]}}, "augment.blur takes p and range"),
])
def test_bad_acquisition_settings_are_refused_naming_the_key(steps, message):
    with pytest.raises(ConfigError, match=message):
        build_augmentation(**steps)


def test_acquisition_composes_with_the_watermark_transplant():
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["augment=acquisition", "watermark=transplant", "augment.jpeg.p=0"])
    datamodule = build_datamodule(cfg, InputSpec(size=32))
    names = [type(t).__name__ for t in datamodule.augmentation.transforms]
    assert names == ["Affine", "RandomGamma", "RandomBrightnessContrast", "ColorJitter", "Downscale", "FractionalBlur",
                     "GaussNoise"]
    assert datamodule.watermark_options["p"] == 0.5


@pytest.mark.parametrize("override, message", [("augment.jpeg.range=[0,200]", r"augment.jpeg: range \[0, 200\] outside"),
                                               ("augment.rotate.p=2", "augment.rotate: p must be in")])
def test_a_bad_augment_key_reaches_the_user_as_one_config_error(override, message):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["augment=acquisition", override])
    with pytest.raises(ConfigError, match=message):
        build_datamodule(cfg, InputSpec(size=32))


@pytest.mark.parametrize("preset, kinds", [
    ("none", []),
    ("study", [("Affine", 1.0)]),
    ("acquisition", [("Affine", 0.5), ("RandomGamma", 0.8), ("RandomBrightnessContrast", 0.5), ("ColorJitter", 0.8),
                     ("Downscale", 0.5), ("FractionalBlur", 0.3), ("GaussNoise", 0.5), ("ImageCompression", 0.5)]),
    ("imaging_chain", [("Affine", 1.0)] + [(name, 0.5) for name in ("RandomGamma", "RandomBrightnessContrast", "ColorJitter",
                                                                    "Downscale", "FractionalBlur", "GaussNoise", "ImageCompression")]),
])
def test_every_preset_is_the_one_builder_with_its_steps_in_chain_order(preset, kinds):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"augment={preset}"])
    augmentation = build_datamodule(cfg, InputSpec(size=32)).augmentation
    assert [(type(t).__name__, t.p) for t in (augmentation.transforms if augmentation else [])] == kinds


def test_study_preset_is_the_study_s_affine():
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["augment=study"])
    (affine,) = build_datamodule(cfg, InputSpec(size=32)).augmentation.transforms
    assert (affine.rotate, affine.shear["x"], affine.scale["x"]) == ((-10, 10), (-5, 5), (0.9, 1.1))


@pytest.mark.parametrize("preset", ["acquisition", "imaging_chain"])
def test_the_imaging_chain_presets_span_every_phantom_hospital(preset):
    """What one table of steps (covid_tl.preprocess.steps) lets a test hold: each step a phantom
    hospital varies (gamma, downscale, blur, noise, jpeg; same names, same units) lies within the
    preset's span of that step: its range, widened to the step's identity amount, since a step
    not applied (p < 1) leaves the image as it is. Training with the preset sees every hospital's look."""
    augment = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "augment" / f"{preset}.yaml"))
    sources = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "data" / "synthetic_shift.yaml"))["sources"]
    checked = 0
    for hospital, source in sources.items():
        for name in sorted(set(source["chain"]) & set(STEPS)):
            if source["chain"][name] is None:  # stored lossless
                continue
            (low, high), identity = augment[name]["range"], STEPS[name].identity
            span = (low, high) if identity is None else (min(low, identity), max(high, identity))
            assert span[0] <= source["chain"][name][0] and source["chain"][name][1] <= span[1], \
                f"{hospital}'s {name} {source['chain'][name]} lies outside augment={preset}'s span {list(span)}"
            checked += 1
    assert checked == 14  # 3 hospitals x gamma, downscale, blur, noise, and 2 JPEG ranges (B is lossless)
