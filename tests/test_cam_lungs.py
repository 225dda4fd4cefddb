"""CAM lung_fraction on every image: given masks, the lung segmenter elsewhere, memoised."""

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from conftest import TINY, composed

from covid_tl.cam.callback import GradCAMCallback
from covid_tl.cam.images import lung_legend, score_cams, scoring_images
from covid_tl.cam.lungs import CamLungs
from covid_tl.cam.options import CamOptions
from covid_tl.cam.overlay import outline
from covid_tl.cam.sets import summarize_scores
from covid_tl.data.datamodule import XrayDataModule
from covid_tl.data.synthetic.source import SyntheticSource
from covid_tl.core.errors import ConfigError
from covid_tl.models.classifier import build_classifier
from covid_tl.models.module import CovidClassifier
from covid_tl.preprocess.model_input import InputSpec
from covid_tl.preprocess.pipeline import Prepared, identity
from covid_tl.tasks.evaluate import evaluate
from covid_tl.reporting.results import read_results


class CountingSegmenter:
    """A fake segmenter: the left half of any film is lung; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, film: np.ndarray) -> np.ndarray:
        self.calls += 1
        mask = np.zeros(film.shape, bool)
        mask[:, : film.shape[1] // 2] = True
        return mask


def score_one(film, cam, given, lungs, box=None):
    """The scores of one CAM (on the model input) of `film`, through scoring_images and score_cams."""
    box = box or (0, 0, *film.shape)
    prepared = Prepared(film[box[0] : box[2], box[1] : box[3]], box)
    [item] = scoring_images([{"path": "film.png"}], lambda row: film, lambda row: prepared, lambda row: given,
                            InputSpec(cam.shape[0], 1), lungs=lungs)
    return score_cams(cam[None], [item])[0]


def test_lung_fraction_and_lung_area_by_hand():
    film = np.full((8, 8), 100, np.uint8)
    lungs = np.zeros((8, 8), bool)
    lungs[:, :4] = True  # the left half: lung_area 0.5
    cam = np.zeros((8, 8), np.float32)
    cam[:, :4] = 1.0  # mass 32 in the lungs
    cam[7, 7] = 3.0  # mass 3 outside them: lung_fraction 32 / 35
    scores = score_one(film, cam, lungs, CamLungs("masks"))
    assert scores["lung_fraction"] == pytest.approx(32 / 35)
    assert scores["lung_area"] == 0.5 and scores["lung_source"] == "mask"


def test_a_cam_spread_evenly_over_a_cropped_input_scores_its_lung_area():
    """lung_area is the chance level: the lungs' share of the crop box the model sees, not of the film."""
    film = np.full((10, 10), 100, np.uint8)
    lungs = np.zeros((10, 10), bool)
    lungs[:5, :5] = True  # inside the box (1, 1, 9, 9): rows 1-4 x columns 1-4, 16 of its 64 pixels
    lungs[:, 9] = True  # outside the box: the film's share is 35 / 100, the box's stays 16 / 64
    scores = score_one(film, np.ones((8, 8), np.float32), lungs, CamLungs("masks"), box=(1, 1, 9, 9))
    assert scores["lung_area"] == pytest.approx(16 / 64)
    assert scores["lung_fraction"] == pytest.approx(scores["lung_area"])


@pytest.mark.parametrize(("mode", "given", "source", "fraction"), [
    ("segmenter", True, "mask", 1.0),  # the data's mask (the top half, where the CAM is) wins
    ("segmenter", False, "segmenter", 0.5),  # the fake's left half holds half the CAM
    ("segmenter_only", True, "segmenter", 0.5),
    ("masks", False, "none", None),
    ("none", True, "none", None),
])
def test_each_mode_takes_the_lungs_from_where_it_says(mode, given, source, fraction):
    film = np.full((8, 8), 100, np.uint8)
    top = np.zeros((8, 8), bool)
    top[:4] = True
    cam = top.astype(np.float32)
    fake = CountingSegmenter()
    scores = score_one(film, cam, top if given else None, CamLungs(mode, segmenter=fake))
    assert scores["lung_source"] == source and fake.calls == (source == "segmenter")
    assert scores["lung_fraction"] == (None if fraction is None else pytest.approx(fraction))
    assert (scores["lung_area"] is None) == (source == "none")


def test_an_unknown_mode_is_one_line_naming_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown cam.lungs.mode 'mask'; valid: segmenter, segmenter_only, masks, none"):
        CamLungs("mask")


def test_the_segmenter_runs_once_per_image_and_film_size():
    fake = CountingSegmenter()
    lungs = CamLungs("segmenter_only", segmenter=fake)
    film = np.zeros((7, 9), np.uint8)
    first = lungs.segment("a", film)
    assert np.array_equal(lungs.segment("a", film), first) and first[:, :4].all() and not first[:, 4:].any()
    lungs.segment("b", film)
    lungs.segment("a", np.zeros((14, 18), np.uint8))  # another size of the film: another mask
    assert fake.calls == 3


