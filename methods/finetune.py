"""Fine-tune: keep training the original with its own objective on D_r only.

MUC: 10 epochs, constant lr swept 0.003-0.03 (SGD). Forgetting comes only from
catastrophic interference, so it is the cheapest "does anything" baseline.
"""

from dataclasses import dataclass

from bench import Method, UnlearnContext, register_method


@register_method("finetune", needs=("retain",), source="MUC (Wang et al.) / Warnecke et al. 2023")
@dataclass
class Finetune(Method):
    epochs: int = 10
    lr: float = 0.01
    optimizer: str = "sgd"

    def unlearn(self, ctx: UnlearnContext) -> None:
        opt = ctx.optimizer(self.optimizer, lr=self.lr)
        for batch in ctx.batches(ctx.retain, epochs=self.epochs):
            ctx.step(opt, ctx.objective(batch).mean())
