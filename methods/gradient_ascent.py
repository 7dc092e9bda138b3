"""Gradient ascent (NegGrad): maximise the encoder's own objective on D_f.

With a large budget it destroys utility, which the leaderboard shows as a large Avg
Gap rather than as "best forgetting". Recipe of MUC's released runs
(``scrips/template/ga_*.sh``): 5 epochs, SGD momentum 0.9, lr swept over 1e-6-1e-4,
weight decay 5e-4 (its default; the decay still shrinks the weights while the loss is
ascended, as in MUC's and SalUn's optimisers).
"""

from dataclasses import dataclass

from bench import Method, UnlearnContext, hp, integer, log_uniform, register_method

OPTIMIZERS = ("sgd", "adam", "adamw")


@register_method(
    "gradient_ascent",
    needs=("forget",),
    source="Golatkar et al. 2020; MUC",
    description="minus the encoder's objective on D_f",
)
@dataclass
class GradientAscent(Method):
    """Search space: lr over MUC's sweep (1e-6-1e-4, log scale); epochs up to MUC's 5
    (the lower end is our choice)."""

    epochs: int = hp(5, ge=1, tune=integer(1, 5))
    lr: float = hp(1e-4, gt=0, tune=log_uniform(1e-6, 1e-4))
    weight_decay: float = hp(5e-4, ge=0)
    optimizer: str = hp("sgd", choices=OPTIMIZERS)

    def unlearn(self, ctx: UnlearnContext) -> None:
        opt = ctx.optimizer(self.optimizer, lr=self.lr, weight_decay=self.weight_decay)
        for batch in ctx.batches(ctx.forget, epochs=self.epochs):
            ctx.step(opt, -ctx.objective(batch).mean())
