"""The audit's tests of a trained model, each a number a reviewer knows, with a 95% interval
over patients and a plain verdict (covid_tl.audit.verdicts):

- lungs removed / lungs only (Maguolo & Nanni 2021): the model's AUROC on films whose lung
  fields, or everything but them, are taken away;
- mark transplant (the study's watermark experiment as a test): the share of calls that move
  to the other class when marks cut from that class's training films are pasted on;
- source and view probes (Zech et al. 2018): how well a linear probe on the model's own
  features tells apart the sources (or views) of films that share a label;
- where the heat is: Grad-CAM mass in the lungs above its chance level, the lungs' share.

A test the data cannot support comes back as a record with `skipped` (one line: why), so the
audit runs every test it can and says what it left out.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from covid_tl.audit import verdicts
from covid_tl.audit.films import AuditSet, Films, features, intervened, probabilities
from covid_tl.audit.options import AuditOptions
from covid_tl.cam.sets import summarize_scores
from covid_tl.core.labels import LABELS
from covid_tl.preprocess.watermark import Stamp, build_bank, paste_stamps
from covid_tl.stats.metrics import auroc, bootstrap_intervals, bootstrap_mean
from covid_tl.stats.probe import probe_auroc

Record = dict[str, Any]
MEANING = {
    "lungs removed": "AUROC of the model on films with the lung fields filled in; 0.5 if it reads only the lungs",
    "lungs only": "AUROC of the model on films with all but the lung fields filled in (films it never saw so)",
    "mark transplant": "share of {label} films called {other} once marks of {other} training films are pasted on",
    "source probe": "AUROC of a linear probe on the model's features telling the sources of {label} films apart",
    "view probe": "AUROC of a linear probe on the model's features telling the views of {label} films apart",
    "heat on lungs": "Grad-CAM mass in the lungs minus the lungs' share of the input ({label}); 0 is chance",
}


#: Why lungs removed / lungs only mean less after preprocessing=lungs: the crop box comes from the
#: lungs' mask and the standardising is fitted on lung pixels, so what lies outside the lungs in
#: the model's input is itself a function of the lungs (on phantoms whose label lives only in the
#: lungs, a probe reads 0.93 with them filled in after preprocessing=lungs, 0.47 without it).
LUNG_FIELD_CAVEAT = ("the films went through preprocessing's lung field, whose crop and standardising are computed "
                     "from the lungs: what is left of a film without its lungs still carries them, so this number is an "
                     "upper bound, not a shortcut by itself")


def skipped(test: str, where: str, reason: str) -> Record:
    return {"test": test, "set": where, "skipped": reason}


def result(test: str, where: str, metric: str, value: float | None, ci: Sequence[float] | None, n: int,
           patients: int, verdict: str, meaning: str, **extra: Any) -> Record:
    return {"test": test, "set": where, "metric": metric, "value": value, "ci95": list(ci) if ci else None, "n": n,
            "patients": patients, "verdict": verdict, "meaning": meaning, **extra}


def region_tests(net: torch.nn.Module, films: Films, before: np.ndarray, threshold: float, options: AuditOptions,
                 device: torch.device, resamples: int, seed: int, batch_size: int = 32
                 ) -> tuple[list[Record], dict[str, np.ndarray]]:
    """Lungs removed and lungs only on one set: records, and each film's probability under each."""
    tests: dict[str, Callable] = {"lungs removed": verdicts.chance_auroc, "lungs only": verdicts.high_auroc}
    if films.lung_source == "none":
        reason = "not every film has a lung mask of the data's (shortcuts.masks=given); shortcuts.masks=auto segments them"
        return [skipped(name, films.name, reason) for name in tests], {}
    targets, patients = films.targets, films.patients
    if len(set(targets.tolist())) < 2:
        return [skipped(name, films.name, "the set holds films of one class only: no AUROC") for name in tests], {}
    records, probs = [], {}
    for name, verdict in tests.items():
        images = [intervened(f, name, options) for f in films.films]
        p = probabilities(net, images, device, batch_size)
        value = auroc(targets, p)
        ci = bootstrap_intervals(targets, p, patients, threshold, resamples, seed)["auroc"]
        changed = float(((p >= threshold) != (before >= threshold)).mean())
        extra = {"caveat": LUNG_FIELD_CAVEAT} if films.lung_field else {}
        records.append(result(name, films.name, "AUROC", value, ci, len(targets), len(set(patients)),
                              verdicts.UNCLEAR if films.lung_field else verdict(value, ci), MEANING[name],
                              as_is=auroc(targets, before), calls_changed=changed, **extra))
        probs[name] = p
    return records, probs


def mark_bank(audit_set: AuditSet, target: int, options: AuditOptions, seed: int,
              detector: Any = None) -> tuple[list[Stamp], int]:
    """Marks cut from up to `bank_films` original films of one class of `audit_set` (the
    training split): the stamps and how many films were searched."""
    rows = [r for r in audit_set.manifest.frame.to_dict("records") if int(r["label"] == LABELS[1]) == target]
    order = np.random.default_rng([seed, target]).permutation(len(rows))[: options.bank_films]
    chosen = [rows[i] for i in sorted(order)]
    bank = build_bank((audit_set.prepared.load_image(r) for r in chosen), detector,
                      max_area_fraction=options.mark_max_area, max_side_fraction=options.mark_max_side,
                      names=[str(r["path"]) for r in chosen])
    return bank, len(chosen)


