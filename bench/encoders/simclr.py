"""SimCLR (Chen et al. 2020) with lightly's projection head and NT-Xent loss."""

from __future__ import annotations

import torch
from torch import nn

from bench.data import Batch
from bench.encoders.base import DataInfo, Encoder, full_precision
from bench.registry import register_encoder


@register_encoder("simclr", framework="lightly", description="SimCLR: 2-layer MLP head, NT-Xent (tau 0.5)")
class SimCLR(Encoder):
    """Per-sample loss: lightly's NT-Xent with ``reduction='none'`` gives one loss per row of
    the 2B logits ``[view0; view1]``; sample i's loss is the mean of rows i and B+i, so the
    batch mean equals lightly's reduced loss exactly.

    BatchNorm: each view batch goes through the network in its own forward (two batches of
    B), as lightly's SimCLR example and MUC's code (the recipe this benchmark follows, and AC's
    reference) do, in training and in every method that calls ``pair_loss``. The SimCLR
    paper's global BN normalises the 2B concatenation instead; that couples the two views'
    statistics and gives another loss on the same weights (4e-3 on a batch of 128 in train mode,
    docs/methods.md, "Fidelity"; an independent review measured 3e-2 on its own setup)."""

    version = 3  # 2: NT-Xent in fp32 under bf16 autocast; 3: one forward per view (BN over B)

    def __init__(
        self,
        backbone: nn.Module,
        info: DataInfo,
        temperature: float = 0.5,
        proj_dim: int = 128,
        hidden_dim: int | None = None,
        image_size: int | None = None,
    ):
        super().__init__(backbone, info, image_size)
        # lightly (and the torchvision it imports) loads here, not at module level: validate and ls import
        # this module without building a model
        from lightly.loss import NTXentLoss
        from lightly.models.modules import SimCLRProjectionHead

        d = self.feat_dim
        self.head = SimCLRProjectionHead(d, hidden_dim or d, proj_dim)
        self.criterion = NTXentLoss(temperature=temperature)
        self.criterion.cross_entropy = nn.CrossEntropyLoss(reduction="none")

    def pair_loss(self, v1: torch.Tensor, v2: torch.Tensor, batch: Batch) -> torch.Tensor:
        za, zb = self.project(self.backbone(v1)), self.project(self.backbone(v2))
        with full_precision(za):
            rows = self.criterion(za.float(), zb.float())
        b = v1.shape[0]
        return 0.5 * (rows[:b] + rows[b:])
