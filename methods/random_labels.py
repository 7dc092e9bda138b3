"""Random labels: cross-entropy on D_f with random wrong labels, then on D_r, every epoch.

The classic relabelling baseline as run in SalUn's code (OPTML-Group/Unlearn-Saliency @
a6e89fd, ``unlearn/RL.py``): SGD (momentum 0.9, weight decay 5e-4) on batches of 256
(``arg_parser.py``'s default; the README's commands do not set it), on the training
transform (RandomCrop(32, padding 4) + horizontal flip: ``dataset.py``, ``no_aug`` off),
so ``augment`` is on by default here too (the supervised encoder's crop + flip).
Defaults follow SalUn's CIFAR-10 random-forgetting command (10 epochs, lr 0.013); the
reference's lr milestones (epochs 91, 136) never fire within them.

``schedule``: the reference branches on the dataset's name. ``sequential`` (the CIFAR-10 /
SVHN branch, the default: it is the branch of the command whose lr and epochs are the
defaults) is one pass over D_f with random targets, then one over D_r with true labels;
``mixed`` (its CIFAR-100 / TinyImageNet branch, ``RL.py`` lines 51-60) is one shuffled pass
over D_f u D_r, forget rows carrying random targets. A hyperparameter, not a dataset
switch, so a matrix chooses it per cell and no method branches on a name.

Deviation (default, switchable): the reference draws targets uniformly over all C classes,
so a fraction 1/C of them is the true label and does not push the sample away. Here
``wrong_only=True`` draws uniformly over the C - 1 wrong classes (every target differs from
the true label); ``wrong_only=False`` reproduces the reference's uniform draw.

Tuning space: lr log-uniform [1e-3, 1e-1] (about a decade either side of the command's
0.013) and epochs [5, 15] (its 10, +- 5); the repository publishes no sweep, so the ranges
are this benchmark's choice.

Needs class labels and a classifier head, so it runs on encoders with ``logits`` only
(the supervised one); the runner skips the others with a logged reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench import DataView, Method, UnlearnContext, hp, integer, log_uniform, register_method


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


def ce_loss(ctx: UnlearnContext, x: torch.Tensor, targets: torch.Tensor, augment: bool = True) -> torch.Tensor:
    """Mean cross-entropy of the classifier's logits on one view (augmented, or the prepared
    image) against ``targets``."""
    v = ctx.view(x, augment)
    with ctx.autocast():
        logits = ctx.encoder.logits(v)
    return F.cross_entropy(logits.float(), targets)


@register_method(
    "random_labels",
    needs=("forget", "retain", "labels"),
    requires=("logits",),
    source="Golatkar et al. 2020 / Hayase et al. 2020; SalUn's RL code (Fan et al. 2024)",
)
@dataclass
class RandomLabels(Method):
    epochs: int = hp(10, ge=1, tune=integer(5, 15))
    lr: float = hp(0.013, gt=0, tune=log_uniform(1e-3, 1e-1))
    momentum: float = hp(0.9, ge=0, lt=1)
    weight_decay: float = hp(5e-4, ge=0)
    wrong_only: bool = hp(True, doc="targets over the C - 1 wrong classes (False: all C, the reference)")
    schedule: str = hp("sequential", choices=("sequential", "mixed"),
                       doc="D_f then D_r (reference CIFAR-10 branch) or one shuffled D_f u D_r pass (CIFAR-100)")
    augment: bool = hp(True, doc="train on augmented views, as the reference's training transform")
    batch_size: int | None = hp(256, ge=1, doc="None: the cell's training batch size")

    def unlearn(self, ctx: UnlearnContext) -> None:
        self.relabel_train(ctx)

    def relabel_train(self, ctx: UnlearnContext, after_step: Callable[[], None] | None = None) -> None:
        """The training loop; ``after_step`` runs after every optimiser step (SalUn's mask)."""
        opt = ctx.optimizer("sgd", lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)

        def step(x: torch.Tensor, targets: torch.Tensor) -> None:
            ctx.step(opt, ce_loss(ctx, x, targets, self.augment))
            if after_step is not None:
                after_step()

        forget, retain = ctx.forget, ctx.retain
        both = DataView.concat([forget, retain], "forget+retain") if self.schedule == "mixed" else None
        for _ in range(self.epochs):
            if both is not None:
                for batch in ctx.batches(both, batch_size=self.batch_size):
                    is_forget = torch.isin(batch.idx, forget.idx.to(batch.idx.device))
                    wrong = random_labels(batch.y, ctx.num_classes, ctx.generator, self.wrong_only)
                    step(batch.x, torch.where(is_forget, wrong, batch.y))
            else:
                for batch in ctx.batches(forget, batch_size=self.batch_size):
                    step(batch.x, random_labels(batch.y, ctx.num_classes, ctx.generator, self.wrong_only))
                for batch in ctx.batches(retain, batch_size=self.batch_size):
                    step(batch.x, batch.y)
            if ctx.out_of_time:
                break
