"""A control for "retrain's FA equals its TA": is D_f a fair sample of the non-members?

Retrain never saw D_f, so its forget accuracy should match its test accuracy up to the
sampling noise of |D_f| images, unless the training split itself differs from the test
split (JPEG copies, near-duplicates, a biased member subset). This scores each cell's
retrain with the linear-probe auditor's own probe (fit on the same D_r sample plus D_v,
bench.probe.fit_set) on D_f, a pool of training images outside the member subset and D_t,
and places FA among the accuracies of random |D_f|-image draws from that pool
(hypergeometric, exact). A pool that matches TA while FA sits in the draws' tail says the
gap is the draw, not the protocol. D_v is not scored: the probe is fit on it.

    python -m bench.control --matrix cpu --cache-dir /work/model_cache [--encoder simclr]

The retrain comes from the model cache (trained first if the cache lacks it).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.stats import hypergeom

from bench.config import Cell, load_matrix
from bench.features import clean_features
from bench.probe import FIT_SPLITS, fit_probe, fit_set
from bench.report.publish import command_line, git_commit, machine, write_block
from bench.runner import CellRunner

POOL = 5000  # training images outside the member subset that are scored


@dataclass
class Control:
    cell: str
    n_forget: int
    fa: float
    pool: float  # training-split non-members outside it
    pool_lo: float  # 2.5th and 97.5th percentile of the accuracy of |D_f|-image draws from the pool
    pool_hi: float
    fa_percentile: float  # P(a draw's accuracy <= FA), %
    ta: float


def outside_pool(cr: CellRunner, n: int = POOL) -> np.ndarray:
    """Up to ``n`` training indices that are neither members nor D_v (fixed draw)."""
    used = np.concatenate([cr.split.members, cr.split.val])
    rest = np.setdiff1d(np.arange(len(cr.data.train_y)), used)
    return np.sort(np.random.default_rng(7).permutation(rest)[:n])


def draw_stats(hits: np.ndarray, n: int, acc: float) -> tuple[float, float, float]:
    """For random n-image draws (without replacement) from a pool with per-image correctness
    ``hits``: the 2.5th and 97.5th percentile of their accuracy (%) and P(accuracy <= acc) (%).
    The number correct is hypergeometric, so this is exact; NaN when the pool has < n images."""
    if len(hits) < n:
        return float("nan"), float("nan"), float("nan")
    draw = hypergeom(len(hits), int(np.sum(hits)), n)
    lo, hi = 100 * draw.ppf([0.025, 0.975]) / n
    return float(lo), float(hi), 100 * float(draw.cdf(round(acc * n / 100)))


def control(cell: Cell, cache_root: Path) -> Control:
    """The FA control of one cell (its first deletion request)."""
    cr = CellRunner(cell, cache_root)
    forgotten, retain = cr.split.after_request(0)
    enc, _ = cr.trained(retain, cell.seed, "retrain")
    views = cr.audit_views(forgotten, retain)

    def feats(x: torch.Tensor) -> np.ndarray:  # as the auditors see them (bench.features.extract)
        return clean_features(enc, x, cell.audit.batch_size, cr.device, cell.precision)

    probe = fit_probe(*fit_set({s: feats(views[s].x) for s in FIT_SPLITS},
                               {s: views[s].y.cpu().numpy() for s in FIT_SPLITS}))

    def correct(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        return probe.predict(feats(x)) == y.numpy() if len(y) else np.zeros(0, bool)

    tx, ty = cr.data.train_x, cr.data.train_y
    pool = outside_pool(cr)
    hits = correct(tx[pool], ty[pool])
    fa = 100 * correct(tx[forgotten], ty[forgotten]).mean()
    nf = len(forgotten)
    lo, hi, pct = draw_stats(hits, nf, fa)
    te = torch.as_tensor(cr.split.test)
    return Control(
        cell=cell.label, n_forget=nf, fa=fa,
        pool=100 * hits.mean() if len(hits) else float("nan"), pool_lo=lo, pool_hi=hi,
        fa_percentile=pct, ta=100 * correct(cr.data.test_x[te], cr.data.test_y[te]).mean(),
    )


def markdown(rows: list[Control]) -> str:
    head = ("| cell | FA (D_f) | outside pool [95 % range of an n-image draw] | P(draw <= FA) % "
            "| TA | FA - TA | pool - TA |\n|---|---:|---|---:|---:|---:|---:|")
    lines = [
        f"| {r.cell} | {r.fa:.1f} (n={r.n_forget}) | {r.pool:.1f} [{r.pool_lo:.1f}, {r.pool_hi:.1f}] "
        f"| {r.fa_percentile:.1f} | {r.ta:.1f} | {r.fa - r.ta:+.1f} | {r.pool - r.ta:+.1f} |"
        for r in rows
    ]
    return "\n".join([head, *lines])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.control", description=__doc__.splitlines()[0])
    ap.add_argument("--matrix", required=True, help="a shipped matrix name or a YAML path")
    ap.add_argument("--cache-dir", type=Path, default=Path("runs/cache"), help="model cache (default: runs/cache)")
    ap.add_argument("--data-root", default="", help="data sets folder (default: $BENCH_DATA)")
    ap.add_argument("--encoder", help="only the cells of this encoder")
    ap.add_argument("--benchmarks", type=Path, help="also write the table between this page's (docs/matrices.md) "
                    "<!-- control:<matrix>:start/end --> markers")
    args = ap.parse_args(argv)
    cells = [c for c in load_matrix(args.matrix).cells(args.data_root) if args.encoder in (None, c.encoder)]
    if not cells:
        print(f"error: matrix {args.matrix} has no cells for encoder {args.encoder!r}", file=sys.stderr)
        return 2
    table = markdown([control(c, args.cache_dir) for c in cells])
    print(table)
    if args.benchmarks:
        cmd = command_line(None if argv is None else ["control.py", *argv], module="bench.control")
        head = (f"Written by `{cmd}` at {git_commit()} on "
                f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {machine()}; nothing below "
                "is typed by hand.")
        write_block(args.benchmarks, load_matrix(args.matrix).name, f"{head}\n\n{table}", kind="control")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
