"""Cell-level summary metrics: run time, memory, and Avg Gap to retrain (docs/metrics.md)."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from bench.metrics import NON_NEGATIVE, MetricSpec

SUMMARY_METRICS = (
    MetricSpec("rte_s", "unlearning wall time in seconds (RTE)", higher_is_better=False, bounds=NON_NEGATIVE),
    MetricSpec("rte_frac", "RTE as a fraction of retrain's training time", higher_is_better=False,
               bounds=NON_NEGATIVE),
    MetricSpec("peak_mem_mb", "peak memory during unlearning (GPU allocator, or process RSS on CPU); shown, "
               "never ranked: on CPU it samples the whole process, not the method (0 when nothing grew)",
               higher_is_better=False, ranked=False, bounds=NON_NEGATIVE),
    MetricSpec(
        "avg_gap",
        "mean |m - m_retrain| over RA, TA (TA_rest when a class is forgotten), UA, EMIA, CMIA and "
        "cMIA-AUC x 100 (those the cell has), "
        "leaving out privacy metrics that measure noise in the cell (bench.report.flags.noisy_metrics; "
        "the report leaves out one set for all of a cell's seeds: those noise on at least half of them)",
        higher_is_better=False,
        bounds=NON_NEGATIVE,
        source="SalUn (Fan et al. 2024) with the encoder auditors added",
    ),
    MetricSpec(
        "avg_gap_all",
        "Avg Gap over all six metrics, noisy ones included (the literal definition)",
        higher_is_better=False,
        bounds=NON_NEGATIVE,
        source="SalUn (Fan et al. 2024) with the encoder auditors added",
    ),
)


def gap_metrics(
    metrics: Mapping[str, float],
    retrain: Mapping[str, float],
    specs: Mapping[str, MetricSpec],
    exclude: Collection[str] = (),
) -> list[str]:
    """The metrics Avg Gap averages: those declared ``avg_gap`` that both rows have, minus
    ``exclude`` and minus those another reported metric ``replaces``."""
    both = [k for k in specs if k in metrics and k in retrain]
    replaced = {specs[k].replaces for k in both}
    return [k for k in both if specs[k].avg_gap and k not in exclude and k not in replaced]


def avg_gap(
    metrics: Mapping[str, float],
    retrain: Mapping[str, float],
    specs: Mapping[str, MetricSpec],
    exclude: Collection[str] = (),
) -> float | None:
    """Mean scaled absolute gap to retrain over :func:`gap_metrics`."""
    gaps = [abs(metrics[k] - retrain[k]) * specs[k].scale for k in gap_metrics(metrics, retrain, specs, exclude)]
    return sum(gaps) / len(gaps) if gaps else None
