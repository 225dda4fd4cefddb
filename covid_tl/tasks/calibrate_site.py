"""calibrate_site.py: a model's operating point for a new hospital, from a few of its labelled
films or from none.

At a hospital the model never saw, its probabilities move while the order of the films often
holds: the cut chosen on the training data's validation films calls too many or too few. Here
the cut is chosen on the site's own films (`labelled=n`: n per class drawn by patient, the rest
held out to report on; null: every film) or, without labels, matched to the site's score
distribution (stats/site.py). Every rate is reported at the cut it is at: the site's, or the
model's own. The profile (site_profile.json) is data for evaluate, predict and explain
(`site=<profile>`), bound to this model file by its sha256.
"""
from __future__ import annotations

import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from scipy.special import expit

from covid_tl.core.errors import ConfigError
from covid_tl.core.files import write_text_atomically
from covid_tl.core.labels import LABELS
from covid_tl.core.provenance import provenance
from covid_tl.data.dataset import ImageFiles, file_images
from covid_tl.data.external import shared_patients
from covid_tl.data.images import MAX_MEGAPIXELS, image_files
from covid_tl.data.manifest import Manifest
from covid_tl.data.validate import readable_files, write_bad_rows
from covid_tl.engine.build import build_datamodule, build_preprocessing, pick_device
from covid_tl.engine.evaluation import checkpoint_data, operating_point_of, predict, predict_logits
from covid_tl.engine.site_card import site_card
from covid_tl.models.checkpoint import load_run
from covid_tl.models.ensemble import ensemble_file, file_digest, member_count
from covid_tl.models.site_profile import PROFILE_FILE, SITE, model_digest, model_file, model_run_dir, write_profile
from covid_tl.reporting.console import print_site
from covid_tl.reporting.plots import how_many_films_figure
from covid_tl.runtime.run_checks import check_script_config
from covid_tl.stats.metrics import bootstrap_intervals, patient_resamples, summarize
from covid_tl.stats.operating_point import choose_threshold, describe_cut, is_rule, parse_threshold
from covid_tl.stats.site import draw_labelled, em_prevalence, how_many_films, matched_cut, spread

log = logging.getLogger(__name__)

LABEL_FREE_ASSUMES = (
    "score-distribution matching: the site's cut calls as large a share of its films COVID-19 as the model's own cut "
    "calls of its reference films, reweighted to the site's prevalence. It assumes the site moves every film's "
    "score by one increasing map whatever its class, and that the prevalence is right; it fails where a scanner "
    "moves one class only, and a wrong prevalence moves the cut by as much. The EM prevalence (Saerens et al. 2002) "
    "assumes the opposite, that only the prior moved: where the scale moved, it reads the move as prevalence.")


def calibrate_site(cfg: DictConfig, output_dir: Path) -> dict[str, Any]:
    """Writes site_profile.json, site_films.csv, how_many_films.png, held_out.csv (files the
    site's manifest lists, for evaluate's `external=`) and model_card.md; returns the profile."""
    check_script_config(cfg)
    rule = site_options(cfg)
    run_cfg, model = load_run(cfg.ckpt_path, cfg.trust_checkpoint)
    if cfg.calibrate and member_count(model.net):
        raise ConfigError("calibrate=true: a fold ensemble's temperature divides each member's logit, not the logit of "
                          "their mean that a site's films would fit it to; calibrate_site chooses its cut only "
                          "(calibrate=false)")
    device = pick_device(cfg.device)
    own = checkpoint_data(run_cfg, model.net.input_spec)
    output_dir.mkdir(parents=True, exist_ok=True)
    if cfg.get("images"):  # unlabelled files: label-free only
        manifest, (frame, dataset) = None, site_files(cfg, run_cfg, model.net.input_spec, own, output_dir)
    else:
        manifest, dataset, bad = site_films(cfg, run_cfg, model.net.input_spec)
        frame = manifest.frame
        if len(bad):
            write_bad_rows(bad, output_dir)
        refuse_seen(manifest, own, cfg.site)
    model_point = dict(model.operating_point)
    logits = predict_logits(model.net, dataset, device, cfg.batch_size).astype(np.float64)  # at the model's temperature
    probabilities = expit(logits)
    if cfg.labelled == 0:
        reference = reference_scores(cfg.ckpt_path, model, own, device, cfg.batch_size)
        point, rates, extra = label_free(probabilities, manifest, reference, model_point, cfg)
    else:
        point, rates, extra = labelled_cut(logits, manifest, model_point, rule, cfg)
    site_probabilities = at_temperature(logits, model_point["temperature"], point["temperature"])
    curve = ({} if manifest is None else
             how_many_films(probabilities, manifest.targets, patients(manifest), rule, cfg.curve, cfg.resamples, cfg.seed))
    record = profile_record(cfg, model, point, model_point, manifest, len(frame), rates, extra, curve, rule)
    profile = write_profile(output_dir / PROFILE_FILE, record)
    write_films(output_dir, frame, probabilities, site_probabilities, point, model_point, extra.get("labelled_rows"),
                extra.get("held_out"))
    figure(curve, record, output_dir / "how_many_films.png")
    card_of(cfg.ckpt_path, record, output_dir)
    print_site(record, profile)
    return record


