import logging

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from conftest import ROOT
from data_fixtures import cohen, image, nih
from covid_tl.data.datamodule import XrayDataModule
from covid_tl.data.sources import ManifestSource
from covid_tl.data.synthetic.source import SyntheticSource
from covid_tl.data.validate import BadInputError
from covid_tl.preprocess.model_input import InputSpec
from covid_tl.engine.build import build_datamodule

SPEC = InputSpec(size=16)


def bad_manifest(tmp_path):
    """A manifest with two good images per class and one of every kind of bad row."""
    rows = []
    for i in range(8):
        label = "covid" if i % 2 else "no_finding"
        rows.append((image(tmp_path / f"ok{i}.png", seed=i).name, label, f"p{i}"))
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "junk.png").write_text("junk")
    good = (tmp_path / "ok0.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 2])
    image(tmp_path / "ok_extra1.png")
    image(tmp_path / "ok_extra2.png")
    rows += [("missing.png", "covid", "q1"), ("empty.png", "covid", "q2"), ("junk.png", "no_finding", "q3"),
             ("cut.png", "no_finding", "q4"), ("ok_extra1.png", "pneumonia", "q5"), ("ok_extra2.png", "covid", "")]
    pd.DataFrame(rows, columns=["path", "label", "patient_id"]).to_csv(tmp_path / "m.csv", index=False)
    return ManifestSource(tmp_path / "m.csv")


def test_on_bad_raise_names_every_bad_row_before_training(tmp_path):
    dm = XrayDataModule({"m": bad_manifest(tmp_path)}, SPEC, val_fraction=0.25, test_fraction=0.25)
    with pytest.raises(BadInputError) as error:
        dm.setup()
    message = str(error.value)
    assert message.startswith("6 of 14 listed images cannot be used")
    for name, reason in [("missing.png", "missing"), ("empty.png", "empty"), ("junk.png", "unreadable"),
                         ("cut.png", "corrupt (PNG truncated)"), ("ok_extra1.png", "unknown label 'pneumonia'"),
                         ("ok_extra2.png", "no patient id")]:
        assert any(name in line and reason in line for line in message.splitlines()), (name, message)


def test_on_bad_skip_leaves_them_out_with_one_warning_per_kind(tmp_path, caplog):
    dm = XrayDataModule({"m": bad_manifest(tmp_path)}, SPEC, val_fraction=0.25, test_fraction=0.25, on_bad="skip")
    with caplog.at_level(logging.WARNING):
        dm.setup()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 6 and all(w.startswith("skipping 1 image(s): ") for w in warnings)
    assert len(dm.manifest) == 8
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    summary = dm.write_data_files(run_dir)
    bad = pd.read_csv(run_dir / "bad_rows.csv")
    assert len(bad) == summary["skipped"] == 6 and not (run_dir / "skipped.csv").exists()
    assert list(bad["line"]) == list(range(10, 16)) and list(bad["path"].map(lambda p: p.split("/")[-1])) == [
        "missing.png", "empty.png", "junk.png", "cut.png", "ok_extra1.png", "ok_extra2.png"]
    # Every image that is left loads: no surprise mid-epoch.
    assert all(dm.dataloader(s).dataset[0][0].shape == (1, 16, 16) for s in ("train", "val", "test"))


def cohen_nih_datamodule(tmp_path, extra=5, **options):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[
            "data=cohen_nih", f"data.sources.cohen.root={cohen(tmp_path / 'cohen')}",
            f"data.sources.nih.root={nih(tmp_path / 'nih', n_patients=12)}", f"data.extra_no_finding={extra}",
            "data.val_fraction=0.25", "data.test_fraction=0.25", *[f"data.{k}={v}" for k, v in options.items()],
        ])
    dm = build_datamodule(cfg, SPEC)
    dm.setup()
    return dm


def test_cohen_nih_balances_classes_and_holds_out_extra_no_finding(tmp_path):
    dm = cohen_nih_datamodule(tmp_path)
    counts = dm.manifest.counts()
    assert counts == {"covid": 4, "no_finding": 4}
    extra = dm.subset("extra_no_finding")
    assert len(extra) == 5 and set(extra.frame["label"]) == {"no_finding"}
    assert not set(extra.frame["patient_id"]) & set(dm.manifest.frame["patient_id"])
    assert dm.eval_sets == ["train", "val", "test", "extra_no_finding"]
    frame = dm.splits_frame()
    assert (frame["split"] == "extra_no_finding").sum() == 5
    # Same seed, same images.
    again = cohen_nih_datamodule(tmp_path / "again")
    assert [p.split("/")[-1] for p in again.splits_frame()["path"]] == [p.split("/")[-1] for p in frame["path"]]


def test_kfold_puts_every_patient_in_exactly_one_test_fold():
    source = SyntheticSource(n_patients=40, image_size=32)
    tested = []
    for fold in range(5):
        dm = XrayDataModule({"s": source}, SPEC, num_folds=5, fold=fold, split_seed=3)
        dm.setup()
        frame = dm.splits_frame()
        assert frame.groupby("patient_id")["split"].nunique().max() == 1
        tested += sorted(frame.loc[frame["split"] == "test", "patient_id"].unique())
    assert sorted(tested) == sorted(source.frame()["patient_id"].unique())
    with pytest.raises(ValueError, match="data.fold must be in 0..4"):
        XrayDataModule({"s": source}, SPEC, num_folds=5, fold=5).setup()


def test_holdout_source_tests_on_a_source_never_trained_on():
    a = SyntheticSource(n_patients=20, image_size=32, seed=1, name="site_a")
    b = SyntheticSource(n_patients=20, image_size=32, seed=2, name="site_b")
    dm = XrayDataModule({"a": a, "b": b}, SPEC, holdout_source="site_b")
    dm.setup()
    frame = dm.splits_frame()
    assert set(frame.loc[frame["split"] == "test", "source"]) == {"site_b"}
    assert set(frame.loc[frame["split"] != "test", "source"]) == {"site_a"}
    with pytest.raises(ValueError, match="matches no image"):
        XrayDataModule({"a": a}, SPEC, holdout_source="site_c").setup()


def test_data_summary_counts_match_the_splits(tmp_path):
    dm = XrayDataModule({"s": SyntheticSource(n_patients=30, image_size=32)}, SPEC)
    dm.setup()
    summary = dm.write_data_files(tmp_path)
    frame = pd.read_csv(tmp_path / "splits.csv")
    assert sum(r["images"] for r in summary["rows"]) == len(frame) == summary["images"]
    for split, by_label in summary["images_per_split_and_label"].items():
        assert by_label == frame[frame["split"] == split]["label"].value_counts().to_dict()


def test_auto_workers_are_none_on_the_cpu_and_capped_on_cuda(monkeypatch):
    import os

    from covid_tl.data import datamodule

    assert datamodule.default_num_workers(cuda=False) == 0  # every CPU test run: no forked workers
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert datamodule.default_num_workers(cuda=True) == 8  # min(16 - 1, 8)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert datamodule.default_num_workers(cuda=True) == 3
    monkeypatch.setattr(datamodule.torch.cuda, "is_available", lambda: False)
    assert datamodule.default_num_workers() == 0