def transplant_test(net: torch.nn.Module, films: Films, before: np.ndarray, banks: dict[int, tuple[list[Stamp], int]],
                    threshold: float, options: AuditOptions, device: torch.device, resamples: int, seed: int,
                    batch_size: int = 32) -> tuple[list[Record], np.ndarray]:
    """Per class: marks of the other class's training films pasted onto the model's input of
    each film (after preprocessing: whether the model reads marks, not whether the pipeline
    would remove them); records, and each film's probability afterwards (NaN: not pasted)."""
    after = np.full(len(films.films), np.nan)
    records, targets, patients = [], films.targets, films.patients
    for target in (0, 1):
        label, other = LABELS[target], LABELS[1 - target]
        members = np.flatnonzero(targets == target)
        bank, searched = banks[1 - target]
        if not len(members):
            records.append(skipped("mark transplant", films.name, f"no {label} films in the set"))
            continue
        if not bank:
            records.append(skipped("mark transplant", films.name, f"onto {label}: no burned-in marks found in "
                                   f"{searched} {other} training films to paste"))
            continue
        pasted = [paste_stamps(films.films[i].image, bank, np.random.default_rng([seed, int(i)]), n=options.marks,
                               positions=options.positions)[0] for i in members]
        after[members] = probabilities(net, pasted, device, batch_size)
        was = before[members] >= threshold if target == 0 else before[members] < threshold
        now = after[members] >= threshold if target == 0 else after[members] < threshold
        flipped = (~was & now).astype(float)
        value = float(flipped.mean())
        ci = bootstrap_mean(flipped, patients[members], resamples, seed)
        records.append(result("mark transplant", films.name, f"{label} -> {other}", value, ci, len(members),
                              len(set(patients[members])), verdicts.flip_share(value, ci),
                              MEANING["mark transplant"].format(label=label, other=other),
                              marks=len(bank), mean_change=float(np.mean(after[members] - before[members]))))
    return records, after


def probe_classes(sets: Sequence[Films], column: str) -> np.ndarray:
    """Each film's group for a probe: its `column` value; for `source`, with the set it came
    from when the audit has several (the training data's test films against an external set's,
    whatever either calls its source). Views are views wherever they come from."""
    several = len(sets) > 1 and column == "source"
    return np.concatenate([[f"{v} ({s.name})" if several else v for v in s.column(column)] for s in sets])


def probe_tests(net: torch.nn.Module, sets: Sequence[Films], options: AuditOptions, device: torch.device,
                resamples: int, seed: int, batch_size: int = 32) -> list[Record]:
    """Source and view probes within each label, on every audited film's features as is."""
    feats = np.concatenate([features(net, [f.image for f in s.films], device, batch_size) for s in sets])
    targets = np.concatenate([s.targets for s in sets])
    patients = np.concatenate([s.patients for s in sets])
    where = "+".join(s.name for s in sets)
    records = []
    for column, test in (("source", "source probe"), ("view", "view probe")):
        groups = probe_classes(sets, column)
        for target, label in enumerate(LABELS):
            rows = np.flatnonzero((targets == target) & (np.char.str_len(groups.astype(str)) > 0))
            names, counts = np.unique(groups[rows], return_counts=True)
            enough = [n for n, c in zip(names, counts)
                      if c >= options.probe_min_images and len(set(patients[rows][groups[rows] == n])) >= 2]
            if len(enough) < 2:
                have = ", ".join(f"{n}: {c}" for n, c in zip(names, counts)) or "none"
                records.append(skipped(f"{test} ({label})", where, f"needs two {column}s of {label} films with at least "
                                       f"{options.probe_min_images} films each; the audited films have {have}"))
                continue
            rows = rows[np.isin(groups[rows], enough)]
            probe = probe_auroc(feats[rows], groups[rows], patients[rows], options.probe_folds, seed, resamples)
            records.append(result(f"{test} ({label})", where, "AUROC", probe["auroc"], probe["ci95"], probe["n"],
                                  probe["patients"], verdicts.chance_auroc(probe["auroc"], probe["ci95"]),
                                  MEANING[test].format(label=label), groups=probe["classes"], folds=probe["folds"]))
    return records


def heat_tests(table: Any, where: str, resamples: int, seed: int) -> list[Record]:
    """Per class: the mean of lung_fraction - lung_area over the CAMs of cam.sets.score_set."""
    records = []
    for label in LABELS:
        part = table[(table["label"] == label) & table["above_chance"].notna()] if len(table) else table
        if not len(part):
            records.append(skipped(f"heat on lungs ({label})", where, f"no {label} film with a lung region to score"))
            continue
        summary = summarize_scores(part, resamples, seed)
        value, ci = summary["above_chance"], summary["above_chance_ci95"]
        records.append(result(f"heat on lungs ({label})", where, "lung_fraction - lung_area", value, ci, summary["n"],
                              summary["patients"], verdicts.heat_above_chance(value, ci),
                              MEANING["heat on lungs"].format(label=label), lung_fraction=summary["lung_fraction"],
                              lung_area=summary["lung_area"]))
    return records
