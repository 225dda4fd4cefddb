"""Threshold rules and calibration figures against values worked out by hand."""
import numpy as np
import pytest

from covid_tl.stats.calibration import (brier_score, expected_calibration_error, fit_temperature,
                                  negative_log_likelihood, reliability_bins)
from covid_tl.core.errors import ConfigError
from covid_tl.stats.operating_point import choose_threshold, fixed_threshold, parse_threshold

# Every probability below 0.5: at 0.5 sensitivity is 0, though the ranking is good.
# Cuts falling: 0.45 0.35 0.3 0.2 0.1 0.05 -> sensitivity 1/3 2/3 2/3 1 1 1, 1-specificity 0 0 1/3 1/3 2/3 1.
PROBS = np.array([0.05, 0.1, 0.2, 0.3, 0.35, 0.45])
TARGETS = np.array([0, 0, 1, 0, 1, 1])


@pytest.mark.parametrize("rule, expected", [
    ("youden", 0.325),      # J = 2/3 at 0.35 and at 0.2: the higher one; midway to 0.3
    ("sens@0.95", 0.15),    # sensitivity 1 first at 0.2; midway to 0.1
    ("sens@0.5", 0.325),    # 2/3 at 0.35
    ("sens@0.3", 0.4),      # 1/3 at 0.45; midway to 0.35
    ("sens@1", 0.15),
    # specificity at those cuts: 1 1 2/3 2/3 1/3 0; spec@X takes the lowest cut that keeps it >= X
    ("spec@1", 0.325),      # 1 down to 0.35 (0.3 is no finding); midway to 0.3
    ("spec@0.6", 0.15),     # 2/3 down to 0.2; midway to 0.1
    ("spec@0.3", 0.075),    # 1/3 at 0.1; midway to 0.05
    (0.3, 0.3),             # a number is itself
])
def test_rules_give_the_hand_worked_cut(rule, expected):
    assert choose_threshold(rule, PROBS, TARGETS) == pytest.approx(expected)


def test_the_chosen_cut_calls_the_images_the_chosen_probability_calls():
    cut = choose_threshold("youden", PROBS, TARGETS)
    assert cut not in PROBS and list(PROBS >= cut) == list(PROBS >= 0.35)
    # The lowest probability chosen: the cut is midway to 0.
    assert choose_threshold("sens@1", np.array([0.2, 0.6, 0.9]), np.array([1, 0, 1])) == pytest.approx(0.1)


# Cuts falling: 0.9 0.8 0.7 0.6 0.4 0.3 0.2 0.1; the no-finding images are 0.1 0.2 0.3 0.6, so
# 1-specificity 0 0 0 1/4 1/4 2/4 3/4 1 and specificity 1 1 1 3/4 3/4 1/2 1/4 0.
SPEC_PROBS = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
SPEC_TARGETS = np.array([0, 0, 0, 1, 0, 1, 1, 1])


@pytest.mark.parametrize("rule, expected", [
    ("spec@0.75", 0.35),    # 3/4 down to 0.4; at 0.3 it is 1/2: midway between 0.4 and 0.3
    ("spec@0.7", 0.35),     # the same cut: nothing between 3/4 and 1/2
    ("spec@0.5", 0.25),     # 1/2 at 0.3; midway to 0.2
    ("spec@1", 0.65),       # 1 down to 0.7 (0.6 is no finding); midway between 0.7 and 0.6
    ("spec@0.8", 0.65),     # 3/4 < 0.8: the same cut as spec@1
    ("sens@0.75", 0.65),    # beside it: sensitivity 3/4 first at 0.7, the same cut here
])
def test_spec_takes_the_lowest_cut_that_keeps_the_specificity(rule, expected):
    cut = choose_threshold(rule, SPEC_PROBS, SPEC_TARGETS)
    assert cut == pytest.approx(expected)
    # spec@0.75 at 0.35 calls 0.4 0.6 0.7 0.8 0.9: sensitivity 1, specificity 3/4 (0.6 called)
    called = SPEC_PROBS >= cut
    assert (~called[SPEC_TARGETS == 0]).mean() >= float(rule.split("@")[1]) or rule.startswith("sens@")


