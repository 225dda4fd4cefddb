"""One run at a time in a run dir, and a resumed run's metrics.csv keeps its earlier epochs."""
import os
import re
from pathlib import Path

import pandas as pd
import pytest
from conftest import TINY, run_script

from covid_tl.runtime.csv_logger import ResumableCSVLogger
from covid_tl.runtime.run_guard import LOCK_NAME, RunDirBusyError, run_lock


def test_a_held_run_dir_refuses_a_second_run_and_is_free_after(tmp_path):
    with run_lock(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
        with pytest.raises(RunDirBusyError) as excinfo:
            with run_lock(tmp_path):
                pass
        message = str(excinfo.value)
        assert message == f"another run (pid {os.getpid()}) is writing into {tmp_path}; wait for it to end or choose another hydra.run.dir"
    assert not (tmp_path / LOCK_NAME).exists()
    with run_lock(tmp_path):  # free again
        pass


def test_a_lock_file_left_by_a_killed_run_is_taken_over(tmp_path):
    (tmp_path / LOCK_NAME).write_text("999999999\n")  # no process holds its flock any more
    with run_lock(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    assert not (tmp_path / LOCK_NAME).exists()


def test_the_csv_logger_keeps_the_epochs_before_the_one_it_resumes_at(tmp_path):
    """Before the kill: epochs 0 and 1 complete, epoch 2 logged but not checkpointed.
    Resumed at epoch 2 (the checkpoint after epoch 1): rows of epochs 0 and 1 stay, the
    cut epoch 2 row goes, the new epoch 2 row follows."""
    pd.DataFrame({"epoch": [0, 1, 2], "step": [2, 5, 8], "train/loss": [0.9, 0.7, 0.6]}).to_csv(
        tmp_path / "metrics.csv", index=False)
    logger = ResumableCSVLogger(save_dir=tmp_path, name="", version="")
    logger.log_metrics({"train/loss": 0.5, "val/auroc": 0.8, "epoch": 2}, step=8)
    logger.save()
    logged = pd.read_csv(tmp_path / "metrics.csv")
    assert logged["epoch"].tolist() == [0, 1, 2]
    assert logged["train/loss"].tolist() == [0.9, 0.7, 0.5]
    assert logged["val/auroc"].isna().tolist() == [True, True, False]


def test_a_fresh_run_into_an_old_run_dir_starts_a_fresh_metrics_csv(tmp_path):
    pd.DataFrame({"epoch": [0, 1], "step": [2, 5], "train/loss": [0.9, 0.7]}).to_csv(tmp_path / "metrics.csv", index=False)
    logger = ResumableCSVLogger(save_dir=tmp_path, name="", version="")
    logger.log_metrics({"train/loss": 0.4, "epoch": 0}, step=2)
    logger.save()
    assert pd.read_csv(tmp_path / "metrics.csv")["train/loss"].tolist() == [0.4]


BASE = [o for o in TINY if not o.startswith("trainer.max_epochs")] + ["bootstrap=20"]


@pytest.mark.slow
def test_train_py_into_a_held_run_dir_stops_with_one_line(tmp_path):
    with run_lock(tmp_path):
        proc = run_script("train.py", f"hydra.run.dir={tmp_path}", *BASE, "trainer.max_epochs=1")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: another run (pid {os.getpid()}) is writing into {tmp_path}; wait for it to end or choose another hydra.run.dir"]
    assert not (tmp_path / "splits.csv").exists()


@pytest.mark.slow
def test_a_resumed_run_keeps_the_metrics_of_its_earlier_epochs(tmp_path):
    run_dir = tmp_path / "run"
    for overrides in (["trainer.max_epochs=2"], ["trainer.max_epochs=3", "ckpt_path=last"]):
        proc = run_script("train.py", f"hydra.run.dir={run_dir}", *BASE, *overrides)
        assert proc.returncode == 0, proc.stderr[-3000:]
        if len(overrides) == 1:
            before = pd.read_csv(run_dir / "metrics.csv")
    logged = pd.read_csv(run_dir / "metrics.csv")
    assert logged.dropna(subset=["train/loss"])["epoch"].tolist() == [0, 1, 2]
    assert logged.dropna(subset=["val/loss"])["epoch"].tolist() == [0, 1, 2]
    assert logged.dropna(subset=["test/loss"])["epoch"].tolist() == [3]  # the earlier run's test row is gone
    earlier = before[before["epoch"] < 2].dropna(subset=["train/loss"])["train/loss"].tolist()
    assert logged[logged["epoch"] < 2].dropna(subset=["train/loss"])["train/loss"].tolist() == earlier
    assert not (run_dir / LOCK_NAME).exists()


def test_what_counts_as_an_earlier_run(tmp_path):
    """Hydra's own files alone are what a command refused by a config check leaves: the
    corrected command may use the dir. Anything of a run's own makes it used."""
    from covid_tl.runtime.run_guard import earlier_files

    assert earlier_files(tmp_path / "new") == []
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("seed: abc\n")
    (tmp_path / "train.log").write_text("")
    (tmp_path / "run.lock").write_text("123\n")
    assert earlier_files(tmp_path) == []
    (tmp_path / "splits.csv").write_text("path\n")
    assert earlier_files(tmp_path) == [".hydra", "splits.csv", "train.log"]


@pytest.mark.parametrize("config_name, run_dir, resumable", [
    ("train", "outputs", True), ("segment", "outputs", True), ("evaluate", "outputs/evaluate", False),
    ("explain", "outputs/explain", False), ("predict", "outputs/predict", False), ("export", "outputs/export", False)])
def test_every_script_takes_its_run_dirs_and_guard_from_conf_hydra(config_name, run_dir, resumable):
    """One definition (conf/hydra/): a script's own config holds no `hydra:` block; training
    runs go to outputs/<date>/<time> and may resume, the others to outputs/<script>/<date>/<time>;
    every sweep to multirun/<date>/<time>/<n>, in the directory the command was started from."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    conf = Path(__file__).resolve().parents[1] / "conf"
    assert "hydra" not in OmegaConf.load(conf / f"{config_name}.yaml")
    with initialize_config_dir(str(conf), version_base="1.3"):
        hydra = compose(config_name, return_hydra_config=True).hydra
    assert re.fullmatch(rf"{run_dir}/\d{{4}}-\d\d-\d\d/\d\d-\d\d-\d\d", hydra.run.dir)
    assert re.fullmatch(r"multirun/\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d", hydra.sweep.dir)
    assert OmegaConf.to_container(hydra.sweep)["subdir"] == "${hydra.job.num}" and hydra.job.chdir is False
    assert OmegaConf.to_container(hydra.callbacks) == {
        "run_dir": {"_target_": "covid_tl.runtime.run_guard.RunDirGuard", "resumable": resumable}}
