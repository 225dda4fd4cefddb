"""Freeze policies train exactly what they say, checked by parameter name."""
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from covid_tl.models.classifier import build_classifier
from covid_tl.models.freeze import FreezeError, apply_freeze, parameter_counts
from covid_tl.models.module import CovidClassifier

SIZE = 32
VGG_CONVS = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]  # torchvision's vgg16.features indices
VGG_FC = [0, 3, 6]  # torchvision's vgg16.classifier indices of the three FC layers
_NETS = {}


def trainable_names(model):
    return {name for name, p in model.named_parameters() if p.requires_grad}


@pytest.fixture(scope="module", autouse=True)
def _release_nets():
    yield
    _NETS.clear()


def net(name, keep_fc=0):
    """One build per (backbone, keep_fc) in this module (VGG16's FC layers are big to build)."""
    if (name, keep_fc) not in _NETS:
        torch.manual_seed(0)
        _NETS[name, keep_fc] = build_classifier({"name": name, "input_size": SIZE, "weights": "none"}, keep_fc=keep_fc)
    return _NETS[name, keep_fc]


def names_under(model, *prefixes):
    return {n for n, _ in model.named_parameters() if any(n.startswith(p + ".") for p in prefixes)}


def all_names(model):
    return {n for n, _ in model.named_parameters()}


def conv_params(indices):
    return {f"features.features.{i}.{w}" for i in indices for w in ("weight", "bias")}


def fc_params(k):
    return {f"features.classifier.{i}.{w}" for i in VGG_FC[:k] for w in ("weight", "bias")}


HEAD = {"head.0.weight", "head.0.bias", "head.2.weight", "head.2.bias"}


@pytest.mark.parametrize("keep_fc", [0, 1, 2, 3])
def test_vgg16_policies_with_keep_fc(keep_fc):
    model = net("vgg16") if keep_fc == 0 else build_classifier({"name": "vgg16", "input_size": SIZE}, keep_fc=keep_fc)
    assert model.keep_fc == keep_fc
    assert model.head[0].in_features == [512 * 7 * 7, 4096, 4096, 1000][keep_fc]
    assert all_names(model) == HEAD | conv_params(VGG_CONVS) | fc_params(keep_fc)
    assert model(torch.randn(2, 3, SIZE, SIZE)).shape == (2,)

    apply_freeze(model, "none", keep_fc=keep_fc)
    assert trainable_names(model) == all_names(model)

    trainable, total = apply_freeze(model, "all", keep_fc=keep_fc)
    assert trainable_names(model) == HEAD
    assert (trainable, total) == parameter_counts(model)
    assert trainable == sum(p.numel() for p in model.head.parameters())

    apply_freeze(model, "conv_base", keep_fc=keep_fc)
    assert trainable_names(model) == HEAD | fc_params(keep_fc)

    if keep_fc:
        with pytest.raises(FreezeError, match="last_n drops the pretrained FC layers: set keep_fc=0"):
            apply_freeze(model, "last_n", keep_fc=keep_fc, trainable=1)
        with pytest.raises(FreezeError, match=f"model was built with keep_fc={keep_fc}"):
            apply_freeze(model, "all", keep_fc=0)


@pytest.mark.parametrize("n", [0, 1, 3, 13])
def test_vgg16_last_n_trains_the_last_n_conv_layers(n):
    model = net("vgg16")
    apply_freeze(model, "last_n", trainable=n)
    assert trainable_names(model) == HEAD | conv_params(VGG_CONVS[len(VGG_CONVS) - n:])


def test_vgg16_last_n_beyond_its_conv_layers_is_an_error():
    with pytest.raises(FreezeError, match="trainable must be 0-13 for backbone vgg16"):
        apply_freeze(net("vgg16"), "last_n", trainable=14)


def test_resnet50_policies_by_name():
    model = net("resnet50")
    apply_freeze(model, "all")
    assert trainable_names(model) == names_under(model, "head")
    apply_freeze(model, "conv_base")
    assert trainable_names(model) == names_under(model, "head")
    apply_freeze(model, "last_n", trainable=2)
    assert trainable_names(model) == names_under(model, "head", "features.layer4.1", "features.layer4.2")
    apply_freeze(model, "last_n", trainable=4)
    assert trainable_names(model) == names_under(model, "head", "features.layer4", "features.layer3.5")
    apply_freeze(model, "last_n", trainable=17)  # stem + 16 bottleneck blocks
    assert trainable_names(model) == all_names(model)
    with pytest.raises(FreezeError, match="0-17"):
        apply_freeze(model, "last_n", trainable=18)


