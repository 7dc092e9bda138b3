"""The auditor contract: a registered class that turns shared features into named metrics.

An auditor never sees a model or knows which method produced it: it reads the
:class:`~bench.features.ModelFeatures` of the audited model plus those of the
cell's original, retrain and reference models (:class:`AuditContext`). Every
metric it returns is declared up front with its direction, so the leaderboard
can draw arrows and compute gaps without knowing the auditor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from bench.config import AuditOptions
from bench.features import READS, ModelFeatures
from bench.metrics import MetricSpec
from bench.registry import auditors


@dataclass
class AuditContext:
    """The cell's fixed models, as features: the yardsticks an auditor may compare against."""

    original: ModelFeatures
    retrain: ModelFeatures
    references: list[ModelFeatures]
    num_classes: int
    options: AuditOptions
    seed: int
    # classes with no sample left in D_r (a class:<c> scenario forgets c); empty for random draws.
    # Auditors read this, never the scenario's name.
    forgotten_classes: tuple[int, ...] = ()


class Auditor:
    name: ClassVar[str] = ""
    metrics: ClassVar[tuple[MetricSpec, ...]] = ()
    requires: ClassVar[frozenset[str]] = frozenset()  # encoder capabilities needed
    # what it reads of ModelFeatures (bench.features.READS): the runner extracts only the union
    # over the cell's auditors. Default: everything, so an auditor that does not say still works.
    reads: ClassVar[frozenset[str]] = READS
    # bump when what it computes changes: the yardsticks' cached audits are keyed by it (bench/auditcache.py)
    version: ClassVar[int] = 1
    kind: ClassVar[str] = "utility"  # utility | privacy | representation: column order in tables

    def audit(self, model: ModelFeatures, ctx: AuditContext) -> dict[str, float]:
        raise NotImplementedError

    def figures(self, models: dict[str, ModelFeatures], ctx: AuditContext) -> dict[str, bytes]:
        """Optional cell-level artifacts (file name -> bytes, e.g. PNG) over all models."""
        return {}


def register_auditor(name: str, **meta: Any) -> Callable[[type[Auditor]], type[Auditor]]:
    def deco(cls: type[Auditor]) -> type[Auditor]:
        cls.name = name
        return auditors.register(name, **meta)(cls)

    return deco


def metric_specs() -> dict[str, MetricSpec]:
    """Every metric of every registered auditor, plus the runner's cell summary metrics."""
    from bench.report.summary import SUMMARY_METRICS

    order = {"utility": 0, "privacy": 1, "representation": 2}
    ranked = sorted(auditors, key=lambda e: (order.get(e.obj.kind, 3), e.name != "linear_probe", e.name))
    specs = {m.name: m for entry in ranked for m in entry.obj.metrics}
    specs.update({m.name: m for m in SUMMARY_METRICS})
    return specs
