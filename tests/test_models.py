import numpy as np
import pytest
import torch

from covid_tl.models.backbones import UnknownBackboneError, build_backbone
from covid_tl.models.classifier import build_classifier
from covid_tl.models.freeze import apply_freeze
from covid_tl.models.spec import InputSpec
from covid_tl.preprocess.model_input import to_model_input


@pytest.mark.parametrize("name", ["simple_fc", "simple_cnn"])
def test_simple_backbones_give_one_logit_per_image(name):
    net = build_classifier({"name": name, "input_size": 32, "head": {"hidden": [64]}})
    out = net(torch.randn(5, 1, 32, 32))
    assert out.shape == (5,)
    linears = [m for m in net.head if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [64, 1]


def test_simple_cnn_is_one_conv_layer_then_fc64():
    net = build_classifier({"name": "simple_cnn", "input_size": 32, "conv_channels": 8, "pool": 2})
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 1
    assert net.head[0].in_features == 8 * 16 * 16
    assert net.cam_layer == "conv"


def test_unknown_backbone_lists_the_valid_ones():
    with pytest.raises(UnknownBackboneError, match="valid backbones: simple_cnn, simple_fc"):
        build_backbone("nope")


def test_freeze_none_trains_everything():
    net = build_classifier({"name": "simple_fc", "input_size": 8})
    trainable, total = apply_freeze(net, "none")
    assert trainable == total == 8 * 8 * 64 + 64 + 64 + 1
    with pytest.raises(ValueError, match="valid policies"):
        apply_freeze(net, "everything")


def test_model_input_resizes_normalises_and_repeats_channels():
    image = np.zeros((100, 80), np.uint8)
    image[:, 40:] = 255
    x = to_model_input(image, InputSpec(size=16, channels=3, mean=(0.5,), std=(0.5,)))
    assert x.shape == (3, 16, 16) and x.dtype == np.float32
    assert x[:, :, 0].max() == pytest.approx(-1.0) and x[:, :, -1].min() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="single-channel"):
        to_model_input(np.zeros((4, 4, 3), np.uint8), InputSpec(size=16))


def test_input_spec_checks_its_values():
    with pytest.raises(ValueError, match="3 values for 1 channel"):
        InputSpec(size=16, channels=1, mean=(0.1, 0.2, 0.3))
    assert InputSpec(size=16, channels=3, mean=(0.4,), std=(0.2,)).mean == (0.4, 0.4, 0.4)
