"""The shortcut audit (audit.py, train.py audit=true) on phantoms whose answers are known: a
model and a data set whose label lives only in the lungs pass; planted marks are flagged (here
for mode=data, test_shortcut_finding.py for a trained model's transplant); an external hospital
with its own imaging chain is told apart by the source probe; bad input gives one line."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import TINY, composed, run_script
from covid_tl.audit import verdicts
from covid_tl.data.synthetic.source import SyntheticSource
from covid_tl.reporting.audit_table import audit_lines
from covid_tl.tasks.audit import audit

pytestmark = pytest.mark.slow

PHANTOMS = ["data.sources.synthetic.n_patients=120", "data.sources.synthetic.image_size=48"]
CLEAN = [*PHANTOMS, "backbone.input_size=48", "trainer.max_epochs=3", "logger=none", "callbacks.grad_cam=null",
         "bootstrap=200"]
#: hospital_b of data=synthetic_shift: dark, soft, low resolution, a "B" burned in
DARK_CHAIN = {"exposure": [0.9, 0.95], "gamma": [1.3, 1.4], "window": [0.0, 1.0], "downscale": [0.5, 0.5],
              "blur": [0.01, 0.01], "noise": [0.0, 0.0], "text": "B", "text_corner": "bottom_right"}


def rows(record: dict) -> dict[str, dict]:
    return {(t["test"], t.get("metric")): t for t in record["tests"] if "skipped" not in t}


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    """A small CNN trained on phantoms with no shortcut (the label is the lungs' opacity), audited
    by train.py audit=true: its run dir."""
    run_dir = tmp_path_factory.mktemp("clean") / "run"
    proc = run_script("train.py", f"hydra.run.dir={run_dir}", *CLEAN, "audit=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def best(run_dir: Path) -> Path:
    return run_dir / json.loads((run_dir / "results.json").read_text())["run"]["best_checkpoint"]


def test_a_model_that_reads_only_the_lungs_passes_and_the_card_says_so(clean):
    record = json.loads((clean / "audit" / "audit.json").read_text())
    found = rows(record)
    removed, only = found[("lungs removed", "AUROC")], found[("lungs only", "AUROC")]
    assert abs(removed["value"] - 0.5) < 0.1 and removed["verdict"] == verdicts.NO_SIGN, removed
    assert only["value"] > 0.85 and only["verdict"] == "reads the lungs", only
    assert record["lungs"]["masks"] == {"test": "given"}  # phantoms carry every film's lung mask
    card = (clean / "model_card.md").read_text()
    assert "## Shortcut audit" in card and "\n".join(audit_lines(record)) in card
    # The films as is are the films as evaluated: the audit's probabilities are predictions.csv's.
    films = pd.read_csv(clean / "audit" / "audit_films.csv")
    predictions = pd.read_csv(clean / "predictions.csv").query("set == 'test'")
    assert len(films) == len(predictions) == removed["n"]
    assert np.allclose(films.set_index("path")["p_as_is"], predictions.set_index("path")["prob_covid"], atol=1e-5)


def test_one_source_and_one_view_per_label_are_each_said_in_one_line(clean):
    record = json.loads((clean / "audit" / "audit.json").read_text())
    left = {t["test"]: t["skipped"] for t in record["tests"] if "skipped" in t}
    assert left["source probe (covid)"].startswith("needs two sources of covid films") and "synthetic:" in left[
        "source probe (covid)"]
    assert left["view probe (no_finding)"].startswith("needs two views of no_finding films")


def test_data_mode_flags_planted_marks_and_passes_a_label_that_lives_in_the_lungs(tmp_path):
    found = {}
    for name, p_covid in (("clean", 0.0), ("marked", 0.9)):
        out = tmp_path / name
        cfg = composed("audit", "mode=data", "data=synthetic", "backbone=simple_cnn", "backbone.weights=none",
                       "backbone.input_size=48", *PHANTOMS, f"data.sources.synthetic.shortcut.p_covid={p_covid}",
                       "data.sources.synthetic.shortcut.kinds=[text]", "data.sources.synthetic.shortcut.positions=[corner]",
                       "bootstrap=200", "shortcuts.examples=1", run_dir=str(out))
        found[name] = rows(audit(cfg, out))
        assert (out / "audit_examples.png").is_file() and (out / "audit.md").is_file()
    clean, marked = (found[n][("label probe, lungs removed", "AUROC")] for n in ("clean", "marked"))
    assert abs(clean["value"] - 0.5) < 0.1 and clean["verdict"] == verdicts.NO_SIGN, clean
    assert marked["value"] > 0.75 and marked["verdict"] == verdicts.SHORTCUT, marked
    whole = found["clean"][("label probe, whole films", "AUROC")]
    assert whole["value"] > 0.9 and whole["n"] == clean["n"]  # the same films, lungs kept: the label is there
    # After preprocessing=lungs the crop box and the equalisation come from the lungs: the same clean
    # phantoms give their label away without them (0.93 by hand), and the audit says so rather than "shortcut".
    out = tmp_path / "lung_field"
    cfg = composed("audit", "mode=data", "data=synthetic", "preprocessing=lungs", "backbone=simple_cnn",
                   "backbone.weights=none", "backbone.input_size=48", *PHANTOMS, "bootstrap=50", "shortcuts.examples=0",
                   run_dir=str(out))
    leaky = rows(audit(cfg, out))[("label probe, lungs removed", "AUROC")]
    assert leaky["value"] > 0.8 and leaky["verdict"] == verdicts.UNCLEAR and "upper bound" in leaky["caveat"], leaky


def phantom_hospital(folder: Path, n_patients: int = 24) -> Path:
    """Phantoms of another hospital (its own patients, DARK_CHAIN) written as PNGs with their
    lung masks: a manifest CSV with a lung_mask column, as evaluate's external sets take."""
    source = SyntheticSource(n_patients=n_patients, images_per_patient=(1, 1), image_size=48, seed=11,
                             name="hospital_b", chain=DARK_CHAIN)
    records = []
    for row in source.frame().to_dict("records"):
        phantom = source.render(int(row["index"]))
        image, mask = folder / f"{row['index']:03d}.png", folder / f"{row['index']:03d}_mask.png"
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(image), phantom.image)
        cv2.imwrite(str(mask), phantom.lung_mask.astype(np.uint8) * 255)
        records.append({"path": image.name, "label": row["label"], "patient_id": row["patient_id"],
                        "source": "hospital_b", "view": "PA", "lung_mask": mask.name})
    pd.DataFrame(records).to_csv(folder / "manifest.csv", index=False)
    return folder / "manifest.csv"


