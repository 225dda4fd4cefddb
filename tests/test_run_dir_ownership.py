"""A run dir is its run's own: a run writes into no other run's files, and a second run into a
used dir stops before it writes anything, Hydra's .hydra/ included (issue #18)."""
import hashlib
import os
from pathlib import Path

import cv2
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

import covid_tl.tasks.predict as predict_task
from conftest import ROOT, TINY, run_script
from covid_tl.data.synthetic.source import SyntheticSource
from covid_tl.runtime.run_guard import LOCK_NAME, run_lock
from covid_tl.reporting.results import read_results

pytestmark = pytest.mark.slow

BASE = [o for o in TINY if not o.startswith("trainer.max_epochs")] + ["bootstrap=20", "logger=none",
                                                                      "callbacks=minimal"]


def digest(folder: Path) -> dict[str, str]:
    """Every entry under `folder` by relative path: a file's sha256, a link's target, a dir."""
    def what(path: Path) -> str:
        if path.is_symlink():
            return f"link to {os.readlink(path)}"
        return "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()

    return {str(p.relative_to(folder)): what(p) for p in sorted(folder.rglob("*"))}


def one_line(proc) -> str:
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def run_a(tmp_path_factory):
    """(run dir, results.json) of a finished 2-epoch run at threshold 0.5, shared by the tests here."""
    run_dir = tmp_path_factory.mktemp("a") / "run"
    proc = run_script("train.py", f"hydra.run.dir={run_dir}", *BASE, "trainer.max_epochs=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, read_results(run_dir)


@pytest.fixture(scope="module")
def films(tmp_path_factory):
    """6 phantom films as PNG files."""
    folder = tmp_path_factory.mktemp("films")
    for i, row in enumerate(SyntheticSource(n_patients=4, image_size=48, seed=3).frame().head(6).to_dict("records")):
        assert cv2.imwrite(str(folder / f"film{i}.png"), SyntheticSource(n_patients=4, image_size=48, seed=3).load_image(row))
    return folder


@pytest.mark.parametrize("max_epochs", [2, 3], ids=["no_further_epoch", "one_further_epoch"])
def test_resuming_another_runs_checkpoint_writes_only_into_the_new_run_dir(run_a, tmp_path, max_epochs):
    """The tester's case: resume run A's last.ckpt into run B with another threshold rule."""
    a, results_a = run_a
    before = digest(a)
    b = tmp_path / "b"
    proc = run_script("train.py", f"hydra.run.dir={b}", *BASE, f"trainer.max_epochs={max_epochs}",
                      f"ckpt_path={a}/checkpoints/last.ckpt", "threshold=youden")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert digest(a) == before  # run A's files, byte for byte
    resumed = read_results(b)
    run = resumed.run
    assert run["epochs_trained"] == max_epochs
    best = b / run["best_checkpoint"]
    assert not Path(run["best_checkpoint"]).is_absolute() and best.is_file()
    assert best.resolve().parent == (b / "checkpoints").resolve() and (b / "checkpoints" / "last.ckpt").is_file()
    # B's operating point lives in B's best file; A's best still carries A's own (0.5).
    assert resumed.operating_point["rule"] == "youden"
    assert torch.load(best, weights_only=True)["operating_point"] == resumed.operating_point
    a_best = torch.load(a / results_a.run["best_checkpoint"], weights_only=True)
    assert a_best["operating_point"] == results_a.operating_point and a_best["operating_point"]["rule"] == 0.5
    # Every checkpoint of B names only B's files: a later resume of B cannot reach A either.
    for path in (b / "checkpoints").glob("*.ckpt"):
        for state in torch.load(path, weights_only=True)["callbacks"].values():
            if "best_model_path" in state:
                named = [state["best_model_path"], state["last_model_path"], *state["best_k_models"]]
                assert state["dirpath"] == str((b / "checkpoints").resolve())
                assert all(Path(p).parent == (b / "checkpoints").resolve() for p in named if p)
    # The best is still chosen among all epochs, A's included (val/loss, lower is better).
    assert run["best_score"] <= results_a.run["best_score"]
    if max_epochs == 2:
        assert (run["best_epoch"], run["best_score"]) == (results_a.run["best_epoch"], results_a.run["best_score"])


def test_a_second_training_into_a_used_run_dir_is_refused_and_changes_nothing(run_a):
    a, _ = run_a
    before = digest(a)
    proc = run_script("train.py", f"hydra.run.dir={a}", *BASE, "trainer.max_epochs=1", "seed=7")
    assert one_line(proc) == (f"error: {a} already holds a run (.hydra, checkpoints, confusion_matrix.png, ...); "
                              "choose another hydra.run.dir or resume the run in it with ckpt_path=last")
    assert digest(a) == before  # .hydra/config.yaml included


def test_a_run_refused_by_the_lock_leaves_the_live_runs_files_untouched(run_a):
    """ckpt_path=last would be let into the used dir; the live run's lock stops it before Hydra
    saves its config over the live run's."""
    a, _ = run_a
    before = digest(a)
    with run_lock(a):  # the live run
        proc = run_script("train.py", f"hydra.run.dir={a}", *BASE, "trainer.max_epochs=3", "ckpt_path=last", "seed=7")
        assert one_line(proc) == (f"error: another run (pid {os.getpid()}) is writing into {a}; wait for it to end "
                                  "or choose another hydra.run.dir")
    assert digest(a) == before


def test_a_sweep_into_a_used_sweep_dir_is_refused_before_hydra_writes(tmp_path):
    sweep = tmp_path / "sweep"
    (sweep / "0").mkdir(parents=True)
    (sweep / "0" / "results.json").write_text("{}\n")
    before = digest(sweep)
    proc = run_script("train.py", "-m", f"hydra.sweep.dir={sweep}", "seed=1,2", *BASE)
    assert one_line(proc) == (f"error: {sweep} already holds a run (0); choose another hydra.sweep.dir or resume the "
                              "run in it with ckpt_path=last")
    assert digest(sweep) == before  # no multirun.yaml, no job dir


def test_a_second_predict_into_the_same_dir_is_refused_and_the_first_predictions_stay(run_a, films, tmp_path):
    a, results_a = run_a
    ckpt = a / results_a.run["best_checkpoint"]
    out = tmp_path / "predict"
    first = run_script("predict.py", f"ckpt_path={ckpt}", f"images={films}/*", "num_workers=0", f"hydra.run.dir={out}")
    assert first.returncode == 0, first.stderr[-3000:]
    assert len(pd.read_csv(out / "predictions.csv")) == 6 and not (out / LOCK_NAME).exists()
    before = digest(out)
    again = run_script("predict.py", f"ckpt_path={ckpt}", f"images={films}/film0.png", "num_workers=0",
                       f"hydra.run.dir={out}")
    assert one_line(again) == f"error: {out} already holds a run (.hydra, predict.log, predictions.csv); choose another hydra.run.dir"
    # The same dir as output_dir (Hydra's own run dir elsewhere) is refused by that key.
    elsewhere = tmp_path / "hydra"
    again = run_script("predict.py", f"ckpt_path={ckpt}", f"images={films}/film0.png", "num_workers=0",
                       f"output_dir={out}", f"hydra.run.dir={elsewhere}")
    assert one_line(again) == f"error: {out} already holds a run (.hydra, predict.log, predictions.csv); choose another output_dir"
    assert digest(out) == before and not elsewhere.exists()


def test_an_interrupted_predict_leaves_no_file_that_looks_complete(run_a, films, tmp_path, monkeypatch):
    """Stopped after its first batch of 2, predict keeps those rows in predictions.csv.partial
    and writes no predictions.csv; a finished run renames the file."""
    a, results_a = run_a
    settings = {"ckpt_path": str(a / results_a.run["best_checkpoint"]), "images": f"{films}/*",
                "num_workers": 0, "batch_size": 2}
    cfg = OmegaConf.merge(OmegaConf.load(ROOT / "conf" / "predict.yaml"), settings)
    batches = []
    whole = predict_task.probabilities_of

    def stopped_after_one_batch(*args, **kwargs):
        if batches:
            raise KeyboardInterrupt
        batches.append(1)
        return whole(*args, **kwargs)

    monkeypatch.setattr(predict_task, "probabilities_of", stopped_after_one_batch)
    with pytest.raises(KeyboardInterrupt):
        predict_task.predict(cfg, tmp_path / "cut")
    assert not (tmp_path / "cut" / "predictions.csv").exists()
    assert len(pd.read_csv(tmp_path / "cut" / "predictions.csv.partial")) == 2
    monkeypatch.setattr(predict_task, "probabilities_of", whole)
    assert len(predict_task.predict(cfg, tmp_path / "whole")) == 6
    assert sorted(p.name for p in (tmp_path / "whole").glob("predictions*")) == ["predictions.csv"]
