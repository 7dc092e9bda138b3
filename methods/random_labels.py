"""Random labels: cross-entropy on D_f with random wrong labels, then on D_r, every epoch.

The classic relabelling baseline as run in SalUn's code (OPTML-Group/Unlearn-Saliency,
``unlearn/RL.py``): each epoch is one pass over D_f with freshly drawn random targets,
then one pass over D_r with the true labels, SGD (momentum 0.9, weight decay 5e-4).
Defaults follow SalUn's CIFAR-10 random-forgetting command (10 epochs, lr 0.013).

Deviation (default, switchable): the reference draws targets uniformly over all C classes,
so a fraction 1/C of them is the true label and does not push the sample away. Here
``wrong_only=True`` draws uniformly over the C - 1 wrong classes (every target differs from
the true label); ``wrong_only=False`` reproduces the reference's uniform draw.

Needs class labels and a classifier head, so it runs on encoders with ``logits`` only
(the supervised one); the runner skips the others with a logged reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench import Method, UnlearnContext, register_method


def random_labels(
    y: torch.Tensor, num_classes: int, generator: torch.Generator, wrong_only: bool = True
) -> torch.Tensor:
    """Random targets for labels ``y``: uniform over the wrong classes (``wrong_only``), else
    uniform over all classes (the reference; equals ``y`` with probability 1/C)."""
    if (y < 0).any():
        raise ValueError("random labels need the true class labels (declare 'labels' in needs)")
    if wrong_only:
        shift = torch.randint(1, num_classes, y.shape, generator=generator).to(y.device)
        return (y + shift) % num_classes
    return torch.randint(0, num_classes, y.shape, generator=generator).to(y.device)


def ce_loss(ctx: UnlearnContext, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the classifier's logits on one augmented view against ``targets``."""
    with ctx.autocast():
        logits = ctx.encoder.logits(ctx.augment(x))
    return F.cross_entropy(logits.float(), targets)


@register_method(
    "random_labels",
    needs=("forget", "retain", "labels"),
    requires=("logits",),
    source="Golatkar et al. 2020 / Hayase et al. 2020; SalUn's RL code (Fan et al. 2024)",
)
@dataclass
class RandomLabels(Method):
    epochs: int = 10
    lr: float = 0.013
    momentum: float = 0.9
    weight_decay: float = 5e-4
    wrong_only: bool = True

    def unlearn(self, ctx: UnlearnContext) -> None:
        self.relabel_train(ctx)

    def relabel_train(self, ctx: UnlearnContext, after_step: Callable[[], None] | None = None) -> None:
        """The training loop; ``after_step`` runs after every optimiser step (SalUn's mask)."""
        opt = ctx.optimizer("sgd", lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)

        def step(loss: torch.Tensor) -> None:
            ctx.step(opt, loss)
            if after_step is not None:
                after_step()

        for _ in range(self.epochs):
            for batch in ctx.batches(ctx.forget):
                targets = random_labels(batch.y, ctx.num_classes, ctx.generator, self.wrong_only)
                step(ce_loss(ctx, batch.x, targets))
            for batch in ctx.batches(ctx.retain):
                step(ce_loss(ctx, batch.x, batch.y))
            if ctx.out_of_time:
                break
