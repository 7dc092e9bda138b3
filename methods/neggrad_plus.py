"""NegGrad+ (Kurmanji et al. 2023): descend the objective on D_r while ascending it on D_f.

    L = alpha * L(D_r batch) - (1 - alpha) * L(D_f batch)

Mixed batches as in the SCRUB / SalUn code: every step pairs one retain batch with one
forget batch, an epoch is one pass over D_r and the (smaller) D_f is cycled. Unlike
MUC's ``ng``, which ran on all of D including D_v, only D_r and D_f are used.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench import Method, UnlearnContext, register_method


@register_method(
    "neggrad_plus",
    needs=("forget", "retain"),
    source="Kurmanji et al. 2023 (SCRUB's NegGrad+); MUC's ng",
    description="NegGrad+: alpha * L(D_r batch) - (1 - alpha) * L(D_f batch)",
)
@dataclass
class NegGradPlus(Method):
    """``alpha=None`` gives every sample the same weight, as MUC's ``ng`` does on its union
    batches (retain rows +1, forget rows -1): alpha = |D_r| / (|D_r| + |D_f|), 0.9 for a
    10 % forget set. lr and epochs are finetune's (MUC swept ng's lr over 0.003-0.03 for
    10 epochs), so ``alpha=1`` is exactly finetune."""

    epochs: int = 10
    lr: float = 0.01
    alpha: float | None = None
    optimizer: str = "sgd"

    def unlearn(self, ctx: UnlearnContext) -> None:
        n_r, n_f = len(ctx.retain), len(ctx.forget)
        alpha = n_r / (n_r + n_f) if self.alpha is None else self.alpha
        ctx.info["alpha"] = alpha
        opt = ctx.optimizer(self.optimizer, lr=self.lr)
        forget = ctx.cycle(ctx.forget) if alpha != 1 else None  # alpha 1: no forget term at all
        for batch in ctx.batches(ctx.retain, epochs=self.epochs):
            loss = alpha * ctx.objective(batch).mean()
            if forget is not None:
                loss = loss - (1 - alpha) * ctx.objective(next(forget)).mean()
            ctx.step(opt, loss)
