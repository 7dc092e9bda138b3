"""``imagefolder:<path>``: any ``<path>/{train,test}/<class>/<image>`` tree.

Classes are the sorted names of the ``train`` sub-folders (test labels are mapped
onto them); images are decoded once as RGB uint8 and cached in the decode cache
(bench.data.decode_cache, never inside the tree), keyed by every file's path (class
folder included), size and mtime, so an edited, replaced or moved image is decoded anew;
a file that cannot be decoded is named in a one-line error, at validation. Images of
different sizes are resized to a common square size. A relative ``<path>`` is looked up
under the data root first, then under the working directory.
"""

from __future__ import annotations

from pathlib import Path

from bench.data import ImageData
from bench.datasets._folder import has_split_tree, read_tree
from bench.registry import register_dataset


def resolve(root: Path, arg: str | None) -> Path | None:
    if not arg:
        return None
    p = Path(arg).expanduser()
    if p.is_absolute():
        return p
    return root / p if (root / p).is_dir() else p.resolve()


@register_dataset("imagefolder", description="any <path>/{train,test}/<class>/* tree")
class ImageFolder:
    @staticmethod
    def check(root: Path, arg: str | None, download: bool) -> str | None:
        path = resolve(root, arg)
        if path is None:
            return "imagefolder needs a path: imagefolder:<path> with <path>/{train,test}/<class>/*"
        if not has_split_tree(path):
            return f"imagefolder: {path} has no train/ and test/ class folders"
        return None

    @staticmethod
    def load(root: Path, arg: str | None, download: bool, cache: Path | None = None) -> ImageData:
        path = resolve(root, arg)
        assert path is not None
        return read_tree(f"imagefolder:{arg}", path, cache=cache)
