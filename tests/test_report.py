import json

import pandas as pd
import pytest
import yaml

from conftest import TINY, run_script
from covid_tl.tasks.report import main, write_report


def fake_run(run_dir, overrides, accuracy):
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    test = {"sensitivity": accuracy, "specificity": accuracy, "accuracy": accuracy, "auroc": accuracy, "n": 10,
            "bootstrap_ci95": {"accuracy": [accuracy - 0.1, accuracy + 0.1]},
            "confusion_matrix": {"labels": ["no_finding", "covid"], "matrix": [[5, 0], [0, 5]]}}
    (run_dir / "results.json").write_text(json.dumps({"test": test, "extra_no_finding": {"specificity": 0.9}}))


def test_report_pools_seeds_and_plots_metric_against_freeze_depth(tmp_path):
    n = 0
    for backbone in ("vgg16", "resnet50"):
        for depth in (0, 1, 2):
            for seed in (1, 2):
                accuracy = 0.5 + 0.1 * depth + 0.02 * seed
                fake_run(tmp_path / str(n), [f"backbone={backbone}", f"freeze.trainable={depth}", f"seed={seed}", "trainer.max_epochs=3"], accuracy)
                n += 1
    table = write_report(tmp_path)
    assert len(table) == 12
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert {"backbone", "freeze.trainable", "seed", "accuracy", "accuracy_ci95", "extra_specificity"} <= set(summary.columns)
    assert "trainer.max_epochs" not in summary.columns  # the same in every run: not shown
    settings = pd.read_csv(tmp_path / "settings.csv")
    assert len(settings) == 6 and (settings["runs"] == 2).all()
    row = settings[(settings["backbone"] == "vgg16") & (settings["freeze.trainable"] == 2)].iloc[0]
    assert row["accuracy"] == pytest.approx(0.73) and row["accuracy_std"] == pytest.approx(0.0141, abs=1e-3)
    for name in ("summary.md", "metrics_vs_trainable.png", "metrics_bars.png", "confusion_matrices.png"):
        assert (tmp_path / name).is_file(), name
    assert "mean and standard deviation" in (tmp_path / "summary.md").read_text()


def test_report_on_a_folder_without_runs_says_so(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path)])
    assert exit_info.value.code == 1 and "no run with a results.json" in capsys.readouterr().err


@pytest.mark.slow
def test_a_2x2_sweep_then_the_report(tmp_path):
    sweep = tmp_path / "sweep"
    overrides = [o for o in TINY if not o.startswith("backbone")] + ["logger=none", "bootstrap=50"]
    proc = run_script("train.py", "-m", f"hydra.sweep.dir={sweep}", "backbone=simple_fc,simple_cnn",
                      "backbone.input_size=32", "seed=1,2", *overrides)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert main([str(sweep)]) == 0
    summary = pd.read_csv(sweep / "summary.csv")
    assert len(summary) == 4 and set(summary["backbone"]) == {"simple_fc", "simple_cnn"}
    assert (sweep / "metrics_bars.png").is_file() and (sweep / "confusion_matrices.png").is_file()
