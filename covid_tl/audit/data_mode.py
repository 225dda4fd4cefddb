"""audit.py mode=data: how much of the label a data set gives away outside the lungs, with no
trained model. A frozen backbone's features of every film (whole, lungs removed, lungs only)
go to a linear probe (the frozen fast path's head, as logistic regression) scored out of fold,
folds by patient. If the label can be read from lung-free films, any model trained on the set
can learn it from there; on the study's setup (each class from its own source) it can.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pytorch_lightning as pl
from omegaconf import DictConfig
from pathlib import Path

from covid_tl.audit import checks, verdicts
from covid_tl.audit.films import REGIONS, AuditSet, Films, features, intervened, load_films, p_column
from covid_tl.audit.options import AuditOptions
from covid_tl.audit.run import Timed, film_table, write_audit
from covid_tl.cam.lungs import CamLungs
from covid_tl.cam.sets import given_masks
from covid_tl.core.errors import ConfigError
from covid_tl.core.labels import LABELS
from covid_tl.core.provenance import provenance
from covid_tl.engine.build import build_datamodule, pick_device
from covid_tl.models.classifier import build_classifier
from covid_tl.stats.probe import probe_auroc

MEANING = {
    "whole films": "AUROC of a linear probe on frozen features of whole films, out of fold: what any model can reach",
    "lungs removed": "the same probe on films with the lung fields filled in; 0.5 if the label lives only in the lungs",
    "lungs only": "the same probe on films with all but the lung fields filled in",
}
COLUMNS = ("whole films", *REGIONS)


def audit_data(cfg: DictConfig, options: AuditOptions, output_dir: Path) -> dict[str, Any]:
    """Probes of the label on every film of `cfg.data` under each intervention, and of source and view."""
    if cfg.get("data") is None or "_target_" not in cfg.data:
        raise ConfigError("mode=data audits a data set: give data=<option> (e.g. data=xray_mini)")
    if cfg.get("ckpt_path") is not None:
        raise ConfigError("mode=data reads no model: drop ckpt_path (mode=model audits a checkpoint)")
    pl.seed_everything(cfg.seed, workers=True)
    net = build_classifier(cfg.backbone)
    device = pick_device(cfg.device)
    datamodule = build_datamodule(cfg, net.input_spec)
    datamodule.setup("fit")
    everything = AuditSet("all films", datamodule.manifest, datamodule.prepared,
                          given_masks(datamodule.load_lung_mask, datamodule.sources))
    timed = Timed()
    films = timed("films and lung fields", lambda: load_films(everything, options.masks,
                                                              CamLungs("segmenter_only", options.segmenter)))
    tests, probs = timed("label probes", lambda: label_probes(net, films, options, device, cfg))
    tests += timed("source and view probes", lambda: checks.probe_tests(net, [films], options, device, cfg.bootstrap,
                                                                         cfg.seed, cfg.batch_size))
    table = film_table(films, probs["whole films"])
    for name in COLUMNS[1:]:
        if name in probs:
            table[p_column(name)] = probs[name]
    record = {"mode": "data", "subject": f"the data, probed on frozen {net.backbone_name} features",
              "backbone": net.backbone_name, "lungs": {"masks": {films.name: films.lung_source}, "fill": options.fill,
                                                       "grow": options.grow},
              "sets": {films.name: {"n": len(films.films), "patients": len(set(films.patients))}},
              "tests": tests, "seconds": timed.seconds, "run": provenance()}
    write_audit(output_dir, record, table, data_examples(films, probs, options), 0.5,
                f"Shortcut audit of the data ({len(films.films)} films), probed on frozen {net.backbone_name} features",
                COLUMNS, same_model=False)
    return record


def label_probes(net: Any, films: Films, options: AuditOptions, device: Any, cfg: DictConfig
                 ) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """The label probe on whole films, lungs removed and lungs only: records, and each film's
    out-of-fold p(COVID-19) under each."""
    labels = np.array([f.row["label"] for f in films.films])
    patients = films.patients
    records, probs = [], {}
    for name in COLUMNS if films.lung_source != "none" else COLUMNS[:1]:
        images = [f.image if name == COLUMNS[0] else intervened(f, name, options) for f in films.films]
        feats = features(net, images, device, cfg.batch_size)
        probe = probe_auroc(feats, labels, patients, options.probe_folds, cfg.seed, cfg.bootstrap)
        value, ci = probe["auroc"], probe["ci95"]
        verdict = (verdicts.chance_auroc(value, ci) if name == "lungs removed" else
                   verdicts.high_auroc(value, ci) if name == "lungs only" else
                   verdicts.high_auroc(value, ci, "label readable", "label not readable"))
        extra = {"caveat": checks.LUNG_FIELD_CAVEAT} if films.lung_field and name != "whole films" else {}
        records.append(checks.result(f"label probe, {name}", films.name, "AUROC", value, ci, probe["n"],
                                     probe["patients"], verdicts.UNCLEAR if extra else verdict, MEANING[name],
                                     folds=probe["folds"], **extra))
        probs[name] = probe["oof"][:, list(probe["classes"]).index(LABELS[1])]  # columns: class names sorted
    if films.lung_source == "none":
        records += [checks.skipped(f"label probe, {n}", films.name, "not every film has a lung mask of the data's "
                                   "(shortcuts.masks=given)") for n in COLUMNS[1:]]
    return records, probs


def data_examples(films: Films, probs: dict[str, np.ndarray], options: AuditOptions) -> list[dict[str, Any]]:
    """The first `examples` films of each class under each intervention, with their OOF p."""
    rows = []
    for target in (1, 0):
        for i in np.flatnonzero(films.targets == target)[: options.examples]:
            film = films.films[i]
            images = {COLUMNS[0]: film.image, **{name: intervened(film, name, options)
                                                  for name in REGIONS if film.lungs is not None}}
            rows.append({"label": LABELS[target], "images": images, "lungs": film.lungs,
                         "p": {name: probs[name][i] for name in images if name in probs}})
    return rows
