"""Whole runs compared with each other: determinism, resume, DDP (slow, run in CI)."""

import pytest

from conftest import TINY, run_script
from covid_tl.reporting.results import read_results

pytestmark = pytest.mark.slow

BASE = [o for o in TINY if not o.startswith("trainer.max_epochs")] + ["logger=none", "bootstrap=50"]
METRICS = ("sensitivity", "specificity", "accuracy", "auroc", "confusion_matrix", "n")


def train(run_dir, *overrides):
    proc = run_script("train.py", f"hydra.run.dir={run_dir}", *BASE, *overrides)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return read_results(run_dir) if (run_dir / "results.json").exists() else None


def metrics(results):
    return {split: {m: results.sets[split][m] for m in METRICS} for split in ("train", "val", "test")}


def test_two_deterministic_runs_give_identical_metrics(tmp_path):
    a = train(tmp_path / "a", "trainer.max_epochs=2", "trainer.deterministic=true")
    b = train(tmp_path / "b", "trainer.max_epochs=2", "trainer.deterministic=true")
    assert metrics(a) == metrics(b)


def test_run_stopped_after_its_first_epoch_resumes_to_the_same_result(tmp_path):
    whole = train(tmp_path / "whole", "trainer.max_epochs=3")
    train(tmp_path / "cut", "trainer.max_epochs=1")  # stops after epoch 1, leaving last.ckpt
    resumed = train(tmp_path / "cut", "trainer.max_epochs=3", "ckpt_path=last")
    assert resumed.run["epochs_trained"] == whole.run["epochs_trained"] == 3
    assert metrics(resumed) == metrics(whole)


def test_ddp_on_two_cpu_processes_gives_the_same_result_keys(tmp_path):
    single = train(tmp_path / "single", "trainer.max_epochs=1")
    ddp = train(tmp_path / "ddp", "trainer.max_epochs=1", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2")
    assert ddp.to_dict().keys() == single.to_dict().keys() and ddp.run.keys() == single.run.keys()
    assert all(ddp.sets[s].keys() == single.sets[s].keys() for s in ("train", "val", "test"))
    assert [ddp.sets[s]["n"] for s in ("train", "val", "test")] == [single.sets[s]["n"] for s in ("train", "val", "test")]


def test_local_parallel_sweep_through_joblib(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_script("train.py", "-m", "hydra/launcher=local", f"hydra.sweep.dir={sweep}", "seed=1,2",
                      *BASE, "trainer.max_epochs=1")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert sorted(p.parent.name for p in sweep.glob("*/results.json")) == ["0", "1"]


def test_slurm_launcher_config_composes():
    from hydra import compose, initialize_config_dir

    from conftest import ROOT

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.gpus_per_node == 1


def test_frozen_fast_path_gives_the_same_results_as_training_on_images(tmp_path):
    common = ["trainer.max_epochs=3", "freeze=all"]
    fast = run_script("train.py", f"hydra.run.dir={tmp_path / 'fast'}", *BASE, *common, "fast_frozen=true")
    slow = run_script("train.py", f"hydra.run.dir={tmp_path / 'slow'}", *BASE, *common, "fast_frozen=false")
    assert fast.returncode == slow.returncode == 0, fast.stderr[-3000:] + slow.stderr[-3000:]
    assert "frozen fast path: features of" in fast.stdout + fast.stderr
    assert "frozen fast path" not in slow.stdout + slow.stderr
    a = read_results(tmp_path / "fast")
    b = read_results(tmp_path / "slow")
    for split in ("train", "val", "test"):
        assert a.sets[split]["confusion_matrix"] == b.sets[split]["confusion_matrix"]
        assert a.sets[split]["auroc"] == pytest.approx(b.sets[split]["auroc"], abs=1e-3)
