"""One audit of a trained model on named sets of films: every test the data allows
(covid_tl.audit.checks), written as audit.json, audit.md, audit_films.csv (each film's
probability as is and under each intervention) and audit_examples.png."""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch

from covid_tl.audit import checks
from covid_tl.audit.figures import example_figure
from covid_tl.audit.films import REGIONS, AuditSet, Films, intervened, load_films, p_column, probabilities
from covid_tl.audit.options import AuditOptions
from covid_tl.cam.lungs import CamLungs
from covid_tl.cam.options import CamOptions
from covid_tl.cam.sets import score_set
from covid_tl.core.files import write_text_atomically
from covid_tl.core.labels import LABELS
from covid_tl.data.dataset import XrayDataset
from covid_tl.preprocess.watermark import paste_stamps
from covid_tl.reporting.audit_table import audit_lines

log = logging.getLogger(__name__)
FILM_COLUMNS = ("path", "label", "patient_id", "source", "view")


class Timed:
    """Seconds per test, for audit.json (docs/benchmarks.md reads them) and the log."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str, work: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        out = work()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - started, 2)
        log.info("audit: %s done in %.1f s", name, time.perf_counter() - started)
        return out


def audit_model(net: torch.nn.Module, sets: Sequence[AuditSet], train: AuditSet | None, threshold: float,
                options: AuditOptions, cam: CamOptions | None, device: torch.device, output_dir: Path,
                about: Mapping[str, Any], resamples: int = 1000, seed: int = 0, detector: Any = None,
                batch_size: int = 32) -> dict[str, Any]:
    """Every test on every set; writes the audit's files into `output_dir` and returns audit.json."""
    timed, tests, tables, loaded = Timed(), [], [], []
    segmenter = CamLungs("segmenter_only", options.segmenter)
    banks = None
    if train is not None:
        banks = timed("mark bank", lambda: {t: checks.mark_bank(train, t, options, seed, detector) for t in (0, 1)})
    for audit_set in sets:
        films = timed("films and lung fields", lambda: load_films(audit_set, options.masks, segmenter))
        before = probabilities(net, [f.image for f in films.films], device, batch_size)
        table = film_table(films, before)
        records, probs = timed("lungs removed / only", lambda: checks.region_tests(
            net, films, before, threshold, options, device, resamples, seed, batch_size))
        tests += records
        for name, p in probs.items():
            table[p_column(name)] = p
        if banks is None:
            tests.append(checks.skipped("mark transplant", films.name, "no training films to cut marks from"))
        else:
            records, after = timed("mark transplant", lambda: checks.transplant_test(
                net, films, before, banks, threshold, options, device, resamples, seed, batch_size))
            tests += records
            table[p_column("mark transplant")] = after
        if cam is not None and options.cams:
            tests += timed("heat on lungs", lambda: heat(net, audit_set, films, cam, segmenter, threshold, detector,
                                                         resamples, seed))
        tables.append(table)
        loaded.append(films)
    if loaded:
        tests += timed("source and view probes", lambda: checks.probe_tests(net, loaded, options, device, resamples,
                                                                             seed, batch_size))
    else:
        tests.append(checks.skipped("every test", "-", "no films to audit (the test split is empty)"))
    record = {"mode": "model", **about, "threshold": threshold,
              "lungs": {"masks": {f.name: f.lung_source for f in loaded}, "fill": options.fill, "grow": options.grow},
              "sets": {f.name: {"n": len(f.films), "patients": len(set(f.patients))} for f in loaded},
              "marks": {LABELS[t]: {"stamps": len(b), "films_searched": n} for t, (b, n) in (banks or {}).items()},
              "tests": tests, "seconds": timed.seconds}
    frames = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    examples = [row for films in loaded if options.examples
                for row in model_examples(films, frames, banks, options, seed, several=len(loaded) > 1)]
    shown = f", films of {', '.join(f.name for f in loaded)}" if loaded else ""
    write_audit(output_dir, record, frames, examples, threshold, f"Shortcut audit of {about.get('subject', 'a model')}{shown}")
    return record


def film_table(films: Films, before: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame([{k: f.row.get(k) for k in FILM_COLUMNS} for f in films.films])
    frame.insert(0, "set", films.name)
    frame["p_as_is"] = before
    return frame


def heat(net: torch.nn.Module, audit_set: AuditSet, films: Films, cam: CamOptions, segmenter: CamLungs,
         threshold: float, detector: Any, resamples: int, seed: int) -> list[dict[str, Any]]:
    """Grad-CAM scores of the set against the same lung fields the other tests take away."""
    lungs = CamLungs("masks") if films.lung_source == "given" else segmenter
    if films.lung_source == "none":
        lungs = CamLungs("none")
    dataset = XrayDataset(audit_set.manifest, audit_set.prepared, net.input_spec)
    table = score_set(net, audit_set.manifest, dataset, audit_set.given_masks, replace(cam, lungs=lungs), threshold,
                      detector)
    return checks.heat_tests(table, films.name, resamples, seed)


COLUMNS = ("as seen", "lungs removed", "lungs only", "marks of the other class")


def model_examples(films: Films, frame: pd.DataFrame, banks: Any, options: AuditOptions, seed: int,
                   several: bool = False) -> list[dict[str, Any]]:
    """The first `examples` films of each class of a set under each intervention, with the
    probabilities audit_films.csv holds (the same seeds, so the same pictures); `several`: the
    set's name goes on each row."""
    rows = []
    part = frame[frame["set"] == films.name].reset_index(drop=True)
    for target in (1, 0):
        for i in np.flatnonzero(films.targets == target)[: options.examples]:
            film = films.films[i]
            images, p = {"as seen": film.image}, {"as seen": part.loc[i, "p_as_is"]}
            for name in REGIONS if film.lungs is not None else ():
                images[name], p[name] = intervened(film, name, options), part.loc[i, p_column(name)]
            if banks is not None and banks[1 - target][0] and not np.isnan(part.loc[i, p_column("mark transplant")]):
                images[COLUMNS[3]] = paste_stamps(film.image, banks[1 - target][0], np.random.default_rng([seed, int(i)]),
                                                 n=options.marks, positions=options.positions)[0]
                p[COLUMNS[3]] = part.loc[i, p_column("mark transplant")]
            rows.append({"label": LABELS[target], "images": images, "p": p, "lungs": film.lungs,
                         "set": films.name if several else None})
    return rows


def write_audit(output_dir: Path, record: Mapping[str, Any], films: pd.DataFrame, examples: Sequence[Mapping],
                threshold: float, title: str, columns: Sequence[str] = COLUMNS, same_model: bool = True) -> None:
    """audit.json, audit_films.csv, audit.md and (with examples) audit_examples.png, titled `title`."""
    output_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomically(output_dir / "audit.json", json.dumps(record, indent=2, default=_plain) + "\n")
    if len(films):
        write_text_atomically(output_dir / "audit_films.csv", films.to_csv(index=False))
    lines = [f"# {title}", "", *audit_lines(record), ""]
    if examples:
        picture = example_figure(examples, [c for c in columns if any(c in e["images"] for e in examples)],
                                 threshold, title, same_model=same_model)
        cv2.imwrite(str(output_dir / "audit_examples.png"), picture[:, :, ::-1])
        lines += ["![films under each intervention](audit_examples.png)", ""]
    write_text_atomically(output_dir / "audit.md", "\n".join(lines))
    for test in record["tests"]:
        if "skipped" in test:
            log.info("audit: %s on %s not run: %s", test["test"], test["set"], test["skipped"])


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as JSON."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")
