"""STL-10 (labelled splits) through torchvision's ``STL10``, or as an image tree.

Only the labelled ``train`` (5,000) and ``test`` (8,000) splits are used; the
100,000 unlabelled images are not part of the protocol (members must be known).
torchvision's integrity check covers every file of the official archive, so
``stl10_binary/`` must hold all of it (``unlabeled_X.bin`` included).

Images are 96x96. ``stl10`` keeps them native (an encoder can train on smaller
crops with its ``image_size`` parameter); ``stl10:<size>`` resizes every image
once, with antialiasing, to ``size`` x ``size`` (e.g. ``stl10:32`` for CIFAR-scale
backbones and budgets).
"""

from __future__ import annotations

from pathlib import Path

import torch

from bench.data import DataUnavailableError, ImageData
from bench.datasets._torchvision import TorchvisionImages
from bench.registry import register_dataset


@register_dataset("stl10", description="STL-10 labelled train/test, 96x96 (stl10:<size> resizes)")
class Stl10(TorchvisionImages):
    name = "stl10"
    title = "STL-10"
    folder = "stl10_binary"
    files = ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "unlabeled_X.bin")
    tree = "stl10"
    url = "https://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"
    shape = (5000, 8000, 96, 10)  # train, test, image side, classes (for cost estimates)

    @classmethod
    def parse_arg(cls, arg: str | None) -> int | None:
        if not arg:
            return None
        if arg.isdigit() and int(arg) >= 8:
            return int(arg)
        raise DataUnavailableError(f"stl10 takes an image size, e.g. stl10:32 (got 'stl10:{arg}')")

    @classmethod
    def split(cls, root: Path, train: bool, download: bool):
        from torchvision.datasets import STL10

        return STL10(str(root), split="train" if train else "test", download=download)

    @classmethod
    def class_names(cls, ds) -> list[str]:
        return list(getattr(ds, "classes", None) or [str(c) for c in range(10)])

    @classmethod
    def finish(cls, data: ImageData, size: int | None) -> ImageData:
        if size is None or data.train_x.shape[-1] == size:
            return data
        from torchvision.transforms.v2.functional import resize

        def shrink(x: torch.Tensor) -> torch.Tensor:  # in chunks: bounded float temporaries
            return torch.cat([resize(x[i : i + 1024], [size, size], antialias=True)
                              for i in range(0, len(x), 1024)])

        data.train_x, data.test_x = shrink(data.train_x), shrink(data.test_x)
        return data

