"""Checks of a composed config that would otherwise fail mid-run, after files are written.

They run first in a task. Hydra itself has by then created the run dir with `.hydra/` (the
composed config and overrides) and opened `<job>.log`; nothing of covid-tl's is written yet.
"""
from __future__ import annotations

import inspect
import typing
from pathlib import Path
from typing import Any

from hydra.utils import get_class, get_object
from omegaconf import DictConfig, OmegaConf
from pydantic import ConfigDict, PydanticUserError, TypeAdapter, ValidationError

from covid_tl.errors import ConfigError
from covid_tl.operating_point import parse_threshold
from covid_tl.torch_files import check_checkpoint_file

#: No coercion ("3" stays a string, as the target would receive it); any class is a type.
STRICT = ConfigDict(strict=True, arbitrary_types_allowed=True)
HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}


def check_required(cfg: DictConfig) -> None:
    """Every mandatory (`???`) key has a value."""
    missing = missing_keys(OmegaConf.to_container(cfg, resolve=False))
    if missing:
        keys = " ".join(f"{key}=..." for key in missing)
        raise ConfigError(f"missing required value{'s' * (len(missing) > 1)}: add {keys} to the command line")


#: Counts of the inference scripts' configs (evaluate, explain, predict) and their least value.
SCRIPT_COUNTS = {"batch_size": 1, "num_workers": 0, "n": 1, "bootstrap": 0}


def check_script_config(cfg: DictConfig) -> None:
    """What evaluate, explain, predict and export check first: required values, and the counts
    of SCRIPT_COUNTS they have are whole numbers in range (num_workers=-1 is one line, not a
    DataLoader traceback)."""
    check_required(cfg)
    for key, least in SCRIPT_COUNTS.items():
        if key in cfg:
            check_count(cfg, key, least)


def missing_keys(node: Any, prefix: str = "") -> list[str]:
    """Dotted keys of `???` values in an unresolved container (OmegaConf.missing_keys resolves
    interpolations, and fails on one that points at a missing key)."""
    if isinstance(node, dict):
        return [k for key, value in node.items() for k in missing_keys(value, f"{prefix}{key}.")]
    if isinstance(node, list):
        return [k for i, value in enumerate(node) for k in missing_keys(value, f"{prefix}{i}.")]
    return [prefix[:-1]] if node == "???" else []


def check_arguments(entry: DictConfig, where: str, known_only: bool = False) -> None:
    """Every key of a `_target_` config (at `where`) is an argument of its target, of the type it
    declares. `known_only`: keys that are no argument are left alone (a data config's anchors,
    which only feed interpolations), and so are values holding configs of their own (its sources,
    checked when they are built)."""
    target = get_object(entry._target_)
    parameters = inspect.signature(target).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    try:
        hints = typing.get_type_hints(target.__init__ if inspect.isclass(target) else target)
    except NameError:  # an annotation names what only type checkers import: check the names alone
        hints = {}
    name = getattr(target, "__name__", entry._target_)
    for key, value in OmegaConf.to_container(entry, resolve=True).items():
        if key in HYDRA_KEYS or (key not in parameters and (takes_any or known_only)):
            continue
        if known_only and _holds_targets(value):
            continue
        if key not in parameters:
            valid = ", ".join(p for p in parameters if p != "self")
            raise ConfigError(f"{where}.{key} is not an argument of {name}; valid: {valid}")
        if isinstance(value, dict) and "_target_" in value:  # an object built first: its own keys are checked
            check_arguments(entry[key], f"{where}.{key}")
        elif key in hints and not _fits(hints[key], value):
            shown = hints[key].__name__ if isinstance(hints[key], type) else str(hints[key]).replace("typing.", "")
            raise ConfigError(f"{where}.{key}={value!r} does not fit {name}'s {key} ({shown})")


def _holds_targets(node: Any) -> bool:
    if isinstance(node, dict):
        return "_target_" in node or any(_holds_targets(v) for v in node.values())
    return isinstance(node, list) and any(_holds_targets(v) for v in node)


def _fits(annotation: Any, value: Any) -> bool:
    try:
        adapter = TypeAdapter(annotation, config=STRICT)
    except PydanticUserError:  # an annotation pydantic cannot express: leave it to the target
        return True
    try:
        adapter.validate_python(value)
    except ValidationError:
        return False
    return True


def check_threshold(threshold: Any) -> None:
    """A probability in [0, 1], youden or sens@X (covid_tl.operating_point); null where allowed
    is the caller's to skip."""
    parse_threshold(threshold)


def resume_files(cfg: DictConfig) -> list[Path]:
    """The files `trainer.fit(ckpt_path=...)` may load: the path given, or for `last` every
    `last*.ckpt` in the ModelCheckpoint folders (Lightning takes the newest; none: a fresh start)."""
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path is None:
        return []
    if str(ckpt_path) != "last":
        path = Path(str(ckpt_path)).expanduser()
        if not path.is_file():
            raise ConfigError(f"ckpt_path={ckpt_path}: no such checkpoint file (ckpt_path=last resumes from the "
                              "run dir's last.ckpt, with hydra.run.dir=<that run dir>)")
        return [path]
    folders = [Path(entry.dirpath) for entry in (cfg.get("callbacks") or {}).values()
               if entry is not None and entry.get("dirpath") and _is_checkpoint_callback(entry.get("_target_"))]
    return sorted(p for folder in folders for p in folder.glob("last*.ckpt"))


