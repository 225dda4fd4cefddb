"""Catch a misspelled config group option before Hydra does, and say it in one line.

Hydra's own message for `backbone=nope` spans a screen with search paths; researchers
sweeping many runs want the one fact: which options exist.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ValueType
from hydra.errors import HydraException


def group_options(config_dir: Path, group: str) -> list[str]:
    """Option names of a config group: its YAML files, nested folders as `a/b`; files whose
    name starts with `_` are shared parts, not options."""
    root = config_dir / group
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml") if not p.name.startswith("_"))


def _chosen_values(override) -> Iterable[str]:
    if override.is_delete() or override.value_type == ValueType.GLOB_CHOICE_SWEEP:
        return []
    if override.is_sweep_override():
        return list(override.sweep_string_iterator())
    return [override.get_value_element_as_str()]


def unknown_group_option(args: Sequence[str], config_dir: Path) -> str | None:
    """The error line for the first override naming a missing option of one of our groups."""
    candidates = [a for a in args if "=" in a and not a.startswith("-")]
    try:
        overrides = OverridesParser.create().parse_overrides(candidates)
    except HydraException:
        return None  # malformed: Hydra explains its own syntax errors
    for override in overrides:
        group = override.key_or_group
        if group.startswith("hydra") or not (config_dir / group).is_dir():
            continue
        options = group_options(config_dir, group)
        for value in _chosen_values(override):
            if value != "null" and value not in options:
                return f"error: unknown {group} {value!r}; valid {group} options: {', '.join(options)}"
    return None
