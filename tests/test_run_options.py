"""The lightning-hydra-template groups end to end: logger=, callbacks=, debug=, hparams_search=,
and a misspelled key."""

import pandas as pd
import pytest
import torch
import yaml

from conftest import TINY, run_script
from covid_tl.reporting.results import read_results
from covid_tl.runtime.tracking import run_artifacts


def test_misspelled_key_fails_with_one_did_you_mean_line():
    proc = run_script("train.py", "trainer.max_epoch=3")
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == ["error: unknown key 'trainer.max_epoch'; did you mean 'trainer.max_epochs'?"]


@pytest.mark.slow
def test_every_logger_at_once_offline_with_minimal_callbacks_and_lr_monitor(train_run, tmp_path):
    proc, run_dir, results = train_run(*TINY, "logger=many", "callbacks=[minimal,lr_monitor]", "optimizer.lr=0.002", "bootstrap=50")
    assert not (run_dir / "cams").exists() and (run_dir / "checkpoints" / "last.ckpt").exists()  # minimal: no Grad-CAM
    # MLflow: a file store in the run dir, the flat config as params, the final metrics.
    [mlflow_run] = [p for p in (run_dir / "mlruns").glob("*/*") if (p / "params").is_dir()]
    assert (mlflow_run / "params" / "trainer.max_epochs").read_text() == "1"
    assert (mlflow_run / "params" / "optimizer.lr").read_text() == "0.002"
    final_auroc = float((mlflow_run / "metrics" / "results" / "test" / "auroc").read_text().split()[1])
    assert final_auroc == pytest.approx(results.sets["test"]["auroc"])
    assert "status: 3" in (mlflow_run / "meta.yaml").read_text()  # FINISHED
    artifacts = mlflow_run / "artifacts"  # the run's record, card and figures travel with it
    assert (artifacts / "results.json").read_text() == (run_dir / "results.json").read_text()
    kept = sorted(p.relative_to(artifacts).as_posix() for p in artifacts.rglob("*") if p.is_file())
    assert kept == [p.relative_to(run_dir).as_posix() for p in run_artifacts(run_dir)]
    assert {"model_card.md", "roc.png", "confusion_matrix.png", "reliability.png"} <= set(kept)
    # W&B: an offline run folder (a login attempt would have failed without network).
    assert len(list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))) == 1
    assert len(list((run_dir / "wandb").glob("offline-run-*/files/results.json"))) == 1
    assert "anonymous" not in proc.stderr and "not found. Creating it" not in proc.stderr + proc.stdout
    # CSV and the learning rate monitor: one lr value per epoch, the optimizer's.
    logged = pd.read_csv(run_dir / "metrics.csv")
    assert logged["lr-Adam/all"].dropna().tolist() == [0.002]
    assert yaml.safe_load((run_dir / "hparams.yaml").read_text())["data.batch_size"] == 16


@pytest.mark.slow
def test_debug_fdr_runs_one_batch_of_each_split(train_run):
    proc, run_dir, results = train_run(*TINY, "debug=fdr", "bootstrap=50")
    assert "fast_dev_run" in proc.stdout
    # Lightning keeps no best checkpoint in fast_dev_run; the one it leaves has trained one step
    # of the 3 batches an epoch of this data holds.
    assert results.run["best_checkpoint"] is None
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 1
    assert results.sets["train"]["n"] == 34 and not (run_dir / "metrics.csv").exists()


@pytest.mark.slow
def test_optuna_sweep_of_two_trials_returns_the_best_validation_auroc(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_script("train.py", *TINY, "hparams_search=optuna", "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={sweep}",
                      "logger=none", "callbacks=minimal", "bootstrap=20")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "setup plugin alembic" not in proc.stdout + proc.stderr
    trials = []
    for trial in ("0", "1"):
        overrides = dict(o.split("=", 1) for o in yaml.safe_load((sweep / trial / ".hydra" / "overrides.yaml").read_text()))
        auroc = read_results(sweep / trial).sets["val"]["auroc"]
        assert 1e-5 <= float(overrides["optimizer.lr"]) <= 1e-2 and 0 <= float(overrides["backbone.head.dropout"]) <= 0.5
        trials.append((auroc, overrides))
    best_auroc, best_overrides = max(trials, key=lambda t: t[0])
    summary = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert summary["best_value"] == pytest.approx(best_auroc)
    assert summary["best_params"]["optimizer.lr"] == pytest.approx(float(best_overrides["optimizer.lr"]))
