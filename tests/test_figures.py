"""Figures a reader can trust: the ROC operating point where the threshold puts it, whiskers
inside [0, 1], integer settings on integer ticks, CAM grids with large tiles and a colour bar,
preview grids with named columns and a legend."""
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.collections import LineCollection
from torch.utils.data import TensorDataset

import covid_tl.engine.evaluation as results_module
from covid_tl.cam.callback import captions
from covid_tl.cam.overlay import cam_grid, colour_scale, heat
from covid_tl.data.manifest import Manifest
from covid_tl.stats.metrics import roc_points
from covid_tl.reporting.plots import metric_bars, metric_lines, whiskers
from covid_tl.preprocess.panels import COLUMNS, KEY, TILE, preview_grid


class Identity(torch.nn.Module):
    """A 'model' whose logit is the one input value: probabilities are what the test says."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.logit(x[:, 0])


def test_roc_marks_the_operating_point_of_the_threshold_on_the_curve(tmp_path, monkeypatch):
    # Negatives 0.1 0.4 0.6, positives 0.35 0.7 0.9. At p >= 0.5: one of three negatives
    # called COVID-19 (FPR 1/3), two of three positives (TPR 2/3).
    probabilities = np.array([0.1, 0.4, 0.6, 0.35, 0.7, 0.9])
    targets = np.array([0, 0, 0, 1, 1, 1])
    frame = pd.DataFrame({"path": [f"{i}.png" for i in range(6)], "label": np.where(targets == 1, "covid", "no_finding"),
                          "patient_id": [str(i) for i in range(6)], "source": "s", "view": "PA"})
    dataset = TensorDataset(torch.tensor(probabilities, dtype=torch.float32)[:, None], torch.tensor(targets))
    drawn = {}
    real = results_module.roc_curves
    monkeypatch.setattr(results_module, "roc_curves", lambda *a: drawn.setdefault("fig", real(*a)))
    results_module.evaluate_sets(Identity(), {"test": (Manifest(frame), dataset)}, tmp_path, threshold=0.5,
                                 resamples=10, device=torch.device("cpu"))
    assert (tmp_path / "roc.png").is_file()
    ax = drawn["fig"].axes[0]
    [marker] = [line for line in ax.lines if line.get_marker() == "o" and len(line.get_xdata()) == 1]
    point = (float(marker.get_xdata()[0]), float(marker.get_ydata()[0]))
    assert point == pytest.approx((1 / 3, 2 / 3))
    fpr, tpr = roc_points(targets, probabilities)
    assert any(np.allclose(point, vertex) for vertex in zip(fpr, tpr))  # a vertex of the curve
    # Curves along 0 and 1 are not hidden under the frame: the axes reach past them.
    assert ax.get_xlim()[0] < 0 and ax.get_ylim()[1] > 1
    assert "0.50" in " ".join(t.get_text() for t in ax.get_legend().get_texts())


def test_whiskers_are_clipped_to_the_unit_interval_by_hand():
    table = pd.DataFrame({"m": [0.9, 0.1, 0.5], "m_std": [0.3, 0.3, 0.1]})
    # 0.9 +- 0.3: down to 0.6, up only to 1.0; 0.1 +- 0.3: down only to 0.0.
    assert whiskers(table, "m") == pytest.approx(np.array([[0.3, 0.1, 0.1], [0.1, 0.3, 0.1]]))
    interval = pd.DataFrame({"m": [0.5, 0.7], "m_low": [0.2, np.nan], "m_high": [1.3, np.nan]})
    bars = whiskers(interval, "m")
    assert bars[:, 0] == pytest.approx([0.3, 0.5]) and np.isnan(bars[:, 1]).all()  # no interval: no whisker


def _segment_ys(fig) -> np.ndarray:
    return np.concatenate([np.asarray(s)[:, 1] for ax in fig.axes for c in ax.collections
                           if isinstance(c, LineCollection) for s in c.get_segments()])


def test_report_plots_keep_whiskers_in_unit_range_label_them_and_use_integer_ticks(tmp_path):
    table = pd.DataFrame({"freeze.trainable": [0, 1, 2, 3], "setting": "vgg16",
                          "auroc": [0.95, 0.98, 0.05, 0.5], "auroc_std": [0.2, 0.3, 0.3, 0.1],
                          "accuracy": [0.9, 0.92, 0.1, 0.5], "accuracy_std": [0.3, 0.3, 0.3, 0.1]})
    label = "whiskers: mean \u00b1 1 SD over seeds"
    lines = metric_lines(table, "freeze.trainable", ["accuracy", "auroc"], "setting", tmp_path / "l.png", label)
    ys = _segment_ys(lines)
    assert len(ys) and ys.min() >= 0 and ys.max() <= 1
    assert [t.get_text() for t in lines.axes[0].get_xticklabels()] == ["0", "1", "2", "3"]
    assert [ax.get_title() for ax in lines.axes] == ["accuracy", "AUROC"]
    legend = " ".join(t.get_text() for t in lines.axes[-1].get_legend().get_texts()).replace("\n", " ")
    assert "1 SD" in legend
    bars = metric_bars(table.assign(group=list("abcd")), "group", ["accuracy", "auroc"], tmp_path / "b.png", label)
    ys = _segment_ys(bars)
    assert len(ys) and ys.min() >= 0 and ys.max() <= 1
    texts = [t.get_text() for t in bars.axes[0].get_legend().get_texts()]
    assert "AUROC" in texts and any("1 SD" in t for t in texts)
    assert bars.axes[0].get_ylabel() and bars.axes[0].get_title()


def _runs(mask: np.ndarray) -> list[int]:
    """Lengths of the runs of True in a 1-D mask."""
    edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    return list(np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1))


def jet_bar_columns(picture: np.ndarray, search: int = 150) -> list[int]:
    """Columns among the right-most `search` whose longest stretch of non-black pixels is JET
    colours running from 1 (top) to 0 (bottom)."""
    jet = colour_scale("blend").astype(int)
    found = []
    for x in range(max(0, picture.shape[1] - search), picture.shape[1]):
        column = picture[:, x].astype(int)
        lit = column.sum(axis=1) > 0
        lengths = _runs(lit)
        if not lengths or max(lengths) < 50:
            continue
        starts = np.flatnonzero(np.diff(np.concatenate([[0], lit.astype(int)])) == 1)
        start = starts[int(np.argmax(lengths))]
        column = column[start : start + max(lengths)]
        distance = np.abs(column[:, None, :] - jet[None]).sum(axis=2)
        index = distance.argmin(axis=1)
        if distance.min(axis=1).max() <= 6 and index[0] >= 250 and index[-1] <= 5 and (np.diff(index) <= 0).all():
            found.append(x)
    return found


def assert_cam_picture(picture: np.ndarray, n_tiles: int, tile: int = 320, columns: int = 4) -> None:
    """Tiles at least `tile` px wide in the saved picture (blend overlays are never black, so a
    row through a row of tiles lights up as one run per tile), and a JET colour bar beside them."""
    lit = picture.sum(axis=2) > 0
    per_row = max(sum(w >= tile for w in _runs(row)) for row in lit)
    assert per_row == min(n_tiles, columns)
    assert len(jet_bar_columns(picture)) >= 10  # a band of columns, not one line


def test_cam_grid_has_tiles_of_320_px_a_colour_bar_a_title_and_readable_captions():
    rng = np.random.default_rng(0)
    images = [rng.integers(40, 200, (32, 32), dtype=np.uint8) for _ in range(3)]
    cams = [np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)] * 3
    lines, colours = captions(["covid", "no_finding", None], np.array([0.5, 0.7, 0.2]), 0.5)
    assert lines[0] == ["true: COVID-19", "p(COVID-19)=0.50 -> COVID-19"]  # 0.50 is at the threshold
    assert lines[2][0] == "true: unknown" and colours[0][1] != colours[1][1]  # right and wrong differ
    picture, overlays = cam_grid(images, cams, lines, title="Grad-CAM at layer conv", colours=colours)
    assert overlays[0].shape == (320, 320, 3)
    assert_cam_picture(picture, 3)
    assert picture[:12].any()  # the title band is written on


def test_colour_scale_is_the_overlay_colour_map():
    assert np.array_equal(colour_scale("blend")[[0, 128, 255]], heat(np.array([[0.0, 128 / 255, 1.0]]))[0])
    assert colour_scale("multiply")[255].tolist() == [255, 255, 255]


def test_preview_grid_names_its_columns_and_explains_its_colours():
    panel = np.full((TILE, TILE, 3), 90, np.uint8)
    picture = preview_grid([[panel] * 3] * 3, ["a", "b", "c"], per_row=2)
    assert picture.shape[1] == 2 * (3 * TILE + 4) + 4
    header = picture[:20]
    for column in range(6):  # text over the middle of every panel column
        x = 4 + (column // 3) * (3 * TILE + 4) + (column % 3) * TILE + TILE // 2
        assert header[:, x - 40 : x + 40].any(), COLUMNS[column % 3]
    footer = picture[-20:].reshape(-1, 3)
    for colour, _ in KEY:  # a swatch of each colour in the legend
        assert (footer == colour).all(axis=1).sum() >= 50


def test_a_legend_wider_than_its_grid_wraps_onto_rows_uncut():
    """explain n=2: the key (420 px of text at this scale) wraps under a 2-tile grid instead of
    running past its right edge; each swatch drawn in full, nothing lit in the last 4 columns."""
    from covid_tl.reporting.grid import legend

    key = [((0, 200, 0), "called right (COVID-19 at p >= 0.40)"), ((200, 0, 0), "called wrong"),
           ((255, 255, 255), "lungs (lung segmenter)")]
    one_row = legend(key, 2000, 0.6)
    for width, rows in ((2000, 1), (722, 2), (398, 2)):
        band = legend(key, width, 0.6)
        assert band.shape == (rows * one_row.shape[0], width, 3)
        assert not band[:, -4:].any()
        for colour, _ in key:
            assert (band.reshape(-1, 3) == colour).all(axis=1).sum() >= 100
    narrow = legend(key[:1], 200, 0.6)  # one item wider than the band alone: a smaller font
    assert narrow.shape[0] < one_row.shape[0] and not narrow[:, -4:].any()
