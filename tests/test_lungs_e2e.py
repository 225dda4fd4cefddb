"""preprocessing=lungs end to end: train.py on tiny phantoms with the bundled segmenter, and the
preview's lung columns. Slow: they segment every film on the CPU."""

import cv2
import pytest

from conftest import run_script
from covid_tl.tasks.preview import main as preview
from covid_tl.reporting.results import read_results

pytestmark = pytest.mark.slow


def test_train_on_the_lung_field_of_phantoms(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_script("train.py", f"hydra.run.dir={run_dir}", "preprocessing=lungs", f"preprocessing.cache_dir={tmp_path}",
                      "data.sources.synthetic.n_patients=24", "data.sources.synthetic.image_size=64",
                      "backbone=simple_cnn", "trainer.max_epochs=1", "data.batch_size=16", "logger=none",
                      "callbacks.grad_cam=null", "bootstrap=50", timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = read_results(run_dir)
    assert results.run["epochs_trained"] == 1 and results.run["wall_time_s"] < 60
    # Phantom lungs are plausible: no film fell back to the whole image, so no warning line.
    assert "implausible lung mask" not in proc.stdout + proc.stderr


def test_preview_shows_mask_crop_and_result_for_lungs(tmp_path):
    out = tmp_path / "preview.png"
    assert preview(["preprocessing=lungs", f"preprocessing.cache_dir={tmp_path / 'cache'}",
                    "data.sources.synthetic.n_patients=4", "n=2", f"out={out}"]) == 0
    grid = cv2.imread(str(out))
    assert grid.shape[1] >= 2 * 5 * 192  # two films per row, five panels each
