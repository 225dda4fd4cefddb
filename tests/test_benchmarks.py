"""Every benchmark under benchmarks/ runs with --tiny, and what it reports obeys its definition;
the harness's pooled out-of-fold AUROC against a hand-worked value. (gpu.py: test_benchmarks_gpu.py.)"""
from __future__ import annotations

import importlib.util
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
