"""Checks of a composed config that would otherwise fail mid-run, after files are written.

They run first in a task. Hydra itself has by then created the run dir with `.hydra/` (the
composed config and overrides) and opened `<job>.log`; nothing of covid-tl's is written yet.
"""
from __future__ import annotations

import inspect
import typing
from collections.abc import Iterable
from dataclasses import dataclass, is_dataclass
from pathlib import Path
from typing import Annotated, Any

from hydra.errors import InstantiationException
from hydra.utils import get_class, get_object, instantiate
from omegaconf import DictConfig, OmegaConf
from pydantic import ConfigDict, Field, PydanticUserError, TypeAdapter, ValidationError

from covid_tl.runtime.config_check import check_required
from covid_tl.core.errors import ConfigError
from covid_tl.stats.operating_point import parse_threshold
from covid_tl.runtime.torch_files import check_checkpoint_file

#: No coercion ("3" stays a string, as the target would receive it); any class is a type.
STRICT = ConfigDict(strict=True, arbitrary_types_allowed=True)
HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}


#: Counts of the inference scripts' configs (evaluate, explain, predict, calibrate_site) and their least value.
SCRIPT_COUNTS = {"batch_size": 1, "num_workers": 0, "n": 1, "bootstrap": 0, "resamples": 1}


def check_script_config(cfg: DictConfig) -> None:
    """What evaluate, explain, predict and export check first: required values, every key typed
    as in train.py (typed_nodes: trust_checkpoint, cam; not yet a data= config), the counts of
    SCRIPT_COUNTS they have are whole numbers in range (num_workers=-1 is one line, not a
    DataLoader traceback)."""
    check_required(cfg)
    for where, entry, target, known_only in typed_nodes(cfg):
        if where.split(".")[0] != "data":  # a data= config resolves against the checkpoint's (${seed})
            check_arguments(entry, where, known_only, target)
    for key, least in SCRIPT_COUNTS.items():
        if key in cfg:
            check_count(cfg, key, least)


@dataclass(frozen=True)
class RunOptions:
    """The top-level keys of train.yaml and segment.yaml that the tasks read themselves (no
    `_target_` takes them), typed for check_arguments as a target's arguments are."""

    task: str = "classify"
    seed: int = 42
    calibrate: bool = False
    ckpt_path: str | None = None
    trust_checkpoint: bool = False
    fast_frozen: bool = True
    audit: bool = False
    bootstrap: Annotated[int, Field(ge=0)] = 1000
    optimized_metric: str | None = None
    preview: Annotated[int, Field(ge=0)] = 8
    half: bool = True


@dataclass(frozen=True)
class CacheOptions:
    """preprocessing's keys of its disk cache, which covid_tl.engine.build reads beside build_preprocess's."""

    cache: bool = True
    cache_dir: str = "~/.cache/covid-tl"


#: Config nodes with no `_target_` of their own ("" is the top level) and the code that takes
#: their keys: its signature types them, as a `_target_`'s signature types its config's.
#: `{name}`: the node's own `name` key (a backbone's builder, registered under its function name);
#: `parent.*`: every config under parent (augment's steps).
TYPED_BY = {
    "": "covid_tl.runtime.run_checks.RunOptions",
    "backbone": "covid_tl.models.backbones.{name}",
    "backbone.head": "covid_tl.models.classifier.Head",
    "preprocessing": "covid_tl.runtime.run_checks.CacheOptions",
    "preprocessing.crop": "covid_tl.preprocess.crop.crop_borders",
    "augment.*": "covid_tl.preprocess.augment.StepSetting",
    "watermark": "covid_tl.data.dataset.WatermarkTransplant",
}
#: `_target_` configs that hold keys for other code too (a data config's anchors, preprocessing's
#: cache): keys that are no argument of the target are left alone.
SHARED = ("data", "preprocessing")


def typed_nodes(cfg: DictConfig) -> list[tuple[str, DictConfig, Any, bool]]:
    """(dotted key, config, the callable whose signature types its keys, known_only) for each
    node of TYPED_BY that `cfg` has and every `_target_` config of `cfg` at any depth."""
    found = [(where, node, _typed_by(target, node), True) for where, target in _typed_paths(cfg)
             if isinstance(node := OmegaConf.select(cfg, where) if where else cfg, DictConfig)]
    found = [entry for entry in found if entry[2] is not None]

    def walk(node: DictConfig, where: str) -> None:
        if "_target_" in node:
            found.append((where, node, get_object(node._target_), where in SHARED))
        for key, child in node.items_ex(resolve=False):
            if isinstance(child, DictConfig) and not (key == "hydra" and not where):
                walk(child, f"{where}.{key}" if where else str(key))

    walk(cfg, "")  # after TYPED_BY: `seed=abc` is named as given, not as data.split_seed that copies it
    return found


