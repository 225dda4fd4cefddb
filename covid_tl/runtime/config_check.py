"""Catch a misspelled config group option or key before Hydra does, and say it in one line.

Hydra's own message for `backbone=nope` spans a screen with search paths, and for
`trainer.max_epoch=3` it advises `+` (adding a key nobody reads); researchers sweeping many runs
want the one fact: which options exist, which key was meant.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ValueType
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, ValidationError

from covid_tl.core.errors import ConfigError


def group_options(config_dir: Path, group: str) -> list[str]:
    """Option names of a config group: its YAML files, nested folders as `a/b`; files whose
    name starts with `_` are shared parts, not options."""
    root = config_dir / group
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml") if not p.name.startswith("_"))


def _chosen_values(override) -> Iterable[str]:
    """Option names an override picks: one, a sweep's, or a list's (`callbacks=[default,lr_monitor]`)."""
    if override.is_delete() or override.value_type == ValueType.GLOB_CHOICE_SWEEP:
        return []
    values = list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
    return [str(v) for value in values for v in (value if isinstance(value, list) else [value]) if v is not None]


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
            if value not in options:
                return f"error: unknown {group} {value!r}; valid {group} options: {', '.join(options)}"
    return None


def _key_paths(node: Any, prefix: str = "") -> Iterable[str]:
    """Every dotted key of a plain (unresolved) config container."""
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}{key}"
            yield path
            yield from _key_paths(value, path + ".")


def _is_missing(cfg: DictConfig, key: str) -> bool:
    """True when `key` names no node of `cfg` and Hydra would refuse to set it without `+`."""
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, DictConfig):
            return False  # a list, a value or null on the way: Hydra's own message fits better
        if part not in node.keys():
            return OmegaConf.is_struct(node)
        node = node._get_node(part)  # without resolving: interpolations need a running app
        node = node if isinstance(node, DictConfig) else None
    return False


_ABSENT = object()


def _option_with_key(config_dir: Path, key: str) -> str | None:
    """`group=option` whose file defines `key` (`freeze.trainable` -> `freeze=last_n`), if any."""
    group, _, rest = key.partition(".")
    if not rest or not (config_dir / group).is_dir():
        return None
    for option in group_options(config_dir, group):
        node = OmegaConf.to_container(OmegaConf.load(config_dir / group / f"{option}.yaml")) or {}
        for part in rest.split("."):
            node = node.get(part, _ABSENT) if isinstance(node, dict) else _ABSENT
        if node is not _ABSENT:
            return f"{group}={option}"
    return None


#: Keys that moved, old -> new, a key and every key under it (`lungs.mode` -> `cam.lungs.mode`):
#: the CAM options of explain.py, evaluate.py, predict.py and the grad_cam callback are one `cam`
#: group now, and watermark transplant is a group of its own (issue #20). An old key is refused
#: naming its new one.
CAM_KEYS = ("method", "target", "layer", "overlay", "alpha", "tile", "lungs")
RENAMED = {
    **{key: f"cam.{key}" for key in CAM_KEYS},
    **{f"callbacks.grad_cam.{key}": f"cam.{key}" for key in CAM_KEYS},
    "cam.size": "cam.tile",
    "augment.watermark": "watermark",   # watermark transplant is its own group
}


def renamed(key: str) -> str | None:
    """Today's name of `key` if it (or a key above it) moved (RENAMED), else None."""
    for old, new in RENAMED.items():
        if key == old or key.startswith(old + "."):
            return new + key[len(old):]
    return None


def config_name(args: Sequence[str], default: str) -> str:
    """The primary config a command line names (`--config-name X`, `--config-name=X`, `-cn X`)."""
    for i, arg in enumerate(args):
        if arg.startswith("--config-name="):
            return arg.split("=", 1)[1]
        if arg in ("--config-name", "-cn") and i + 1 < len(args):
            return args[i + 1]
    return default


#: Hydra's own flags that answer without running the task (tab completion, `--info`, help, the
#: composed config): their arguments are Hydra's (`-sc install=bash`), no overrides to check.
HYDRA_ANSWERS = ("--shell-completion", "-sc", "--info", "-i", "--help", "-h", "--hydra-help", "--version",
                 "--cfg", "-c", "--resolve", "--package", "-p")


