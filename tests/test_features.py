import pytest
import torch

from covid_tl.data.datamodule import XrayDataModule
from covid_tl.data.frozen_features import FeatureDataModule, fast_path_blocker
from covid_tl.data.synthetic import SyntheticSource
from covid_tl.models.classifier import build_classifier
from covid_tl.models.freeze import apply_freeze
from covid_tl.preprocess.augment import build_augmentation


def setup(freeze="all", augment=None):
    net = build_classifier({"name": "simple_cnn", "input_size": 32})
    apply_freeze(net, freeze)
    dm = XrayDataModule({"s": SyntheticSource(n_patients=20, image_size=32)}, net.input_spec, augmentation=augment)
    dm.setup()
    return net, dm


def test_fast_path_only_where_it_cannot_change_training():
    assert fast_path_blocker(*setup()) is None
    assert fast_path_blocker(*setup(freeze="none")) == "part of the backbone trains"
    assert fast_path_blocker(*setup(augment=build_augmentation(rotate=5))) == "training images are augmented"


def test_features_match_the_frozen_backbone_and_the_rest_is_delegated():
    net, dm = setup()
    features = FeatureDataModule(dm, net.features, torch.device("cpu"))
    x, y = next(iter(features.val_dataloader()))
    images, targets = next(iter(dm.val_dataloader()))
    with torch.no_grad():
        assert torch.allclose(x, net.features(images)) and torch.equal(y, targets)
    assert len(features.subset("val")) == len(dm.subset("val")) and features.input_spec == dm.input_spec


def test_features_are_cached_per_backbone_weights_and_read_back(tmp_path, monkeypatch):
    from covid_tl.data import frozen_features
    from covid_tl.data.sources import FolderSource
    from data_fixtures import image

    for i in range(12):
        image(tmp_path / "films" / ("covid" if i % 2 else "no_finding") / f"{i}.png", seed=i, size=40)
    net = build_classifier({"name": "simple_cnn", "input_size": 32})
    apply_freeze(net, "all")
    dm = XrayDataModule({"f": FolderSource(tmp_path / "films")}, net.input_spec, val_fraction=0.25, test_fraction=0.25)
    dm.setup()
    first = FeatureDataModule(dm, net.features, torch.device("cpu"), tmp_path / "cache", {"crop": None})
    x, y = next(iter(first.val_dataloader()))
    assert len(list((tmp_path / "cache" / "features").glob("*.pt"))) == 1  # val only: nothing asked for the rest

    def no_backbone(*args):
        raise AssertionError("features computed again instead of read from the cache")

    monkeypatch.setattr(frozen_features, "extract", no_backbone)
    again = FeatureDataModule(dm, net.features, torch.device("cpu"), tmp_path / "cache", {"crop": None})
    x2, y2 = next(iter(again.val_dataloader()))
    assert torch.equal(x, x2) and torch.equal(y, y2)
    with torch.no_grad():
        net.features.conv.weight.add_(1.0)  # other weights: another entry, computed afresh
    changed = FeatureDataModule(dm, net.features, torch.device("cpu"), tmp_path / "cache", {"crop": None})
    with pytest.raises(AssertionError, match="computed again"):
        changed.val_dataloader()
