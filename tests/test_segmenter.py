"""The lung segmenter: the bundled checkpoint works offline (phantom lungs found), checkpoints
round-trip with their digest, foreign files are refused in one line, it pickles for workers."""
from __future__ import annotations

import pickle
import socket
from importlib.resources import files

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

from conftest import ROOT, mask_iou, run_script
from covid_tl.engine.build import build_datamodule
from covid_tl.data.synthetic.source import SyntheticSource
from covid_tl.core.errors import ConfigError
from covid_tl.stats.metrics import bootstrap_mean
from covid_tl.models.segmenter import BUNDLED, LungSegmenter, SegmenterError
from covid_tl.tasks.segment import segment
from covid_tl.reporting.results import read_results

TINY = {"encoder": "tu-mobilenetv3_small_050", "encoder_weights": "none", "encoder_depth": 3, "decoder_channels": (16, 8, 8), "input_size": 32}


@pytest.fixture
def offline(monkeypatch):
    """No network: any attempt to resolve a host fails."""
    def no_dns(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)


def test_bundled_segmenter_ships_in_the_package_and_finds_phantom_lungs_offline(offline):
    assert (files("covid_tl.models") / "lung_segmenter.pt").is_file() and BUNDLED.stat().st_size < 10 * 2**20
    segmenter = LungSegmenter.load()
    # seed 7 renders patients the bundled model never saw (it trained on seed 1), at other sizes
    for size in (200, 320):
        phantoms = SyntheticSource(n_patients=4, images_per_patient=(1, 1), image_size=size, seed=7)
        for i in range(len(phantoms)):
            phantom = phantoms.render(i)
            mask = segmenter(phantom.image)
            assert mask.shape == phantom.image.shape and mask.dtype == bool
            assert mask_iou(mask, phantom.lung_mask) >= 0.8, (size, i)


def test_a_saved_segmenter_loads_with_its_digest_masks_and_pickles(tmp_path):
    segmenter = LungSegmenter.create(**TINY)
    film = SyntheticSource(n_patients=2, image_size=53, seed=2).render(0).image[:, :47]  # any size, not square
    mask = segmenter(film)
    assert film.shape[0] != 47 and mask.shape == film.shape and mask.dtype == bool
    loaded = LungSegmenter.load(segmenter.save(tmp_path / "s.pt"))
    assert loaded.digest == segmenter.digest and (loaded(film) == mask).all()
    copy = pickle.loads(pickle.dumps(loaded))
    assert copy.digest == segmenter.digest and (copy(film) == mask).all()
    half = LungSegmenter.load(segmenter.save(tmp_path / "h.pt", half=True))
    assert (tmp_path / "h.pt").stat().st_size < 0.6 * (tmp_path / "s.pt").stat().st_size
    assert half.digest != segmenter.digest  # rounded weights are other weights: caches must not mix them


