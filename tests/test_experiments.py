"""The study's figures as experiment configs (`conf/experiment/paper/`): each composes, sets what
it says, and sweeps only keys and options that exist. Composition only, no training.

`python train.py experiment=paper/<name>` needs `- experiment: null` (after `_self_`) in
conf/train.yaml's defaults; without it the group is appended with `+experiment=paper/<name>`.
These tests use whichever form the current train.yaml takes.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from covid_tl.runtime.config_check import group_options, unknown_group_option
from covid_tl.tasks.report import DEPTH_KEYS

CONF = Path(__file__).resolve().parents[1] / "conf"
PAPER = CONF / "experiment" / "paper"

#: name -> (what the single run sets, the swept key, its values in order)
EXPERIMENTS: dict[str, tuple[dict[str, object], str, list[str]]] = {
    "fig3": ({"backbone.name": "simple_fc", "freeze.policy": "none"}, "backbone", ["simple_fc", "simple_cnn", "vgg16"]),
    "fig4": (
        {"backbone.name": "densenet121", "backbone.weights": "imagenet", "freeze.policy": "none"},
        "backbone.weights",
        ["imagenet", "none"],
    ),
    "fig5": ({"backbone.name": "resnet50", "freeze.policy": "all", "freeze.bn": "frozen"}, "backbone", ["resnet50", "mobilenetv2"]),
    "fig7_exp1": (
        {"backbone.name": "vgg16", "backbone.weights": "imagenet", "freeze.policy": "all", "backbone.keep_fc": 0},
        "backbone.keep_fc",
        ["0", "1", "2", "3"],
    ),
    "fig7_exp2": (
        {"backbone.name": "vgg16", "backbone.weights": "imagenet", "freeze.policy": "conv_base", "backbone.keep_fc": 0},
        "backbone.keep_fc",
        ["0", "1", "2", "3"],
    ),
    "fig7_exp3": (
        {"backbone.name": "vgg16", "backbone.weights": "imagenet", "freeze.policy": "last_n", "freeze.trainable": 0},
        "freeze.trainable",
        ["0", "1", "2", "3"],
    ),
    "fig10": ({"backbone.name": "vgg16", "preprocessing.crop": None}, "preprocessing", ["none", "crop", "crop_inpaint"]),
    "fig11": ({"backbone.name": "vgg16", "watermark.p": 0.5}, "watermark", ["transplant", "none"]),
}
NAMES = sorted(EXPERIMENTS)


def experiment_override(name: str) -> str:
    """`experiment=paper/<name>` when train.yaml's defaults list the group, else `+experiment=...`."""
    defaults = yaml.safe_load((CONF / "train.yaml").read_text())["defaults"]
    listed = any(isinstance(d, dict) and any(k.split()[-1] == "experiment" for k in d) for d in defaults)
    return f"{'' if listed else '+'}experiment=paper/{name}"


def compose_experiment(name: str, *overrides: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", overrides=[experiment_override(name), *overrides], return_hydra_config=True)


def sweep_params(cfg) -> dict[str, list[str]]:
    params = OmegaConf.to_container(cfg.hydra.sweeper.params)
    return {key: [v.strip() for v in str(values).split(",")] for key, values in params.items()}


def is_group(key: str) -> bool:
    return (CONF / key).is_dir()


def single_run_value(cfg, key: str) -> str:
    """What the run without -m takes for a swept key: a group's chosen option, or the value."""
    return cfg.hydra.runtime.choices[key] if is_group(key) else str(OmegaConf.select(cfg, key))


def test_every_figure_has_a_config_and_the_group_lists_them():
    assert sorted(p.stem for p in PAPER.glob("*.yaml")) == NAMES
    assert {f"paper/{n}" for n in NAMES} <= set(group_options(CONF, "experiment"))


@pytest.mark.parametrize("name", NAMES)
def test_is_a_global_package_with_a_documented_command(name):
    text = (PAPER / f"{name}.yaml").read_text()
    assert text.splitlines()[0] == "# @package _global_"
    assert f"python train.py -m experiment=paper/{name}" in text  # the figure's command, with -m
    assert "data=xray_mini" in text  # how to point it at other data


@pytest.mark.parametrize("name", NAMES)
def test_composes_and_sets_what_it_says(name):
    cfg = compose_experiment(name)
    expected, _, _ = EXPERIMENTS[name]
    for key, value in expected.items():
        assert OmegaConf.select(cfg, key) == value, key
    # The study's data by default, with its extra no-finding set.
    assert cfg.hydra.runtime.choices["data"] == "cohen_nih"
    assert set(cfg.data.sources) == {"cohen", "nih"} and cfg.data.extra_no_finding == 200
    assert cfg.optimizer.lr == pytest.approx(1e-4) and cfg.trainer.max_epochs == 20
    for group in ("data", "backbone", "freeze", "preprocessing", "augment", "optimizer", "model"):
        OmegaConf.to_container(cfg[group], resolve=True)  # every interpolation resolves


@pytest.mark.parametrize("name", NAMES)
def test_sweeps_existing_keys_and_options_and_runs_its_first_point_alone(name):
    cfg = compose_experiment(name)
    _, key, values = EXPERIMENTS[name]
    assert sweep_params(cfg) == {key: values}
    assert single_run_value(cfg, key) == values[0]
    if is_group(key):
        assert set(values) <= set(group_options(CONF, key))
    else:
        assert OmegaConf.select(cfg, key, default="<absent>") != "<absent>"
    # The line config_check sees for the whole sweep passes; each point composes.
    assert unknown_group_option(["-m", experiment_override(name), f"{key}={','.join(values)}"], CONF) is None
    for value in values:
        point = compose_experiment(name, f"{key}={value}")
        assert single_run_value(point, key) == value


def test_fig7_sweeps_a_depth_the_report_plots_within_vgg16s_range():
    from torchvision.models.vgg import cfgs

    conv_layers = sum(1 for v in cfgs["D"] if v != "M")
    for name, limit in [("fig7_exp1", 3), ("fig7_exp2", 3), ("fig7_exp3", conv_layers)]:
        _, key, values = EXPERIMENTS[name]
        assert key in DEPTH_KEYS
        assert all(0 <= int(v) <= limit for v in values)


def test_other_data_and_the_offline_backbone_override_the_defaults():
    cfg = compose_experiment(
        "fig7_exp3", "data=xray_mini", "backbone=efficientnet_lite0", "backbone.weights=imagenet_offline"
    )
    assert list(cfg.data.sources) == ["xray_mini"]
    assert cfg.backbone.name == "efficientnet_lite0" and cfg.backbone.weights == "imagenet_offline"
    assert cfg.freeze.policy == "last_n" and sweep_params(cfg) == {"freeze.trainable": ["0", "1", "2", "3"]}


def test_fig4_takes_the_nih_checkpoint_from_the_environment(monkeypatch, tmp_path):
    weights = tmp_path / "nih.pth"
    monkeypatch.delenv("COVID_TL_NIH_WEIGHTS", raising=False)
    assert compose_experiment("fig4").nih_weights is None
    monkeypatch.setenv("COVID_TL_NIH_WEIGHTS", str(weights))
    cfg = compose_experiment("fig4", "backbone.weights=${nih_weights}")
    assert cfg.backbone.weights == str(weights)


def test_config_check_knows_the_experiments():
    for form in ("experiment=paper/fig3", "+experiment=paper/fig3"):
        assert unknown_group_option([form], CONF) is None
    error = unknown_group_option(["experiment=paper/fig99"], CONF)
    assert error is not None and "paper/fig3" in error
