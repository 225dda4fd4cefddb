"""The operating point: the probability of COVID-19 at or above which an image is called COVID-19.

`threshold` is a probability in [0, 1], `youden` (the cut that maximises sensitivity +
specificity - 1 on validation), `sens@X` (the highest cut whose validation sensitivity is at
least X) or `spec@X` (the lowest cut whose validation specificity is at least X: the most
sensitive cut that still meets it). A rule is applied once, on the validation split, after
training; the number it gives is what the checkpoint, results.json and every later call use.
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np
from sklearn.metrics import roc_curve

from covid_tl.core.errors import ConfigError

YOUDEN = "youden"
_RATE = re.compile(r"^(sens|spec)@(.+)$")
_RATE_NAMES = {"sens": "sensitivity", "spec": "specificity"}
RULES_HELP = ("a probability in [0, 1], youden, sens@X or spec@X (X: the validation sensitivity or specificity "
              "to reach, in (0, 1])")


def parse_threshold(value: Any) -> float | str:
    """A number in [0, 1] (as a float) or a valid rule (as given); ConfigError in one line otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if 0 <= value <= 1:
            return float(value)
    elif value == YOUDEN:
        return value
    elif isinstance(value, str) and (match := _RATE.match(value)):
        if _target_rate(value) is None:
            raise ConfigError(f"threshold={value}: the {_RATE_NAMES[match.group(1)]} after {match.group(1)}@ must be "
                              "a number in (0, 1]")
        return value
    raise ConfigError(f"threshold must be {RULES_HELP}; got {value!r}")


def _target_rate(rule: str) -> float | None:
    """X of `sens@X` or `spec@X` when it is a number in (0, 1], else None."""
    try:
        target = float(_RATE.match(rule).group(2))
    except ValueError:
        return None
    return target if 0 < target <= 1 else None


def is_rule(value: Any) -> bool:
    """True for `youden`, `sens@X` and `spec@X`: a threshold that has to be chosen on data."""
    return isinstance(parse_threshold(value), str)


def fixed_threshold(value: Any, default: float = 0.5) -> float:
    """The number itself, or `default` for a rule (the module's threshold until the rule is
    applied after training; each validation epoch is called at the rule's own cut)."""
    parsed = parse_threshold(value)
    return default if isinstance(parsed, str) else parsed


def choose_threshold(rule: Any, probabilities: np.ndarray, targets: np.ndarray) -> float:
    """The threshold `rule` gives on (validation) probabilities and 0/1 targets.

    A rule picks one of the probabilities as the lowest still called COVID-19; the cut is
    placed midway between it and the next lower probability (0 below the lowest), so the same
    images are called as at the chosen probability but the cut is not one of the data's values.
    `spec@X` calls nothing COVID-19 when only that reaches X (a no-finding image has the highest
    probability, or ties with it): its cut is then midway between the highest probability and 1.
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
    elif parsed.startswith("sens@"):
        chosen = 1 + int(np.argmax(tpr[1:] >= _target_rate(parsed) - 1e-12))
    else:
        # specificity (1 - fpr) only falls as cuts fall: the last cut that still reaches X.
        chosen = int(np.flatnonzero(1 - fpr >= _target_rate(parsed) - 1e-12)[-1])
        if chosen == 0:  # only +inf reaches X: call nothing COVID-19
            return float((cuts[1] + 1) / 2)
    below = cuts[chosen + 1] if chosen + 1 < len(cuts) else 0.0
    return float((cuts[chosen] + below) / 2)


#: A rule's cut below EXTREME or above 1 - EXTREME gets a warning. Youden's cut for a calibrated
#: model lies where p(COVID-19) equals the share of COVID-19 it was trained on (likelihood ratio
#: 1); covid-tl's data and `pos_weight=balanced` keep that share near 0.5, so a cut outside
#: [0.1, 0.9] is 9-fold odds from where the model's probabilities would put it: they cannot be
#: read as probabilities, and the cut rests on the few validation images next to it.
EXTREME = 0.1


def cut_decimals(cut: float) -> int:
    """Decimals that show `cut` and tell a probability beside it apart: 2 for a cut of two
    (0.50), else at least 3 and two significant ones of its distance to 0 or 1 (0.063, 0.777,
    0.0071)."""
    if not 0 < cut < 1 or round(cut, 2) == cut:
        return 2
    return int(min(6, max(3, 1 - np.floor(np.log10(min(cut, 1 - cut))))))


def describe_cut(cut: float, rule: str | None = None, chosen_on: str | None = None) -> str:
    """The cut a call was made at, for captions and titles: `p >= 0.50`, or with a rule
    `youden cut 0.063 on this epoch's val`; it names the rule so a reader never takes it for 0.5."""
    number = f"{cut:.{cut_decimals(cut)}f}"
    if rule is None:
        return f"p >= {number}"
    return f"{rule} cut {number}" + (f" on {chosen_on}" if chosen_on else "")


def extreme_cut(rule: str, cut: float, split: str = "val", n: int | None = None) -> str | None:
    """One warning line when `rule` put the cut below EXTREME or above 1 - EXTREME, else None."""
    if EXTREME <= cut <= 1 - EXTREME:
        return None
    side = f"below {EXTREME}" if cut < EXTREME else f"above {1 - EXTREME:.1f}"
    images = f" ({n} images)" if n is not None else ""
    return (f"threshold={rule} chose the cut {describe_cut(cut)} on {split}{images}, {side}: a p(COVID-19) "
            f"{'that low is called COVID-19' if cut < 0.5 else 'that high is called no finding'}, so the "
            f"model's probabilities are far from calibrated and the cut rests on the few images beside it")


def one_class_calls(probabilities: np.ndarray, cut: float, name: str, targets: np.ndarray | None = None) -> str | None:
    """One warning line when the model calls every image of set `name` one class at `cut`, or at
    0.5 (where a reader assumes it); None otherwise, and for a set that holds one class only
    (`targets`), where one call for all may be right."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.size == 0 or (targets is not None and len(np.unique(targets)) < 2):
        return None
    cuts = dict.fromkeys((float(cut), 0.5))  # the cut, then 0.5 where that differs
    covid = {at: int((probabilities >= at).sum()) for at in cuts}
    one_class = [at for at, k in covid.items() if k in (0, probabilities.size)]
    if not one_class:
        return None

    def where(at: float) -> str:
        return f"its cut {describe_cut(at)}" if at != 0.5 else describe_cut(at)

    calls = [f"all {probabilities.size} images {'COVID-19' if covid[at] else 'no finding'} at {where(at)}" for at in one_class]
    others = [f" ({covid[at]} COVID-19 at {where(at)})" for at in cuts if at not in one_class]
    return f"{name}: the model calls {' and '.join(calls)}{''.join(others)}; rates at such a cut say nothing of how it ranks the images (AUROC)"
