"""A site profile (calibrate_site.py): one hospital's operating point for one model.

The file is data, never code (JSON, read with json.loads and checked field by field): the site's
name, the sha256 of the model file it was chosen for (the checkpoint, or a fold ensemble's
ensemble.json, which pins its members' digests in turn), the operating point (threshold and
temperature), how it was chosen, and the rates it implies. evaluate.py, predict.py and
explain.py take it with `site=<profile>` and refuse it for any other model: a cut means nothing
on another model's probability scale.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from covid_tl.core.errors import ConfigError
from covid_tl.core.files import write_text_atomically
from covid_tl.models.ensemble import ensemble_file, file_digest

PROFILE_FILE = "site_profile.json"
FORMAT = "covid-tl site profile"
VERSION = 1
#: The operating point's `split` for a profile's cut, beside `val` and `oof`.
SITE = "site"


def model_file(ckpt_path: str | Path) -> Path:
    """The file whose digest names a model: a fold ensemble's ensemble.json (the file, or the
    run dir holding it), else the checkpoint."""
    listing = ensemble_file(ckpt_path)
    path = listing if listing is not None else Path(ckpt_path).expanduser()
    if not path.is_file():
        raise ConfigError(f"no checkpoint file at {path}")
    return path


def model_run_dir(ckpt_path: str | Path) -> Path:
    """The run dir a model lies in: a fold ensemble's (where ensemble.json is), else the one
    whose checkpoints/ holds the checkpoint."""
    path = model_file(ckpt_path)
    return path.parent if ensemble_file(path) is not None else path.parent.parent


def model_digest(ckpt_path: str | Path) -> str:
    """sha256 of model_file(ckpt_path)."""
    return file_digest(model_file(ckpt_path))


def write_profile(path: Path, record: Mapping[str, Any]) -> Path:
    """The profile at `path`, whole or not at all, after the checks read_profile makes."""
    record = {"format": FORMAT, "version": VERSION, **record}
    check_record(record, path)
    write_text_atomically(path, json.dumps(record, indent=2) + "\n")
    return path


def read_profile(path: str | Path) -> dict[str, Any]:
    """A profile as data: JSON only (never unpickled), its format, version and operating point
    checked; ConfigError in one line otherwise."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / PROFILE_FILE
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ConfigError(f"site={path} is not a readable site profile ({type(error).__name__}: "
                          f"{str(error).splitlines()[0] if str(error) else 'no detail'})") from None
    check_record(record, path)
    return record


def check_record(record: Any, path: Path) -> None:
    """The fields every reader relies on, typed: format and version, site, model.sha256, and
    the operating point's threshold in [0, 1] and temperature a positive number."""
    if not isinstance(record, Mapping) or record.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a covid-tl site profile (no \"format\": \"{FORMAT}\")")
    if record.get("version") != VERSION:
        raise ConfigError(f"{path} is site profile version {record.get('version')}; this covid-tl reads {VERSION}")
    point, model = record.get("operating_point"), record.get("model")
    problems = []
    if not isinstance(record.get("site"), str) or not record["site"]:
        problems.append("site must be a name")
    if not isinstance(model, Mapping) or not isinstance(model.get("sha256"), str):
        problems.append("model.sha256 must be the model file's digest")
    if not isinstance(point, Mapping):
        problems.append("operating_point must be a mapping")
    else:
        threshold, temperature = point.get("threshold"), point.get("temperature")
        if not _number(threshold) or not 0 <= threshold <= 1:
            problems.append(f"operating_point.threshold must be a probability, got {threshold!r}")
        if not _number(temperature) or not temperature > 0:
            problems.append(f"operating_point.temperature must be a positive number, got {temperature!r}")
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def site_operating_point(profile: str | Path, ckpt_path: str | Path) -> dict[str, Any]:
    """The operating point of the profile at `profile`, for the model at `ckpt_path`: refused
    in one line when the profile was made for another model file (by sha256)."""
    record = read_profile(profile)
    digest = model_digest(ckpt_path)
    if record["model"]["sha256"] != digest:
        raise ConfigError(f"site={profile} was made for another model (sha256 {record['model']['sha256'][:12]}, "
                          f"{record['model'].get('checkpoint', '?')}) than {ckpt_path} (sha256 {digest[:12]}): "
                          "a cut means nothing on another model's probabilities; run calibrate_site.py for this one")
    point = dict(record["operating_point"])
    return {**point, "threshold": float(point["threshold"]), "temperature": float(point["temperature"]),
            "split": SITE, "site": record["site"], "profile": str(profile)}
