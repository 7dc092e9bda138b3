"""SVHN (cropped digits) through torchvision's ``SVHN``, or as an image tree.

Accepted layouts under the data root: ``svhn/train_32x32.mat`` and
``svhn/test_32x32.mat`` (torchvision's files, md5-checked by torchvision; the
``extra`` split is not used) or ``svhn-images/{train,test}/<class>/*``. Label 10
of the .mat files is digit 0 (torchvision remaps it), so classes are "0".."9".
"""

from __future__ import annotations

from pathlib import Path

from bench.datasets._torchvision import TorchvisionImages
from bench.registry import register_dataset


@register_dataset("svhn", description="SVHN cropped digits, 32x32, 10 classes (.mat files)")
class Svhn(TorchvisionImages):
    name = "svhn"
    title = "SVHN"
    folder = "svhn"
    files = ("train_32x32.mat", "test_32x32.mat")
    tree = "svhn-images"
    url = "http://ufldl.stanford.edu/housenumbers/"
    shape = (73257, 26032, 32, 10)  # train, test, image side, classes (for cost estimates)

    @classmethod
    def tv_root(cls, root: Path) -> Path:
        return root / cls.folder  # torchvision's SVHN reads <root>/<split>_32x32.mat

    @classmethod
    def split(cls, root: Path, train: bool, download: bool):
        from torchvision.datasets import SVHN

        return SVHN(str(root), split="train" if train else "test", download=download)

    @classmethod
    def class_names(cls, ds) -> list[str]:
        return [str(c) for c in range(10)]