def site_options(cfg: DictConfig) -> str:
    """The rule (youden, sens@X, spec@X: a fixed number chooses nothing on the site's films),
    after the site's films (`data` or `images`), `labelled` and `curve` are checked, each in one line."""
    labelled, curve = cfg.labelled, cfg.curve
    if (cfg.get("data") is None) == (not cfg.get("images")):
        raise ConfigError("give the site's films once: data=... (labelled: data=manifest data.path=<csv>, or a data "
                          "config such as data=synthetic_shift source=hospital_c) or images=<folder or glob> (no labels)")
    if cfg.get("images") and labelled != 0:
        raise ConfigError(f"images= are files without labels: give labelled=0 (label-free), not labelled={labelled}; a "
                          "cut from labelled films needs them in a manifest (data=manifest data.path=<csv>)")
    if labelled is not None and not (isinstance(labelled, int) and not isinstance(labelled, bool) and labelled >= 0):
        raise ConfigError(f"labelled={labelled}: give the films per class whose labels choose the cut (a whole number, "
                          "0 for none), or null for every film")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in curve or []):
        raise ConfigError(f"curve={list(curve) if curve is not None else curve}: give films per class, whole numbers >= 1")
    parsed = parse_threshold(cfg.rule)
    if not is_rule(parsed):
        raise ConfigError(f"rule={cfg.rule}: calibrate_site chooses a cut on the site's films; give a rule (youden, "
                          "sens@X or spec@X), not a number")
    return parsed


def site_films(cfg: DictConfig, run_cfg: DictConfig, input_spec: Any) -> tuple[Manifest, Any, pd.DataFrame]:
    """Every usable film of the site's data (`data=`, with the checkpoint's preprocessing and
    input spec; `source=` keeps one of its sources), and the rows left out (data.on_bad=skip)."""
    site_cfg = run_cfg.copy()
    site_cfg.data = OmegaConf.create(OmegaConf.to_container(cfg.data, resolve=False))
    datamodule = build_datamodule(site_cfg, input_spec)
    manifest, dataset = datamodule.films(cfg.source)
    counts = manifest.counts()
    if cfg.labelled != 0 and min(counts.values()) == 0:
        raise ConfigError(f"the site's films hold one class only ({counts}): a cut from labels needs films of both "
                          "(labelled=0 chooses one without them)")
    return manifest, dataset, datamodule.bad_rows


def site_files(cfg: DictConfig, run_cfg: DictConfig, input_spec: Any, own: Any,
               output_dir: Path) -> tuple[pd.DataFrame, ImageFiles]:
    """Unlabelled image files (`images=`, as predict.py takes them: unreadable ones to
    bad_rows.csv), refused in one line when any holds the bytes of a film of the model's train
    or val split. Files carry no patient ids: other films of those patients cannot be told apart."""
    prepare = file_images(*build_preprocessing(run_cfg))
    rows = readable_files(image_files(cfg.images), prepare.check, cfg.images, output_dir,
                          run_cfg.data.get("max_megapixels", MAX_MEGAPIXELS))
    seen = [str(p) for split in ("train", "val") for p in own.subset(split).frame["path"] if os.path.isfile(str(p))]
    shared = same_files([row["path"] for row in rows], seen)
    if shared:
        raise ConfigError(f"site {cfg.site}: {len(shared)} of its {len(rows)} files are films of the model's train or val "
                          f"split (e.g. {shared[0]}): a site's cut needs films the model never trained or was chosen on")
    log.warning("images=: files carry no patient ids, so only the files themselves were checked against the model's "
                "train and val splits, not other films of their patients")
    return pd.DataFrame({"path": [row["path"] for row in rows]}), ImageFiles(rows, prepare, input_spec)


