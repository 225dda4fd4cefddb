"""Loading torch.save files (checkpoints, weights) without running code from them.

Unpickling runs whatever code a file names. `weights_only=True` loads tensors and plain
containers only, which is all covid-tl's own checkpoints hold (the run config travels as a
plain dict); a file that needs more is refused in one line naming the key that loads it
anyway (`trust_checkpoint=true`, `backbone.trust_weights=true`), for files the user trusts.

A file is also bounded before torch reads it: torch.save writes its records uncompressed, so a
compressed record (a zip bomb: a few MB that inflate to gigabytes), records larger than the
file, or more than MAX_RECORD_BYTES in all are refused before anything is allocated. Files
outside the zip format (torch.save before 1.6, pickle.dump) cannot be bounded or checked
before they are loaded, so they load only when trusted.

The run config a checkpoint carries is data too (check_run_config): every `_target_` in it
must be one that covid-tl's own configs build (RUN_TARGETS) before Hydra may see it; in the
blocks only training builds (and inference drops), a class or function defined in covid_tl,
torch.optim or PyTorch Lightning.
"""
from __future__ import annotations

import importlib
import inspect
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from covid_tl.runtime.config_history import upgrade
from covid_tl.core.errors import ConfigError

#: The key that loads a checkpoint needing more than weights_only (evaluate, explain, resume).
TRUST_CHECKPOINT = "trust_checkpoint"
#: The most the records of one torch file may hold in all (uncompressed: never more than the file).
MAX_RECORD_BYTES = 4 << 30
#: The most its pickle (data.pkl: the containers, names and config, not the tensors) may hold.
MAX_PICKLE_BYTES = 32 << 20
#: Where a covid-tl checkpoint keeps its run config.
RUN_CONFIG = ("hyper_parameters", "config")

#: covid-tl's package: the training-only blocks may name its classes and functions too.
OWN_CODE = ("covid_tl",)
#: What a `_target_` outside the training-only blocks may name: the classes and functions that
#: covid-tl's own configs (conf/) build from a run config, and nothing else of covid-tl's either
#: (a task or a plot writes files where its arguments say). tests/test_checkpoint_data.py keeps
#: this equal to what conf/ names.
RUN_TARGETS = frozenset({
    "covid_tl.data.datamodule.XrayDataModule", "covid_tl.data.findings.FindingsDataModule",
    "covid_tl.data.segmentation.LungMaskDataModule", "covid_tl.data.sources.CohenSource",
    "covid_tl.data.sources.NIHSource", "covid_tl.data.sources.ManifestSource", "covid_tl.data.sources.FolderSource",
    "covid_tl.data.v7labs.CohenV7LabsLungs", "covid_tl.data.synthetic.source.SyntheticSource",
    "covid_tl.data.synthetic.marks.ShortcutSpec", "covid_tl.preprocess.acquisition.AcquisitionChain",
    "covid_tl.preprocess.pipeline.build_preprocess", "covid_tl.preprocess.augment.build_augmentation",
    "covid_tl.models.freeze.apply_freeze",
    "covid_tl.models.module.CovidClassifier", "covid_tl.models.segmenter.LungSegmenter.create",
})
#: Blocks only training instantiates (inference drops them; `cam` is the Grad-CAM callback's, and
#: each inference script has its own): beside covid-tl's own code, their targets may be defined
#: in the libraries covid-tl's configs name there.
TRAINING_ONLY = ("optimizer", "scheduler", "trainer", "callbacks", "logger", "cam", "shortcuts")
TRAINING_CODE = ("covid_tl", "torch.optim", "pytorch_lightning", "lightning.pytorch")


def unsafe_globals(path: Path) -> list[str]:
    """The Python objects beyond tensors and plain containers that a torch.save (zip) file names."""
    if not zipfile.is_zipfile(path):
        return []  # an older format: the weights-only load itself refuses what it cannot vouch for
    return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))


