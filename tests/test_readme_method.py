"""The README's example method, taken verbatim from README.md: it registers, its ``hp`` ranges
refuse ``lr: -1`` before any work, and it unlearns on a real (tiny) encoder."""

from __future__ import annotations

import copy
import importlib
import re
import sys
from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.config import TrainBudget
from bench.context import UnlearnContext
from bench.runner import same_state
from tests.conftest import random_simclr

README = Path(__file__).resolve().parent.parent / "README.md"
NAME = "_readme_my_method"
LIGHT = {"encoders": [{"name": "supervised", "backbone": "convnet-s"}], "auditors": ["representation_distance"]}


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory):
    """The README's ``methods/my_method.py`` block as a module of a throwaway package, registered
    as ``_readme_my_method``."""
    block = re.search(r"```python\n(# methods/my_method\.py\n.*?)```", README.read_text(), re.S)
    assert block, "README lost its example method"
    folder = tmp_path_factory.mktemp("readme")
    (folder / "_readme_pkg").mkdir()
    (folder / "_readme_pkg" / "__init__.py").write_text("")
    (folder / "_readme_pkg" / "my_method.py").write_text(block.group(1).replace('"my_method"', f'"{NAME}"'))
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module("_readme_pkg.my_method").MyMethod
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("_readme_pkg.my_method", None)
        sys.modules.pop("_readme_pkg", None)


def test_readme_method_ranges_refuse_a_negative_lr(example, write_matrix, capsys):
    bad = write_matrix("readme_bad", methods=["retrain", {NAME: {"lr": -1}}], **LIGHT)
    assert main(["validate", "--dry-run", "--matrix", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: method {NAME}: 'lr' = -1 is out of range: use > 0 (default 0.0001)"
    good = write_matrix("readme_good", methods=["retrain", {NAME: {"lr": 0.001, "epochs": 2}}], **LIGHT)
    assert main(["validate", "--dry-run", "--matrix", str(good)]) == 0


def test_readme_method_unlearns_on_a_tiny_encoder(example):
    enc, views = random_simclr({"forget": 8, "retain": 16})
    original = copy.deepcopy(enc).eval().requires_grad_(False)
    method = example(epochs=1, lr=0.1)
    ctx = UnlearnContext(enc, needs=example.needs, data=views, original=original, device=torch.device("cpu"),
                         precision="fp32", seed=0, budget=TrainBudget(batch_size=4), time_limit_s=600.0,
                         num_classes=10)
    enc.train()
    method.unlearn(ctx)
    ctx.finish()
    assert example.needs == ("forget", "retain", "original")
    assert not same_state(enc, original)  # two steps of SGD moved it
    assert all(torch.isfinite(p).all() for p in enc.parameters())
