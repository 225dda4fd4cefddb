"""One training run from a composed config: fit, test the best checkpoint, write results."""
from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from covid_tl.audit.films import AuditSet, audit_sets
from covid_tl.audit.run import audit_model
from covid_tl.cam.options import build_cam
from covid_tl.cam.sets import given_masks, mark_detector
from covid_tl.engine.build import build_datamodule, build_trainer, pick_device
from covid_tl.engine.checkpoint_sets import data_sets
from covid_tl.engine.ensemble import (choose_epoch, epoch_checkpoints, fold_curves, member_config, member_dir,
                                      oof_manifest, out_of_fold, pooled_point)
from covid_tl.cam.callback import GradCAMCallback
from covid_tl.reporting.console import print_data_summary, print_results
from covid_tl.data.frozen_features import FeatureDataModule, fast_path_blocker
from covid_tl.data.validate import BadInputError
from covid_tl.engine.model_card import write_model_card
from covid_tl.models.checkpoint import load_run, saved_epoch, store_operating_point
from covid_tl.models.resume import adopt_checkpoint
from covid_tl.models.classifier import build_classifier
from covid_tl.models.module import CovidClassifier
from covid_tl.stats.metrics import summarize
from covid_tl.stats.operating_point import fixed_threshold
from covid_tl.core.provenance import provenance
from covid_tl.core.files import write_text_atomically
from covid_tl.core.formatting import number
from covid_tl.core.labels import LABELS
from covid_tl.data.summary import data_summary
from covid_tl.engine.evaluation import assess, checkpoint_data, choose_operating_point, evaluate_sets, shift_summary
from covid_tl.models.ensemble import ENSEMBLE_FILE, EnsembleFile, Member, file_digest, write_ensemble
from covid_tl.reporting.plots import ensemble_figure
from covid_tl.reporting.results import Results, cam_rows, write_results
from covid_tl.runtime.run_checks import instantiate_checked
from covid_tl.runtime.tracking import log_results

log = logging.getLogger(__name__)

# Lightning's pytree helper trips a deprecation in newer torch on every step; harmless.
warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated")
# Epoch metrics come from torchmetrics, already gathered across DDP processes (see module.py).
warnings.filterwarnings("ignore", message=".*sync_dist=True.*when logging on epoch level")
# Rendering phantoms in the main process is the intended default on small machines.
warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def train(cfg: DictConfig, run_dir: Path) -> Results | None:
    """Train as `cfg` says, writing everything into `run_dir`; returns results.json's record (None on
    the processes of a multi-GPU run that do not write it). `cv=k`: a fold ensemble (train_ensemble)."""
    if cfg.get("cv"):
        return train_ensemble(cfg, run_dir)
    run_started = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.seed, workers=True)
    net = build_classifier(cfg.backbone)
    trainable, total = instantiate(cfg.freeze)(net)
    log.info("backbone %s: %s of %s parameters trainable", net.backbone_name, f"{trainable:,}", f"{total:,}")

    datamodule = build_datamodule(cfg, net.input_spec)
    try:
        datamodule.setup("fit")
    except BadInputError as error:  # the full list goes where the user looks for the run's files
        raise (error.written_to(run_dir) if rank_zero_only.rank == 0 else error) from None
    summary = datamodule.write_data_files(run_dir) if rank_zero_only.rank == 0 else {}  # under DDP one process writes
    if summary:
        print_data_summary(summary, run_dir)
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    config = OmegaConf.to_container(cfg, resolve=True)
    model: CovidClassifier = instantiate(cfg.model)(
        net,
        optimizer=instantiate(cfg.optimizer),
        scheduler=scheduler,
        threshold=fixed_threshold(cfg.threshold),  # a rule: each epoch is called at its val cut (the module reads config's threshold), the chosen one after training
        config=config,
    )
    trainer = build_trainer(cfg)
    started = time.perf_counter()
    fit_data = datamodule
    if cfg.fast_frozen:
        blocker = fast_path_blocker(net, datamodule)
        if blocker is None:  # features cached beside the images, under the image cache's key
            fit_data = FeatureDataModule(datamodule, net.features, pick_device(cfg.trainer.accelerator))
            model.head_only = True
        else:
            log.info("frozen fast path off: %s", blocker)
    # Explicit: torch's default for weights_only can be flipped by an environment variable.
    trainer.fit(model, datamodule=fit_data, ckpt_path=resume_from(cfg, run_dir, trainer),
                weights_only=not cfg.trust_checkpoint)
    log.info("training took %.1f s (features included)", time.perf_counter() - started)

    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    point = operating_point(model, best, datamodule, cfg)  # on every process: the test below uses it
    if len(datamodule.subset("test")):
        trainer.test(model, datamodule=fit_data, ckpt_path=best or None, verbose=False, weights_only=True)
    model.head_only = False
    if not trainer.is_global_zero:
        return None
    if best and not Path(best).resolve().is_relative_to(run_dir.resolve()):  # e.g. Lightning's own ModelCheckpoint
        best = str(adopt_checkpoint(Path(best), checkpoint_dir(trainer, run_dir), weights_only=True))
    if best:
        store_operating_point(best, point)  # into this run's own file, never another run's
    # Final figures on one process, with the best weights, every image once (no DDP padding).
    final = load_run(best)[1] if best else model
    sets = {s: (datamodule.subset(s), datamodule.dataset(s)) for s in datamodule.eval_sets if len(datamodule.subset(s))}
    sets = evaluate_sets(final.net, sets, run_dir, final.threshold, cfg.bootstrap, cfg.seed,
                         pick_device(cfg.trainer.accelerator))
    report_lung_fallbacks(datamodule)
    cam = next((c for c in trainer.callbacks if isinstance(c, GradCAMCallback)), None)
    record = best_epoch(trainer, best)
    results = Results(sets=sets, operating_point=point, shift=shift_summary(sets, *datamodule.held_out),
                      cam=cam_rows(cam.scores if cam else {}, record["best_epoch"]), run={
        "backbone": net.backbone_name,
        "best_checkpoint": str(Path(best).relative_to(run_dir)) if best and Path(best).is_relative_to(run_dir) else best or None,
        **record,
        "epochs_trained": trainer.current_epoch,
        "parameters": {"trainable": trainable, "total": total},
        "seed": cfg.seed,
        "wall_time_s": round(time.perf_counter() - run_started, 1),
        **provenance(),
    })
    write_results(run_dir, results)
    audit = shortcut_audit(final, datamodule, cfg, run_dir, best) if cfg.audit else None  # never loses the run
    write_model_card(run_dir, results, config, summary, net.input_spec, getattr(datamodule.prepared.preprocess, "segment", None),
                     audit)
    log_results(trainer.loggers, cfg, results, trainer.global_step, run_dir)
    print_results(results, run_dir)
    return results


