"""BYOL (Grill et al. 2020) with lightly's heads, negative-cosine loss and momentum utilities."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.data import Batch
from bench.encoders._momentum import MomentumEncoder
from bench.encoders.base import DataInfo, full_precision
from bench.registry import register_encoder


@register_encoder(
    "byol",
    framework="lightly",
    description="BYOL: projection + predictor MLPs, EMA target 0.99, symmetric negative cosine",
)
class BYOL(MomentumEncoder):
    """Online: backbone -> ``BYOLProjectionHead`` -> ``BYOLPredictionHead``; target: EMA copies
    of backbone and projection head.

    Loss (lightly's BYOL example): ``0.5 * (ncs(p1, t2) + ncs(p2, t1))`` with lightly's
    ``NegativeCosineSimilarity`` (``-cos``, i.e. the paper's ``2 - 2 cos`` shifted and
    halved). Per sample: the same two terms for that sample's pair, so the batch mean is the
    framework loss exactly. Both views share one forward pass (BatchNorm statistics over
    the 2B views), as ``simclr`` does.

    Defaults at CPU scale: MLP hidden width 1024 (the paper's 4096 is ``hidden_dim=4096``),
    output 256, EMA 0.99 constant; ``momentum_steps`` turns on BYOL's cosine increase to
    ``momentum_end`` (paper: 0.996 -> 1 over training).
    """

    capabilities = frozenset({"views", "momentum"})
    augment_preset = "byol"

    def __init__(
        self,
        backbone: nn.Module,
        info: DataInfo,
        proj_dim: int = 256,
        hidden_dim: int = 1024,
        momentum: float = 0.99,
        momentum_end: float = 1.0,
        momentum_steps: int = 0,
        image_size: int | None = None,
    ):
        super().__init__(backbone, info, image_size)
        # lightly (and the torchvision it imports) loads here, not at module level: validate and ls import
        # this module without building a model
        from lightly.loss import NegativeCosineSimilarity
        from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead

        self.head = BYOLProjectionHead(self.feat_dim, hidden_dim, proj_dim)
        self.predictor = BYOLPredictionHead(proj_dim, hidden_dim, proj_dim)
        self._init_momentum(momentum, momentum_end, momentum_steps)
        self.criterion = NegativeCosineSimilarity()

    def pair_loss(self, v1: torch.Tensor, v2: torch.Tensor, batch: Batch) -> torch.Tensor:
        b = v1.shape[0]
        views = torch.cat([v1, v2])
        p = self.predictor(self.head(self.backbone(views))).float()
        t = self.target_project(views).float()
        eps = self.criterion.eps
        with full_precision(p):
            ncs12 = -F.cosine_similarity(p[:b], t[b:], dim=1, eps=eps)
            ncs21 = -F.cosine_similarity(p[b:], t[:b], dim=1, eps=eps)
        return 0.5 * (ncs12 + ncs21)
