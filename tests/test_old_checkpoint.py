"""A checkpoint written before the package moves of issue #20 (tests/data/README.md) loads in
every script that reads one, and gives the numbers it gave the day it was written."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, composed
from covid_tl.runtime.config_history import MOVED_MODULES, MOVED_TARGETS, upgrade
from covid_tl.models.checkpoint import load_run
from covid_tl.runtime.torch_files import RUN_TARGETS, check_checkpoint_file, check_run_config

OLD = ROOT / "tests" / "data" / "checkpoint_a628171.ckpt"
#: What evaluate.py wrote on the checkpoint's own test split at commit f22c5c4, before any move.
TEST_AUROC, TEST_SENSITIVITY, TEST_SPECIFICITY = 0.667, 1 / 3, 1.0


def test_moved_targets_point_at_run_targets():
    assert all(new in RUN_TARGETS for new in MOVED_TARGETS.values())
    assert not set(MOVED_TARGETS) & RUN_TARGETS  # an old path is no longer built by any config


def test_moved_modules_exist_where_they_went_and_no_longer_where_they_were():
    assert all(importlib.util.find_spec(new) for new in MOVED_MODULES.values())
    assert not [old for old in MOVED_MODULES if importlib.util.find_spec(old)]


def test_a_target_in_a_moved_module_moves_with_it():
    config = torch.load(OLD, map_location="cpu", weights_only=True)["hyper_parameters"]["config"]
    assert config["logger"]["csv"]["_target_"] == "covid_tl.run_dir.ResumableCSVLogger"  # as written before #20
    assert upgrade(config)["logger"]["csv"]["_target_"] == "covid_tl.runtime.csv_logger.ResumableCSVLogger"


def test_old_config_passes_the_checks_once_upgraded():
    config = torch.load(OLD, map_location="cpu", weights_only=True)["hyper_parameters"]["config"]
    check_run_config(upgrade(config), OLD)
    check_checkpoint_file(OLD)  # as resuming checks it


def test_old_checkpoint_loads_with_its_operating_point():
    cfg, model = load_run(OLD)
    assert model.operating_point["rule"] == "youden"
    assert model.threshold == pytest.approx(0.5906193464487604)
    assert model.net.temperature == pytest.approx(0.07232449766356237)
    assert cfg.backbone.name == "simple_cnn" and model.net.input_spec.size == 16


def test_old_checkpoint_in_every_script(tmp_path: Path):
    from covid_tl.tasks.evaluate import evaluate
    from covid_tl.tasks.explain import explain
    from covid_tl.tasks.export import export
    from covid_tl.tasks.predict import predict

    results = evaluate(composed("evaluate", f"ckpt_path={OLD}", "bootstrap=20", run_dir=str(tmp_path / "e")), tmp_path / "e")
    test = results.set("test")
    assert round(test["auroc"], 3) == TEST_AUROC
    assert (test["sensitivity"], test["specificity"]) == pytest.approx((TEST_SENSITIVITY, TEST_SPECIFICITY))
    assert results.threshold == pytest.approx(0.5906193464487604)

    table = explain(composed("explain", f"ckpt_path={OLD}", "n=2", "cam.tile=64", run_dir=str(tmp_path / "x")), tmp_path / "x")
    assert len(table) == 2 and (tmp_path / "x" / "grid.png").is_file()

    films = tmp_path / "films"
    films.mkdir()
    import cv2
    for i in range(2):
        cv2.imwrite(str(films / f"film{i}.png"), np.full((48, 48), 60 + 90 * i, np.uint8))
    calls = predict(composed("predict", f"ckpt_path={OLD}", f"images={films}", "num_workers=0",
                             run_dir=str(tmp_path / "p")), tmp_path / "p")
    assert len(calls) == 2 and set(calls["predicted"]) <= {"covid", "no_finding"}

    model = export(composed("export", f"ckpt_path={OLD}", "format=torchscript", run_dir=str(tmp_path / "t")), tmp_path / "t")
    info = json.loads((tmp_path / "t" / "model.json").read_text())
    assert model.is_file() and info["threshold"] == pytest.approx(0.5906193464487604)


def test_old_augment_shapes_become_steps_and_the_watermark_its_own_group():
    """Issue #20's reshapes, by hand: flat amounts either way, imaging_chain's keys (blur in
    pixels of the 128 px input), the watermark out of augment, the chain's old key names."""
    study = upgrade({"backbone": {"input_size": 128}, "augment": {
        "_target_": "covid_tl.preprocess.augment.build_augmentation", "rotate": 10.0, "shear": 0.0, "zoom": 0.1,
        "brightness_contrast": 0.0, "watermark": {"p": 0.5}}})
    assert study["watermark"] == {"p": 0.5} and study["augment"] == {
        "_target_": "covid_tl.preprocess.augment.build_augmentation", "rotate": {"p": 1.0, "range": [-10.0, 10.0]},
        "scale": {"p": 1.0, "range": [0.9, 1.1]}, "border": "reflect"}
    chain = upgrade({"segmenter": {"input_size": 128}, "augment": {
        "_target_": "covid_tl.preprocess.augment.imaging_chain_augmentation", "blur_sigma": [0.5, 2.0], "p": 0.3}})
    assert chain["augment"]["blur"] == {"p": 0.3, "range": [0.5 / 128, 2.0 / 128]}
    assert chain["augment"]["brightness"] == {"p": 0.3, "range": [-0.3, 0.3]}
    assert chain["augment"]["_target_"] == "covid_tl.preprocess.augment.build_augmentation"
    hospital = upgrade({"chain": {"_target_": "covid_tl.preprocess.acquisition.AcquisitionChain", "resolution": [0.5, 0.5],
                                  "jpeg_quality": None}})
    assert hospital["chain"] == {"_target_": "covid_tl.preprocess.acquisition.AcquisitionChain", "downscale": [0.5, 0.5],
                                 "jpeg": None}
