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


def recorded_run(run_dir, seed, n_test, commit="0123456789abcdef0123", lr=0.001):
    """A run as train.py leaves it: composed config, group choices, results with the run record."""
    fake_run(run_dir, [f"seed={seed}", "trainer.max_epochs=2"], 0.5 + 0.1 * seed)
    config = {"seed": seed, "threshold": 0.5, "data": {"split_seed": "${seed}", "batch_size": 16},
              "backbone": {"name": "simple_cnn", "weights": "none", "input_size": 32},
              "optimizer": {"lr": lr}, "trainer": {"max_epochs": 2, "default_root_dir": "${hydra:runtime.output_dir}"}}
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    choices = {"data": "synthetic", "backbone": "simple_cnn", "freeze": "none", "preprocessing": "crop",
               "augment": "none", "experiment": None}
    (run_dir / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    results = json.loads((run_dir / "results.json").read_text())
    results["test"]["n"] = n_test
    results["run"] = {"best_epoch": 1, "epochs_trained": 2, "wall_time_s": 12.25, "seed": seed,
                      "parameters": {"trainable": 1200, "total": 34000},
                      "versions": {"python": "3.11.7", "torch": "2.14.1", "covid-tl": "0.1.0"},
                      "git": {"commit": commit, "dirty": True}}
    (run_dir / "results.json").write_text(json.dumps(results))


def test_summary_stands_alone_fixed_settings_code_training_record_and_a_test_size_warning(tmp_path):
    recorded_run(tmp_path / "0", 1, n_test=10)
    recorded_run(tmp_path / "1", 2, n_test=15)
    write_report(tmp_path)
    text = (tmp_path / "summary.md").read_text()
    fixed = text.split("## Fixed settings")[1].split("##")[0]
    for setting, value in [("backbone", "simple_cnn"), ("data", "synthetic"), ("preprocessing", "crop"),
                           ("freeze", "none"), ("augment", "none"), ("optimizer.lr", "0.001"),
                           ("trainer.max_epochs", "2"), ("backbone.weights", "none"), ("data.batch_size", "16")]:
        assert f"| {setting} | {value} |" in fixed, setting
    assert "seed" not in fixed and "experiment" not in fixed  # varies; not chosen
    assert "commit `0123456789ab (uncommitted changes)`" in text and "torch 2.14.1" in text
    assert "| 0 | 1 | 1 | 2 | 12.2 | 1,200 / 34,000 |" in text  # run, seed, best epoch, epochs, wall time, parameters
    assert "test set differs between runs (n = 10, 15)" in text and "split_seed" in text
    assert "data.split_seed" not in text.split("## Runs")[1]  # follows seed: no column of its own
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert summary["best_epoch"].tolist() == [1, 1] and summary["total_params"].tolist() == [34000, 34000]


def test_summary_shows_each_runs_threshold_rule_and_calibration(tmp_path):
    for n, (point, ece) in enumerate([({"rule": "youden", "threshold": 0.3125}, 0.25), ({"rule": 0.5, "threshold": 0.5}, 0.1)]):
        fake_run(tmp_path / str(n), [f"seed={n}"], 0.8)
        results = json.loads((tmp_path / str(n) / "results.json").read_text())
        results["test"].update(ece=ece, brier=ece / 2)
        results["run"] = {"operating_point": point}
        (tmp_path / str(n) / "results.json").write_text(json.dumps(results))
    write_report(tmp_path)
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert summary["threshold"].tolist() == ["0.312 (youden)", "0.500"]
    assert summary["ece"].tolist() == [0.25, 0.1] and summary["brier"].tolist() == [0.125, 0.05]
    assert "| 0.312 (youden) |" in (tmp_path / "summary.md").read_text()


def test_summary_warns_about_different_code_but_not_about_equal_test_sets(tmp_path):
    recorded_run(tmp_path / "0", 1, n_test=10, commit="aaaaaaaaaaaaaaaa")
    recorded_run(tmp_path / "1", 2, n_test=10, commit="bbbbbbbbbbbbbbbb")
    write_report(tmp_path)
    text = (tmp_path / "summary.md").read_text()
    assert "test set differs" not in text
    assert "different code: commits aaaaaaaaaaaa (uncommitted changes), bbbbbbbbbbbb (uncommitted changes)" in text


def test_report_html_is_one_file_that_embeds_every_image(tmp_path):
    import base64
    import re

    for n, depth in enumerate((0, 1, 2)):
        fake_run(tmp_path / str(n), ["backbone=vgg16", f"freeze.trainable={depth}"], 0.6 + 0.1 * depth)
    write_report(tmp_path)
    page = (tmp_path / "report.html").read_text()
    sources = re.findall(r'src="([^"]*)"', page)
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == ["confusion_matrices.png", "metrics_bars.png", "metrics_vs_trainable.png"]
    assert len(sources) == len(pngs)
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r"<(link|script)\b|href=|url\(", page)  # nothing fetched from elsewhere
    assert "<table>" in page and "freeze.trainable" in page and "95% bootstrap CI" in page
