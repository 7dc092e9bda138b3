"""Read a ``{train,test}/<class>/*`` image tree into uint8 tensors (decoded once, then cached).

Shared by ``imagefolder:<path>`` and by the torchvision-backed loaders, which also accept
their data set unpacked as such a tree (e.g. the shared ``cifar10-jpeg.tar.gz``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torchvision.io import ImageReadMode, decode_image, read_file

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def has_split_tree(root: Path) -> bool:
    return (root / "train").is_dir() and (root / "test").is_dir()


def _files(split_dir: Path) -> tuple[list[Path], list[int], list[str]]:
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    files, labels = [], []
    for c, cls in enumerate(classes):
        for f in sorted((split_dir / cls).iterdir()):
            if f.suffix.lower() in IMAGE_EXTS:
                files.append(f)
                labels.append(c)
    return files, labels, classes


def read_split(
    split_dir: Path, size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Decode every image of one split; resized to ``size`` (square) when given or when the
    shapes differ."""
    files, labels, classes = _files(split_dir)
    if not files:
        raise FileNotFoundError(f"no images under {split_dir}")
    sig = hashlib.sha256(
        "|".join(f"{f.name}:{os.path.getsize(f)}" for f in files).encode() + str(size).encode()
    ).hexdigest()[:16]
    cache = split_dir.parent / f".bench-{split_dir.name}-{sig}.pt"
    if cache.exists():
        try:
            blob = torch.load(cache, weights_only=True)
            return blob["x"], blob["y"], classes
        except Exception:  # corrupt cache: decode again
            cache.unlink(missing_ok=True)
    imgs = [decode_image(read_file(str(f)), mode=ImageReadMode.RGB) for f in files]
    if size is None and len({tuple(i.shape) for i in imgs}) > 1:
        size = max(imgs[0].shape[1:])
    if size is not None:
        from torchvision.transforms.v2.functional import resize

        imgs = [resize(i, [size, size], antialias=True) for i in imgs]
    x = torch.stack(imgs)
    y = torch.tensor(labels, dtype=torch.long)
    try:  # best effort: a read-only data root simply decodes again next time
        tmp = cache.with_suffix(f".tmp{os.getpid()}")
        torch.save({"x": x, "y": y}, tmp)
        os.replace(tmp, cache)
    except OSError:
        pass
    return x, y, classes


def read_tree(name: str, root: Path, size: int | None = None):
    """``root/{train,test}/<class>/*`` as :class:`~bench.data.ImageData`.

    Test labels are mapped onto the *training* class list (a test folder may lack a class,
    but a class absent from training has no label and is an error), and test images are
    resized to the training images' size when the two differ.
    """
    from bench.data import DataUnavailableError, ImageData

    tx, ty, classes = read_split(root / "train", size)
    vx, vy, test_classes = read_split(root / "test", size)
    unknown = sorted(set(test_classes) - set(classes))
    if unknown:
        raise DataUnavailableError(
            f"{root}/test has class folders missing from {root}/train: {', '.join(unknown[:5])}"
        )
    remap = torch.tensor([classes.index(c) for c in test_classes], dtype=torch.long)
    vy = remap[vy]
    if vx.shape[1:] != tx.shape[1:]:
        from torchvision.transforms.v2.functional import resize

        vx = resize(vx, list(tx.shape[2:]), antialias=True)
    if vx.shape[1] != tx.shape[1]:
        raise DataUnavailableError(f"{root}: train and test images differ in channels")
    return ImageData(name, tx, ty, vx, vy, classes)
