"""Contrastive unlearning (CU; Lee et al. 2024, code read in Hongkyu-Lee/Contrastive-Unlearning).

For a forget batch (x_u, y_u) of size B and a retain batch truncated to B, with
s_ij = z_i^u . z_j^r / tau minus the detached row max:

    L_UL = -(1/B) sum_i (1/|P(i)|) sum_{j in P(i)} [ s_ij - log sum_{k in N(i)} exp(s_ik) ]
    L    = lambda_UL * L_UL + lambda_CE * CE(logits(x_r), y_r)

Supervised (encoders with ``logits``): P(i) = retain samples of another class (pulled
toward), N(i) = retain samples of the same class (pushed away); the log term is
dropped where N(i) is empty (class unlearning). Label-free encoders (SPECS' SSL
adaptation): P(i) = all retain samples, N(i) = the other augmented views of x_i itself,
and the CE term becomes the encoder's own objective on the retain batch. The variant is
chosen by capability, never by encoder name. Each forget batch is used for
``retain_batches`` (4) steps, each with a fresh retain batch, as in the paper's code.

Stop rules (checked after every epoch, as the code does), where the model gives class
scores and labels are visible: sample unlearning stops once accuracy on D_f <= the
accuracy a method may measure on unseen data, which is D_v here (a method never sees
D_t); class unlearning stops once the forgotten class's accuracy on D_v <= 1/C.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench import Batch, DataView, Method, UnlearnContext, register_method

MODES = ("auto", "sample", "class")


def contrastive_unlearning_loss(
    z_anchor: torch.Tensor, z_cols: torch.Tensor, pull: torch.Tensor, push: torch.Tensor, tau: float
) -> torch.Tensor:
    """L_UL for anchors [B, D] against columns [M, D]; ``pull`` = P(i), ``push`` = N(i) as
    boolean masks [B, M]. Logits are stabilised by the detached max over P(i) and N(i);
    rows with an empty P(i) have nothing to pull toward and are left out of the mean."""
    s = z_anchor @ z_cols.T / tau
    used = pull | push
    row_max = s.masked_fill(~used, float("-inf")).max(dim=1, keepdim=True).values
    s = s - row_max.detach()
    n_pull = pull.sum(1)
    pull_mean = (s * pull).sum(1) / n_pull.clamp_min(1)
    log_push = torch.logsumexp(s.masked_fill(~push, float("-inf")), dim=1)
    log_push = torch.where(push.any(1), log_push, torch.zeros_like(log_push))  # N(i) empty
    per_anchor = -(pull_mean - log_push)
    has_pull = n_pull > 0
    if not bool(has_pull.any()):
        return (s * 0).sum()
    return per_anchor[has_pull].mean()


@torch.no_grad()
def class_accuracy(ctx: UnlearnContext, view: DataView, cls: int | None = None) -> float | None:
    """The model's own top-1 accuracy on ``view`` (only class ``cls`` if given); None if
    the encoder has no class scores or there is nothing to score."""
    rows = view if cls is None else view.subset(torch.nonzero(view.y == cls).flatten())
    if len(rows) == 0:
        return None
    ctx.encoder.eval()
    correct = 0
    try:
        bs = ctx.budget.batch_size
        for start in range(0, len(rows), bs):
            x, y = rows.x[start : start + bs], rows.y[start : start + bs]
            with ctx.autocast():
                scores = ctx.encoder.class_scores(x)
            if scores is None:
                return None
            correct += int((scores.argmax(1) == y).sum())
    finally:
        ctx.encoder.train()
    return correct / len(rows)


@register_method(
    "contrastive_unlearning",
    needs=("forget", "retain", "val"),
    source="Lee et al. 2024 (CU), Hongkyu-Lee/Contrastive-Unlearning",
    description="CU: push D_f from same-class (or own-view) embeddings, pull toward D_r",
)
@dataclass
class ContrastiveUnlearning(Method):
    """Defaults from the paper's code: tau 0.7, lambda_UL 3, lambda_CE 1, SGD lr 1e-3
    momentum 0.9 (no weight decay reaches its optimiser), 4 retain batches per forget
    batch, at most 3 epochs over D_f (its ``unlearn_epoch``) before the stop rule."""

    epochs: int = 3
    lr: float = 1e-3
    tau: float = 0.7
    lambda_ul: float = 3.0
    lambda_ce: float = 1.0
    retain_batches: int = 4
    other_views: int = 1  # label-free variant: views of x_i forming N(i)
    mode: str = "auto"  # sample | class | auto (class if D_f is exactly one class absent from D_r)
    stop_rule: bool = True
    optimizer: str = "sgd"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"contrastive_unlearning mode must be in {MODES}, got '{self.mode}'")

    # --- the two variants ------------------------------------------------------------
    def supervised_loss(self, ctx: UnlearnContext, fb: Batch, rb: Batch) -> torch.Tensor:
        b = len(fb)
        v = ctx.augment(torch.cat([fb.x, rb.x]))
        with ctx.autocast():
            z = ctx.encoder.embed(v)  # one forward for both, as the paper's code
            logits = ctx.encoder.logits(v[b:]).float()
        same = fb.y[:, None] == rb.y[None, :]
        ul = contrastive_unlearning_loss(z[:b], z[b:], ~same, same, self.tau)
        return self.lambda_ul * ul + self.lambda_ce * F.cross_entropy(logits, rb.y)

    def self_supervised_loss(self, ctx: UnlearnContext, fb: Batch, rb: Batch) -> torch.Tensor:
        b, k = len(fb), self.other_views
        v = ctx.augment(torch.cat([fb.x.repeat(k + 1, 1, 1, 1), rb.x]))
        with ctx.autocast():
            z = ctx.encoder.embed(v)
        z_anchor, z_views, z_retain = z[:b], z[b : (k + 1) * b], z[(k + 1) * b :]
        cols = torch.cat([z_retain, z_views])
        pull = torch.zeros(b, len(cols), dtype=torch.bool, device=z.device)
        pull[:, : len(z_retain)] = True
        push = torch.zeros_like(pull)
        own = torch.arange(b, device=z.device)
        for j in range(k):  # column of view j of sample i
            push[own, len(z_retain) + j * b + own] = True
        ul = contrastive_unlearning_loss(z_anchor, cols, pull, push, self.tau)
        return self.lambda_ul * ul + self.lambda_ce * ctx.objective(rb).mean()

    # --- stop rule -------------------------------------------------------------------
    def forgotten_class(self, ctx: UnlearnContext) -> int | None:
        """The class being unlearned in class mode (None in sample mode)."""
        y_f = ctx.forget.y
        classes = torch.unique(y_f)
        if self.mode == "sample" or len(classes) != 1:
            return None
        c = int(classes[0])
        if self.mode == "class" or not bool((ctx.retain.y == c).any()):
            return c
        return None

    def should_stop(self, ctx: UnlearnContext, cls: int | None) -> bool:
        if cls is not None:
            acc = class_accuracy(ctx, ctx.val, cls)
            ctx.info.setdefault("val_class_acc", []).append(acc)
            return acc is not None and acc <= 1.0 / ctx.num_classes
        acc_f, acc_v = class_accuracy(ctx, ctx.forget), class_accuracy(ctx, ctx.val)
        ctx.info.setdefault("forget_acc", []).append(acc_f)
        ctx.info.setdefault("val_acc", []).append(acc_v)
        return acc_f is not None and acc_v is not None and acc_f <= acc_v

    def unlearn(self, ctx: UnlearnContext) -> None:
        supervised = "logits" in ctx.encoder.capabilities
        loss_fn = self.supervised_loss if supervised else self.self_supervised_loss
        labelled = bool((ctx.forget.y >= 0).all()) and bool((ctx.val.y >= 0).all())
        use_stop = self.stop_rule and labelled
        cls = self.forgotten_class(ctx) if labelled else None
        ctx.info.update(variant="supervised" if supervised else "self-supervised",
                        mode="class" if cls is not None else "sample")
        opt = ctx.optimizer(self.optimizer, lr=self.lr)
        retain = ctx.cycle(ctx.retain)
        for epoch in range(self.epochs):
            for fb in ctx.batches(ctx.forget, epochs=1):
                for _ in range(self.retain_batches):
                    rb = next(retain)
                    rb = Batch(rb.x[: len(fb)], rb.y[: len(fb)], rb.idx[: len(fb)])
                    ctx.step(opt, loss_fn(ctx, fb, rb))
            if ctx.out_of_time:
                break
            if use_stop and self.should_stop(ctx, cls):
                ctx.info["stopped"] = f"stop rule after epoch {epoch + 1}"
                break
