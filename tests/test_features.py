import pytest
import torch

from covid_tl.data.datamodule import XrayDataModule
from covid_tl.data.frozen_features import FeatureDataModule, fast_path_blocker
from covid_tl.data.synthetic.source import SyntheticSource
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
    assert fast_path_blocker(*setup(augment=build_augmentation(rotate={"p": 1, "range": [-5, 5]}))) == "training images are augmented"


def test_features_match_the_frozen_backbone_and_the_rest_is_delegated():
    net, dm = setup()
    features = FeatureDataModule(dm, net.features, torch.device("cpu"))
    x, y = next(iter(features.val_dataloader()))
    images, targets = next(iter(dm.val_dataloader()))
    with torch.no_grad():
        assert torch.allclose(x, net.features(images)) and torch.equal(y, targets)
    assert len(features.subset("val")) == len(dm.subset("val")) and features.input_spec == dm.input_spec


def film_datamodule(folder, net, cache):
    """12 films on disk (files: what the feature cache stores) and a DataModule over them."""
    from covid_tl.data.sources import FolderSource
    from data_fixtures import image

    for i in range(12):
        image(folder / ("covid" if i % 2 else "no_finding") / f"{i}.png", seed=i, size=40)
    dm = XrayDataModule({"f": FolderSource(folder)}, net.input_spec, val_fraction=0.25, test_fraction=0.25, cache=cache)
    dm.setup()
    return dm


def test_features_are_cached_per_backbone_weights_and_read_back(tmp_path, monkeypatch):
    from covid_tl.data import frozen_features
    from covid_tl.preprocess.cache import PreprocessCache

    net = build_classifier({"name": "simple_cnn", "input_size": 32})
    apply_freeze(net, "all")
    dm = film_datamodule(tmp_path / "films", net, PreprocessCache(tmp_path / "cache", {"crop": None}))
    first = FeatureDataModule(dm, net.features, torch.device("cpu"))
    x, y = next(iter(first.val_dataloader()))
    stored = list((tmp_path / "cache").glob("*/features/*.pt"))
    assert stored == [first.cache_path("val")]  # val only: nothing asked for the rest

    def no_backbone(*args):
        raise AssertionError("features computed again instead of read from the cache")

    monkeypatch.setattr(frozen_features, "extract", no_backbone)
    again = FeatureDataModule(dm, net.features, torch.device("cpu"))
    x2, y2 = next(iter(again.val_dataloader()))
    assert torch.equal(x, x2) and torch.equal(y, y2)
    with torch.no_grad():
        net.features.conv.weight.add_(1.0)  # other weights: another entry, computed afresh
    changed = FeatureDataModule(dm, net.features, torch.device("cpu"))
    with pytest.raises(AssertionError, match="computed again"):
        changed.val_dataloader()


def test_feature_cache_key_is_the_image_cache_key_segmenter_digest_included(tmp_path, monkeypatch):
    """A new bundled segmenter (another digest) must not be served the old one's features."""
    from conftest import composed
    from covid_tl.engine.build import build_preprocessing
    from covid_tl.models.segmenter import LungSegmenter

    cfg = composed("train", "preprocessing=lungs", f"preprocessing.cache_dir={tmp_path / 'cache'}")
    net = build_classifier({"name": "simple_cnn", "input_size": 32})
    apply_freeze(net, "all")

    def feature_path(folder):
        cache = build_preprocessing(cfg)[1]  # the cache train.py's DataModule gets
        dm = film_datamodule(tmp_path / folder, net, cache)
        path = FeatureDataModule(dm, net.features, torch.device("cpu")).cache_path("val")
        assert path.parent == cache.directory / "features"
        return path

    bundled = feature_path("a")
    assert feature_path("b") == bundled  # the same films elsewhere: the same features
    monkeypatch.setattr(LungSegmenter, "digest", property(lambda self: "0123456789abcdef"))
    assert feature_path("c").parent != bundled.parent
