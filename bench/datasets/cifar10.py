"""CIFAR-10 from the data root, in torchvision's pickled layout or as an image folder.

Accepted layouts under the data root: ``cifar-10-batches-py/`` (torchvision's
``CIFAR10``) or ``cifar10/{train,test}/<class>/*.jpg`` (the layout of the shared
``cifar10-jpeg.tar.gz``; import it with ``python -m bench data import ARCHIVE``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.data import ImageData
from bench.datasets._folder import has_split_tree, read_split
from bench.registry import register_dataset

HOW = (
    "CIFAR-10 not found under {root}: run `python -m bench data import cifar10-jpeg.tar.gz` "
    "(or set BENCH_DATA / --data-root to a folder holding cifar10/ or cifar-10-batches-py/, "
    "or pass --download on a machine with internet)"
)


@register_dataset("cifar10", description="CIFAR-10, 32x32, 10 classes (pickled or image-folder layout)")
class Cifar10:
    @staticmethod
    def check(root: Path, arg: str | None, download: bool) -> str | None:
        if download or (root / "cifar-10-batches-py").is_dir() or has_split_tree(root / "cifar10"):
            return None
        return HOW.format(root=root)

    @staticmethod
    def load(root: Path, arg: str | None, download: bool) -> ImageData:
        if has_split_tree(root / "cifar10"):
            tx, ty, classes = read_split(root / "cifar10" / "train")
            vx, vy, _ = read_split(root / "cifar10" / "test")
            return ImageData("cifar10", tx, ty, vx, vy, classes)
        from torchvision.datasets import CIFAR10

        tr = CIFAR10(str(root), train=True, download=download)
        te = CIFAR10(str(root), train=False, download=download)

        def conv(ds) -> tuple[torch.Tensor, torch.Tensor]:
            x = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
            return x, torch.tensor(ds.targets, dtype=torch.long)

        (tx, ty), (vx, vy) = conv(tr), conv(te)
        return ImageData("cifar10", tx, ty, vx, vy, list(tr.classes))