def _is_checkpoint_callback(target: str | None) -> bool:
    """A ModelCheckpoint or a subclass of it (covid-tl's BestAndLastCheckpoint)."""
    return _is_subclass(target, "ModelCheckpoint")


def _is_subclass(target: str | None, callback: str) -> bool:
    """Whether `target` names a subclass of Lightning's callback class `callback`."""
    import pytorch_lightning.callbacks

    try:
        return bool(target) and issubclass(get_class(str(target)), getattr(pytorch_lightning.callbacks, callback))
    except Exception:  # an unknown target is reported by check_arguments
        return False


def instantiated_entries(cfg: DictConfig) -> dict[str, DictConfig]:
    """The `_target_` configs that training instantiates as they are, by dotted key."""
    entries = {"trainer": cfg.trainer}
    for group in ("callbacks", "logger"):
        entries.update({f"{group}.{name}": entry for name, entry in (cfg.get(group) or {}).items()})
    return {key: entry for key, entry in entries.items() if entry is not None and "_target_" in entry}


def check_count(cfg: DictConfig, key: str, least: int, also: tuple[Any, ...] = ()) -> None:
    """`cfg[key]` (a dotted key) is an int of at least `least`, or one of `also` (such as `auto`)."""
    value = OmegaConf.select(cfg, key)
    if value in also and not isinstance(value, bool):
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        shown = " or ".join([f"a whole number >= {least}", *map(str, also)])
        raise ConfigError(f"{key} must be {shown}, got {value!r}")


def check_epochs(cfg: DictConfig) -> None:
    """At least one epoch; -1 (no limit) only where early stopping ends the run: else it trains,
    and writes a CAM grid per epoch, until killed."""
    epochs = cfg.trainer.get("max_epochs")
    stops_early = any(entry is not None and _is_subclass(entry.get("_target_"), "EarlyStopping")
                      for entry in (cfg.get("callbacks") or {}).values())
    if epochs == -1 and not isinstance(epochs, bool):
        if not stops_early:
            raise ConfigError("trainer.max_epochs=-1 trains until killed: give a number of epochs, or add early "
                              "stopping (callbacks=[default,early_stopping])")
        return
    check_count(cfg, "trainer.max_epochs", 1)


def check_optimizer(cfg: DictConfig) -> None:
    """The optimizer (and scheduler) build on a stand-in parameter, so a bad value (lr=-1) is
    one line now instead of a traceback once training starts."""
    import torch
    from hydra.utils import instantiate

    check_arguments(cfg.optimizer, "optimizer")
    try:
        optimizer = instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(1))])
    except Exception as error:  # noqa: BLE001 - any failure of the user's optimizer config
        raise ConfigError(f"optimizer ({cfg.optimizer._target_}): {_cause(error)}") from None
    if cfg.get("scheduler"):
        check_arguments(cfg.scheduler, "scheduler")
        try:
            instantiate(cfg.scheduler)(optimizer)
        except Exception as error:  # noqa: BLE001
            raise ConfigError(f"scheduler ({cfg.scheduler._target_}): {_cause(error)}") from None


def _cause(error: BaseException) -> str:
    """The innermost error, one line (Hydra wraps a target's own error in its own)."""
    while error.__cause__ is not None:
        error = error.__cause__
    return " ".join(str(error).split()) or type(error).__name__


def check_values(cfg: DictConfig) -> None:
    """Seed, epochs, data loader options, optimizer: values whose mistakes would otherwise end in
    a traceback after the splits are written."""
    if isinstance(cfg.get("seed"), bool) or not isinstance(cfg.get("seed"), int):
        raise ConfigError(f"seed must be a whole number, got {cfg.get('seed')!r}")
    check_epochs(cfg)
    if cfg.get("data") is not None and "_target_" in cfg.data:
        check_arguments(cfg.data, "data", known_only=True)
        if "batch_size" in cfg.data:
            check_count(cfg, "data.batch_size", 1)
        if "num_workers" in cfg.data:
            check_count(cfg, "data.num_workers", 0, ("auto",))
    if cfg.get("optimizer") is not None:
        check_optimizer(cfg)


def check_train_config(cfg: DictConfig) -> None:
    """What train.py checks before a task writes anything."""
    check_required(cfg)
    if "threshold" in cfg:  # classification runs; segmentation has none
        check_threshold(cfg.threshold)
        if not isinstance(cfg.get("calibrate"), bool):
            raise ConfigError(f"calibrate must be true or false, got {cfg.get('calibrate')!r}")
    for key, entry in instantiated_entries(cfg).items():
        check_arguments(entry, key)
    check_values(cfg)
    for path in resume_files(cfg):  # bounded, plain types, own code in its config (unless trusted)
        check_checkpoint_file(path, bool(cfg.trust_checkpoint))
