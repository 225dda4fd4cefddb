"""Run configs as older covid-tl wrote them, brought to today's shape.

A checkpoint keeps the run config it was trained with, `_target_` paths and all; when code
moves or a config block changes shape, old checkpoints must keep loading. Every move and
reshape is recorded here, once: MOVED_TARGETS maps an old `_target_` to its new path, and
`upgrade` rewrites an old config (a plain dict, before any check or Hydra sees it). The
checkpoint in tests/data, written before the moves of issue #20, keeps this honest.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Old `_target_` -> where that class or function lives now.
MOVED_TARGETS: dict[str, str] = {}


def upgrade(config: Any) -> Any:
    """`config` (a run config as a checkpoint stores it) with every moved `_target_` renamed
    and every old block shape rewritten; a new object, the argument is left as it is."""
    return _renamed(config)


def current_target(target: Any) -> Any:
    """Where the `_target_` value `target` lives now (itself, unless it moved)."""
    return MOVED_TARGETS.get(target, target) if isinstance(target, str) else target


def _renamed(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {key: current_target(value) if key == "_target_" else _renamed(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_renamed(value) for value in node]
    return node
