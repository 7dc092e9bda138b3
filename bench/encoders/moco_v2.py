"""MoCo v2 (Chen et al. 2020) with lightly's heads, NT-Xent memory bank and momentum utilities."""

from __future__ import annotations

import torch
from torch import nn

from bench.data import Batch
from bench.encoders._momentum import MomentumEncoder
from bench.encoders.base import DataInfo, full_precision
from bench.registry import register_encoder


@register_encoder(
    "moco_v2",
    framework="lightly",
    description="MoCo v2: linear head (MUC), key encoder EMA 0.99, NT-Xent tau 0.1 + bank",
)
class MoCoV2(MomentumEncoder):
    """Query = online backbone + head on view 1; key = momentum copies on view 2.

    Head: MUC's recipe uses a *linear* 512-128 head (``head_layers=1``, built with
    lightly's ``ProjectionHead``); the MoCo v2 paper's 2-layer MLP is ``head_layers=2``
    (lightly's ``MoCoProjectionHead``).

    Loss: lightly's ``NTXentLoss(temperature, memory_bank_size=(bank, dim))`` with its
    cross-entropy swapped for ``reduction='none'``: sample i's loss is the InfoNCE of query
    i against its key (positive) and the ``bank`` queued keys of earlier batches
    (negatives), so the batch mean is lightly's loss exactly. Not symmetrised by default (as
    in MoCo); ``symmetric=True`` also queries with view 2 against view 1's key (as lightly's
    CIFAR benchmarks and MoCo v3 do): one call on the 2B stacked query/key pairs, so both
    halves see the same pre-step queue and no sample's own key is ever its negative; the
    queue then receives 2B keys per step and sample i's loss is the mean of its two rows.
    lightly queues the keys only when the query requires grad, so evaluation under
    ``torch.no_grad`` (feature extraction, a frozen teacher) leaves the queue unchanged.
    Keys join the queue when the optimiser step ends (``StepQueue``,
    bench/encoders/_step_queue.py), so every loss computed within one step sees the same,
    pre-step negatives (identical to lightly with one loss call per step). The queue is made
    a *persistent* buffer (lightly registers it non-persistent) so that a cached model
    scores per-sample losses against the same negatives as the freshly trained one, and an
    unlearning method starts from the original's queue. ``memory_bank=0`` uses in-batch
    negatives instead (SimCLR-style 2B rows, averaged per sample). No shuffled BN: on one
    device it would not change BN statistics.
    """

    capabilities = frozenset({"views", "momentum"})
    augment_preset = "moco"

    def __init__(
        self,
        backbone: nn.Module,
        info: DataInfo,
        temperature: float = 0.1,
        proj_dim: int = 128,
        head_layers: int = 1,
        hidden_dim: int | None = None,
        memory_bank: int = 4096,
        momentum: float = 0.99,
        momentum_end: float = 1.0,
        momentum_steps: int = 0,
        symmetric: bool = False,
        image_size: int | None = None,
    ):
        super().__init__(backbone, info, image_size)
        # lightly (and the torchvision it imports) loads here, not at module level: validate and ls import
        # this module without building a model
        from lightly.loss import NTXentLoss
        from lightly.models.modules import MoCoProjectionHead
        from lightly.models.modules.heads import ProjectionHead

        from bench.encoders._step_queue import StepQueue

        self.symmetric = symmetric and memory_bank > 0  # in-batch negatives are symmetric already
        d = self.feat_dim
        if head_layers == 1:
            self.head = ProjectionHead([(d, proj_dim, None, None)])
        elif head_layers >= 2:
            self.head = MoCoProjectionHead(d, hidden_dim or d, proj_dim, num_layers=head_layers)
        else:
            raise ValueError(f"head_layers must be >= 1, got {head_layers}")
        self._init_momentum(momentum, momentum_end, momentum_steps)
        self.criterion = NTXentLoss(temperature=temperature)  # no bank yet: its draw comes next
        self.criterion.cross_entropy = nn.CrossEntropyLoss(reduction="none")
        if memory_bank > 0:
            self.criterion.memory_bank = StepQueue((memory_bank, proj_dim))

    def pair_loss(self, v1: torch.Tensor, v2: torch.Tensor, batch: Batch) -> torch.Tensor:
        b = v1.shape[0]
        q = self.head(self.backbone(v1))
        k = self.target_project(v2)
        if self.symmetric:  # one forward per view, as the asymmetric pass: same BN batches
            q = torch.cat([q, self.head(self.backbone(v2))])
            k = torch.cat([k, self.target_project(v1)])
        with full_precision(q):
            rows = self.criterion(q.float(), k.float())
        return rows if rows.shape[0] == b else 0.5 * (rows[:b] + rows[b:])

    def on_step_end(self) -> None:
        from bench.encoders._step_queue import StepQueue  # loaded by __init__ already

        super().on_step_end()
        if isinstance(self.criterion.memory_bank, StepQueue):
            self.criterion.memory_bank.commit()