def _typed_paths(cfg: DictConfig) -> Iterable[tuple[str, str]]:
    """TYPED_BY's entries, `parent.*` as one entry per config under parent."""
    for where, target in TYPED_BY.items():
        parent = where.removesuffix(".*")
        if parent == where:
            yield where, target
        elif isinstance(node := OmegaConf.select(cfg, parent), DictConfig):
            yield from ((f"{parent}.{key}", target) for key, child in node.items_ex(resolve=False) if isinstance(child, DictConfig))


def _typed_by(target: str, node: DictConfig) -> Any:
    """The callable a TYPED_BY entry names for `node`; None for an unknown `{name}` (a misspelled
    backbone is build_backbone's to name, with the valid ones)."""
    try:
        return get_object(target.format(name=node.get("name", "")))
    except Exception:  # noqa: BLE001  (hydra's get_object raises a bare ImportError or its own)
        return None


def check_arguments(entry: DictConfig, where: str, known_only: bool = False, target: Any = None) -> None:
    """Every key of a config (at `where`) is an argument of `target` (default: its `_target_`),
    of the type it declares. Values holding configs of their own are skipped (typed_nodes finds
    them); `known_only`: so are keys that are no argument (checked by other code's signature)."""
    target = target if target is not None else get_object(entry._target_)
    parameters = inspect.signature(target).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    try:
        annotated = target if is_dataclass(target) or not inspect.isclass(target) else target.__init__  # fields, not __init__'s
        hints = typing.get_type_hints(annotated, include_extras=True)
    except NameError:  # an annotation names what only type checkers import: check the names alone
        hints = {}
    name = getattr(target, "__name__", str(target))
    # Unresolved first: a value holding configs of its own (a data= config of evaluate, whose
    # ${seed} only the checkpoint's config resolves) is skipped before anything resolves it.
    for key, unresolved in OmegaConf.to_container(entry, resolve=False).items():
        dotted = f"{where}.{key}" if where else str(key)
        if key in HYDRA_KEYS or _holds_targets(unresolved) or (key not in parameters and (takes_any or known_only)):
            continue
        value = entry[key]
        if OmegaConf.is_config(value) and _holds_targets(OmegaConf.to_container(value, resolve=False)):
            continue  # a config of its own through an interpolation (`cam: ${cam}`): typed where it is defined
        value = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        if key not in parameters:
            valid = ", ".join(p for p in parameters if p != "self")
            raise ConfigError(f"{dotted} is not an argument of {name}; valid: {valid}")
        problem = _misfit(hints[key], value) if key in hints else None
        if problem is not None:
            raise ConfigError(f"{dotted}={value!r} does not fit {name}'s {key} ({problem})")


def _holds_targets(node: Any) -> bool:
    if isinstance(node, dict):
        return "_target_" in node or any(_holds_targets(v) for v in node.values())
    return isinstance(node, list) and any(_holds_targets(v) for v in node)


def _as_tuples(value: Any) -> Any:
    """Lists as tuples, at any depth: YAML has no tuples, and strict validation wants them."""
    if isinstance(value, dict):
        return {k: _as_tuples(v) for k, v in value.items()}
    return tuple(_as_tuples(v) for v in value) if isinstance(value, list) else value


def _misfit(annotation: Any, value: Any) -> str | None:
    """None when `value` fits `annotation` (a YAML list fits a tuple too), else the type and,
    for a bound (Annotated[int, Field(ge=0)]), what it asks."""
    try:
        adapter = TypeAdapter(annotation, config=STRICT)
    except PydanticUserError:  # an annotation pydantic cannot express: leave it to the target
        return None
    try:
        adapter.validate_python(value)
        return None
    except ValidationError as error:
        try:
            adapter.validate_python(_as_tuples(value))
            return None
        except ValidationError:
            pass
        if typing.get_origin(annotation) is Annotated:
            base = typing.get_args(annotation)[0]
            return f"{getattr(base, '__name__', base)}: {error.errors()[0]['msg'].lower()}"
    return annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")


