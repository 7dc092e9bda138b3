"""The report's pictures as PNG bytes (matplotlib, headless): a cell's trade-off, ranks across cells.

- Trade-off: x is the forgetting gap to retrain, y the utility gap
  (TA - retrain's TA); retrain sits at the origin by construction. One point per method at
  its mean over seeds with seed-std error bars; the original (doing nothing) is marked; the
  shaded band is where the reference retrain (exact unlearning with another seed) lands:
  its mean gap plus one std on each axis.
- Ranks: with a Nemenyi test (enough cells), scikit-posthocs' critical-difference diagram
  (methods joined by a bar are not significantly different, the CD drawn above); with
  fewer cells, each method's rank in every cell and its mean rank.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bench.report.ranking import RankTable


@dataclass(frozen=True)
class Point:
    name: str
    kind: str  # "method" | "original" | "floor"
    x: Sequence[float]  # per seed
    y: Sequence[float]


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt, plt.figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(plt, fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", pad_inches=0.1)  # long labels stay whole
    plt.close(fig)
    return buf.getvalue()


def _spread(v: Sequence[float]) -> tuple[float, float]:
    a = np.asarray(v, float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def tradeoff_png(points: Sequence[Point], x_label: str, y_label: str, title: str) -> bytes:
    plt, fig = _figure(7.5, 4.8)
    ax = fig.add_subplot(111)
    floor = next((p for p in points if p.kind == "floor"), None)
    if floor is not None and len(floor.x):
        (fx, fsx), (fy, fsy) = _spread(np.abs(floor.x)), _spread(np.abs(floor.y))
        w, h = fx + fsx, fy + fsy
        ax.add_patch(plt.Rectangle((0, -h), max(w, 1e-9), max(2 * h, 1e-9), color="tab:green", alpha=0.15,
                                   lw=0, label="floor: retrain (seed') mean + 1 std"))
    ax.axhline(0, color="0.7", lw=0.8, zorder=0)
    ax.axvline(0, color="0.7", lw=0.8, zorder=0)
    ax.plot([0], [0], marker="*", ms=16, color="gold", mec="k", ls="", zorder=5, label="retrain (target)")
    cmap = plt.get_cmap("tab20")
    markers = "osD^vP<>hX"
    i = 0
    for p in points:
        if not len(p.x):
            continue
        (mx, sx), (my, sy) = _spread(p.x), _spread(p.y)
        if p.kind == "original":
            style = {"marker": "X", "ms": 12, "color": "tab:red", "mec": "k"}
            label = "original (doing nothing)"
        elif p.kind == "floor":
            style = {"marker": "d", "ms": 10, "color": "tab:green", "mec": "k"}
            label = p.name
        else:
            style = {"marker": markers[i % len(markers)], "ms": 7, "color": cmap(i % 20), "mec": "k",
                     "mew": 0.4}
            label = p.name
            i += 1
        ax.errorbar([mx], [my], xerr=[sx], yerr=[sy], ls="", capsize=2, elinewidth=0.8, zorder=4,
                    label=label, **style)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title, fontsize=9)
    ax.set_xlim(left=min(0.0, ax.get_xlim()[0]))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False, numpoints=1)
    ax.grid(alpha=0.25)
    return _png(plt, fig)


def rank_png(table: RankTable, title: str) -> bytes:
    if table.nemenyi is not None:
        return _cd_png(table, title)
    methods = table.methods
    plt, fig = _figure(6.5, 0.9 + 0.28 * len(methods))
    ax = fig.add_subplot(111)
    ys = np.arange(len(methods))[::-1]
    for y, m in zip(ys, methods):
        cell_ranks = table.ranks[m].to_numpy()
        ax.plot(cell_ranks, np.full(len(cell_ranks), y), "o", color="0.6", ms=4, ls="")
        ax.plot([table.mean_rank[m]], [y], "D", color="tab:blue", ms=7, ls="")
    ax.set_yticks(ys, methods, fontsize=8)
    ax.set_xlabel("rank by Avg Gap in each cell (grey) and mean rank (blue); 1 = closest to retrain")
    ax.set_xlim(0.5, len(methods) + 0.5)
    ax.invert_xaxis()
    ax.grid(axis="x", alpha=0.25)
    ax.set_title(title, fontsize=9)
    return _png(plt, fig)


def _cd_png(table: RankTable, title: str) -> bytes:
    import scikit_posthocs as sp

    plt, fig = _figure(8.0, 1.2 + 0.22 * len(table.methods))
    ax = fig.add_subplot(111)
    sp.critical_difference_diagram(table.mean_rank, table.nemenyi, ax=ax,
                                   label_fmt_left="{label} ({rank:.2f})",
                                   label_fmt_right="({rank:.2f}) {label}",
                                   label_props={"fontsize": 8})
    k = len(table.methods)
    ax.set_xlim(0.8, k + 0.2)
    ax.set_xticks(range(1, k + 1))
    low, _ = ax.get_ylim()
    ax.set_ylim(low, 2.6)  # room above the rank axis's tick labels for the CD bar
    ax.plot([1, 1 + table.cd], [1.7, 1.7], color="k", lw=2)
    ax.text(1 + table.cd / 2, 2.0, f"Nemenyi CD = {table.cd:.2f}", ha="center", va="bottom", fontsize=8)
    ax.set_title(title + "\n(mean rank, 1 = closest to retrain; a bar joins rows not significantly "
                 "different)", fontsize=9)
    return _png(plt, fig)
