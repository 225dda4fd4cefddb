"""What a backbone expects as input, so data pipelines follow the backbone, not the user."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InputSpec:
    """Square input size, channel count and per-channel normalisation of a backbone."""

    size: int
    channels: int = 1
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.25,)

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ValueError(f"input size must be at least 8 pixels, got {self.size}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        for name in ("mean", "std"):
            values = tuple(float(v) for v in getattr(self, name))
            if len(values) == 1:
                values = values * self.channels
            if len(values) != self.channels:
                raise ValueError(f"{name} has {len(values)} values for {self.channels} channel(s)")
            object.__setattr__(self, name, values)
        if min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {self.std}")
