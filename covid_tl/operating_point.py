"""The operating point: the probability of COVID-19 at or above which an image is called COVID-19.

`threshold` is a probability in [0, 1], `youden` (the cut that maximises sensitivity +
specificity - 1 on validation) or `sens@X` (the highest cut whose validation sensitivity is at
least X). A rule is applied once, on the validation split, after training; the number it gives
is what the checkpoint, results.json and every later call use.
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np
from sklearn.metrics import roc_curve

from covid_tl.errors import ConfigError

YOUDEN = "youden"
_SENS = re.compile(r"^sens@(.+)$")
RULES_HELP = "a probability in [0, 1], youden, or sens@X (X: the validation sensitivity to reach, in (0, 1])"


def parse_threshold(value: Any) -> float | str:
    """A number in [0, 1] (as a float) or a valid rule (as given); ConfigError in one line otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if 0 <= value <= 1:
            return float(value)
    elif value == YOUDEN:
        return value
    elif isinstance(value, str) and _SENS.match(value):
        target = _target_sensitivity(value)
        if target is None:
            raise ConfigError(f"threshold={value}: the sensitivity after sens@ must be a number in (0, 1]")
        return value
    raise ConfigError(f"threshold must be {RULES_HELP}; got {value!r}")


def _target_sensitivity(rule: str) -> float | None:
    try:
        target = float(_SENS.match(rule).group(1))
    except ValueError:
        return None
    return target if 0 < target <= 1 else None


def is_rule(value: Any) -> bool:
    """True for `youden` and `sens@X`: a threshold that has to be chosen on data."""
    return isinstance(parse_threshold(value), str)


def fixed_threshold(value: Any, default: float = 0.5) -> float:
    """The number itself, or `default` for a rule (what training logs its metrics at before
    the rule is applied)."""
    parsed = parse_threshold(value)
    return default if isinstance(parsed, str) else parsed


def choose_threshold(rule: Any, probabilities: np.ndarray, targets: np.ndarray) -> float:
    """The threshold `rule` gives on (validation) probabilities and 0/1 targets.

    A rule picks one of the probabilities as the lowest still called COVID-19; the cut is
    placed midway between it and the next lower probability (0 below the lowest), so the same
    images are called as at the chosen probability but the cut is not one of the data's values.
    """
    parsed = parse_threshold(rule)
    if not isinstance(parsed, str):
        return parsed
    targets = np.asarray(targets).astype(int)
    if not ((targets == 1).any() and (targets == 0).any()):
        raise ConfigError(f"threshold={parsed} needs both classes in the validation split; it has "
                          f"{int((targets == 1).sum())} COVID-19 and {int((targets == 0).sum())} no-finding images")
    fpr, tpr, cuts = roc_curve(targets, np.asarray(probabilities, dtype=np.float64), drop_intermediate=False)
    # cuts fall from +inf (nothing called COVID-19); index 0 is never chosen.
    if parsed == YOUDEN:
        youden = (tpr - fpr)[1:]
        chosen = 1 + int(np.argmax(youden >= youden.max() - 1e-12))  # the highest cut among ties
    else:
        chosen = 1 + int(np.argmax(tpr[1:] >= _target_sensitivity(parsed) - 1e-12))
    below = cuts[chosen + 1] if chosen + 1 < len(cuts) else 0.0
    return float((cuts[chosen] + below) / 2)
