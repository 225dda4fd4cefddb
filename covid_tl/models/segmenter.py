"""The lung segmenter: a segmentation-models-pytorch network that turns any chest film into a
lung mask of the same size, with a checkpoint shipped in the package so it works offline.

`LungSegmenter.load()` gives the bundled one, `LungSegmenter.load(path)` one that `task=segment`
wrote (`lung_segmenter.pt` in its run dir). A checkpoint holds plain types only (architecture,
input size, threshold, tensors, notes) and loads with `weights_only=True`.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import segmentation_models_pytorch as smp
import torch
from torch import nn

from covid_tl.core.errors import ConfigError
from covid_tl.models.weights import efficientnet_lite0_offline_state_dict
from covid_tl.preprocess.lung_mask import largest_components, resize_to, segmenter_input
from covid_tl.runtime.torch_files import TRUST_CHECKPOINT, check_structure

#: The checkpoint shipped inside the package (docs/segmenter.md says how it was made).
BUNDLED = Path(__file__).with_name("lung_segmenter.pt")
FORMAT = "covid-tl lung segmenter"
ENCODER_WEIGHTS = ("none", "imagenet_offline")
LITE0_ENCODER = "tu-efficientnet_lite0"


class SegmenterError(ConfigError):
    """A segmenter checkpoint or setting that cannot be used; the message says which and why."""


def build_net(architecture: Mapping[str, Any]) -> nn.Module:
    """The smp network of an architecture: one grey input channel, one lung logit per pixel."""
    options = dict(architecture)
    arch, encoder = options.pop("arch"), options.pop("encoder")
    if "decoder_channels" in options:
        options["decoder_channels"] = tuple(options["decoder_channels"])
    try:
        return smp.create_model(arch, encoder_name=encoder, encoder_weights=None, in_channels=1, classes=1, **options)
    except (KeyError, ValueError, TypeError, RuntimeError) as error:
        raise SegmenterError(f"segmenter {arch} with encoder {encoder} {options}: {error}") from None


def load_lite0_encoder(net: nn.Module) -> int:
    """EfficientNet-Lite0's ImageNet weights (the offline package) into the encoder; the RGB
    stem is summed over colour, as a grey film is the same value on all three channels."""
    encoder = net.encoder.model
    expected = encoder.state_dict()
    state = efficientnet_lite0_offline_state_dict()
    state["conv_stem.weight"] = state["conv_stem.weight"].sum(dim=1, keepdim=True)
    missing = [k for k in expected if k not in state]
    if missing:
        raise SegmenterError(f"the EfficientNet-Lite0 package weights lack {missing[:3]} of the encoder")
    encoder.load_state_dict({k: state[k] for k in expected})
    return len(expected)


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """torch's intra-op threads set to `count` (None: left alone) inside, restored after."""
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class LungSegmenter:
    """uint8 (H, W) film in, bool (H, W) lung mask out; CPU unless moved with `to`.

    The film is resized to `input_size` square (no padding), standardised, segmented, the
    probabilities resized back and cut at `threshold`; the two largest components are kept.
    Picklable, so DataLoader workers can each hold one. On the CPU one film runs on `threads`
    torch threads (default 1): a film is too small to share out, and on a loaded 2-core machine
    2 threads took 2.9-5.1 s per 64 px phantom against 0.11-0.17 s for 1 (docs/benchmarks.md).
    """

    def __init__(self, net: nn.Module, architecture: Mapping[str, Any], input_size: int, threshold: float = 0.5,
                 notes: Mapping[str, Any] | None = None) -> None:
        stride = 2 ** int(architecture.get("encoder_depth", 5))
        if input_size < stride or input_size % stride:
            raise SegmenterError(f"segmenter input_size must be a multiple of {stride} (2 ** encoder_depth), got {input_size}")
        if not 0 < threshold < 1:
            raise SegmenterError(f"segmenter threshold must be in (0, 1), got {threshold}")
        self.net = net
        self.architecture = dict(architecture)
        self.input_size = int(input_size)
        self.threshold = float(threshold)
        self.notes = dict(notes or {})
        self.device = torch.device("cpu")
        self.threads: int | None = 1

    @classmethod
    def create(cls, arch: str = "Unet", encoder: str = LITE0_ENCODER, encoder_weights: str = "imagenet_offline",
               encoder_depth: int = 5, decoder_channels: Sequence[int] = (128, 64, 32, 16, 8),
               input_size: int = 128, threshold: float = 0.5) -> LungSegmenter:
        """A new, untrained segmenter (the keys of conf/segmenter/)."""
        if encoder_weights not in ENCODER_WEIGHTS:
            raise SegmenterError(f"unknown segmenter.encoder_weights {encoder_weights!r}; valid: {', '.join(ENCODER_WEIGHTS)}")
        if encoder_weights == "imagenet_offline" and encoder != LITE0_ENCODER:
            raise SegmenterError(f"segmenter.encoder_weights=imagenet_offline is for encoder {LITE0_ENCODER}, not {encoder}")
        architecture = {"arch": arch, "encoder": encoder, "encoder_depth": int(encoder_depth),
                        "decoder_channels": [int(c) for c in decoder_channels]}
        net = build_net(architecture)
        if encoder_weights == "imagenet_offline":
            load_lite0_encoder(net)
        return cls(net, architecture, input_size, threshold)

    @classmethod
    def load(cls, path: str | Path | None = None) -> LungSegmenter:
        """The bundled segmenter (None) or one a task=segment run wrote, on the CPU."""
        path = BUNDLED if path is None else Path(path).expanduser()
        if not path.is_file():
            raise SegmenterError(f"lung segmenter {str(path)!r} does not exist")
        try:  # bounded first: the path may come from a checkpoint's preprocessing.lungs.model
            check_structure(path, "lung segmenter", TRUST_CHECKPOINT, error=SegmenterError)
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - torch raises many types for files it cannot read
            saved = None
        if not isinstance(saved, dict) or saved.get("format") != FORMAT:
            raise SegmenterError(f"{path} is not a lung segmenter (task=segment writes one as lung_segmenter.pt)")
        net = build_net(saved["architecture"])
        try:
            net.load_state_dict({k: v.float() for k, v in saved["state_dict"].items()})
        except RuntimeError as error:
            raise SegmenterError(f"{path}: weights do not fit its architecture ({str(error).splitlines()[0]})") from None
        return cls(net, saved["architecture"], saved["input_size"], saved["threshold"], saved.get("notes"))

    def save(self, path: str | Path, half: bool = False) -> Path:
        """Write the checkpoint `load` reads; `half` stores the weights as float16 (half the size)."""
        state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
                 for k, v in self.net.state_dict().items()}
        path = Path(path)
        torch.save({"format": FORMAT, "architecture": self.architecture, "input_size": self.input_size,
                    "threshold": self.threshold, "notes": self.notes, "state_dict": state}, path)
        return path

    def to(self, device: str | torch.device) -> LungSegmenter:
        self.device = torch.device(device)
        self.net.to(self.device)
        return self

    @property
    def digest(self) -> str:
        """A hash of the weights and settings: the same segmenter gives the same digest, so
        caches of its masks can be keyed on it."""
        sha = hashlib.sha256(json.dumps([self.architecture, self.input_size, self.threshold]).encode())
        for key, value in sorted(self.net.state_dict().items()):
            sha.update(key.encode())
            sha.update(value.detach().float().cpu().numpy().tobytes())
        return sha.hexdigest()[:16]

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """float32 (input_size, input_size): the lung probability of each pixel of the resized film."""
        if image.ndim != 2:
            raise ValueError(f"expected a single-channel (H, W) image, got shape {image.shape}")
        x = torch.from_numpy(segmenter_input(resize_to(image, self.input_size)))[None, None].to(self.device)
        with torch.inference_mode(), torch_threads(self.threads if self.device.type == "cpu" else None):
            return torch.sigmoid(self.net.eval()(x))[0, 0].float().cpu().numpy()

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """bool (H, W) lung mask of a uint8 (H, W) film of any size."""
        probabilities = resize_to(self.probabilities(image), image.shape)
        return largest_components(probabilities >= self.threshold, keep=2)
