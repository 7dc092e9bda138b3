"""Row runs without results read as such in the MLflow UI (bench/tracking.py ``run_name``)."""

from __future__ import annotations

from bench.runner import MethodResult
from bench.tracking import run_name


def test_skipped_and_failed_rows_are_named_so():
    label = "simclr/convnet-s digits random:0.1 seed=0"
    row = MethodResult("salun", "skipped", "h", reason="salun requires encoder capabilities ['logits']")
    assert run_name(row, label) == "n/a: salun | simclr/convnet-s digits random:0.1 seed=0"
    assert run_name(MethodResult("scrub", "failed", "h"), label) == "failed: scrub | " + label
    assert run_name(MethodResult("scrub", "finished", "h"), label) == "scrub | " + label
    assert run_name(MethodResult("original", "reference", "h"), label) == "original | " + label
