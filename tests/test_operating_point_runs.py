"""The operating point end to end: a run whose AUROC is high but whose calls at 0.5 are all
no-finding, rescued by threshold=youden chosen on validation; evaluate.py's threshold= override."""

import pandas as pd
import pytest
import torch

from conftest import composed, run_script
from covid_tl.reporting.results import read_results
from covid_tl.tasks.evaluate import evaluate

pytestmark = pytest.mark.slow

# Clear opacities (a learnable signal), and COVID-19 weighted 0.1 in the loss: after two epochs
# the ranking is good but every probability stays below 0.5 (deterministic: seeded run).
LOW_PROBABILITIES = [
    "data.sources.synthetic.n_patients=60", "data.sources.synthetic.image_size=48", "backbone.input_size=32",
    "data.sources.synthetic.opacity=[0.6,1.0]", "trainer.max_epochs=2", "data.batch_size=16", "model.pos_weight=0.1",
    "logger=none", "callbacks=minimal", "bootstrap=100",
]


@pytest.fixture(scope="module")
def youden_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("youden") / "run"
    proc = run_script("train.py", f"hydra.run.dir={run_dir}", *LOW_PROBABILITIES, "threshold=youden")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = read_results(run_dir)
    return run_dir, results, run_dir / results.run["best_checkpoint"], proc.stdout


def test_youden_turns_a_degenerate_operating_point_into_a_sensible_one(youden_run, tmp_path):
    run_dir, results, ckpt, stdout = youden_run
    point = results.operating_point
    assert point["rule"] == "youden" and point["split"] == "val" and point["n"] == results.sets["val"]["n"]
    assert point["threshold"] < 0.5 and point["temperature"] == 1.0
    predictions = pd.read_csv(run_dir / "predictions.csv")
    assert predictions["prob_covid"].max() < 0.5  # at 0.5 nothing would be called COVID-19
    test = results.sets["test"]
    assert test["auroc"] >= 0.9 and test["threshold"] == point["threshold"]
    assert test["sensitivity"] >= 0.5 and test["specificity"] >= 0.5
    # Stored in the best checkpoint, loadable weights-only; the console names the rule.
    stored = torch.load(ckpt, map_location="cpu", weights_only=True)["operating_point"]
    assert stored == point
    assert f"threshold {point['threshold']:.4g} (youden on val, {point['n']} images)" in stdout
    assert (run_dir / "reliability.png").is_file() and 0 <= test["ece"] <= 1 and 0 <= test["brier"] <= 1
    assert "Youden's rule" in (run_dir / "model_card.md").read_text()


def test_evaluate_threshold_override_changes_the_calls_and_a_rule_is_chosen_again(youden_run, tmp_path):
    run_dir, results, ckpt, _ = youden_run
    at_half = tmp_path / "half"
    evaluate(composed("evaluate", f"ckpt_path={ckpt}", "threshold=0.5", "bootstrap=100", run_dir=str(at_half)), at_half)
    evaluated = read_results(at_half)
    assert evaluated.sets["test"]["sensitivity"] == 0.0 and evaluated.sets["test"]["threshold"] == 0.5
    assert evaluated.sets["test"]["auroc"] == pytest.approx(results.sets["test"]["auroc"])
    calls = pd.read_csv(at_half / "predictions.csv")
    assert (calls["predicted"] == "no_finding").all() and (at_half / "reliability.png").is_file()
    # A rule is chosen again on the checkpoint's validation split: the same number as in training.
    again = tmp_path / "again"
    evaluate(composed("evaluate", f"ckpt_path={ckpt}", "threshold=youden", "bootstrap=100", run_dir=str(again)), again)
    evaluated = read_results(again)
    assert evaluated.operating_point["threshold"] == pytest.approx(results.operating_point["threshold"])
    assert evaluated.sets["test"]["sensitivity"] == results.sets["test"]["sensitivity"]
