"""Freeze policies: which parameters of the classifier train (`freeze.policy` in `conf/freeze/`).

- `none`: fine-tune everything.
- `all` (the study's experiment 1): every backbone parameter frozen, including the `keep_fc`
  pretrained FC layers kept under the new head.
- `conv_base` (experiment 2): the conv base frozen; the kept FC layers train.
- `last_n` (experiment 3): FC layers dropped (keep_fc 0); the last `trainable` units of the
  backbone (VGG16: conv layers; timm models: blocks, the head conv joining the last one) train.

The head always trains. `bn: frozen` keeps BatchNorm modules of frozen parts in eval mode, so
their running statistics stay the pretrained ones (the study's ResNet50 overfitted because
they kept updating); `bn: train` lets them update, as Keras did then.
"""
from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from covid_tl.core.errors import ConfigError

POLICIES = ("none", "all", "conv_base", "last_n")
BN_MODES = ("frozen", "train")


class FreezeError(ConfigError):
    """A freeze config that does not fit the model; the message says what to change."""


def apply_freeze(
    model: nn.Module, policy: str = "none", keep_fc: int | None = None, trainable: int | None = None, bn: str = "frozen"
) -> tuple[int, int]:
    """Apply `policy` to a `Classifier` in place; returns (trainable, total) parameter counts.

    `keep_fc` (None: the model's) must be what the model was built with (`backbone.keep_fc`);
    `trainable` is the number of units `last_n` trains, counted from the end.
    """
    if policy not in POLICIES:
        raise FreezeError(f"unknown freeze policy {policy!r}; valid policies: {', '.join(POLICIES)}")
    if bn not in BN_MODES:
        raise FreezeError(f"freeze.bn must be one of {', '.join(BN_MODES)}, got {bn!r}")
    built_fc = getattr(model, "keep_fc", 0)
    if keep_fc is not None and keep_fc != built_fc:
        raise FreezeError(
            f"freeze says keep_fc={keep_fc} but the model was built with keep_fc={built_fc}; "
            "keep_fc is set where the model is built: backbone.keep_fc"
        )
    if (trainable is not None) != (policy == "last_n"):
        raise FreezeError("freeze.trainable belongs to policy last_n (and last_n needs it)")

    units = list(getattr(model, "units", ()))
    if policy == "none":
        train_prefixes = [""]
    elif policy == "all":
        train_prefixes = []
    elif policy == "conv_base":
        train_prefixes = list(model.fc_layers)
    else:
        if built_fc:
            raise FreezeError(f"last_n drops the pretrained FC layers: set keep_fc=0, got {built_fc}")
        if not 0 <= trainable <= len(units):
            raise FreezeError(
                f"freeze.trainable must be 0-{len(units)} for backbone {model.backbone_name} "
                f"({len(units)} units), got {trainable}"
            )
        train_prefixes = [name for unit in units[len(units) - trainable:] for name in unit]

    features = model.features
    for name, parameter in features.named_parameters():
        parameter.requires_grad_(_in(name, train_prefixes))
    for parameter in model.head.parameters():
        parameter.requires_grad_(True)
    frozen_norms = []
    if bn == "frozen" and policy != "none":
        frozen_norms = [
            name for name, m in features.named_modules() if isinstance(m, _BatchNorm) and not _in(name, train_prefixes)
        ]
    model.freeze_norms(frozen_norms)
    return parameter_counts(model)


def _in(name: str, prefixes: list[str]) -> bool:
    return any(p == "" or name == p or name.startswith(p + ".") for p in prefixes)


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)
