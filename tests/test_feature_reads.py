"""A cell extracts only what its auditors read (bench.features.READS, ``Auditor.reads``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench import registry
from bench.config import AuditOptions, Cell
from bench.features import READS, extract
from tests.conftest import random_simclr

SIZES = {"forget": 6, "retain": 20, "test": 30, "val": 10}


def counted(enc) -> dict[str, int]:
    """Count the encoder's augment / objective / features calls (the three costs of an extraction)."""
    calls = {"augment": 0, "objective": 0, "features": 0}
    for name in calls:
        inner = getattr(enc, name)

        def spy(*a, _inner=inner, _name=name, **k):
            calls[_name] += 1
            return _inner(*a, **k)

        setattr(enc, name, spy)
    return calls


def run(reads: frozenset[str]):
    enc, views = random_simclr(SIZES)
    calls = counted(enc)
    opts = AuditOptions(views=2, batch_size=16)
    return extract(enc, "m", views, opts, torch.device("cpu"), "fp32", seed=0, reads=reads), calls


def test_embeddings_only_computes_no_views_and_no_losses():
    mf, calls = run(frozenset({"feats"}))
    assert calls == {"augment": 0, "objective": 0, "features": 6}  # clean batches of 16: 1 + 2 + 2 + 1
    assert set(mf.feats) == set(SIZES) and not mf.align_head and not mf.align_backbone and not mf.loss
    assert mf.align_views.size == 0 and mf.reads == {"feats"}
    assert {k: len(v) for k, v in mf.labels.items()} == SIZES  # labels always


def test_views_only_computes_no_losses_and_no_clean_features():
    mf, calls = run(frozenset({"views"}))
    # V-view batches of 16 // 2 = 8 images: forget 1, retain 3, test 4 (val is fit-only: none)
    assert calls == {"augment": 8, "objective": 0, "features": 0}
    assert not mf.feats and not mf.loss and set(mf.align_head) == {"forget", "retain", "test"}


def test_everything_gives_the_same_values_as_the_parts():
    full, calls = run(READS)
    # the pool of 56 scored images in batches of 16 (4 batches), two draws
    assert calls["objective"] == 8 and calls["features"] == 6
    views, _ = run(frozenset({"views"}))
    loss, _ = run(frozenset({"loss"}))
    for split in ("forget", "retain", "test"):  # same draws whatever else is computed
        np.testing.assert_array_equal(views.align_head[split], full.align_head[split])
        np.testing.assert_array_equal(loss.loss[split], full.loss[split])


def test_unknown_read_is_refused():
    with pytest.raises(ValueError, match="unknown feature"):
        run(frozenset({"pixels"}))


def test_every_registered_auditor_reads_known_features():
    declared = {e.name: e.obj.reads for e in registry.auditors if not e.name.startswith("_")}
    assert all(r and r <= READS for r in declared.values())
    assert declared["linear_probe"] == {"feats"} and declared["calibrated_mia"] == {"views", "loss"}
    assert declared["zero_shot"] == {"class_scores"}


@pytest.mark.parametrize(("auditors", "reads"), [
    (("linear_probe", "knn", "cmia", "representation_distance"), {"feats"}),
    (("emia", "alignment_gap"), {"views"}),
    (("linear_probe", "calibrated_mia"), {"feats", "views", "loss"}),
    (("zero_shot",), set()),  # needs the "text" capability: skipped on simclr, so nothing is read
])
def test_runner_extracts_the_union_of_its_auditors_reads(tmp_path: Path, auditors, reads):
    from bench.runner import CellRunner

    cell = Cell(matrix="t", dataset="digits", encoder="simclr", backbone="convnet-s", scenario="random:0.1",
                seed=0, auditors=auditors, device="cpu")
    assert CellRunner(cell, tmp_path).reads == reads
