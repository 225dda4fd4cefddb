"""Figures a reader cannot misread: a reliability bin of one or two films is not a spike, and
the preview's model input is the square the model gets, under the file's whole name."""
import numpy as np
import pytest
from matplotlib.colors import to_rgba

from covid_tl.stats.calibration import expected_calibration_error, reliability_bins
from covid_tl.reporting.grid import text_width, wrapped
from covid_tl.reporting.plots import SPARSE, reliability_diagram, roc_curves
from covid_tl.preprocess.model_input import resize_square
from covid_tl.preprocess.pipeline import Prepared
from covid_tl.preprocess.panels import TILE, panels, preview_grid

# 10 no-finding films at 0.05, one COVID-19 film at 0.45, 8 COVID-19 films at 0.95: bins
# [0, 0.1) n=10 share 0, [0.4, 0.5) n=1 share 1 (a spike if joined), [0.9, 1] n=8 share 1.
PROBS = np.r_[np.full(10, 0.05), 0.45, np.full(8, 0.95)]
TARGETS = np.r_[np.zeros(10), 1, np.ones(8)].astype(int)


def test_a_bin_of_one_film_is_hollow_labelled_off_the_line_and_carries_its_wide_interval(tmp_path):
    bins = reliability_bins(PROBS, TARGETS)
    assert [b["n"] for b in bins] == [10, 1, 8] and SPARSE == 5
    fig = reliability_diagram({"test": (bins, expected_calibration_error(PROBS, TARGETS))}, tmp_path / "r.png")
    top = fig.axes[0]
    line = top.lines[1]  # after the diagonal
    ys = np.asarray(line.get_ydata(), dtype=float)
    assert ys[0] == 0 and np.isnan(ys[1]) and ys[2] == 1  # no segment reaches the one-film bin
    [points] = top.collections[-1:]
    assert list(points.get_sizes()) == pytest.approx([10 + 110, 10 + 110 / 10, 10 + 110 * 8 / 10])  # area by films
    faces = points.get_facecolors()
    assert faces[0][3] == 1 and faces[1][3] == 0 and faces[2][3] == 1  # the sparse one hollow
    assert to_rgba(line.get_color()) == pytest.approx(tuple(points.get_edgecolors()[0]))
    assert [t.get_text() for t in top.texts] == ["n=1"]
    # Its whisker: the Wilson 95% interval of 1 of 1, (0.2065, 1).
    whiskers = [seg for c in top.collections[:-1] for seg in c.get_segments()]
    spans = sorted((round(float(s[:, 1].min()), 4), round(float(s[:, 1].max()), 4)) for s in whiskers
                   if abs(s[0, 0] - 0.45) < 1e-9)
    assert spans == [(0.2065, 1.0)]
    assert "bin of under 5 images (no line through it)" in " ".join(t.get_text().replace("\n", " ")
                                                                   for t in top.get_legend().get_texts())


def test_the_roc_legend_shows_a_low_cut_with_the_digits_it_needs(tmp_path):
    fig = roc_curves({"test": (np.array([0, 1]), np.array([0, 1]), 0.5, (0.2, 0.9))}, tmp_path / "roc.png", 0.063)
    assert "operating point (p(COVID-19) \u2265 0.063)" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_the_model_input_panel_is_the_square_the_model_gets_not_the_films_shape():
    """A 1148 x 2563 film whose left 1148 x 1148 is white: squeezed to the square, the white
    fills every row and 192 * 1148 / 2563 = 86 columns of the 192 px tile (letterboxed it
    would be an 86 px square between black bars)."""
    film = np.full((1148, 2563), 90, np.uint8)
    film[:, :1148] = 255
    model_input = resize_square(film, 224)
    tiles = panels(film, Prepared(film, (0, 0, 1148, 2563)), None, model_input)
    shown = tiles[-1]
    assert shown.shape == (TILE, TILE, 3)
    white = shown[:, :, 0] > 200
    assert white.any(axis=1).all()  # every row: no letterbox bar
    assert white.all(axis=0).sum() == pytest.approx(86, abs=1)
    assert tiles[0][:40].max() == 0  # the original keeps its shape: bars above it


def test_captions_carry_the_whole_file_name_and_the_panels_still_line_up():
    name = "covid | cohen | auntminnie-b-2020_01_28_23_51_6665_2020_01_28_Vietnam_coronavirus.jpeg"
    width = 3 * TILE
    lines = wrapped(name, width, 0.45)
    assert "".join(lines).replace(" ", "") == name.replace(" ", "") and len(lines) == 2
    assert lines[1] == "coronavirus.jpeg"  # broken after a separator, not mid-word
    assert all(text_width(line, 0.45) <= width - 6 for line in lines)
    panel = np.full((TILE, TILE, 3), 90, np.uint8)
    picture = preview_grid([[panel] * 3] * 2, [name, "no_finding | nih | 00001280_004.png"], per_row=2, input_size=224)
    tops = [int(np.argmax((picture[:, x] == 90).all(axis=1))) for x in (4 + TILE // 2, 4 + 3 * TILE + 4 + TILE // 2)]
    assert tops[0] == tops[1]  # the one-line caption is padded to two


def test_a_bin_all_of_one_class_draws_although_its_interval_ends_a_rounding_error_short(tmp_path):
    """Wilson's upper end for 4 of 4 is 0.9999999999999999: a whisker of -1e-16 stopped every
    run whose bin held 4 (10, 14...) COVID-19 films and nothing else."""
    probabilities, targets = np.array([0.92, 0.94, 0.95, 0.97, 0.05]), np.array([1, 1, 1, 1, 0])
    bins = reliability_bins(probabilities, targets)
    assert [(b["n"], b["share_covid"]) for b in bins] == [(1, 0.0), (4, 1.0)]
    reliability_diagram({"test": (bins, expected_calibration_error(probabilities, targets))}, tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 0
