"""Decoded image trees are cached in the cache folder, never under the user's data root."""

from __future__ import annotations

from pathlib import Path

import pytest

import bench.datasets._folder as folder
from bench.data import decode_cache, load_dataset
from tests.test_staleness import image_tree


def files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_loading_a_folder_writes_nothing_under_the_data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    data = tmp_path / "data"
    image_tree(data / "pets", train=3, test=1)
    before = files(data)
    cache = tmp_path / "results" / "cache"
    first = load_dataset("imagefolder:pets", data, reload=True, cache=cache)
    assert files(data) == before
    assert len(list((cache / "decoded").glob("*.pt"))) == 2  # train and test, under the cache folder

    def no_decoding(paths):
        raise AssertionError("decoded again")

    monkeypatch.setattr(folder, "_decode_all", no_decoding)
    again = load_dataset("imagefolder:pets", data, reload=True, cache=cache)  # served from the cache
    assert again.fingerprint == first.fingerprint and files(data) == before


def test_without_a_cache_folder_the_users_cache_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert decode_cache() == tmp_path / "xdg" / "unlearn-bench" / "decoded"
    assert decode_cache(tmp_path / "c") == tmp_path / "c" / "decoded"
    data = tmp_path / "data"
    image_tree(data / "pets", train=2, test=1)
    before = files(data)
    load_dataset("imagefolder:pets", data, reload=True)
    assert files(data) == before and len(list(decode_cache().glob("*.pt"))) == 2


def test_two_trees_alike_but_in_different_folders_keep_separate_caches(tmp_path: Path):
    """The key names the folder too: identical relative layouts elsewhere are other data."""
    cache = tmp_path / "cache"
    a = image_tree(tmp_path / "a", train=2, test=1)
    b = image_tree(tmp_path / "b", train=2, test=1, offset=7)
    xa, _, _ = folder.read_split(a / "train", cache=cache)
    xb, _, _ = folder.read_split(b / "train", cache=cache)
    assert not (xa == xb).all() and len(list(cache.glob("*.pt"))) == 2
