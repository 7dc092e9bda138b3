"""SalUn (Fan et al., ICLR 2024): random-label unlearning restricted to salient weights.

Follows OPTML-Group/Unlearn-Saliency @ a6e89fd: ``generate_mask.py`` sums, over batches of
D_f, the gradient of the batch-mean loss ``-CE(f(x), y)`` with the model in eval mode
(BatchNorm on running statistics), takes ``|.|`` and keeps the top ``fraction`` (default
50 %, the README's ``with_0.5.pt``) of all trainable weights, ranked globally across
tensors (biases and BatchNorm affine weights included, as the reference ranks every named
parameter). The mask is computed once, on the original model, from the same views and
batches as the training (the reference's forget loader: augmented, batches of 256). Then
``RL`` training (:mod:`methods.random_labels`, same defaults and options) runs with every
gradient multiplied by the mask.

Masked-out weights, as in the reference at that commit ("Fix weight decay", 2026-02-28:
``_restore_masked_params``): after every optimiser step they are reset to their original
values (so weight decay, which the mask does not zero, cannot move them). The reference
also zeroes their momentum; here the momentum entries of a masked-out weight only ever
move that same weight, which is reset after each step, so the trained weights are the
same. BatchNorm running statistics are buffers, not weights: they follow the training
batches, as in the reference.

Tuning space: lr log-uniform [1e-3, 1e-1] and epochs [5, 15] around SalUn's CIFAR-10
command (lr 0.013, 10 epochs; the ranges are this benchmark's choice), and ``fraction``
over the grid ``generate_mask.py`` saves (0.1, 0.2, ..., 1.0).

Supervised encoder only (``logits``), like random labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bench import UnlearnContext, categorical, hp, register_method
from methods.random_labels import RandomLabels, ce_loss

MASK_GRID = tuple(round(0.1 * k, 1) for k in range(1, 11))  # the ratios generate_mask.py saves


def saliency_masks(
    ctx: UnlearnContext, params: list[nn.Parameter], fraction: float, batch_size: int | None = None,
    augment: bool = True,
) -> list[torch.Tensor]:
    """Boolean masks (one per parameter) of the top ``fraction`` of |sum_batches grad(-CE on D_f)|."""
    if not 0 < fraction <= 1:
        raise ValueError(f"salun: fraction must be in (0, 1], got {fraction}")
    enc = ctx.encoder
    was_training = enc.training
    enc.eval()
    grads = [torch.zeros_like(p) for p in params]
    try:
        for batch in ctx.batches(ctx.forget, batch_size=batch_size, shuffle=False):
            loss = -ce_loss(ctx, batch.x, batch.y, augment)
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
    fraction: float = hp(0.5, gt=0, le=1, tune=categorical(*MASK_GRID), doc="share of weights in the mask")

    def unlearn(self, ctx: UnlearnContext) -> None:
        params = ctx.encoder.trainable_parameters()
        masks = saliency_masks(ctx, params, self.fraction, self.batch_size, self.augment)
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