def test_mobilenetv2_policies_by_name():
    model = net("mobilenetv2")
    apply_freeze(model, "all")
    assert trainable_names(model) == names_under(model, "head")
    apply_freeze(model, "last_n", trainable=1)  # the last block with the head conv
    last = names_under(model, "head", "features.blocks.6", "features.conv_head", "features.bn2")
    assert trainable_names(model) == last
    apply_freeze(model, "last_n", trainable=2)
    assert trainable_names(model) == last | names_under(model, "features.blocks.5.2")


def test_policy_arguments_are_checked():
    model = net("mobilenetv2")
    with pytest.raises(FreezeError, match="valid policies: none, all, conv_base, last_n"):
        apply_freeze(model, "everything")
    with pytest.raises(FreezeError, match="freeze.bn must be one of frozen, train"):
        apply_freeze(model, "all", bn="eval")
    with pytest.raises(FreezeError, match="trainable belongs to policy last_n"):
        apply_freeze(model, "all", trainable=2)
    with pytest.raises(FreezeError, match="trainable belongs to policy last_n"):
        apply_freeze(model, "last_n")


def bn_stats(model, name):
    module = model.features.get_submodule(name)
    return module.running_mean.clone(), module.running_var.clone()


def one_step(model):
    model.train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x = torch.randn(4, 3, SIZE, SIZE) * 3 + 1  # statistics far from the initial (0, 1)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), torch.tensor([0.0, 1.0, 0.0, 1.0]))
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()


@pytest.mark.parametrize("bn", ["frozen", "train"])
def test_resnet50_frozen_batchnorm_keeps_running_statistics(bn):
    model = net("resnet50")
    apply_freeze(model, "last_n", trainable=1, bn=bn)
    frozen_bn, trained_bn = "layer1.0.bn1", "layer4.2.bn1"
    assert (frozen_bn in model.frozen_norms) == (bn == "frozen")
    assert trained_bn not in model.frozen_norms
    model.eval()
    model.train()  # what Lightning does at the start of every training epoch
    assert model.features.get_submodule(frozen_bn).training == (bn == "train")
    assert model.features.get_submodule(trained_bn).training

    frozen_stats, trained_stats = bn_stats(model, frozen_bn), bn_stats(model, trained_bn)
    frozen_weight = model.features.layer1[0].conv1.weight.clone()
    # timm zero-initialises each block's last BN scale, so in one step only it moves in layer4.2
    trained_weight = model.features.layer4[2].bn3.weight.clone()
    one_step(model)
    unchanged = all(torch.equal(a, b) for a, b in zip(frozen_stats, bn_stats(model, frozen_bn)))
    assert unchanged == (bn == "frozen")
    assert not torch.equal(trained_stats[0], bn_stats(model, trained_bn)[0])
    assert torch.equal(frozen_weight, model.features.layer1[0].conv1.weight)
    assert not torch.equal(trained_weight, model.features.layer4[2].bn3.weight)


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore:.*LeafSpec.*")
def test_lightning_training_keeps_frozen_batchnorm_in_eval_mode(tmp_path):
    model = net("mobilenetv2")
    apply_freeze(model, "all", bn="frozen")
    assert len(model.frozen_norms) == sum(
        isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.features.modules()
    )
    before = {k: v.clone() for k, v in model.features.state_dict().items()}
    data = TensorDataset(torch.randn(8, 3, SIZE, SIZE) * 2 + 1, torch.tensor([0, 1] * 4))
    module = CovidClassifier(model, optimizer=lambda params: torch.optim.SGD(params, lr=0.1))
    trainer = pl.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path,
    )
    trainer.fit(module, DataLoader(data, batch_size=4))
    after = model.features.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and running statistics
    assert not any(model.features.get_submodule(n).training for n in model.frozen_norms)