def check_loadable(path: Path, trust_key: str, error: type[ConfigError] = ConfigError) -> None:
    """Raise `error` where `path` names objects whose loading could run code: cheap, reads no tensors."""
    unsafe = unsafe_globals(path)
    if unsafe:
        names = ", ".join(unsafe[:3]) + (f" and {len(unsafe) - 3} more" if len(unsafe) > 3 else "")
        raise error(
            f"{path} holds Python objects whose loading can run code ({names}); "
            f"only if you trust where the file comes from, load it with {trust_key}=true"
        )


def check_structure(path: Path, what: str, trust_key: str, trust: bool = False,
                    error: type[ConfigError] = ConfigError) -> None:
    """Raise `error` unless `path` is a torch.save zip whose records are bounded (see the module
    docstring); a pickle outside the zip format passes only when trusted. Reads the zip's
    directory, never a record."""
    if not zipfile.is_zipfile(path):
        if not _is_bare_pickle(path):
            raise error(f"{path} is not a readable {what} (neither the zip archive nor the pickle that torch.save "
                        "writes; a cut-off download?)")
        if not trust:
            raise error(f"{path} is not a readable {what}: a pickle outside torch's zip format (torch.save before "
                        f"1.6, pickle.dump), which cannot be checked before it runs; a trusted pickle loads with "
                        f"{trust_key}=true")
        return
    try:
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as failure:
        raise error(f"{path} is not a readable {what} ({reason(failure)})") from None
    size = path.stat().st_size
    for record in records:
        if record.compress_type != zipfile.ZIP_STORED or record.compress_size != record.file_size:
            raise error(f"{path} holds a compressed record ({record.filename}), which torch.save never writes "
                        f"(a zip bomb inflates a small file to gigabytes); re-save it with torch.save")
        if record.filename.endswith("/data.pkl") and record.file_size > MAX_PICKLE_BYTES:
            raise error(f"{path} holds a {record.file_size / 2**20:.0f} MiB pickle ({record.filename}); "
                        f"a torch.save file's is far under {MAX_PICKLE_BYTES >> 20} MiB")
    total = sum(record.file_size for record in records)
    if total > min(size, MAX_RECORD_BYTES):
        raise error(f"{path} declares {total:,} bytes of records in a {size:,}-byte file"
                    + (f" (at most {MAX_RECORD_BYTES >> 30} GiB are loaded)" if total > MAX_RECORD_BYTES else ""))


def load_torch_file(
    path: Path, what: str, trust_key: str, trust: bool = False, error: type[ConfigError] = ConfigError
) -> Any:
    """torch.load on the CPU: bounded (check_structure), weights only unless `trust`; any failure
    is one `error` line."""
    check_structure(path, what, trust_key, trust, error)
    if not trust:
        check_loadable(path, trust_key, error)
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except Exception as failure:  # noqa: BLE001 - torch raises many types for a file it cannot load
        hint = f"; a trusted pickle loads with {trust_key}=true" if not trust and _is_bare_pickle(path) else ""
        raise error(f"{path} is not a readable {what} ({reason(failure)}){hint}") from None


def check_checkpoint_file(path: Path, trust: bool = False, error: type[ConfigError] = ConfigError) -> None:
    """What a checkpoint must pass before Lightning may resume from it, without reading its
    weights: the bounds, no objects beyond plain types and a run config naming only covid-tl's
    own code, unless `trust`."""
    check_structure(path, "PyTorch checkpoint", TRUST_CHECKPOINT, trust, error)
    if trust:
        return
    check_loadable(path, TRUST_CHECKPOINT, error)
    try:  # the pickle alone: tensors come back on the meta device, no bytes of them read
        checkpoint = torch.load(path, map_location="meta", weights_only=True)
    except Exception as failure:  # noqa: BLE001 - as in load_torch_file
        raise error(f"{path} is not a readable PyTorch checkpoint ({reason(failure)})") from None
    config = run_config(checkpoint)
    if config is not None:
        check_run_config(upgrade(config), path, TRUST_CHECKPOINT, error)