def test_spec_with_ties_cannot_split_the_tied_images():
    # Cuts falling: 0.8 0.4 0.2; no finding at 0.2 and 0.4 (tied with two COVID-19 at 0.4):
    # specificity 1 1/2 0.
    probs, targets = np.array([0.2, 0.4, 0.4, 0.4, 0.8]), np.array([0, 0, 1, 1, 1])
    assert choose_threshold("spec@0.5", probs, targets) == pytest.approx(0.3)  # 1/2 at 0.4; midway to 0.2
    # 0.6: calling the COVID-19 images at 0.4 calls the no-finding one beside them, so only 0.8
    # is called; midway between 0.8 and 0.4.
    assert choose_threshold("spec@0.6", probs, targets) == pytest.approx(0.6)
    assert choose_threshold("spec@1", probs, targets) == pytest.approx(0.6)


def test_spec_at_1_with_a_no_finding_image_on_top_calls_nothing_covid():
    # Cuts falling: 0.9 0.6 0.3; 0.9 is no finding: specificity 1 only above it (nothing called),
    # so the cut is midway between 0.9 and 1.
    probs, targets = np.array([0.3, 0.6, 0.9]), np.array([1, 1, 0])
    assert choose_threshold("spec@1", probs, targets) == pytest.approx(0.95)
    assert choose_threshold("spec@0.5", probs, targets) == pytest.approx(0.95)  # at 0.9 it is 0 already
    # Tied on top with a COVID-19 image: the same.
    assert choose_threshold("spec@1", np.array([0.2, 0.7, 0.7]), np.array([0, 0, 1])) == pytest.approx(0.85)


def test_the_spec_cut_calls_exactly_the_images_its_rule_says():
    """Specificity at the cut reaches X; calling the next lower probability too would break it."""
    rng = np.random.default_rng(3)
    targets = rng.integers(0, 2, 60)
    probs = np.round(np.clip(rng.normal(np.where(targets == 1, 0.6, 0.4), 0.2), 0, 1), 1)  # rounded: many ties
    negatives = probs[targets == 0]
    for target in (0.1, 0.25, 0.5, 2 / 3, 0.75, 0.9, 0.95, 1.0):
        cut = choose_threshold(f"spec@{target}", probs, targets)
        assert cut not in probs and (negatives < cut).mean() >= target - 1e-12
        lower = probs[probs < cut]
        if lower.size:  # one step lower: every image at the next lower probability called too
            assert (negatives < lower.max()).mean() < target - 1e-12, target


def test_parsing_accepts_numbers_and_rules_and_refuses_the_rest_in_one_line():
    assert parse_threshold(0) == 0.0 and parse_threshold(1) == 1.0 and parse_threshold("sens@0.95") == "sens@0.95"
    assert parse_threshold("spec@0.9") == "spec@0.9" and parse_threshold("spec@1") == "spec@1"
    assert fixed_threshold("youden") == 0.5 and fixed_threshold(0.3) == 0.3 and fixed_threshold("spec@0.9") == 0.5
    for bad, says in [("sens@1.5", "sens@ must be a number in (0, 1]"), ("sens@0", "in (0, 1]"),
                      ("sens@x", "in (0, 1]"), ("foo", "threshold must be a probability in [0, 1], youden, sens@X or spec@X"),
                      ("spec@0", "threshold=spec@0: the specificity after spec@ must be a number in (0, 1]"),
                      ("spec@abc", "the specificity after spec@ must be a number in (0, 1]"),
                      ("spec@1.2", "the specificity after spec@ must be a number in (0, 1]"),
                      ("spec@1.5", "the specificity after spec@"), ("spec@", "got 'spec@'"),
                      (1.5, "got 1.5"), (True, "got True")]:
        with pytest.raises(ConfigError, match=None) as info:
            parse_threshold(bad)
        assert says in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="needs both classes in the validation split"):
        choose_threshold("youden", PROBS, np.zeros(6))


