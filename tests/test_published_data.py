"""The study's data as users hold it (../shared/data/published-mini): Cohen's and NIH's published
layouts at original size, with a listed Cohen file absent and a partial NIH download.

One training run of the study's setup at original size with the Grad-CAM callback on, then
evaluate.py and explain.py on its checkpoint; and the on_bad=raise run that must name the
absent Cohen image and nothing of the NIH images that were never downloaded.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from conftest import PUBLISHED_MINI as PUBLISHED
from conftest import composed, needs_published_mini, run_script
from covid_tl.reporting.results import read_results
from covid_tl.tasks.evaluate import evaluate
from covid_tl.tasks.explain import explain

ABSENT = "covid-19-pneumonia-14-PA.png"

pytestmark = [pytest.mark.slow, needs_published_mini]

STUDY = [
    "data=cohen_nih", f"data.sources.cohen.root={PUBLISHED / 'cohen'}", f"data.sources.nih.root={PUBLISHED / 'nih'}",
    "preprocessing=crop_inpaint", "backbone=simple_cnn", "backbone.input_size=64", "trainer.max_epochs=1",
    "data.batch_size=8",
]


def test_on_bad_raise_names_the_absent_cohen_image_and_no_nih_image(tmp_path):
    proc = run_script("train.py", f"hydra.run.dir={tmp_path / 'run'}", *STUDY,
                      f"preprocessing.cache_dir={tmp_path / 'cache'}")
    assert proc.returncode != 0
    assert ABSENT in proc.stderr
    assert "Traceback" not in proc.stderr
    assert ".png" not in proc.stderr.replace(ABSENT, "")  # no NIH file named: a partial download is normal
    assert len(proc.stderr.splitlines()) < 30
    bad = pd.read_csv(tmp_path / "run" / "bad_rows.csv")
    assert bad["path"].map(lambda p: Path(p).name).tolist() == [ABSENT]


def test_study_setup_trains_evaluates_and_explains_at_original_size(tmp_path):
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    proc = run_script("train.py", f"hydra.run.dir={run_dir}", *STUDY, "data.on_bad=skip",
                      f"preprocessing.cache_dir={cache}", timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "Traceback" not in proc.stderr
    results = read_results(run_dir)
    assert results.sets["test"]["n"] > 0 and results.sets["extra_no_finding"]["n"] == 7  # 30 NIH images, 23 balanced
    assert (run_dir / "cams" / "epoch_000.png").is_file()
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert metrics["cam/artifact_fraction"].dropna().between(0, 1).all()
    checkpoint = run_dir / "checkpoints" / "last.ckpt"

    # evaluate and explain in this process (their scripts are tested elsewhere): ~8 s of imports each
    evaluated = evaluate(composed("evaluate", f"ckpt_path={checkpoint}", run_dir=str(tmp_path / "eval")), tmp_path / "eval")
    assert read_results(tmp_path / "eval") == evaluated
    assert evaluated.sets["test"]["n"] == results.sets["test"]["n"]

    explain(composed("explain", f"ckpt_path={checkpoint}", "n=4", run_dir=str(tmp_path / "explain")), tmp_path / "explain")
    cams = pd.read_csv(tmp_path / "explain" / "cams.csv")
    assert len(cams) == min(4, results.sets["test"]["n"])
    assert cams["artifact_fraction"].between(0, 1).all()
