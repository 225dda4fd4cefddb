"""Every benchmark under benchmarks/ runs with --tiny, and what it reports obeys its definition;
the harness's pooled out-of-fold AUROC against a hand-worked value. The benchmarks that train
most on xray-mini are in test_benchmarks_xray_mini.py (a file per worker: the two run side by
side), gpu.py's in test_benchmarks_gpu.py."""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import needs_xray_mini

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def benchmark(name: str):
    """benchmarks/<name>.py as a module (its folder on sys.path, as when run as a script)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def fold(paths, labels, probabilities):
    return pd.DataFrame({"path": paths, "label": labels, "prob_covid": probabilities, "patient_id": paths})


def test_audit_numbers_read_the_first_set_and_none_where_skipped():
    audit_numbers = benchmark("harness").audit_numbers
    record = {"sets": {"test": {"n": 4}, "views": {"n": 2}}, "tests": [
        {"test": "lungs removed", "set": "views", "metric": "AUROC", "value": 0.9, "ci95": [0.8, 1.0]},
        {"test": "lungs removed", "set": "test", "metric": "AUROC", "value": 0.6, "ci95": [0.4, 0.8]},
        {"test": "lungs only", "set": "test", "skipped": "one class"},
        {"test": "mark transplant", "set": "test", "metric": "covid -> no_finding", "value": 0.5, "ci95": [0.0, 1.0]},
        {"test": "mark transplant", "set": "test", "metric": "no_finding -> covid", "value": 0.25, "ci95": [0.0, 0.5]},
        {"test": "source probe (no_finding)", "set": "test+views", "metric": "AUROC", "value": 0.7, "ci95": [0.6, 0.8]},
        {"test": "view probe (covid)", "set": "test+views", "metric": "AUROC", "value": 0.4, "ci95": [0.2, 0.6]},
        {"test": "view probe (no_finding)", "set": "test+views", "metric": "AUROC", "value": 0.95, "ci95": [0.9, 1.0]}]}
    numbers = audit_numbers(record)
    assert numbers == {"set": "test", "lungs_removed": 0.6, "lungs_removed_ci95": [0.4, 0.8], "lungs_only": None,
                       "lungs_only_ci95": None, "flips_to_covid": 0.25, "flips_to_covid_ci95": [0.0, 0.5],
                       "source_probe": 0.7, "source_probe_ci95": [0.6, 0.8],  # the probes span every set
                       "view_probe": 0.95, "view_probe_ci95": [0.9, 1.0]}  # of no-finding films, not COVID-19's
    views = audit_numbers(record, "views")
    assert (views["set"], views["lungs_removed"], views["flips_to_covid"], views["source_probe"]) == ("views", 0.9, None, 0.7)


def test_pooled_out_of_fold_auroc_ranks_every_image_once():
    pooled_out_of_fold = benchmark("harness").pooled_out_of_fold
    # Fold A ranks its pair right (AUROC 1), fold B wrong (AUROC 0): pooled, the COVID-19 films
    # 0.9 and 0.3 against the others 0.2 and 0.4 win 3 of 4 pairs (0.3 < 0.4): 0.75, not the
    # folds' mean 0.5. At 0.5: one of two COVID-19 films called (0.9), both others not.
    a = fold(["a1", "a2"], ["covid", "no_finding"], [0.9, 0.2])
    b = fold(["b1", "b2"], ["covid", "no_finding"], [0.3, 0.4])
    pooled = pooled_out_of_fold([a, b], resamples=200)
    assert pooled["auroc"] == pytest.approx(0.75)
    assert (pooled["n"], pooled["sensitivity"], pooled["specificity"]) == (4, 0.5, 1.0)
    low, high = pooled["auroc_ci95"]
    assert 0 <= low <= high <= 1
    with pytest.raises(ValueError, match="a1 is in the test split of more than one fold"):
        pooled_out_of_fold([a, a])


def test_every_benchmark_has_a_tiny_mode_run_here():
    """A new benchmark without a --tiny run in tests/test_benchmarks*.py fails here."""
    helpers = {"harness", "films"}  # imported by the others, which run them
    scripts = {p.stem for p in BENCHMARKS.glob("*.py")} - helpers
    tests = "".join(p.read_text() for p in Path(__file__).parent.glob("test_benchmarks*.py"))
    tested = set(re.findall(r'benchmark\("(\w+)"\)\.main\(\[[^]]*"--tiny"', tests)) | {"gpu"}
    assert scripts - tested == set()
    for name in scripts:
        assert '"--tiny"' in (BENCHMARKS / f"{name}.py").read_text(), name


@needs_xray_mini
@pytest.mark.slow  # 3 one-epoch runs of the small CNN on xray-mini
def test_frozen_fast_path_tiny_warm_cache_trains_the_same_model():
    runs = benchmark("frozen_fast_path").main(["--tiny"])
    assert list(runs) == ["cold", "warm", "images"]
    for run in runs.values():
        assert 0 < run.fit_s < run.wall_s  # trainer.fit is part of the run
    cold, warm = (runs[k].results.set("test") for k in ("cold", "warm"))
    assert warm["auroc"] == pytest.approx(cold["auroc"], abs=1e-6)  # features read back = features computed
    assert cold["n"] == runs["images"].results.set("test")["n"]


@pytest.mark.slow  # one one-epoch run on phantoms of three hospitals and audit.py of its checkpoint
def test_source_shift_tiny_reports_the_held_out_hospital():
    rows = benchmark("source_shift").main(["--tiny"])
    ((shift, wall, cpu, audited),) = rows["cnn_none"]  # one setting, one seed
    assert shift["source"] == "hospital_c" and wall > 0 and cpu > 0
    assert audited["set"] == "test"  # the audit's films: the test split, hospital C
    for key in ("lungs_removed", "flips_to_covid", "lungs_removed_in_dist", "source_probe"):  # None: skipped
        assert audited[key] is None or 0 <= audited[key] <= 1
        if audited[key] is not None and audited[f"{key}_ci95"] is not None:
            low, high = audited[f"{key}_ci95"]
            assert 0 <= low <= high <= 1
    for metric in ("specificity", "sensitivity", "auroc"):
        figures = shift[metric]
        assert 0 <= figures["shifted"] <= 1
        if figures["in_distribution"] is not None:
            assert figures["drop"] == pytest.approx(figures["in_distribution"] - figures["shifted"])


def test_site_calibration_tiny_reports_each_cut_on_hospital_c():
    """The label-free cut calls the share of C's films it matched; today's cut is the model's own."""
    (row,) = benchmark("site_calibration").main(["--tiny"])
    assert row["model"] == "seed 1" and 0 <= row["em_prevalence"] <= 1 and row["prevalence"] == pytest.approx(0.5, abs=0.15)
    for cut in ("today", "drawn", "free", "em"):
        assert all(rate is None or 0 <= rate <= 1 for rate in row[cut])
    assert 0 < row["free_cut"] < 1 and 0 < row["drawn_cut"] < 1
    assert set(row["wrong"]) == {0.25}  # label-free at a given prevalence too