def run_config(checkpoint: Any) -> Any:
    """The run config a covid-tl checkpoint carries (hyper_parameters.config), or None."""
    node = checkpoint
    for key in RUN_CONFIG:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node


def check_run_config(config: Any, path: Path | str, trust_key: str = TRUST_CHECKPOINT,
                     error: type[ConfigError] = ConfigError) -> None:
    """Raise `error`, naming the key, where the run config of the checkpoint at `path` holds a
    `_target_` outside RUN_TARGETS (TRAINING_ONLY blocks: is_own_code of TRAINING_CODE) or an interpolation
    (`${...}`: covid-tl stores its configs resolved, and a resolver such as oc.decode would
    build a config the check never saw)."""
    for key, value in _leaves(config):
        if isinstance(value, str) and "${" in value:
            raise error(f"{path} config key {key} holds an interpolation ({_short(value)}), which a covid-tl "
                        f"checkpoint never does; only if you trust the file, load it with {trust_key}=true")
        if key == "_target_" or key.endswith("._target_"):
            training = key.split(".", 1)[0] in TRAINING_ONLY
            if training and not is_own_code(value, TRAINING_CODE):
                raise error(f"{path} config key {key} names {_short(value)}, which is not one of covid-tl's own "
                            f"classes or functions (nor torch.optim's or PyTorch Lightning's); only if you trust "
                            f"the file, load it with {trust_key}=true")
            if not training and value not in RUN_TARGETS:
                raise error(f"{path} config key {key} names {_short(value)}, which is not one of the covid-tl "
                            f"classes and functions a run config builds; only if you trust the file, load it with "
                            f"{trust_key}=true")


def is_own_code(target: Any, packages: tuple[str, ...] = OWN_CODE) -> bool:
    """Whether the dotted path `target` reaches, as Hydra would look it up, a class or function
    defined in one of `packages`. Only modules inside (or above) those packages are imported
    to find out, and a path that walks out of them through a module attribute
    (covid_tl.tasks.train.torch.load) reaches an object defined elsewhere: refused."""
    if not isinstance(target, str) or not _within(target, packages):
        return False
    parts = target.split(".")
    obj: Any = _import(parts[0], packages)
    for i, part in enumerate(parts[1:], start=2):
        if obj is None or not part.isidentifier():
            return False
        try:
            obj = getattr(obj, part)
        except AttributeError:
            obj = _import(".".join(parts[:i]), packages) if isinstance(obj, ModuleType) else None
        except Exception:  # noqa: BLE001 - a lazy attribute that fails: not something to call
            return False
    if not (inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismethod(obj)):
        return False
    return _within(str(getattr(obj, "__module__", "")), packages)


def _within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def _import(name: str, packages: tuple[str, ...]) -> ModuleType | None:
    """The module `name` where it is one of `packages`, inside one, or a package above one."""
    if not (_within(name, packages) or any(p.startswith(name + ".") for p in packages)):
        return None
    try:
        return importlib.import_module(name)
    except Exception:  # noqa: BLE001 - not importable: not a target either
        return None


def _leaves(node: Any, prefix: str = ""):
    """(dotted key, value) of every entry of a nested dict/list, containers included."""
    items = node.items() if isinstance(node, Mapping) else enumerate(node) if isinstance(node, (list, tuple)) else ()
    for key, value in items:
        dotted = f"{prefix}{key}"
        yield dotted, value
        yield from _leaves(value, dotted + ".")


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_bare_pickle(path: Path) -> bool:
    """A pickle outside torch's zip container (torch.save's legacy format, pickle.dump)."""
    with path.open("rb") as handle:
        head = handle.read(2)
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5  # the PROTO opcode


def reason(error: BaseException) -> str:
    """A short, one-line account of a load failure (torch's weights-only ones span a screen)."""
    text = " ".join(str(error).split())
    unpickler = re.search(r"WeightsUnpickler error: (.*?)(?: Check the documentation|$)", text)
    if unpickler:
        text = unpickler.group(1)
    if len(text) > 160:
        text = text[:157].rsplit(" ", 1)[0] + " ..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
