import numpy as np
import pytest
import torch

from covid_tl.explain.cam import grad_cam
from covid_tl.explain.overlay import blend, grid, labelled
from covid_tl.explanation import balanced_rows
from covid_tl.models.classifier import build_classifier


def test_grad_cam_on_a_fully_frozen_network_is_finite_and_not_empty():
    torch.manual_seed(0)
    net = build_classifier({"name": "simple_cnn", "input_size": 32})
    for p in net.parameters():
        p.requires_grad_(False)
    net.train()
    cams, probs = grad_cam(net, torch.randn(3, 1, 32, 32), target="covid")
    assert cams.shape == (3, 32, 32) and probs.shape == (3,)
    assert np.isfinite(cams).all() and cams.max() > 0
    assert net.training and not any(p.requires_grad for p in net.parameters())


def test_grad_cam_refuses_a_backbone_without_spatial_layers():
    net = build_classifier({"name": "simple_fc", "input_size": 16})
    with pytest.raises(ValueError, match="no spatial layer"):
        grad_cam(net, torch.randn(1, 1, 16, 16))


def test_overlay_grid_and_balanced_choice():
    image = np.full((20, 30), 100, np.uint8)
    cam = np.zeros((10, 15), np.float32)
    out = blend(image, cam, alpha=0.5)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    tile = labelled(out, ["a", "b"])
    assert tile.shape[0] > 20
    assert grid([tile] * 5, columns=2).shape[1] == 2 * 30 + 3 * 4
    assert balanced_rows(np.array([0, 0, 0, 1, 1]), 4) == [3, 0, 4, 1]
