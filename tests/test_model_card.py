"""model_card.md from hand-made results: what it says about sources, metrics and CAM scores."""
import re
import subprocess

from conftest import ROOT
from covid_tl.model_card import cam_rows, model_card, provenance


def rates(n, sensitivity, auroc):
    return {"n": n, "sensitivity": sensitivity, "sensitivity_ci95": [0.5, 1.0], "specificity": 0.25,
            "specificity_ci95": [0.05, 0.7], "accuracy": 0.6, "accuracy_ci95": [0.3, 0.85], "auroc": auroc,
            "threshold": 0.35}


RESULTS = {
    "test": {**rates(10, 0.8, 0.9), "bootstrap_ci95": {"auroc": [0.7, 1.0]},
             "confusion_matrix": {"labels": ["no_finding", "covid"], "matrix": [[1, 3], [1, 5]]},
             "per_source": {"cohen": rates(6, 0.8, None), "nih": {**rates(4, None, None)}}},
    "run": {"backbone": "vgg16", "best_epoch": 1, "epochs_trained": 3, "seed": 7},
}
CONFIG = {"backbone": {"name": "vgg16", "weights": "imagenet", "input_size": 224}, "freeze": {"policy": "conv_base"},
          "data": {"sources": {"cohen": {"_target_": "covid_tl.data.sources.CohenSource"}}, "val_fraction": 0.15,
                   "test_fraction": 0.15, "split_seed": 7},
          "preprocessing": {"crop": {"fraction": 0.05}, "inpaint": None}, "threshold": 0.5}


def summary(covid_sources, no_finding_sources):
    rows = [{"split": "test", "label": label, "source": s, "view": "PA", "images": n, "patients": n}
            for label, sources in (("covid", covid_sources), ("no_finding", no_finding_sources)) for s, n in sources.items()]
    return {"rows": rows, "images": sum(r["images"] for r in rows), "patients": 10, "skipped": 0}


def test_card_reports_metrics_threshold_and_flags_one_source_per_class():
    card = model_card(RESULTS, CONFIG, summary({"cohen": 6}, {"nih": 4}))
    assert "| test | 10 | 0.800 [0.500, 1.000] | 0.250 [0.050, 0.700] | 0.600 [0.300, 0.850] | 0.900 [0.700, 1.000] |" in card
    assert "| test | nih | 4 | - | 0.250 | 0.600 | - |" in card  # undefined rates shown as '-'
    assert "at or above **0.35**" in card  # the threshold the metrics were computed at, not the config's 0.5
    assert "**In this run each class comes from one source** (covid: `cohen`; no_finding: `nih`)" in card
    assert "were left in the images" in card and "No CAM scores were logged" in card


def test_card_with_shared_sources_counts_them_instead():
    card = model_card(RESULTS, CONFIG, summary({"a": 3, "b": 3}, {"b": 4}))
    assert "In this run each class" not in card
    assert "covid: `a` 3, `b` 3; no_finding: `b` 4" in card


def test_cam_rows_take_the_best_and_the_last_epoch(tmp_path):
    csv = tmp_path / "metrics.csv"
    csv.write_text("cam/artifact_fraction,cam/lung_fraction,epoch,val/loss\n"
                   "0.5,0.1,0,\n,,0,0.9\n0.25,0.4,1,\n0.125,0.6,2,\n,,2,0.8\n")
    assert cam_rows(csv, 1) == [("1 (best)", {"artifact_fraction": 0.25, "lung_fraction": 0.4}),
                                ("2 (last)", {"artifact_fraction": 0.125, "lung_fraction": 0.6})]
    assert cam_rows(csv, 2) == [("2 (best, last)", {"artifact_fraction": 0.125, "lung_fraction": 0.6})]
    assert cam_rows(tmp_path / "absent.csv", 0) == []
    card = model_card(RESULTS, CONFIG, summary({"a": 1}, {"a": 1}), cam_rows(csv, 1))
    assert "| 1 (best) | 0.250 | 0.400 |" in card and "| 2 (last) | 0.125 | 0.600 |" in card


def test_provenance_names_this_checkout():
    made = provenance()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert made["covid_tl_version"] and made["git_commit"] == (head or None)
    assert made["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", made["git_commit"])