def same_files(files: list[str], others: list[str]) -> list[str]:
    """The files whose bytes are those of one of `others` (a copy under another name too):
    sha256 compared where the sizes match, so most files are never read."""
    sizes: dict[int, list[str]] = {}
    for other in others:
        sizes.setdefault(os.path.getsize(other), []).append(other)
    digests: dict[str, set[str]] = {}

    def known(size: int) -> set[str]:
        if size not in digests:
            digests[size] = {file_digest(Path(other)) for other in sizes.get(size, [])}
        return digests[size]

    return [f for f in files if os.path.getsize(f) in sizes and file_digest(Path(f)) in known(os.path.getsize(f))]


def refuse_seen(manifest: Manifest, own: Any, site: str) -> None:
    """One line when the site's films share patients with the model's train or val split (a fold
    ensemble's: every development patient): their probabilities are those of films it learned."""
    in_train, in_val = shared_patients(manifest, own.subset("train"), own.subset("val"))
    if in_train or in_val:
        both = sorted(in_train | in_val)
        raise ConfigError(f"site {site}: {len(both)} of its {len(set(patients(manifest)))} patients are in the model's "
                          f"own data ({len(in_train)} in train, {len(in_val)} in val; e.g. {', '.join(both[:3])}): a "
                          "site's cut and rates need patients the model never trained or was chosen on; leave them "
                          "out of the site's manifest")


def patients(manifest: Manifest) -> np.ndarray:
    return manifest.frame["patient_id"].astype(str).to_numpy()


def at_temperature(logits: np.ndarray, before: float, after: float) -> np.ndarray:
    """The probabilities of logits at temperature `before`, taken to temperature `after`."""
    return expit(logits * before / after)


def rates(probabilities: np.ndarray, manifest: Manifest, rows: np.ndarray, cut: float, at: str, cfg: DictConfig) -> dict:
    """summarize() of `rows` at `cut`, with patient-bootstrap intervals, saying which cut it is."""
    targets, groups = manifest.targets[rows], patients(manifest)[rows]
    block = summarize(targets, probabilities[rows], cut)
    block["bootstrap_ci95"] = bootstrap_intervals(targets, probabilities[rows], groups, cut, cfg.bootstrap, cfg.seed)
    return {"at": at, **block}


def labelled_cut(logits: np.ndarray, manifest: Manifest, model_point: dict, rule: str, cfg: DictConfig):
    """The rule's cut (and with `calibrate` the temperature) on n films per class drawn by
    patient (every film with labelled=null), from the logits at the model's temperature; rates
    on those films and on the held-out rest, at the site's cut and at the model's own."""
    targets, ids, everything = manifest.targets, patients(manifest), np.arange(len(manifest))
    if cfg.labelled is None:
        chosen, held_out = everything, np.zeros(0, int)
    else:
        try:
            chosen, held_out = draw_labelled(targets, ids, cfg.labelled, np.random.default_rng(cfg.seed))
        except ValueError as error:
            raise ConfigError(f"labelled={cfg.labelled}: {error}") from None
    temperature = model_point["temperature"]
    point = operating_point_of(logits[chosen], targets[chosen], rule, cfg.calibrate, temperature, SITE)
    point.update(method="labelled", site=cfg.site)
    probabilities, site_p = expit(logits), at_temperature(logits, temperature, point["temperature"])
    chosen_on = "the site's labelled films"
    at_site = f"site cut ({describe_cut(point['threshold'], rule, chosen_on)})"
    at_model = model_cut_name(model_point)
    blocks = {"labelled": rates(site_p, manifest, chosen, point["threshold"], at_site + "; in-sample: optimistic", cfg)}
    if len(held_out):
        blocks["held_out_site_cut"] = rates(site_p, manifest, held_out, point["threshold"], at_site, cfg)
        blocks["held_out_model_cut"] = rates(probabilities, manifest, held_out, model_point["threshold"], at_model, cfg)
    blocks["all_model_cut"] = rates(probabilities, manifest, everything, model_point["threshold"], at_model, cfg)
    cuts = [choose_threshold(rule, site_p[chosen][r], targets[chosen][r])
            for r in patient_resamples(len(chosen), ids[chosen], cfg.resamples, cfg.seed)
            if len(set(targets[chosen][r])) == 2]
    extra = {"labelled_rows": chosen, "held_out": held_out,
             "cut_ci95": [float(np.percentile(cuts, 2.5)), float(np.percentile(cuts, 97.5))] if cuts else None}
    return point, blocks, extra


