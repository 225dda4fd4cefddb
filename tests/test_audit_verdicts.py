"""The audit's verdict rules and its table, on values worked out by hand."""
import pytest

from covid_tl.audit import verdicts
from covid_tl.reporting.audit_table import audit_lines


@pytest.mark.parametrize("value, ci, verdict", [
    (0.80, [0.62, 0.95], verdicts.SHORTCUT),  # clear of 0.5 and at least 0.65
    (0.66, [0.49, 0.80], verdicts.UNCLEAR),  # large enough, but its interval reaches 0.5
    (0.62, [0.51, 0.70], verdicts.UNCLEAR),  # clear of 0.5, but below 0.65 and more than 0.1 from chance
    (0.55, [0.30, 0.80], verdicts.NO_SIGN),  # within 0.1 of chance (the interval says how much that is worth)
    (None, None, verdicts.UNCLEAR),
])
def test_an_auroc_that_should_sit_at_chance(value, ci, verdict):
    assert verdicts.chance_auroc(value, ci) == verdict


@pytest.mark.parametrize("value, ci, verdict", [
    (0.25, [0.10, 0.40], verdicts.SHORTCUT), (0.25, [0.02, 0.40], verdicts.UNCLEAR),
    (0.05, [0.0, 0.1], verdicts.NO_SIGN), (0.10, [0.0, 0.2], verdicts.UNCLEAR),
])
def test_a_share_of_flipped_calls(value, ci, verdict):
    assert verdicts.flip_share(value, ci) == verdict


def test_heat_and_high_aurocs():
    assert verdicts.heat_above_chance(-0.1, [-0.2, -0.01]) == "heat outside the lungs"
    assert verdicts.heat_above_chance(0.1, [0.01, 0.2]) == "heat on the lungs"
    assert verdicts.heat_above_chance(0.05, [-0.01, 0.1]) == verdicts.UNCLEAR
    assert verdicts.high_auroc(0.9, [0.7, 1.0]) == "reads the lungs"
    assert verdicts.high_auroc(0.55, [0.3, 0.8], "yes", "no") == "no"


def test_the_table_bolds_a_shortcut_and_lists_what_did_not_run():
    record = {"tests": [
        {"test": "lungs removed", "set": "test", "metric": "AUROC", "value": 0.9, "ci95": [0.8, 0.97], "n": 29,
         "patients": 22, "verdict": "shortcut", "meaning": "m"},
        {"test": "source probe (covid)", "set": "test", "skipped": "needs two sources"},
    ]}
    assert audit_lines(record) == [
        "| test | set | measure | value [95% CI] | n (patients) | verdict | what it means |",
        "|---|---|---|---|---|---|---|",
        "| lungs removed | test | AUROC | 0.900 [0.800, 0.970] | 29 (22) | **shortcut** | m |",
        "", "Not run:", "", "- source probe (covid) on test: needs two sources"]
    assert audit_lines({"tests": record["tests"][1:]})[0] == "No test could run."


def test_a_caveat_is_said_once_under_the_table_naming_its_tests():
    row = {"set": "test", "metric": "AUROC", "value": 0.8, "ci95": [0.7, 0.9], "n": 10, "patients": 8,
           "verdict": "unclear", "meaning": "m", "caveat": "an upper bound"}
    lines = audit_lines({"tests": [{**row, "test": "lungs removed"}, {**row, "test": "lungs only"}]})
    assert lines[-2:] == ["", "Caveat (lungs only, lungs removed): an upper bound."]
