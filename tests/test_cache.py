"""Model cache: a truncated, corrupt or half-committed checkpoint is detected, logged and rebuilt;
concurrent workers build a model once; writes are atomic."""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import time
from pathlib import Path

import pytest
import torch

from bench.cache import ModelCache

KEY = "abc123"


def state(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(64, 64, generator=g), "b": torch.randn(64, generator=g)}


def builder(calls: list[int], seed: int = 0):
    def build():
        calls.append(1)
        return state(seed), {"seconds": 1.5, "role": "original"}

    return build


@pytest.fixture
def cache(tmp_path: Path) -> ModelCache:
    c = ModelCache(tmp_path)
    c.get_or_build(KEY, builder([]))
    return c


def test_hit_returns_the_saved_model(cache: ModelCache):
    calls: list[int] = []
    got, meta, hit = cache.get_or_build(KEY, builder(calls, seed=1))
    assert hit and not calls and meta["seconds"] == 1.5
    assert all(torch.equal(got[k], v) for k, v in state(0).items())
    assert len(json.loads(cache.paths(KEY)[1].read_text())["sha256"]) == 64


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _flip(p: Path) -> None:
    b = bytearray(p.read_bytes())
    b[len(b) // 2] ^= 0xFF
    p.write_bytes(bytes(b))


@pytest.mark.parametrize("damage,why", [
    (lambda c: _truncate(c.paths(KEY)[0]), "checksum mismatch"),
    (lambda c: _flip(c.paths(KEY)[0]), "checksum mismatch"),
    (lambda c: c.paths(KEY)[1].unlink(), "no checksum record"),
    (lambda c: c.paths(KEY)[1].write_text("{not json"), "unreadable"),
], ids=["truncated", "bit-flip", "no-record", "bad-record"])
def test_damaged_checkpoint_is_logged_and_rebuilt(cache: ModelCache, damage, why, caplog):
    damage(cache)
    calls: list[int] = []
    with caplog.at_level(logging.WARNING, logger="bench.cache"):
        got, _, hit = cache.get_or_build(KEY, builder(calls))
    assert not hit and calls == [1]
    assert any("corrupt" in r.message and why in r.message for r in caplog.records)
    assert cache.load(KEY) is not None  # the rebuilt checkpoint verifies again
    assert all(torch.equal(got[k], v) for k, v in state(0).items())


def test_debris_of_a_killed_writer_is_removed(tmp_path: Path):
    c = ModelCache(tmp_path)
    debris = tmp_path / f".{KEY}.pt.0123abcd.tmp"
    debris.write_bytes(b"half a checkpoint")
    c.get_or_build(KEY, builder([]))
    assert not debris.exists() and sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        f"{KEY}.json", f"{KEY}.pt"]


def _worker(root: str, log: str) -> None:
    def build():
        with open(log, "a") as f:
            f.write("built\n")
        time.sleep(0.5)  # long enough for the others to find the lock taken
        return state(0), {"seconds": 0.5}

    got, _, _ = ModelCache(Path(root)).get_or_build(KEY, build)
    assert torch.equal(got["w"], state(0)["w"])


def test_concurrent_workers_build_once(tmp_path: Path):
    log = tmp_path / "builds.log"
    ctx = mp.get_context("fork")  # cheap; the workers use a tiny CPU tensor only
    procs = [ctx.Process(target=_worker, args=(str(tmp_path / "c"), str(log))) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert log.read_text() == "built\n"
