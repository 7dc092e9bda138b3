"""Supervised classifier: backbone + linear head, cross-entropy (the seed papers' supervised runs)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.data import Batch
from bench.encoders.base import DataInfo, Encoder, full_precision
from bench.registry import register_encoder


@register_encoder("supervised", framework="torch", description="backbone + linear classifier, CE")
class Supervised(Encoder):
    """Labels drive the objective, so methods that need logits (and auditors that read the
    model's own class scores) can use it; its views are the standard crop + flip.

    ``project`` is the identity, so ``embed`` is the normalised backbone feature (the
    classifier is not a projection head). ``pair_loss(v1, v2, batch)`` is the
    cross-entropy of view ``v1`` against ``batch.y``; ``v2`` is unused (a classifier has
    no second view), and ``objective`` augments one view only, or none with
    ``augment=False`` (the normalised, prepared image: ``one_view``). Per-sample loss =
    that sample's cross-entropy; its mean is ``nn.CrossEntropyLoss()`` exactly.
    """

    capabilities = frozenset({"labels", "logits", "views", "one_view"})
    augment_preset = "supervised"

    def __init__(self, backbone: nn.Module, info: DataInfo, image_size: int | None = None):
        super().__init__(backbone, info, image_size)
        self.head = nn.Linear(self.feat_dim, info.num_classes)

    def project(self, f: torch.Tensor) -> torch.Tensor:
        return f

    def logits(self, v: torch.Tensor) -> torch.Tensor:
        """Class logits [B, C] of an augmented or prepared view."""
        return self.head(self.backbone(v))

    def class_scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.prepare(x))

    def pair_loss(self, v1: torch.Tensor, v2: torch.Tensor, batch: Batch) -> torch.Tensor:
        logits = self.logits(v1)
        with full_precision(logits):
            return F.cross_entropy(logits.float(), batch.y, reduction="none")

    def objective(
        self, batch: Batch, generator: torch.Generator | None = None, augment: bool = True
    ) -> torch.Tensor:
        v = self.view(batch.x, generator, augment)
        return self.pair_loss(v, v, batch)
