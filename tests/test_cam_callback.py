"""The Grad-CAM callback never stops a run; CAM scores survive regions of another size."""
import logging

import cv2
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from conftest import TINY
from test_figures import assert_cam_picture

from covid_tl.data.datamodule import XrayDataModule
from covid_tl.data.synthetic.source import SyntheticSource
from covid_tl.cam import callback as cam_callback
from covid_tl.cam.callback import GradCAMCallback
from covid_tl.cam.scores import cam_scores, mass_fraction
from covid_tl.cam.images import score_cams, scoring_images
from covid_tl.models.classifier import build_classifier
from covid_tl.models.module import CovidClassifier
from covid_tl.preprocess.model_input import InputSpec
from covid_tl.preprocess.pipeline import identity


def fit_with_cams(tmp_path, datamodule=None):
    """One epoch of a tiny CNN on 32 px phantoms with the callback; returns the callback."""
    torch.manual_seed(0)
    net = build_classifier({"name": "simple_cnn", "input_size": 32})
    datamodule = datamodule or XrayDataModule({"s": SyntheticSource(n_patients=16, image_size=32)}, net.input_spec)
    callback = GradCAMCallback(tmp_path / "cams", num_images=4)
    trainer = pl.Trainer(max_epochs=1, callbacks=[callback], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(CovidClassifier(net, optimizer=torch.optim.Adam), datamodule=datamodule)
    assert trainer.current_epoch == 1  # the epoch ran to its end
    return callback


def cam_warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.name == cam_callback.__name__ and r.levelno == logging.WARNING]


def test_a_failing_cam_logs_one_warning_naming_the_images_and_training_finishes(tmp_path, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("no memory left\nsecond line")

    monkeypatch.setattr(cam_callback, "compute_cams", broken)
    with caplog.at_level(logging.WARNING):
        callback = fit_with_cams(tmp_path)
    [message] = cam_warnings(caplog)
    assert "RuntimeError: no memory left" in message and "second line" not in message
    assert all(name in message for name in callback.names) and len(callback.names) == 4
    assert not (tmp_path / "cams").exists()


def test_an_image_that_cannot_be_prepared_is_left_out_and_named(tmp_path, caplog):
    datamodule = XrayDataModule({"s": SyntheticSource(n_patients=16, image_size=32)}, InputSpec(32, 1))
    load_lung_mask = datamodule.load_lung_mask
    bad = []

    def lungs(row):
        if not bad:
            bad.append(row["path"])
            raise ValueError("mask file is truncated")
        return load_lung_mask(row)

    datamodule.load_lung_mask = lungs
    with caplog.at_level(logging.WARNING):
        callback = fit_with_cams(tmp_path, datamodule)
    [message] = cam_warnings(caplog)
    assert bad[0] in message and "ValueError: mask file is truncated" in message
    assert len(callback.items) == 3 and bad[0] not in callback.names
    assert (tmp_path / "cams" / "epoch_000.png").is_file()  # the other three still made the picture


def test_the_saved_grid_has_tiles_of_320_px_a_colour_bar_and_says_what_it_shows(tmp_path):
    """32 px inputs are enlarged to the 320 px default, in the PNG written to disk."""
    callback = fit_with_cams(tmp_path)
    assert callback.cam.tile == 320
    picture = cv2.imread(str(tmp_path / "cams" / "epoch_000.png"))[:, :, ::-1]
    assert_cam_picture(picture, n_tiles=len(callback.items))


def test_a_region_made_on_another_grid_is_resized_not_an_error():
    cam = np.zeros((4, 6), np.float32)
    cam[0:2, 0:3] = 1.0  # mass 6 in the top-left
    cam[3, 5] = 2.0  # total 8
    half = np.zeros((2, 3), bool)
    half[0, 0] = True  # nearest doubling: rows 0-1, columns 0-1 of the CAM, mass 4
    assert mass_fraction(cam, half) == pytest.approx(0.5)
    assert cam_scores(cam, half, half) == {"artifact_fraction": pytest.approx(0.5), "lung_fraction": pytest.approx(0.5)}


def test_full_size_unmarked_film_gives_finite_scores():
    """A 2000 x 1500 film without marks: its artifact region is on its own grid (it was once
    the detector's 1024 px work grid, and scoring raised IndexError)."""
    film = np.full((2000, 1500), 90, np.uint8)
    lungs = np.zeros((500, 375), bool)  # a mask made at a quarter of the size
    lungs[100:400, 50:325] = True
    [item] = scoring_images([{"path": "film.png"}], lambda row: film, lambda row: identity(film),
                            lambda row: lungs, InputSpec(32, 1))
    assert item.artifacts.shape == item.lungs.shape == film.shape
    scores = score_cams(np.ones((1, 32, 32), np.float32), [item])[0]
    # A uniform CAM: the 75 px border band's share of the area, the lungs' share (300 x 275 of 500 x 375).
    assert scores["artifact_fraction"] == pytest.approx(1 - 1850 * 1350 / (2000 * 1500))
    assert scores["lung_fraction"] == pytest.approx(300 * 275 / (500 * 375))


def test_a_lung_mask_of_another_film_is_not_scored_against():
    film = np.full((60, 40), 90, np.uint8)
    [item] = scoring_images([{"path": "film.png"}], lambda row: film, lambda row: identity(film),
                            lambda row: np.ones((40, 60), bool), InputSpec(32, 1))
    assert item.lungs is None


@pytest.mark.slow
def test_callbacks_none_trains_and_writes_results_from_the_last_weights(train_run):
    _, run_dir, results = train_run(*TINY, "callbacks=none")
    assert not (run_dir / "cams").exists() and not (run_dir / "checkpoints" / "last.ckpt").exists()
    # Only Lightning's own checkpoint callback is left: it keeps the last (here the only) epoch.
    assert results.run["epochs_trained"] == 1 and results.run["best_checkpoint"].startswith("checkpoints/epoch=0-")
    assert results.sets["test"]["n"] > 0 and 0 <= results.sets["test"]["auroc"] <= 1


def test_restoring_an_earlier_checkpoint_keeps_the_later_epochs_scores(tmp_path):
    """train.py tests the best checkpoint, which restores the callback's state as it was at that
    epoch: the scores of the epochs after it must stay, or results.json calls the best epoch last."""
    callback = GradCAMCallback(tmp_path)
    callback.scores = {0: {"lung_fraction": 0.25}, 1: {"lung_fraction": 0.5}, 2: {"lung_fraction": 0.75}}
    best = GradCAMCallback(tmp_path)
    best.scores = {0: {"lung_fraction": 0.25}, 1: {"lung_fraction": 0.5}}
    callback.load_state_dict(best.state_dict())
    assert sorted(callback.scores) == [0, 1, 2] and callback.scores[2] == {"lung_fraction": 0.75}
    resumed = GradCAMCallback(tmp_path)  # a fresh process resuming: every earlier epoch comes back
    resumed.load_state_dict(best.state_dict())
    assert resumed.scores == best.scores
