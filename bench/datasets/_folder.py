"""Read a ``{train,test}/<class>/*`` image tree into uint8 tensors (decoded once, then cached).

The decoded tensors go to a cache folder (``bench.data.decode_cache``: under the command's
model cache folder), never into the tree: the data root may be read-only or shared, and a
184 MB copy of CIFAR-10 beside the user's images is not theirs to clean up.

Shared by ``imagefolder:<path>`` and by the torchvision-backed loaders, which also accept
their data set unpacked as such a tree (e.g. the shared ``cifar10-jpeg.tar.gz``).
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import tempfile
from pathlib import Path

import torch

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


def _signature(split_dir: Path, files: list[Path], size: int | None) -> str:
    """What the decoded tensors depend on: each file's path relative to the split (its class
    folder included, so a moved file gets its new label), byte size and mtime (so a same-size
    replacement is decoded anew), and the target size."""
    stats = [(f.relative_to(split_dir).as_posix(), f.stat()) for f in files]
    text = "|".join(f"{rel}:{st.st_size}:{st.st_mtime_ns}" for rel, st in stats) + f"|size={size}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _decode(f: Path) -> torch.Tensor:
    # torchvision loads at the first image decoded: a data set read from its decode cache, and
    # validate of a matrix without image folders, never import it
    from torchvision.io import ImageReadMode, decode_image, read_file

    from bench.data import DataUnavailableError

    try:
        return decode_image(read_file(str(f)), mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        reason = re.sub(r"^\w+, \S+:\d+, ", "", reason)[:200]  # torchvision's C++ source location
        raise DataUnavailableError(
            f"image {f} cannot be decoded ({reason}): replace it with a valid image or delete it"
        ) from None


def _decode_all(files: list[Path]) -> list[torch.Tensor]:
    """Every file decoded. What the C decoders print on fd 2 meanwhile (libjpeg's "Corrupt
    JPEG data: ..." warnings) is held back: passed on once all decoded, dropped when a file
    cannot be decoded, whose one-line error then says everything."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to guard
        return [_decode(f) for f in files]
    with tempfile.TemporaryFile() as held:
        sys.stderr.flush()
        os.dup2(held.fileno(), 2)
        try:
            imgs = [_decode(f) for f in files]
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        held.seek(0)
        noise = held.read().decode(errors="replace")
    if noise:
        sys.stderr.write(noise)
    return imgs


def read_split(
    split_dir: Path, size: int | None = None, cache: Path | None = None
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Decode every image of one split; resized to ``size`` (square) when given or when the
    shapes differ. The tensors are cached in ``cache`` (default: bench.data.decode_cache())
    under the folder's absolute path and a signature of its files (:func:`_signature`);
    caches of earlier versions of the same folder are removed."""
    from bench.data import decode_cache

    files, labels, classes = _files(split_dir)
    if not files:
        raise FileNotFoundError(f"no images under {split_dir}")
    folder = Path(cache) if cache is not None else decode_cache()
    where = hashlib.sha256(str(split_dir.resolve()).encode()).hexdigest()[:12]
    prefix = f"{where}-{split_dir.name}-"
    cache = folder / f"{prefix}{_signature(split_dir, files, size)}.pt"
    if cache.exists():
        try:
            blob = torch.load(cache, weights_only=True)
            return blob["x"], blob["y"], classes
        except Exception:  # corrupt cache: decode again
            cache.unlink(missing_ok=True)
    imgs = _decode_all(files)
    if size is None and len({tuple(i.shape) for i in imgs}) > 1:
        size = max(imgs[0].shape[1:])
    if size is not None:
        from torchvision.transforms.v2.functional import resize

        imgs = [resize(i, [size, size], antialias=True) for i in imgs]
    x = torch.stack(imgs)
    y = torch.tensor(labels, dtype=torch.long)
    try:  # best effort: a read-only cache folder simply decodes again next time
        folder.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".tmp{os.getpid()}")
        torch.save({"x": x, "y": y}, tmp)
        os.replace(tmp, cache)
        for old in folder.glob(f"{prefix}*.pt"):  # superseded: the folder changed since
            if old != cache:
                old.unlink(missing_ok=True)
    except OSError:
        pass
    return x, y, classes


def read_tree(name: str, root: Path, size: int | None = None, cache: Path | None = None):
    """``root/{train,test}/<class>/*`` as :class:`~bench.data.ImageData`.

    Test labels are mapped onto the *training* class list (a test folder may lack a class,
    but a class absent from training has no label and is an error), and test images are
    resized to the training images' size when the two differ.
    """
    from bench.data import DataUnavailableError, ImageData

    tx, ty, classes = read_split(root / "train", size, cache)
    vx, vy, test_classes = read_split(root / "test", size, cache)
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