def test_ece_and_brier_match_the_hand_worked_values():
    probs, targets = np.array([0.05, 0.05, 0.35, 0.95]), np.array([0, 1, 0, 1])
    # bins [0, .1): mean p .05, share .5, 2 images; [.3, .4): .35 vs 0; [.9, 1]: .95 vs 1
    assert expected_calibration_error(probs, targets) == pytest.approx(0.5 * 0.45 + 0.25 * 0.35 + 0.25 * 0.05)
    assert brier_score(probs, targets) == pytest.approx((0.05**2 + 0.95**2 + 0.35**2 + 0.05**2) / 4)
    assert brier_score(np.array([0.9, 0.8]), np.array([1, 1])) == pytest.approx((0.01 + 0.04) / 2)  # one class
    bins = reliability_bins(probs, targets)
    assert [(b["low"], b["n"], b["share_covid"]) for b in bins] == [(0.0, 2, 0.5), (pytest.approx(0.3), 1, 0.0),
                                                                   (pytest.approx(0.9), 1, 1.0)]
    assert expected_calibration_error(np.zeros(0), np.zeros(0)) is None


def test_temperature_softens_overconfident_logits_and_lowers_their_nll():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 2, 400)
    x = rng.normal(np.where(targets == 1, 1.0, -1.0), 1.0)
    # Two unit-variance Gaussians at -1 and +1: the calibrated logit (log likelihood ratio) is 2x,
    # so logits of 5x are overconfident by a factor 2.5.
    overconfident = 5 * x
    temperature = fit_temperature(overconfident, targets)
    assert temperature == pytest.approx(2.5, rel=0.1)
    assert negative_log_likelihood(overconfident, targets, temperature) < negative_log_likelihood(overconfident, targets) - 0.1
    # Scaling the logits scales the fitted temperature.
    assert fit_temperature(4 * x, targets) == pytest.approx(4 * fit_temperature(x, targets), rel=1e-3)


def test_the_frozen_head_preset_shows_its_epochs_and_early_stopping_and_the_default_has_neither():
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"):
        preset = compose("train", overrides=["experiment=frozen_head"])
        default = compose("train")
        capped = compose("train", overrides=["experiment=frozen_head", "trainer.max_epochs=2"])
    assert preset.trainer.max_epochs == 300 and preset.freeze.policy == "all" and preset.fast_frozen
    assert preset.callbacks.early_stopping.monitor == "val/loss" and preset.callbacks.early_stopping.patience == 20
    assert default.trainer.max_epochs == 8 and "early_stopping" not in default.callbacks
    assert default.threshold == 0.5 and default.calibrate is False
    assert capped.trainer.max_epochs == 2  # the user's number wins


def test_reliability_diagram_has_the_diagonal_labels_and_every_image_in_a_bar(tmp_path):
    from covid_tl.reporting.plots import reliability_diagram

    probs, targets = np.array([0.05, 0.05, 0.35, 0.95]), np.array([0, 1, 0, 1])
    fig = reliability_diagram({"test": (reliability_bins(probs, targets), expected_calibration_error(probs, targets))},
                              tmp_path / "reliability.png", "temperature 1.50")
    top, bottom = fig.axes
    assert (tmp_path / "reliability.png").is_file() and "temperature 1.50" in top.get_title()
    assert top.get_ylabel() and bottom.get_xlabel() and bottom.get_ylabel() == "images per bin"
    assert list(top.lines[0].get_xdata()) == [0, 1] and list(top.lines[0].get_ydata()) == [0, 1]
    assert sum(p.get_height() for p in bottom.patches) == 4
    assert "test (ECE 0.325)" in [t.get_text() for t in top.get_legend().get_texts()]
