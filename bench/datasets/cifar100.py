"""CIFAR-100 through torchvision's ``CIFAR100`` (fine labels), or as an image tree.

Accepted layouts under the data root: ``cifar-100-python/`` (torchvision's
pickled ``train``/``test``/``meta``, md5-checked by torchvision) or
``cifar100/{train,test}/<class>/*``.
"""

from __future__ import annotations

from pathlib import Path

from bench.datasets._torchvision import TorchvisionImages
from bench.registry import register_dataset


@register_dataset("cifar100", description="CIFAR-100, 32x32, 100 fine classes (pickled or tree)")
class Cifar100(TorchvisionImages):
    name = "cifar100"
    title = "CIFAR-100"
    folder = "cifar-100-python"
    files = ("train", "test", "meta")
    tree = "cifar100"
    url = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
    shape = (50000, 10000, 32, 100)  # train, test, image side, classes (for cost estimates)

    channels_last = True
    label_attr = "targets"

    @classmethod
    def split(cls, root: Path, train: bool, download: bool):
        from torchvision.datasets import CIFAR100

        return CIFAR100(str(root), train=train, download=download)