def test_the_callback_segments_its_images_once_at_setup_not_each_epoch(tmp_path):
    fake = CountingSegmenter()
    torch.manual_seed(0)
    net = build_classifier({"name": "simple_cnn", "input_size": 32})
    datamodule = XrayDataModule({"s": SyntheticSource(n_patients=16, image_size=32)}, net.input_spec)
    callback = GradCAMCallback(tmp_path / "cams", num_images=4, cam=CamOptions(lungs=CamLungs("segmenter_only", segmenter=fake)))
    trainer = pl.Trainer(max_epochs=2, callbacks=[callback], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(CovidClassifier(net, optimizer=torch.optim.Adam), datamodule=datamodule)
    assert trainer.current_epoch == 2 and (tmp_path / "cams" / "epoch_001.png").is_file()
    assert fake.calls == len(callback.items) == 4
    assert all(item.lung_source == "segmenter" for item in callback.items)


def test_the_bundled_segmenter_puts_a_cam_on_a_phantoms_lungs_inside_them():
    phantom = SyntheticSource(n_patients=2, images_per_patient=(1, 1), image_size=160, seed=7).render(0)
    cam = phantom.lung_mask.astype(np.float32)  # all the heat on the true lungs
    scores = score_one(phantom.image, cam, None, CamLungs("segmenter"))
    assert scores["lung_source"] == "segmenter" and scores["lung_fraction"] >= 0.9
    assert scores["lung_area"] == pytest.approx(phantom.lung_mask.mean(), abs=0.05)


def test_summary_means_and_counts_by_hand():
    table = pd.DataFrame({"patient_id": ["p1", "p1", "p2"], "lung_fraction": [0.2, 0.4, None],
                          "lung_area": [0.1, 0.1, None], "above_chance": [0.1, 0.3, None],
                          "artifact_fraction": [0.0, 0.3, 0.6], "lung_source": ["mask", "segmenter", "none"]})
    summary = summarize_scores(table, resamples=200)
    assert summary["n"] == 3 and summary["patients"] == 2
    assert summary["lung_source"] == {"mask": 1, "segmenter": 1, "none": 1}
    assert summary["lung_fraction"] == pytest.approx(0.3) and summary["artifact_fraction"] == pytest.approx(0.3)
    assert summary["lung_fraction_ci95"] == [pytest.approx(0.3), pytest.approx(0.3)]  # one patient scored: no spread
    lo, hi = summary["artifact_fraction_ci95"]
    assert lo == pytest.approx(0.15) and hi == pytest.approx(0.6)  # patient means 0.15 and 0.6


@pytest.mark.slow
def test_evaluate_cams_true_scores_every_image_of_the_test_split(train_run, tmp_path):
    _, run_dir, _ = train_run(*TINY, "logger=none", "callbacks=minimal", "bootstrap=20")
    out = tmp_path / "evaluate"
    cfg = composed("evaluate", f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}", "cams=true", "bootstrap=20",
                   "cam.lungs.mode=segmenter_only", run_dir=str(out))
    results = evaluate(cfg, out)  # in this process: one interpreter start less than evaluate.py
    cams, predictions = pd.read_csv(out / "cams.csv"), pd.read_csv(out / "predictions.csv")
    assert read_results(out).sets["test"]["cams"] == results.sets["test"]["cams"]
    assert list(cams["path"]) == list(predictions["path"]) and len(cams) == results.sets["test"]["n"]
    assert np.allclose(cams["prob_covid"], predictions["prob_covid"], atol=1e-5)  # the same model on the same inputs
    assert (cams["lung_source"] == "segmenter").all() and cams["lung_fraction"].between(0, 1).all()
    assert np.allclose(cams["above_chance"], cams["lung_fraction"] - cams["lung_area"])
    for label, rows in cams.groupby("label"):
        block = results.sets["test"]["cams"][label]
        assert block["n"] == len(rows) and block["lung_fraction"] == pytest.approx(rows["lung_fraction"].mean())
        lo, hi = block["lung_fraction_ci95"]
        assert lo <= block["lung_fraction"] <= hi and block["per_source"]["synthetic"]["n"] == len(rows)


def test_the_lung_outline_is_drawn_on_the_edge_of_the_region_only():
    picture = np.zeros((32, 32, 3), np.uint8)
    region = np.zeros((16, 16), bool)
    region[4:12, 4:12] = True  # on a grid half the picture's size: rows and columns 8-23 of it
    drawn = outline(picture, region)
    assert drawn[8, 15].tolist() == [255, 255, 255] and drawn[23, 15].tolist() == [255, 255, 255]
    assert not drawn[16, 16].any() and not drawn[2, 2].any() and not picture.any()
    assert outline(picture, None) is picture


def test_the_legend_names_where_the_outlined_lungs_came_from():
    film = np.full((8, 8), 100, np.uint8)
    top = np.zeros((8, 8), bool)
    top[:4] = True
    rows = [{"path": "a.png", "mask": top}, {"path": "b.png", "mask": None}]
    items = scoring_images(rows, lambda row: film, lambda row: identity(film), lambda row: row["mask"],
                           InputSpec(8, 1), lungs=CamLungs("segmenter", segmenter=CountingSegmenter()))
    assert [item.lung_source for item in items] == ["mask", "segmenter"]
    assert lung_legend(items) == "lungs (drawn mask or lung segmenter)"
    assert lung_legend(items[:1]) == "lungs (drawn mask)" and lung_legend([]) is None
