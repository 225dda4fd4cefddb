"""The benchmarks that train most on xray-mini, with --tiny (beside test_benchmarks.py, so that
two workers run them side by side): what each reports obeys its definition."""
from __future__ import annotations

import pytest

from conftest import needs_xray_mini, needs_xray_views
from test_benchmarks import benchmark


@needs_xray_mini
@pytest.mark.slow  # 3 one-epoch runs of the small CNN and 2 logistic regressions on xray-mini
def test_linear_probe_tiny_tests_every_film_once():
    out = benchmark("linear_probe").main(["--tiny"])
    rows = out["probe"]["rows"]
    assert len(rows) == 2 and len(out["probe"]["epochs"]) == 2  # head and LR; the 2 folds asked for
    for row in rows.values():
        assert row["n"] == 174  # every xray-mini film tested once over the folds
        assert sum(row["n_per_class"].values()) == 174 and 0 <= row["auroc"] <= 1
        assert row["auroc_ci95"][0] <= row["auroc"] <= row["auroc_ci95"][1]
    (point,) = out["figures"]
    assert 0 <= point["threshold"] <= 1 and point["wall_s"] > 0 and point["epochs"] == 1
    assert point["half"]["n"] == point["youden"]["n"]  # the 0.5 row is the same run's test split


@needs_xray_mini
@pytest.mark.slow  # 2 one-epoch runs of the small CNN on xray-mini, Grad-CAMs and audit.py of their test films
def test_xray_mini_folds_tiny_pools_every_film_once():
    (recipe,) = benchmark("xray_mini_folds").main(["--tiny"]).values()
    assert len(recipe["runs"]) == len(recipe["aurocs"]) == 2  # the folds asked for
    assert sum(run.results.set("test")["n"] for run in recipe["runs"]) == recipe["pooled"]["n"] == 174
    assert min(recipe["aurocs"]) <= recipe["mean"] <= max(recipe["aurocs"])
    assert 0 <= recipe["pooled"]["auroc"] <= 1 and recipe["wall_s"] > 0
    cams = recipe["cams"]
    assert len(cams) == 174 and cams["lung_fraction"].dropna().between(0, 1).all()
    assert (cams.loc[cams["lung_fraction"].notna(), "lung_source"] == "mask").all()  # --tiny: drawn masks only
    audited = recipe["audit"]  # audit.py of each fold's checkpoint, pooled
    assert audited["films"] == 174 and 0 < audited["transplanted_films"] < 174  # every film once; no-finding films only
    for key in ("lungs_removed", "flips_to_covid"):
        assert audited[key] is None or 0 <= audited[key] <= 1
        if audited[f"{key}_ci95"] is not None:
            low, high = audited[f"{key}_ci95"]
            assert 0 <= low <= high <= 1


@needs_xray_mini
@pytest.mark.slow  # a plain loop and a one-epoch run of the small CNN on xray-mini
def test_overhead_tiny_times_both_loops_once():
    times = benchmark("overhead").main(["--tiny"])
    assert list(times) == ["simple_cnn"]
    (plain,), (ours,) = times["simple_cnn"]["plain"], times["simple_cnn"]["covid_tl"]
    assert plain > 0 and ours > 0


@needs_xray_mini
@pytest.mark.slow  # a one-epoch run of the small CNN on xray-mini and three audits (one with 16 xray-views films)
def test_audit_tiny_times_every_step_of_each_audit():
    out = benchmark("audit").main(["--tiny"])
    test_films = out["run"].results.set("test")["n"]
    records = out["audits"]
    assert records["test split"]["sets"] == {"test": records["test split"]["sets"]["test"]}  # the test split alone
    assert records["mode=data, xray-mini"]["mode"] == "data"
    for row in out["rows"]:
        assert row["seconds"] >= 0
        if row["audit"] == "test split" and row["step"] != "mark bank":
            assert row["films"] == test_films
        if row["audit"] == "mode=data, xray-mini":
            assert row["films"] == 174  # every xray-mini film
    steps = {row["step"] for row in out["rows"] if row["audit"] == "test split"}
    assert steps == set(records["test split"]["seconds"]) and "lungs removed / only" in steps
    if "test split + xray-views" in records:  # the shared data is beside the repository
        sets = records["test split + xray-views"]["sets"]
        (views,) = set(sets) - {"test"}  # the external set, named from its CSV
        assert "xray-views" in views and sets["test"]["n"] == test_films
        assert sets[views]["n"] == 16  # --tiny: 8 films of each label


@needs_xray_mini
@needs_xray_views
@pytest.mark.slow  # a 2-member ensemble of the small CNN, 1 epoch, on xray-mini + xray-views
def test_ensembles_tiny_reports_the_out_of_fold_cut_among_the_folds_own():
    (run,) = benchmark("ensembles").main(["--tiny"])["tiny"].values()
    assert 0 <= run["oof_auroc"] <= 1 and run["epoch"] == 0
    assert run["oof_auroc_ci95"][0] <= run["oof_auroc"] <= run["oof_auroc_ci95"][1]
    low, high = run["fold_cuts"]
    assert 0 <= low <= high <= 1 and 0 <= run["threshold"] <= 1
    for view in ("AP", "PA"):  # both views in the test split, each with both labels
        assert 0 <= run[f"{view}_sens"] <= 1 and 0 <= run[f"{view}_spec"] <= 1
