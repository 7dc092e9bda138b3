"""Fine-tune: keep training the original with its own objective on D_r only.

Forgetting comes only from catastrophic interference, so it is the cheapest "does
anything" baseline. Recipe of MUC's released runs (EhanW/Alignment-Calibration,
``scrips/template/ft_*.sh``): 10 epochs, SGD momentum 0.9, constant lr swept over
0.003-0.026, weight decay 5e-4 (its ``--cl-weight-decay`` default, as SalUn's).
"""

from dataclasses import dataclass

from bench import Method, UnlearnContext, hp, integer, log_uniform, register_method

OPTIMIZERS = ("sgd", "adam", "adamw")


@register_method(
    "finetune",
    needs=("retain",),
    source="MUC (Wang et al.) / Warnecke et al. 2023",
    description="the encoder's own objective on D_r (forgetting by interference)",
)
@dataclass
class Finetune(Method):
    """Search space: lr over MUC's sweep (0.003-0.03, log scale); epochs up to MUC's 10
    (the lower end is our choice, so a shorter run can win)."""

    epochs: int = hp(10, ge=1, tune=integer(1, 10))
    lr: float = hp(0.01, gt=0, tune=log_uniform(3e-3, 3e-2))
    weight_decay: float = hp(5e-4, ge=0)
    optimizer: str = hp("sgd", choices=OPTIMIZERS)

    def unlearn(self, ctx: UnlearnContext) -> None:
        opt = ctx.optimizer(self.optimizer, lr=self.lr, weight_decay=self.weight_decay)
        for batch in ctx.batches(ctx.retain, epochs=self.epochs):
            ctx.step(opt, ctx.objective(batch).mean())
