"""Positive-pair alignment on D_f, D_r, D_t, its gap, and the alignment-matrix heat map.

Alignment (Wang & Isola 2020) is the mean pairwise cosine of an image's V
augmented views' normalised head embeddings z (the EncoderMI score on the
head; computed once per model in :mod:`bench.features`). Training pulls a
member's views together, so gap = align(D_f) - align(D_t) is positive for a
model that saw D_f and ~0 for one that did not (a diagnostic this benchmark adds).

The figure shows, for the first S forget images, the cosine of every view
against every other view (S·V x S·V), one V x V block per pair of images with
lines between the blocks and the images numbered on both axes: bright diagonal
blocks are images whose views the model aligns; original, retrain and each
method side by side on one colour scale.
"""

from __future__ import annotations

import io

import numpy as np

from bench import AuditContext, Auditor, MetricSpec, ModelFeatures, register_auditor
from bench.metrics import COSINE

FIGURE = "alignment_matrix.png"
COLUMNS = 5  # panels per row of the figure


def view_matrix(align_views: np.ndarray) -> np.ndarray:
    """[S, V, D] view embeddings -> [S·V, S·V] cosine matrix."""
    z = align_views.reshape(-1, align_views.shape[-1]).astype(np.float64)
    z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    return z @ z.T


def within_image(m: np.ndarray, views: int) -> float:
    """Mean cosine between distinct views of one image (diagonal blocks, off their diagonal)."""
    s = m.shape[0] // views
    blocks = m.reshape(s, views, s, views)[np.arange(s), :, np.arange(s), :]
    return float((blocks.sum((1, 2)) - views).mean() / (views * (views - 1)))


def _blocks(ax, images: int, views: int) -> None:
    """Lines between images' view blocks, and each axis labelled with the images (ticks at their
    blocks' centres), so a bright diagonal block reads as "this image's views agree"."""
    for k in range(1, images):
        ax.axhline(k * views - 0.5, color="white", lw=0.6)
        ax.axvline(k * views - 0.5, color="white", lw=0.6)
    step = max(1, -(-images // 8))  # at most ~8 labels per axis
    ticks = list(range(0, images, step))
    centres = [k * views + (views - 1) / 2 for k in ticks]
    ax.set_xticks(centres, [str(k + 1) for k in ticks], fontsize=7)
    ax.set_yticks(centres, [str(k + 1) for k in ticks], fontsize=7)
    ax.tick_params(length=2, pad=1)
    ax.set_xlabel(f"forget image ({views} views each)", fontsize=7)
    ax.set_ylabel(f"forget image ({views} views each)", fontsize=7)


def alignment_figure(mats: dict[str, np.ndarray], views: int) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo = min(float(m.min()) for m in mats.values())
    cols = min(len(mats), COLUMNS)
    rows = -(-len(mats) // cols)
    images = next(iter(mats.values())).shape[0] // views
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols + 0.8, 3.6 * rows + 0.4), squeeze=False,
                             layout="constrained")
    for ax in axes.flat[len(mats):]:
        ax.axis("off")
    im = None
    for ax, (name, m) in zip(axes.flat, mats.items()):
        im = ax.imshow(m, vmin=lo, vmax=1.0, cmap="viridis", interpolation="nearest")
        ax.set_title(f"{name}\nwithin-image {within_image(m, views):.3f}", fontsize=9)
        _blocks(ax, images, views)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="cosine of two views' head embeddings")
    fig.suptitle(f"Head-embedding cosine between every pair of views ({images} forget images x {views} views)\n"
                 "one block per pair of images (white lines); a bright diagonal block: the model aligns "
                 "that image's views", fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


@register_auditor("alignment_gap")
class AlignmentGap(Auditor):
    """Mean positive-pair alignment per split, align(D_f) - align(D_t), the view-matrix figure."""

    kind = "privacy"
    reads = frozenset({"views"})
    metrics = (
        MetricSpec("align_Df", "mean pairwise cosine of V views' head embeddings on D_f",
                   ideal_retrain=True, bounds=COSINE, source="Wang & Isola 2020", headline=False),
        MetricSpec("align_Dr", "the same on D_r members", ideal_retrain=True,
                   bounds=COSINE, source="Wang & Isola 2020", headline=False),
        MetricSpec("align_Dt", "the same on D_t", ideal_retrain=True, bounds=COSINE,
                   source="Wang & Isola 2020", headline=False),
        MetricSpec("align_gap", "align_Df - align_Dt (0: forget data look unseen)",
                   ideal_retrain=True, bounds=(-2.0, 2.0), source="this benchmark"),
    )

    def audit(self, model: ModelFeatures, ctx: AuditContext) -> dict[str, float]:
        a = {s: float(np.mean(model.align_head[s])) for s in ("forget", "retain", "test")}
        return {"align_Df": a["forget"], "align_Dr": a["retain"], "align_Dt": a["test"],
                "align_gap": a["forget"] - a["test"]}

    def figures(self, models: dict[str, ModelFeatures], ctx: AuditContext) -> dict[str, bytes]:
        mats = {name: view_matrix(mf.align_views) for name, mf in models.items()
                if mf.align_views.size and mf.align_views.shape[0] > 0}
        if not mats:
            return {}
        return {FIGURE: alignment_figure(mats, next(iter(models.values())).align_views.shape[1])}
