"""Each dataset loads from small files the test writes in the data set's own format, no network.

The torchvision-backed loaders run torchvision's real classes, including their md5
integrity check: the test computes the md5 of every file it writes and installs those
checksums on the class (``monkeypatch`` of ``train_list`` / ``test_list`` / ``meta`` /
``split_list``), so the check passes for these files and still rejects a corrupted one.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.datasets import CIFAR10, CIFAR100, STL10, SVHN
from torchvision.io import write_png

from bench.data import DataUnavailableError, check_dataset, load_dataset
from bench.splits import make_split, parse_scenario

RNG = np.random.default_rng(0)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def images(n: int, size: int = 32) -> np.ndarray:
    """Random uint8 images [n, 3, size, size]."""
    return RNG.integers(0, 256, (n, 3, size, size), dtype=np.uint8)


def dump(path: Path, obj: dict) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj))
    return md5(path)


# --- CIFAR (torchvision's pickled layout) ---------------------------------------------------


def write_cifar100(root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, np.ndarray]:
    d = root / "cifar-100-python"
    tr, te = images(12), images(6)
    ytr, yte = RNG.integers(0, 100, 12), RNG.integers(0, 100, 6)
    names = [f"class{i:02d}" for i in range(100)]
    row = {"filenames": [], "coarse_labels": []}
    m_tr = dump(d / "train", {**row, "data": tr.reshape(12, -1), "fine_labels": ytr.tolist()})
    m_te = dump(d / "test", {**row, "data": te.reshape(6, -1), "fine_labels": yte.tolist()})
    m_meta = dump(d / "meta", {"fine_label_names": names, "coarse_label_names": []})
    monkeypatch.setattr(CIFAR100, "train_list", [["train", m_tr]])
    monkeypatch.setattr(CIFAR100, "test_list", [["test", m_te]])
    monkeypatch.setattr(
        CIFAR100, "meta", {"filename": "meta", "key": "fine_label_names", "md5": m_meta}
    )
    return {"tr": tr, "te": te, "ytr": ytr, "yte": yte}


def test_cifar100_pickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ref = write_cifar100(tmp_path, monkeypatch)
    assert check_dataset("cifar100", tmp_path) is None
    data = load_dataset("cifar100", tmp_path)
    assert data.train_x.dtype == torch.uint8 and data.train_x.shape == (12, 3, 32, 32)
    assert np.array_equal(data.train_x.numpy(), ref["tr"]) and np.array_equal(
        data.test_x.numpy(), ref["te"]
    )
    assert (
        data.train_y.tolist() == ref["ytr"].tolist() and data.test_y.tolist() == ref["yte"].tolist()
    )
    assert data.num_classes == 100 and data.classes[7] == "class07"


def test_cifar100_corrupt_file_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_cifar100(tmp_path, monkeypatch)
    (tmp_path / "cifar-100-python" / "train").write_bytes(b"truncated")  # md5 no longer matches
    with pytest.raises(DataUnavailableError) as e:
        load_dataset("cifar100", tmp_path)
    msg = str(e.value)
    assert (
        "\n" not in msg and "cifar-100-python" in msg and "--download" in msg and "corrupted" in msg
    )


def test_cifar10_pickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "cifar-10-batches-py"
    batches, train_list = [], []
    for i in range(1, 6):
        x, y = images(3), RNG.integers(0, 10, 3)
        batches.append((x, y))
        h = dump(d / f"data_batch_{i}", {"data": x.reshape(3, -1), "labels": y.tolist()})
        train_list.append([f"data_batch_{i}", h])
    tx, ty = images(4), RNG.integers(0, 10, 4)
    h_te = dump(d / "test_batch", {"data": tx.reshape(4, -1), "labels": ty.tolist()})
    h_meta = dump(d / "batches.meta", {"label_names": [f"c{i}" for i in range(10)]})
    monkeypatch.setattr(CIFAR10, "train_list", train_list)
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", h_te]])
    monkeypatch.setattr(
        CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names", "md5": h_meta}
    )
    data = load_dataset("cifar10", tmp_path)
    assert np.array_equal(data.train_x.numpy(), np.concatenate([b[0] for b in batches]))
    assert data.train_y.tolist() == np.concatenate([b[1] for b in batches]).tolist()
    assert np.array_equal(data.test_x.numpy(), tx) and data.classes[3] == "c3"


# --- SVHN (.mat) ------------------------------------------------------------------------------


def test_svhn_mat_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scipy.io import savemat

    d = tmp_path / "svhn"
    d.mkdir()
    ref = {}
    for split, n in (("train", 10), ("test", 5)):
        x = images(n)
        digit = RNG.integers(0, 10, n)
        digit[0] = 0
        # the .mat layout: X [H, W, C, N], y [N, 1] with the digit 0 stored as label 10
        savemat(
            d / f"{split}_32x32.mat",
            {"X": x.transpose(2, 3, 1, 0), "y": np.where(digit == 0, 10, digit)[:, None]},
        )
        url, fname, _ = SVHN.split_list[split]
        monkeypatch.setitem(SVHN.split_list, split, [url, fname, md5(d / fname)])
        ref[split] = (x, digit)
    data = load_dataset("svhn", tmp_path)
    assert np.array_equal(data.train_x.numpy(), ref["train"][0])
    assert data.train_y.tolist() == ref["train"][1].tolist() and data.train_y[0] == 0
    assert np.array_equal(data.test_x.numpy(), ref["test"][0]) and data.classes == [
        str(c) for c in range(10)
    ]


# --- STL-10 (binary) --------------------------------------------------------------------------


def write_stl10(root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, np.ndarray]:
    d = root / "stl10_binary"
    d.mkdir(parents=True)
    ref: dict[str, np.ndarray] = {}
    sums = {}
    for split, n in (("train", 6), ("test", 4), ("unlabeled", 1)):
        x = images(n, 96)
        # STL-10 stores each channel column-major: file order is [N, C, W, H]
        (d / f"{split}_X.bin").write_bytes(np.ascontiguousarray(x.transpose(0, 1, 3, 2)).tobytes())
        sums[f"{split}_X.bin"] = md5(d / f"{split}_X.bin")
        ref[split] = x
        if split != "unlabeled":
            y = RNG.integers(0, 10, n)
            (d / f"{split}_y.bin").write_bytes(
                (y + 1).astype(np.uint8).tobytes()
            )  # labels are 1-based
            sums[f"{split}_y.bin"] = md5(d / f"{split}_y.bin")
            ref[f"{split}_y"] = y
    (d / "class_names.txt").write_text("\n".join(f"animal{i}" for i in range(10)) + "\n")
    monkeypatch.setattr(
        STL10,
        "train_list",
        [[f, sums[f]] for f in ("train_X.bin", "train_y.bin", "unlabeled_X.bin")],
    )
    monkeypatch.setattr(STL10, "test_list", [[f, sums[f]] for f in ("test_X.bin", "test_y.bin")])
    return ref


def test_stl10_binary_native_and_resized(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ref = write_stl10(tmp_path, monkeypatch)
    data = load_dataset("stl10", tmp_path)
    assert data.train_x.shape == (6, 3, 96, 96) and np.array_equal(
        data.train_x.numpy(), ref["train"]
    )
    assert np.array_equal(data.test_x.numpy(), ref["test"])
    assert data.train_y.tolist() == ref["train_y"].tolist() and data.classes[2] == "animal2"
    small = load_dataset("stl10:32", tmp_path)
    assert small.train_x.shape == (6, 3, 32, 32) and small.test_x.shape == (4, 3, 32, 32)
    assert small.train_x.dtype == torch.uint8 and small.train_y.tolist() == ref["train_y"].tolist()
    # antialiased downscale: each 32x32 pixel is close to the mean of its 3x3 source block
    block = ref["train"][0].reshape(3, 32, 3, 32, 3).mean(axis=(2, 4))
    assert np.abs(small.train_x[0].numpy().astype(float) - block).mean() < 40
    assert "image size" in (check_dataset("stl10:big", tmp_path) or "")


# --- image trees ------------------------------------------------------------------------------


def write_tree(root: Path, counts: dict[str, dict[str, int]], size: int = 16) -> None:
    for split, per_class in counts.items():
        for cls, n in per_class.items():
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                write_png(torch.from_numpy(images(1, size)[0]), str(folder / f"{i:03d}.png"))


def test_imagefolder_pngs(tmp_path: Path) -> None:
    tree = tmp_path / "pets"
    # the test split lacks "ant": its labels must still index the training class list
    write_tree(tree, {"train": {"ant": 2, "bee": 3, "cat": 1}, "test": {"bee": 2, "cat": 1}})
    assert check_dataset(f"imagefolder:{tree}", tmp_path) is None
    data = load_dataset(f"imagefolder:{tree}", tmp_path)
    assert data.classes == ["ant", "bee", "cat"]
    assert data.train_x.shape == (6, 3, 16, 16) and data.train_x.dtype == torch.uint8
    assert data.train_y.tolist() == [0, 0, 1, 1, 1, 2] and data.test_y.tolist() == [1, 1, 2]
    png = torch.from_numpy(np.fromfile(tree / "train" / "bee" / "000.png", dtype=np.uint8))
    from torchvision.io import decode_png

    assert torch.equal(data.train_x[2], decode_png(png))
    # a relative path resolves under the data root; the same data come back
    assert torch.equal(load_dataset("imagefolder:pets", tmp_path).test_x, data.test_x)
    split = make_split(
        data.train_y.numpy(), data.test_y.numpy(), parse_scenario("random:0.25"), 0, n_val=1
    )
    assert len(split.forget) == 1 and len(split.test) == 3


def test_imagefolder_unknown_test_class_and_missing(tmp_path: Path) -> None:
    tree = tmp_path / "bad"
    write_tree(tree, {"train": {"a": 1}, "test": {"a": 1, "z": 1}})
    with pytest.raises(DataUnavailableError, match="missing from"):
        load_dataset(f"imagefolder:{tree}", tmp_path)
    msg = check_dataset(f"imagefolder:{tmp_path / 'nowhere'}", tmp_path)
    assert msg and "train/ and test/" in msg


def test_cifar10_image_tree_layout(tmp_path: Path) -> None:
    """The shared cifar10-jpeg.tar.gz unpacks to cifar10/{train,test}/<class>/*: same loader."""
    write_tree(
        tmp_path / "cifar10",
        {"train": {"airplane": 2, "truck": 1}, "test": {"airplane": 1, "truck": 1}},
        32,
    )
    data = load_dataset("cifar10", tmp_path)
    assert data.classes == ["airplane", "truck"] and data.train_x.shape == (3, 3, 32, 32)


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "svhn", "stl10"])
def test_absent_data_is_one_line_naming_the_fix(tmp_path: Path, name: str) -> None:
    msg = check_dataset(name, tmp_path)
    assert msg and "\n" not in msg and str(tmp_path) in msg and "--download" in msg
    assert check_dataset(name, tmp_path, download=True) is None  # the user allowed a download
    with pytest.raises(DataUnavailableError):
        load_dataset(name, tmp_path)
