"""Preprocessing configs wired into the data pipeline: crop, inpaint, watermark transplant, preview."""
import pickle
from dataclasses import fields

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from conftest import ROOT
from covid_tl.data.datamodule import XrayDataModule
from covid_tl.data.synthetic.marks import ShortcutSpec
from covid_tl.data.synthetic.source import SyntheticSource
from covid_tl.preprocess.model_input import InputSpec
from covid_tl.preprocess.detector_params import DetectorParams
from covid_tl.preprocess.pipeline import build_preprocess, identity
from covid_tl.tasks.preview import main as preview

MARKED = SyntheticSource(n_patients=20, image_size=128, shortcut=ShortcutSpec(p_covid=1.0, p_no_finding=0.0), seed=3)


def config(name, *overrides):
    """The steps of a preprocessing option (crop, inpaint) as Hydra composes them."""
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"preprocessing={name}", *overrides])
    return {k: v for k, v in OmegaConf.to_container(cfg.preprocessing).items() if k in ("crop", "inpaint")}


def test_config_files_mirror_the_code():
    assert build_preprocess(**config("none")) is identity
    detector = config("crop_inpaint")["inpaint"]["detector"]
    assert set(detector) == {f.name for f in fields(DetectorParams)}
    assert DetectorParams.coerce(detector) == DetectorParams()


def test_detector_keys_are_typed_by_the_dataclass():
    assert config("crop_inpaint", "preprocessing.inpaint.detector.tophat_size=0.04")["inpaint"]["detector"]["tophat_size"] == 0.04
    with pytest.raises(ConfigCompositionException):
        config("crop_inpaint", "preprocessing.inpaint.detector.tophat_size=wide")
    with pytest.raises(ConfigCompositionException):
        config("crop_inpaint", "preprocessing.inpaint.detector.no_such_knob=1")


def test_crop_inpaint_removes_planted_marks_and_keeps_the_box():
    steps = build_preprocess(**config("crop_inpaint"))
    pickle.loads(pickle.dumps(steps))  # DataLoader workers take it along
    before = after = kept = 0
    for i in range(len(MARKED)):
        phantom = MARKED.render(i)
        if not phantom.marks:
            continue
        prepared = steps(phantom.image)
        y0, x0, y1, x1 = prepared.box
        assert prepared.image.shape == (y1 - y0, x1 - x0)
        inside = phantom.mark_mask[y0:y1, x0:x1]
        clean = MARKED.render(i, with_marks=False).image[y0:y1, x0:x1].astype(int)
        before += np.abs(phantom.image[y0:y1, x0:x1][inside] - clean[inside]).sum()
        after += np.abs(prepared.image[inside] - clean[inside]).sum()
        kept += 1
    # Mark pixels end up close to the unmarked phantom: most of the marks' contrast is gone.
    assert kept >= 5 and after < 0.25 * before


def test_bad_preprocessing_keys_are_config_errors():
    with pytest.raises(ValueError, match="preprocessing.crop"):
        build_preprocess(crop={"fraction": 0.7})
    with pytest.raises(ValueError, match="inpaint key"):
        build_preprocess(inpaint={"radius": 0.01, "colour": "red"})


def test_watermark_transplant_marks_no_finding_training_images_only():
    spec = InputSpec(size=128)
    options = {"p": 1.0, "n": [1, 1], "positions": ["corner"], "max_area_fraction": 0.05, "max_side_fraction": 0.6}
    dm = XrayDataModule({"s": MARKED}, spec, watermark=options, val_fraction=0.2, test_fraction=0.2, split_seed=1)
    dm.setup()
    assert dm.watermark is not None and len(dm.watermark.bank) > 0
    train, plain = dm.dataset("train", train=True), dm.dataset("train")
    no_finding = [i for i in range(len(train)) if train.targets[i] == 0]
    changed = [not np.array_equal(train.image(i), plain.image(i)) for i in no_finding]
    assert all(changed)
    covid = [i for i in range(len(train)) if train.targets[i] == 1][:3]
    assert all(np.array_equal(train.image(i), plain.image(i)) for i in covid)
    val = dm.dataset("val")
    assert val.watermark is None


def test_preview_writes_a_grid(tmp_path):
    out = tmp_path / "preview.png"
    assert preview(["preprocessing=crop_inpaint", f"preprocessing.cache_dir={tmp_path / 'cache'}",
                    "data.sources.synthetic.n_patients=8", "data.sources.synthetic.shortcut.p_covid=1", "n=4", f"out={out}"]) == 0
    import cv2

    assert cv2.imread(str(out)).shape[0] > 192
