"""How the shortcut audit intervenes, defined once (conf/shortcuts/default.yaml builds it) for
audit.py and train.py's `audit=true`; run_checks types each key by these fields."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, Optional

from pydantic import Field

from covid_tl.core.errors import ConfigError
from covid_tl.preprocess.interventions import FILLS
from covid_tl.preprocess.watermark import POSITIONS
#: shortcuts.masks: auto (the data's masks when every film of the set has one, else the
#: segmenter on every film) | given (the data's only: a set lacking one is not audited for
#: lungs) | segmenter (on every film).
MASKS = ("auto", "given", "segmenter")
Masks = Literal[MASKS]  # type: ignore[valid-type]
Fill = Literal[FILLS]  # type: ignore[valid-type]
Position = Literal[POSITIONS]  # type: ignore[valid-type]


@dataclass(frozen=True)
class AuditOptions:
    """`masks` and `segmenter`: where the lung fields come from (covid_tl.audit.films); `fill`,
    `grow` and `blur`: how a region is taken away (covid_tl.preprocess.interventions); `marks`,
    `positions`, `bank_films`, `mark_max_area` and `mark_max_side`: the mark transplant (marks
    per film, where they go, how many training films of each class the marks are cut from, and
    the largest mark kept, as a share of its film's area and of its shorter side: looser than
    the watermark group's bounds, so whole lines of burned-in text go over too); `probe_folds` and `probe_min_images`:
    the source probe (folds by patient; images a group needs to be probed); `cams`: where the
    Grad-CAM heat is (slowest test); `examples`: films per class in audit_examples.png."""

    masks: Masks = "auto"
    segmenter: Optional[str] = None
    fill: Fill = "mean"
    grow: Annotated[float, Field(ge=0, le=0.2)] = 0.02
    blur: Annotated[float, Field(gt=0, le=0.5)] = 0.05
    marks: tuple[int, int] = (1, 2)
    positions: tuple[Position, ...] = POSITIONS
    bank_films: Annotated[int, Field(ge=1)] = 64
    mark_max_area: Annotated[float, Field(gt=0, le=0.2)] = 0.03
    mark_max_side: Annotated[float, Field(gt=0, le=1)] = 0.5
    probe_folds: Annotated[int, Field(ge=2)] = 5
    probe_min_images: Annotated[int, Field(ge=4)] = 10
    cams: bool = True
    examples: Annotated[int, Field(ge=0, le=8)] = 2

    def __post_init__(self) -> None:
        low, high = self.marks
        if not 1 <= low <= high:
            raise ConfigError(f"shortcuts.marks must be [low, high] with 1 <= low <= high, got {list(self.marks)}")