def test_missing_and_foreign_files_are_one_line_errors(tmp_path):
    with pytest.raises(SegmenterError, match="does not exist"):
        LungSegmenter.load(tmp_path / "nope.pt")
    (tmp_path / "film.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(SegmenterError, match="is not a lung segmenter"):
        LungSegmenter.load(tmp_path / "film.png")
    with pytest.raises(SegmenterError, match="multiple of 8"):
        LungSegmenter.create(**{**TINY, "input_size": 36})


def test_patient_bootstrap_is_wider_than_image_bootstrap_when_images_cluster():
    # patient a: four images of Dice 1, patient b: one of 0. Drawing two patients gives a mean of
    # 0 (and of 1) with probability 1/4, so the patient-level interval is [0, 1]; drawing five
    # images gives four or five of b's (mean <= 0.2) with probability 0.7% < 2.5%, so the
    # image-level interval starts at 0.4 or above.
    values, groups = np.array([1, 1, 1, 1, 0.0]), np.array(["a", "a", "a", "a", "b"])
    assert bootstrap_mean(values, groups) == [0.0, 1.0]
    assert bootstrap_mean(values)[0] >= 0.4


def test_segment_and_classify_refuse_each_others_data():
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        with pytest.raises(ConfigError, match="task=segment needs lung-mask data"):
            segment(compose("segment", overrides=["data=synthetic"]), ROOT / "outputs" / "never")
        with pytest.raises(ConfigError, match="--config-name segment"):
            segment(compose("train", overrides=["task=segment"]), ROOT / "outputs" / "never")
        cfg = compose("train", overrides=["data=lung_masks"])
        with pytest.raises(ConfigError, match="it is for the segmenter"):
            build_datamodule(cfg, None)


def test_segment_refuses_a_watermark_transplant():
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        with pytest.raises(ConfigError, match=r"does not transplant watermarks: watermark.p must be 0 \(watermark=none\)"):
            segment(compose("segment", overrides=["+watermark=transplant"]), ROOT / "outputs" / "never")


@pytest.mark.slow
def test_segment_task_end_to_end_writes_what_it_promises(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_script(
        "train.py", "--config-name", "segment", f"hydra.run.dir={run_dir}", "data.sources.xray_mini=null",
        "data.sources.cohen=null", "data.sources.synthetic.n_patients=12", "data.sources.synthetic.image_size=48",
        "segmenter.encoder=tu-mobilenetv3_small_050", "segmenter.encoder_weights=none", "segmenter.encoder_depth=3",
        "segmenter.decoder_channels=[16,8,8]", "segmenter.input_size=32", "trainer.max_epochs=1", "bootstrap=50",
        "preview=3", "half=true")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = read_results(run_dir)
    splits = pd.read_csv(run_dir / "splits.csv")
    films = pd.read_csv(run_dir / "masks.csv")
    assert len(films) == len(splits) == 12
    assert films.set_index("path")["split"].sort_index().equals(splits.set_index("path")["split"].sort_index())
    for split in ("train", "val", "test"):
        r = results.sets[split]
        assert r["n"] == (splits["split"] == split).sum() == r["per_source"]["synthetic"]["n"] == r["per_set"]["synthetic"]["n"]
        assert 0 <= r["dice_ci95"][0] <= r["dice"] <= r["dice_ci95"][1] <= 1
    segmenter = LungSegmenter.load(run_dir / "lung_segmenter.pt")
    assert segmenter.digest == results.run["digest"] and segmenter.input_size == 32
    assert set(segmenter.notes["held_out_patients"]) == set(splits.query("split != 'train'")["patient_id"])
    # one row per held-out film shown (test split: 2 patients per label of 12, one image each)
    grid = cv2.imread(str(run_dir / "preview.png"))
    rows = min(3, results.sets["test"]["n"])
    assert grid.shape[0] == rows * (192 + 16 + 4) + 4 and grid.shape[1] == 3 * (192 + 4) + 4


def test_cpu_inference_runs_on_one_thread_and_restores_the_count():
    """One film on 2 threads was 25x slower than on 1 on the loaded 2-core machine."""
    import torch

    segmenter = LungSegmenter.create(**TINY)
    seen = []
    segmenter.net.register_forward_hook(lambda *args: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        segmenter(np.zeros((40, 40), np.uint8))
        assert seen == [1] and torch.get_num_threads() == 2
        segmenter.threads = None
        segmenter(np.zeros((40, 40), np.uint8))
        assert seen == [1, 2]
    finally:
        torch.set_num_threads(before)


def test_a_compressed_segmenter_file_is_refused_before_torch_inflates_it(tmp_path):
    """A segmenter path can come from a checkpoint (preprocessing.lungs.model): it is bounded as
    checkpoints are. torch itself would inflate the compressed record (a zip bomb's way)."""
    import zipfile

    deflated = tmp_path / "deflated.pt"
    with zipfile.ZipFile(BUNDLED) as old, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            new.writestr(info.filename, old.read(info))
    assert torch.load(deflated, map_location="cpu", weights_only=True)["format"]
    with pytest.raises(SegmenterError, match="is not a lung segmenter"):
        LungSegmenter.load(deflated)
