"""model_card.md from hand-made results: what it says about sources, metrics and CAM scores."""
from covid_tl.engine.model_card import model_card, write_model_card
from covid_tl.preprocess.model_input import InputSpec
from covid_tl.reporting.results import Results


def rates(n, sensitivity, auroc):
    return {"n": n, "sensitivity": sensitivity, "sensitivity_ci95": [0.5, 1.0], "specificity": 0.25,
            "specificity_ci95": [0.05, 0.7], "accuracy": 0.6, "accuracy_ci95": [0.3, 0.85], "auroc": auroc,
            "threshold": 0.35}


RESULTS = Results(sets={
    "test": {**rates(10, 0.8, 0.9), "bootstrap_ci95": {"auroc": [0.7, 1.0]},
             "confusion_matrix": {"labels": ["no_finding", "covid"], "matrix": [[1, 3], [1, 5]]},
             "per_source": {"cohen": rates(6, 0.8, None), "nih": {**rates(4, None, None)}}}},
    run={"backbone": "vgg16", "best_checkpoint": "checkpoints/epoch001.ckpt", "best_epoch": 1, "epochs_trained": 3,
         "seed": 7})
CONFIG = {"backbone": {"name": "vgg16", "weights": "imagenet", "input_size": 224}, "freeze": {"policy": "conv_base"},
          "data": {"sources": {"cohen": {"_target_": "covid_tl.data.sources.CohenSource"}}, "val_fraction": 0.15,
                   "test_fraction": 0.15, "split_seed": 7},
          "preprocessing": {"crop": None, "inpaint": None}, "threshold": 0.5}
SPEC = InputSpec(224, 3)


def summary(covid_sources, no_finding_sources):
    rows = [{"split": "test", "label": label, "source": s, "view": "PA", "images": n, "patients": n}
            for label, sources in (("covid", covid_sources), ("no_finding", no_finding_sources)) for s, n in sources.items()]
    return {"rows": rows, "images": sum(r["images"] for r in rows), "patients": 10, "skipped": 0}


def test_card_reports_metrics_threshold_and_flags_one_source_per_class():
    card = model_card(RESULTS, CONFIG, summary({"cohen": 6}, {"nih": 4}), SPEC)
    assert "| test | 10 | 0.800 [0.500, 1.000] | 0.250 [0.050, 0.700] | 0.600 [0.300, 0.850] | 0.900 [0.700, 1.000] |" in card
    assert "| test | nih | 4 | - | 0.250 | 0.600 | - |" in card  # undefined rates shown as '-'
    assert "at or above **0.35**" in card  # the threshold the metrics were computed at, not the config's 0.5
    assert "**In this run each class comes from one source** (covid: `cohen`; no_finding: `nih`)" in card
    assert "were left in the images" in card and "No CAM scores were logged" in card


def test_card_with_shared_sources_counts_them_instead():
    card = model_card(RESULTS, CONFIG, summary({"a": 3, "b": 3}, {"b": 4}), SPEC)
    assert "In this run each class" not in card
    assert "covid: `a` 3, `b` 3; no_finding: `b` 4" in card


def test_cam_table_is_the_records_rows():
    cam = [{"epoch": 1, "which": "best", "artifact_fraction": 0.25, "lung_fraction": 0.4},
           {"epoch": 2, "which": "last", "artifact_fraction": 0.125, "lung_fraction": 0.6}]
    results = Results(sets=RESULTS.sets, run=RESULTS.run, cam=cam)
    card = model_card(results, CONFIG, summary({"a": 1}, {"a": 1}), SPEC)
    assert "| epoch | artifact_fraction | lung_fraction |" in card
    assert "| 1 (best) | 0.250 | 0.400 |" in card and "| 2 (last) | 0.125 | 0.600 |" in card


def test_written_card_names_the_presets_of_the_runs_hydra_record(tmp_path):
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "hydra.yaml").write_text(
        "hydra:\n  runtime:\n    choices:\n      preprocessing: none\n      augment: study\n      debug: null\n")
    config = {**CONFIG, "augment": {"_target_": "covid_tl.preprocess.augment.build_augmentation",
                                    "rotate": {"p": 1, "range": [-10, 10]}, "shear": {"p": 0, "range": [-5, 5]}},
              "watermark": {"p": 0.0}}
    card = write_model_card(tmp_path, RESULTS, config, summary({"a": 1}, {"a": 1}), SPEC).read_text()
    assert "- preprocessing `none`: no step" in card
    assert "- augmentation `study`: each training image: rotate with p 1, range [-10, 10]; borders revealed filled by " \
           "reflect (covid_tl.preprocess.augment.build_augmentation)" in card
    assert "no watermark transplant" in card and "shear" not in card
