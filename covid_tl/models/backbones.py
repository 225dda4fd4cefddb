"""Backbone registry: a name in `conf/backbone/` maps to a function that builds the features.

Each entry knows its feature extractor, the size of the feature vector it emits, the input it
expects, the layer Grad-CAM should look at, its ordered trainable units (what `freeze=last_n`
counts from the end), the pretrained FC layers it kept, and where its pretrained weights come
from, so the rest of the code never special-cases a backbone. Options of a builder are exactly
the keys of its config file (besides `name`, `weights`, `trust_weights` and `head`, which
`build_classifier` takes; `keep_fc` is a key of the vgg16 config, see `build_backbone`).

Builders construct the network with random weights (timm/torchvision constructors with
pretrained=False); `covid_tl.models.weights` loads weights afterwards, from `Backbone.sources`
or a file.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence

from torch import nn

from covid_tl.core.errors import ConfigError
from covid_tl.models import weights as W
from covid_tl.models.simple import SimpleCNNFeatures, SimpleFCFeatures
from covid_tl.models.spec import Backbone, Unit, WeightSource
from covid_tl.preprocess.model_input import InputSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

BACKBONES: dict[str, Callable[..., Backbone]] = {}


def register(builder: Callable[..., Backbone]) -> Callable[..., Backbone]:
    """Registers a builder under its own name, so `backbone.name` is the function's name (one hop
    from the config to the code, as timm's @register_model)."""
    BACKBONES[builder.__name__] = builder
    return builder


