"""Synthetic phantoms: determinism, manifest facts, marks and opacities as ground truth."""
from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from covid_tl.data.manifest import Manifest
from covid_tl.data.synthetic.gallery import main
from covid_tl.data.synthetic.marks import Mark, ShortcutSpec
from covid_tl.data.synthetic.source import Phantom, SyntheticSource


def lung_rows(mask: np.ndarray) -> np.ndarray:
    return np.nonzero(mask.any(axis=1))[0]


def lower_zone(mask: np.ndarray) -> np.ndarray:
    """The lower half (by rows) of the lung fields."""
    rows = lung_rows(mask)
    cut = (rows.min() + rows.max()) // 2
    lower = mask.copy()
    lower[:cut] = False
    return lower


@pytest.fixture(scope="module")
def marked_source() -> SyntheticSource:
    return SyntheticSource(n_patients=30, shortcut=ShortcutSpec(p_covid=1.0, p_no_finding=0.0), seed=5)


@pytest.fixture(scope="module")
def opacity_renders() -> list[Phantom]:
    src = SyntheticSource(n_patients=60, images_per_patient=(1, 1), size_jitter=0.0, seed=11)
    return [src.render(i) for i in range(len(src))]


# ---------------------------------------------------------------------------------- determinism


def test_same_seed_same_manifest_and_pixels() -> None:
    a = SyntheticSource(n_patients=12, seed=3, shortcut=ShortcutSpec(p_covid=0.5, p_no_finding=0.5))
    b = SyntheticSource(n_patients=12, seed=3, shortcut=ShortcutSpec(p_covid=0.5, p_no_finding=0.5))
    pd.testing.assert_frame_equal(a.manifest().frame, b.manifest().frame)
    for i in range(len(a)):
        pa, pb = a.render(i), b.render(i)
        np.testing.assert_array_equal(pa.image, pb.image)
        np.testing.assert_array_equal(pa.mark_mask, pb.mark_mask)
        np.testing.assert_array_equal(pa.opacity_mask, pb.opacity_mask)
        assert pa.marks == pb.marks


def test_render_order_does_not_matter() -> None:
    forward = SyntheticSource(n_patients=8, seed=4, shortcut=ShortcutSpec(p_covid=0.5, p_no_finding=0.5))
    backward = SyntheticSource(n_patients=8, seed=4, shortcut=ShortcutSpec(p_covid=0.5, p_no_finding=0.5))
    first = [forward.render(i).image for i in range(len(forward))]
    last = {i: backward.render(i).image for i in reversed(range(len(backward)))}
    for i, image in enumerate(first):
        np.testing.assert_array_equal(image, last[i])
    # and rendering one index again after others gives the same pixels
    np.testing.assert_array_equal(forward.render(0).image, first[0])


def test_other_seed_differs() -> None:
    a = SyntheticSource(n_patients=20, seed=0)
    b = SyntheticSource(n_patients=20, seed=1)
    assert not a.manifest().frame.equals(b.manifest().frame)
    ia, ib = a.render(0).image, b.render(0).image
    assert ia.shape != ib.shape or not np.array_equal(ia, ib)


# -------------------------------------------------------------------------------------- manifest


@pytest.mark.parametrize("n, fraction", [(40, 0.3), (25, 0.5), (7, 0.5), (10, 0.0), (10, 1.0)])
def test_covid_patient_count(n: int, fraction: float) -> None:
    frame = SyntheticSource(n_patients=n, covid_fraction=fraction).manifest().frame
    per_patient = frame.groupby("patient_id")["label"].first()
    assert len(per_patient) == n
    assert int((per_patient == "covid").sum()) == round(fraction * n)


