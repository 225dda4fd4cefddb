"""train.py, evaluate.py and explain.py end to end, through subprocesses as a user runs them."""
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import ROOT, TINY, composed, run_script
from covid_tl.core.errors import ConfigError
from covid_tl.reporting.results import read_results
from covid_tl.tasks.evaluate import evaluate
from covid_tl.tasks.explain import explain

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One TINY training run, read (never written) by the tests of this file:
    (completed process, run dir, results)."""
    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    proc = run_script("train.py", f"hydra.run.dir={run_dir}", *TINY)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc, run_dir, read_results(run_dir)


def test_train_writes_results_splits_checkpoints_and_logs(tiny_run):
    proc, run_dir, results = tiny_run
    for split in ("train", "val", "test"):
        r = results.sets[split]
        assert {"sensitivity", "specificity", "accuracy", "auroc", "confusion_matrix", "n"} <= set(r)
        assert r["confusion_matrix"]["labels"] == ["no_finding", "covid"]
        assert sum(map(sum, r["confusion_matrix"]["matrix"])) == r["n"] > 0
    splits = pd.read_csv(run_dir / "splits.csv", dtype={"patient_id": str})
    assert {"path", "label", "patient_id", "source", "split"} <= set(splits.columns)
    assert splits.groupby("patient_id")["split"].nunique().max() == 1
    assert (splits["split"].value_counts()[["train", "val", "test"]] == [results.sets[s]["n"] for s in ("train", "val", "test")]).all()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    # One epoch: best and last are the same epoch, one file and a link to it.
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["epoch000.ckpt", "last.ckpt"]
    assert os.readlink(run_dir / "checkpoints" / "last.ckpt") == "epoch000.ckpt"
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    # TensorBoard's HPARAMS tab: the flat config beside the final metrics of results.json.
    assert yaml.safe_load((run_dir / "tensorboard" / "hparams.yaml").read_text())["trainer.max_epochs"] == 1
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert events.Scalars("results/test/auroc")[-1].value == pytest.approx(results.sets["test"]["auroc"])
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
    # Quiet: none of the warnings a user cannot act on, and a model summary with real FLOPs.
    for noise in ("exists and is not empty", "litlogger", "log_every_n_steps", "LeafSpec"):
        assert noise not in proc.stderr + proc.stdout, noise
    assert "Total FLOPs: 0" not in proc.stdout and "Total FLOPs:" in proc.stdout
    # The logged test metrics (torchmetrics, in metrics.csv) agree with results.json (numpy).
    logged = pd.read_csv(run_dir / "metrics.csv")
    test_row = logged.dropna(subset=["test/accuracy"]).iloc[-1]
    for name in ("accuracy", "sensitivity", "specificity"):
        assert test_row[f"test/{name}"] == pytest.approx(results.sets["test"][name], abs=1e-6)
    assert "sensitivity" in proc.stdout and "specificity" in proc.stdout and str(run_dir) in proc.stdout
    # What a report needs to stand alone: best epoch (one epoch: 0), wall time, the code.
    run = results.run
    assert run["best_epoch"] == 0 and run["best_monitor"] == "val/loss" and run["best_score"] > 0
    assert 0 < run["wall_time_s"] < 300 and run["versions"]["torch"] and run["versions"]["covid-tl"]
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:  # this checkout is a git repository
        assert run["git"]["commit"] == head.stdout.strip()


def test_unknown_backbone_fails_with_one_clear_line():
    proc = run_script("train.py", "backbone=nope")
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown backbone 'nope'; valid backbone options: ")
    assert "simple_cnn" in lines[0] and "simple_fc" in lines[0]


def test_simple_cnn_learns_the_opacity_signal(train_run):
    """Real learning: no shortcut, clear opacities, a minute of CPU at most."""
    _, _, results = train_run(
        "backbone=simple_cnn", "data.sources.synthetic.n_patients=200", "data.sources.synthetic.opacity=[0.5,1.0]",
        "trainer.max_epochs=6", "logger=none",
    )
    assert results.sets["test"]["accuracy"] >= 0.9, results.sets["test"]
    # No logger, no metrics.csv: the CAM scores come from the Grad-CAM callback itself.
    last = results.cam[-1]
    assert last["epoch"] == 5 and "last" in last["which"] and 0 <= last["lung_fraction"] <= 1


def test_evaluate_reproduces_the_training_run_and_takes_external_data(tiny_run, tmp_path):
    _, run_dir, results = tiny_run
    best = run_dir / results.run["best_checkpoint"]
    out = tmp_path / "eval"
    proc = run_script("evaluate.py", f"ckpt_path={best}", "splits=[train,val,test]", f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    evaluated = read_results(out)
    for split in ("train", "val", "test"):
        assert evaluated.sets[split]["accuracy"] == pytest.approx(results.sets[split]["accuracy"])
        assert evaluated.sets[split]["confusion_matrix"] == results.sets[split]["confusion_matrix"]
    for name in ("predictions.csv", "confusion_matrix.png", "roc.png"):
        assert (out / name).is_file()
    # External data: a manifest of files from two sources, evaluated in full, broken down by source.
    import cv2
    import numpy as np

    rows = []
    for i in range(8):
        path = tmp_path / f"ext{i}.png"
        cv2.imwrite(str(path), np.random.default_rng(i).integers(0, 255, (50, 60), dtype=np.uint8))
        rows.append(f"{path.name},{'covid' if i % 2 else 'no_finding'},p{i},{'site_a' if i < 4 else 'site_b'}")
    (tmp_path / "ext.csv").write_text("path,label,patient_id,source\n" + "\n".join(rows) + "\n")
    out = tmp_path / "eval_ext"  # the task in this process: the script's side is tested above
    evaluate(composed("evaluate", f"ckpt_path={best}", f"external=[{tmp_path / 'ext.csv'}]", "bootstrap=200",
                      run_dir=str(out)), out)
    evaluated = read_results(out)
    external = evaluated.sets["external:ext.csv"]
    assert external["n"] == 8 and set(external["per_source"]) == {"site_a", "site_b"}
    assert all(len(external["bootstrap_ci95"][m]) == 2 for m in ("sensitivity", "specificity", "accuracy"))
    assert set(evaluated.sets) == {"test", "external:ext.csv"} and evaluated.run["backbone"] == "simple_cnn"


def test_evaluate_rejects_a_file_that_is_not_a_checkpoint(tmp_path):
    bogus = tmp_path / "model.ckpt"
    bogus.write_text("not a checkpoint")
    proc = run_script("evaluate.py", f"ckpt_path={bogus}", f"hydra.run.dir={tmp_path / 'out'}")
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {bogus} is not a readable PyTorch checkpoint")
    with pytest.raises(ConfigError, match="no checkpoint file at"):  # the same one line, from the task
        evaluate(composed("evaluate", f"ckpt_path={tmp_path / 'missing.ckpt'}", run_dir=str(tmp_path / "out2")), tmp_path / "out2")


def test_explain_writes_overlays_grid_and_table_for_a_split_and_for_files(tiny_run, tmp_path):
    _, run_dir, _ = tiny_run
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert sorted(p.name for p in (run_dir / "cams").glob("epoch_*.png")) == ["epoch_000.png"]  # the callback
    out = tmp_path / "explain"
    proc = run_script("explain.py", f"ckpt_path={ckpt}", "n=4", "cam.method=gradcam++", "cam.overlay=mask", f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pd.read_csv(out / "cams.csv")
    assert len(table) == 4 and set(table["label"]) == {"covid", "no_finding"}
    assert (out / "grid.png").is_file() and all((out / p).is_file() for p in table["overlay"])
    import cv2
    import numpy as np

    assert cv2.imread(str(out / table["overlay"][0])).shape == (320, 320, 3)  # conf/cam's tile
    # Files of any size, outside the data: RGB, 16-bit.

    files = tmp_path / "files"
    files.mkdir()
    cv2.imwrite(str(files / "a.png"), np.random.default_rng(0).integers(0, 255, (90, 70, 3), dtype=np.uint8))
    cv2.imwrite(str(files / "b.png"), np.random.default_rng(1).integers(0, 65535, (40, 120), dtype=np.uint16))
    out = tmp_path / "explain_files"
    proc = run_script("explain.py", f"ckpt_path={ckpt}", f"images={files}/*.png", f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pd.read_csv(out / "cams.csv")
    assert list(table["path"].map(lambda p: p.split("/")[-1])) == ["a.png", "b.png"] and table["label"].isna().all()
    with pytest.raises(ConfigError, match="matches no file"):
        explain(composed("explain", f"ckpt_path={ckpt}", f"images={files}/*.jpg", run_dir=f"{out}_jpg"), Path(f"{out}_jpg"))


def test_bad_input_stops_train_py_with_one_message_before_training(tmp_path):
    (tmp_path / "m.csv").write_text("path,label,patient_id\nnowhere.png,covid,1\n")
    proc = run_script("train.py", "data=manifest", f"data.path={tmp_path / 'm.csv'}", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode != 0
    assert "error: 1 of 1 listed images cannot be used" in proc.stderr and "nowhere.png" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "run" / "checkpoints").exists()
