"""Tiny random-weight models for the exporter tests (CPU, milliseconds)."""

from collections import OrderedDict

import torch
from torch import nn


class Tiny(nn.Module):
    """3x16x16 -> conv -> relu -> conv (`body.conv2`) -> relu (`body.relu2`) -> GAP -> fc (5 classes).

    With inplace=True, `body.relu2` overwrites the output of `body.conv2` in place: a hook that
    keeps a reference instead of a copy sees the post-ReLU values.
    """

    def __init__(self, inplace: bool = False, k: int = 6, classes: int = 5, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.body = nn.Sequential(
            OrderedDict(
                [
                    ("conv1", nn.Conv2d(3, 8, 3, padding=1)),
                    ("relu1", nn.ReLU()),
                    ("conv2", nn.Conv2d(8, k, 3, padding=1)),
                    ("relu2", nn.ReLU(inplace=inplace)),
                ]
            )
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(k, classes)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.body(x)), 1))


class TinyStride(nn.Module):
    """3x32x32 -> 16 channels at 8x8 (`features.3`) -> GAP -> fc (4 classes); for the comparisons."""

    def __init__(self, seed: int = 1):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, stride=2),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1, stride=2),
            nn.ReLU(),
        )
        self.fc = nn.Linear(16, 4)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.4)
            self.features[2].bias.add_(0.3)  # mostly positive activations

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


class TinySmooth(nn.Module):
    """3x32x32 -> conv -> SiLU -> conv (`features.2`, 12 channels at 8x8) -> SiLU -> 1x1 conv -> SiLU
    -> GAP -> fc (4 classes). Smooth after the layer, so the target logit has a non-zero Hessian
    with respect to `features.2` (ShapleyCAM's H); with inplace=True the SiLU after the layer
    overwrites its output in place."""

    def __init__(self, inplace: bool = False, seed: int = 2):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, stride=2),
            nn.SiLU(),
            nn.Conv2d(8, 12, 3, padding=1, stride=2),
            nn.SiLU(inplace=inplace),
            nn.Conv2d(12, 12, 1),
            nn.SiLU(),
        )
        self.fc = nn.Linear(12, 4)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


class Unseeded(nn.Module):
    """Tiny's shape with PyTorch's default (random, unseeded) initialization: for --model-seed."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).mean((2, 3)))


class WithTuple(nn.Module):
    """A module (`pair`) that returns a tuple: not a CAM layer."""

    class Pair(nn.Module):
        def forward(self, x):
            return x, x

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pair = self.Pair()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.pair(self.conv(x))[0].mean((2, 3)))


def images(n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    """uint8 [n, 3, size, size] of random pixels."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
