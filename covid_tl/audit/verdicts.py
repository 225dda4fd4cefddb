"""Plain verdicts on the audit's numbers, from fixed rules a reader can check by hand.

Every rule asks two things of a number: is its 95% interval clear of the level that means "no
effect", and is the effect large enough to matter. Small sets give wide intervals, so
"unclear" is a verdict of its own, never a pass.

- An AUROC that should be at chance (lungs removed, source and view probes): `shortcut` when
  the interval's lower end is above 0.5 and the value at least 0.65; `no sign` when the value
  is within 0.1 of 0.5 (the interval may still be wide: n says how much that is worth).
- An AUROC that should be high (lungs only): `reads the lungs` when the interval is above 0.5
  and the value at least 0.65; `not from the lungs alone` below 0.6.
- A share of calls that flip when the other class's marks are pasted on: `shortcut` at 0.2 or
  more with the interval above 0.05; `no sign` at 0.05 or less.
- Grad-CAM mass in the lungs above its chance level (lung_fraction - lung_area): `heat outside
  the lungs` when the interval is below 0, `heat on the lungs` when above 0.
"""
from __future__ import annotations

from collections.abc import Sequence

SHORTCUT, NO_SIGN, UNCLEAR = "shortcut", "no sign", "unclear"
LARGE_AUROC, CHANCE_BAND = 0.65, 0.1
LARGE_FLIPS, SMALL_FLIPS = 0.2, 0.05


def _low(ci: Sequence[float] | None, default: float) -> float:
    return ci[0] if ci else default


def _high(ci: Sequence[float] | None, default: float) -> float:
    return ci[1] if ci else default


def chance_auroc(value: float | None, ci: Sequence[float] | None) -> str:
    """An AUROC that a shortcut-free model (or set of features) would leave at 0.5."""
    if value is None:
        return UNCLEAR
    if _low(ci, 0.5) > 0.5 and value >= LARGE_AUROC:
        return SHORTCUT
    return NO_SIGN if abs(value - 0.5) < CHANCE_BAND else UNCLEAR


def high_auroc(value: float | None, ci: Sequence[float] | None, yes: str = "reads the lungs",
               no: str = "not from the lungs alone") -> str:
    """An AUROC that should be high (lungs only; the label from whole films): `yes` or `no`."""
    if value is None:
        return UNCLEAR
    if _low(ci, 0.5) > 0.5 and value >= LARGE_AUROC:
        return yes
    return no if value < 0.6 else UNCLEAR


def flip_share(value: float | None, ci: Sequence[float] | None) -> str:
    """The share of calls changed by pasting the other class's marks on."""
    if value is None:
        return UNCLEAR
    if value >= LARGE_FLIPS and _low(ci, 0.0) > SMALL_FLIPS:
        return SHORTCUT
    return NO_SIGN if value <= SMALL_FLIPS else UNCLEAR


def heat_above_chance(value: float | None, ci: Sequence[float] | None) -> str:
    """Mean lung_fraction - lung_area of the Grad-CAMs."""
    if value is None:
        return UNCLEAR
    if _high(ci, 0.0) < 0:
        return "heat outside the lungs"
    return "heat on the lungs" if _low(ci, 0.0) > 0 else UNCLEAR
