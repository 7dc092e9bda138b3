"""CIFAR-10 through torchvision's ``CIFAR10`` (pickled batches), or as an image tree.

Accepted layouts under the data root: ``cifar-10-batches-py/`` (torchvision's
files, md5-checked by torchvision) or ``cifar10/{train,test}/<class>/*.jpg`` (the
layout of the shared ``cifar10-jpeg.tar.gz``; import it with
``python -m bench data import cifar10-jpeg.tar.gz``).
"""

from __future__ import annotations

from pathlib import Path

from bench.datasets._torchvision import TorchvisionImages
from bench.registry import register_dataset


@register_dataset("cifar10", description="CIFAR-10, 32x32, 10 classes (pickled or image tree)")
class Cifar10(TorchvisionImages):
    name = "cifar10"
    title = "CIFAR-10"
    folder = "cifar-10-batches-py"
    files = ("data_batch_1", "data_batch_5", "test_batch", "batches.meta")
    tree = "cifar10"
    url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    shape = (50000, 10000, 32, 10)  # train, test, image side, classes (for cost estimates)

    channels_last = True
    label_attr = "targets"

    @classmethod
    def split(cls, root: Path, train: bool, download: bool):
        from torchvision.datasets import CIFAR10

        return CIFAR10(str(root), train=train, download=download)
