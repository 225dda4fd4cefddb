"""The original study's from-scratch networks: no transfer at all, the baseline to beat."""
from __future__ import annotations

from torch import nn


class SimpleFCFeatures(nn.Module):
    """Raw pixels as features: the study's fully connected net is this plus the head."""

    def __init__(self, channels: int, size: int) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.num_features = channels * size * size

    def forward(self, x):
        return self.flatten(x)


class SimpleCNNFeatures(nn.Module):
    """One convolution layer (ReLU, max-pool), flattened; the head adds the 64-unit layer."""

    def __init__(self, channels: int, size: int, conv_channels: int, kernel_size: int, pool: int) -> None:
        super().__init__()
        if size % pool:
            raise ValueError(f"input size {size} is not divisible by pool {pool}")
        self.conv = nn.Conv2d(channels, conv_channels, kernel_size, padding=kernel_size // 2)
        self.act = nn.ReLU(inplace=False)
        self.pool = nn.MaxPool2d(pool)
        self.flatten = nn.Flatten()
        self.num_features = conv_channels * (size // pool) ** 2

    def forward(self, x):
        return self.flatten(self.pool(self.act(self.conv(x))))