@pytest.mark.slow  # a two-epoch run on small phantoms with the Grad-CAM callback
def test_cam_callback_tiny_times_the_callback_inside_each_epoch():
    out = benchmark("cam_callback").main(["--tiny"])
    assert len(out["epochs"]) == len(out["callback"]) == 2  # the epochs asked for
    assert all(0 < cam < epoch for cam, epoch in zip(out["callback"], out["epochs"]))
    assert 0 < out["share"] < 1


def test_loader_tiny_reads_every_film():
    rates = benchmark("loader").main(["--tiny"])
    figures = rates[16][0]  # 16 films, 0 workers
    assert figures["setup_s"] > 0 and all(figures[e] > 0 for e in ("first", "second", "uncached"))


def test_preprocess_cache_tiny_times_every_variant():
    figures = benchmark("preprocess_cache").main(["--tiny"])
    assert set(figures) == {"none", "cold", "warm", "cold_setup", "warm_setup"}
    assert all(seconds > 0 for seconds in figures.values())


def test_mark_detector_tiny(tmp_path):
    figures = benchmark("mark_detector").main(["--tiny", "--out", str(tmp_path)])
    for size in (128, 256):
        assert figures[size]["images"] == 4 and 0 <= figures[size]["pooled_iou"] <= 1
        assert min(figures[size]["per_seed_pooled_iou"]) <= figures[size]["pooled_iou"] <= 1
    assert (tmp_path / "phantom_marks.png").is_file()
    if "xray_mini" in figures:  # the shared data is there
        counts = [int(c.split("/")[1]) for c in figures["xray_mini"]["nonempty_counts"].values()]
        assert sum(counts) == 12 and 0 <= figures["xray_mini"]["cohen_masked_in_lung_fraction"] <= 1


@needs_xray_mini
def test_segmenter_tiny_scores_films_of_both_sources():
    table = benchmark("segmenter").main(["--tiny"])
    assert len(table) == 8 and set(table["source"]) == {"cohen", "nih"}
    assert (table["ms"] > 0).all() and table["dice"].dropna().between(0, 1).all()
    assert table.loc[table["source"] == "cohen", "dice"].notna().all()  # Cohen films come with drawn masks


@needs_xray_mini
@pytest.mark.slow  # a one-epoch run of the small CNN and two evaluate.py cams=true on its test films
def test_cam_lungs_tiny_compares_masks_with_the_segmenter(tmp_path):
    out = benchmark("cam_lungs").main(["--tiny", "--out", str(tmp_path / "cam_lungs.png")])
    assert [e["class"] for e in out["entries"]] == ["COVID-19", "no finding", "COVID-19"]
    for entry in out["entries"]:
        low, high = entry["lung_fraction_ci"]
        assert 0 <= low <= entry["lung_fraction"] <= high <= 1
    assert len(out["pair"]) == out["entries"][0]["images"]  # every Cohen test film scored both ways
    assert -1 <= out["r"] <= 1 and (tmp_path / "cam_lungs.png").is_file()
