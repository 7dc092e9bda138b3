"""NegGrad+ (Kurmanji et al. 2023): descend the objective on D_r while ascending it on D_f.

    L = alpha * L(D_r batch) - (1 - alpha) * L(D_f batch)

Mixed batches as in the SCRUB / SalUn code: every step pairs one retain batch with one
forget batch, an epoch is one pass over D_r and the (smaller) D_f is cycled. Unlike
MUC's ``ng``, which ran on all of D including D_v, only D_r and D_f are used. Both terms
are computed before the step, so both see the same model state: with MoCo both are
scored against the same pre-step queue (keys join the queue when the step ends, see
``bench/encoders/moco_v2.py``), as in MUC's ``ng``, whose single union batch does the
same. SGD momentum 0.9, weight decay 5e-4 (MUC's and SalUn's).
"""

from __future__ import annotations

from dataclasses import dataclass

from bench import Method, UnlearnContext, categorical, hp, integer, log_uniform, register_method

OPTIMIZERS = ("sgd", "adam", "adamw")
ALPHAS = (None, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99)  # None: |D_r| / (|D_r| + |D_f|), the default


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
    10 % forget set. lr and epochs are finetune's (MUC swept ng's lr over 0.003-0.026 for
    10 epochs), so ``alpha=1`` is exactly finetune.

    Search space: lr over MUC's ng sweep (log scale), epochs up to its 10; alpha one of
    None (the default: the sample-weighted alpha above) and a grid over 0.5-0.99 (our choice:
    it holds MUC's implicit 0.9 at 10 % and 0.5 at 50 % forget; below 0.5 the ascent
    outweighs the retain term). A categorical space, so the default lies inside it and is
    a study's first trial like every other method's."""

    epochs: int = hp(10, ge=1, tune=integer(1, 10))
    lr: float = hp(0.01, gt=0, tune=log_uniform(3e-3, 3e-2))
    alpha: float | None = hp(None, ge=0, le=1, tune=categorical(*ALPHAS))
    weight_decay: float = hp(5e-4, ge=0)
    optimizer: str = hp("sgd", choices=OPTIMIZERS)

    def unlearn(self, ctx: UnlearnContext) -> None:
        n_r, n_f = len(ctx.retain), len(ctx.forget)
        alpha = n_r / (n_r + n_f) if self.alpha is None else self.alpha
        ctx.info["alpha"] = alpha
        opt = ctx.optimizer(self.optimizer, lr=self.lr, weight_decay=self.weight_decay)
        forget = ctx.cycle(ctx.forget) if alpha != 1 else None  # alpha 1: no forget term at all
        for batch in ctx.batches(ctx.retain, epochs=self.epochs):
            loss = alpha * ctx.objective(batch).mean()
            if forget is not None:
                loss = loss - (1 - alpha) * ctx.objective(next(forget)).mean()
            ctx.step(opt, loss)
