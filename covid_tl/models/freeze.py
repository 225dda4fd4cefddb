"""Freeze policies: which parameters of the classifier train.

Only `none` (fine-tune everything) exists so far; the study's three freeze experiments add
policies here beside it, each named by `freeze.policy` in `conf/freeze/`.
"""
from __future__ import annotations

from torch import nn

POLICIES = ("none",)


def apply_freeze(model: nn.Module, policy: str = "none") -> tuple[int, int]:
    """Apply `policy` to `model` in place; returns (trainable, total) parameter counts."""
    if policy not in POLICIES:
        raise ValueError(f"unknown freeze policy {policy!r}; valid policies: {', '.join(POLICIES)}")
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return parameter_counts(model)


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)
