"""A fold ensemble (train.py cv=k): k classifiers of one recipe, each trained with one fold of
the development patients held out, called as one model whose COVID-19 probability is the
members' mean.

Its file, ensemble.json, is data, never code: the members' checkpoint paths (relative to the
file) with their sha256 digests, the operating point chosen on the pooled out-of-fold
predictions, and what was selected on them. `models.checkpoint.load_run` reads it where it
reads a checkpoint, so evaluate, predict, explain, export and audit take an ensemble as one.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from covid_tl.core.errors import ConfigError

#: The file an ensemble run writes, and what `ckpt_path=<run dir>` finds in it.
ENSEMBLE_FILE = "ensemble.json"
FORMAT = "covid-tl fold ensemble"
VERSION = 1
#: Probabilities are kept this far from 0 and 1 before the mean goes back to a logit, so a
#: member certain of its call gives a finite logit (1e-7 is about 16 in logit).
EPSILON = 1e-7


class MemberFeatures(nn.Module):
    """The members' pooled features side by side (what the audit's probes read)."""

    def __init__(self, members: nn.ModuleList) -> None:
        super().__init__()
        self.members = members

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([member.features(x) for member in self.members], dim=1)


class EnsembleNet(nn.Module):
    """Image batch (N, C, H, W) to the COVID-19 logit of the members' mean probability.

    The output is logit(mean_m sigmoid(z_m)), each z_m at its member's temperature, so every
    caller that takes sigmoid of a classifier's output (evaluation, predict, export, Grad-CAM's
    target) gets the mean probability. `temperature` sets every member's (the ensemble's
    calibration is one temperature fitted on the pooled out-of-fold logits)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ConfigError("an ensemble needs at least one member")
        first = members[0]
        specs = {repr(m.input_spec) for m in members}
        if len(specs) > 1:
            raise ConfigError(f"ensemble members take different inputs: {sorted(specs)}")
        self.members = nn.ModuleList(members)
        self.backbone_name = first.backbone_name
        self.input_spec = first.input_spec
        self.cam_layer = first.cam_layer
        self.features = MemberFeatures(self.members)

    @property
    def temperature(self) -> float:
        return float(self.members[0].temperature)

    @temperature.setter
    def temperature(self, value: float) -> None:
        for member in self.members:
            member.temperature = float(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probabilities = torch.stack([torch.sigmoid(member(x).float()) for member in self.members]).mean(0)
        return torch.logit(probabilities.clamp(EPSILON, 1 - EPSILON))


def member_count(net: nn.Module) -> int | None:
    """How many members a fold ensemble averages; None for one classifier."""
    members = getattr(net, "members", None)
    return len(members) if isinstance(members, nn.ModuleList) else None


def cam_nets(net: nn.Module) -> list[nn.Module]:
    """The classifiers whose layers a CAM is taken at: an ensemble's members (pytorch-grad-cam
    scales each layer's map to [0, 1] and averages them: the mean CAM of the members), else the
    net itself."""
    members = getattr(net, "members", None)
    return list(members) if isinstance(members, nn.ModuleList) else [net]


@dataclass
class Member:
    """One member: its checkpoint (absolute once read), sha256 digest, fold and epoch."""

    checkpoint: Path
    sha256: str
    fold: int
    epoch: int | None = None

    def record(self, base: Path) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint.relative_to(base).as_posix(), "sha256": self.sha256,
                "fold": self.fold, "epoch": self.epoch}


@dataclass
class EnsembleFile:
    """What ensemble.json holds: members, the operating point ({rule, threshold, temperature,
    split: "oof", n, ...}) and the run's selection record (free-form, for people)."""

    members: list[Member]
    operating_point: dict[str, Any]
    selection: dict[str, Any] = field(default_factory=dict)


def file_digest(path: Path) -> str:
    """sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def ensemble_file(path: str | Path) -> Path | None:
    """The ensemble.json `path` names (the file, or a run dir holding one), else None."""
    path = Path(path).expanduser()
    if path.is_dir() and (path / ENSEMBLE_FILE).is_file():
        return path / ENSEMBLE_FILE
    return path if path.is_file() and path.suffix == ".json" else None


def write_ensemble(path: Path, ensemble: EnsembleFile) -> Path:
    """ensemble.json at `path` (members relative to its folder), written whole or not at all."""
    base = path.parent
    record = {"format": FORMAT, "version": VERSION, "members": [m.record(base) for m in ensemble.members],
              "operating_point": ensemble.operating_point, "selection": ensemble.selection}
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(record, indent=2) + "\n")
    partial.replace(path)
    return path


def read_ensemble(path: Path) -> EnsembleFile:
    """ensemble.json as data (json, never unpickled), each member's file checked against its
    digest: a member replaced after the ensemble was written is refused."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path} is not a readable ensemble file ({error})") from None
    if not isinstance(record, Mapping) or record.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a covid-tl ensemble file (no \"format\": \"{FORMAT}\")")
    if record.get("version") != VERSION:
        raise ConfigError(f"{path} is ensemble format version {record.get('version')}; this covid-tl reads {VERSION}")
    members = []
    for entry in record.get("members") or []:
        checkpoint = (path.parent / str(entry["checkpoint"])).resolve()
        if not checkpoint.is_relative_to(path.parent.resolve()):
            raise ConfigError(f"{path}: member {entry['checkpoint']!r} lies outside the ensemble's folder")
        if not checkpoint.is_file():
            raise ConfigError(f"{path}: member checkpoint {checkpoint} is missing")
        if file_digest(checkpoint) != entry.get("sha256"):
            raise ConfigError(f"{path}: member {checkpoint} is not the file the ensemble was written with "
                              "(its sha256 differs)")
        members.append(Member(checkpoint, str(entry["sha256"]), int(entry["fold"]), entry.get("epoch")))
    if not members:
        raise ConfigError(f"{path} lists no members")
    point = record.get("operating_point")
    if not isinstance(point, Mapping) or "threshold" not in point:
        raise ConfigError(f"{path} has no operating point")
    return EnsembleFile(members, dict(point), dict(record.get("selection") or {}))
