"""The CAM options are one `cam` config group (conf/cam/default.yaml): one definition of each,
the same values in all four readers, and the old keys refused naming the new one."""
from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from conftest import ROOT, composed
from covid_tl.cam.options import CamOptions
from covid_tl.runtime.config_check import command_line_error, renamed

CONF = ROOT / "conf"
OLD = ROOT / "tests" / "data" / "checkpoint_a628171.ckpt"
OPTIONS = [f.name for f in fields(CamOptions)]


def cam_blocks(node, found):
    """Every mapping of a YAML document that sets two or more CAM options (a lone `method:`
    is crop_inpaint's inpainting method, not a CAM's)."""
    if isinstance(node, dict):
        if len(set(node) & set(OPTIONS)) >= 2:
            found.append(node)
        for value in node.values():
            cam_blocks(value, found)
    return found


def test_each_cam_option_is_defined_in_one_conf_file():
    assert OPTIONS == ["method", "target", "layer", "overlay", "alpha", "tile", "lungs"]
    files = {}
    for path in sorted(CONF.rglob("*.yaml")):
        for block in cam_blocks(yaml.safe_load(path.read_text()), []):
            for key in set(block) & set(OPTIONS):
                files.setdefault(key, []).append(str(path.relative_to(CONF)))
    assert files == {key: ["cam/default.yaml"] for key in OPTIONS}


def test_the_four_readers_take_the_same_cam_options(tmp_path: Path):
    """cam.tile=77 (and a method, a lung mode) set the same way reach train's callback, and the
    pictures explain and predict draw (77 px a side) and the CAMs evaluate scores."""
    from covid_tl.engine.build import build_trainer
    from covid_tl.cam.callback import GradCAMCallback
    from covid_tl.tasks.evaluate import evaluate
    from covid_tl.tasks.explain import explain
    from covid_tl.tasks.predict import predict

    same = ["cam.tile=77", "cam.method=layercam", "cam.lungs.mode=none"]
    trainer = build_trainer(composed("train", *same, "logger=none", run_dir=str(tmp_path / "t")))
    callback = next(c for c in trainer.callbacks if isinstance(c, GradCAMCallback))
    assert (callback.cam.tile, callback.cam.method, callback.cam.lungs.mode) == (77, "layercam", "none")

    table = explain(composed("explain", f"ckpt_path={OLD}", "n=2", *same, run_dir=str(tmp_path / "x")), tmp_path / "x")
    assert cv2.imread(str(tmp_path / "x" / table["overlay"][0])).shape == (77, 77, 3)
    assert table["lung_source"].eq("none").all()

    films = tmp_path / "films"
    films.mkdir()
    cv2.imwrite(str(films / "film.png"), np.full((48, 48), 90, np.uint8))
    calls = predict(composed("predict", f"ckpt_path={OLD}", f"images={films}", "num_workers=0", "cams=true", *same,
                             run_dir=str(tmp_path / "p")), tmp_path / "p")
    assert cv2.imread(str(tmp_path / "p" / calls["cam"][0])).shape[1] == 77  # a caption band above, 77 px wide

    evaluate(composed("evaluate", f"ckpt_path={OLD}", "bootstrap=5", "cams=true", *same, run_dir=str(tmp_path / "e")),
             tmp_path / "e")
    block = json.loads((tmp_path / "e" / "results.json").read_text())["sets"]["test"]["cams"]
    assert (block["method"], block["lungs"]) == ("layercam", "none")


@pytest.mark.parametrize("script, args, says", [
    ("explain", ["method=layercam"], "error: unknown key 'method'; did you mean 'cam.method=layercam'? (renamed)"),
    ("explain", ["tile=64"], "error: unknown key 'tile'; did you mean 'cam.tile=64'? (renamed)"),
    ("predict", ["cam.size=128"], "error: unknown key 'cam.size'; did you mean 'cam.tile=128'? (renamed)"),
    ("evaluate", ["lungs.mode=masks"], "error: unknown key 'lungs.mode'; did you mean 'cam.lungs.mode=masks'? (renamed)"),
    ("train", ["callbacks.grad_cam.method=layercam"],
     "error: unknown key 'callbacks.grad_cam.method'; did you mean 'cam.method=layercam'? (renamed)"),
    ("train", ["callbacks.grad_cam.lungs.model=a.pt"],
     "error: unknown key 'callbacks.grad_cam.lungs.model'; did you mean 'cam.lungs.model=a.pt'? (renamed)"),
    ("explain", ["-m", "overlay=blend,mask"], "error: unknown key 'overlay'; did you mean 'cam.overlay=blend,mask'? (renamed)"),
])
def test_old_cam_keys_are_refused_naming_the_new_one(script, args, says):
    assert command_line_error(["ckpt_path=x.ckpt", *args], CONF, script) == says


def test_only_a_moved_key_or_one_under_it_is_renamed():
    assert renamed("lungs.mode") == "cam.lungs.mode" and renamed("cam.size") == "cam.tile"
    assert renamed("lungsx") is None and renamed("preprocessing.lungs.margin") is None and renamed("cam.tile") is None
    assert command_line_error(["ckpt_path=x.ckpt", "cam.tile=64", "cam.lungs.mode=masks"], CONF, "explain") is None