def train_ensemble(cfg: DictConfig, run_dir: Path) -> Results:
    """cv=k: k members of one recipe, member i validating on fold i of the development patients
    (the test split held out first, as without folds), each a whole train.py run under
    members/fold_i; the epoch, and the operating point at it, chosen on all members' pooled
    out-of-fold predictions; the ensemble (mean probability) written as ensemble.json, tested on
    the test split, audited with `audit`. With ckpt_path=last (the run dir of one that stopped),
    a member whose results.json exists is kept and an unfinished one resumes from its last.ckpt."""
    started = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)
    folders = train_members(cfg, run_dir)
    device = pick_device(cfg.trainer.accelerator)
    oof = out_of_fold(folders, device)
    epoch, curve = choose_epoch(oof)
    chosen = oof[oof.epoch == epoch].reset_index(drop=True)
    point = pooled_point(chosen, cfg.threshold, cfg.calibrate)
    log.info("epoch %d chosen on the pooled out-of-fold AUROC of %d films (%s); operating point %s -> %.4f "
             "(each fold alone: %s)", epoch, len(chosen), number(curve[epoch]), point["rule"], point["threshold"],
             ", ".join(f"{f['threshold']:.3f}" for f in point["per_fold"]))
    chosen_files = [epoch_checkpoints(folder)[epoch] for folder in folders]
    members = [Member(path, file_digest(path), fold, epoch) for fold, path in enumerate(chosen_files)]
    selection = {"epoch": epoch, "on": "pooled out-of-fold AUROC", "pooled_auroc_by_epoch": curve,
                 "fold_auroc_by_epoch": fold_curves(oof)}
    write_ensemble(run_dir / ENSEMBLE_FILE, EnsembleFile(members, point, selection))
    run_cfg, model = load_run(run_dir / ENSEMBLE_FILE)  # the ensemble as every script reads it
    datamodule = checkpoint_data(run_cfg, model.net.input_spec)
    summary = write_fold_splits(datamodule, chosen, run_dir)
    sets = evaluate_sets(model.net, data_sets(datamodule, None), run_dir, model.threshold, cfg.bootstrap, cfg.seed,
                         device)
    sets = {"oof": pooled_assessment(chosen, point, run_dir, cfg), **sets}
    fold_cut_test_rates(point, run_dir)
    ensemble_figure(curve, selection["fold_auroc_by_epoch"], epoch, point, run_dir / "ensemble.png")
    results = Results(sets=sets, operating_point=point, shift=shift_summary(sets, *datamodule.held_out, "oof"), run={
        "backbone": model.net.backbone_name, "best_checkpoint": ENSEMBLE_FILE, "members": len(members),
        "ensemble": {"members": [m.record(run_dir) for m in members], "epoch": epoch,
                     "pooled_oof_auroc": curve[epoch], "file": ENSEMBLE_FILE},
        "seed": cfg.seed, "wall_time_s": round(time.perf_counter() - started, 1), **provenance()})
    write_results(run_dir, results)
    audit = shortcut_audit(model, datamodule, cfg, run_dir, str(run_dir / ENSEMBLE_FILE)) if cfg.audit else None
    write_model_card(run_dir, results, OmegaConf.to_container(cfg, resolve=True), summary, model.net.input_spec,
                     getattr(datamodule.prepared.preprocess, "segment", None), audit)
    print_results(results, run_dir)
    return results