def model_cut_name(point: dict) -> str:
    """The model's own cut, and where it was chosen (val, pooled out-of-fold, the config)."""
    where = {"val": "the training validation split", "oof": "the pooled out-of-fold predictions"}.get(point.get("split"))
    rule = point.get("rule") if is_rule(point.get("rule", 0.5)) else None
    return f"model's own cut ({describe_cut(point['threshold'], rule, where)})"


def reference_scores(ckpt_path: str, model: Any, own: Any, device: Any, batch_size: int) -> dict[str, Any]:
    """The films the model's own cut was chosen on, scored by it: a fold ensemble's pooled
    out-of-fold predictions (oof_predictions.csv beside ensemble.json), else its val split."""
    listing = ensemble_file(ckpt_path)
    if listing is not None:
        if not (listing.parent / "oof_predictions.csv").is_file():
            raise ConfigError(f"labelled=0 matches the site to the films the ensemble's cut was chosen on, its pooled "
                              f"out-of-fold predictions; {listing.parent / 'oof_predictions.csv'} is missing")
        oof = pd.read_csv(listing.parent / "oof_predictions.csv")
        return {"name": "oof", "probabilities": oof["prob_covid"].to_numpy(np.float64),
                "targets": (oof["label"] == LABELS[1]).to_numpy().astype(int)}
    return {"name": "val", "probabilities": predict(model.net, own.dataset("val"), device, batch_size).astype(np.float64),
            "targets": own.subset("val").targets}


def label_free(probabilities: np.ndarray, manifest: Manifest | None, reference: dict, model_point: dict,
               cfg: DictConfig):
    """The model's own cut carried to the site without its labels (stats.site.matched_cut);
    the labels, where a manifest has them (None: unlabelled files), only report how it did."""
    trained = float(reference["probabilities"].mean())
    em = em_prevalence(probabilities, trained)
    share = float(reference["targets"].mean())
    prevalence = {None: share, "em": em}.get(cfg.prevalence, cfg.prevalence)
    if not isinstance(prevalence, (int, float)) or not 0 <= prevalence <= 1:
        raise ConfigError(f"prevalence={cfg.prevalence}: give the site's share of COVID-19 films in [0, 1], em, or "
                          "null (the reference films' share)")
    matched = matched_cut(probabilities, reference["probabilities"], reference["targets"], model_point["threshold"],
                          float(prevalence))
    point = {"rule": model_point.get("rule"), "threshold": matched["threshold"], "temperature": model_point["temperature"],
             "split": SITE, "n": len(probabilities), "method": "label_free", "site": cfg.site}
    everything = np.arange(len(probabilities))
    at_site = f"site cut ({describe_cut(matched['threshold'])}, label-free)"
    blocks = {} if manifest is None else {
        "all_site_cut": rates(probabilities, manifest, everything, matched["threshold"], at_site, cfg),
        "all_model_cut": rates(probabilities, manifest, everything, model_point["threshold"], model_cut_name(model_point),
                               cfg)}
    extra = {"label_free": {**matched, "method": "match", "assumes": LABEL_FREE_ASSUMES, "reference": reference["name"],
                            "reference_n": len(reference["targets"]),
                            "prevalence_from": "given" if isinstance(cfg.prevalence, (int, float)) else
                            ("em" if cfg.prevalence == "em" else f"the {reference['name']} films' share"),
                            "em_prevalence": em, "trained_prevalence": trained,
                            "site_prevalence_from_labels": None if manifest is None else float(manifest.targets.mean())}}
    return point, blocks, extra


