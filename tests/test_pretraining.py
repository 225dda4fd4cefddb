"""task=pretrain on a tiny ChestX-ray14-format fixture, then its checkpoint as backbone weights."""

import pandas as pd
import pytest
import torch

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from conftest import ROOT, run_script
from data_fixtures import image
from covid_tl.data.findings import FindingsDataModule
from covid_tl.data.sources import NIHSource
from covid_tl.core.labels import NIH_FINDINGS
from covid_tl.models.classifier import build_classifier
from covid_tl.preprocess.model_input import InputSpec
from covid_tl.reporting.results import read_results


def nih_findings(root, n_patients=16):
    rows = []
    for p in range(1, n_patients + 1):
        for k in range(2):
            name = f"{p:08d}_{k:03d}.png"
            image(root / f"images_{1 + p % 2:03d}" / "images" / name, seed=p * 10 + k, size=40)
            labels = "No Finding" if p % 3 == 0 else "|".join(NIH_FINDINGS[(p + j) % 14] for j in range(1 + k))
            rows.append({"Image Index": name, "Finding Labels": labels, "Patient ID": str(p), "View Position": "PA"})
    pd.DataFrame(rows).to_csv(root / "Data_Entry_2017.csv", index=False)
    return root


def test_findings_frame_has_one_column_per_finding(tmp_path):
    frame = NIHSource(nih_findings(tmp_path), views=None).findings_frame()
    assert len(frame) == 32 and set(NIH_FINDINGS) <= set(frame.columns)
    first = frame.iloc[0]
    assert first[NIH_FINDINGS[1]] == 1 and first[list(NIH_FINDINGS)].sum() == 1  # patient 1, image 0: one finding


def test_nih14_names_the_findings_datamodule_which_splits_by_patient(tmp_path):
    root = nih_findings(tmp_path / "nih")
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["data=nih14", f"data.root={root}", "data.val_fraction=0.25", "data.batch_size=8"])
    assert cfg.data._target_ == "covid_tl.data.findings.FindingsDataModule"
    datamodule = instantiate(cfg.data, _partial_=True)(input_spec=InputSpec(size=32))
    assert isinstance(datamodule, FindingsDataModule)
    datamodule.setup("fit")
    # 16 patients of 2 images each: round(0.25 * 16) = 4 patients, 8 images, validate.
    assert datamodule.sizes() == {"train": 24, "val": 8}
    patients = datamodule.frame.groupby("split")["patient_id"].apply(set)
    assert len(patients["val"]) == 4 and not patients["val"] & patients["train"]
    x, y = next(iter(datamodule.train_dataloader()))
    assert x.shape == (8, 1, 32, 32) and y.shape == (8, 14)
    datamodule.write_splits(tmp_path / "splits.csv")
    assert pd.read_csv(tmp_path / "splits.csv")["split"].value_counts().to_dict() == {"train": 24, "val": 8}


def test_findings_data_and_the_classify_task_refuse_each_other_in_one_line(tmp_path):
    root = nih_findings(tmp_path / "nih")
    for i, (overrides, says) in enumerate([(["data=nih14", f"data.root={root}"], "it is for task=pretrain (data=nih14)"),
                                           (["task=pretrain", "data=synthetic"], "task=pretrain needs findings data: data=nih14")]):
        proc = run_script("train.py", *overrides, "backbone=simple_cnn", "logger=none", f"hydra.run.dir={tmp_path / f'run{i}'}")
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and says in last


@pytest.mark.slow
def test_pretrain_then_transfer_its_backbone(tmp_path):
    root = nih_findings(tmp_path / "nih")
    run = tmp_path / "pretrain"
    proc = run_script("train.py", "task=pretrain", "data=nih14", f"data.root={root}", "data.val_fraction=0.25",
                      "backbone=simple_cnn", "backbone.input_size=32", "trainer.max_epochs=2", "logger=none",
                      f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = read_results(run)
    assert results.kind == "findings" and set(results.sets["val"]["auroc_per_finding"]) == set(NIH_FINDINGS)
    assert results.run["images"] == {"train": 24, "val": 8}
    ckpt = results.run["backbone_checkpoint"]
    net = build_classifier({"name": "simple_cnn", "input_size": 32, "weights": ckpt})
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    assert torch.equal(net.features.conv.weight, saved["net.features.conv.weight"])
    # The classification task refuses findings data with one clear line.
    proc = run_script("train.py", "data=nih14", f"data.root={root}", f"hydra.run.dir={tmp_path / 'wrong'}")
    assert proc.returncode != 0 and "task=pretrain" in proc.stderr.strip().splitlines()[-1]
