"""Gradient ascent (NegGrad): maximise the encoder's own objective on D_f.

MUC: 5 epochs, lr 1e-6 to 1e-4. With a large budget it destroys utility, which
the leaderboard shows as a large Avg Gap rather than as "best forgetting".
"""

from dataclasses import dataclass

from bench import Method, UnlearnContext, register_method


@register_method("gradient_ascent", needs=("forget",), source="Golatkar et al. 2020; MUC")
@dataclass
class GradientAscent(Method):
    epochs: int = 5
    lr: float = 1e-4
    optimizer: str = "sgd"

    def unlearn(self, ctx: UnlearnContext) -> None:
        opt = ctx.optimizer(self.optimizer, lr=self.lr)
        for batch in ctx.batches(ctx.forget, epochs=self.epochs):
            ctx.step(opt, -ctx.objective(batch).mean())
