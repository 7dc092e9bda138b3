"""A later invocation reuses the yardsticks' stored features and audits (bench/auditcache.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bench import registry
from bench.config import AuditOptions, Cell, DataOptions, MethodSpec, TrainBudget
from bench.report.roles import FLOOR
from bench.runner import CellRunner

AUDITORS = ("linear_probe", "calibrated_mia")


def tiny(**overrides) -> Cell:
    return Cell(matrix="t", dataset="digits", encoder="simclr", backbone="convnet-s", scenario="random:0.1", seed=0,
                train=TrainBudget(epochs=1, batch_size=64), data=DataOptions(n_val=20, n_train=100, n_test=40),
                audit=AuditOptions(views=2, max_members=40, references=1, batch_size=64),
                methods=(MethodSpec("finetune", (("epochs", 1),)),), auditors=AUDITORS, device="cpu", **overrides)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """The names of the models extracted and audited, in order."""
    import bench.runner as runner

    seen: dict[str, list[str]] = {"extracted": [], "audited": []}
    extract, audit = runner.extract, CellRunner.audit

    def spy_extract(enc, name, *a, **k):
        seen["extracted"].append(name)
        return extract(enc, name, *a, **k)

    def spy_audit(self, mf, actx):
        seen["audited"].append(mf.name)
        return audit(self, mf, actx)

    monkeypatch.setattr(runner, "extract", spy_extract)
    monkeypatch.setattr(CellRunner, "audit", spy_audit)
    return seen


def audited_metrics(result) -> dict[str, dict[str, float]]:
    names = {m.name for a in AUDITORS for m in registry.auditors.get(a).metrics}
    return {row.method: {k: v for k, v in row.metrics.items() if k in names} for row in result.rows}


def test_unchanged_invocation_extracts_and_audits_no_yardstick(tmp_path: Path, calls):
    first = CellRunner(tiny(), tmp_path).run()
    assert calls == {"extracted": ["original", "retrain", "reference-0", "finetune"],
                     "audited": ["retrain", "original", FLOOR, "finetune"]}
    calls["extracted"].clear(), calls["audited"].clear()

    again = CellRunner(tiny(), tmp_path).run()  # a new invocation (a new process would see the same files)
    assert calls == {"extracted": ["finetune"], "audited": ["finetune"]}
    assert audited_metrics(again) == audited_metrics(first)  # the stored yardsticks are the same numbers
    assert sum(e.startswith("reused audit of") for e in again.events) == 3


def test_a_changed_auditor_list_reaudits_but_reuses_the_features(tmp_path: Path, calls):
    CellRunner(tiny(), tmp_path).run()
    calls["extracted"].clear(), calls["audited"].clear()
    cell = dataclasses.replace(tiny(), auditors=(*AUDITORS, "knn"))  # reads feats: already extracted
    CellRunner(cell, tmp_path).run()
    assert calls == {"extracted": ["finetune"], "audited": ["retrain", "original", FLOOR, "finetune"]}
