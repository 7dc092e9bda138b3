"""Retrain: train from scratch on D_r with the original's recipe. The gold standard.

The model comes from the content-addressed cache (the runner trains the same
model as the cell's reference), and its recorded training time is charged as RTE.
"""

from dataclasses import dataclass

from bench import Method, UnlearnContext, register_method


@register_method(
    "retrain",
    needs=("retain",),
    source="exact unlearning (gold standard)",
    description="train from scratch on D_r with the original's recipe",
)
@dataclass
class Retrain(Method):
    """No hyperparameters and no search space: the recipe is the original's (the cell's
    ``train`` budget), so retrain is the same model every auditor compares against."""

    def unlearn(self, ctx: UnlearnContext) -> None:
        ctx.train_from_scratch(ctx.retain)
