"""The backbone registry: every entry trains, has a Grad-CAM layer, units, an input spec, a config."""
import importlib.util
import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from covid_tl.runtime.config_check import group_options
from covid_tl.core.errors import ConfigError
from covid_tl.models.backbones import (
    BACKBONES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_backbone,
    builder_options,
)
from covid_tl.models.classifier import build_classifier
from covid_tl.models.freeze import apply_freeze
from covid_tl.preprocess.model_input import InputSpec
from covid_tl.preprocess.model_input import to_model_input

CONF = Path(__file__).resolve().parents[1] / "conf"
HAS_XRV = importlib.util.find_spec("torchxrayvision") is not None
SIZE = 32


def needs(name):
    if name == "xrv_densenet121" and not HAS_XRV:
        pytest.skip("torchxrayvision is not installed (pip install 'covid-tl[xrv]')")


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_trains_a_step_and_has_a_4d_cam_layer(name):
    needs(name)
    torch.manual_seed(0)
    net = build_classifier({"name": name, "input_size": SIZE, "weights": "none", "head": {"hidden": [8]}})
    spec = net.input_spec
    assert spec.size == SIZE
    x = torch.randn(2, spec.channels, SIZE, SIZE)

    activations = []
    if net.cam_layer is None:
        assert name == "simple_fc"
    else:
        layer = net.features.get_submodule(net.cam_layer)
        layer.register_forward_hook(lambda module, args, out: activations.append(out))

    net.train()
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    logits = net(x)
    assert logits.shape == (2,)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor([0.0, 1.0]))
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert not torch.equal(before["head.0.weight"], net.head[0].weight)
    if net.cam_layer is not None:
        assert activations and activations[0].dim() == 4 and activations[0].shape[0] == 2

    # The units are ordered, disjoint and cover every backbone parameter (no FC layers kept).
    names = [n for n, _ in net.features.named_parameters()]
    covered = [n for n in names for unit in net.units if any(n == p or n.startswith(p + ".") for p in unit)]
    assert sorted(covered) == sorted(names)
    if net.units:
        first = net.units[0][0]
        assert names[0] == first or names[0].startswith(first + ".")


def test_timm_backbones_take_size_and_normalisation_from_pretrained_cfg():
    net = build_classifier({"name": "mobilenetv2", "weights": "none"})
    assert net.input_spec == InputSpec(224, 3, IMAGENET_MEAN, IMAGENET_STD)
    assert net.backbone_name == "mobilenetv2"
    small = build_backbone("timm", model="resnet18", input_size=40)
    assert small.name == "timm/resnet18" and small.input_spec.size == 40 and small.cam_layer == "layer4"
    assert small.units[0] == ("conv1", "bn1") and small.units[-1] == ("layer4.1",)


def test_grayscale_is_repeated_for_three_channel_backbones():
    spec = build_backbone("vgg16", input_size=16).input_spec
    x = to_model_input(np.full((20, 20), 255, np.uint8), spec)
    assert x.shape == (3, 16, 16)
    assert x[:, 0, 0] == pytest.approx([(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)])


def test_keep_fc_only_where_there_are_fc_layers():
    with pytest.raises(ConfigError, match="resnet50 has no pretrained FC layers to keep; keep_fc must be 0, got 2"):
        build_classifier({"name": "resnet50", "input_size": SIZE}, keep_fc=2)
    with pytest.raises(ConfigError, match="keep_fc must be 0-3, got 4"):
        build_backbone("vgg16", keep_fc=4, input_size=SIZE)


def test_unknown_options_and_models_are_one_line_config_errors():
    with pytest.raises(ConfigError, match="backbone resnet50 has no option 'conv_channels'; its options: input_size"):
        build_backbone("resnet50", conv_channels=3)
    with pytest.raises(ConfigError, match="timm cannot build 'no_such_net'"):
        build_backbone("timm", model="no_such_net")


def test_backbone_configs_mirror_their_builders():
    """Each option as composed: conf/backbone/_base.yaml's shared keys, then its own file's."""
    options = group_options(CONF, "backbone")
    assert set(options) == set(BACKBONES)
    with initialize_config_dir(str(CONF), version_base="1.3"):
        files = {option: OmegaConf.to_container(compose("train", [f"backbone={option}"]).backbone) for option in options}
    for option, cfg in files.items():
        assert cfg["name"] == option == BACKBONES[option].__name__  # the key is the builder's own name
        assert set(cfg) - {"name", "weights", "trust_weights", "head"} == set(builder_options(option)), option
        assert cfg["head"] == {"hidden": [64], "dropout": 0.0}, option
        assert cfg["trust_weights"] is False, option  # weights files load weights only unless asked
    # _base's imagenet, unless the option has no ImageNet weights
    own = {"simple_cnn": "none", "simple_fc": "none", "xrv_densenet121": "densenet121-res224-nih"}
    assert {option: cfg["weights"] for option, cfg in files.items()} == {o: own.get(o, "imagenet") for o in options}


def test_freeze_configs_mirror_apply_freeze():
    parameters = set(inspect.signature(apply_freeze).parameters) - {"model"}
    for path in (CONF / "freeze").glob("*.yaml"):
        cfg = yaml.safe_load(path.read_text())
        assert cfg["policy"] == path.stem
        assert cfg["_target_"] == "covid_tl.models.freeze.apply_freeze" and cfg["_partial_"] is True
        assert set(cfg) - {"_target_", "_partial_"} <= parameters, path.name


def test_xrv_densenet121_is_one_channel_in_its_own_range():
    needs("xrv_densenet121")
    backbone = build_backbone("xrv_densenet121", input_size=SIZE)
    assert backbone.input_spec.channels == 1
    x = to_model_input(np.array([[0, 255]], np.uint8).repeat(2, 0), backbone.input_spec)
    assert x.min() == pytest.approx(-1024) and x.max() == pytest.approx(1024)
    assert {"densenet121-res224-nih", "nih", "densenet121-res224-chex", "chex"} <= set(backbone.sources)
