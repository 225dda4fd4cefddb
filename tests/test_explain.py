import numpy as np
import pytest
import torch

from covid_tl.cam.callback import balanced_rows
from covid_tl.cam.compute import METHODS, ActivationGrid, compute_cams
from covid_tl.cam.overlay import cam_grid, overlay
from covid_tl.reporting.grid import grid, labelled
from covid_tl.models.classifier import build_classifier


def frozen_cnn():
    torch.manual_seed(0)
    net = build_classifier({"name": "simple_cnn", "input_size": 32})
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def test_cam_on_a_fully_frozen_network_is_finite_and_not_empty_and_leaves_it_as_it_was():
    net = frozen_cnn()
    net.train()
    cams, probs = compute_cams(net, torch.randn(3, 1, 32, 32), target="covid")
    assert cams.shape == (3, 32, 32) and probs.shape == (3,)
    assert np.isfinite(cams).all() and cams.max() > 0
    assert net.training and not any(p.requires_grad for p in net.parameters())
    assert all(p.grad is None for p in net.parameters())


def test_cam_does_not_touch_gradients_of_a_training_model_and_works_in_inference_mode():
    net = build_classifier({"name": "simple_cnn", "input_size": 32})
    net(torch.randn(2, 1, 32, 32)).sum().backward()
    before = [p.grad.clone() for p in net.parameters()]
    with torch.inference_mode():  # as inside Lightning's validation hooks
        images = torch.randn(2, 1, 32, 32)
        cams, _ = compute_cams(net, images, batch_size=1)
    assert cams.shape == (2, 32, 32)
    assert all(torch.equal(a, p.grad) for a, p in zip(before, net.parameters()))
    assert all(p.requires_grad for p in net.parameters())


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_gives_a_map_in_unit_range(method):
    cams, _ = compute_cams(frozen_cnn(), torch.randn(2, 1, 32, 32), method=method)
    assert cams.shape == (2, 32, 32) and cams.min() >= 0 and cams.max() <= 1 + 1e-6


def test_activation_grid_by_hand():
    # Class and distillation tokens, then a 2 x 3 patch grid; channel 0 of token k holds 2k.
    tokens = torch.arange(16, dtype=torch.float32).reshape(1, 8, 2)
    grid = ActivationGrid((2, 3))(tokens)
    assert grid.shape == (1, 2, 2, 3) and grid[0, 0].tolist() == [[4, 6, 8], [10, 12, 14]]
    # No patch grid known: the largest square the tokens hold (class + 3 registers, then 3 x 3).
    assert ActivationGrid()(torch.arange(13.0).reshape(1, 13, 1))[0, 0].tolist() == [[4, 5, 6], [7, 8, 9], [10, 11, 12]]
    nhwc = torch.arange(12.0).reshape(1, 2, 2, 3)  # Swin's channels-last map
    assert torch.equal(ActivationGrid(channels_last=True)(nhwc)[0, :, 1, 0], nhwc[0, 1, 0])
    cnn = torch.randn(1, 3, 4, 4)
    assert ActivationGrid((2, 2))(cnn) is cnn


def test_cam_on_a_vision_transformer_is_not_empty():
    """Tokens become a 2 x 2 map; the layer is the last block's norm1, whose patch tokens the
    class token reads (the block's own output reaches the head only through the class token)."""
    torch.manual_seed(0)
    net = build_classifier({"name": "timm", "model": "vit_tiny_patch16_224", "input_size": 32, "weights": "none"})
    cams, probs = compute_cams(net, torch.randn(2, 3, 32, 32), target="covid")
    assert cams.shape == (2, 32, 32) and probs.shape == (2,) and np.isfinite(cams).all()
    assert (cams.reshape(2, -1).max(axis=1) > 0).all()


def test_targets_explain_opposite_calls():
    net = frozen_cnn()
    x = torch.randn(1, 1, 32, 32)
    covid, _ = compute_cams(net, x, target="covid")
    normal, _ = compute_cams(net, x, target="no_finding")
    assert not np.allclose(covid, normal)


def test_bad_settings_name_the_valid_ones():
    with pytest.raises(ValueError, match="valid: gradcam"):
        compute_cams(frozen_cnn(), torch.randn(1, 1, 32, 32), method="saliency")
    with pytest.raises(ValueError, match="no spatial layer"):
        compute_cams(build_classifier({"name": "simple_fc", "input_size": 16}), torch.randn(1, 1, 16, 16))
    with pytest.raises(ValueError, match="no layer 'conv9'"):
        compute_cams(frozen_cnn(), torch.randn(1, 1, 32, 32), layer="conv9")


def test_overlays_grid_and_balanced_choice():
    image = np.full((20, 30), 100, np.uint8)
    cam = np.zeros((10, 15), np.float32)
    cam[:, :7] = 1.0
    assert overlay(image, cam, "multiply")[:, -1].max() == 0  # where the CAM is 0, multiply is black
    assert overlay(image, cam, "multiply")[:, 0].min() == 100
    assert overlay(image, cam, "mask").shape == (20, 30, 3)
    blend = overlay(image, cam, "blend", alpha=0.5)
    assert blend.dtype == np.uint8 and blend[:, -1].mean() > 0
    with pytest.raises(ValueError, match="valid: blend"):
        overlay(image, cam, "sepia")
    tile = labelled(blend, ["a", "b"])
    assert tile.shape[0] > 20
    assert grid([tile] * 5, columns=2).shape[1] == 2 * 30 + 3 * 4
    picture, overlays = cam_grid([image] * 3, [cam] * 3, [["x"]] * 3, tile=64)
    assert len(overlays) == 3 and overlays[0].shape == (64, 64, 3) and picture.ndim == 3
    assert balanced_rows(np.array([0, 0, 0, 1, 1]), 4) == [3, 0, 4, 1]
