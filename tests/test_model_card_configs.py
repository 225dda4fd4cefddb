"""model_card.md of every shipped `experiment=` and `preprocessing=` config, built without training
from a hand-made Results record: each statement the card makes is checked against the composed
config, the network's input spec and the record (issue 19: a robust run's card said "input None
px", "preprocessing: none" and that marks "were left in the images")."""
from __future__ import annotations

import functools

import pytest
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from conftest import ROOT, composed
from covid_tl.core.formatting import number
from covid_tl.engine.model_card import model_card
from covid_tl.stats.operating_point import is_rule
from covid_tl.reporting.results import Results

EXPERIMENTS = sorted(str(p.relative_to(ROOT / "conf/experiment").with_suffix(""))
                     for p in (ROOT / "conf/experiment").rglob("*.yaml"))
PREPROCESSING = sorted(p.stem for p in (ROOT / "conf/preprocessing").glob("*.yaml"))
SHIPPED = [f"experiment={e}" for e in EXPERIMENTS] + [f"preprocessing={p}" for p in PREPROCESSING]
MARK_STEPS = ("inpaint", "crop", "lungs")
CAM = [{"epoch": 3, "which": "best", "artifact_fraction": 0.0625, "lung_area": 0.4375, "lung_fraction": 0.71875},
       {"epoch": 5, "which": "last", "artifact_fraction": 0.125, "lung_area": 0.4375, "lung_fraction": 0.65625}]
COMMIT = "0123456789abcdef0123456789abcdef01234567"  # not this checkout's: the card must name the record's


def rates(n):
    return {"n": n, "sensitivity": 0.75, "sensitivity_ci95": [0.5, 0.9], "specificity": 0.5,
            "specificity_ci95": [0.25, 0.75], "accuracy": 0.625, "accuracy_ci95": [0.4, 0.8], "auroc": 0.875}


def record(threshold, best_checkpoint="checkpoints/epoch003.ckpt"):
    """A Results as train writes it: a rule's cut chosen on 26 validation images, else the config's number."""
    rule = is_rule(threshold)
    point = {"rule": threshold, "threshold": 0.3125 if rule else float(threshold), "temperature": 1.0,
             "split": "val" if rule else None, "n": 26 if rule else None}
    test = {**rates(8), "bootstrap_ci95": {"auroc": [0.625, 1.0]}, "per_source": {"synthetic": rates(8)},
            "confusion_matrix": {"labels": ["no_finding", "covid"], "matrix": [[2, 2], [1, 3]]}}
    run = {"backbone": "b", "best_checkpoint": best_checkpoint, "best_epoch": 3 if best_checkpoint else None,
           "best_monitor": "val/loss", "best_score": 0.25 if best_checkpoint else None, "epochs_trained": 6,
           "parameters": {"trainable": 10, "total": 100}, "seed": 7,
           "versions": {"covid-tl": "9.9.9"}, "git": {"commit": COMMIT, "dirty": True}}
    return Results(sets={"test": test}, run=run, operating_point=point, cam=CAM)


SUMMARY = {"images": 8, "patients": 8, "skipped": 0,
           "rows": [{"split": "test", "label": label, "source": "synthetic", "view": "PA", "images": 4, "patients": 4}
                    for label in ("covid", "no_finding")]}


@functools.cache
def input_spec(backbone_yaml: str):
    """The spec of the network the backbone config builds (untrained: the spec does not depend on weights)."""
    from covid_tl.models.classifier import build_classifier

    return build_classifier(OmegaConf.create(backbone_yaml), load_pretrained=False).input_spec


@functools.cache
def bundled_segmenter():
    from covid_tl.models.segmenter import LungSegmenter

    return LungSegmenter.load()


def card_of(*overrides, results=None):
    """(card, config dict, input spec, choices) of `python train.py <overrides>`, results made by hand."""
    cfg = composed("train", *overrides)
    choices = {k: v for k, v in HydraConfig.get().runtime.choices.items() if v is not None}
    config = OmegaConf.to_container(cfg, resolve=True)
    spec = input_spec(OmegaConf.to_yaml(cfg.backbone))
    lungs = config["preprocessing"].get("lungs")
    segmenter = bundled_segmenter() if lungs is not None else None
    results = results or record(config["threshold"])
    return model_card(results, config, SUMMARY, spec, segmenter, choices), config, spec, choices


@functools.cache
def shipped_card(override):
    """card_of a shipped config, built once for the tests that read it."""
    return card_of(override)


def section(card, title):
    return card.split(f"## {title}")[1].split("\n## ")[0]