def profile_record(cfg: DictConfig, model: Any, point: dict, model_point: dict, manifest: Manifest | None, n: int,
                   blocks: dict, extra: dict, curve: dict, rule: str) -> dict[str, Any]:
    """The profile's fields (models.site_profile checks them when writing)."""
    labelled = manifest is not None
    data = OmegaConf.to_container(cfg.data, resolve=False).get("path") if labelled else None
    record = {
        "site": str(cfg.site),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {"checkpoint": str(cfg.ckpt_path), "file": str(model_file(cfg.ckpt_path)),
                  "sha256": model_digest(cfg.ckpt_path), "members": member_count(model.net),
                  "operating_point": {k: v for k, v in model_point.items() if k != "per_fold"}},
        "operating_point": point,
        "films": {"data": data, "images": cfg.get("images"), "source": cfg.source, "n": n,
                  "n_per_class": manifest.counts() if labelled else None,
                  "patients": int(len(set(patients(manifest)))) if labelled else None,
                  "labelled_per_class": cfg.labelled, "seed": cfg.seed},
        "rates": blocks,
        "cut_ci95": extra.get("cut_ci95"),
        "how_many_films": {"rule": rule, "resamples": cfg.resamples, "on": "the site's other films",
                           "per_n": {str(n): {k: spread(v) for k, v in c.items()} for n, c in curve.items()}},
        "run": provenance(),
    }
    if "label_free" in extra:
        record["label_free"] = extra["label_free"]
    return record


def write_films(output_dir: Path, frame: pd.DataFrame, probabilities: np.ndarray, site_p: np.ndarray, point: dict,
                model_point: dict, labelled: np.ndarray | None, held_out: np.ndarray | None) -> None:
    """site_films.csv: every film, its role (labelled, held_out, unused, unlabelled), probability and both calls; held_out.csv: the
    held-out films as a manifest (absolute paths) for evaluate.py's `external=`, where they are files."""
    frame = frame.copy()
    role = np.full(len(frame), "unlabelled" if point["method"] == "label_free" else "unused", dtype=object)
    if labelled is not None:
        role[labelled] = "labelled"  # "unused": another film of a labelled film's patient
    if held_out is not None and len(held_out):
        role[held_out] = "held_out"
    frame["role"] = role
    frame["prob_covid"] = probabilities
    frame["prob_covid_site"] = site_p
    frame["call_site_cut"] = np.where(site_p >= point["threshold"], LABELS[1], LABELS[0])
    frame["call_model_cut"] = np.where(probabilities >= model_point["threshold"], LABELS[1], LABELS[0])
    write_text_atomically(output_dir / "site_films.csv", frame.to_csv(index=False))
    if held_out is not None and len(held_out) and all(os.path.isfile(p) for p in frame["path"].iloc[held_out]):
        columns = [c for c in ("path", "label", "patient_id", "source", "view") if c in frame]
        held = frame.iloc[held_out][columns].assign(path=lambda f: f["path"].map(os.path.abspath))
        write_text_atomically(output_dir / "held_out.csv", held.to_csv(index=False))


def figure(curve: dict, record: dict, path: Path) -> None:
    """how_many_films.png, with the model's own cut (and a label-free cut) on all the site's films."""
    if not curve:
        log.warning("no how-many-films curve: %s", "the files have no labels" if record["films"]["images"] else
                    "the site has too few patients of a class for any n asked")
        return
    blocks = record["rates"]
    lines = {f"model's own cut {record['model']['operating_point']['threshold']:.3g} (all films)": blocks["all_model_cut"]}
    if "all_site_cut" in blocks:
        lines[f"label-free cut {record['operating_point']['threshold']:.3g} (all films)"] = blocks["all_site_cut"]
    how = record["how_many_films"]
    how_many_films_figure(curve, lines, path, f"site {record['site']}: {how['rule']} cut from n + n labelled films, "
                          f"{how['resamples']} draws by patient ({record['films']['n']} films)")


def card_of(ckpt_path: str, record: dict, output_dir: Path) -> None:
    """model_card.md: the training run's card (beside its checkpoint or ensemble.json) with the
    site's section; none where the checkpoint travels without its run dir."""
    run_dir = model_run_dir(ckpt_path)
    card = run_dir / "model_card.md"
    if not card.is_file():
        log.info("no model_card.md in %s (the checkpoint's run dir): the site's card is not written", run_dir)
        return
    write_text_atomically(output_dir / "model_card.md", site_card(card.read_text(), record))
