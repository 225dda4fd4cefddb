"""What the loggers get: the flat config, the final metrics, the optimised metric; a resumed
run's metrics.csv keeps its earlier rows; Lightning's advertisement stays out of the log."""
import logging
import math

import pytest
import pytorch_lightning as pl
from omegaconf import OmegaConf

from covid_tl.errors import ConfigError
from covid_tl.results import Results
from covid_tl.tracking import final_metrics, flat_config, metric_value, quiet_lightning

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