class UnknownBackboneError(ConfigError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def builder_options(name: str) -> list[str]:
    """The config keys a backbone's builder takes (keep_fc only where it has FC layers: vgg16)."""
    return list(inspect.signature(BACKBONES[name]).parameters)


def build_backbone(name: str, keep_fc: int = 0, **options) -> Backbone:
    """The backbone registered under `name`, built with its config options.

    `keep_fc` is how many of the backbone's pretrained FC layers stay under the new head;
    only backbones that have such layers (vgg16) accept a value other than 0.
    """
    try:
        builder = BACKBONES[name]
    except KeyError:
        raise UnknownBackboneError(
            f"unknown backbone {name!r}; valid backbones: {', '.join(sorted(BACKBONES))}"
        ) from None
    parameters = inspect.signature(builder).parameters
    if "keep_fc" in parameters:
        options["keep_fc"] = keep_fc
    elif keep_fc:
        raise ConfigError(f"backbone {name} has no pretrained FC layers to keep; keep_fc must be 0, got {keep_fc}")
    unknown = sorted(set(options) - set(parameters))
    if unknown:
        raise ConfigError(
            f"backbone {name} has no option {', '.join(map(repr, unknown))}; "
            f"its options: {', '.join(builder_options(name)) or 'none'}"
        )
    return builder(**options)


def covering_units(module: nn.Module, groups: Iterable[Sequence[str]]) -> tuple[Unit, ...]:
    """Parameter-name groups as units of the fewest dotted names (module or parameter paths).

    A group {blocks.3.0.conv_pw.weight, blocks.3.0.bn1.weight, ...} becomes ("blocks.3.0",)
    when blocks.3.0 holds exactly those parameters.
    """
    names = [n for n, _ in module.named_parameters()]
    under: dict[str, set[str]] = {}
    for n in names:
        parts = n.split(".")
        for i in range(1, len(parts) + 1):
            under.setdefault(".".join(parts[:i]), set()).add(n)
    units = []
    for group in groups:
        members = set(group)
        unit: list[str] = []
        for n in group:
            if any(n == p or n.startswith(p + ".") for p in unit):
                continue
            parts = n.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                if under[prefix] <= members:
                    unit.append(prefix)
                    break
        units.append(tuple(unit))
    return tuple(units)


def _timm_units(model: nn.Module, matcher: Mapping | None = None) -> tuple[Unit, ...]:
    from timm.models import group_parameters

    if matcher is None:
        matcher = model.group_matcher(coarse=False)
    return covering_units(model, group_parameters(model, matcher).values())


# --- the study's from-scratch networks -------------------------------------------------------


@register
def simple_fc(input_size: int = 64, channels: int = 1) -> Backbone:
    features = SimpleFCFeatures(channels, input_size)
    return Backbone("simple_fc", features, features.num_features, InputSpec(input_size, channels), None)


@register
def simple_cnn(
    input_size: int = 64, channels: int = 1, conv_channels: int = 16, kernel_size: int = 3, pool: int = 2
) -> Backbone:
    features = SimpleCNNFeatures(channels, input_size, conv_channels, kernel_size, pool)
    return Backbone(
        "simple_cnn", features, features.num_features, InputSpec(input_size, channels), "conv", units=(("conv",),)
    )


# --- VGG16 (torchvision layout, so torchvision's ImageNet weights load by name) ---------------


class VGG16Features(nn.Module):
    """VGG16's conv base, adaptive 7x7 average pool, and its first `keep_fc` FC layers.

    Module names match torchvision's `vgg16` (features.N, classifier.0/3/6), so its state dict
    loads by name. The adaptive pool gives the FC layers their 7x7x512 input at any image
    size, so tiny test inputs work with the real 25088-wide first FC layer.
    """

    FC_WIDTHS = (4096, 4096, 1000)

    def __init__(self, keep_fc: int = 0) -> None:
        from torchvision.models.vgg import cfgs, make_layers

        super().__init__()
        if not 0 <= keep_fc <= len(self.FC_WIDTHS):
            raise ConfigError(f"vgg16 has {len(self.FC_WIDTHS)} FC layers; keep_fc must be 0-3, got {keep_fc}")
        self.features = make_layers(cfgs["D"], batch_norm=False)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.flatten = nn.Flatten()
        layers: list[nn.Module] = []
        width = 512 * 7 * 7
        for i in range(keep_fc):
            layers.append(nn.Linear(width, self.FC_WIDTHS[i]))
            if i < len(self.FC_WIDTHS) - 1:
                layers += [nn.ReLU(inplace=True), nn.Dropout(p=0.5)]
            width = self.FC_WIDTHS[i]
        self.classifier = nn.Sequential(*layers)
        self.num_features = width
        self.keep_fc = keep_fc
        # torchvision's initialisation, so weights=none is a from-scratch VGG16 as torchvision's.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)
        self.conv_layers = tuple(f"features.{i}" for i, m in enumerate(self.features) if isinstance(m, nn.Conv2d))
        # The ReLU after conv5_3 is the Grad-CAM layer; a forward hook wants its own output.
        last_relu = max(i for i, m in enumerate(self.features) if isinstance(m, nn.ReLU))
        self.features[last_relu].inplace = False
        self.cam_layer = f"features.{last_relu}"

    def forward(self, x):
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


@register
def vgg16(input_size: int = 224, keep_fc: int = 0) -> Backbone:
    from torchvision.models import VGG16_Weights

    features = VGG16Features(keep_fc)
    fc_layers = tuple(f"classifier.{3 * i}" for i in range(keep_fc))
    dropped = tuple(f"classifier.{3 * i}" for i in range(keep_fc, len(VGG16Features.FC_WIDTHS)))
    return Backbone(
        "vgg16",
        features,
        features.num_features,
        InputSpec(input_size, 3, IMAGENET_MEAN, IMAGENET_STD),
        features.cam_layer,
        units=tuple((name,) for name in features.conv_layers),
        fc_layers=fc_layers,
        sources={"imagenet": W.torchvision_imagenet("vgg16", VGG16_Weights.IMAGENET1K_V1)},
        ignore_keys=dropped,
    )


# --- timm models ------------------------------------------------------------------------------


def timm_backbone(
    model: str,
    input_size: int | None = None,
    name: str | None = None,
    cam_layer: str | None = None,
    extra_sources: Mapping[str, WeightSource] | None = None,
) -> Backbone:
    """A timm model without its classifier (pooled features), random weights.

    Input size, mean and std come from the model's `pretrained_cfg`; `input_size` overrides
    the size (for models with a fixed input size, such as ViTs, the model is built for it).
    The Grad-CAM layer defaults to `_timm_cam_layer`.
    """
    import timm

    try:
        net = timm.create_model(model, pretrained=False, num_classes=0)
    except RuntimeError as error:  # timm: "Unknown model (...)"
        raise ConfigError(f"timm cannot build {model!r}: {error}; see timm.list_models()") from None
    cfg = dict(net.pretrained_cfg)
    default_size = int(cfg.get("input_size", (3, 224, 224))[-1])
    size = int(input_size) if input_size else default_size
    if size != default_size and cfg.get("fixed_input_size"):
        net = timm.create_model(model, pretrained=False, num_classes=0, img_size=size)
    classifier = cfg.get("classifier") or ()
    ignore = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    offline = [f"use backbone.weights={k} (no network needed)" for k in extra_sources or {}]
    sources = {"imagenet": W.timm_imagenet(model, cfg, " or ".join(offline))}
    sources.update(extra_sources or {})
    return Backbone(
        name or f"timm/{model}",
        net,
        net.num_features,
        InputSpec(size, 3, tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))),
        cam_layer or _timm_cam_layer(net),
        units=_timm_units(net),
        sources=sources,
        ignore_keys=ignore,
    )


