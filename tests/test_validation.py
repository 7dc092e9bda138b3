"""The bad-input corpus: every case is refused by `run` and by `validate` alike, before any work,
with exit code 2, exactly one line on stderr naming the fix, and nothing written anywhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from bench.cli import main
from tests.conftest import TINY
from tests.test_staleness import image_tree

# name -> (matrix overrides, or raw YAML text; extra argv; expected part of the one line)
CASES: dict[str, tuple[dict[str, Any] | str, list[str], str]] = {
    "unknown method": ({"methods": ["retrain", "fintune"]}, [], "did you mean 'finetune'"),
    "unknown auditor": ({"auditors": ["linear_prob"]}, [], "did you mean 'linear_probe'"),
    "unknown encoder": ({"encoders": ["simclrr"]}, [], "did you mean 'simclr'"),
    "unknown data set": ({"datasets": ["digit"]}, [], "did you mean 'digits'"),
    "unknown method key": ({"methods": ["retrain", {"finetune": {"lrr": 1}}]}, [], "unknown key 'lrr'"),
    "unknown encoder param": ({"encoders": [{"name": "simclr", "params": {"temprature": 0.2}}]}, [],
                              "unknown key 'temprature' in encoder simclr params; did you mean 'temperature'"),
    "top-level typo": ("method", [], "unknown key 'method'; did you mean 'methods'?"),
    "bad scenario": ({"scenarios": ["random:1.2"]}, [], "bad forget scenario 'random:1.2'"),
    "class beyond the data": ({"scenarios": ["class:99"]}, [],
                              "scenario 'class:99': digits has 10 classes, numbered 0 to 9"),
    "seeds a word": ({"seeds": "zero"}, [], "'seeds' must be a list, e.g. seeds: [0, 1, 2]; got 'zero'"),
    "seeds a digit string": ({"seeds": "12"}, [], "'seeds' must be a list, e.g. seeds: [0, 1, 2]; got '12'"),
    "seed not an integer": ({"seeds": [0, 1.5]}, [], "seeds must be non-negative integers"),
    "seed twice": ({"seeds": [0, 0]}, [], "seed 0 is listed twice"),
    "hyperparameter out of range": ({"methods": ["retrain", {"finetune": {"epochs": -3}}]}, [],
                                    "method finetune: 'epochs' = -3 is out of range: use >= 1"),
    "hyperparameter of the wrong type": ({"methods": ["retrain", {"finetune": {"epochs": "ten"}}]}, [],
                                         "method finetune: 'epochs' must be int, got 'ten'"),
    "train value of the wrong type": ({"train": {"lr": "fast"}}, [], "train: 'lr' must be float, got 'fast'"),
    "train value out of range": ({"train": {"epochs": 0}}, [], "train: 'epochs' = 0 is out of range: use >= 1"),
    "train choice": ({"train": {"optimizer": "adagrad"}}, [], "train: 'optimizer' = 'adagrad' is out of range"),
    "encoder train override": ({"encoders": [{"name": "simclr", "train": {"batch_size": 1}}]}, [],
                               "encoder simclr train: 'batch_size' = 1 is out of range: use >= 2"),
    "data value out of range": ({"data": {"n_val": 0}}, [], "data: 'n_val' = 0 is out of range: use >= 1"),
    "data split too large": ({"data": {"n_val": 5000}}, [], "n_val=5000 leaves no training members"),
    "audit value of the wrong type": ({"audit": {"views": 1.5}}, [], "audit: 'views' must be int, got 1.5"),
    "options block not a mapping": ({"audit": [4]}, [], "'audit' must be a mapping"),
    "time limit": ({"time_limit_s": "long"}, [], "time_limit_s' must be a number of seconds > 0"),
    "precision": ({"precision": "fp16"}, [], "precision 'fp16' unknown: use fp32 or bf16"),
    "no retrain": ({"methods": [{"finetune": {"epochs": 1}}]}, [], "must list 'retrain'"),
    "data absent": ({"datasets": ["cifar10"]}, [], "CIFAR-10 not found"),
    "corrupt image": ({"datasets": ["imagefolder:{images}"]}, [], "class1/003.jpg cannot be decoded"),
    "yaml syntax": ("name: broken\ndatasets: [digits\nseeds: [0]\n", [], "at line 3, column 6"),
    "cuda without cuda": ({}, ["--device", "cuda"], "--device cuda asked for, but torch sees no CUDA device"),
    "executor options not json": ({}, ["--executor-options", "{workers: 2}"], "--executor-options is not valid JSON"),
    "executor options not an object": ({}, ["--executor-options", "[2]"], "--executor-options must be a JSON object"),
    "unknown executor option": ({}, ["--executor-options", '{"wrkers": 2}'], "executor 'local' has no option wrkers"),
    "unknown executor": ({}, ["--executor", "dask"], "unknown executor 'dask'"),
    "unknown matrix": (None, [], "did you mean 'smoke'"),  # type: ignore[dict-item]
}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image folder whose one training image is not an image (a truncated JPEG)."""
    root = image_tree(tmp_path_factory.mktemp("data") / "corrupt", train=4, test=2)
    (root / "train/class1/003.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 40)
    return root


def write_case(case: str, folder: Path, images: Path) -> str:
    """The --matrix argument of a case (a YAML file it writes, or a shipped name)."""
    spec = CASES[case][0]
    if spec is None:
        return "smok"
    path = folder / f"{case.replace(' ', '-')}.yaml"
    if isinstance(spec, str) and "\n" in spec:
        path.write_text(spec)
        return str(path)
    raw: dict[str, Any] = {**TINY, "name": case.replace(" ", "-")}
    if spec == "method":
        raw["method"] = raw.pop("methods")
    else:
        raw.update(yaml.safe_load(yaml.safe_dump(spec).replace("{images}", str(images))))
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def tree(where: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(where)): (p.stat().st_size, p.stat().st_mtime_ns) for p in where.rglob("*")}


