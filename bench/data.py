"""In-memory image data: the uint8 tensors every dataset loader returns.

Data knows no model. A loader returns an :class:`ImageData` (train and test
images as ``uint8 [N, C, H, W]`` tensors plus integer labels); a :class:`DataView`
is a subset of it (one split) that can move to the training device whole, so
batches are index lookups rather than a DataLoader with PIL workers.
"""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from bench.dataspec import DataUnavailableError, default_data_root, parse_dataset, user_cache  # noqa: F401 (re-exported)
from bench.registry import datasets


@dataclass
class ImageData:
    name: str
    train_x: torch.Tensor  # uint8 [N, C, H, W]
    train_y: torch.Tensor  # int64 [N]
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.train_x.shape[1:]
        return int(c), int(h), int(w)

    @cached_property
    def fingerprint(self) -> str:
        """A hash of the content itself (pixels, labels, class names), computed once per load
        (~0.15 s for CIFAR-10's 150 MB): the model cache and resume key on it, so data edited in
        place (same names, same count) is never mistaken for the data a result was computed on."""
        h = hashlib.sha256(repr((self.classes, tuple(self.train_x.shape), tuple(self.test_x.shape))).encode())
        for t in (self.train_x, self.train_y, self.test_x, self.test_y):
            h.update(t.contiguous().numpy().data)
        return h.hexdigest()[:16]

    def channel_stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the training images in [0, 1] (for normalisation)."""
        x = self.train_x[:10000].float().div_(255)
        return x.mean(dim=(0, 2, 3)).tolist(), x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()


@dataclass
class DataView:
    """One split: images, labels and their indices in the parent array."""

    x: torch.Tensor  # uint8 [n, C, H, W]
    y: torch.Tensor  # int64 [n]
    idx: torch.Tensor  # int64 [n], index into train (or test) arrays
    name: str = ""

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def to(self, device: torch.device | str) -> DataView:
        return DataView(self.x.to(device), self.y.to(device), self.idx.to(device), self.name)

    def subset(self, rows: np.ndarray | torch.Tensor, name: str | None = None) -> DataView:
        rows = torch.as_tensor(rows, dtype=torch.long, device=self.x.device)
        return DataView(self.x[rows], self.y[rows], self.idx[rows], name or self.name)

    @staticmethod
    def concat(views: list[DataView], name: str) -> DataView:
        return DataView(
            torch.cat([v.x for v in views]),
            torch.cat([v.y for v in views]),
            torch.cat([v.idx for v in views]),
            name,
        )


@dataclass
class Batch:
    """A training batch on the device: raw uint8 images (encoders augment them), labels, ids."""

    x: torch.Tensor
    y: torch.Tensor
    idx: torch.Tensor

    def __len__(self) -> int:
        return int(self.x.shape[0])


def decode_cache(cache: Path | None = None) -> Path:
    """Where decoded image trees are kept: ``<cache>/decoded`` (the command's model cache folder),
    else ``decoded`` in the user's cache folder; never the data root, which may be read-only or
    shared and is the user's to fill."""
    return (Path(cache) if cache is not None else user_cache()) / "decoded"


def check_dataset(spec: str, root: Path, download: bool = False) -> str | None:
    """None when ``spec`` can be loaded from ``root``; else one line saying how to get it."""
    name, arg = parse_dataset(spec)
    loader = datasets.get(name)
    return loader.check(root, arg, download)


_MEMO: dict[tuple[str, str], ImageData] = {}


def load_dataset(spec: str, root: Path | None = None, download: bool = False, reload: bool = False,
                 cache: Path | None = None) -> ImageData:
    """Load (and memoise per process) the dataset named by ``spec``. Validation loads it with
    ``reload`` (so a long-lived process never keeps data edited on disk since), the cells of
    the invocation then reuse it. ``download`` only says whether absent files may be fetched,
    so it is not part of the memo key; nor is ``cache``, the model cache folder, under which
    decoded image trees are kept (:func:`decode_cache`), a content-keyed copy."""
    root = Path(root) if root is not None else default_data_root()
    key = (spec, str(root))
    if reload or key not in _MEMO:
        name, arg = parse_dataset(spec)
        loader = datasets.get(name)
        problem = loader.check(root, arg, download)
        if problem:
            raise DataUnavailableError(problem)
        takes_cache = "cache" in inspect.signature(loader.load).parameters  # a plugin's loader may not
        _MEMO[key] = loader.load(root, arg, download, **({"cache": decode_cache(cache)} if takes_cache else {}))
    return _MEMO[key]
