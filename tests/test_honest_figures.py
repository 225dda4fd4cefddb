"""Figures a reader cannot misread: a reliability bin of one or two films is not a spike, and
the preview's model input is the square the model gets, under the file's whole name."""
import numpy as np
import pytest
from matplotlib.colors import to_rgba

from covid_tl.calibration import expected_calibration_error, reliability_bins
from covid_tl.plots import SPARSE, reliability_diagram, roc_curves

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
