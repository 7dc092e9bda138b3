"""Boundary Shrink (Chen et al., CVPR 2023, "Boundary Unlearning"): relabel each forget
sample to its nearest wrong class and fine-tune on D_f with those labels.

As in the reference (Boundary-Unlearning-Code, ``boundary_shrink``): for each D_f batch, an
untargeted one-step FGSM attack (``FGSM``, bound 0.1, no random start) on the frozen
original model in eval mode finds the neighbouring class, ``argmax`` of the original's
logits on the adversarial image; the model being unlearned (train mode) then takes one SGD
step (lr 1e-5, momentum 0.9, no weight decay) of cross-entropy on the *clean* batch against
those labels; 10 passes over D_f (``poison_epoch``). The attack runs on the same augmented
view the model is trained on.

Input space: the reference perturbs in [0, 1] pixel space (its ``norm=True`` un-normalises,
adds ``eps * sign(grad)``, clamps to [0, 1], rounds to 1/255 and re-normalises). The same
happens here with the encoder's per-channel mean and std, so ``eps`` 0.1 means 0.1 of the
pixel range, not 0.1 normalised units (it is about 0.5 normalised units at CIFAR's
per-channel stds of about 0.2).

Deviation: when the attack fails (the original still predicts the true class on the
adversarial image) the reference trains on the true label, which does not shrink anything.
Here the target is then the top wrong class of the original's logits on the adversarial
image, so every target is a wrong, nearby class. ``info["attack_success"]`` records how
often the attack alone found it.

Supervised encoder only (``logits``, class labels); the runner skips the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench import Encoder, Method, UnlearnContext, register_method


def nearest_wrong_labels(
    model: Encoder, v: torch.Tensor, y: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(targets, attack succeeded) for normalised views ``v`` with true labels ``y``.

    One FGSM step of size ``eps`` in [0, 1] pixel space on ``model``; the target is the
    adversarial prediction when it is wrong, else the adversarial logits' best wrong class."""
    mean = torch.tensor(model.info.mean, device=v.device).view(1, -1, 1, 1)
    std = torch.tensor(model.info.std, device=v.device).view(1, -1, 1, 1)
    with torch.enable_grad():
        x = v.detach().float().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model.logits(x).float(), y), x)
    pixels = (x.detach() * std + mean + eps * grad.sign()).clamp(0, 1)
    adv = (torch.round(pixels * 255) / 255 - mean) / std
    with torch.no_grad():
        logits = model.logits(adv.contiguous(memory_format=torch.channels_last)).float()
    pred = logits.argmax(dim=1)
    best_wrong = logits.scatter(1, y[:, None], float("-inf")).argmax(dim=1)
    hit = pred != y
    return torch.where(hit, pred, best_wrong), hit


@register_method(
    "boundary_shrink",
    needs=("forget", "original", "labels"),
    requires=("logits",),
    source="Chen et al. 2023 (Boundary Unlearning), Boundary-Unlearning-Code",
)
@dataclass
class BoundaryShrink(Method):
    epochs: int = 10
    lr: float = 1e-5
    momentum: float = 0.9
    eps: float = 0.1  # FGSM bound in [0, 1] pixel units

    def unlearn(self, ctx: UnlearnContext) -> None:
        if (ctx.forget.y < 0).any():
            raise ValueError("boundary_shrink needs the true class labels")
        original = ctx.original
        opt = ctx.optimizer("sgd", lr=self.lr, momentum=self.momentum)
        hits = total = 0
        for batch in ctx.batches(ctx.forget, epochs=self.epochs):
            v = ctx.augment(batch.x)
            with ctx.autocast():
                targets, hit = nearest_wrong_labels(original, v, batch.y, self.eps)
            hits, total = hits + int(hit.sum()), total + len(hit)
            with ctx.autocast():
                loss = F.cross_entropy(ctx.encoder.logits(v).float(), targets)
            ctx.step(opt, loss)
        ctx.info["attack_success"] = hits / max(total, 1)
