"""No stale results: data edited in place (same names, same count) is new data to resume and to
the model cache, and the image-folder decode cache is keyed by content, not by file names."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import yaml
from torchvision.io import encode_png

from bench.data import load_dataset
from bench.datasets._folder import read_split, read_tree
from bench.tracking import Tracker
from tests.conftest import TINY, run_logged


def png(seed: int, side: int = 16) -> bytes:
    """An uncompressed PNG (compression level 0): its byte size depends on its shape alone, so
    two images of one shape are same-size replacements of each other."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (3, side, side), dtype=torch.uint8, generator=g)
    return encode_png(x, compression_level=0).numpy().tobytes()


def image_tree(root: Path, classes: int = 2, train: int = 30, test: int = 10, offset: int = 0) -> Path:
    for split, n in (("train", train), ("test", test)):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                (folder / f"{i:03d}.png").write_bytes(png(offset + 1000 * c + i + (0 if split == "train" else 500)))
    return root


def caches(root: Path) -> list[Path]:
    """The decode caches of the tree at ``root`` (kept in ``cache_of(root)``, never in the tree)."""
    return sorted(cache_of(root).glob("*.pt"))


def cache_of(root: Path) -> Path:
    return root.parent / "decoded"


def test_moved_image_gets_its_new_label(tmp_path: Path):
    root = image_tree(tmp_path / "tree", train=3, test=1)
    x, y, classes = read_split(root / "train", cache=cache_of(root))
    assert y.tolist() == [0, 0, 0, 1, 1, 1]
    os.replace(root / "train/class0/000.png", root / "train/class1/900.png")  # same bytes, another class folder
    x2, y2, _ = read_split(root / "train", cache=cache_of(root))
    assert y2.tolist() == [0, 0, 1, 1, 1, 1]
    assert torch.equal(x2[-1], x[0])  # the moved image, decoded under its new class
    assert len(caches(root)) == 1  # the superseded cache file is gone


def test_same_size_replacement_is_decoded_anew(tmp_path: Path):
    root = image_tree(tmp_path / "tree", train=3, test=1)
    target = root / "train/class1/001.png"
    x, _, _ = read_split(root / "train", cache=cache_of(root))
    new = png(424242)
    assert len(new) == target.stat().st_size  # a same-size replacement: the old key could not tell
    target.write_bytes(new)
    x2, _, _ = read_split(root / "train", cache=cache_of(root))
    assert not torch.equal(x2[4], x[4])
    assert torch.equal(torch.cat([x2[:4], x2[5:]]), torch.cat([x[:4], x[5:]]))
    assert len(caches(root)) == 1
    x3, _, _ = read_split(root / "train", cache=cache_of(root))  # unchanged since: served from the cache
    assert torch.equal(x3, x2)


def test_fingerprint_follows_content_not_names(tmp_path: Path):
    root = image_tree(tmp_path / "tree", train=3, test=1)
    a = read_tree("t", root, cache=cache_of(root)).fingerprint
    assert read_tree("t", root, cache=cache_of(root)).fingerprint == a  # deterministic across loads
    (root / "train/class0/002.png").write_bytes(png(77))
    assert read_tree("t", root, cache=cache_of(root)).fingerprint != a
    digits = load_dataset("digits", tmp_path, reload=True).fingerprint
    assert len(digits) == 16 and load_dataset("digits", tmp_path, reload=True).fingerprint == digits


run = run_logged


def test_data_edited_in_place_invalidates_resume_and_the_model_cache(tmp_path: Path):
    data = image_tree(tmp_path / "tree", classes=2, train=40, test=10)
    matrix = tmp_path / "edited.yaml"
    matrix.write_text(yaml.safe_dump({
        **TINY, "name": "edited", "datasets": [f"imagefolder:{data}"],
        "encoders": [{"name": "supervised", "backbone": "convnet-s"}],
        "methods": ["retrain", {"finetune": {"epochs": 1}}],
        "train": {"epochs": 1, "batch_size": 32, "lr": 0.002},
        "data": {"n_val": 10}, "audit": {"views": 2, "max_members": 50, "references": 1},
    }))
    results = tmp_path / "results"
    argv = ["run", "--matrix", str(matrix), "--results-dir", str(results)]

    code, lines = run(argv)
    assert code == 0 and any(line.startswith("trained original") for line in lines)
    first = Tracker(results).results_frame("edited")
    n = len(first)
    assert n >= 3 and first["data.fingerprint"].nunique() == 1  # original, retrain, finetune (+ floor)

    code, lines = run(argv)  # unchanged: everything resumes, nothing trains
    assert code == 0 and any(f"0 with work left; {n} finished" in line for line in lines)
    assert not any(line.startswith(("trained ", "cache hit")) for line in lines)

    for i, f in enumerate(sorted((data / "train/class1").iterdir())):  # a class's training images, in place
        size = f.stat().st_size
        f.write_bytes(png(77_777 + i))
        assert f.stat().st_size == size
    code, lines = run(argv)
    assert code == 0
    assert any("1 with work left; 0 finished" in line for line in lines)  # nothing resumed
    assert any(line.startswith("trained original") for line in lines)  # the old models not reused
    assert any(line.startswith("trained retrain") for line in lines)
    assert not any(line.startswith("cache hit: original") for line in lines)
    df = Tracker(results).results_frame("edited")
    assert df["data.fingerprint"].nunique() == 2
    decoded = sorted((results / "cache" / "decoded").glob("*.pt"))  # the run's cache folder, not the data's
    assert len(decoded) == 2  # one decode cache per split: the superseded train cache is gone