def test_the_source_probe_tells_an_external_hospital_apart(clean, tmp_path):
    external = phantom_hospital(tmp_path / "hospital_b")
    out = tmp_path / "audit"
    record = audit(composed("audit", f"ckpt_path={best(clean)}", f"external=[{external}]", "bootstrap=200",
                            "shortcuts.cams=false", "shortcuts.probe_min_images=8", run_dir=str(out)), out)
    probe = rows(record)[("source probe (no_finding)", "AUROC")]
    name = "external:manifest.csv"  # one external set: named by its file name alone
    assert set(probe["groups"]) == {"synthetic (test)", f"hospital_b ({name})"}
    assert probe["value"] > 0.9 and probe["verdict"] == verdicts.SHORTCUT, probe
    assert record["sets"][name]["n"] == len(pd.read_csv(external)) and record["lungs"]["masks"][name] == "given"
    films = pd.read_csv(out / "audit_films.csv")
    assert set(films["set"]) == {"test", name}
    skipped = {t["test"]: t["skipped"] for t in record["tests"] if "skipped" in t}
    assert skipped["view probe (covid)"].endswith("the audited films have PA: 30")  # one view, whichever set


def test_bad_input_gives_one_line_and_loses_nothing(clean, tmp_path):
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    for args, message in [
        ([f"ckpt_path={tmp_path / 'absent.ckpt'}"], f"error: no checkpoint file at {tmp_path / 'absent.ckpt'}"),
        ([f"ckpt_path={tmp_path / 'notes.ckpt'}"], "error: "),
        ([], "error: mode=model audits a trained model: give ckpt_path="),
        (["mode=data"], "error: mode=data audits a data set: give data=<option>"),
        (["shortcuts.fill=zero"], "error: shortcuts.fill='zero' does not fit AuditOptions's fill"),
    ]:
        proc = run_script("audit.py", f"hydra.run.dir={tmp_path / 'run'}", *args)
        assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1].startswith(message), (args, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr
    # An external set with a missing file and an unknown label: named, listed in bad_rows.csv;
    # data.on_bad=skip audits the rest.
    external = phantom_hospital(tmp_path / "hospital_b", n_patients=12)
    frame = pd.read_csv(external)
    frame.loc[0, "path"], frame.loc[1, "label"] = "gone.png", "pneumonia"
    frame.to_csv(external, index=False)
    run = tmp_path / "bad"
    proc = run_script("audit.py", f"hydra.run.dir={run}", f"ckpt_path={best(clean)}", f"external=[{external}]",
                      "shortcuts.cams=false", "bootstrap=50")
    assert proc.returncode == 1 and "error: " in proc.stderr and "bad_rows.csv" in proc.stderr, proc.stderr[-2000:]
    assert len(pd.read_csv(run / "bad_rows.csv")) == 2
    skip = tmp_path / "skip"
    proc = run_script("audit.py", f"hydra.run.dir={skip}", f"ckpt_path={best(clean)}", f"external=[{external}]",
                      "shortcuts.cams=false", "bootstrap=50", "data.on_bad=skip")
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((skip / "audit.json").read_text())
    assert record["sets"]["external:manifest.csv"]["n"] == len(frame) - 2
    assert len(pd.read_csv(skip / "bad_rows.csv")) == 2


def test_an_audit_that_fails_after_training_loses_nothing(tmp_path):
    """audit=true with a segmenter file that is not there: the run's files are all written, the
    card says what failed, the exit status is 0 (the model trained; the audit can be run again)."""
    run_dir = tmp_path / "run"
    proc = run_script("train.py", f"hydra.run.dir={run_dir}", *TINY, "logger=none", "callbacks.grad_cam=null",
                      "audit=true", "shortcuts.masks=segmenter", f"shortcuts.segmenter={tmp_path / 'absent.pt'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "the shortcut audit failed" in proc.stdout + proc.stderr
    card = (run_dir / "model_card.md").read_text()
    assert "`audit=true` failed (" in card and (run_dir / "results.json").is_file() and (run_dir / "predictions.csv").is_file()


@pytest.mark.parametrize("preprocessing", ["lungs", "crop_inpaint"])
def test_mode_data_composes_every_preprocessing_in_a_fresh_interpreter(preprocessing):
    """Their structured configs are registered by the script itself (a fork would inherit the
    test process's registry and hide a script that forgot to)."""
    proc = run_script("audit.py", "mode=data", "data=synthetic", f"preprocessing={preprocessing}", "--cfg", "job",
                      fresh=True)
    assert proc.returncode == 0 and "preprocessing:" in proc.stdout, proc.stderr[-2000:]
