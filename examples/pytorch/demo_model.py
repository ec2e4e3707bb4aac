"""The demo CNN that ships with camc (examples/data/demo_model.safetensors).

Four 3x3 conv blocks (BatchNorm + ReLU, three 2x2 max-pools) turn a 64x64 RGB canvas into
64 channels at 8x8; global average pooling and one linear layer give the 10 digit logits.
The CAM layer is `features.relu4` (the last ReLU, 64 x 8 x 8); the head is `fc`, so the
original CAM (fc_cam) and the feature-level faithfulness metrics (ad/ic/ag) apply.
"""

from collections import OrderedDict

import torch
from torch import nn


def _block(i, cin, cout, pool):
    layers = [
        (f"conv{i}", nn.Conv2d(cin, cout, 3, padding=1, bias=False)),
        (f"bn{i}", nn.BatchNorm2d(cout)),
        (f"relu{i}", nn.ReLU(inplace=True)),
    ]
    if pool:
        layers.append((f"pool{i}", nn.MaxPool2d(2)))
    return layers


class DemoNet(nn.Module):
    """64x64 RGB -> 10 classes; CAM layer `features.relu4` ([64, 8, 8])."""

    def __init__(self, num_classes: int = 10, width: int = 64):
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict(
                _block(1, 3, 16, True)
                + _block(2, 16, 32, True)
                + _block(3, 32, width, True)
                + _block(4, width, width, False)
            )
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(self.pool(x), 1)
        return self.fc(x)


# Pixel normalization the demo model was trained with (inputs are RGB in [0, 1]).
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
