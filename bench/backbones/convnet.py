"""``convnet-s``: a 4-block ConvNet (~0.31M parameters) for CPU-scale work."""

from __future__ import annotations

import torch
from torch import nn

from bench.registry import register_backbone


class ConvNet(nn.Module):
    def __init__(self, in_channels: int = 3, widths: tuple[int, ...] = (32, 64, 128, 192)):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            c = w
        self.body = nn.Sequential(*layers)
        self.out_dim = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(dim=(2, 3))


@register_backbone("convnet-s", params="~0.31M", description="4-block ConvNet, 192-d, CPU scale")
def convnet_s(in_channels: int = 3, image_size: int = 32) -> nn.Module:
    return ConvNet(in_channels)
