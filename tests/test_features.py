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
