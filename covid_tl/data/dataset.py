"""A torch Dataset over a Manifest: load, preprocess, convert to the backbone's input."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from covid_tl.data.manifest import Manifest
from covid_tl.models.spec import InputSpec
from covid_tl.preprocess.model_input import to_model_input
from covid_tl.preprocess.pipeline import Preprocess, identity

ImageLoader = Callable[[Mapping[str, Any]], np.ndarray]


class XrayDataset(Dataset):
    """(image tensor, target) pairs in manifest row order; target 1 is COVID-19."""

    def __init__(
        self,
        manifest: Manifest,
        load_image: ImageLoader,
        input_spec: InputSpec,
        preprocess: Preprocess = identity,
    ) -> None:
        self.rows = manifest.frame.to_dict("records")
        self.targets = manifest.targets
        self.load_image = load_image
        self.input_spec = input_spec
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.preprocess(self.load_image(self.rows[i]))
        x = torch.from_numpy(np.ascontiguousarray(to_model_input(image, self.input_spec)))
        return x, torch.tensor(self.targets[i], dtype=torch.long)
