"""Class activation maps on a covid-tl classifier, through pytorch-grad-cam.

One entry point for every method; it works on fully frozen backbones and inside Lightning's
inference-mode hooks, and leaves the model exactly as it found it.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM, XGradCAM

from covid_tl.core.errors import ConfigError
from covid_tl.models.classifier import Classifier
from covid_tl.models.ensemble import cam_nets

METHODS = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "xgradcam": XGradCAM,
    "layercam": LayerCAM,
    "eigencam": EigenCAM,
    "scorecam": ScoreCAM,
}
TARGETS = ("predicted", "covid", "no_finding")


class LogitTarget:
    """The single COVID-19 logit, or its negation to explain the no-finding call."""

    def __init__(self, sign: float) -> None:
        self.sign = sign

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return self.sign * output


class ActivationGrid:
    """pytorch-grad-cam's `reshape_transform`: a layer's output as the (B, C, H, W) map it expects.

    Token models give (B, N, C): the patch tokens are the last H*W (timm puts class,
    distillation and register tokens first), on the model's patch grid where it has one that
    fits, else on the largest square the token count holds. Channels-last maps (timm's Swin,
    `output_fmt="NHWC"`) are turned channels-first; CNN maps pass unchanged.
    """

    def __init__(self, grid: tuple[int, int] | None = None, channels_last: bool = False) -> None:
        self.grid, self.channels_last = grid, channels_last

    @classmethod
    def of(cls, net: Classifier) -> ActivationGrid:
        grid = getattr(getattr(net.features, "patch_embed", None), "grid_size", None)
        return cls(tuple(int(g) for g in grid) if grid else None, getattr(net.features, "output_fmt", "NCHW") == "NHWC")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4 and self.channels_last:
            return x.permute(0, 3, 1, 2)
        if x.ndim != 3:
            return x
        n = x.shape[1]
        h, w = self.grid if self.grid and self.grid[0] * self.grid[1] <= n else (math.isqrt(n),) * 2
        return x[:, n - h * w :].reshape(x.shape[0], h, w, x.shape[2]).permute(0, 3, 1, 2)


def target_layer(net: Classifier, layer: str | None = None) -> torch.nn.Module:
    """The layer CAMs are taken at: `layer` (a dotted path in `net.features`) or the backbone's own."""
    name = layer or net.cam_layer
    if name is None:
        raise ConfigError(f"backbone {net.backbone_name} has no spatial layer, so a CAM cannot explain it")
    try:
        return net.features.get_submodule(name)
    except AttributeError:
        raise ConfigError(f"backbone {net.backbone_name} has no layer {name!r} for CAMs") from None


def target_layers(net: torch.nn.Module, layer: str | None = None) -> list[torch.nn.Module]:
    """target_layer of the net, or of each member of a fold ensemble (pytorch-grad-cam averages
    the per-layer maps, each scaled to [0, 1]: the members' mean CAM)."""
    return [target_layer(member, layer) for member in cam_nets(net)]


def compute_cams(
    net: Classifier,
    images: torch.Tensor,
    method: str = "gradcam",
    target: str = "predicted",
    layer: str | None = None,
    batch_size: int = 16,
    threshold: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """(CAMs (N, H, W) in [0, 1] at input size, COVID-19 probabilities (N,)).

    Parameters are switched to requires_grad=False and the input to True for the duration:
    gradients then reach the target layer whatever the freeze policy. Mode, requires_grad
    flags and parameter gradients are restored afterwards; hooks are released.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown CAM method {method!r}; valid: {', '.join(METHODS)}")
    if target not in TARGETS:
        raise ConfigError(f"unknown CAM target {target!r}; valid: {', '.join(TARGETS)}")
    modules = target_layers(net, layer)
    was_training = net.training
    params = list(net.parameters())
    flags = [p.requires_grad for p in params]
    grads = [p.grad for p in params]  # pytorch-grad-cam calls model.zero_grad()
    device = next(net.parameters()).device
    maps, probabilities = [], []
    try:
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        with torch.inference_mode(False), torch.enable_grad(), METHODS[method](
            model=net, target_layers=modules, reshape_transform=ActivationGrid.of(cam_nets(net)[0])
        ) as cam:
            for start in range(0, len(images), batch_size):
                # A fresh tensor: ones made under inference mode cannot enter autograd.
                batch = images[start : start + batch_size].detach().clone().to(device).requires_grad_(True)
                with torch.no_grad():
                    probs = torch.sigmoid(net(batch).float()).cpu().numpy()
                signs = {"covid": np.ones_like(probs), "no_finding": -np.ones_like(probs)}.get(
                    target, np.where(probs >= threshold, 1.0, -1.0)
                )
                maps.append(cam(input_tensor=batch, targets=[LogitTarget(float(s)) for s in signs]))
                probabilities.append(probs)
    finally:
        for p, flag, grad in zip(params, flags, grads):
            p.requires_grad_(flag)
            p.grad = grad
        net.train(was_training)
    return np.concatenate(maps).astype(np.float32), np.concatenate(probabilities)