@pytest.mark.parametrize("override", SHIPPED)
def test_card_names_every_step_of_the_config_it_was_built_from(override):
    card, config, spec, choices = shipped_card(override)
    model = section(card, "Model")
    preprocessing = config["preprocessing"]
    steps = [key for key in MARK_STEPS if preprocessing.get(key) is not None]

    # The size every film was resized to is the spec's, never a config key that may be null.
    assert f"input {spec.size} x {spec.size} px, {spec.channels} channel(s)" in model and "None px" not in card
    # Every preprocessing step, in the order the pipeline runs them, with the preset's name.
    numbered = [line.split(". ", 1)[1].split(":")[0] for line in model.splitlines() if line.startswith("  ")]
    assert numbered == steps
    assert f"preprocessing `{choices['preprocessing']}`" in model
    assert ("no step" in model) == (not steps) and "preprocessing: none" not in card
    if "lungs" in steps:
        lungs = preprocessing["lungs"]
        assert f"digest `{bundled_segmenter().digest}`" in model and "the bundled lung segmenter" in model
        assert f"margin of {lungs['margin']} " in model and f"`standardize={lungs['standardize']}`" in model
        assert f"under {lungs['min_area']} or over {lungs['max_area']}" in model
    if "crop" in steps:
        assert f"then {preprocessing['crop']['fraction']} of what is left cut from each side" in model
    if "inpaint" in steps:
        assert f"OpenCV `{preprocessing['inpaint']['method']}`" in model
    # Marks are "left in the images" exactly when no step removes any.
    assert ("were left in the images" in card) == (not steps)


@pytest.mark.parametrize("override", SHIPPED)
def test_card_states_freeze_augmentation_and_threshold_as_configured(override):
    card, config, _, choices = shipped_card(override)
    model, threshold = section(card, "Model"), section(card, "Threshold")
    freeze = config["freeze"]
    assert f"freeze policy `{freeze['policy']}`" in model and "10 of 100 parameters trained" in model
    keep_fc = config["backbone"].get("keep_fc") or 0
    if freeze["policy"] == "last_n":
        assert f"the last {freeze['trainable']} unit(s) of the backbone train" in model
    if freeze["policy"] in ("all", "conv_base"):
        assert ("FC layer(s)" in model) == (keep_fc > 0) and "only the new head trains" in model
    watermark = config["watermark"]["p"]
    assert f"augmentation `{choices['augment']}`" in model
    assert (f"with p {watermark}, " in model) == (watermark > 0)
    assert ("no watermark transplant" in model) == (watermark == 0)
    if is_rule(config["threshold"]):  # the rule, and the films it was chosen on
        assert "**0.3125**" in threshold and f"`threshold={config['threshold']}`" in threshold
        assert "on the val split's 26 images" in threshold and "with the best checkpoint" in threshold
    else:
        assert f"**{config['threshold']:.4g}**" in threshold and "the number the run config set" in threshold


def test_presets_name_the_steps_they_turn_on():
    study = section(card_of("augment=study")[0], "Model")
    assert "augmentation `study`: each training image: rotate with p 1, range [-10, 10]; shear with p 1, range [-5, 5]; " \
           "scale with p 1, range [0.9, 1.1]; borders revealed filled by reflect" in study
    acquisition = section(card_of("augment=acquisition", "augment.blur.p=0")[0], "Model")
    assert "gamma with p 0.8, range [0.6, 1.7]" in acquisition and "blur" not in acquisition
    chain = section(card_of("augment=imaging_chain")[0], "Model")
    assert "translate with p 1, range [-0.06, 0.06]; gamma with p 0.5, range [0.6, 1.7]; " in chain
    assert "borders revealed filled by constant" in chain
    exp2 = section(card_of("experiment=paper/fig7_exp2", "backbone.keep_fc=2")[0], "Model")
    assert "freeze policy `conv_base`: the convolutional base is frozen; its 2 kept pretrained FC layer(s) train" in exp2
    fig11 = card_of("experiment=paper/fig11")[0]
    assert "augmentation `none`: no random augmentation; watermark transplant `transplant`" in fig11
    assert "pasted onto no-finding training images with p 0.5, [1, 2] per image" in fig11
    assert "marks were also pasted onto no-finding training images (p 0.5)" in section(fig11, "Shortcut risks")


def test_card_reads_cam_scores_and_code_record_from_results():
    card = shipped_card("experiment=robust")[0]
    assert "| 3 (best) | 0.062 | 0.438 | 0.719 |" in card and "| 5 (last) | 0.125 | 0.438 | 0.656 |" in card
    assert all(number(row["lung_fraction"]) in section(card, "Where the model looks (Grad-CAM)") for row in CAM)
    # One provenance: the commit results.json records, not whatever checkout writes the card.
    assert f"Written by covid-tl 9.9.9, commit {COMMIT[:12]} with local changes at the end of training" in card


def test_a_run_without_checkpoints_says_whose_weights_its_results_are():
    """debug=fdr: fast_dev_run saves no best checkpoint; every number is of the weights at the end."""
    card, config, _, _ = card_of("debug=fdr", "threshold=youden", results=record("youden", best_checkpoint=None))
    assert config["trainer"]["fast_dev_run"] is True
    assert "None" not in section(card, "Model") and "best checkpoint `" not in card
    assert "(best checkpoint)" not in card and "with the best checkpoint" not in card
    assert "## Results (weights at the end of training)" in card
    assert "no best checkpoint (trainer.fast_dev_run skips choosing one)" in card
    assert "1 batch(es) of training and validation (trainer.fast_dev_run)" in card
    assert "chosen after training with the weights at the end of training" in section(card, "Threshold")
