import functools
import types

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from covid_tl.core.errors import ConfigError
from covid_tl.models.backbones import UnknownBackboneError, build_backbone
from covid_tl.models.classifier import build_classifier
from covid_tl.models.freeze import apply_freeze
from covid_tl.models.module import CovidClassifier, balanced_pos_weight
from covid_tl.preprocess.model_input import InputSpec
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
    with pytest.raises(UnknownBackboneError, match="valid backbones: densenet121, .*, simple_cnn, simple_fc, timm, vgg16"):
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


# --- the LightningModule's training options ---------------------------------------------------


def small_module(**options):
    torch.manual_seed(0)
    net = build_classifier({"name": "simple_cnn", "input_size": 16, "head": {"hidden": [4]}})
    apply_freeze(net, "last_n", trainable=1)
    return CovidClassifier(net, optimizer=functools.partial(torch.optim.SGD, lr=0.1), **options)


def test_backbone_lr_scale_makes_head_and_backbone_groups():
    optimizer = small_module().configure_optimizers()
    assert len(optimizer.param_groups) == 1 and optimizer.param_groups[0]["lr"] == 0.1
    module = small_module(backbone_lr_scale=0.1)
    optimizer = module.configure_optimizers()
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert groups["head"]["lr"] == pytest.approx(0.1) and groups["backbone"]["lr"] == pytest.approx(0.01)
    assert {id(p) for p in groups["backbone"]["params"]} == {id(p) for p in module.net.features.parameters()}
    assert {id(p) for p in groups["head"]["params"]} == {id(p) for p in module.net.head.parameters()}
    apply_freeze(module.net, "all")  # a frozen backbone leaves no empty group behind
    assert [g["name"] for g in module.configure_optimizers().param_groups] == ["head"]
    with pytest.raises(ConfigError, match="backbone_lr_scale must be positive"):
        small_module(backbone_lr_scale=0)


@pytest.mark.filterwarnings("ignore:.*self.trainer. reference is not registered")
def test_pos_weight_given_or_balanced_from_train_counts():
    assert balanced_pos_weight(np.array([0, 0, 0, 1])).item() == pytest.approx(3.0)
    with pytest.raises(ConfigError, match="needs both classes"):
        balanced_pos_weight(np.array([0, 0]))
    images, targets = torch.randn(4, 1, 16, 16), torch.tensor([1, 0, 0, 0])
    plain = small_module()
    weighted = small_module(pos_weight=3.0)
    loss_plain = F.binary_cross_entropy_with_logits(plain(images), targets.float(), reduction="none")
    expected = (loss_plain * torch.tensor([3.0, 1, 1, 1])).mean()
    assert weighted._shared_step((images, targets), "train").item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ConfigError, match="'balanced'"):
        small_module(pos_weight="equal")


def test_compile_is_off_by_default_and_in_place_when_on():
    module = small_module()
    module.setup("fit")
    assert module.net._compiled_call_impl is None
    module = small_module(compile=True)
    keys = set(module.state_dict())
    module.setup("fit")
    assert module.net._compiled_call_impl is not None  # compiled at the first call, on the device
    assert set(module.state_dict()) == keys  # checkpoints keep their net.* keys


def test_channels_last_applies_on_cuda_only():
    module = small_module()
    assert module.channels_last and not module.uses_channels_last  # CPU here
    module._use_memory_format()
    assert module.net.features.conv.weight.is_contiguous()


class CountedData(pl.LightningDataModule):
    """Three no-finding images per COVID-19 one, with the `subset(split).targets` of XrayDataModule."""

    targets = np.array([0, 0, 0, 1] * 2)

    def subset(self, split):
        return types.SimpleNamespace(targets=self.targets)

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.randn(8, 1, 16, 16), torch.from_numpy(self.targets)), batch_size=4)


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore:.*LeafSpec.*")
def test_balanced_pos_weight_comes_from_the_training_split(tmp_path):
    module = small_module(pos_weight="balanced")
    trainer = pl.Trainer(
        max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=CountedData())
    assert module.pos_weight.item() == pytest.approx(3.0)