def _timm_cam_layer(net: nn.Module) -> str:
    """The last stage of timm's `feature_info`; for token models (ViT, DeiT, EVA) the last
    block's first norm, as in pytorch-grad-cam's ViT recipe: the head reads only the class
    token of the last block's output, so its patch tokens get no gradient there."""
    blocks = getattr(net, "blocks", None)
    tokens = getattr(net, "num_prefix_tokens", 0) and isinstance(blocks, (nn.Sequential, nn.ModuleList))
    if tokens and hasattr(blocks[-1], "norm1"):
        return f"blocks.{len(blocks) - 1}.norm1"
    return net.feature_info[-1]["module"]


@register
def resnet50(input_size: int | None = None) -> Backbone:
    return timm_backbone("resnet50", input_size, "resnet50", cam_layer="layer4")


@register
def mobilenetv2(input_size: int | None = None) -> Backbone:
    return timm_backbone("mobilenetv2_100", input_size, "mobilenetv2", cam_layer="bn2")


@register
def efficientnet_lite0(input_size: int | None = None) -> Backbone:
    return timm_backbone(
        "efficientnet_lite0",
        input_size,
        "efficientnet_lite0",
        cam_layer="bn2",
        extra_sources={"imagenet_offline": W.efficientnet_lite0_package()},
    )


@register
def densenet121(input_size: int | None = None) -> Backbone:
    return timm_backbone("densenet121", input_size, "densenet121", cam_layer="features.norm5")


@register
def timm(model: str = "convnext_tiny", input_size: int | None = None) -> Backbone:
    """Any timm model by name (`backbone=timm backbone.model=convnext_tiny`)."""
    return timm_backbone(model, input_size)


# --- torchxrayvision's chest X-ray DenseNet121 ------------------------------------------------


class XRVDenseNetFeatures(nn.Module):
    """torchxrayvision's DenseNet121 conv base, ReLU, global average pool (its `features2`)."""

    def __init__(self, densenet: nn.Module) -> None:
        super().__init__()
        self.features = densenet.features
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.num_features = densenet.classifier.in_features

    def forward(self, x):
        return self.flatten(self.pool(self.relu(self.features(x))))


XRV_UNITS = {
    "stem": r"^features\.conv0|^features\.norm0",
    "blocks": [(r"^features\.denseblock(\d+)\.denselayer(\d+)", None), (r"^features\.transition(\d+)", (99999,))],
}


@register
def xrv_densenet121(input_size: int = 224) -> Backbone:
    """torchxrayvision's DenseNet121 (weights: NIH ChestX-ray14, CheXpert, ... or all).

    One channel, images scaled to [-1024, 1024] as torchxrayvision expects: with pixels in
    [0, 1], (x - 0.5) / (1 / 2048).
    """
    xrv = W.import_torchxrayvision()
    features = XRVDenseNetFeatures(xrv.models.DenseNet(weights=None))
    return Backbone(
        "xrv_densenet121",
        features,
        features.num_features,
        InputSpec(input_size, 1, (0.5,), (1.0 / 2048.0,)),
        "relu",
        units=_timm_units(features, XRV_UNITS),
        sources={name: W.xrv_weights(name) for name in W.xrv_densenet_weight_names()},
        ignore_keys=("classifier", "op_threshs"),
    )
