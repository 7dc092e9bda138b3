"""Everything the auditors read from one model, computed once per model and shared.

No auditor touches a model: the runner calls :func:`extract` once per model
(original, retrain, references, each method's output) and every auditor reads the
resulting :class:`ModelFeatures`. Views are drawn from a generator seeded by the
cell, not by the model, so every model is scored on the *same* augmentations
(common random numbers): that is what lets the calibrated attack subtract a
reference model's score sample by sample.

D_v (split ``val``) gets clean features and labels only: it is there so that the probe
and the kNN bank see every class (:data:`FIT_ONLY`), never as a member or non-member
sample of an attack, so no views or losses are spent on it.

Only what the cell's auditors read is computed (:data:`READS`; each auditor declares its
``reads``): the V-view pass and the pooled losses are most of an extraction's cost, and a
matrix auditing with the linear probe alone needs neither.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from bench.config import AuditOptions
from bench.data import Batch, DataView
from bench.device import autocast
from bench.encoders.base import Encoder

VERSION = 1  # bump when extract's output changes: stored yardstick features are keyed by it (bench/auditcache.py)
ALIGN_SAMPLES = 8  # forget images drawn in the alignment-matrix heat map
# Splits that only fit the probe and the kNN bank (bench/probe.py): clean features and labels.
FIT_ONLY = frozenset({"val"})
# What an auditor may read of a model, each computed only when some auditor of the cell reads it:
# "feats" (clean backbone features, FIT_ONLY splits included), "class_scores" (the encoder's own),
# "views" (align_head, align_backbone, align_views: one V-view pass) and "loss" (pooled objective).
READS = frozenset({"feats", "class_scores", "views", "loss"})


@dataclass
class ModelFeatures:
    name: str
    feats: dict[str, np.ndarray]  # split -> [n, d] backbone features of clean images (FIT_ONLY too)
    labels: dict[str, np.ndarray]  # split -> [n] (FIT_ONLY too)
    align_head: dict[str, np.ndarray]  # split -> [n] mean pairwise cosine of V head embeddings
    align_backbone: dict[str, np.ndarray]  # same on backbone features of the views
    loss: dict[str, np.ndarray]  # split -> [n] per-sample objective on fixed view draws
    align_views: np.ndarray  # [S, V, D] head embeddings of the first S forget images
    class_scores: dict[str, np.ndarray] = field(default_factory=dict)  # model's own class scores
    capabilities: frozenset[str] = frozenset()
    reads: frozenset[str] = READS  # what was computed (the rest is left empty)
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)

    def memo(self, key: str, fn: Callable[[], Any]) -> Any:
        """Derived results shared between auditors (e.g. the linear probe)."""
        if key not in self._memo:
            self._memo[key] = fn()
        return self._memo[key]


def state_hash(encoder: Encoder) -> str:
    h = hashlib.sha256()
    for k, v in encoder.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _mean_pairwise_cos(z: torch.Tensor) -> torch.Tensor:
    """z: [n, V, D] -> [n]: mean cosine over the V(V-1) ordered pairs of distinct views."""
    z = torch.nn.functional.normalize(z.float(), dim=-1)
    v = z.shape[1]
    s = z.sum(dim=1)
    return ((s * s).sum(-1) - v) / (v * (v - 1))


def _pooled_losses(
    encoder: Encoder, views: dict[str, DataView], bs: int, device: torch.device, precision: str, seed: int
) -> dict[str, np.ndarray]:
    """Per-sample objective, every sample scored in a full batch of the same mixed pool.

    A contrastive loss depends on its in-batch negatives: scored split by split, a 200-image
    forget split (fewer negatives) gets a lower loss than 512-image test batches whatever
    the model saw (an AUC of 0.97 on the retrain, measured). So all audit splits are pooled,
    shuffled by the cell's seed (the same order for every model: common random numbers) and
    cut into batches of ``bs``; the last batch is filled up from the start of the pool.
    Two view draws are averaged.
    """
    names = list(views)
    sizes = [len(views[k]) for k in names]
    n = sum(sizes)
    if n < 2:
        return {k: np.zeros(len(views[k])) for k in names}
    x = torch.cat([views[k].x for k in names])
    y = torch.cat([views[k].y for k in names])
    idx = torch.cat([views[k].idx for k in names])
    order = torch.randperm(n, generator=torch.Generator().manual_seed(zlib.crc32(f"{seed}:pool".encode())))
    gen = torch.Generator().manual_seed(zlib.crc32(f"{seed}:loss".encode()))
    bs = max(2, min(bs, n))
    total = torch.zeros(n)
    for _ in range(2):
        for s in range(0, n, bs):
            rows = order[s : s + bs]
            keep = len(rows)
            if keep < bs:  # fill the last batch so every sample sees bs - 1 negatives
                rows = torch.cat([rows, order[: bs - keep]])
            rows_dev = rows.to(x.device)
            batch = Batch(x[rows_dev], y[rows_dev], idx[rows_dev])
            with autocast(device, precision):
                lo = encoder.objective(batch, gen).float().cpu()
            total[rows[:keep]] += lo[:keep]
    per = (total / 2).numpy()
    return dict(zip(names, np.split(per, np.cumsum(sizes)[:-1]), strict=True))


@torch.no_grad()
def clean_features(encoder: Encoder, x: torch.Tensor, batch_size: int, device: torch.device,
                   precision: str) -> np.ndarray:
    """Backbone features f(x) [n, d] of un-augmented uint8 images, batch by batch (fp32)."""
    out = []
    for s in range(0, len(x), batch_size):
        with autocast(device, precision):
            out.append(encoder.features(x[s : s + batch_size].to(device)).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, encoder.feat_dim), dtype=np.float32)


@torch.no_grad()
def extract(
    encoder: Encoder,
    name: str,
    views: dict[str, DataView],
    opts: AuditOptions,
    device: torch.device,
    precision: str,
    seed: int,
    reads: frozenset[str] = READS,
) -> ModelFeatures:
    """Encode every audit split once: clean features, V-view alignments, per-sample loss
    (splits in :data:`FIT_ONLY`: clean features and labels only), each only if in ``reads``.
    Labels are always filled; the view draws of one split do not depend on ``reads``."""
    unknown = set(reads) - READS
    if unknown:
        raise ValueError(f"unknown feature(s) {sorted(unknown)}: an auditor reads some of {sorted(READS)}")
    encoder.eval()
    out: dict[str, dict[str, np.ndarray]] = {
        k: {} for k in ("feats", "labels", "align_head", "align_backbone", "loss", "scores")
    }
    bs = opts.batch_size
    vb = max(1, bs // opts.views)
    align_views = np.zeros((0, opts.views, 1), dtype=np.float32)
    for split, view in views.items():
        gen = torch.Generator().manual_seed(zlib.crc32(f"{seed}:{split}".encode()))
        scores, ah, ab = [], [], []
        out["labels"][split] = view.y.cpu().numpy()
        if "feats" in reads:
            out["feats"][split] = clean_features(encoder, view.x, bs, device, precision)
        if split in FIT_ONLY:
            continue
        for s in range(0, len(view), bs) if "class_scores" in reads else ():
            with autocast(device, precision):
                cs = encoder.class_scores(view.x[s : s + bs])
            if cs is None:  # an encoder without a classifier answers None for every batch
                break
            scores.append(cs.float().cpu())
        for s in range(0, len(view), vb) if "views" in reads else ():
            x = view.x[s : s + vb]
            rep = x.repeat_interleave(opts.views, dim=0)
            with autocast(device, precision):
                v = encoder.augment(rep, gen)
                f = encoder.backbone(v)
                z = encoder.project(f)
            n = x.shape[0]
            zv = torch.nn.functional.normalize(z.float(), dim=-1).view(n, opts.views, -1)
            ah.append(_mean_pairwise_cos(zv).cpu())
            ab.append(_mean_pairwise_cos(f.float().view(n, opts.views, -1)).cpu())
            if split == "forget" and s == 0:
                align_views = zv[:ALIGN_SAMPLES].cpu().numpy()
        if "views" in reads:
            out["align_head"][split] = torch.cat(ah).numpy() if ah else np.zeros(0)
            out["align_backbone"][split] = torch.cat(ab).numpy() if ab else np.zeros(0)
        if scores:
            out["scores"][split] = torch.cat(scores).numpy()
    scored = {k: v for k, v in views.items() if k not in FIT_ONLY}  # the pool as before D_v joined
    if "loss" in reads:
        out["loss"] = _pooled_losses(encoder, scored, bs, device, precision, seed)
    return ModelFeatures(
        name=name,
        feats=out["feats"],
        labels=out["labels"],
        align_head=out["align_head"],
        align_backbone=out["align_backbone"],
        loss=out["loss"],
        align_views=align_views,
        class_scores=out["scores"],
        capabilities=frozenset(encoder.capabilities),
        reads=frozenset(reads),
    )