def train_members(cfg: DictConfig, run_dir: Path) -> list[Path]:
    """Each member's run (member_config) into members/fold_i; a finished one (its results.json
    written) is kept under ckpt_path=last, an unfinished one resumes from its last.ckpt."""
    k = int(cfg.cv)
    folders = [member_dir(run_dir, fold) for fold in range(k)]
    for fold, folder in enumerate(folders):
        if cfg.get("ckpt_path") == "last" and (folder / "results.json").is_file():
            log.info("member %d of %d: %s is complete, kept", fold + 1, k, folder)
            continue
        log.info("member %d of %d: trained without, and validated on, fold %d of the development patients",
                 fold + 1, k, fold)
        member = member_config(cfg, fold, folder)
        if cfg.get("ckpt_path") == "last" and (folder / "checkpoints" / "last.ckpt").exists():
            member.ckpt_path = "last"
        train(member, folder)
    return folders


def pooled_assessment(chosen: pd.DataFrame, point: dict[str, Any], run_dir: Path, cfg: DictConfig) -> dict[str, Any]:
    """The pooled out-of-fold films' figures at the pooled operating point (optimistic: the cut
    was chosen on them), and oof_predictions.csv."""
    probabilities = 1 / (1 + np.exp(-chosen["logit"].to_numpy(np.float64) / point["temperature"]))
    frame = chosen.drop(columns=["target"]).assign(prob_covid=probabilities)
    write_text_atomically(run_dir / "oof_predictions.csv", frame.to_csv(index=False))
    return assess(oof_manifest(chosen), probabilities, point["threshold"], cfg.bootstrap, cfg.seed)


def fold_cut_test_rates(point: dict[str, Any], run_dir: Path) -> None:
    """Into each `per_fold` entry: the ensemble's test sensitivity and specificity had that fold's
    own cut been used (from predictions.csv): what a cut from one fold's films does."""
    predictions = pd.read_csv(run_dir / "predictions.csv") if (run_dir / "predictions.csv").is_file() else None
    if predictions is None or "test" not in set(predictions["set"]):
        return
    test = predictions[predictions["set"] == "test"]
    targets, p = (test["label"] == LABELS[1]).to_numpy(), test["prob_covid"].to_numpy()
    for entry in point["per_fold"]:
        rates = summarize(targets, p, entry["threshold"])
        entry["test"] = {"sensitivity": rates["sensitivity"], "specificity": rates["specificity"]}


def write_fold_splits(datamodule: Any, chosen: pd.DataFrame, run_dir: Path) -> dict[str, Any]:
    """splits.csv and data_summary.json of the ensemble: the test split and extra sets as the
    members had them, every development film as `dev` with the fold it was held out in."""
    frame = datamodule.splits_frame()
    fold_of = dict(zip(chosen["path"], chosen["fold"]))
    dev = frame["split"].isin(["train", "val"])
    frame.loc[dev, "split"] = "dev"
    frame["fold"] = frame["path"].map(fold_of).astype("Int64")
    frame.to_csv(run_dir / "splits.csv", index=False)
    summary = data_summary(frame, skipped=len(datamodule.bad_rows))
    print_data_summary(summary, run_dir)  # and data_summary.json
    return summary


