"""l1-sparse unlearning (Jia et al. 2023, "Model sparsity can simplify machine unlearning").

Finetune on D_r with an l1 penalty whose weight decays linearly to zero:

    L_t = L(D_r batch) + a_t * ||theta||_1,   a_t = lambda * (1 - t / (T - 1)),  t = 0..T-1

Sparsity pushed in early (when a_t is large) removes weights the forget data relied
on; the decay lets the last steps recover utility. The paper's code decays a_t per
epoch (lambda * (1 - e / E), never reaching zero); here it decays per step and the
last step is a plain finetune step (MUC's runs keep a_t = lambda constant). ||theta||_1
runs over every trainable parameter, as in both the paper's and MUC's code. SGD momentum
0.9, weight decay 5e-4 (MUC's and SalUn's).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench import Method, UnlearnContext, hp, integer, log_uniform, register_method

OPTIMIZERS = ("sgd", "adam", "adamw")


def l1_weight(step: int, total: int, lam: float) -> float:
    """Linear decay from ``lam`` at the first step to 0 at the last of ``total`` steps."""
    if total <= 1:
        return 0.0
    return lam * max(0.0, 1.0 - step / (total - 1))


def l1_norm(params: list[torch.nn.Parameter]) -> torch.Tensor:
    return torch.stack([p.abs().sum() for p in params]).sum()


@register_method(
    "l1_sparse",
    needs=("retain",),
    source="Jia et al. 2023; MUC's l1 runs",
    description="finetune on D_r + a_t * ||theta||_1, a_t decaying linearly to 0",
)
@dataclass
class L1Sparse(Method):
    """MUC's runs (``scrips/template/l1_*.sh``): lambda 5e-6 to 1e-3, 10 epochs, SGD lr
    0.006; the default 5e-4 sits in that range. lr, weight decay and optimizer are
    finetune's, so ``lam=0`` is exactly finetune.

    Search space: lambda log-uniform over 1e-6-1e-3 (MUC's sweep, widened at the
    bottom); lr over finetune's (MUC's ft sweep, which holds 0.006); epochs
    up to MUC's 10 (the lower end is our choice)."""

    epochs: int = hp(10, ge=1, tune=integer(1, 10))
    lr: float = hp(0.01, gt=0, tune=log_uniform(3e-3, 3e-2))
    lam: float = hp(5e-4, ge=0, tune=log_uniform(1e-6, 1e-3), doc="lambda: the l1 weight at the first step")
    weight_decay: float = hp(5e-4, ge=0)
    optimizer: str = hp("sgd", choices=OPTIMIZERS)

    def unlearn(self, ctx: UnlearnContext) -> None:
        params = ctx.encoder.trainable_parameters()
        opt = ctx.optimizer(self.optimizer, lr=self.lr, params=params, weight_decay=self.weight_decay)
        total = ctx.num_batches(ctx.retain, self.epochs)
        for t, batch in enumerate(ctx.batches(ctx.retain, epochs=self.epochs)):
            loss = ctx.objective(batch).mean()
            a_t = l1_weight(t, total, self.lam)
            if a_t > 0:
                loss = loss + a_t * l1_norm(params)
            ctx.step(opt, loss)
        ctx.info["l1_norm_end"] = float(l1_norm(params).detach())
