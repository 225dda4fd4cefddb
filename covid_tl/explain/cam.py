"""Grad-CAM on a covid-tl classifier through pytorch-grad-cam."""
from __future__ import annotations

import numpy as np
import torch
from pytorch_grad_cam import GradCAM

from covid_tl.models.classifier import Classifier
from covid_tl.errors import ConfigError

TARGETS = ("predicted", "covid", "no_finding")


class LogitTarget:
    """The single COVID-19 logit, or its negation to explain the no-finding call."""

    def __init__(self, sign: float) -> None:
        self.sign = sign

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return self.sign * output


def target_layer(net: Classifier) -> torch.nn.Module:
    if net.cam_layer is None:
        raise ConfigError(f"backbone {net.backbone_name} has no spatial layer, so Grad-CAM cannot explain it")
    return net.features.get_submodule(net.cam_layer)


def grad_cam(net: Classifier, images: torch.Tensor, target: str = "predicted") -> tuple[np.ndarray, np.ndarray]:
    """(CAMs (N, H, W) in [0, 1] at input size, COVID-19 probabilities (N,)).

    Gradients are switched on here, and the input made to require them, so a fully frozen
    backbone still yields a CAM; the model's mode is restored afterwards.
    """
    if target not in TARGETS:
        raise ConfigError(f"unknown CAM target {target!r}; valid: {', '.join(TARGETS)}")
    was_training = net.training
    net.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            images = images.detach().clone().requires_grad_(True)
            with torch.no_grad():
                probabilities = torch.sigmoid(net(images)).cpu().numpy()
            if target == "predicted":
                signs = np.where(probabilities >= 0.5, 1.0, -1.0)
            else:
                signs = np.full(len(images), 1.0 if target == "covid" else -1.0)
            with GradCAM(model=net, target_layers=[target_layer(net)]) as cam:
                maps = cam(input_tensor=images, targets=[LogitTarget(s) for s in signs])
    finally:
        net.train(was_training)
    return maps, probabilities