def command_line_error(args: Sequence[str], config_dir: Path, default_config: str) -> str | None:
    """What an entry script checks before Hydra starts: an unknown group option or key, one
    line; nothing when a flag of HYDRA_ANSWERS asks Hydra itself to answer."""
    if any(arg.split("=", 1)[0] in HYDRA_ANSWERS for arg in args):
        return None
    name = config_name(args, default_config)
    return (unknown_group_option(args, config_dir) or unknown_key(args, config_dir, name)
            or structured_type_error(args, config_dir, name))


def structured_type_error(args: Sequence[str], config_dir: Path, config_name: str) -> str | None:
    """One line for a value a structured config refuses (`preprocessing.lungs.margin=abc`: a
    float field of LungParams), where Hydra would print a screen; None for anything else."""
    overrides = [a for a in args if "=" in a and not a.startswith(("-", "hydra"))]
    try:
        with initialize_config_dir(str(config_dir), version_base="1.3"):
            compose(config_name, overrides=overrides)
    except Exception as error:  # noqa: BLE001  (other failures, sweeps included, are Hydra's to report)
        while error is not None and not (isinstance(error, ValidationError) and getattr(error, "full_key", None)):
            error = error.__cause__
        if error is not None:
            owner = getattr(error.object_type, "__name__", "its config")
            return f"error: {error.full_key}: {error.msg.splitlines()[0]} (a field of {owner})"
    return None


def unknown_key(args: Sequence[str], config_dir: Path, config_name: str) -> str | None:
    """The error line for the first `key=value` override whose key the composed config lacks,
    naming the closest existing key (`trainer.max_epoch` -> `trainer.max_epochs`)."""
    try:
        overrides = OverridesParser.create().parse_overrides([a for a in args if "=" in a and not a.startswith("-")])
    except HydraException:
        return None
    choices, keys, values = [], [], {}
    for override in overrides:
        name = override.key_or_group
        if (config_dir / name).is_dir() or override.is_add() or override.is_force_add() or name.startswith("hydra"):
            first = next(iter(_chosen_values(override)), None) if override.is_sweep_override() else None
            choices.append(f"{override.get_key_element()}={first}" if first is not None else override.input_line)
        elif not override.is_delete():
            keys.append(name)
            values[name] = override.input_line.split("=", 1)[-1]
    if not keys:
        return None
    try:
        with initialize_config_dir(str(config_dir), version_base="1.3"):
            cfg = compose(config_name, overrides=[c for c in choices if not c.startswith("hydra")])
    except Exception:  # noqa: BLE001  (any composition failure is Hydra's to report, in full)
        return None
    for key in [key for key in keys if _is_missing(cfg, key)]:
        if (new := renamed(key)) is not None:
            return f"error: unknown key {key!r}; did you mean '{new}={values[key]}'? (renamed)"
        known = [k for k in _key_paths(OmegaConf.to_container(cfg)) if not k.rsplit(".", 1)[-1].startswith("_")]
        close = difflib.get_close_matches(key, known, n=1)
        option = _option_with_key(config_dir, key)
        hint = (f"did you mean {close[0]!r}?" if close else f"it comes with {option}" if option
                else f"--cfg job lists the keys; +{key}=... adds a new one")
        return f"error: unknown key {key!r}; {hint}"
    return None


def check_required(cfg: DictConfig) -> None:
    """Every mandatory (`???`) key has a value."""
    missing = missing_keys(OmegaConf.to_container(cfg, resolve=False))
    if missing:
        keys = " ".join(f"{key}=..." for key in missing)
        raise ConfigError(f"missing required value{'s' * (len(missing) > 1)}: add {keys} to the command line")


def missing_keys(node: Any, prefix: str = "") -> list[str]:
    """Dotted keys of `???` values in an unresolved container (OmegaConf.missing_keys resolves
    interpolations, and fails on one that points at a missing key)."""
    if isinstance(node, dict):
        return [k for key, value in node.items() for k in missing_keys(value, f"{prefix}{key}.")]
    if isinstance(node, list):
        return [k for i, value in enumerate(node) for k in missing_keys(value, f"{prefix}{i}.")]
    return [prefix[:-1]] if node == "???" else []