def shortcut_audit(model: CovidClassifier, datamodule: Any, cfg: DictConfig, run_dir: Path, best: str) -> dict[str, Any]:
    """audit=true: the shortcut audit (audit.py) of the final model on the test split and any
    extra set, marks cut from the train split, into run_dir/audit; a failure is a warning and
    a line in the model card, never the run (its results are written already)."""
    masks = given_masks(datamodule.load_lung_mask, datamodule.sources)
    sets = audit_sets(data_sets(datamodule, None), masks)  # the test split and any extra set, as evaluate.py's
    train = AuditSet("train", datamodule.subset("train"), datamodule.prepared, masks)
    about = {"subject": Path(best).name if best else "the last weights", "checkpoint": best or None,
             "backbone": model.net.backbone_name, "run": provenance()}
    detector = mark_detector(OmegaConf.to_container(cfg.preprocessing, resolve=True))
    try:
        return audit_model(model.net, sets, train, model.threshold, instantiate_checked(cfg.shortcuts),
                           build_cam(cfg.cam), pick_device(cfg.trainer.accelerator), run_dir / "audit", about,
                           cfg.bootstrap, cfg.seed, detector)
    except Exception as error:  # noqa: BLE001 - the trained model and its results are written: keep them
        log.warning("the shortcut audit failed (%s: %s); the run's other files are complete: python audit.py "
                    "ckpt_path=%s runs it again", type(error).__name__, error, best or "<checkpoint>")
        return {"failed": f"{type(error).__name__}: {error}"}


def resume_from(cfg: DictConfig, run_dir: Path, trainer: pl.Trainer) -> str | None:
    """The checkpoint `trainer.fit` resumes from: `ckpt_path` as given when it is `last` or in
    this run dir; a checkpoint of another run is first adopted into this run's checkpoints."""
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path is None or str(ckpt_path) == "last":
        return ckpt_path
    source = Path(str(ckpt_path)).expanduser()
    if source.resolve().is_relative_to(run_dir.resolve()):
        return str(source)
    folder = checkpoint_dir(trainer, run_dir)
    if not trainer.is_global_zero:  # DDP: rank zero adopted it before Lightning started this process
        return str(folder / source.name)
    log.info("resuming from %s: its checkpoints are copied into %s", source, folder)
    return str(adopt_checkpoint(source, folder, weights_only=not cfg.trust_checkpoint))


def checkpoint_dir(trainer: pl.Trainer, run_dir: Path) -> Path:
    """Where this run's ModelCheckpoint writes (run_dir/checkpoints when it does not say yet)."""
    callback = trainer.checkpoint_callback
    return Path(callback.dirpath) if callback is not None and callback.dirpath else run_dir / "checkpoints"


def operating_point(model: CovidClassifier, best: str, datamodule, cfg: DictConfig) -> dict[str, Any]:
    """The threshold (and temperature, with `calibrate`) chosen on the validation split with the
    best weights, which the model then uses; they go into the best checkpoint and results.json."""
    if best:  # the weights trainer.test and the final figures use
        model.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["state_dict"])
    val = (datamodule.subset("val"), datamodule.dataset("val"))
    point = choose_operating_point(model.net, val, cfg.threshold, cfg.calibrate, pick_device(cfg.trainer.accelerator))
    model.net.temperature = point["temperature"]
    model.use_threshold(point["threshold"])
    if point["split"]:
        log.info("operating point on %s (%d images): threshold=%s -> %.4f, temperature %.3f", point["split"],
                 point["n"], point["rule"], point["threshold"], point["temperature"])
    return point


def report_lung_fallbacks(datamodule: Any) -> None:
    """preprocessing=lungs: one warning line for the run with the count of refused lung masks."""
    summary = getattr(datamodule.prepared.preprocess, "fallback_summary", lambda: None)()
    if summary:
        log.warning(summary)


def best_epoch(trainer: pl.Trainer, best: str) -> dict[str, Any]:
    """The epoch (0-based, as in metrics.csv and checkpoint names) and monitored value of the
    best checkpoint; the epoch is read from the file (memory-mapped: no weights are loaded)."""
    callback, epoch = trainer.checkpoint_callback, None
    try:
        epoch = saved_epoch(best) if best else None
    except Exception as error:  # a record, not a reason to lose the results written next
        log.warning("best epoch not recorded: %s cannot be read (%s)", best, error)
    score = getattr(callback, "best_model_score", None)
    return {"best_epoch": epoch, "best_monitor": getattr(callback, "monitor", None),
            "best_score": float(score) if score is not None else None}
