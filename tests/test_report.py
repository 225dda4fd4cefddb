import base64
import re

import matplotlib.text
import pandas as pd
import pytest
import yaml

from conftest import TINY, run_script
from covid_tl.core.formatting import number
from covid_tl.reporting.results import Results, write_results
from covid_tl.tasks import report
from covid_tl.tasks.report import main, write_report
from covid_tl.tasks.sweep_table import natural_key


def fake_run(run_dir, overrides, accuracy, *, config=None, choices=None, point=None, cam=(), test_paths=None,
             n_test=10, run=None, calibration=None):
    """A run dir as train.py leaves it, without training: .hydra record, results.json written
    through write_results, and (test_paths) a splits.csv listing every image's split."""
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if config is not None:
        (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    if choices is not None:
        (run_dir / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    test = {"sensitivity": accuracy, "specificity": accuracy, "accuracy": accuracy, "auroc": accuracy, "n": n_test,
            "bootstrap_ci95": {"accuracy": [accuracy - 0.1, accuracy + 0.1]},
            "confusion_matrix": {"labels": ["no_finding", "covid"], "matrix": [[5, 0], [0, 5]]}, **(calibration or {})}
    results = Results(sets={"test": test, "extra_no_finding": {"specificity": 0.9}}, operating_point=point,
                      cam=list(cam), run=run or {})
    write_results(run_dir, results)
    if test_paths is not None:
        rows = [(f"train_{i}.png", "train") for i in range(3)] + [(p, "test") for p in test_paths]
        pd.DataFrame(rows, columns=["path", "split"]).assign(label="covid").to_csv(run_dir / "splits.csv", index=False)


@pytest.fixture
def figures(monkeypatch):
    """The figures the report draws, by plotting function (each still holds its artists)."""
    drawn = {}
    for name in ("metric_lines", "metric_bars", "confusion_matrices"):
        def record(*args, _real=getattr(report, name), _name=name, **kwargs):
            drawn[_name] = _real(*args, **kwargs)
            return drawn[_name]
        monkeypatch.setattr(report, name, record)
    return drawn


def figure_texts(figure):
    return [t.get_text() for t in figure.findobj(matplotlib.text.Text)]


def youden_sweep(sweep, backbones=("vgg16", "resnet50"), depths=(0, 1, 2)):
    """backbone x freeze.trainable x seed 1, 2 under `threshold: youden` (every paper/ config):
    each run's rule chose its own cut, 0.10 + 0.01 * depth + 0.02 * seed."""
    n = 0
    for backbone in backbones:
        for depth in depths:
            for seed in (1, 2):
                config = {"seed": seed, "threshold": "youden", "freeze": {"trainable": depth, "bn": "frozen"}}
                point = {"rule": "youden", "threshold": 0.10 + 0.01 * depth + 0.02 * seed, "split": "val", "n": 20}
                fake_run(sweep / str(n), [f"backbone={backbone}", f"freeze.trainable={depth}", f"seed={seed}"],
                         0.5 + 0.1 * depth + 0.02 * seed, config=config, point=point)
                n += 1


def test_youden_over_two_seeds_gives_one_row_per_setting_with_the_threshold_by_its_rule(tmp_path, figures):
    youden_sweep(tmp_path)
    write_report(tmp_path)
    text = (tmp_path / "summary.md").read_text()
    assert "varying: backbone, freeze.trainable, seed." in text  # not the threshold each run chose
    assert "| threshold | youden |" in text.split("## Fixed settings")[1].split("##")[0]
    settings = pd.read_csv(tmp_path / "settings.csv")
    assert len(settings) == 6 and (settings["runs"] == 2).all() and "threshold" not in settings.columns
    row = settings[(settings["backbone"] == "vgg16") & (settings["freeze.trainable"] == 2)].iloc[0]
    assert row["accuracy"] == pytest.approx(0.73) and row["accuracy_std"] == pytest.approx(0.02 / 2 ** 0.5)
    # the chosen cut is an outcome: seeds 1 and 2 chose 0.14 and 0.16
    assert row["chosen_threshold"] == pytest.approx(0.15) and row["chosen_threshold_std"] == pytest.approx(0.02 / 2 ** 0.5)
    pooled = text.split("## Settings (mean and standard deviation")[1].split("##")[0]
    assert "| vgg16 | 2 | 2 | 0.730 | 0.014 |" in pooled  # backbone, depth, runs, sensitivity mean and SD
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert summary["chosen_threshold"].round(2).tolist() == [0.12, 0.14, 0.13, 0.15, 0.14, 0.16] * 2
    assert set(summary["threshold"]) == {"youden"}  # the rule beside the cuts it chose


def test_the_freeze_depth_plot_draws_a_line_per_backbone(tmp_path, figures):
    youden_sweep(tmp_path)
    write_report(tmp_path)
    figure = figures["metric_lines"]
    for ax in figure.axes:
        lines = [container.lines[0] for container in ax.containers]
        assert len(lines) == 2  # vgg16, resnet50: not one per seed or per chosen threshold
        for line in lines:
            assert list(line.get_xdata()) == [0, 1, 2] and line.get_linestyle() == "-"
    legend = figure.axes[-1].get_legend()
    assert [t.get_text() for t in legend.get_texts()][:2] == ["resnet50", "vgg16"]
    assert legend.get_title().get_text() == "backbone"
    assert "a line per backbone" in figure._suptitle.get_text()
    vgg = [c.lines[0] for c in figure.axes[2].containers][1]  # accuracy panel: seeds pooled, 0.53, 0.63, 0.73
    assert list(vgg.get_ydata()) == pytest.approx([0.53, 0.63, 0.73])


def test_report_pools_seeds_and_writes_every_file(tmp_path):
    youden_sweep(tmp_path)
    table = write_report(tmp_path)
    assert len(table) == 12
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert {"backbone", "freeze.trainable", "seed", "accuracy", "accuracy_ci95_low", "accuracy_ci95_high",
            "extra_specificity"} <= set(summary.columns)
    assert summary["accuracy_ci95_low"].iloc[0] == pytest.approx(0.42)
    for name in ("summary.md", "metrics_vs_trainable.png", "metrics_bars.png", "confusion_matrices.png"):
        assert (tmp_path / name).is_file(), name
    runs = (tmp_path / "summary.md").read_text().split("## Runs")[1].split("##")[0]
    assert f"| {number(0.52, [0.42, 0.62])} |" in runs  # run 0's accuracy with its interval, one formatter


def test_cv_folds_of_a_setting_are_pooled_and_their_test_sets_named(tmp_path):
    n = 0
    for backbone, base in (("vgg16", 0.6), ("resnet50", 0.7)):
        for fold in (0, 1, 2):
            fake_run(tmp_path / str(n), [f"backbone={backbone}", f"data.fold={fold}"], base + 0.1 * fold,
                     config={"data": {"num_folds": 3, "fold": fold}},
                     test_paths=[f"fold{fold}_{i}.png" for i in range(4)], n_test=4)
            n += 1
    write_report(tmp_path)
    settings = pd.read_csv(tmp_path / "settings.csv")
    assert settings["backbone"].tolist() == ["resnet50", "vgg16"] and settings["runs"].tolist() == [3, 3]
    assert settings["accuracy"].tolist() == pytest.approx([0.8, 0.7]) and settings["accuracy_std"].iloc[0] == pytest.approx(0.1)
    text = (tmp_path / "summary.md").read_text()
    assert "3 different test image lists: runs 0, 3: 4 images; runs 1, 4: 4 images; runs 2, 5: 4 images" in text


def test_settings_and_runs_sort_numbers_as_numbers(tmp_path):
    for job, depth, backbone in [("1", 10, "resnet101"), ("2", 2, "resnet50"), ("10", 1, "resnet101")]:
        fake_run(tmp_path / job, [f"backbone={backbone}", f"freeze.trainable={depth}"], 0.7)
    write_report(tmp_path)
    assert pd.read_csv(tmp_path / "summary.csv")["run"].tolist() == [1, 2, 10]
    settings = pd.read_csv(tmp_path / "settings.csv")
    assert list(zip(settings["backbone"], settings["freeze.trainable"])) == [
        ("resnet50", 2), ("resnet101", 1), ("resnet101", 10)]
    assert natural_key("resnet50") < natural_key("resnet101") and natural_key("2") < natural_key("10")
    assert natural_key("0.0001") < natural_key("1e-3") and natural_key(None) > natural_key("zzz")


def test_no_nan_in_labels_where_a_setting_has_no_value(tmp_path, figures):
    """freeze=none has no `bn` or `trainable`: those are left out of labels, never `nan`."""
    freezes = [("none", {"policy": "none"}), ("all", {"policy": "all", "bn": "frozen"}),
               ("last_n", {"policy": "last_n", "trainable": 2, "bn": "frozen"})]
    for n, (name, freeze) in enumerate(freezes):
        for seed in (1, 2):
            fake_run(tmp_path / f"{n}{seed}", [f"freeze={name}", f"seed={seed}"], 0.6 + 0.1 * n,
                     config={"seed": seed, "freeze": freeze}, choices={"freeze": name, "backbone": "vgg16"})
    write_report(tmp_path)
    text = (tmp_path / "summary.md").read_text()
    assert "varying: freeze, freeze.trainable, freeze.bn, seed." in text
    assert not re.search(r"\bnan\b", text, re.IGNORECASE)
    assert not re.search(r"\bnan\b", (tmp_path / "report.html").read_text(), re.IGNORECASE)
    for name, figure in figures.items():
        assert not any(re.search(r"\bnan\b", t, re.IGNORECASE) for t in figure_texts(figure)), name
    assert "metric_lines" not in figures  # one run set has a depth: no line across depths to draw
    ticks = [t.get_text() for t in figures["metric_bars"].axes[0].get_xticklabels()]
    assert ticks == ["freeze=all\nfreeze.bn=frozen", "freeze=last_n\nfreeze.trainable=2\nfreeze.bn=frozen", "freeze=none"]
    assert "freeze=none\nseed=1" in figure_texts(figures["confusion_matrices"])


def test_the_test_set_note_compares_image_lists_not_counts(tmp_path):
    films = ["a.png", "b.png", "c.png", "d.png"]
    fake_run(tmp_path / "same" / "0", ["seed=1"], 0.7, test_paths=films, n_test=4)
    fake_run(tmp_path / "same" / "1", ["seed=2"], 0.8, test_paths=films[::-1], n_test=4)
    write_report(tmp_path / "same")
    assert "test set differs" not in (tmp_path / "same" / "summary.md").read_text()

    fake_run(tmp_path / "other" / "0", ["seed=1"], 0.7, test_paths=films, n_test=4)
    fake_run(tmp_path / "other" / "1", ["seed=2"], 0.8, test_paths=["a.png", "b.png", "e.png", "f.png"], n_test=4)
    fake_run(tmp_path / "other" / "2", ["seed=3"], 0.8, test_paths=films, n_test=4)
    write_report(tmp_path / "other")
    text = (tmp_path / "other" / "summary.md").read_text()
    assert ("the test set differs between runs (2 different test image lists: runs 0, 2: 4 images; "
            "run 1: 4 images)") in text


def test_runs_without_image_lists_are_compared_by_count_and_named(tmp_path):
    fake_run(tmp_path / "0", ["seed=1"], 0.7, n_test=10)
    fake_run(tmp_path / "1", ["seed=2"], 0.8, n_test=15)
    write_report(tmp_path)
    text = (tmp_path / "summary.md").read_text()
    assert "test set differs between runs (n = 10, 15)" in text
    assert "no run left a list of its test images" in text and "compared by size only" in text
    fake_run(tmp_path / "2", ["seed=3"], 0.8, n_test=10, test_paths=[f"{i}.png" for i in range(10)])
    write_report(tmp_path)
    assert "runs 0, 1 left no list of test images" in (tmp_path / "summary.md").read_text()


def test_cam_scores_of_the_best_epoch_get_columns(tmp_path):
    for seed, lung in ((1, 0.5), (2, 0.7)):
        cam = [{"epoch": 1, "which": "best", "lung_fraction": lung, "artifact_fraction": 0.1},
               {"epoch": 2, "which": "last", "lung_fraction": 0.0, "artifact_fraction": 0.9}]
        fake_run(tmp_path / str(seed), [f"seed={seed}"], 0.7, cam=cam)
    write_report(tmp_path)
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert summary["cam_lung_fraction"].tolist() == [0.5, 0.7]
    assert summary["cam_artifact_fraction"].tolist() == [0.1, 0.1]
    settings = pd.read_csv(tmp_path / "settings.csv")
    assert settings["cam_lung_fraction"].iloc[0] == pytest.approx(0.6) and settings["runs"].iloc[0] == 2
    assert "| cam_lung_fraction | cam_artifact_fraction |" in (tmp_path / "summary.md").read_text()


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
    assert (pd.read_csv(sweep / "settings.csv")["runs"] == 2).all()


def recorded_run(run_dir, seed, n_test, commit="0123456789abcdef0123", lr=0.001):
    """A run as train.py leaves it: composed config, group choices, results with the run record."""
    config = {"seed": seed, "threshold": 0.5, "data": {"split_seed": "${seed}", "batch_size": 16},
              "backbone": {"name": "simple_cnn", "weights": "none", "input_size": 32},
              "optimizer": {"lr": lr}, "trainer": {"max_epochs": 2, "default_root_dir": "${hydra:runtime.output_dir}"}}
    choices = {"data": "synthetic", "backbone": "simple_cnn", "freeze": "none", "preprocessing": "crop",
               "augment": "none", "experiment": None}
    run = {"best_epoch": 1, "epochs_trained": 2, "wall_time_s": 12.25, "seed": seed,
           "parameters": {"trainable": 1200, "total": 34000},
           "versions": {"python": "3.11.7", "torch": "2.14.1", "covid-tl": "0.1.0"},
           "git": {"commit": commit, "dirty": True}}
    fake_run(run_dir, [f"seed={seed}", "trainer.max_epochs=2"], 0.5 + 0.1 * seed, config=config, choices=choices,
             run=run, n_test=n_test, test_paths=[f"film_{i}.png" for i in range(n_test)])


def test_summary_stands_alone_fixed_settings_code_training_record_and_a_test_size_warning(tmp_path):
    recorded_run(tmp_path / "0", 1, n_test=10)
    recorded_run(tmp_path / "1", 2, n_test=15)
    write_report(tmp_path)
    text = (tmp_path / "summary.md").read_text()
    fixed = text.split("## Fixed settings")[1].split("##")[0]
    for setting, value in [("backbone", "simple_cnn"), ("data", "synthetic"), ("preprocessing", "crop"),
                           ("freeze", "none"), ("augment", "none"), ("optimizer.lr", "0.001"),
                           ("trainer.max_epochs", "2"), ("backbone.weights", "none"), ("data.batch_size", "16"),
                           ("threshold", "0.5")]:
        assert f"| {setting} | {value} |" in fixed, setting
    assert "seed" not in fixed and "experiment" not in fixed  # varies; not chosen
    assert "commit `0123456789ab (uncommitted changes)`" in text and "torch 2.14.1" in text
    assert "| 0 | 1 | 1 | 2 | 12.2 | 1,200 / 34,000 |" in text  # run, seed, best epoch, epochs, wall time, parameters
    assert "test set differs between runs (2 different test image lists: run 0: 10 images; run 1: 15 images)" in text
    assert "split_seed" in text
    assert "data.split_seed" not in text.split("## Runs")[1]  # follows seed: no column of its own
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert summary["best_epoch"].tolist() == [1, 1] and summary["total_params"].tolist() == [34000, 34000]


def test_summary_shows_each_runs_threshold_rule_chosen_value_and_calibration(tmp_path):
    points = [({"rule": "youden", "threshold": 0.3125}, 0.25), ({"rule": 0.5, "threshold": 0.5}, 0.1)]
    for n, (point, ece) in enumerate(points):
        fake_run(tmp_path / str(n), [f"seed={n}"], 0.8, point=point, calibration={"ece": ece, "brier": ece / 2})
    write_report(tmp_path)
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert summary["threshold"].tolist() == ["youden", "0.5"]  # the rule: a setting
    assert summary["chosen_threshold"].tolist() == [0.3125, 0.5]  # the cut it gave: an outcome
    assert summary["ece"].tolist() == [0.25, 0.1] and summary["brier"].tolist() == [0.125, 0.05]
    assert len(pd.read_csv(tmp_path / "settings.csv")) == 2  # two rules, two settings
    assert "| 1 | 0.5 | 1 | 0.800 |" in (tmp_path / "summary.md").read_text()  # run, threshold (rule), seed, sensitivity


def test_summary_warns_about_different_code_but_not_about_equal_test_sets(tmp_path):
    recorded_run(tmp_path / "0", 1, n_test=10, commit="aaaaaaaaaaaaaaaa")
    recorded_run(tmp_path / "1", 2, n_test=10, commit="bbbbbbbbbbbbbbbb")
    write_report(tmp_path)
    text = (tmp_path / "summary.md").read_text()
    assert "test set differs" not in text and "left no list" not in text
    assert "different code: commits aaaaaaaaaaaa (uncommitted changes), bbbbbbbbbbbb (uncommitted changes)" in text


def test_report_html_is_one_file_that_embeds_every_image(tmp_path):
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
