"""Lung-mask data for task=segment: the v7labs pairing, mask plausibility numbers, the data
module (masked rows only, bad pairs found at setup, splits per source) and the hard augmentation."""
from __future__ import annotations

import zipfile

import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import PUBLISHED_MINI, XRAY_MINI, needs_published_mini, needs_xray_mini
from data_fixtures import cohen, image
from covid_tl.data.segmentation import LungMaskDataModule
from covid_tl.data.sources import ManifestSource
from covid_tl.data.synthetic.source import SyntheticSource
from covid_tl.data.v7labs import CohenV7LabsLungs
from covid_tl.data.validate import BadInputError
from covid_tl.preprocess.augment import build_augmentation
from covid_tl.preprocess.lung_mask import largest_components, plausibility


def two_squares() -> np.ndarray:
    """100 x 100: a 30 x 20 square (600 px) at columns 10-29 and a 40 x 30 one (1200 px) at 60-89."""
    mask = np.zeros((100, 100), bool)
    mask[10:40, 10:30] = True
    mask[10:50, 60:90] = True
    return mask


def test_plausibility_of_two_squares_by_hand():
    # extent 10..89, middle at column 50: 600 px left, 1200 right -> balance 0.5; 1800 of 10000 px
    assert plausibility(two_squares()) == {"components": 2, "area_share": 0.18, "balance": 0.5}
    assert plausibility(np.zeros((8, 8), bool)) == {"components": 0, "area_share": 0.0, "balance": 0.0}


def test_largest_components_keeps_the_two_lungs_and_drops_a_speck():
    mask = two_squares()
    mask[90:92, 5:7] = True
    assert (largest_components(mask) == two_squares()).all()
    assert largest_components(mask, keep=1).sum() == 1200


def write_masks(path, masks: dict[str, np.ndarray]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, mask in masks.items():  # v7labs stores PNGs under the image's own name
            archive.writestr(f"semantic_masks_v7labs_lungs/{name}", cv2.imencode(".png", mask)[1].tobytes())


def test_v7labs_masks_pair_with_cohen_films_by_file_name(tmp_path):
    root = cohen(tmp_path / "cohen")
    lung = np.zeros((24, 24), np.uint8)
    lung[4:20, 3:10], lung[4:20, 14:21], lung[2, 2] = 255, 255, 127  # 127: an edge pixel, background
    write_masks(tmp_path / "masks.zip", {n: lung for n in ("c1a.jpg", "c4.png", "c7.png", "c8.png", "elsewhere.png")})
    source = CohenV7LabsLungs(root, masks=tmp_path / "masks.zip")
    frame = source.frame()
    # c1a (PA), c4 (AP) and c8 (No Finding) have masks; c7 is another finding; c1b, c2, c3, c5 have none
    assert frame["path"].map(lambda p: p.rsplit("/", 1)[-1]).tolist() == ["c1a.jpg", "c4.png", "c8.png"]
    assert frame["patient_id"].tolist() == ["cohen:1", "cohen:4", "cohen:8"]
    assert frame["label"].tolist() == ["covid", "covid", "no_finding"]
    mask = source.load_lung_mask(frame.iloc[0].to_dict())
    assert mask.dtype == bool and mask.sum() == 16 * 7 + 16 * 7 and not mask[2, 2]


@needs_published_mini
@needs_xray_mini
def test_published_cohen_films_meet_their_v7labs_masks_and_xray_minis_patient_ids():
    frame = CohenV7LabsLungs(PUBLISHED_MINI / "cohen").frame()
    # 29 frontal COVID-19 or no-finding films listed; all but the no-finding one have a mask
    assert len(frame) == 28 and frame["lung_mask"].str.startswith("semantic_masks_v7labs_lungs/").all()
    mini = pd.read_csv(XRAY_MINI / "manifest.csv")
    mini_patient = dict(zip(mini["original_file"].str.rsplit("/", n=1).str[-1], mini["patient_id"]))
    shared = frame[frame["path"].map(lambda p: p.rsplit("/", 1)[-1] in mini_patient)]
    assert len(shared) == 23  # originals of xray-mini films: same patients, so the same split
    assert (shared["patient_id"] == shared["path"].map(lambda p: mini_patient[p.rsplit("/", 1)[-1]])).all()


def masked_manifest(tmp_path, wrong_size: bool = False) -> ManifestSource:
    """Four patients with masks (one of them also with a mask of the wrong size) and one without."""
    rows = []
    for i in range(5):
        image(tmp_path / f"f{i}.png", seed=i, size=40)
        mask = np.zeros((24 if wrong_size and i == 0 else 40, 40), np.uint8)
        mask[5:35, 5:18] = mask[5:35, 22:35] = 255
        cv2.imwrite(str(tmp_path / f"m{i}.png"), mask)
        rows.append({"path": f"f{i}.png", "label": "covid", "patient_id": f"p{i}", "source": "mine",
                     "lung_mask": f"m{i}.png" if i < 4 else ""})
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    return ManifestSource(tmp_path / "manifest.csv")


def test_only_masked_films_are_kept_and_each_source_is_split_by_patient(tmp_path):
    phantoms = SyntheticSource(n_patients=8, images_per_patient=(2, 2), image_size=64, seed=3)
    data = LungMaskDataModule({"mine": masked_manifest(tmp_path), "phantoms": phantoms, "off": None}, image_size=32,
                              val_fraction=0.25, test_fraction=0.25)
    data.setup()
    frame = data.frame
    assert (frame["source"] == "mine").sum() == 4 and (frame["source"] == "synthetic").sum() == 16
    for source, rows in frame.groupby("source"):
        assert set(rows["split"]) == {"train", "val", "test"}, source
        assert rows.groupby("patient_id")["split"].nunique().max() == 1  # no patient in two splits
    x, y = data.dataset("train")[0]
    assert x.shape == y.shape == (1, 32, 32)
    assert abs(float(x.mean())) < 1e-4 and set(np.unique(y.numpy())) <= {0.0, 1.0}


def test_a_mask_of_another_size_is_bad_input_found_at_setup(tmp_path):
    source = masked_manifest(tmp_path, wrong_size=True)
    with pytest.raises(BadInputError, match="lung mask is 40x24 but the image 40x40"):
        LungMaskDataModule({"mine": source}, image_size=32, val_fraction=0.25, test_fraction=0.0).setup()
    data = LungMaskDataModule({"mine": source}, image_size=32, val_fraction=0.25, test_fraction=0.0, on_bad="skip")
    data.setup()
    assert len(data.frame) == 3 and data.bad_rows["path"].str.endswith("f0.png").all()


def test_imaging_chain_moves_the_mask_with_the_film():
    film = np.zeros((64, 64), np.uint8)
    film[12:50, 8:28] = 200
    mask = (film > 0).astype(np.uint8)
    chain = build_augmentation(rotate={"p": 1, "range": [-15, 15]}, scale={"p": 1, "range": [0.8, 1.3]},
                               translate={"p": 1, "range": [-0.1, 0.1]}, border="constant")
    for seed in range(5):
        chain.set_random_seed(seed)
        out = chain(image=film, mask=mask)
        assert out["image"].shape == film.shape
        moved = out["image"] > 100
        assert np.logical_and(moved, out["mask"] > 0).sum() / np.logical_or(moved, out["mask"] > 0).sum() > 0.9
