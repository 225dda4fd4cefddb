import numpy as np
import pytest
import torch

from covid_tl.data.dataset import SeededAugmentation
from covid_tl.preprocess.augment import build_augmentation

IMAGE = np.tile(np.linspace(0, 255, 48).astype(np.uint8), (48, 1))


def test_no_amounts_means_no_augmentation():
    assert build_augmentation() is None


def test_study_augmentation_changes_images_but_keeps_size_and_type():
    augment = SeededAugmentation(build_augmentation(rotate=10, shear=5, zoom=0.1, brightness_contrast=0.2))
    out = augment(IMAGE)
    assert out.shape == IMAGE.shape and out.dtype == np.uint8
    assert not np.array_equal(out, IMAGE)


def test_augmentation_is_reproducible_per_torch_seed_and_differs_between_seeds():
    def draws(seed: int) -> list[np.ndarray]:
        torch.manual_seed(seed)  # what a DataLoader worker's seed looks like to the dataset
        augment = SeededAugmentation(build_augmentation(rotate=15, zoom=0.1))
        return [augment(IMAGE) for _ in range(3)]

    a, b, c = draws(1), draws(1), draws(2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[0], a[1])  # a stream, not one fixed transform


@pytest.mark.parametrize("bad", [{"rotate": -1}, {"zoom": 1.0}])
def test_bad_amounts_are_refused(bad):
    with pytest.raises(ValueError, match="augment"):
        build_augmentation(**bad)
