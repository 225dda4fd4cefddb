"""results.json as one typed, versioned record, with its one writer and its one reader.

Train and evaluate write it; the console, the model card, the sweep report, the trackers and the
benchmarks read it through `read_results`, so none of them guesses at its layout. Schema 2 keeps
image sets under `sets` (their names never collide with the record's own keys) and the
operating point and CAM scores beside them; a schema-1 file (sets at the top, the operating
point inside `run`, before 2026-12) is read into the same record.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from covid_tl.core.errors import ConfigError
from covid_tl.core.files import write_text_atomically

SCHEMA = 2
FILE = "results.json"
#: What a file of each task holds: a COVID-19 classifier's sets, a lung segmenter's, a findings pretraining's.
KINDS = ("classifier", "segmenter", "findings")


@dataclass
class Results:
    """A run's results.

    sets: set name (train/val/test splits, `extra_no_finding`, `external:<path>`) -> its block:
      n, rates with Wilson intervals, auroc, calibration, bootstrap_ci95, per_source, per_view,
      confusion_matrix, and, where measured, `cams` (evaluate cams=true) and `overlap`.
    run: the run record (backbone, checkpoint, epochs, seed, wall time, code versions...).
    operating_point: {rule, threshold, temperature, split, n}: the cut every rate is at.
    shift: in-distribution vs held-out source (data.holdout_source), else None.
    cam: CAM score rows logged during training, [{"epoch", "which", <score>: value}].
    """

    sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    operating_point: dict[str, Any] | None = None
    shift: dict[str, Any] | None = None
    cam: list[dict[str, Any]] = field(default_factory=list)
    kind: str = "classifier"
    schema: int = SCHEMA

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r} is not one of {KINDS}")

    @property
    def threshold(self) -> float | None:
        """The probability cut every rate is at (None for a segmenter)."""
        if self.operating_point and self.operating_point.get("threshold") is not None:
            return float(self.operating_point["threshold"])
        return next((float(s["threshold"]) for s in self.sets.values() if s.get("threshold") is not None), None)

    def set(self, name: str) -> dict[str, Any]:
        """One set's block; an unknown name is an error naming the sets there are."""
        if name not in self.sets:
            raise ConfigError(f"results have no set {name!r}; they have: {', '.join(self.sets) or 'none'}")
        return self.sets[name]

    def cam_scores(self) -> dict[str, float]:
        """The CAM scores at the best checkpoint's epoch (else the last logged), {} when none."""
        if not self.cam:
            return {}
        row = next((r for r in self.cam if "best" in str(r.get("which", ""))), self.cam[-1])
        return {k: v for k, v in row.items() if k not in ("epoch", "which")}

    def to_dict(self) -> dict[str, Any]:
        return {"schema": self.schema, "kind": self.kind, "operating_point": self.operating_point,
                "sets": self.sets, "shift": self.shift, "cam": self.cam, "run": self.run}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "results") -> Results:
        """The record of a parsed results.json of any schema so far; a newer one is refused."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where} is not a results record (a JSON object)")
        schema = data.get("schema", 1)
        if not isinstance(schema, int) or schema > SCHEMA:
            raise ConfigError(f"{where} has schema {schema!r}; this covid-tl reads schema {SCHEMA} and older: "
                              "update covid-tl to read it")
        if schema == 1:
            return cls._from_schema_1(data)
        unknown = set(data) - {"schema", "kind", "operating_point", "sets", "shift", "cam", "run"}
        if unknown:
            raise ConfigError(f"{where} has keys schema {schema} does not have: {', '.join(sorted(unknown))}")
        return cls(sets=dict(data.get("sets") or {}), run=dict(data.get("run") or {}),
                   operating_point=data.get("operating_point"), shift=data.get("shift"),
                   cam=list(data.get("cam") or []), kind=data.get("kind", "classifier"), schema=SCHEMA)

    @classmethod
    def _from_schema_1(cls, data: Mapping[str, Any]) -> Results:
        run = dict(data.get("run") or {})
        sets = {k: v for k, v in data.items() if k not in ("run", "shift", "cam") and isinstance(v, Mapping)}
        kind = "segmenter" if any("dice" in s for s in sets.values()) else "classifier"
        return cls(sets=sets, run=run, operating_point=run.pop("operating_point", None), shift=data.get("shift"),
                   kind=kind)


def cam_rows(scores: Mapping[int, Mapping[str, float | None]], best_epoch: int | None) -> list[dict[str, Any]]:
    """Results.cam: the Grad-CAM callback's mean scores (epoch -> {score: value}) at the best
    checkpoint's epoch and at the last, [{"epoch", "which", <score>: value}]."""
    if not scores:
        return []
    last = max(scores)
    picked = [(last, "best, last" if best_epoch == last else "last")]
    if best_epoch in scores and best_epoch != last:
        picked.insert(0, (best_epoch, "best"))
    return [{"epoch": int(epoch), "which": which, **scores[epoch]} for epoch, which in picked]


def results_path(path: str | Path) -> Path:
    """A run dir's results.json, or the file itself."""
    path = Path(path).expanduser()
    return path / FILE if path.is_dir() else path


def read_results(path: str | Path) -> Results:
    """The record in a run dir (or a results.json), with one-line errors for a missing,
    unreadable or newer file."""
    file = results_path(path)
    if not file.is_file():
        raise ConfigError(f"no {FILE} at {file} (did the run finish?)")
    try:
        data = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{file} cannot be read as JSON: {error}") from None
    return Results.from_dict(data, str(file))


def write_results(output_dir: str | Path, results: Results) -> Path:
    """output_dir/results.json, written whole or not at all."""
    path = Path(output_dir) / FILE
    write_text_atomically(path, json.dumps(results.to_dict(), indent=2) + "\n")
    return path