def check_threshold(threshold: Any) -> None:
    """A probability in [0, 1], youden, sens@X or spec@X (covid_tl.stats.operating_point); null where allowed
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


def check_task_callbacks(cfg: DictConfig) -> None:
    """Grad-CAM explains a classifier's COVID-19 call, which pretraining and the segmenter do
    not make: their task options compose callbacks without it, and a command adding it back is
    refused here rather than failing after setup."""
    task = cfg.get("task", "classify")
    if task != "classify" and (cfg.get("callbacks") or {}).get("grad_cam") is not None:
        raise ConfigError(f"callbacks.grad_cam explains a COVID-19 classifier's call, which task={task} does not make: "
                          "leave it out (callbacks=minimal, or callbacks.grad_cam=null)")


def check_optimizer(cfg: DictConfig) -> None:
    """The optimizer (and scheduler) build on a stand-in parameter, so a bad value (lr=-1) is
    one line now instead of a traceback once training starts."""
    import torch
    from hydra.utils import instantiate

    try:
        optimizer = instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(1))])
    except Exception as error:  # noqa: BLE001 - any failure of the user's optimizer config
        raise ConfigError(f"optimizer ({cfg.optimizer._target_}): {_cause(error)}") from None
    if cfg.get("scheduler"):
        try:
            instantiate(cfg.scheduler)(optimizer)
        except Exception as error:  # noqa: BLE001
            raise ConfigError(f"scheduler ({cfg.scheduler._target_}): {_cause(error)}") from None


def _cause(error: BaseException) -> str:
    """The innermost error, one line (Hydra wraps a target's own error in its own)."""
    while error.__cause__ is not None:
        error = error.__cause__
    return " ".join(str(error).split()) or type(error).__name__


def check_cv(cfg: DictConfig) -> None:
    """`cv=k` (a fold ensemble) deals its own folds (a held-out source or view stays the test
    split) and trains its members from the start unless it goes on with ckpt_path=last."""
    cv = cfg.get("cv")
    if cv is None:
        return
    if isinstance(cv, bool) or not isinstance(cv, int) or cv < 2:
        raise ConfigError(f"cv must be a whole number of folds, at least 2 (or null), got {cv!r}")
    data = cfg.get("data") or {}
    if data.get("num_folds") is not None:
        raise ConfigError(f"cv={cv} deals the development patients into its own folds; drop data.num_folds")
    if cfg.get("ckpt_path") not in (None, "last"):
        raise ConfigError(f"cv={cv} trains its members from the start; ckpt_path=last goes on in the run dir of one "
                          "that stopped (finished members are kept, an unfinished one resumes from its last.ckpt)")


def check_values(cfg: DictConfig) -> None:
    """Epochs, data loader counts, optimizer: values of the right type whose mistakes would
    otherwise end in a traceback after the splits are written."""
    check_epochs(cfg)
    check_cv(cfg)
    if cfg.get("data") is not None and "_target_" in cfg.data:
        if "batch_size" in cfg.data:
            check_count(cfg, "data.batch_size", 1)
        if "num_workers" in cfg.data:
            check_count(cfg, "data.num_workers", 0, ("auto",))
    if cfg.get("optimizer") is not None:
        check_optimizer(cfg)


def check_train_config(cfg: DictConfig) -> None:
    """What train.py checks before a task writes anything: required values, the threshold rule,
    then every key of every group by the signature of the code that takes it (typed_nodes),
    then the values that take building to judge."""
    check_task_callbacks(cfg)  # first: a grad_cam added to another task points at a cam group it lacks
    check_required(cfg)
    if "threshold" in cfg:  # classification runs; segmentation has none
        check_threshold(cfg.threshold)
    for where, entry, target, known_only in typed_nodes(cfg):
        check_arguments(entry, where, known_only, target)
    check_values(cfg)
    for path in resume_files(cfg):  # bounded, plain types, own code in its config (unless trusted)
        check_checkpoint_file(path, bool(cfg.trust_checkpoint))


def instantiate_checked(config: Any, **kwargs: Any) -> Any:
    """Hydra's instantiate of `config`, where a ConfigError the target raises (a bad augment range,
    an unknown lung mode) comes out as its own one line, not inside Hydra's InstantiationException."""
    try:
        return instantiate(config, **kwargs)
    except InstantiationException as error:
        raise error.__cause__ if isinstance(error.__cause__, ConfigError) else error