@pytest.mark.parametrize("command", ["run", "validate"])
@pytest.mark.parametrize("case", list(CASES))
def test_refused_before_any_work(case, command, images, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "nodata"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same refusal on a GPU machine
    matrix = write_case(case, tmp_path, images)
    results = tmp_path / "results"
    argv = [command, "--matrix", matrix, *CASES[case][1]]
    if command == "run":
        argv += ["--results-dir", str(results)]
    before, data_before = tree(tmp_path), tree(images)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ") and CASES[case][2] in err[0], err[0]
    assert tree(tmp_path) == before  # no MLflow store, no leaderboard, no model cache
    assert not results.exists()
    assert tree(images) == data_before  # not even a decode cache beside the data


def test_a_valid_matrix_passes_both(write_matrix, tmp_path, capsys):
    """The corpus's base matrix is valid: every refusal above is the case's own doing."""
    path = write_matrix("base")
    assert main(["validate", "--matrix", str(path)]) == 0
    assert "is valid: 1 cell (dataset x encoder x scenario) x 1 seed = 1 run" in capsys.readouterr().out


def test_hyperparameters_are_checked_against_declared_ranges():
    """The finetune cases above rely on declared ranges (bench.hparams), not on ad-hoc checks."""
    from bench import hparams, registry

    spec = hparams.params(registry.methods.get("finetune"))["epochs"].spec
    assert spec.ge is not None and spec.ge >= 1


def test_real_process_prints_one_line(images, tmp_path):
    """In a real `run` process nothing else reaches stderr either: no log line, no traceback, not
    even libjpeg's own warning about the broken file (validate shares the code: driver.prepare)."""
    matrix = write_case("corrupt image", tmp_path, images)
    argv = [sys.executable, "-m", "bench", "run", "--matrix", matrix, "--results-dir", str(tmp_path / "results")]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "BENCH_DATA": str(tmp_path / "nodata")})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: image {images}/train/class1/003.jpg cannot be decoded (Image is incomplete or truncated): "
        "replace it with a valid image or delete it"]
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(("precision", "native", "warned"),
                         [("bf16", False, True), ("bf16", True, False), ("fp32", False, False)])
def test_emulated_bf16_is_named_before_any_work(precision, native, warned, write_matrix, monkeypatch, capsys):
    """bf16 on a device without bf16 kernels runs, but about 9x slower than fp32 (a CPU without
    AVX-512): validate says so in one warning that names the fix, and stays valid (exit 0)."""
    import bench.device

    monkeypatch.setattr(bench.device, "native_bf16", lambda device: native)
    path = write_matrix("prec", precision=precision)
    capsys.readouterr()
    assert main(["validate", "--matrix", str(path)]) == 0
    said = [line for line in capsys.readouterr().err.splitlines() if "bf16 is emulated" in line]
    assert len(said) == int(warned)
    if warned:
        assert "--precision fp32" in said[0] and "AVX-512" in said[0]


def test_native_bf16_agrees_with_the_cpu_flags():
    """The probe (oneDNN's own check) agrees with what the kernel reports: a CPU with
    AVX512-BF16 has bf16 kernels; one without any AVX-512 (as the Zen 3 EPYC measured) has none."""
    from bench.device import native_bf16

    answer = native_bf16(torch.device("cpu"))
    assert isinstance(answer, bool)
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return
    flags = set(next((line.split(":", 1)[1].split() for line in cpuinfo.read_text().splitlines()
                      if line.startswith("flags")), []))
    if "avx512_bf16" in flags or "amx_bf16" in flags:
        assert answer
    elif not any(f.startswith("avx512") for f in flags):
        assert not answer
