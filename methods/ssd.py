"""Selective Synaptic Dampening (Foster et al., AAAI 2024): no training, one dampening pass.

Diagonal Fisher importances of the encoder's own objective, I_D over D = D_r u D_f and
I_f over D_f; every weight with I_f > alpha * I_D is multiplied by
beta = min(lambda * I_D / I_f, 1); all others are left exactly as they are. Defaults
alpha 10, lambda 1 (the paper's ResNet-18 / CIFAR setting, ``forget_*_main.py``).

As in the reference (if-loops/selective-synaptic-dampening @ cdfdc0e, ``ParameterPerturber``):
- importances are per-batch squared gradients, (grad of the batch-mean loss)^2 averaged
  over batches, not per-sample squared gradients: the reference's cost (one backward per
  batch) and the only reading that works for contrastive objectives, whose per-sample
  losses depend on the rest of the batch;
- the images are un-augmented (the reference's ``transform_unlearning`` is ToTensor +
  Normalize): ``augment=False`` asks the encoder for its objective on the prepared image,
  which encoders whose objective takes one view honour (supervised CE, CLIP). Two-view SSL
  objectives are defined by two *different* views, so for them the importances stay on
  augmented views (:meth:`Encoder.objective`); ``info["importance_views"]`` records which.
  Augmentation matters: on one supervised convnet-s digits model (30 epochs, 10 % random
  forget set, defaults) augmented importances dampened 27,767 of 316,970 weights and took
  test accuracy from 0.988 to 0.721; un-augmented ones dampened 310 and left it at 0.988
  (the fidelity audit saw 8,923 vs 1,100 on its model);
- batches in order, not shuffled (the reference's loaders): D = D_r then D_f, so D_f's
  rows also form whole batches of the I_D pass;
- the model is in eval mode while importances are computed (BatchNorm on running
  statistics);
- every trainable parameter is eligible, BatchNorm affine weights and biases included (the
  reference iterates ``named_parameters()``). Buffers (BatchNorm running statistics, memory
  banks) are not parameters and are restored after the importance passes, so SSD changes
  nothing but dampened weights. Momentum/target networks hold no trainable parameters
  and are left as they are.

Batch size: the reference uses 128 for both passes; here it is the cell's training batch
size unless set, since for contrastive encoders the objective (its negatives) depends on
the batch and the cell's size is the one the encoder was trained at.

Generalisation: the reference's loss is classifier cross-entropy; here it is the encoder's
per-sample objective (cross-entropy for the supervised encoder, the SSL loss otherwise),
so SSD runs on every encoder.

Tuning space: alpha log-uniform [1, 100] and lambda log-uniform [0.1, 10], centred on the
published alpha 10, lambda 1 (the paper studies sensitivity to both; these end points are
this benchmark's choice).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bench import DataView, Method, UnlearnContext, hp, log_uniform, register_method


def fisher_diagonal(
    ctx: UnlearnContext, view: DataView, params: list[nn.Parameter], batch_size: int | None = None,
    augment: bool = False,
) -> list[torch.Tensor]:
    """Mean over batches of the squared gradient of the batch-mean objective (SSD's importance)."""
    imp = [torch.zeros_like(p, dtype=torch.float32) for p in params]
    n = 0
    for batch in ctx.batches(view, batch_size=batch_size, shuffle=False):
        grads = torch.autograd.grad(ctx.objective(batch, augment=augment).mean(), params, allow_unused=True)
        for acc, g in zip(imp, grads):
            if g is not None:
                acc += g.float().square()
        n += 1
    return [i / max(n, 1) for i in imp]


@torch.no_grad()
def dampen(
    params: list[nn.Parameter], imp_d: list[torch.Tensor], imp_f: list[torch.Tensor], alpha: float, lam: float
) -> int:
    """theta <- theta * min(lam * I_D / I_f, 1) where I_f > alpha * I_D; returns how many weights."""
    count = 0
    for p, d, f in zip(params, imp_d, imp_f):
        chosen = f > alpha * d
        beta = torch.where(chosen, (lam * d / f).clamp(max=1.0), torch.ones_like(f))
        p.mul_(beta.to(p.dtype))
        count += int(chosen.sum())
    return count


@register_method(
    "ssd",
    needs=("forget", "retain"),
    source="Foster et al. 2024 (SSD), if-loops/selective-synaptic-dampening",
)
@dataclass
class SSD(Method):
    alpha: float = hp(10.0, gt=0, tune=log_uniform(1.0, 100.0), doc="selection: I_f > alpha * I_D")
    lam: float = hp(1.0, gt=0, tune=log_uniform(0.1, 10.0), doc="dampening: beta = min(lam * I_D / I_f, 1)")
    batch_size: int | None = hp(None, ge=1, doc="None: the cell's training batch size (the reference: 128)")
    augment: bool = hp(False, doc="importances on augmented views (the reference: plain images)")

    def unlearn(self, ctx: UnlearnContext) -> None:
        enc = ctx.encoder
        params = enc.trainable_parameters()
        buffers = {k: b.clone() for k, b in enc.named_buffers()}
        enc.eval()
        try:
            imp_f = fisher_diagonal(ctx, ctx.forget, params, self.batch_size, self.augment)
            full = DataView.concat([ctx.retain, ctx.forget], "full")
            imp_d = fisher_diagonal(ctx, full, params, self.batch_size, self.augment)
        finally:
            with torch.no_grad():
                for k, b in enc.named_buffers():
                    b.copy_(buffers[k])
        if ctx.out_of_time:
            raise TimeoutError("ssd: the time budget ran out while computing importances")
        count = dampen(params, imp_d, imp_f, self.alpha, self.lam)
        ctx.info["dampened_fraction"] = count / max(sum(p.numel() for p in params), 1)
        ctx.info["dampened"] = count
        plain = not self.augment and "one_view" in enc.capabilities
        ctx.info["importance_views"] = "prepared" if plain else "augmented"
