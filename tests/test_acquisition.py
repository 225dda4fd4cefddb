"""A hospital's imaging chain (covid_tl.preprocess.acquisition): each step against a hand-worked
value, the whole chain as identity by default, and phantoms stored through a chain."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from pydantic import ValidationError

from covid_tl.data.synthetic.source import SyntheticSource
from covid_tl.preprocess.acquisition import (AcquisitionChain, acquire, burn_text, collimate, jpeg, resample,
                                             window_gamma)

RNG = np.random.default_rng(0)
TEXTURE = RNG.integers(0, 256, (48, 64)).astype(np.uint8)


def test_window_then_gamma_by_hand():
    signal = np.array([0.1, 0.5, 0.75, 0.9], np.float32)
    # window [0.25, 0.75]: 0.1 -> 0 (clipped), 0.5 -> 0.5, 0.75 -> 1, 0.9 -> 1 (clipped); then ** 2
    np.testing.assert_allclose(window_gamma(signal, 0.25, 0.75, 2.0), [0.0, 0.25, 1.0, 1.0])


def test_resample_averages_what_the_detector_cannot_resolve():
    checker = (np.indices((8, 8)).sum(0) % 2 * 255).astype(np.uint8)  # 1-pixel checkerboard
    out = resample(checker, 0.5)  # each 2x2 block has two 0s and two 255s
    assert out.shape == (8, 8) and np.all(np.abs(out.astype(int) - 127.5) <= 0.5)
    assert resample(TEXTURE, 1.0) is TEXTURE


def test_collimate_sets_a_band_of_each_side():
    out = collimate(np.full((20, 10), 100, np.uint8), 0.1, 7)  # 2 rows top and bottom, 1 column each side
    band = np.ones((20, 10), bool)
    band[2:18, 1:9] = False
    assert np.all(out[band] == 7) and np.all(out[~band] == 100)


@pytest.mark.parametrize("corner", ["top_left", "top_right", "bottom_left", "bottom_right"])
def test_text_lands_in_its_corner_at_its_height(corner):
    out = burn_text(np.zeros((100, 200), np.uint8), "AB 12", corner, 0.1, 255)
    ys, xs = np.nonzero(out > 127)
    assert (ys.max() < 50) == corner.startswith("top") and (xs.max() < 100) == corner.endswith("left")
    assert 8 <= ys.max() - ys.min() + 1 <= 14  # cap height 0.1 x 100 px (strokes add a little)


def test_jpeg_quality_decides_the_loss():
    err = {q: np.abs(jpeg(TEXTURE, q).astype(int) - TEXTURE).mean() for q in (10, 95)}
    assert err[95] < 5 < err[10]


def test_default_chain_is_the_identity_and_exposure_is_a_gain():
    assert np.array_equal(acquire(TEXTURE, AcquisitionChain(), RNG), TEXTURE)
    flat = np.array([[60, 200]], np.uint8)
    np.testing.assert_array_equal(acquire(flat, AcquisitionChain(exposure=(2.0, 2.0)), RNG), [[120, 255]])


def test_noise_has_the_std_it_names():
    out = acquire(np.full((100, 100), 128, np.uint8), AcquisitionChain(noise=(0.1, 0.1)), np.random.default_rng(1))
    assert abs(out.std() - 25.5) < 1.0 and abs(out.mean() - 128) < 1.0


@pytest.mark.parametrize("bad", [{"gamma": (1.2, 0.8)}, {"window": (0.5, 0.5)}, {"downscale": (0.0, 1.0)},
                                 {"jpeg": (0, 50)}, {"text_corner": "middle"}, {"colour": 1}])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValidationError):
        AcquisitionChain(**bad)


def test_a_hospital_is_a_named_source_with_its_chain_over_the_same_phantoms():
    chain = AcquisitionChain(exposure=(0.8, 1.2), noise=(0.02, 0.02), border=0.05, text="X", jpeg=(50, 80))
    plain = SyntheticSource(n_patients=6, image_size=48, seed=3)
    hospital = SyntheticSource(n_patients=6, image_size=48, seed=3, name="hospital_x", chain=chain)
    again = SyntheticSource(n_patients=6, image_size=48, seed=3, name="hospital_x", chain=dataclasses.asdict(chain))
    frame = hospital.frame()
    assert set(frame["source"]) == {"hospital_x"}
    assert frame["patient_id"].str.startswith("hospital_x:").all() and frame["path"].str.startswith("hospital_x/").all()
    assert frame["label"].tolist() == plain.frame()["label"].tolist()
    for i in range(len(hospital)):
        a, b, ours = plain.render(i), hospital.render(i), again.render(i)
        assert np.array_equal(a.lung_mask, b.lung_mask) and not np.array_equal(a.image, b.image)
        assert np.array_equal(b.image, ours.image)  # seeded per image: same pixels every time
