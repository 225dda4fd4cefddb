"""What the loggers get: the flat config, the final metrics, the optimised metric; a resumed
run's metrics.csv keeps its earlier rows; Lightning's advertisement stays out of the log."""
import logging
import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
from omegaconf import OmegaConf

from covid_tl.core.errors import ConfigError
from covid_tl.reporting.results import Results
from covid_tl.runtime.tracking import final_metrics, flat_config, metric_value, quiet_lightning

RESULTS = Results(sets={
    "val": {"sensitivity": 1.0, "specificity": 0.5, "accuracy": 0.75, "auroc": 0.875, "n": 4, "per_source": {}},
    "test": {"sensitivity": 0.0, "specificity": 1.0, "accuracy": 0.5, "auroc": float("nan")},
}, run={"backbone": "simple_cnn", "seed": 1})


def test_flat_config_uses_the_names_of_overrides():
    cfg = OmegaConf.create({"trainer": {"max_epochs": 3, "devices": [0, 1]}, "seed": 7, "lr": "${seed}", "empty": {}})
    assert flat_config(cfg) == {"trainer.max_epochs": 3, "trainer.devices": [0, 1], "seed": 7, "lr": 7, "empty": {}}


def test_final_metrics_are_the_defined_rates_of_each_split():
    assert final_metrics(RESULTS) == {
        "results/val/sensitivity": 1.0, "results/val/specificity": 0.5, "results/val/accuracy": 0.75,
        "results/val/auroc": 0.875, "results/test/sensitivity": 0.0, "results/test/specificity": 1.0,
        "results/test/accuracy": 0.5,
    }


def test_metric_value_reads_a_sets_metric():
    assert metric_value(RESULTS, "val/auroc") == 0.875
    assert math.isnan(metric_value(RESULTS, "test/auroc"))
    assert metric_value(Results(sets={"val": {"auroc": 0.6}}, kind="findings"), "val/auroc") == 0.6
    with pytest.raises(ConfigError, match="'val/per_source' is not in results.json"):
        metric_value(RESULTS, "val/per_source")
    with pytest.raises(ConfigError, match="'val/aucroc' is not in results.json; e.g. val/sensitivity"):
        metric_value(RESULTS, "val/aucroc")


def test_lightning_advertisement_is_dropped_and_other_lines_kept(caplog):
    quiet_lightning()
    quiet_lightning()  # idempotent: one filter
    with caplog.at_level(logging.INFO, logger="pytorch_lightning.utilities.rank_zero"):
        pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, accelerator="cpu")
    messages = [r.getMessage() for r in caplog.records]
    assert not any("litlogger" in m for m in messages)
    assert any("GPU available" in m for m in messages)
    assert len(logging.getLogger("pytorch_lightning.utilities.rank_zero").filters) == 1


def fake_run_dir(folder):
    """The files a finished run leaves that trackers keep, and two they do not."""
    for name in ("results.json", "model_card.md", "roc.png", "confusion_matrix.png", "reliability.png",
                 "cams/epoch_000.png", "cams/epoch_001.png", "splits.csv", "checkpoints/last.ckpt"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(name)
    return ["cams/epoch_000.png", "cams/epoch_001.png", "confusion_matrix.png", "model_card.md", "reliability.png",
            "results.json", "roc.png"]


def test_mlflow_keeps_the_runs_record_card_and_figures(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from pytorch_lightning.loggers import MLFlowLogger

    from covid_tl.runtime.tracking import log_results

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    expected = fake_run_dir(tmp_path)
    logger = MLFlowLogger(experiment_name="covid-tl", tracking_uri=f"file:{tmp_path / 'mlruns'}")
    log_results([logger], OmegaConf.create({"seed": 1}), RESULTS, 3, tmp_path)
    artifacts = tmp_path / "mlruns" / logger.experiment_id / logger.run_id / "artifacts"
    assert sorted(p.relative_to(artifacts).as_posix() for p in artifacts.rglob("*") if p.is_file()) == expected
    assert (artifacts / "cams" / "epoch_001.png").read_text() == "cams/epoch_001.png"


def test_wandb_offline_keeps_the_runs_record_card_and_figures(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is not installed (pip install wandb): its artifacts are untested")
    from covid_tl.runtime.tracking import QuietWandbLogger, log_results

    monkeypatch.setenv("WANDB_SILENT", "true")
    expected = fake_run_dir(tmp_path)
    logger = QuietWandbLogger(project="covid-tl", save_dir=str(tmp_path), offline=True)
    log_results([logger], OmegaConf.create({"seed": 1}), RESULTS, 3, tmp_path)
    [files] = (tmp_path / "wandb").glob("offline-run-*/files")
    kept = sorted(p.relative_to(files).as_posix() for p in files.rglob("*") if p.is_file() and p.name in
                  {Path(e).name for e in expected})
    assert kept == expected
    assert (files / "cams" / "epoch_001.png").read_text() == "cams/epoch_001.png"
