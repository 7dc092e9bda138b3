"""The loaders backed by a torchvision dataset class, in one place.

Each standard data set is read by torchvision's own class (its file layout, its
md5 integrity check, its download), then converted once to ``uint8 [N, C, H, W]``
tensors. Every loader also accepts the data set unpacked as a
``<tree>/{train,test}/<class>/*`` image tree under the data root, which is how
machines without internet receive it (e.g. the shared ``cifar10-jpeg.tar.gz``).

Downloads happen only when the user asks (``--download``); otherwise a missing
data set is reported in one line that says where the files must go.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from bench.data import DataUnavailableError, ImageData
from bench.datasets._folder import has_split_tree, read_tree


def to_tensors(ds: Any, channels_last: bool, label_attr: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A torchvision dataset's ``.data`` (``[N, H, W, C]`` for CIFAR, ``[N, C, H, W]`` for SVHN
    and STL-10) as ``uint8 [N, C, H, W]``, and its labels as int64."""
    x = torch.from_numpy(np.ascontiguousarray(ds.data))
    if channels_last:
        x = x.permute(0, 3, 1, 2)
    y = torch.as_tensor(np.asarray(getattr(ds, label_attr)), dtype=torch.long)
    return x.contiguous(), y


class TorchvisionImages:
    """Base of a registered loader; a subclass names its files and converts one split.

    ``folder``: the directory (under the data root) that torchvision's class reads;
    ``files``: the files that must be in it for the data set to count as present;
    ``tree``: the alternative image-tree directory; ``url``: where a user gets the files;
    ``channels_last`` / ``label_attr``: how the torchvision class stores images and labels;
    ``shape``: (train size, test size, image side, classes) of the official files, which
    cost estimates use without loading anything.
    """

    name: ClassVar[str]
    title: ClassVar[str]  # how people write it, for messages
    folder: ClassVar[str]
    files: ClassVar[tuple[str, ...]]
    tree: ClassVar[str]
    url: ClassVar[str]
    shape: ClassVar[tuple[int, int, int, int]]
    channels_last: ClassVar[bool] = False
    label_attr: ClassVar[str] = "labels"

    # --- what a subclass provides ---------------------------------------------
    @classmethod
    def tv_root(cls, root: Path) -> Path:
        """The ``root`` argument of torchvision's class (its files live in ``folder`` below
        it for CIFAR and STL-10; SVHN reads its .mat files from ``root`` itself)."""
        return root

    @classmethod
    def split(cls, root: Path, train: bool, download: bool) -> Any:
        """torchvision's dataset object for the train or test split."""
        raise NotImplementedError

    @classmethod
    def class_names(cls, ds: Any) -> list[str]:
        return list(ds.classes)

    @classmethod
    def parse_arg(cls, arg: str | None) -> Any:
        """The loader's argument (after ``name:``); none is accepted by default."""
        if arg:
            raise DataUnavailableError(f"dataset '{cls.name}' takes no argument (got '{arg}')")
        return None

    @classmethod
    def finish(cls, data: ImageData, arg: Any) -> ImageData:
        """Post-process the loaded data (e.g. resize); the identity by default."""
        return data

    # --- the loader protocol -----------------------------------------------------
    @classmethod
    def present(cls, root: Path) -> bool:
        d = root / cls.folder
        return all((d / f).is_file() for f in cls.files)

    @classmethod
    def how(cls, root: Path) -> str:
        return (
            f"{cls.title} not found under {root}: put torchvision's files ({', '.join(cls.files)}) "
            f"in {root / cls.folder} (from {cls.url}), or a {cls.tree}/{{train,test}}/<class>/* "
            f"image tree in {root}, or pass --download on a machine with internet "
            "(the data root is --data-root or $BENCH_DATA)"
        )

    @classmethod
    def check(cls, root: Path, arg: str | None, download: bool) -> str | None:
        try:
            cls.parse_arg(arg)
        except DataUnavailableError as e:
            return str(e)
        if download or cls.present(root) or has_split_tree(root / cls.tree):
            return None
        return cls.how(root)

    @classmethod
    def load(cls, root: Path, arg: str | None, download: bool, cache: Path | None = None) -> ImageData:
        parsed = cls.parse_arg(arg)
        spec = f"{cls.name}:{arg}" if arg else cls.name
        if not cls.present(root) and has_split_tree(root / cls.tree):
            return cls.finish(read_tree(spec, root / cls.tree, cache=cache), parsed)
        try:
            tr = cls.split(cls.tv_root(root), True, download)
            te = cls.split(cls.tv_root(root), False, download)
        except (RuntimeError, OSError) as e:  # torchvision: missing/corrupt files, failed download
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise DataUnavailableError(f"{cls.how(root)} [torchvision: {reason}]") from None
        tx, ty = to_tensors(tr, cls.channels_last, cls.label_attr)
        vx, vy = to_tensors(te, cls.channels_last, cls.label_attr)
        return cls.finish(ImageData(spec, tx, ty, vx, vy, cls.class_names(tr)), parsed)