def test_manifest_columns_and_patients() -> None:
    src = SyntheticSource(n_patients=30, images_per_patient=(2, 4), seed=2)
    manifest = src.manifest()
    assert isinstance(manifest, Manifest)
    frame = manifest.frame
    assert len(manifest) == len(src) == len(frame)
    for column in ("path", "label", "patient_id", "source", "view", "index", "marked"):
        assert column in frame.columns
    assert frame["index"].tolist() == list(range(len(src)))
    assert frame["path"].iloc[12] == "synthetic/00012"
    assert frame["patient_id"].iloc[0] == "synthetic:0000"
    assert set(frame["source"]) == {"synthetic"} and set(frame["view"]) == {"PA"}
    assert frame["marked"].dtype == bool and not frame["marked"].any()
    sizes = frame.groupby("patient_id", sort=False).size()
    assert sizes.between(2, 4).all() and sizes.nunique() > 1
    assert (frame.groupby("patient_id")["label"].nunique() == 1).all()
    # a patient's images are consecutive rows
    runs = (frame["patient_id"] != frame["patient_id"].shift()).sum()
    assert runs == frame["patient_id"].nunique() == 30
    # the manifest's label is the rendered label
    for i in (0, len(src) // 2, len(src) - 1):
        assert src.render(i).label == frame["label"].iloc[i]


def test_load_image_reads_the_row_index() -> None:
    src = SyntheticSource(n_patients=6, seed=8)
    frame = src.manifest().frame
    for _, row in frame.iloc[[3, 0]].iterrows():
        np.testing.assert_array_equal(src.load_image(row), src.render(int(row["index"])).image)
    np.testing.assert_array_equal(src.load_image({"index": 2}), src.render(2).image)


def test_source_pickles_for_dataloader_workers() -> None:
    src = SyntheticSource(n_patients=4, shortcut=ShortcutSpec(p_covid=1.0, p_no_finding=1.0), seed=12)
    clone = pickle.loads(pickle.dumps(src))
    pd.testing.assert_frame_equal(clone.manifest().frame, src.manifest().frame)
    np.testing.assert_array_equal(clone.render(len(src) - 1).image, src.render(len(src) - 1).image)


def test_render_rejects_bad_index() -> None:
    src = SyntheticSource(n_patients=3)
    with pytest.raises(IndexError):
        src.render(len(src))
    with pytest.raises(IndexError):
        src.render(-1)


# ---------------------------------------------------------------------------------------- images


def test_image_dtype_and_shape() -> None:
    src = SyntheticSource(n_patients=5, image_size=96, size_jitter=0.0)
    for i in range(len(src)):
        ph = src.render(i)
        assert ph.image.dtype == np.uint8 and ph.image.shape == (96, 96)
        for mask in (ph.lung_mask, ph.mark_mask, ph.opacity_mask):
            assert mask.dtype == bool and mask.shape == ph.image.shape
        assert ph.lung_mask.mean() > 0.15  # two real lung fields, not a speck
        assert ph.image.min() < 40 and ph.image.max() > 150  # dark background, bright bone


def test_size_jitter_bounds_and_variety() -> None:
    src = SyntheticSource(n_patients=20, image_size=100, size_jitter=0.2, seed=1)
    shapes = np.array([src.render(i).image.shape for i in range(len(src))])
    assert shapes.min() >= 80 and shapes.max() <= 120
    assert len(np.unique(shapes[:, 0])) > 5 and len(np.unique(shapes[:, 1])) > 5
    assert (shapes[:, 0] != shapes[:, 1]).any()


def test_lungs_darker_than_mediastinum(opacity_renders: list[Phantom]) -> None:
    for ph in opacity_renders[:20]:
        rows = lung_rows(ph.lung_mask)
        mid = ph.lung_mask[(rows.min() + rows.max()) // 2]
        cols = np.nonzero(mid)[0]
        gap = np.nonzero(np.diff(cols) > 1)[0]  # between the two lungs on the middle row
        assert len(gap) == 1, "two separate lung fields expected"
        left_edge, right_edge = cols[gap[0]], cols[gap[0] + 1]
        band = slice(rows.min() + (rows.max() - rows.min()) // 4, rows.max() - (rows.max() - rows.min()) // 4)
        mediastinum = ph.image[band, left_edge + 2: right_edge - 1].astype(float)
        lungs = ph.image[ph.lung_mask & ~ph.opacity_mask].astype(float)
        assert mediastinum.mean() > lungs.mean() + 30
        # the spine is the brightest column between the lungs
        assert mediastinum.mean(axis=0).max() > mediastinum.mean() + 5


def test_same_patient_looks_alike() -> None:
    src = SyntheticSource(n_patients=20, images_per_patient=(2, 2), size_jitter=0.0, seed=6)

    def iou(a: np.ndarray, b: np.ndarray) -> float:
        return float((a & b).sum() / (a | b).sum())

    masks = [src.render(i).lung_mask for i in range(len(src))]
    same = np.mean([iou(masks[2 * p], masks[2 * p + 1]) for p in range(20)])
    other = np.mean([iou(masks[2 * p], masks[2 * p + 3]) for p in range(19)])
    assert same > other + 0.05


# ----------------------------------------------------------------------------------------- marks


def test_no_marks_when_probabilities_are_zero() -> None:
    src = SyntheticSource(n_patients=15, seed=9)
    assert not src.manifest().frame["marked"].any()
    for i in range(len(src)):
        ph = src.render(i)
        assert ph.marks == () and not ph.mark_mask.any()
        np.testing.assert_array_equal(ph.image, src.render(i, with_marks=False).image)


def test_marks_follow_the_label(marked_source: SyntheticSource) -> None:
    frame = marked_source.manifest().frame
    assert (frame["marked"] == (frame["label"] == "covid")).all()
    for i, row in frame.iterrows():
        ph = marked_source.render(i)
        if row["label"] == "covid":
            assert 1 <= len(ph.marks) <= 2 and ph.mark_mask.any()
        else:
            assert ph.marks == () and not ph.mark_mask.any()


def test_mark_mask_is_exactly_the_changed_pixels(marked_source: SyntheticSource) -> None:
    seen = 0
    for i in range(len(marked_source)):
        ph = marked_source.render(i)
        bare = marked_source.render(i, with_marks=False)
        assert bare.image.shape == ph.image.shape and bare.marks == () and not bare.mark_mask.any()
        np.testing.assert_array_equal(ph.image != bare.image, ph.mark_mask)
        np.testing.assert_array_equal(ph.lung_mask, bare.lung_mask)
        np.testing.assert_array_equal(ph.opacity_mask, bare.opacity_mask)
        in_boxes = np.zeros_like(ph.mark_mask)
        for mark in ph.marks:
            y0, x0, y1, x1 = mark.bbox
            assert 0 <= y0 < y1 <= ph.image.shape[0] and 0 <= x0 < x1 <= ph.image.shape[1]
            assert ph.mark_mask[y0:y1, x0:x1].any()
            in_boxes[y0:y1, x0:x1] = True
        assert not (ph.mark_mask & ~in_boxes).any()
        seen += bool(ph.marks)
    assert seen > 5


def test_mark_pixels_are_bright(marked_source: SyntheticSource) -> None:
    for i in range(len(marked_source)):
        ph = marked_source.render(i)
        for mark in ph.marks:
            y0, x0, y1, x1 = mark.bbox
            pixels = ph.image[y0:y1, x0:x1][ph.mark_mask[y0:y1, x0:x1]]
            assert pixels.max() >= 230  # the stroke itself is near saturation
            assert np.percentile(pixels, 75) >= 200  # only the anti-aliased rim is darker
        if ph.marks:
            assert ph.image[ph.mark_mask].mean() > ph.image[~ph.mark_mask].mean() + 50


def test_kinds_and_positions_are_honoured() -> None:
    spec = ShortcutSpec(p_covid=1.0, p_no_finding=1.0, kinds=["arrow"], positions=["corner"], max_marks=3)
    src = SyntheticSource(n_patients=15, shortcut=spec, seed=2)
    counts = []
    for i in range(len(src)):
        ph = src.render(i)
        h, w = ph.image.shape
        counts.append(len(ph.marks))
        for mark in ph.marks:
            assert isinstance(mark, Mark) and mark.kind == "arrow" and mark.position == "corner"
            y0, x0, y1, x1 = mark.bbox
            assert min(y0, h - y1) <= 0.15 * h and min(x0, w - x1) <= 0.2 * w
    assert set(counts) <= {1, 2, 3} and len(set(counts)) > 1

    letters = SyntheticSource(n_patients=10, shortcut=ShortcutSpec(1.0, 1.0, ("letter", "text"), ("mid",)))
    kinds = {m.kind for i in range(len(letters)) for m in letters.render(i).marks}
    assert kinds == {"letter", "text"}


def test_raising_a_probability_only_adds_marks() -> None:
    low = SyntheticSource(n_patients=40, shortcut=ShortcutSpec(p_covid=0.3, p_no_finding=0.1)).manifest()
    high = SyntheticSource(n_patients=40, shortcut=ShortcutSpec(p_covid=0.7, p_no_finding=0.1)).manifest()
    lo, hi = low.frame["marked"].to_numpy(), high.frame["marked"].to_numpy()
    assert (hi >= lo).all() and hi.sum() > lo.sum()


# ------------------------------------------------------------------------------------- opacities


def test_covid_lower_zone_is_brighter(opacity_renders: list[Phantom]) -> None:
    def lower_mean(ph: Phantom) -> float:
        return float(ph.image[lower_zone(ph.lung_mask)].mean())

    covid = [lower_mean(p) for p in opacity_renders if p.label == "covid"]
    normal = [lower_mean(p) for p in opacity_renders if p.label == "no_finding"]
    assert len(covid) >= 20 and len(normal) >= 20
    assert np.mean(covid) > np.mean(normal) + 8


def test_opacity_masks(opacity_renders: list[Phantom]) -> None:
    for ph in opacity_renders:
        if ph.label == "no_finding":
            assert not ph.opacity_mask.any()
            continue
        mask, lungs = ph.opacity_mask, ph.lung_mask
        assert mask.any() and not (mask & ~lungs).any()
        ys, xs = np.nonzero(mask)
        ly, lx = np.nonzero(lungs)
        assert ys.mean() > ly.mean()  # predominantly lower zone
        mid = lx.mean()
        assert (xs < mid).any() and (xs > mid).any()  # bilateral
        assert np.abs(xs - mid).mean() > np.abs(lx - mid).mean()  # peripheral


def test_zero_opacity_is_invisible() -> None:
    src = SyntheticSource(n_patients=6, covid_fraction=1.0, opacity=(0.0, 0.0))
    assert all(not src.render(i).opacity_mask.any() for i in range(len(src)))


# ---------------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("kwargs, message", [
    ({"n_patients": 1}, "n_patients"),
    ({"n_patients": 2.5}, "n_patients"),
    ({"images_per_patient": (3, 1)}, "images_per_patient"),
    ({"images_per_patient": (0, 2)}, "images_per_patient"),
    ({"images_per_patient": (1, 2, 3)}, "images_per_patient"),
    ({"covid_fraction": 1.5}, "covid_fraction"),
    ({"image_size": 8}, "image_size"),
    ({"size_jitter": -0.1}, "size_jitter"),
    ({"size_jitter": 0.5}, "size_jitter"),
    ({"opacity": (0.8, 0.2)}, "opacity"),
    ({"opacity": (0.2, 1.5)}, "opacity"),
    ({"noise": -0.01}, "noise"),
    ({"seed": -1}, "seed"),
    ({"shortcut": {"p_covid": 0.5, "colour": "red"}}, "colour"),
    ({"shortcut": "yes"}, "shortcut"),
])
def test_invalid_source_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SyntheticSource(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"p_covid": 1.2}, "p_covid"),
    ({"p_no_finding": -0.1}, "p_no_finding"),
    ({"kinds": ["letter", "star"]}, r"star.*'letter', 'arrow', 'text'"),
    ({"positions": ["edge"]}, r"edge.*'corner', 'mid'"),
    ({"kinds": []}, "kinds"),
    ({"max_marks": 0}, "max_marks"),
])
def test_invalid_shortcut_spec(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ShortcutSpec(**kwargs)


def test_lists_and_mappings_are_accepted() -> None:
    spec = ShortcutSpec(p_covid=1, kinds=["letter"], positions=["mid", "corner"])
    assert spec.kinds == ("letter",) and spec.positions == ("mid", "corner") and spec.p_covid == 1.0
    src = SyntheticSource(n_patients=4, images_per_patient=[1, 2], opacity=[0.5, 0.9],
                          shortcut={"p_covid": 1.0, "kinds": ["arrow"], "max_marks": 1})
    assert src.shortcut == ShortcutSpec(p_covid=1.0, kinds=("arrow",), max_marks=1)


def test_omegaconf_containers_are_accepted() -> None:
    omegaconf = pytest.importorskip("omegaconf")
    cfg = omegaconf.OmegaConf.create({
        "images_per_patient": [1, 3], "opacity": [0.4, 1.0],
        "shortcut": {"p_covid": 0.5, "p_no_finding": 0.0, "kinds": ["letter", "text"],
                     "positions": ["corner"], "max_marks": 2},
    })
    src = SyntheticSource(n_patients=5, images_per_patient=cfg.images_per_patient, opacity=cfg.opacity,
                          shortcut=cfg.shortcut)
    assert src.shortcut.kinds == ("letter", "text") and src.images_per_patient == (1, 3)
    spec = ShortcutSpec(p_covid=0.5, kinds=cfg.shortcut.kinds, positions=cfg.shortcut.positions)
    assert spec.positions == ("corner",)


# ------------------------------------------------------------------------------------- preview


def test_preview_writes_a_png(tmp_path) -> None:
    cv2 = pytest.importorskip("cv2")
    out = tmp_path / "grid.png"
    assert main([str(out), "--n", "4", "--seed", "1", "--p-covid", "1.0"]) == 0
    grid = cv2.imread(str(out))
    assert grid is not None and grid.ndim == 3 and grid.shape[0] > 128 and grid.shape[1] > 256
