"""Barlow Twins (Zbontar et al. 2021) with lightly's projection head and loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.data import Batch
from bench.encoders.base import DataInfo, Encoder, full_precision
from bench.registry import register_encoder


@register_encoder(
    "barlow_twins",
    framework="lightly",
    description="Barlow Twins: 3-layer BN head, cross-correlation loss (lambda 5e-3)",
)
class BarlowTwins(Encoder):
    """The loss is a function of the batch cross-correlation matrix ``C`` of the standardised
    embeddings, so it has no exact per-sample split. Per-sample value (our definition, not
    the paper's): ``C`` is the mean of per-sample outer products ``c_n = a_n b_n^T``, and

        l_n = L(C) + <dL/dC, c_n - C>,

    the batch loss plus the first-order change sample n's term makes to it (negative for
    samples whose pair already agrees with the target identity better than the batch).
    The corrections sum to zero identically, so ``mean(l_n)`` equals lightly's loss and
    its gradient equals lightly's gradient. The batch standardisation is held fixed in
    the linearisation.

    Head width defaults to 1024 at CPU scale (paper: 8192; ``hidden_dim`` / ``proj_dim``).
    """

    augment_preset = "simclr"

    def __init__(
        self,
        backbone: nn.Module,
        info: DataInfo,
        proj_dim: int = 1024,
        hidden_dim: int = 1024,
        lambda_param: float = 5e-3,
        image_size: int | None = None,
    ):
        super().__init__(backbone, info, image_size)
        # lightly (and the torchvision it imports) loads here, not at module level: validate and ls import
        # this module without building a model
        from lightly.loss import BarlowTwinsLoss
        from lightly.models.modules import BarlowTwinsProjectionHead

        self.head = BarlowTwinsProjectionHead(self.feat_dim, hidden_dim, proj_dim)
        self.criterion = BarlowTwinsLoss(lambda_param=lambda_param)

    def pair_loss(self, v1: torch.Tensor, v2: torch.Tensor, batch: Batch) -> torch.Tensor:
        za, zb = self.project_pair(v1, v2)
        return self.per_sample_loss(za.float(), zb.float())

    def per_sample_loss(self, za: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
        """[B] values whose mean is ``BarlowTwinsLoss()(za, zb)`` (see the class docstring)."""
        with full_precision(za):
            za, zb = za.float(), zb.float()
            return self.criterion(za, zb) + self._corrections(za, zb)

    def _corrections(self, za: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
        """<dL/dC, c_n - C> per sample, with lightly's standardisation and scaling."""
        a = F.batch_norm(za, None, None, training=True)
        bn = F.batch_norm(zb, None, None, training=True)
        c = a.T @ bn / a.shape[0]
        cd = c.detach()
        grad = 2 * self.criterion.lambda_param * cd  # off-diagonal: d(lambda sum C_ij^2)
        grad.diagonal().copy_(2 * (cd.diagonal() - 1))  # diagonal: d(sum (C_ii - 1)^2)
        per = ((a @ grad) * bn).sum(1)
        return per - (grad * c).sum()
