"""``resnet18-cifar``: torchvision's ResNet-18 with the CIFAR stem (3x3 conv, no max-pool), 512-d."""

from __future__ import annotations

import torch
from torch import nn

from bench.registry import register_backbone


class ResNet18Cifar(nn.Module):
    def __init__(self, in_channels: int = 3):
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18(weights=None)
        net.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
        net.fc = nn.Identity()
        self.net = net
        self.out_dim = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register_backbone("resnet18-cifar", params="11.2M", description="ResNet-18, 3x3 stem, no max-pool (GPU scale)")
def resnet18_cifar(in_channels: int = 3, image_size: int = 32) -> nn.Module:
    return ResNet18Cifar(in_channels)
