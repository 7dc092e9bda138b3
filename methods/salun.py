"""SalUn (Fan et al., ICLR 2024): random-label unlearning restricted to salient weights.

Follows OPTML-Group/Unlearn-Saliency: ``generate_mask.py`` sums, over batches of D_f, the
gradient of the batch-mean loss ``-CE(f(x), y)`` with the model in eval mode (BatchNorm on
running statistics), takes ``|.|`` and keeps the top ``fraction`` (default 50 %) of all
trainable weights, ranked globally across tensors (biases and BatchNorm affine weights
included, as the reference ranks every named parameter). The mask is computed once, on
the original model. Then ``RL`` training (:mod:`methods.random_labels`: random-label CE on
D_f, then CE on D_r, every epoch) runs with every gradient multiplied by the mask.

Deviation: in the reference, SGD weight decay (and momentum carried by it) still moves
masked-out weights, since the mask only zeroes their loss gradient. Here masked-out
weights are also copied back to their original values after every optimiser step, so they
end exactly where they started whatever the optimiser. BatchNorm running statistics are
buffers, not weights: they follow the training batches, as in the reference.

Supervised encoder only (``logits``), like random labels; same defaults (SalUn's CIFAR-10
random-forgetting command: 10 epochs, lr 0.013, SGD momentum 0.9, weight decay 5e-4).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bench import UnlearnContext, register_method
from methods.random_labels import RandomLabels, ce_loss


def saliency_masks(ctx: UnlearnContext, params: list[nn.Parameter], fraction: float) -> list[torch.Tensor]:
    """Boolean masks (one per parameter) of the top ``fraction`` of |sum_batches grad(-CE on D_f)|."""
    if not 0 < fraction <= 1:
        raise ValueError(f"salun: fraction must be in (0, 1], got {fraction}")
    enc = ctx.encoder
    was_training = enc.training
    enc.eval()
    grads = [torch.zeros_like(p) for p in params]
    try:
        for batch in ctx.batches(ctx.forget, shuffle=False):
            loss = -ce_loss(ctx, batch.x, batch.y)
            for acc, g in zip(grads, torch.autograd.grad(loss, params, allow_unused=True)):
                if g is not None:
                    acc += g
    finally:
        enc.train(was_training)
    scores = torch.cat([g.abs().flatten() for g in grads])
    chosen = torch.zeros_like(scores, dtype=torch.bool)
    chosen[scores.topk(int(fraction * scores.numel())).indices] = True
    return [m.view_as(p) for m, p in zip(chosen.split([p.numel() for p in params]), params)]


@register_method(
    "salun",
    needs=("forget", "retain", "labels"),
    requires=("logits",),
    source="Fan et al. 2024 (SalUn), OPTML-Group/Unlearn-Saliency",
)
@dataclass
class SalUn(RandomLabels):
    fraction: float = 0.5

    def unlearn(self, ctx: UnlearnContext) -> None:
        params = ctx.encoder.trainable_parameters()
        masks = saliency_masks(ctx, params, self.fraction)
        start = [p.detach().clone() for p in params]
        scales = [m.to(p.dtype) for p, m in zip(params, masks)]
        hooks = [p.register_hook(lambda g, s=s: g * s) for p, s in zip(params, scales)]

        @torch.no_grad()
        def hold_unmasked() -> None:
            for p, m, p0 in zip(params, masks, start):
                p.copy_(torch.where(m, p, p0))

        try:
            self.relabel_train(ctx, after_step=hold_unmasked)
        finally:
            for h in hooks:
                h.remove()
        n = sum(p.numel() for p in params)
        ctx.info["mask_fraction"] = sum(int(m.sum()) for m in masks) / max(n, 1)
