"""Read a ``{train,test}/<class>/*`` image tree into uint8 tensors (decoded once, then cached)."""

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


def read_split(split_dir: Path, size: int | None = None) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Decode every image of one split; resized to ``size`` (square) when given or when shapes differ."""
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
